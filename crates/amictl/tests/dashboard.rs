//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol
//! (`--remote-debugging-pipe`: JSON messages on fds 3 and 4, so no WebSocket client is
//! needed), signs in, sees a build held for approval, approves it with the page's button,
//! and sees the build run and the decision in the version's audit trail. Built only with
//! `--features browser-tests` (scripts/install-deps installs Chromium).
#![cfg(feature = "browser-tests")]

mod cloud;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloud::*;
use serde_json::{Value, json};

const TOKEN: &str = "dashboard-test-token-71c4e0a2";

/// One headless Chromium and one page in it.
struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let chromium = std::env::var("AMICTL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let (to_read, to_write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        let (from_read, from_write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        let (r, w) = (to_read.as_raw_fd(), from_write.as_raw_fd());
        let mut cmd = Command::new(&chromium);
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only dup2 between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc_dup2(r, 3) < 0 || libc_dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child =
            cmd.spawn().unwrap_or_else(|e| panic!("cannot run {chromium} ({e}); scripts/install-deps installs it"));
        drop(to_read);
        drop(from_write);
        let mut b = Browser {
            child,
            to: File::from(to_write),
            from: BufReader::new(File::from(from_read)),
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call(None, "Target.attachToTarget", json!({"targetId": id, "flatten": true}));
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.to.write_all(msg.to_string().as_bytes()).unwrap();
        self.to.write_all(b"\0").unwrap();
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "Chromium closed its DevTools pipe");
            buf.pop();
            let reply: Value = serde_json::from_slice(&buf).unwrap();
            if reply["id"] == json!(self.next) {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    fn go(&mut self, url: &str) {
        let s = self.session.clone();
        self.call(Some(&s), "Page.navigate", json!({"url": url}));
        self.wait_loaded();
    }

    /// Runs `js` in the page and returns its value.
    fn eval(&mut self, js: &str) -> Value {
        let s = self.session.clone();
        let r = self.call(Some(&s), "Runtime.evaluate", json!({"expression": js, "returnByValue": true}));
        r["result"]["value"].clone()
    }

    fn wait_loaded(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        std::thread::sleep(Duration::from_millis(100));
        while self.eval("document.readyState") != "complete" {
            assert!(Instant::now() < deadline, "the page never loaded");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (reloading `url`) until `js` is true in the page.
    fn until(&mut self, url: &str, js: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            self.go(url);
            if self.eval(js) == json!(true) {
                return;
            }
            let body = self.eval("document.body.innerText");
            assert!(Instant::now() < deadline, "{what}: {body}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dup2(from, to)` in the forked child (fds 3 and 4 are what Chromium reads and writes).
fn libc_dup2(from: i32, to: i32) -> i32 {
    use std::os::fd::FromRawFd;
    // SAFETY: `from` is open in this process; `to` is a number we mean to (re)open, and is
    // forgotten afterwards rather than closed.
    let (old, mut target) = unsafe { (std::os::fd::BorrowedFd::borrow_raw(from), OwnedFd::from_raw_fd(to)) };
    let ok = nix::unistd::dup2(old, &mut target).is_ok();
    std::mem::forget(target);
    if ok { 0 } else { -1 }
}

#[test]
fn a_build_held_for_approval_is_approved_through_the_page_and_runs() {
    let org = Org::new();
    std::fs::write(org.dir.path().join("token"), TOKEN).unwrap();
    org.edit("[policy]\n", "[policy]\nrequire_approval = [\"build\"]\n");
    let mut text = std::fs::read_to_string(&org.config).unwrap();
    text.push_str("\n[serve]\ntoken = { file = \"token\" }\n");
    std::fs::write(&org.config, text).unwrap();
    let mut serve = org
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve ended before it listened").unwrap();
        if let Some(a) = line.strip_prefix("amictl serve: listening on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _serve = Kill(serve);

    let mut b = Browser::start();
    // Reads are open on loopback: the overview shows both builds waiting, without buttons.
    b.until(&format!("{url}/"), "document.querySelectorAll('#approvals tr.approval').length === 2", "two held builds");
    assert_eq!(
        b.eval("document.querySelectorAll('button[id^=approve-]').length"),
        json!(0),
        "no deciding before signing in"
    );
    // Sign in with the token, through the form.
    b.go(&format!("{url}/login"));
    b.eval(&format!(
        "document.getElementById('name').value='carol'; document.getElementById('token').value='{TOKEN}'; document.getElementById('login').click(); true"
    ));
    b.wait_loaded();
    b.until(&format!("{url}/"), "document.body.innerText.includes('signed in as carol')", "signed in");
    // Approve the bastion line's build with its button.
    let id = b.eval(&format!(
        "[...document.querySelectorAll('#approvals tr.approval')].find(r => r.innerText.includes('{BASTION}')).dataset.id"
    ));
    let id = id.as_str().expect("the bastion's approval row").to_string();
    b.eval(&format!("document.getElementById('approve-{id}').click(); true"));
    b.wait_loaded();
    b.until(&format!("{url}/approvals"), &format!("document.querySelector('tr[data-id=\"{id}\"] .status').innerText === 'approved' || document.querySelector('tr[data-id=\"{id}\"] .status').innerText === 'used'"), "approved");
    // The approval starts a cycle; the page then shows the line's first version …
    b.until(
        &format!("{url}/"),
        &format!("[...document.querySelectorAll('#images tr.line')].some(r => r.innerText.includes('{BASTION}') && r.querySelector('a'))"),
        "the approved build ran",
    );
    b.until(
        &format!("{url}/"),
        "document.getElementById('cycle').innerText === 'idle' && document.getElementById('last-cycle').innerText.startsWith('approval cycle')",
        "the approval's cycle ended",
    );
    // … and its audit trail names who approved it, before the build it let through.
    b.go(&format!("{url}/trail?subject={BASTION}"));
    let kinds = b.eval("[...document.querySelectorAll('#trail tr.event')].map(r => r.querySelector('.kind').innerText + ' ' + r.innerText)");
    let kinds: Vec<String> = kinds.as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let at = |needle: &str| {
        kinds.iter().position(|k| k.contains(needle)).unwrap_or_else(|| panic!("no {needle}: {kinds:#?}"))
    };
    assert!(at("approved by carol (dashboard)") < at("build.outcome"));
    assert!(at("build.outcome") < at("approval.used"));
    // The other line is still held.
    b.go(&format!("{url}/"));
    assert_eq!(b.eval("document.querySelectorAll('#approvals tr.approval').length"), json!(1));
}
