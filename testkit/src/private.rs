//! Servers of a test's own, for tests that stop and restart them: a PostgreSQL
//! cluster and a SpacetimeDB server, each in a temporary folder on a free port.
//! Both are stopped and removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local address").port()
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A PostgreSQL cluster of the test's own (initdb refuses root, so as root the
/// cluster belongs to the `postgres` user).
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb in /usr/lib/postgresql/*/bin");
        let dir = temp_dir("boardsync-pg");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir), "chown");
        }
        let cluster = Self { dir, bin, port: free_port(), as_postgres };
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(cluster.data()).args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(&mut initdb, "initdb");
        cluster.start_again();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// `postgres://` URL of database `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn stop(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]);
        run(&mut stop, "pg_ctl stop");
    }

    pub fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let mut start = self.command("pg_ctl");
        start.arg("-D").arg(self.data()).arg("-l").arg(self.dir.join("log")).args(["-w", "-o", &options, "start"]);
        run(&mut start, "pg_ctl start");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(self.data()).args(["-m", "immediate", "stop"]).stdout(Stdio::null()).stderr(Stdio::null());
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A SpacetimeDB server of the test's own, with data on disk so it survives a restart.
pub struct PrivateSpacetime {
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    pub token: String,
}

impl PrivateSpacetime {
    /// Starts it; the binaries come from `BOARDSYNC_SPACETIMEDB_BIN`.
    pub async fn start() -> Self {
        let dir = temp_dir("boardsync-stdb");
        let key = dir.join("id_ecdsa");
        let openssl = || Command::new("openssl");
        run(
            openssl().args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"]).arg(&key),
            "openssl ecparam",
        );
        run(openssl().args(["ec", "-pubout", "-in"]).arg(&key).arg("-out").arg(dir.join("id_ecdsa.pub")), "openssl ec");
        run(
            openssl().args(["pkcs8", "-topk8", "-nocrypt", "-in"]).arg(&key).arg("-out").arg(dir.join("id_ecdsa.p8")),
            "openssl pkcs8",
        );
        let mut server = Self { dir, port: free_port(), child: Mutex::new(None), token: String::new() };
        server.start_again().await;
        let identity: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/identity", server.url()))
            .send()
            .await
            .expect("SpacetimeDB answers")
            .json()
            .await
            .expect("an identity");
        server.token = identity["token"].as_str().expect("a token").to_string();
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's data folder (its commit logs are under `replicas/*/clog`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server again on the same port and data folder, and waits until it answers.
    pub async fn start_again(&self) {
        let bin = PathBuf::from(crate::required_env("BOARDSYNC_SPACETIMEDB_BIN")).join("spacetimedb-standalone");
        let log = std::fs::File::create(self.dir.join("server.log")).expect("create the server log");
        let child = Command::new(bin)
            .arg("start")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--jwt-pub-key-path")
            .arg(self.dir.join("id_ecdsa.pub"))
            .arg("--jwt-priv-key-path")
            .arg(self.dir.join("id_ecdsa.p8"))
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start spacetimedb-standalone");
        *self.child.lock().expect("child lock") = Some(child);
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(format!("{}/v1/ping", self.url())).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("SpacetimeDB did not start within 30 s");
    }

    /// Kills the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("child lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Publishes `domain`'s module as `<prefix>-<domain>` (`clear` recreates it empty).
    pub async fn publish(&self, prefix: &str, domain: &str, clear: bool) {
        crate::publish(&self.url(), &self.token, &format!("{prefix}-{domain}"), domain, clear).await;
    }
}

impl Drop for PrivateSpacetime {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
