//! A rule's refusal, in the shape every boardsync error has: `(kind, code, message)`.
//! Dependency-free, so the modules include this same file (`#[path]`) and the rules a
//! domain shares between its two adapters refuse identically on both.

/// Why a rule refused a command. `kind` is one of the error kinds (`invalid`,
/// `not_found`, `forbidden`, `conflict`, `too_large`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { kind, code, message: message.into() }
    }

    /// The wire format of a reducer error: `kind|code|message`.
    pub fn to_reducer_error(&self) -> String {
        format!("{}|{}|{}", self.kind, self.code, self.message)
    }
}

/// Refuses text PostgreSQL would refuse or that no client should store: NUL and the
/// other control characters (line breaks and tabs are text).
pub fn check_text_chars(field: &'static str, text: &str) -> Result<(), Refusal> {
    match text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        Some(c) => Err(Refusal::new(
            "invalid",
            "invalid_characters",
            format!("{field} holds the control character U+{:04X}", c as u32),
        )),
        None => Ok(()),
    }
}
