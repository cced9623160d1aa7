//! Runs one child process with a deadline, streaming its output as it arrives.
//!
//! The child gets its own process group so a timeout kills everything the step started
//! (`killpg`), not just the shell. Waiting uses `poll(2)` on the pipes plus a pidfd, so a
//! step costs no sleeps and no helper threads — the per-step overhead is a fork/exec and a
//! few syscalls. A background process that keeps the pipes open after the step's own
//! process exits is given a short grace period, so `daemon &` cannot hang a build the way
//! it hangs naive `Wait`s.
//!
//! **Nothing a step starts outlives it.** awstoe documents no behaviour for processes a
//! step leaves behind; amictl ends them all when the step ends (success, failure or
//! timeout). The process is made a *child subreaper*, so an orphan — even one that called
//! `setsid` or double-forked out of the step's process group — is reparented to it rather
//! than to init; when the step ends, its process group is killed, and then every such
//! orphan, until none is left. A daemon that should keep running must be started through
//! the init system (`systemctl start …`), as AWS's own components do, or — when a later
//! step needs it (a test server) — be asked for: a process whose environment holds
//! [`KEEP_RUNNING`]`=1` and that left the step's process group (`setsid`) is left alone.
//! In the rootfs sandbox everything ends with the sandbox anyway.
//!
//! Only the last [`STDOUT_KEPT`] bytes of stdout are kept in memory (they become the
//! step's `stdout` output); all of it reaches the caller's sink (the step log).

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process_group, pidfd_open};

/// The process group of the step running now (0 when none). A signal handler in the binary
/// reads it to kill the step's whole group when amictl itself is interrupted: steps run in
/// their own group, so a terminal's Ctrl-C would otherwise never reach them.
pub static RUNNING_GROUP: AtomicI32 = AtomicI32::new(0);

/// Kills the running step's process group, if any. Async-signal-safe (an atomic load and
/// `kill(2)`), so it may be called from a signal handler.
pub fn kill_running_group() {
    let pgid = RUNNING_GROUP.load(Ordering::SeqCst);
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// A signal that arrived while a step ran (0: none): once the step's processes are swept,
/// the process exits with 128 + it.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// For a signal handler (async-signal-safe: atomics and `kill(2)`): when a step is
/// running, kills its process group and has [`run`] end what it left — orphans that
/// called `setsid` included — and then exit with 128 + `signal`; returns false when no
/// step runs (the caller then lets the signal end the process as usual).
pub fn interrupt(signal: i32) -> bool {
    if RUNNING_STEPS.load(Ordering::SeqCst) == 0 {
        return false;
    }
    INTERRUPTED.store(signal, Ordering::SeqCst);
    kill_running_group();
    true
}

/// How long pipes may stay open after the step's process exited.
const PIPE_GRACE: Duration = Duration::from_millis(250);

/// The most stdout kept in memory: the tail, for the step's `stdout` output.
pub const STDOUT_KEPT: usize = 256 << 10;

/// The environment variable that asks for a process to outlive its step (see the module
/// documentation): `AMICTL_KEEP_RUNNING=1 setsid server &`.
pub const KEEP_RUNNING: &str = "AMICTL_KEEP_RUNNING";

/// Steps running in this process now. Orphans are swept only while one runs: with several
/// (tests run steps side by side), an orphan could be another step's.
static RUNNING_STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
}

#[derive(Debug)]
pub struct Finished {
    pub exit: Exit,
    /// The last [`STDOUT_KEPT`] bytes of stdout.
    pub stdout: Vec<u8>,
    /// How many bytes of stdout there were in all.
    pub stdout_total: u64,
    /// Processes the step left behind that were ended when it ended.
    pub leftovers: usize,
}

/// Spawns `cmd` and waits until it exits or `deadline` passes. Every chunk of output is
/// handed to `sink` as it arrives; stdout is also collected for the step's outputs.
pub fn run(cmd: &mut Command, deadline: Option<Instant>, sink: &mut dyn FnMut(Stream, &[u8])) -> io::Result<Finished> {
    static SUBREAPER: std::sync::Once = std::sync::Once::new();
    SUBREAPER.call_once(|| {
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    });
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    RUNNING_STEPS.fetch_add(1, Ordering::SeqCst);
    let spawned = cmd.spawn();
    let result = spawned.and_then(|mut child| {
        let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("child has no pid"))?;
        RUNNING_GROUP.store(pid.as_raw_nonzero().get(), Ordering::SeqCst);
        let result = wait_for(&mut child, pid, deadline, sink);
        RUNNING_GROUP.store(0, Ordering::SeqCst);
        let leftovers = end_leftovers(pid);
        let signal = INTERRUPTED.load(Ordering::SeqCst);
        if signal != 0 {
            std::process::exit(128 + signal);
        }
        result.map(|mut f| {
            f.leftovers = leftovers;
            f
        })
    });
    RUNNING_STEPS.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Ends what a finished step left: its process group, then — while it is the only step
/// running here — every orphan reparented to this process, until none is left.
fn end_leftovers(group: Pid) -> usize {
    let _ = kill_process_group(group, Signal::KILL);
    if RUNNING_STEPS.load(Ordering::SeqCst) != 1 {
        return 0;
    }
    let me = rustix::process::getpid();
    let mut ended = 0;
    for _ in 0..100 {
        let orphans: Vec<Pid> = children_of(me).into_iter().filter(|p| !kept(*p)).collect();
        if orphans.is_empty() {
            break;
        }
        for pid in &orphans {
            let _ = rustix::process::kill_process(*pid, Signal::KILL);
        }
        for pid in orphans {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            ended += 1;
        }
    }
    ended
}

