//! Keeping the history from vanishing or rotting quietly.
//!
//! - A state file that is **missing where a history existed** is an error, not a fresh
//!   start: the run lock (`state.lock`, made by every `apply`) or the setup lock beside the
//!   database says amictl kept state here. A database that is **empty** (0 bytes) is an
//!   error too — SQLite would silently treat it as new.
//! - Read-only commands never create a state file: with no history they read an empty
//!   in-memory catalog.
//! - Every open runs `PRAGMA quick_check`; `audit verify` runs the full
//!   `integrity_check`, checks that the append-only triggers are present, and compares
//!   each build's manifest and artifacts with the digest its audit event recorded.
//! - [`Catalog::backup`] copies the live database with SQLite's online backup.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::{Catalog, CatalogError, Package, Result};

/// The triggers that make the audit log append-only.
pub const SAFEGUARDS: &[&str] = &["audit_no_update", "audit_no_delete"];

/// What is at the state's path before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateFile {
    Present,
    Missing,
    Empty,
}

fn state_file(path: &Path) -> Result<StateFile> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(CatalogError::Io { path: path.into(), message: "is not a regular file".into() }),
        Ok(m) if m.len() == 0 => Ok(StateFile::Empty),
        Ok(_) => Ok(StateFile::Present),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::Missing),
        Err(e) => Err(CatalogError::Io { path: path.into(), message: e.to_string() }),
    }
}

/// The files whose presence says amictl kept a history at `path`.
pub(crate) fn markers(path: &Path) -> [PathBuf; 2] {
    [crate::lock::lock_path(path), setup_lock(path)]
}

pub(crate) fn setup_lock(path: &Path) -> PathBuf {
    path.with_extension("setup-lock")
}

fn marker_of(path: &Path) -> Option<PathBuf> {
    markers(path).into_iter().find(|m| m.exists())
}

/// The error for a state that is gone or empty where `marker` says a history existed.
fn missing(path: &Path, marker: Option<PathBuf>, empty: bool) -> CatalogError {
    CatalogError::Missing { path: path.into(), marker, empty }
}

/// The digest of a package manifest recorded in a build's audit outcome: SHA-256 over one
/// `name\tversion\tarch\tsource\tsource_version` line per package, sorted.
pub fn manifest_digest(packages: &[Package]) -> String {
    let mut lines: Vec<String> = packages
        .iter()
        .map(|p| format!("{}\t{}\t{}\t{}\t{}\n", p.name, p.version, p.arch, p.source_name, p.source_version))
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A record whose content no longer matches what its audit event recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordMismatch {
    /// The audit event that recorded it.
    pub seq: i64,
    /// The build.
    pub build_id: String,
    /// What differs (`manifest`, `artifacts`).
    pub what: &'static str,
}

/// What [`Catalog::check_records`] compared.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecordCheck {
    /// Builds whose manifest digest was recorded and compared.
    pub manifests: usize,
    /// Builds whose artifacts were compared.
    pub artifacts: usize,
    /// Those that differ.
    pub mismatches: Vec<RecordMismatch>,
}

