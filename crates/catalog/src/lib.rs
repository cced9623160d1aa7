//! # catalog — what amictl knows and what it did
//!
//! One SQLite file (WAL, schema migrations by `user_version`) holds:
//!
//! - [`versions`]: every image version with its build state machine (`pending →
//!   building → testing → available | failed → retired`), parent lineage, the component
//!   versions it was built with, its package manifest, artifacts with SHA-256 and tests;
//! - [`distributions`]: where each version was published, the deprecation of each of its
//!   AMIs, and the notices sent to consumers' owners;
//! - [`scans`]: each consumer's fleet scans;
//! - [`audit`]: the **audit chain**, an append-only list of events, each hashing the
//!   previous one, so `verify` finds the first row anyone changed; intents that never got
//!   an outcome are tracked so the next run can close them;
//! - [`approvals`], [`outbox`] and [`schedule`]: what `serve` keeps — actions held for a
//!   person, notifications waiting to be delivered, when each job last ran.
//!
//! A [`RunLock`] ([`lock`]: an `flock` beside the database) keeps two runs on one state
//! from interleaving; the kernel releases it when a run dies, so a crash never leaves it
//! stuck, and `/proc/locks` names the live holder.
#![deny(missing_docs)]

pub mod approvals;
pub mod audit;
pub mod distributions;
pub mod lock;
pub mod outbox;
pub mod safety;
pub mod scans;
pub mod schedule;
mod schema;
pub mod versions;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

pub use approvals::{Approval, ApprovalStatus};
pub use audit::{AuditEvent, ChainBreak, NewEvent};
pub use distributions::{Deprecation, Published};
pub use lock::{Holder, RunLock};
pub use outbox::{Delivery, NewNotice};
pub use provider::{Artifact, ArtifactKind, Package, TestResult};
pub use safety::{RecordCheck, RecordMismatch, manifest_digest};
pub use scans::{Scan, ScanHost};
pub use versions::{BuildState, ComponentUse, NewBuild, Version};

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite refused.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file around the database could not be used, or a rule of the state was broken.
    #[error("state database {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The database was written by a newer amictl.
    #[error(
        "state database {path} has schema version {found}, newer than this amictl understands ({known}); upgrade amictl"
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this amictl knows.
        known: i64,
    },
    /// A backup could not be made.
    #[error("backup {dest}: {message}")]
    Backup {
        /// Where it was to go.
        dest: PathBuf,
        /// Why not.
        message: String,
    },
    /// The state is gone (or empty) where a history existed.
    #[error("{}", missing_message(path, marker.as_deref(), *empty))]
    Missing {
        /// The database.
        path: PathBuf,
        /// The file that says a history existed.
        marker: Option<PathBuf>,
        /// The file is there but empty (0 bytes).
        empty: bool,
    },
    /// SQLite's own check found damage.
    #[error(
        "state database {path} is damaged ({check}: {problems}); nothing was changed. Restore it from a backup (README: \"Backing up and restoring the state\")"
    )]
    Damaged {
        /// The database.
        path: PathBuf,
        /// The check that failed.
        check: &'static str,
        /// What it reported.
        problems: String,
    },
    /// Another run holds the state lock.
    #[error("another amictl run holds the lock on {path} ({holder}); wait for it, or pass --wait to queue")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: Holder,
    },
}

type Result<T> = std::result::Result<T, CatalogError>;

/// SQLite's error, or — when it says the file is damaged — [`CatalogError::Damaged`], which
/// says how to restore.
pub(crate) fn sqlite_error(path: &Path, source: rusqlite::Error) -> CatalogError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => {
            CatalogError::Damaged { path: path.into(), check: "SQLite", problems: source.to_string() }
        }
        _ => CatalogError::Sqlite { path: path.into(), source },
    }
}

fn missing_message(path: &Path, marker: Option<&Path>, empty: bool) -> String {
    let what = if empty { "is empty (0 bytes)" } else { "is missing" };
    let why = match marker {
        Some(m) => format!(", but {} shows amictl kept a history here", m.display()),
        None => String::new(),
    };
    let markers: Vec<String> =
        safety::markers(path).iter().filter(|m| m.exists()).map(|m| m.display().to_string()).collect();
    let fresh = match (empty, markers.is_empty()) {
        (true, _) => format!("; to start a new, empty history on purpose, remove {} first", path.display()),
        (false, false) => format!("; to start a new, empty history on purpose, remove {} first", markers.join(" and ")),
        (false, true) => String::new(),
    };
    format!(
        "state database {} {what}{why}. Nothing was changed. Restore the latest backup (`cp BACKUP {}`; README: \"Backing up and restoring the state\"){fresh}",
        path.display(),
        path.display()
    )
}

