//! # catalog — what amictl knows and what it did
//!
//! One SQLite file (WAL, schema migrations by `user_version`) holds every image version
//! with its build state machine (`pending → building → testing → available | failed →
//! retired`), parent lineage, the component versions it was built with, its package
//! manifest, artifacts with SHA-256, test results — and the **audit chain**: an
//! append-only list of events, each hashing the previous one, so `verify` finds the first
//! row anyone changed.
//!
//! A [`RunLock`] (an `flock` beside the database) keeps two `apply` runs on one state from
//! interleaving; the kernel releases it when a run dies, so a crash never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("state database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("state database {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "state database {path} has schema version {found}, newer than this amictl understands ({known}); upgrade amictl"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("another amictl run holds the lock on {path} (pid {holder}); wait for it, or pass --wait to queue")]
    Locked { path: PathBuf, holder: String },
}

type Result<T> = std::result::Result<T, CatalogError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Pending,
    Building,
    Testing,
    Available,
    Failed,
    Retired,
}

impl BuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Pending => "pending",
            BuildState::Building => "building",
            BuildState::Testing => "testing",
            BuildState::Available => "available",
            BuildState::Failed => "failed",
            BuildState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> BuildState {
        match s {
            "pending" => BuildState::Pending,
            "building" => BuildState::Building,
            "testing" => BuildState::Testing,
            "available" => BuildState::Available,
            "retired" => BuildState::Retired,
            _ => BuildState::Failed,
        }
    }

    /// The transitions the state machine allows.
    pub fn can_become(self, next: BuildState) -> bool {
        use BuildState::*;
        matches!(
            (self, next),
            (Pending, Building)
                | (Pending, Failed)
                | (Building, Testing)
                | (Building, Failed)
                | (Testing, Available)
                | (Testing, Failed)
                | (Available, Retired)
                | (Failed, Retired)
        )
    }

    pub fn is_unfinished(self) -> bool {
        matches!(self, BuildState::Pending | BuildState::Building | BuildState::Testing)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentUse {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub build_id: String,
    pub image: String,
    pub version: String,
    pub state: BuildState,
    /// The planner's reason, as JSON.
    pub reason: serde_json::Value,
    pub recipe_hash: String,
    pub parent_id: String,
    pub parent_name: String,
    pub parent_created: String,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub failure: Option<String>,
    pub log_dir: String,
    pub components: Vec<ComponentUse>,
    pub package_count: usize,
    pub tests_passed: usize,
    pub tests_failed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source_name: String,
    pub source_version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub kind: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// One version published in one account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distribution {
    /// Account name from the config.
    pub account: String,
    pub region: String,
    /// The AMI consumers launch there.
    pub image_id: String,
    /// `owner` (the platform's own copy), `shared` (launch permission) or `copy` (owned by the consumer).
    pub how: String,
    /// SSM parameters written for it, comma-separated.
    pub parameters: String,
    pub at: String,
}

/// One host as a fleet scan judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanHost {
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub image_id: String,
    pub image: Option<String>,
    pub version: Option<String>,
    /// `current`, `within-sla`, `overdue`, `exempt`, `unmanaged`.
    pub standing: String,
    /// The full assessment, as JSON.
    pub detail: String,
}

/// One consumer's scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    pub consumer: String,
    pub at: String,
    /// Why the consumer could not be read; then `hosts` is empty and means nothing.
    pub unknown: Option<String>,
    pub hosts: Vec<ScanHost>,
}

#[derive(Debug, Clone)]
pub struct NewBuild<'a> {
    pub build_id: &'a str,
    pub image: &'a str,
    pub version: &'a str,
    pub reason: &'a serde_json::Value,
    pub recipe_hash: &'a str,
    pub parent_id: &'a str,
    pub parent_name: &'a str,
    pub parent_created: &'a str,
    pub started_at: &'a str,
    pub log_dir: &'a str,
    pub components: &'a [ComponentUse],
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    pub reason: String,
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The first event whose stored hash does not match its content or its predecessor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at event {seq}: {problem}")]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: String,
}

