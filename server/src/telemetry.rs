//! Structured logging with `tracing`.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG` overrides the configured filter.
/// Calling it twice is harmless (the second call is ignored), which tests rely on.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = fmt().with_env_filter(filter).with_target(true).with_ansi(std::io::stdout().is_terminal());
    let _ = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
