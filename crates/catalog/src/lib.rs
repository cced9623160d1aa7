//! # catalog — what amictl knows and what it did
//!
//! One database — a SQLite file (the embedded default) or a PostgreSQL database shared by
//! a team, behind one [`store::Store`] interface — holds:
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
//! A [`RunLock`] ([`lock`]: an `flock` beside a SQLite file, a session advisory lock on
//! PostgreSQL) keeps two runs on one state from interleaving; it is released when a run
//! dies, so a crash never leaves it stuck, and a refusal names the live holder.
//! [`copy`] moves a whole history between backends and proves it arrived.
#![deny(missing_docs)]

pub mod approvals;
pub mod audit;
pub mod copy;
pub mod distributions;
pub mod lock;
pub mod outbox;
pub mod safety;
pub mod scans;
pub mod schedule;
mod schema;
pub mod store;
pub mod versions;

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use store::{DbError, Param, Row, Sql, Store};

pub use approvals::{Approval, ApprovalStatus};
pub use audit::{AuditEvent, ChainBreak, NewEvent};
pub use distributions::{Deprecation, Published};
pub use lock::{Holder, Leadership, RunLock};
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
    /// The database refused, or could not be reached.
    #[error("state database {path}: {source}")]
    Db {
        /// The database (a file, or `postgres://user@host:port/db`).
        path: PathBuf,
        /// What it said.
        source: DbError,
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

/// A backend's error as [`CatalogError`].
pub(crate) fn db_error(path: &Path, e: DbError) -> CatalogError {
    match e {
        DbError::Sqlite(source) => sqlite_error(path, source),
        source => CatalogError::Db { path: path.into(), source },
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

/// Where a state lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<store::postgres::Target>),
}

impl Location {
    /// A PostgreSQL state from its URL (and a password kept apart from it).
    pub fn postgres(url: &str, password: Option<&str>) -> std::result::Result<Location, String> {
        store::postgres::Target::parse(url, password).map(|t| Location::Postgres(Box::new(t)))
    }

    /// The file, or `postgres://user@host:port/db` (never a password).
    pub fn label(&self) -> PathBuf {
        match self {
            Location::File(p) => p.clone(),
            Location::Postgres(t) => PathBuf::from(t.label()),
        }
    }
}

/// The state database.
pub struct Catalog {
    store: RefCell<Box<dyn Store>>,
    /// The file, or the PostgreSQL target's label: what errors name.
    path: PathBuf,
    location: Location,
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
        let mut cat = Catalog::sqlite(conn, path);
        if present {
            cat.quick_check()?;
        }
        {
            let mut store = cat.store.borrow_mut();
            let conn = store.as_sqlite().expect("a SQLite store");
            // The busy timeout first: switching a new file to WAL takes a lock another
            // opener may hold at this very moment, and that must mean "wait", not "fail".
            let e = |source| sqlite_error(path, source);
            conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(e)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
            conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
        }
        cat.migrate()?;
        drop(guard);
        Ok(cat)
    }

    /// Opens the state at `location` for a command that writes.
    pub fn open_at(location: &Location) -> Result<Catalog> {
        match location {
            Location::File(path) => Catalog::open(path),
            Location::Postgres(target) => Catalog::postgres(target),
        }
    }

    /// Opens the state at `location` for a command that only reads (see
    /// [`Catalog::open_read`]; a PostgreSQL database is the same for both).
    pub fn open_read_at(location: &Location) -> Result<Catalog> {
        match location {
            Location::File(path) => Catalog::open_read(path),
            Location::Postgres(target) => Catalog::postgres(target),
        }
    }

    fn postgres(target: &store::postgres::Target) -> Result<Catalog> {
        let path = PathBuf::from(target.label());
        let pg = store::postgres::Postgres::connect(target).map_err(|e| db_error(&path, e))?;
        let mut cat =
            Catalog { store: RefCell::new(Box::new(pg)), path, location: Location::Postgres(Box::new(target.clone())) };
        cat.migrate()?;
        Ok(cat)
    }

    /// An empty history in memory, labelled `path` (what a lost state is judged as).
    pub fn empty(path: &Path) -> Result<Catalog> {
        let conn = Connection::open_in_memory().map_err(|source| sqlite_error(path, source))?;
        let mut cat = Catalog::sqlite(conn, path);
        cat.migrate()?;
        Ok(cat)
    }

    pub(crate) fn sqlite(conn: Connection, path: &Path) -> Catalog {
        Catalog {
            store: RefCell::new(Box::new(store::sqlite::Sqlite { conn })),
            path: path.to_path_buf(),
            location: Location::File(path.to_path_buf()),
        }
    }

    /// The database file, or `postgres://user@host:port/db`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the state lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether the state is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.location, Location::Postgres(_))
    }

    pub(crate) fn err(&self, source: DbError) -> CatalogError {
        db_error(&self.path, source)
    }

    /// Runs a statement.
    pub(crate) fn exec(&self, sql: &str, args: &[&dyn Param]) -> Result<u64> {
        self.store.borrow_mut().execute(sql, args).map_err(|e| self.err(e))
    }

    /// Runs a query.
    pub(crate) fn all(&self, sql: &str, args: &[&dyn Param]) -> Result<Vec<Row>> {
        self.store.borrow_mut().query(sql, args).map_err(|e| self.err(e))
    }

    /// Runs a query for one row.
    pub(crate) fn one(&self, sql: &str, args: &[&dyn Param]) -> Result<Option<Row>> {
        self.store.borrow_mut().query_opt(sql, args).map_err(|e| self.err(e))
    }

    /// Runs `f` in one write transaction, committed when it returns `Ok`.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut dyn Sql) -> std::result::Result<T, DbError>) -> Result<T> {
        let mut store = self.store.borrow_mut();
        let run = || {
            let mut tx = store.begin()?;
            let out = f(&mut *tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.err(e))
    }

    /// Applies pending migrations, each once however many openers race.
    fn migrate(&mut self) -> Result<()> {
        let known = schema::MIGRATIONS.len() as i64;
        match self.store.get_mut().migrate().map_err(|e| db_error(&self.path, e))? {
            Ok(()) => Ok(()),
            Err(found) => Err(CatalogError::TooNew { path: self.path.clone(), found, known }),
        }
    }
}

/// Reads rows with `f`.
pub(crate) fn map<T>(
    rows: Vec<Row>,
    f: impl Fn(&Row) -> std::result::Result<T, DbError>,
) -> std::result::Result<Vec<T>, DbError> {
    rows.iter().map(f).collect()
}

/// [`map`], for a catalog's rows.
pub(crate) fn rows<T>(
    cat: &Catalog,
    rows: Vec<Row>,
    f: impl Fn(&Row) -> std::result::Result<T, DbError>,
) -> Result<Vec<T>> {
    map(rows, f).map_err(|e| cat.err(e))
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