const SCHEMA: &[&str] = &[
    // v1
    "CREATE TABLE builds (
        build_id TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        recipe_hash TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        parent_name TEXT NOT NULL,
        parent_created TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        failure TEXT,
        log_dir TEXT NOT NULL,
        UNIQUE (image, version)
     );
     CREATE TABLE build_components (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL);
     CREATE TABLE packages (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, version TEXT NOT NULL, arch TEXT NOT NULL, source_name TEXT NOT NULL, source_version TEXT NOT NULL);
     CREATE INDEX packages_build ON packages (build_id);
     CREATE TABLE artifacts (build_id TEXT NOT NULL REFERENCES builds, kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL);
     CREATE TABLE test_results (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, passed INTEGER NOT NULL, detail TEXT NOT NULL);
     CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // v2: where each version was published. One row per (build, account, region); a
    // re-publish replaces it, so the row always says what was last verified.
    "CREATE TABLE distributions (
        build_id TEXT NOT NULL REFERENCES builds,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        image_id TEXT NOT NULL,
        how TEXT NOT NULL,
        parameters TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (build_id, account, region)
     );",
    // v3: fleet scans. A consumer's latest scan says what it runs; older scans are history.
    "CREATE TABLE scans (
        scan_id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        consumer TEXT NOT NULL,
        unknown TEXT
     );
     CREATE TABLE scan_hosts (
        scan_id INTEGER NOT NULL REFERENCES scans,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        image_id TEXT NOT NULL,
        image TEXT,
        version TEXT,
        standing TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX scan_hosts_scan ON scan_hosts (scan_id);",
];

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