impl Catalog {
    /// Opens the state for a command that only reads: never creates a file. With no
    /// history at `path`, an empty in-memory catalog; with a history gone, an error.
    pub fn open_read(path: &Path) -> Result<Catalog> {
        // A first `apply` may be creating the file right now, under the setup lock; one that
        // began after this look is waited for below, before "missing" or "empty" is said.
        let shared = || match std::fs::File::open(setup_lock(path)) {
            Ok(f) => {
                rustix::fs::flock(&f, rustix::fs::FlockOperation::LockShared)
                    .map_err(|e| CatalogError::Io { path: setup_lock(path), message: e.to_string() })?;
                Ok(Some(f))
            }
            Err(_) => Ok(None),
        };
        // Decided under the setup lock when there is one; without it (it was not there when
        // looked for), only the run lock can show a history — a setup lock appearing later
        // is a first write under way, taken and waited for on the next turn.
        let (state, marker, _guard) = loop {
            let guard = shared()?;
            let state = state_file(path)?;
            if state == StateFile::Present {
                break (state, None, guard);
            }
            if guard.is_some() {
                break (state, marker_of(path), guard);
            }
            if setup_lock(path).exists() {
                continue;
            }
            let run_lock = crate::lock::lock_path(path);
            break (state, run_lock.exists().then_some(run_lock), None);
        };
        match state {
            StateFile::Present => {}
            StateFile::Empty => return Err(missing(path, marker, true)),
            StateFile::Missing => {
                if let Some(marker) = marker {
                    return Err(missing(path, Some(marker), false));
                }
                let conn = Connection::open_in_memory().map_err(|source| crate::sqlite_error(path, source))?;
                let mut cat = Catalog::sqlite(conn, path);
                cat.migrate()?;
                return Ok(cat);
            }
        }
        // Read-only: SQLite then neither replays nor removes a `-wal` file, so a read of a
        // damaged state changes nothing on disk.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| crate::sqlite_error(path, source))?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|source| crate::sqlite_error(path, source))?;
        let mut cat = Catalog::sqlite(conn, path);
        cat.quick_check()?;
        let version: i64 = cat.store.get_mut().schema_version().map_err(|e| cat.err(e))?;
        if version == 0 {
            return Err(CatalogError::Damaged {
                path: path.into(),
                check: "schema",
                problems: "the file holds no amictl schema (version 0): another database, or a stray write-ahead log"
                    .into(),
            });
        }
        if version >= crate::schema::MIGRATIONS.len() as i64 {
            return Ok(cat);
        }
        // A state an older amictl wrote: upgraded in memory for this read (the file is
        // upgraded by the next command that writes).
        let e = |source| crate::sqlite_error(path, source);
        let mut memory = Connection::open_in_memory().map_err(e)?;
        {
            let mut store = cat.store.borrow_mut();
            let conn = store.as_sqlite().expect("a SQLite store");
            let b = rusqlite::backup::Backup::new(conn, &mut memory).map_err(e)?;
            b.run_to_completion(256, std::time::Duration::ZERO, None).map_err(e)?;
        }
        memory.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
        let mut cat = Catalog::sqlite(memory, path);
        cat.migrate()?;
        Ok(cat)
    }

    /// Refuses a missing or empty state where a history existed. `existed` is whether a
    /// marker was there before this open made the setup lock; the caller holds that lock.
    pub(crate) fn check_history(path: &Path, existed: Option<PathBuf>) -> Result<bool> {
        match state_file(path)? {
            StateFile::Present => Ok(true),
            StateFile::Empty => Err(missing(path, existed.or_else(|| marker_of(path)), true)),
            StateFile::Missing => match existed {
                Some(marker) => Err(missing(path, Some(marker), false)),
                None => Ok(false),
            },
        }
    }

