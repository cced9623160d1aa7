//! # sandbox — run code inside a root filesystem
//!
//! Component documents and image tests must run *inside* the image being built, never on
//! the host. [`Sandbox::run`] forks, gives the child fresh mount, PID, UTS and IPC
//! namespaces, mounts a private `/proc`, `/sys`, a minimal `/dev` and a tmpfs `/run`,
//! provides the host's `resolv.conf`, binds the folders the caller asks for, and chroots.
//! The closure runs there as PID 2 under a tiny init (PID 1) that reaps orphans; when the
//! closure returns, init exits and the kernel kills every process left in the namespace and
//! drops every mount — nothing leaks onto the host, and the host's processes are invisible.
//!
//! Needs real root (no user namespace), and must be called before the process starts any
//! threads, because it forks.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, wait, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, chroot, fork, sethostname};

/// The exit code of a sandbox whose setup failed (the reason goes to stderr).
pub const SETUP_FAILED: i32 = 125;

/// The sandbox children running now (0 = free slot), so a signal handler can end them.
static RUNNING: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];

/// Kills every running sandbox (and so everything in it: its init dies, and the kernel
/// ends its PID namespace). Async-signal-safe: atomic loads and `kill(2)`.
pub fn kill_running() {
    for slot in &RUNNING {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Marks `child` as running until dropped.
struct Running(Option<&'static AtomicI32>);

impl Running {
    fn new(child: Pid) -> Running {
        let slot =
            RUNNING.iter().find(|s| s.compare_exchange(0, child.as_raw(), Ordering::SeqCst, Ordering::SeqCst).is_ok());
        Running(slot)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.store(0, Ordering::SeqCst);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0} is not a root filesystem: {1}")]
    NotARootfs(PathBuf, &'static str),
    #[error("the sandbox needs root privileges (it creates mount and PID namespaces); run as root")]
    NotRoot,
    #[error("cannot bind {host}: {reason}")]
    BadBind { host: PathBuf, reason: String },
    #[error("sandbox setup failed: {0}")]
    Fork(Errno),
    #[error("sandbox setup failed (see the message above)")]
    Setup,
}

/// A host folder made visible inside the sandbox under `/run/…`.
#[derive(Debug, Clone)]
pub struct Bind {
    pub host: PathBuf,
    pub inside: PathBuf,
    pub writable: bool,
}

/// An overlay filesystem: read-only `lowers` (top first) under a writable `upper`.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the merged view is mounted; only the sandbox's namespace sees the mount.
    pub merged: PathBuf,
}

impl Overlay {
    fn mount(&self) -> Result<(), String> {
        for dir in [&self.upper, &self.work, &self.merged] {
            fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let lowers: Vec<String> = self.lowers.iter().map(|l| l.display().to_string()).collect();
        let options =
            format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), self.upper.display(), self.work.display());
        mount(Some("overlay"), &self.merged, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .map_err(|e| format!("mount overlay on {}: {e}", self.merged.display()))
    }
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
    overlay: Option<Overlay>,
    binds: Vec<Bind>,
    hostname: String,
}

impl Sandbox {
    /// Checks that `root` looks like a Linux root filesystem (a shell and `/etc`).
    pub fn new(root: &Path) -> Result<Sandbox, SandboxError> {
        let root =
            fs::canonicalize(root).map_err(|_| SandboxError::NotARootfs(root.to_path_buf(), "no such folder"))?;
        if root == Path::new("/") {
            return Err(SandboxError::NotARootfs(root, "it is the host's own root; run without --root instead"));
        }
        if !root.is_dir() {
            return Err(SandboxError::NotARootfs(root, "not a folder"));
        }
        if !root.join("etc").is_dir() {
            return Err(SandboxError::NotARootfs(root, "it has no /etc"));
        }
        let has_shell = ["bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash"]
            .iter()
            .any(|p| fs::symlink_metadata(root.join(p)).is_ok());
        if !has_shell {
            return Err(SandboxError::NotARootfs(root, "it has no /bin/sh"));
        }
        Ok(Sandbox { root, overlay: None, binds: Vec::new(), hostname: "amictl-sandbox".into() })
    }

    /// A sandbox whose root is an overlay: changes land in `overlay.upper`, the lower layers
    /// stay untouched. The lowest layer must be a root filesystem.
    pub fn over(overlay: Overlay) -> Result<Sandbox, SandboxError> {
        let base =
            overlay.lowers.last().ok_or(SandboxError::NotARootfs(PathBuf::new(), "an overlay needs a lower layer"))?;
        Sandbox::new(base)?;
        fs::create_dir_all(&overlay.merged)
            .map_err(|e| SandboxError::BadBind { host: overlay.merged.clone(), reason: e.to_string() })?;
        let root = fs::canonicalize(&overlay.merged)
            .map_err(|e| SandboxError::BadBind { host: overlay.merged.clone(), reason: e.to_string() })?;
        Ok(Sandbox { root, overlay: Some(overlay), binds: Vec::new(), hostname: "amictl-sandbox".into() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes `host` visible at `inside`, which must be an absolute path under `/run`
    /// (a tmpfs in the sandbox, so binding leaves no trace in the image).
    pub fn bind(mut self, host: &Path, inside: &str, writable: bool) -> Result<Sandbox, SandboxError> {
        let inside = PathBuf::from(inside);
        if !inside.starts_with("/run/") || inside.components().any(|c| c == Component::ParentDir) {
            return Err(SandboxError::BadBind {
                host: host.into(),
                reason: format!("{} is not under /run", inside.display()),
            });
        }
        let host =
            fs::canonicalize(host).map_err(|e| SandboxError::BadBind { host: host.into(), reason: e.to_string() })?;
        self.binds.push(Bind { host, inside, writable });
        Ok(self)
    }

    pub fn hostname(mut self, name: &str) -> Sandbox {
        self.hostname = name.to_string();
        self
    }

    /// Runs `f` inside the sandbox and returns its exit code.
    pub fn run(&self, f: impl FnOnce() -> i32) -> Result<i32, SandboxError> {
        in_child(|| self.enter(), || init(f))
    }

    /// In the forked child: new namespaces, mounts, chroot.
    fn enter(&self) -> Result<(), String> {
        let ctx = |what: String| move |e: Errno| format!("{what}: {e}");
        unshare(
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC,
        )
        .map_err(ctx("unshare".into()))?;
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(ctx("make / private".into()))?;
        if let Some(overlay) = &self.overlay {
            overlay.mount()?;
        }
        sethostname(&self.hostname).map_err(ctx("sethostname".into()))?;
        let r = &self.root;
        // /run first: binds and a possible resolv.conf target live there.
        mount_tmpfs(&r.join("run"), "mode=755")?;
        self.mount_dev()?;
        let sys = r.join("sys");
        fs::create_dir_all(&sys).map_err(|e| format!("create {}: {e}", sys.display()))?;
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if mount(Some("sysfs"), &sys, Some("sysfs"), ro, None::<&str>).is_err() {
            bind_mount(Path::new("/sys"), &sys, false, true)?;
        }
        self.provide_resolv_conf()?;
        for b in &self.binds {
            let target = r.join(b.inside.strip_prefix("/").unwrap_or(&b.inside));
            fs::create_dir_all(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
            bind_mount(&b.host, &target, b.writable, false)?;
        }
        chroot(r).map_err(ctx(format!("chroot {}", r.display())))?;
        chdir("/").map_err(ctx("chdir /".into()))?;
        Ok(())
    }

    fn mount_dev(&self) -> Result<(), String> {
        let dev = self.root.join("dev");
        mount_tmpfs(&dev, "mode=755")?;
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            let target = dev.join(node);
            File::create(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
            bind_mount(&Path::new("/dev").join(node), &target, true, false)?;
        }
        for (link, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            symlink(to, dev.join(link)).map_err(|e| format!("symlink /dev/{link}: {e}"))?;
        }
        let pts = dev.join("pts");
        fs::create_dir_all(&pts).map_err(|e| format!("create {}: {e}", pts.display()))?;
        let _ = mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        );
        mount_tmpfs(&dev.join("shm"), "mode=1777")?;
        Ok(())
    }

    /// Bind the host's resolver config, following a symlink inside the root (for example
    /// into `/run/systemd/resolve`, which is our tmpfs).
    fn provide_resolv_conf(&self) -> Result<(), String> {
        let host = Path::new("/etc/resolv.conf");
        if !host.exists() {
            return Ok(());
        }
        let mut target = self.root.join("etc/resolv.conf");
        for _ in 0..8 {
            match fs::read_link(&target) {
                Ok(link) => {
                    let inside = if link.is_absolute() { link } else { Path::new("/etc").join(link) };
                    target = self.root.join(normalize(&inside).strip_prefix("/").unwrap_or(Path::new("")));
                }
                Err(_) => break,
            }
        }
        if !target.starts_with(&self.root) {
            return Ok(());
        }
        if !target.exists() {
            if let Some(p) = target.parent() {
                fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))?;
            }
            File::create(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
        }
        bind_mount(host, &target, false, false)
    }
}

/// Runs `f` in a child process with `overlay` mounted in a private mount namespace (no
/// chroot), for host tools that need the merged view. The mount vanishes with the child.
pub fn with_overlay(overlay: &Overlay, f: impl FnOnce(&Path) -> i32) -> Result<i32, SandboxError> {
    in_child(|| private_namespaces(CloneFlags::empty()).and_then(|_| overlay.mount()), || f(&overlay.merged))
}

/// Forks; the child (which dies with its parent) runs `setup`, then `body`, and exits with
/// `body`'s code — or with [`SETUP_FAILED`] after printing why setup failed.
fn in_child(setup: impl FnOnce() -> Result<(), String>, body: impl FnOnce() -> i32) -> Result<i32, SandboxError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SandboxError::NotRoot);
    }
    // SAFETY: the caller guarantees the process is single-threaded (crate docs); the child
    // only performs syscalls and then runs `body`, as a freshly started process would.
    match unsafe { fork() }.map_err(SandboxError::Fork)? {
        ForkResult::Parent { child } => {
            let _running = Running::new(child);
            match wait_for(child) {
                SETUP_FAILED => Err(SandboxError::Setup),
                code => Ok(code),
            }
        }
        ForkResult::Child => {
            // If amictl dies (even by SIGKILL), the child and everything under it dies too.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            match setup() {
                Ok(()) => exit_now(body()),
                Err(message) => {
                    eprintln!("amictl sandbox: {message}");
                    exit_now(SETUP_FAILED)
                }
            }
        }
    }
}

/// A new mount namespace (plus `extra` namespaces) whose mounts never propagate to the host.
fn private_namespaces(extra: CloneFlags) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS | extra).map_err(|e| format!("unshare: {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make / private: {e}"))
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn mount_tmpfs(target: &Path, options: &str) -> Result<(), String> {
    fs::create_dir_all(target).map_err(|e| format!("create {}: {e}", target.display()))?;
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NOSUID, Some(options))
        .map_err(|e| format!("mount tmpfs on {}: {e}", target.display()))
}

