//! A throwaway PostgreSQL for tests: `initdb` into a fresh directory, `postgres` on
//! 127.0.0.1 on a free port with trust authentication for the user `amictl`, a database
//! per test. It can be stopped (fast shutdown) and started again on the same data and
//! port — what a test of "the database went away mid-cycle" needs — and is stopped and
//! removed on drop.
//!
//! The binaries come from `AMICTL_POSTGRES_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package; `scripts/install-deps`
//! installs it). PostgreSQL refuses to run as root, so under root the server runs as the
//! `postgres` system user the package creates.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server.
pub struct Postgres {
    bin: PathBuf,
    base: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

/// The directory holding `initdb` and `postgres`.
pub fn bin_dir() -> PathBuf {
    if let Some(b) = std::env::var_os("AMICTL_POSTGRES_BIN") {
        return PathBuf::from(b);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL found: set AMICTL_POSTGRES_BIN or install Debian's `postgresql` (scripts/install-deps does)"
        )
    })
}

/// uid and gid of the `postgres` user when running as root (PostgreSQL will not run as root).
fn owner() -> Option<(u32, u32)> {
    let me = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = me.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(1)?.parse::<u32>().ok()?;
    if uid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let line = passwd.lines().find(|l| l.starts_with("postgres:") || l.starts_with("nobody:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Postgres {
    /// A new, running server.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let base = std::env::temp_dir().join(format!(
            "amictl-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(base.join("data")).expect("the data directory");
        let owner = owner();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(base.join("data"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(base.join("data"), Some(uid), Some(gid)).expect("chown the data directory");
        }
        let mut pg = Postgres { bin, base, port: free_port(), owner, child: None };
        let out = pg
            .command("initdb")
            .args(["-D"])
            .arg(pg.data())
            .args(["-U", "amictl", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin.join(tool));
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.current_dir(&self.base).env_remove("PGPASSWORD").env_remove("PGHOST");
        c
    }

    /// Starts the server (again) on the same data directory and port; returns once it
    /// answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.base.join("postgres.log")).expect("the log");
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::chown(self.base.join("postgres.log"), Some(uid), Some(gid));
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.data())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.try_sql("postgres", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not start: {}", self.log());
    }

    /// Stops the server with a fast shutdown (sessions are ended, nothing half-written
    /// survives) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` (no password: trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://amictl@127.0.0.1:{}/{db}", self.port)
    }

    /// Makes database `name`; its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// Runs SQL in `db`: its output, or psql's error.
    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = if self.bin.join("psql").exists() { self.bin.join("psql") } else { PathBuf::from("psql") };
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "amictl", "-d", db, "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL in `db` (as the superuser `amictl`, as an attacker with the database's
    /// credentials could); its output, one row per line, `|` between columns.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql).unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("postgres.log")).unwrap_or_default()
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        &self.base
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
