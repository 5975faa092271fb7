//! The real `boardsync serve` binary as a child process, for tests that signal or
//! kill it the way an operator's worst day would. It keeps its port across restarts,
//! so one `TestApp` talks to every incarnation.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{test_settings, TestApp};

pub struct Process {
    command: Command,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Where every incarnation logs (appended): its tail is printed when a stop
    /// fails or the test panics, so a failure in CI says what the process saw.
    log: std::path::PathBuf,
}

/// Lines of a process' log shown with a failure.
const LOG_TAIL_LINES: usize = 80;

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Process {
    /// Starts `boardsync serve` on `database_url` and the SpacetimeDB at `stdb`
    /// (url, the backend's token, the modules' prefix), with extra `env`; returns it
    /// and a `TestApp` for it once `/health` answers.
    pub async fn start(database_url: &str, stdb: (&str, &str, &str), env: &[(&str, &str)]) -> (Self, TestApp) {
        let port = free_port();
        let (url, token, prefix) = stdb;
        let mut all: Vec<(String, String)> = [
            ("BOARDSYNC_ENV", "test"),
            ("BOARDSYNC_SETTINGS_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../settings")),
            ("DATABASE_URL", database_url),
            ("SPACETIMEDB_URL", url),
            ("BOARDSYNC__SPACETIMEDB__TOKEN", token),
            ("BOARDSYNC__SPACETIMEDB__DATABASE_PREFIX", prefix),
            // (`boardsync` covers every crate named boardsync_*.)
            ("BOARDSYNC__LOG__FILTER", "warn,boardsync=info"),
        ]
        .iter()
        .chain(env)
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        all.push(("BOARDSYNC__SERVER__PORT".into(), port.to_string()));
        // A port is free again once its process is gone, so the name has a count too.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let count = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("boardsync-test-{}-{count}-{port}.log", std::process::id()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_boardsync"));
        // The filter above, not a developer's RUST_LOG (which would win over it).
        command.arg("serve").envs(all.iter().cloned()).env_remove("RUST_LOG").stdin(Stdio::null());
        let app = TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            pool: PgPool::connect_with(boardsync_core::postgres::backend_connect_options(database_url).unwrap())
                .await
                .expect("PostgreSQL answers"),
            http: reqwest::Client::new(),
            settings: test_settings(),
        };
        let mut process = Self { command, env: all, child: None, log };
        process.start_again(&app).await;
        (process, app)
    }

    /// Starts it (again) on the same port and settings; waits for `/health`.
    pub async fn start_again(&mut self, app: &TestApp) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the process log");
        let (out, err) = (log.try_clone().expect("process log"), log);
        self.child = Some(self.command.stdout(out).stderr(err).spawn().expect("start boardsync serve"));
        for _ in 0..600 {
            if app.http.get(format!("{}/health", app.address)).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("boardsync did not become healthy within 30 s");
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM");
        for _ in 0..1200 {
            if let Some(status) = child.try_wait().expect("wait for boardsync") {
                if !status.success() {
                    self.print_log_tail(&format!("exited with {status} after SIGTERM"));
                }
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("boardsync did not exit within 60 s of SIGTERM");
    }

    /// Runs another `boardsync` command with the same settings; returns its output.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with(args, &[])
    }

    /// [`Process::run`] with some settings changed.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_boardsync"))
            .args(args)
            .envs(self.env.iter().cloned())
            .envs(env.iter().map(|(key, value)| (key.to_string(), value.to_string())))
            .output()
            .expect("run boardsync")
    }

    /// SIGKILL: a crash, with no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of what this process logged, on the test's output.
    fn print_log_tail(&self, why: &str) {
        let log = String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        let port = self.env.iter().find(|(key, _)| key == "BOARDSYNC__SERVER__PORT").map(|(_, port)| port.as_str());
        eprintln!("--- boardsync on port {} {why}: the last {} lines of its log ---", port.unwrap_or("?"), tail.len());
        for line in tail {
            eprintln!("{line}");
        }
        eprintln!("--- end of its log ---");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tail("when the test failed");
        }
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