impl Catalog {
    /// Opens (creating and migrating as needed) the state database.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CatalogError::Io { path: path.into(), message: e.to_string() })?;
        }
        // Setting up a connection (switching a new file to WAL, migrating) upgrades locks in
        // a way SQLite resolves by failing one side at once rather than waiting, so openers
        // take turns on a small file lock for that part. Ordinary reads and writes later
        // wait on SQLite's own busy timeout.
        let setup_lock = path.with_extension("setup-lock");
        let guard = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&setup_lock)
            .map_err(|e| CatalogError::Io { path: setup_lock.clone(), message: e.to_string() })?;
        rustix::fs::flock(&guard, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| CatalogError::Io { path: setup_lock.clone(), message: e.to_string() })?;
        let conn = Connection::open(path).map_err(|source| CatalogError::Sqlite { path: path.into(), source })?;
        let mut cat = Catalog { conn, path: path.to_path_buf() };
        // The busy timeout first: switching a new file to WAL takes a lock another opener
        // may hold at this very moment, and that must mean "wait", not "fail".
        cat.conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| cat.err(e))?;
        cat.conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| cat.err(e))?;
        cat.conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| cat.err(e))?;
        cat.migrate()?;
        drop(guard);
        Ok(cat)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> CatalogError {
        CatalogError::Sqlite { path: self.path.clone(), source }
    }

    /// Applies pending migrations. Each runs in an IMMEDIATE transaction that re-reads the
    /// schema version under the write lock, so concurrent openers never apply one twice.
    fn migrate(&mut self) -> Result<()> {
        let known = SCHEMA.len() as i64;
        let path = self.path.clone();
        let e = |source| CatalogError::Sqlite { path: path.clone(), source };
        loop {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(e)?;
            let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(e)?;
            if current > known {
                return Err(CatalogError::TooNew { path: path.clone(), found: current, known });
            }
            if current == known {
                return tx.commit().map_err(e);
            }
            tx.execute_batch(SCHEMA[current as usize]).map_err(e)?;
            tx.pragma_update(None, "user_version", current + 1).map_err(e)?;
            tx.commit().map_err(e)?;
        }
    }

    /// The next version name for `image` on `date` (`YYYY.MM.DD`): `YYYY.MM.DD.N`.
    pub fn next_version(&self, image: &str, date: &str) -> Result<String> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM builds WHERE image = ?1 AND version LIKE ?2",
                params![image, format!("{date}.%")],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(format!("{date}.{}", n + 1))
    }

    pub fn insert_build(&mut self, b: &NewBuild<'_>) -> Result<()> {
        let path = self.path.clone();
        let e = |source| CatalogError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "INSERT INTO builds (build_id, image, version, state, reason, recipe_hash, parent_id, parent_name, parent_created, started_at, log_dir)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![b.build_id, b.image, b.version, b.reason.to_string(), b.recipe_hash, b.parent_id, b.parent_name, b.parent_created, b.started_at, b.log_dir],
        )
        .map_err(e)?;
        for c in b.components {
            tx.execute(
                "INSERT INTO build_components (build_id, name, version, sha256) VALUES (?1, ?2, ?3, ?4)",
                params![b.build_id, c.name, c.version, c.sha256],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// Moves a build along its state machine; an illegal transition is an error.
    pub fn set_state(&self, build_id: &str, next: BuildState, failure: Option<&str>, at: &str) -> Result<()> {
        let current: Option<String> = self
            .conn
            .query_row("SELECT state FROM builds WHERE build_id = ?1", [build_id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        let current = current
            .map(|s| BuildState::parse(&s))
            .ok_or_else(|| CatalogError::Io { path: self.path.clone(), message: format!("no build {build_id}") })?;
        if !current.can_become(next) {
            return Err(CatalogError::Io {
                path: self.path.clone(),
                message: format!("build {build_id} cannot go from {} to {}", current.as_str(), next.as_str()),
            });
        }
        let finished = matches!(next, BuildState::Available | BuildState::Failed).then_some(at);
        self.conn
            .execute(
                "UPDATE builds SET state = ?2, failure = COALESCE(?3, failure), finished_at = COALESCE(?4, finished_at) WHERE build_id = ?1",
                params![build_id, next.as_str(), failure, finished],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets a build's parent once it is known (it may take a debootstrap to learn it).
    pub fn set_parent(&self, build_id: &str, id: &str, name: &str, created: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE builds SET parent_id = ?2, parent_name = ?3, parent_created = ?4 WHERE build_id = ?1",
                params![build_id, id, name, created],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records what a build produced, all or nothing.
    pub fn record_outputs(
        &mut self,
        build_id: &str,
        packages: &[Package],
        artifacts: &[Artifact],
        tests: &[TestResult],
    ) -> Result<()> {
        let path = self.path.clone();
        let e = |source| CatalogError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut p = tx.prepare("INSERT INTO packages (build_id, name, version, arch, source_name, source_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").map_err(e)?;
            for pk in packages {
                p.execute(params![build_id, pk.name, pk.version, pk.arch, pk.source_name, pk.source_version])
                    .map_err(e)?;
            }
            let mut a = tx
                .prepare("INSERT INTO artifacts (build_id, kind, path, sha256, size) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(e)?;
            for ar in artifacts {
                a.execute(params![build_id, ar.kind, ar.path, ar.sha256, ar.size as i64]).map_err(e)?;
            }
            let mut t = tx
                .prepare("INSERT INTO test_results (build_id, name, passed, detail) VALUES (?1, ?2, ?3, ?4)")
                .map_err(e)?;
            for tr in tests {
                t.execute(params![build_id, tr.name, tr.passed, tr.detail]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Versions of one image (or all), oldest first.
    pub fn versions(&self, image: Option<&str>) -> Result<Vec<Version>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT b.build_id, b.image, b.version, b.state, b.reason, b.recipe_hash, b.parent_id, b.parent_name, b.parent_created,
                        b.started_at, b.finished_at, b.failure, b.log_dir,
                        (SELECT COUNT(*) FROM packages p WHERE p.build_id = b.build_id),
                        (SELECT COUNT(*) FROM test_results t WHERE t.build_id = b.build_id AND t.passed),
                        (SELECT COUNT(*) FROM test_results t WHERE t.build_id = b.build_id AND NOT t.passed)
                 FROM builds b WHERE (?1 IS NULL OR b.image = ?1) ORDER BY b.started_at, b.rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([image], |r| {
                Ok(Version {
                    build_id: r.get(0)?,
                    image: r.get(1)?,
                    version: r.get(2)?,
                    state: BuildState::parse(&r.get::<_, String>(3)?),
                    reason: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(serde_json::Value::Null),
                    recipe_hash: r.get(5)?,
                    parent_id: r.get(6)?,
                    parent_name: r.get(7)?,
                    parent_created: r.get(8)?,
                    started_at: r.get(9)?,
                    finished_at: r.get(10)?,
                    failure: r.get(11)?,
                    log_dir: r.get(12)?,
                    components: Vec::new(),
                    package_count: r.get::<_, i64>(13)? as usize,
                    tests_passed: r.get::<_, i64>(14)? as usize,
                    tests_failed: r.get::<_, i64>(15)? as usize,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let mut v = row.map_err(|e| self.err(e))?;
            v.components = self.components(&v.build_id)?;
            out.push(v);
        }
        Ok(out)
    }

    fn components(&self, build_id: &str) -> Result<Vec<ComponentUse>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, version, sha256 FROM build_components WHERE build_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([build_id], |r| Ok(ComponentUse { name: r.get(0)?, version: r.get(1)?, sha256: r.get(2)? }))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn packages(&self, build_id: &str) -> Result<Vec<Package>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, version, arch, source_name, source_version FROM packages WHERE build_id = ?1 ORDER BY name, arch")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([build_id], |r| {
                Ok(Package {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    arch: r.get(2)?,
                    source_name: r.get(3)?,
                    source_version: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn artifacts(&self, build_id: &str) -> Result<Vec<Artifact>> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, path, sha256, size FROM artifacts WHERE build_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([build_id], |r| {
                Ok(Artifact { kind: r.get(0)?, path: r.get(1)?, sha256: r.get(2)?, size: r.get::<_, i64>(3)? as u64 })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records (or replaces) where a version was published.
    pub fn record_distribution(&self, build_id: &str, d: &Distribution) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO distributions (build_id, account, region, image_id, how, parameters, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![build_id, d.account, d.region, d.image_id, d.how, d.parameters, d.at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn distributions(&self, build_id: &str) -> Result<Vec<Distribution>> {
        let mut stmt = self
            .conn
            .prepare("SELECT account, region, image_id, how, parameters, at FROM distributions WHERE build_id = ?1 ORDER BY account, region")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([build_id], |r| {
                Ok(Distribution {
                    account: r.get(0)?,
                    region: r.get(1)?,
                    image_id: r.get(2)?,
                    how: r.get(3)?,
                    parameters: r.get(4)?,
                    at: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records one consumer's scan: its hosts, or why it could not be read.
    pub fn record_scan(
        &mut self,
        at: &str,
        consumer: &str,
        hosts: std::result::Result<&[ScanHost], &str>,
    ) -> Result<i64> {
        let path = self.path.clone();
        let e = |source| CatalogError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute("INSERT INTO scans (at, consumer, unknown) VALUES (?1, ?2, ?3)", params![at, consumer, hosts.err()])
            .map_err(e)?;
        let scan_id = tx.last_insert_rowid();
        if let Ok(hosts) = hosts {
            let mut stmt = tx
                .prepare("INSERT INTO scan_hosts (scan_id, account, region, instance_id, image_id, image, version, standing, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                .map_err(e)?;
            for h in hosts {
                stmt.execute(params![
                    scan_id,
                    h.account,
                    h.region,
                    h.instance_id,
                    h.image_id,
                    h.image,
                    h.version,
                    h.standing,
                    h.detail
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(scan_id)
    }

    /// Each consumer's latest scan.
    pub fn latest_scans(&self) -> Result<Vec<Scan>> {
        let mut stmt = self
            .conn
            .prepare("SELECT scan_id, consumer, at, unknown FROM scans WHERE scan_id IN (SELECT MAX(scan_id) FROM scans GROUP BY consumer) ORDER BY consumer")
            .map_err(|e| self.err(e))?;
        let scans: Vec<(i64, String, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut hosts = self
            .conn
            .prepare("SELECT account, region, instance_id, image_id, image, version, standing, detail FROM scan_hosts WHERE scan_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (id, consumer, at, unknown) in scans {
            let rows = hosts
                .query_map([id], |r| {
                    Ok(ScanHost {
                        account: r.get(0)?,
                        region: r.get(1)?,
                        instance_id: r.get(2)?,
                        image_id: r.get(3)?,
                        image: r.get(4)?,
                        version: r.get(5)?,
                        standing: r.get(6)?,
                        detail: r.get(7)?,
                    })
                })
                .map_err(|e| self.err(e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            out.push(Scan { consumer, at, unknown, hosts: rows });
        }
        Ok(out)
    }

    /// The `(image, version)` pairs some consumer's latest scan found running. A consumer
    /// whose latest scan is unknown keeps what its last good scan found.
    pub fn versions_in_use(&self) -> Result<std::collections::BTreeSet<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT h.image, h.version FROM scan_hosts h
                 WHERE h.image IS NOT NULL AND h.version IS NOT NULL AND h.scan_id IN (
                    SELECT MAX(scan_id) FROM scans WHERE unknown IS NULL GROUP BY consumer)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn tests(&self, build_id: &str) -> Result<Vec<TestResult>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, passed, detail FROM test_results WHERE build_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([build_id], |r| Ok(TestResult { name: r.get(0)?, passed: r.get(1)?, detail: r.get(2)? }))
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    // ------------------------------------------------------------------ audit chain

    /// Appends an event to the chain. `data` must not hold secrets.
    pub fn append_event(
        &mut self,
        time: &str,
        actor: &str,
        kind: &str,
        subject: &str,
        reason: &str,
        data: &serde_json::Value,
    ) -> Result<AuditEvent> {
        let path = self.path.clone();
        let e = |source| CatalogError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(e)?;
        let last: Option<(i64, String)> = tx
            .query_row("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(e)?;
        let (seq, prev_hash) = last.map(|(s, h)| (s + 1, h)).unwrap_or((1, GENESIS.to_string()));
        let data_text = data.to_string();
        let hash = event_hash(seq, time, actor, kind, subject, reason, &data_text, &prev_hash);
        tx.execute(
            "INSERT INTO audit_events (seq, time, actor, kind, subject, reason, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![seq, time, actor, kind, subject, reason, data_text, prev_hash, hash],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(AuditEvent {
            seq,
            time: time.into(),
            actor: actor.into(),
            kind: kind.into(),
            subject: subject.into(),
            reason: reason.into(),
            data: data.clone(),
            prev_hash,
            hash,
        })
    }

    /// Events in order; `subject_prefix` filters (e.g. an image name).
    pub fn events(&self, subject_prefix: Option<&str>) -> Result<Vec<AuditEvent>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, time, actor, kind, subject, reason, data, prev_hash, hash FROM audit_events WHERE (?1 IS NULL OR subject = ?1 OR subject LIKE ?1 || '@%') ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([subject_prefix], |r| {
                Ok(AuditEvent {
                    seq: r.get(0)?,
                    time: r.get(1)?,
                    actor: r.get(2)?,
                    kind: r.get(3)?,
                    subject: r.get(4)?,
                    reason: r.get(5)?,
                    data: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or(serde_json::Value::Null),
                    prev_hash: r.get(7)?,
                    hash: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Re-hashes the whole chain from the stored bytes. `Ok(n)` = n events verified.
    pub fn verify_chain(&self) -> Result<std::result::Result<usize, ChainBreak>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, time, actor, kind, subject, reason, data, prev_hash, hash FROM audit_events ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut expected_prev = GENESIS.to_string();
        let mut expected_seq = 1;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let get = |i: usize| -> std::result::Result<String, rusqlite::Error> { r.get::<_, String>(i) };
            let seq: i64 = r.get(0).map_err(|e| self.err(e))?;
            let fields: Vec<String> =
                (1..9).map(get).collect::<std::result::Result<_, _>>().map_err(|e| self.err(e))?;
            let [time, actor, kind, subject, reason, data, prev, hash] =
                <[String; 8]>::try_from(fields).expect("eight columns");
            if seq != expected_seq {
                return Ok(Err(ChainBreak {
                    seq,
                    problem: format!("expected event {expected_seq} here (an event was removed or inserted)"),
                }));
            }
            if prev != expected_prev {
                return Ok(Err(ChainBreak {
                    seq,
                    problem: "its prev_hash does not match the previous event's hash".into(),
                }));
            }
            if event_hash(seq, &time, &actor, &kind, &subject, &reason, &data, &prev) != hash {
                return Ok(Err(ChainBreak {
                    seq,
                    problem: "its content does not match its hash (the row was changed)".into(),
                }));
            }
            expected_prev = hash;
            expected_seq += 1;
            n += 1;
        }
        Ok(Ok(n))
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[allow(clippy::too_many_arguments)]
fn event_hash(
    seq: i64,
    time: &str,
    actor: &str,
    kind: &str,
    subject: &str,
    reason: &str,
    data: &str,
    prev: &str,
) -> String {
    // Length-prefix every field so no two different events serialise to the same bytes.
    let mut h = Sha256::new();
    for field in [&seq.to_string() as &str, time, actor, kind, subject, reason, data, prev] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An exclusive lock on a state database for the length of a run.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock. With `wait`, blocks (calling `waiting` once) until it is free.
    pub fn acquire(state: &Path, wait: bool, waiting: impl FnOnce(&str)) -> Result<RunLock> {
        use rustix::fs::{FlockOperation, flock};
        let path = state.with_extension("lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| CatalogError::Io { path: path.clone(), message: e.to_string() })?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CatalogError::Io { path: path.clone(), message: e.to_string() })?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().to_string();
            if !wait {
                return Err(CatalogError::Locked { path, holder });
            }
            waiting(&holder);
            flock(&file, FlockOperation::LockExclusive)
                .map_err(|e| CatalogError::Io { path: path.clone(), message: e.to_string() })?;
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open(&d.path().join("state.db")).unwrap();
        (d, c)
    }

    fn build<'a>(id: &'a str, version: &'a str, reason: &'a serde_json::Value) -> NewBuild<'a> {
        NewBuild {
            build_id: id,
            image: "host",
            version,
            reason,
            recipe_hash: "r1",
            parent_id: "p1",
            parent_name: "debootstrap:stable",
            parent_created: "2026-11-01T00:00:00Z",
            started_at: "2026-11-27T10:00:00Z",
            log_dir: "/logs",
            components: &[],
        }
    }

    #[test]
    fn builds_follow_the_state_machine() {
        let (_d, mut c) = catalog();
        let reason = serde_json::json!({"kind": "never_built"});
        c.insert_build(&build("b1", "2026.11.27.1", &reason)).unwrap();
        assert!(c.set_state("b1", BuildState::Available, None, "t").is_err(), "pending cannot jump to available");
        c.set_state("b1", BuildState::Building, None, "t").unwrap();
        c.set_state("b1", BuildState::Testing, None, "t").unwrap();
        c.set_state("b1", BuildState::Available, None, "t2").unwrap();
        let v = &c.versions(Some("host")).unwrap()[0];
        assert_eq!(v.state, BuildState::Available);
        assert_eq!(v.finished_at.as_deref(), Some("t2"));
        assert_eq!(c.next_version("host", "2026.11.27").unwrap(), "2026.11.27.2");
    }

    #[test]
    fn versions_in_use_come_from_each_consumers_latest_good_scan() {
        let (_d, mut c) = catalog();
        let host = |v: &str| ScanHost {
            account: "workflow".into(),
            region: "eu-west-1".into(),
            instance_id: "i-1".into(),
            image_id: "ami-1".into(),
            image: Some("host".into()),
            version: Some(v.into()),
            standing: "current".into(),
            detail: "{}".into(),
        };
        c.record_scan("t1", "goobi", Ok(&[host("v1")])).unwrap();
        c.record_scan("t2", "goobi", Ok(&[host("v2")])).unwrap();
        c.record_scan("t1", "digirati", Ok(&[host("v1")])).unwrap();
        c.record_scan("t2", "digirati", Err("access denied")).unwrap();
        let used: Vec<(String, String)> = c.versions_in_use().unwrap().into_iter().collect();
        assert_eq!(used, [("host".to_string(), "v1".to_string()), ("host".into(), "v2".into())]);
        let latest = c.latest_scans().unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!((latest[0].consumer.as_str(), latest[0].unknown.as_deref()), ("digirati", Some("access denied")));
        assert_eq!(latest[1].hosts[0].version.as_deref(), Some("v2"));
    }

    #[test]
    fn a_republished_distribution_replaces_its_row() {
        let (_d, mut c) = catalog();
        let reason = serde_json::json!({"kind": "never_built"});
        c.insert_build(&build("b1", "2026.11.27.1", &reason)).unwrap();
        let mut d = Distribution {
            account: "workflow".into(),
            region: "eu-west-2".into(),
            image_id: "ami-1".into(),
            how: "shared".into(),
            parameters: "/p/latest".into(),
            at: "t1".into(),
        };
        c.record_distribution("b1", &d).unwrap();
        d.image_id = "ami-2".into();
        c.record_distribution("b1", &d).unwrap();
        assert_eq!(c.distributions("b1").unwrap(), vec![d]);
        assert!(c.distributions("b2").unwrap().is_empty());
    }

    #[test]
    fn the_audit_chain_verifies_and_names_a_changed_row() {
        let (d, mut c) = catalog();
        for i in 0..5 {
            c.append_event(
                "2026-11-27T10:00:00Z",
                "amictl",
                "decision",
                "host",
                &format!("reason {i}"),
                &serde_json::json!({"i": i}),
            )
            .unwrap();
        }
        assert_eq!(c.verify_chain().unwrap(), Ok(5));
        assert!(
            c.conn.execute("UPDATE audit_events SET reason = 'x' WHERE seq = 3", []).is_err(),
            "updates are refused"
        );
        drop(c);
        // Tamper below SQL's guard: drop the trigger the way an attacker with the file could.
        let conn = Connection::open(d.path().join("state.db")).unwrap();
        conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit_events SET data = '{\"i\":99}' WHERE seq = 3;")
            .unwrap();
        drop(conn);
        let c = Catalog::open(&d.path().join("state.db")).unwrap();
        let broken = c.verify_chain().unwrap().unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("changed"));
    }

    #[test]
    fn opening_waits_for_a_writer_instead_of_failing() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        drop(Catalog::open(&path).unwrap());
        // A writer holds the database for a moment, as `apply` does while recording.
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let p = path.clone();
        let opener = std::thread::spawn(move || Catalog::open(&p).and_then(|c| c.versions(None)).map(|v| v.len()));
        std::thread::sleep(std::time::Duration::from_millis(300));
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(opener.join().unwrap().unwrap(), 0, "the second opener waited for the lock");
    }

    #[test]
    fn concurrent_openers_of_a_fresh_database_wait_and_migrate_once() {
        // `apply` and `images` started together both open a new file: the one that loses
        // the race to switch it to WAL and migrate must wait, not fail with "locked".
        for _ in 0..20 {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join("state.db");
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || Catalog::open(&p).map(|_| ()))
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
            assert_eq!(Catalog::open(&path).unwrap().versions(None).unwrap().len(), 0);
        }
    }

    #[test]
    fn a_second_lock_holder_is_refused_until_the_first_lets_go() {
        let (d, _c) = catalog();
        let state = d.path().join("state.db");
        let first = RunLock::acquire(&state, false, |_| {}).unwrap();
        match RunLock::acquire(&state, false, |_| {}) {
            Err(CatalogError::Locked { holder, .. }) => assert_eq!(holder, std::process::id().to_string()),
            other => panic!("expected Locked, got {:?}", other.err()),
        }
        drop(first);
        assert!(RunLock::acquire(&state, false, |_| {}).is_ok());
    }
}
