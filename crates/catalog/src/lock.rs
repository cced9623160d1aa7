//! The run lock: one acting run per state database; and `serve`'s leadership: one replica
//! runs the schedule while the others serve the API.
//!
//! On PostgreSQL both are session advisory locks on a connection each holder keeps for the
//! purpose: the server releases them when that connection ends, a killed holder included,
//! and `pg_stat_activity` names the holder. For a SQLite file, an `flock` on
//! `<state>.lock` (`<state>.leader` for leadership). The kernel releases it when the holder dies, so a crash
//! never leaves it stuck. Who holds it comes from the kernel too (`/proc/locks` lists the
//! pid that took each lock), so a refusal always names the holder; the lock file adds what
//! the holder wrote about itself (command, start time), written in place at a fixed width
//! so a reader never sees it empty.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::store::postgres::{LEADER, RUN, Session};
use crate::{CatalogError, Location, Result};

/// Bytes the holder's self-description takes at the start of the lock file.
const NOTE_WIDTH: usize = 256;

/// Who holds the run lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holding process, as the kernel reports it.
    pub pid: Option<u32>,
    /// What the holder says it is doing (`amictl apply, since …`), when it is that pid's.
    pub note: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.note) {
            (Some(pid), Some(note)) => write!(f, "pid {pid}, {note}"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            (None, Some(note)) => write!(f, "{note}"),
            (None, None) => write!(f, "holder unknown"),
        }
    }
}

/// An exclusive lock on a state database for the length of a run.
pub struct RunLock {
    _held: Held,
}