/// The state database.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// The setup lock, held exclusively. A new one appears already locked (made under another
/// name, locked, then linked into place), so a reader never sees it unlocked before the
/// database it guards exists — which would read as a history that was lost.
fn locked_setup_file(path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{FlockOperation, flock};
    if !path.exists() {
        let tmp = path.with_extension(format!("setup-lock.{}.{}", std::process::id(), uuid_like()));
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
        let linked = flock(&f, FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        if linked.is_ok() {
            return Ok(f);
        }
        // Already there (another opener was first), or a filesystem without hard links:
        // the plain way below (on the latter, a reader may meet the brief window this avoids).
    }
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    flock(&f, FlockOperation::LockExclusive)?;
    Ok(f)
}

/// A value unique enough for a temporary name beside the state (time and a counter).
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{t:x}{:x}", N.fetch_add(1, Ordering::Relaxed))
}

impl Catalog {
    /// Opens (creating and migrating as needed) the state database, for a command that
    /// writes. A new file is made only where no history existed (see [`safety`]).
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CatalogError::Io { path: path.into(), message: e.to_string() })?;
        }
        // Setting up a connection (switching a new file to WAL, migrating) upgrades locks in
        // a way SQLite resolves by failing one side at once rather than waiting, so openers
        // take turns on a small file lock for that part. Ordinary reads and writes later
        // wait on SQLite's own busy timeout.
        let setup_lock = safety::setup_lock(path);
        let existed = safety::markers(path).into_iter().find(|m| m.exists());
        let guard = locked_setup_file(&setup_lock)
            .map_err(|e| CatalogError::Io { path: setup_lock.clone(), message: e.to_string() })?;
        let present = Catalog::check_history(path, existed)?;
        let conn = Connection::open(path).map_err(|source| sqlite_error(path, source))?;
        let mut cat = Catalog { conn, path: path.to_path_buf() };
        if present {
            cat.quick_check()?;
        }
        // The busy timeout first: switching a new file to WAL takes a lock another opener
        // may hold at this very moment, and that must mean "wait", not "fail".
        cat.conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| cat.err(e))?;
        cat.conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| cat.err(e))?;
        cat.conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| cat.err(e))?;
        cat.migrate()?;
        drop(guard);
        Ok(cat)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> CatalogError {
        sqlite_error(&self.path, source)
    }

    /// Maps SQLite errors to [`CatalogError`] without borrowing `self` (for transactions).
    pub(crate) fn err_fn(&self) -> impl Fn(rusqlite::Error) -> CatalogError + use<> {
        let path = self.path.clone();
        move |source| sqlite_error(&path, source)
    }

    /// Applies pending migrations. Each runs in an IMMEDIATE transaction that re-reads the
    /// schema version under the write lock, so concurrent openers never apply one twice.
    fn migrate(&mut self) -> Result<()> {
        let known = schema::MIGRATIONS.len() as i64;
        let path = self.path.clone();
        let e = self.err_fn();
        loop {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
            let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(&e)?;
            if current > known {
                return Err(CatalogError::TooNew { path: path.clone(), found: current, known });
            }
            if current == known {
                return tx.commit().map_err(&e);
            }
            tx.execute_batch(schema::MIGRATIONS[current as usize]).map_err(&e)?;
            tx.pragma_update(None, "user_version", current + 1).map_err(&e)?;
            tx.commit().map_err(&e)?;
        }
    }
}

/// Collects query rows, mapping SQLite's error once.
pub(crate) fn rows<T>(
    it: impl Iterator<Item = rusqlite::Result<T>>,
    e: impl Fn(rusqlite::Error) -> CatalogError,
) -> Result<Vec<T>> {
    it.collect::<rusqlite::Result<Vec<T>>>().map_err(e)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn catalog() -> (tempfile::TempDir, Catalog) {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open(&d.path().join("state.db")).unwrap();
        (d, c)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn upgrading_keeps_the_last_deprecation_earlier_versions_set_and_their_builds() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            for m in &schema::MIGRATIONS[..3] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute_batch(
                "INSERT INTO builds (build_id, image, version, state, reason, recipe_hash, parent_id, parent_name, parent_created, started_at, log_dir)
                 VALUES ('b1', 'host', 'v1', 'available', '[]', 'r', 'p', 'p', '', '2026-11-01T00:00:00Z', '/l');",
            )
            .unwrap();
            for (seq, ami, at, error) in
                [(1, "ami-1", "T1", "null"), (2, "ami-1", "T2", "null"), (3, "ami-2", "T3", "\"refused\"")]
            {
                let data = format!(
                    r#"{{"account":"platform","region":"eu-west-1","image_id":"{ami}","at":"{at}","error":{error}}}"#
                );
                conn.execute(
                    "INSERT INTO audit_events (seq, time, actor, kind, subject, reason, data, prev_hash, hash) VALUES (?1, 't', 'a', 'deprecate', 'host@v1', 'superseded', ?2, 'x', 'y')",
                    rusqlite::params![seq, data],
                )
                .unwrap();
            }
        }
        let c = Catalog::open(&path).unwrap();
        let deps = c.deprecations("b1").unwrap();
        assert_eq!(deps.len(), 1, "only AMIs whose deprecation was set: {deps:?}");
        assert_eq!(
            (deps[0].ami.image_id.as_str(), deps[0].at.as_str()),
            ("ami-1", "T2"),
            "the last one set is what EC2 holds"
        );
        assert_eq!(c.versions(None).unwrap()[0].runner, None, "builds from before carry no runner");
    }
}