fn bind_mount(host: &Path, target: &Path, writable: bool, recursive: bool) -> Result<(), String> {
    let flags = if recursive { MsFlags::MS_BIND | MsFlags::MS_REC } else { MsFlags::MS_BIND };
    mount(Some(host), target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("bind {} on {}: {e}", host.display(), target.display()))?;
    if !writable {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("make {} read-only: {e}", target.display()))?;
    }
    Ok(())
}

/// Becomes PID 1 of the new namespace: mounts `/proc`, runs `f` in a child, reaps orphans,
/// and returns `f`'s exit code.
fn init(f: impl FnOnce() -> i32) -> i32 {
    // After unshare(CLONE_NEWPID) only our next child is in the new namespace.
    // SAFETY: as in `Sandbox::run`, the process is single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("amictl sandbox: fork: {e}");
            SETUP_FAILED
        }
        Ok(ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            // PID 1 of the namespace: a fresh /proc shows only the sandbox's processes.
            let _ = fs::create_dir_all("/proc");
            if let Err(e) = mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ) {
                eprintln!("amictl sandbox: mount /proc: {e}");
                exit_now(SETUP_FAILED);
            }
            let main = match unsafe { fork() } {
                Ok(ForkResult::Child) => exit_now(f()),
                Ok(ForkResult::Parent { child }) => child,
                Err(e) => {
                    eprintln!("amictl sandbox: fork: {e}");
                    exit_now(SETUP_FAILED);
                }
            };
            exit_now(reap_until(main))
        }
        Ok(ForkResult::Parent { child }) => wait_for(child),
    }
}