enum Held {
    File(#[allow(dead_code)] File),
    Session(#[allow(dead_code)] Box<Session>),
}

/// What a holder says about itself on PostgreSQL: `amictl apply pid 4242 on host`.
fn session_note(what: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{what} pid {} on {}", std::process::id(), host.trim())
}

fn pg_err(target: &crate::store::postgres::Target) -> impl Fn(crate::store::DbError) -> CatalogError + '_ {
    move |e| crate::db_error(Path::new(target.label()), e)
}

impl RunLock {
    /// [`RunLock::acquire`] for a state wherever it lives.
    pub fn acquire_at(
        location: &Location,
        wait: bool,
        what: &str,
        waiting: impl FnOnce(&Holder),
        stop: impl Fn() -> bool,
    ) -> Result<RunLock> {
        let target = match location {
            Location::File(path) => return RunLock::acquire(path, wait, what, waiting, stop),
            Location::Postgres(t) => t,
        };
        let note = session_note(what);
        let mut waiting = Some(waiting);
        loop {
            if let Some(s) = Session::try_lock(target, RUN, &note).map_err(pg_err(target))? {
                return Ok(RunLock { _held: Held::Session(Box::new(s)) });
            }
            let holder = RunLock::holder_at(location).unwrap_or(Holder { pid: None, note: None });
            if !wait {
                return Err(CatalogError::Locked { path: target.label().into(), holder });
            }
            if let Some(w) = waiting.take() {
                w(&holder);
            }
            for _ in 0..5 {
                if stop() {
                    return Err(CatalogError::Io {
                        path: target.label().into(),
                        message: "stopped while waiting for the lock".into(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    /// [`RunLock::holder`] for a state wherever it lives.
    pub fn holder_at(location: &Location) -> Option<Holder> {
        match location {
            Location::File(path) => RunLock::holder(path),
            Location::Postgres(t) => {
                Session::holder(t, RUN).ok().flatten().map(|(_, note)| Holder { pid: None, note: Some(note) })
            }
        }
    }
}

/// The right to run `serve`'s schedule, held by one replica of a state at a time. Lost
/// only with the holder (or its connection): the next replica to ask takes it.
pub struct Leadership {
    held: Held,
}

impl Leadership {
    /// Takes the leadership if no live replica holds it.
    pub fn try_take(location: &Location, what: &str) -> Result<Option<Leadership>> {
        match location {
            Location::File(state) => {
                use rustix::fs::{FlockOperation, flock};
                let path = state.with_extension("leader");
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io(&path))?;
                Ok(flock(&file, FlockOperation::NonBlockingLockExclusive)
                    .is_ok()
                    .then_some(Leadership { held: Held::File(file) }))
            }
            Location::Postgres(t) => Ok(Session::try_lock(t, LEADER, &session_note(what))
                .map_err(pg_err(t))?
                .map(|s| Leadership { held: Held::Session(Box::new(s)) })),
        }
    }

    /// Whether it is still held (a PostgreSQL session can end under its holder: the
    /// server restarted, the network failed).
    pub fn alive(&mut self) -> bool {
        match &mut self.held {
            Held::File(_) => true,
            Held::Session(s) => s.alive(),
        }
    }

    /// Who leads, when someone does.
    pub fn holder(location: &Location) -> Option<String> {
        match location {
            Location::File(_) => None,
            Location::Postgres(t) => Session::holder(t, LEADER).ok().flatten().map(|(_, note)| note),
        }
    }
}

pub(crate) fn lock_path(state: &Path) -> PathBuf {
    state.with_extension("lock")
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CatalogError + '_ {
    move |e| CatalogError::Io { path: path.to_path_buf(), message: e.to_string() }
}

impl RunLock {
    /// Takes the lock for `what` (e.g. `amictl apply`). With `wait`, waits (calling
    /// `waiting` once with the holder) until it is free or `stop` says to give up; without,
    /// a held lock is [`CatalogError::Locked`] naming the holder.
    pub fn acquire(
        state: &Path,
        wait: bool,
        what: &str,
        waiting: impl FnOnce(&Holder),
        stop: impl Fn() -> bool,
    ) -> Result<RunLock> {
        use rustix::fs::{FlockOperation, flock};
        let path = lock_path(state);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(&path))?;
        }
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        // A few quick tries first: a reader's probe (see [`RunLock::holder`]) holds the lock
        // shared for a moment, and that is not another run.
        let mut free = false;
        for _ in 0..5 {
            if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                free = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !free {
            let holder = holder_of(&path).unwrap_or(Holder { pid: None, note: None });
            if !wait {
                return Err(CatalogError::Locked { path, holder });
            }
            waiting(&holder);
            // Waiting is polled, so an operator's Ctrl-C (`stop`) ends it.
            loop {
                if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                    break;
                }
                if stop() {
                    return Err(CatalogError::Io { path, message: "stopped while waiting for the lock".into() });
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        let since =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let note = format!("pid={} what={} since={since}", std::process::id(), what.replace(char::is_whitespace, "_"));
        let mut bytes = note.into_bytes();
        bytes.truncate(NOTE_WIDTH - 1);
        bytes.resize(NOTE_WIDTH - 1, b' ');
        bytes.push(b'\n');
        // In place, never truncated first: a reader sees the old note or the new one.
        file.write_all_at(&bytes, 0).map_err(io(&path))?;
        Ok(RunLock { _held: Held::File(file) })
    }

    /// Who holds the lock on `state` now, without taking it; `None` when nobody does.
    pub fn holder(state: &Path) -> Option<Holder> {
        holder_of(&lock_path(state))
    }
}

fn holder_of(path: &Path) -> Option<Holder> {
    let stat = rustix::fs::stat(path).ok()?;
    // The kernel's word first. A pid of 0 means the holder is in another PID namespace.
    let kernel = std::fs::read_to_string("/proc/locks")
        .ok()
        .and_then(|locks| kernel_holder(&locks, stat.st_dev, stat.st_ino))
        .filter(|pid| *pid > 0);
    if kernel.is_none() && !held(path) {
        return None;
    }
    let note = read_note(path);
    Some(match (kernel, note) {
        (Some(k), Some((n, text))) if k == n => Holder { pid: Some(k), note: Some(text) },
        (Some(k), _) => Holder { pid: Some(k), note: None },
        // Held, but /proc/locks does not say by whom (another device numbering, another
        // PID namespace): the holder's own note.
        (None, Some((n, text))) => Holder { pid: Some(n), note: Some(text) },
        (None, None) => Holder { pid: None, note: None },
    })
}

/// Whether someone holds the lock, asked of the lock itself: a shared, non-blocking
/// attempt (released at once) fails only while an exclusive holder has it.
fn held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

/// The pid holding an exclusive `flock` on the file with this device and inode, from
/// `/proc/locks` lines such as `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF`.
fn kernel_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed too, as `1: -> FLOCK …`; only the holder counts.
        if fields.get(1) != Some(&"FLOCK") || fields.get(3) != Some(&"WRITE") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let (maj, min, inode) = (id.next()?, id.next()?, id.next()?);
        let same = u32::from_str_radix(maj, 16).ok()? == major
            && u32::from_str_radix(min, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        same.then(|| fields.get(4)?.parse().ok()).flatten()
    })
}

/// The holder's note: its pid and a sentence (`amictl apply, since 2026-12-01T21:00:00Z`).
fn read_note(path: &Path) -> Option<(u32, String)> {
    let mut text = String::new();
    File::open(path).ok()?.take(NOTE_WIDTH as u64).read_to_string(&mut text).ok()?;
    let mut pid = None;
    let mut what = None;
    let mut since = None;
    for part in text.split_whitespace() {
        match part.split_once('=') {
            Some(("pid", p)) => pid = p.parse().ok(),
            Some(("what", w)) => what = Some(w.replace('_', " ")),
            Some(("since", s)) => since = s.parse::<i64>().ok(),
            _ => {}
        }
    }
    let what = what.unwrap_or_else(|| "amictl".into());
    let since = since
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s as u64)))
        .map(|t| format!(", since {}", humantime_utc(t)))
        .unwrap_or_default();
    Some((pid?, format!("{what}{since}")))
}

/// `2026-12-01T21:00:00Z` without a time crate (the catalog keeps its dependencies few).
fn humantime_utc(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_holder_is_refused_naming_the_first_until_it_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state.db");
        assert_eq!(RunLock::holder(&state), None, "no lock file yet");
        let first = RunLock::acquire(&state, false, "amictl apply", |_| {}, || false).unwrap();
        let me = std::process::id();
        let holder = RunLock::holder(&state).expect("held");
        assert_eq!(holder.pid, Some(me));
        assert!(holder.note.as_deref().is_some_and(|n| n.starts_with("amictl apply, since 20")), "{holder:?}");
        match RunLock::acquire(&state, false, "amictl apply", |_| {}, || false) {
            Err(CatalogError::Locked { holder, .. }) => assert_eq!(holder.pid, Some(me)),
            other => panic!("expected Locked, got {:?}", other.err()),
        }
        drop(first);
        assert_eq!(RunLock::holder(&state), None, "released with the file closed");
        assert!(RunLock::acquire(&state, false, "amictl apply", |_| {}, || false).is_ok());
    }

    #[test]
    fn the_kernel_names_the_holder_by_device_and_inode() {
        let dev = rustix::fs::makedev(0xfd, 0x01);
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 5151 fd:01:1234567 0 EOF\n2: POSIX  ADVISORY  WRITE 77 fd:01:99 0 EOF\n";
        assert_eq!(kernel_holder(locks, dev, 1_234_567), Some(4242));
        assert_eq!(kernel_holder(locks, dev, 99), None, "a POSIX lock is not the run lock");
        assert_eq!(kernel_holder(locks, rustix::fs::makedev(8, 1), 1_234_567), None);
        assert_eq!(
            humantime_utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_158_800)),
            "2026-12-01T21:00:00Z"
        );
    }
}