/// Whether `pid` asked to outlive its step (`AMICTL_KEEP_RUNNING=1` in its environment).
fn kept(pid: Pid) -> bool {
    let wanted = format!("{KEEP_RUNNING}=1");
    std::fs::read(format!("/proc/{}/environ", pid.as_raw_nonzero()))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
}

/// The processes whose parent is `parent`, from `/proc/<pid>/stat`.
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or_default();
            after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent.as_raw_nonzero().get())
        })
        .filter_map(Pid::from_raw)
        .collect()
}

fn wait_for(
    child: &mut Child,
    pid: Pid,
    deadline: Option<Instant>,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> io::Result<Finished> {
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).ok();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut stdout = Vec::new();
    let mut stdout_total = 0u64;
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut grace_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];

    loop {
        if status.is_none() && pidfd.is_none() {
            status = child.try_wait()?;
        }
        if status.is_some() && grace_until.is_none() {
            grace_until = Some(Instant::now() + PIPE_GRACE);
        }
        if out.is_none() && err.is_none() && status.is_some() {
            break;
        }
        let now = Instant::now();
        let limit = match (status.is_some(), deadline, grace_until) {
            (true, _, Some(g)) => Some(g),
            (false, Some(d), _) => Some(d),
            _ => None,
        };
        // Without a pidfd (old kernels), fall back to short polls of try_wait.
        let limit = if pidfd.is_none() && status.is_none() {
            Some(limit.map_or(now + Duration::from_millis(10), |l| l.min(now + Duration::from_millis(10))))
        } else {
            limit
        };
        if let Some(l) = limit
            && l <= now
        {
            if status.is_some() {
                break; // grace over: leave lingering background writers alone
            }
            if deadline.is_some_and(|d| d <= now) {
                let _ = kill_process_group(pid, Signal::KILL);
                status = Some(child.wait()?);
                timed_out = true;
                grace_until = Some(Instant::now() + PIPE_GRACE);
                continue;
            }
        }
        let timeout = limit.map(|l| {
            let d = l.saturating_duration_since(now);
            Timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ }
        });
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        let mut kinds: Vec<u8> = Vec::with_capacity(3);
        if let Some(fd) = &out {
            fds.push(PollFd::new(fd, PollFlags::IN));
            kinds.push(0);
        }
        if let Some(fd) = &err {
            fds.push(PollFd::new(fd, PollFlags::IN));
            kinds.push(1);
        }
        if let (Some(fd), None) = (&pidfd, status) {
            fds.push(PollFd::new(fd, PollFlags::IN));
            kinds.push(2);
        }
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<(u8, bool)> = fds.iter().zip(&kinds).map(|(fd, k)| (*k, !fd.revents().is_empty())).collect();
        drop(fds);
        for (kind, is_ready) in ready {
            if !is_ready {
                continue;
            }
            match kind {
                0 => match out.as_mut().map(|r| read_some(r, &mut buf)).transpose()? {
                    Some(0) | None => out = None,
                    Some(n) => {
                        stdout_total += n as u64;
                        stdout.extend_from_slice(&buf[..n]);
                        if stdout.len() > 2 * STDOUT_KEPT {
                            stdout.drain(..stdout.len() - STDOUT_KEPT);
                        }
                        sink(Stream::Stdout, &buf[..n]);
                    }
                },
                1 => match err.as_mut().map(|r| read_some(r, &mut buf)).transpose()? {
                    Some(0) | None => err = None,
                    Some(n) => sink(Stream::Stderr, &buf[..n]),
                },
                _ => status = Some(child.wait()?),
            }
        }
    }
    let exit = if timed_out {
        Exit::TimedOut
    } else {
        let st = status.expect("loop ends only after the child was reaped");
        match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            _ => Exit::Code(-1),
        }
    };
    if stdout.len() > STDOUT_KEPT {
        stdout.drain(..stdout.len() - STDOUT_KEPT);
    }
    Ok(Finished { exit, stdout, stdout_total, leftovers: 0 })
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash(script: &str, deadline: Option<Instant>) -> (Finished, String) {
        let mut err = Vec::new();
        let f = run(Command::new("bash").arg("-c").arg(script), deadline, &mut |s, b| {
            if s == Stream::Stderr {
                err.extend_from_slice(b)
            }
        })
        .unwrap();
        (f, String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn collects_stdout_and_streams_stderr() {
        let (f, err) = bash("echo out; echo err >&2; exit 3", None);
        assert!(matches!(f.exit, Exit::Code(3)));
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(err, "err\n");
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let marker = tempfile::NamedTempFile::new().unwrap();
        let path = marker.path().display().to_string();
        let start = Instant::now();
        let (f, _) = bash(
            &format!("(sleep 1; echo alive > {path}) & sleep 30"),
            Some(Instant::now() + Duration::from_millis(300)),
        );
        assert!(matches!(f.exit, Exit::TimedOut));
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "the background child was killed with the group");
    }

    #[test]
    fn a_background_writer_does_not_hang_the_step() {
        let start = Instant::now();
        let (f, _) = bash("sleep 5 & echo done", None);
        assert!(matches!(f.exit, Exit::Code(0)));
        assert_eq!(f.stdout, b"done\n");
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