fn reap_until(main: Pid) -> i32 {
    loop {
        match wait() {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => return 128 + sig as i32,
            Err(Errno::ECHILD) => return SETUP_FAILED,
            _ => {}
        }
    }
}

fn wait_for(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Err(Errno::EINTR) => continue,
            Err(_) => return SETUP_FAILED,
            _ => {}
        }
    }
}

fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_folders_that_are_not_root_filesystems() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Sandbox::new(dir.path()), Err(SandboxError::NotARootfs(_, "it has no /etc"))));
        fs::create_dir(dir.path().join("etc")).unwrap();
        assert!(matches!(Sandbox::new(dir.path()), Err(SandboxError::NotARootfs(_, "it has no /bin/sh"))));
        assert!(matches!(Sandbox::new(Path::new("/")), Err(SandboxError::NotARootfs(..))));
        assert!(matches!(
            Sandbox::new(&dir.path().join("missing")),
            Err(SandboxError::NotARootfs(_, "no such folder"))
        ));
    }

    #[test]
    fn binds_must_stay_under_run() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        File::create(dir.path().join("bin/sh")).unwrap();
        let sb = Sandbox::new(dir.path()).unwrap();
        assert!(sb.clone().bind(dir.path(), "/etc/x", true).is_err());
        assert!(sb.clone().bind(dir.path(), "/run/../etc", true).is_err());
        assert!(sb.bind(dir.path(), "/run/amictl/log", true).is_ok());
    }

    #[test]
    fn normalizes_symlink_targets() {
        assert_eq!(
            normalize(Path::new("/etc/../run/systemd/resolve/stub-resolv.conf")),
            PathBuf::from("/run/systemd/resolve/stub-resolv.conf")
        );
    }
}