    /// `PRAGMA quick_check`: the file's structure (pages, records, free list), fast enough
    /// for every open.
    pub(crate) fn quick_check(&self) -> Result<()> {
        let problems = self.check("quick_check(5)")?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::Damaged { path: self.path.clone(), check: "quick_check", problems: problems.join("; ") })
        }
    }

    /// `PRAGMA integrity_check`: everything quick_check does, and that every index matches
    /// its table. Empty when the database is sound (PostgreSQL checks its own pages).
    pub fn integrity(&self) -> Result<Vec<String>> {
        self.check("integrity_check(20)")
    }

    fn check(&self, pragma: &str) -> Result<Vec<String>> {
        let mut store = self.store.borrow_mut();
        let Some(conn) = store.as_sqlite() else { return Ok(Vec::new()) };
        let e = |source| crate::sqlite_error(&self.path, source);
        let mut stmt = conn.prepare(&format!("PRAGMA {pragma}")).map_err(e)?;
        let lines = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(e)?;
        let lines = lines.collect::<rusqlite::Result<Vec<String>>>().map_err(e)?;
        Ok(if lines == ["ok"] { Vec::new() } else { lines })
    }

    /// The append-only triggers that are missing or not as amictl made them (dropped, on
    /// another table, disabled, with a condition that disables them).
    pub fn missing_safeguards(&self) -> Result<Vec<&'static str>> {
        let present = self.store.borrow_mut().safeguards().map_err(|e| self.err(e))?;
        Ok(SAFEGUARDS.iter().filter(|s| !present.iter().any(|p| p == *s)).copied().collect())
    }

    /// Runs SQL as it is on the SQLite file underneath (tests that tamper as an attacker
    /// with the file would).
    #[cfg(test)]
    pub(crate) fn raw(&self, sql: &str) -> rusqlite::Result<()> {
        self.store.borrow_mut().as_sqlite().expect("SQLite").execute_batch(sql)
    }

    /// Compares each build's manifest and artifacts with what its `build.outcome` event
    /// recorded (events from before the digest was recorded are skipped).
    pub fn check_records(&self) -> Result<RecordCheck> {
        let mut check = RecordCheck::default();
        let events = self.events(None)?;
        // An available version some event made available: otherwise its record was made,
        // or its events removed, by hand.
        for v in self.versions(None)?.into_iter().filter(|v| v.state == crate::BuildState::Available) {
            let recorded =
                events.iter().any(|e| e.data["build_id"] == v.build_id.as_str() && e.data["state"] == "available");
            if !recorded {
                check.mismatches.push(RecordMismatch { seq: 0, build_id: v.build_id, what: "outcome" });
            }
        }
        for event in events
            .into_iter()
            .filter(|e| e.kind == "build.outcome" || e.kind == "recover.outcome" || e.kind == "imported")
        {
            let Some(build_id) = event.data["build_id"].as_str() else { continue };
            if event.data["result"] != "done" {
                continue;
            }
            if let Some(recorded) = event.data["manifest_sha256"].as_str() {
                check.manifests += 1;
                if manifest_digest(&self.packages(build_id)?) != recorded {
                    check.mismatches.push(RecordMismatch {
                        seq: event.seq,
                        build_id: build_id.into(),
                        what: "manifest",
                    });
                }
            }
            if let Some(recorded) = event.data.get("artifacts").filter(|a| a.is_array()) {
                check.artifacts += 1;
                let now = serde_json::to_value(self.artifacts(build_id)?).unwrap_or_default();
                if &now != recorded {
                    check.mismatches.push(RecordMismatch {
                        seq: event.seq,
                        build_id: build_id.into(),
                        what: "artifacts",
                    });
                }
            }
        }
        Ok(check)
    }

    /// Copies the database to `dest` with SQLite's online backup (runs may go on meanwhile);
    /// written beside `dest` and renamed, so `dest` is never half a database. Refuses to
    /// overwrite. Returns the copy's size in bytes.
    pub fn backup(&self, dest: &Path) -> Result<u64> {
        let io = |message: String| CatalogError::Backup { dest: dest.into(), message };
        // A symlink (even a dangling one) is something there too.
        if std::fs::symlink_metadata(dest).is_ok() {
            return Err(io("already exists; choose a new name (a backup never overwrites)".into()));
        }
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.{}.partial",
            dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into()),
            std::process::id()
        ));
        let mut store = self.store.borrow_mut();
        let Some(conn) = store.as_sqlite() else {
            return Err(io(
                "a PostgreSQL state is backed up with pg_dump, or copied with `amictl state copy --to FILE`".into(),
            ));
        };
        let result = (|| {
            let mut copy =
                Connection::open(&tmp).map_err(|source| CatalogError::Sqlite { path: tmp.clone(), source })?;
            {
                let e = |source| crate::sqlite_error(&self.path, source);
                let b = rusqlite::backup::Backup::new(conn, &mut copy).map_err(e)?;
                b.run_to_completion(256, std::time::Duration::from_millis(5), None).map_err(e)?;
            }
            let problems: String = copy
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|source| CatalogError::Sqlite { path: tmp.clone(), source })?;
            if problems != "ok" {
                return Err(io(format!("the copy fails integrity_check: {problems}")));
            }
            drop(copy);
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(e.to_string()))?;
            std::fs::rename(&tmp, dest).map_err(|e| io(e.to_string()))?;
            std::fs::metadata(dest).map(|m| m.len()).map_err(|e| io(e.to_string()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewEvent;
    use crate::versions::tests_support::build;

    fn package(version: &str) -> Package {
        Package {
            name: "openssl".into(),
            version: version.into(),
            arch: "amd64".into(),
            source_name: "openssl".into(),
            source_version: version.into(),
        }
    }

    /// A state with one build (manifest and artifact) whose outcome event recorded both.
    fn history(path: &Path) {
        let mut c = Catalog::open(path).unwrap();
        let reason = serde_json::json!([]);
        c.insert_build(&build("b-0123456789", "v1", &reason)).unwrap();
        let artifact = crate::Artifact {
            kind: crate::ArtifactKind::RootfsTarZst,
            path: "/img/rootfs.tar".into(),
            sha256: "ab".repeat(32),
            size: 10,
        };
        let packages = [package("6.3.0")];
        c.record_outputs("b-0123456789", &packages, std::slice::from_ref(&artifact), &[]).unwrap();
        for state in [crate::BuildState::Building, crate::BuildState::Testing, crate::BuildState::Available] {
            c.set_state("b-0123456789", state, None, "2026-12-01T00:00:00Z").unwrap();
        }
        let data = serde_json::json!({
            "build_id": "b-0123456789", "result": "done", "state": "available", "artifacts": [artifact],
            "manifest_sha256": manifest_digest(&packages),
        });
        let ev = NewEvent {
            time: "2026-12-01T00:00:00Z",
            actor: "t",
            kind: "build.outcome",
            subject: "host@v1",
            reason: "built",
            data: &data,
            opens: false,
            closes: None,
        };
        c.append_event(&ev).unwrap();
    }

    #[test]
    fn a_read_while_the_first_write_creates_the_state_never_calls_it_lost() {
        for _ in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let writer = {
                let path = path.clone();
                std::thread::spawn(move || Catalog::open(&path).map(|_| ()))
            };
            while !writer.is_finished() {
                match Catalog::open_read(&path) {
                    Ok(_) => {}
                    Err(e @ CatalogError::Missing { .. }) => panic!("a history being created read as lost: {e}"),
                    Err(_) => {} // e.g. the file exists but is not yet a database: not this race
                }
            }
            writer.join().unwrap().unwrap();
            assert!(Catalog::open_read(&path).is_ok());
        }
    }

    #[test]
    fn a_read_without_history_creates_nothing_and_a_lost_history_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/state.db");
        let c = Catalog::open_read(&path).unwrap();
        assert_eq!(c.event_count().unwrap(), 0);
        assert!(!d.path().join("sub").exists(), "nothing was created");
        history(&path);
        std::fs::write(crate::lock::lock_path(&path), "").unwrap();
        std::fs::remove_file(&path).unwrap();
        for result in [Catalog::open_read(&path), Catalog::open(&path)] {
            let err = result.err().expect("a lost history is an error").to_string();
            assert!(err.contains("is missing") && err.contains("Restore the latest backup"), "{err}");
        }
        assert!(!path.exists(), "and the write open did not start a new one");
        std::fs::write(&path, "").unwrap();
        let err = Catalog::open(&path).err().unwrap().to_string();
        assert!(err.contains("is empty (0 bytes)"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the empty file was left as it was");
    }

    #[test]
    fn a_changed_manifest_a_broken_index_and_dropped_triggers_are_found() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        history(&path);
        {
            let c = Catalog::open(&path).unwrap();
            assert!(c.integrity().unwrap().is_empty());
            assert!(c.missing_safeguards().unwrap().is_empty());
            let check = c.check_records().unwrap();
            assert_eq!((check.manifests, check.artifacts, check.mismatches.len()), (1, 1, 0));
        }
        // One byte in the table row (`6.3.0` → `6>3.0`) and one in the index's copy of the
        // build id: what a random flip did in the adversarial pass.
        let (page_size, index_root) = {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
            let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
            let root: i64 = conn
                .query_row("SELECT rootpage FROM sqlite_master WHERE name = 'packages_build'", [], |r| r.get(0))
                .unwrap();
            (size as usize, root as usize)
        };
        let mut bytes = std::fs::read(&path).unwrap();
        let find = |bytes: &[u8], needle: &[u8], from: usize, to: usize| {
            bytes[from..to].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
        };
        let v = find(&bytes, b"6.3.0", 0, bytes.len()).expect("the row holds the version");
        bytes[v + 1] = b'>';
        std::fs::write(&path, &bytes).unwrap();
        {
            let c = Catalog::open(&path).unwrap();
            assert_eq!(c.packages("b-0123456789").unwrap()[0].version, "6>3.0");
            assert!(c.integrity().unwrap().is_empty(), "SQLite cannot see a changed value");
            let check = c.check_records().unwrap();
            assert_eq!(check.mismatches.len(), 1, "the recorded digest can");
            assert_eq!(check.mismatches[0].what, "manifest");
        }
        let index_page = (index_root - 1) * page_size..index_root * page_size;
        let at = find(&bytes, b"b-0123456789", index_page.start, index_page.end).expect("the index holds the build id");
        bytes[at + 2] = b'9';
        std::fs::write(&path, &bytes).unwrap();
        let c = Catalog::open(&path).unwrap();
        assert!(!c.integrity().unwrap().is_empty(), "integrity_check finds the index that no longer matches");
        c.raw("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;").unwrap();
        assert_eq!(c.missing_safeguards().unwrap(), vec!["audit_no_update", "audit_no_delete"]);
    }

    #[test]
    fn a_damaged_file_is_refused_on_open() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        history(&path);
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096.min(bytes.len() / 2);
        // Scribble over the second page's b-tree header.
        for b in &mut bytes[page..page + 12] {
            *b = 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = Catalog::open_read(&path).err().expect("damage is refused").to_string();
        assert!(err.contains("damaged") || err.contains("malformed"), "{err}");
    }

    #[test]
    fn a_backup_is_a_whole_database_and_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        history(&path);
        let c = Catalog::open(&path).unwrap();
        let dest = d.path().join("backup.db");
        assert!(c.backup(&dest).unwrap() > 0);
        let copy = Catalog::open_read(&dest).unwrap();
        assert_eq!(copy.event_count().unwrap(), 1);
        assert_eq!(copy.packages("b-0123456789").unwrap()[0].version, "6.3.0");
        let err = c.backup(&dest).err().unwrap().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert!(
            std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".partial"))
        );
    }

    #[test]
    fn a_disabled_trigger_a_version_no_event_made_and_a_dangling_backup_link_are_caught() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        history(&path);
        let c = Catalog::open(&path).unwrap();
        c.raw(
                "DROP TRIGGER audit_no_delete;
                 CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events WHEN 0 BEGIN SELECT RAISE(ABORT, 'x'); END;",
            )
            .unwrap();
        assert_eq!(c.missing_safeguards().unwrap(), vec!["audit_no_delete"], "same name, not the same trigger");
        c.raw("DELETE FROM audit_events;").unwrap();
        let check = c.check_records().unwrap();
        assert!(check.mismatches.iter().any(|m| m.what == "outcome"), "{check:?}");
        let dest = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dest).unwrap();
        assert!(c.backup(&dest).err().unwrap().to_string().contains("already exists"));
    }

    #[test]
    fn an_old_state_is_upgraded_in_memory_for_a_read_and_left_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            for m in &crate::schema::MIGRATIONS[..3] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let c = Catalog::open_read(&path).unwrap();
        assert!(c.versions(None).unwrap().is_empty(), "the read sees the current schema");
        drop(c);
        assert_eq!(std::fs::read(&path).unwrap(), before, "and the file is untouched");
    }
}
