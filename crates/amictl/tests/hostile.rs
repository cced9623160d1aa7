//! Hostile input, run through the real binary: documents that are devices or floods, steps
//! that leave processes behind, secrets that try to leak through chaining. Each test names
//! the case of the adversarial pass (issue 12) it pins.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Toe, build_doc};

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Processes whose command line holds `marker`.
fn running(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok())
            && let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
        {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// A marker unique to this test process and case, for `exec -a` names.
fn marker(case: &str) -> String {
    format!("amictl-leftover-{}-{case}", std::process::id())
}

/// Waits up to two seconds for processes named `marker` to be gone.
fn gone(marker: &str) -> Result<(), Vec<String>> {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let left = running(marker);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > until {
            for l in &left {
                if let Some(pid) = l.split(':').next() {
                    let _ = std::process::Command::new("kill").args(["-9", pid]).status();
                }
            }
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_device_as_a_document_is_refused_before_it_is_read() {
    let t = Toe::new();
    for dev in ["/dev/zero", "/dev/urandom"] {
        let out = common::amictl().args(["toe", "validate", "--documents", dev]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{dev}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a regular file (it is a character device)"), "{dev}: {err}");
    }
    // The same document reached through ExecuteDocument fails the step, it does not eat memory.
    t.write("outer.yml", &build_doc("- name: Nested\n  action: ExecuteDocument\n  inputs:\n    document: /dev/zero\n"));
    let start = Instant::now();
    let r = t.run(&["outer.yml"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.summary()["failureMessage"].as_str().unwrap().contains("not a regular file"), "{}", r.summary());
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_oversized_document_is_refused_with_its_limit() {
    let t = Toe::new();
    let p = t.path("huge.yml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(toe::input::DOCUMENT_LIMIT + 1).unwrap();
    assert_eq!(t.error_codes("huge.yml"), vec!["document-too-large"]);
}

#[test]
fn a_flood_of_output_is_written_once_and_reports_keep_a_bounded_tail() {
    let t = Toe::new();
    let mib = 8u64;
    t.write(
        "flood.yml",
        &build_doc(&format!(
            "- name: Flood\n  action: ExecuteBash\n  inputs:\n    commands: ['head -c {} /dev/zero | tr \"\\0\" x; echo; echo last-line']\n",
            mib << 20
        )),
    );
    let r = t.run(&["flood.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let folder = r.log_folder.clone().unwrap();
    let size = |name: &str| std::fs::metadata(folder.join(name)).unwrap().len();
    let step_log = files(&folder)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log") && p.to_string_lossy().contains("Flood"))
        .expect("a step log");
    assert!(std::fs::metadata(&step_log).unwrap().len() > mib << 20, "the step log has all of it");
    assert!(size("console.log") < 2 << 20, "console.log keeps the first MiB only: {}", size("console.log"));
    let console = std::fs::read_to_string(folder.join("console.log")).unwrap();
    assert!(
        console.contains("are only in") && console.contains(&*step_log.to_string_lossy()),
        "console.log points to the step log"
    );
    for report in ["chaining.json", "detailedoutput.json"] {
        assert!(size(report) < 1 << 20, "{report} holds a bounded tail: {}", size(report));
    }
    assert!(r.output("build", "Flood", "stdout").ends_with("last-line"), "the tail is the end of the output");
    let total: u64 = files(&folder).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(total < (mib << 20) + (4 << 20), "written once, not four times: {total}");
}

#[test]
fn nothing_a_step_starts_outlives_it() {
    let t = Toe::new();
    let (bg, detached, timed) = (marker("bg"), marker("setsid"), marker("timeout"));
    t.write(
        "leave.yml",
        &build_doc(&format!(
            "- name: Background\n  action: ExecuteBash\n  inputs:\n    commands: ['(exec -a {bg} sleep 30) > /dev/null 2>&1 &', 'echo started']\n\
             - name: Detached\n  action: ExecuteBash\n  inputs:\n    commands: ['setsid bash -c \"exec -a {detached} sleep 30\" > /dev/null 2>&1 < /dev/null &', 'sleep 0.2']\n"
        )),
    );
    let r = t.run(&["leave.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    gone(&bg).expect("a background child is ended when its step succeeds");
    gone(&detached).expect("a child that called setsid is ended too");

    t.write(
        "slow.yml",
        &build_doc(&format!(
            "- name: Slow\n  action: ExecuteBash\n  timeoutSeconds: 1\n  inputs:\n    commands: ['setsid bash -c \"exec -a {timed} sleep 30\" > /dev/null 2>&1 < /dev/null &', 'sleep 30']\n"
        )),
    );
    let r = t.run(&["slow.yml"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.summary()["failureMessage"].as_str().unwrap().contains("timed out"), "{}", r.summary());
    gone(&timed).expect("a detached child is ended at the step's timeout");
    let app = std::fs::read_to_string(r.log_folder.unwrap().join("application.log")).unwrap();
    assert!(app.contains("left running"), "the log says what was ended");
}

#[test]
fn a_disable_logging_output_stays_masked_wherever_it_is_chained() {
    let t = Toe::new();
    // The secret comes from outside the document (the document itself is copied to the logs).
    let canary = "canary-7f3e9b2c41";
    t.write("key", canary);
    t.write(
        "chain.yml",
        &build_doc(
            "- name: Secret\n  action: ExecuteBash\n  disableLogging: true\n  inputs:\n    commands: ['cat \"$TMPDIR/key\"']\n\
             - name: Uses\n  action: ExecuteBash\n  inputs:\n    commands: ['echo token={{ build.Secret.outputs.stdout }}', 'echo err-{{ build.Secret.outputs.stdout }} >&2']\n\
             - name: Fails\n  action: ExecuteBash\n  onFailure: Continue\n  inputs:\n    commands: ['echo {{ build.Secret.outputs.stdout }} >&2; exit 3']\n",
        ),
    );
    let r = t.run(&["chain.yml"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.step_status("build", "Uses"), "success");
    assert!(r.output("build", "Uses", "stdout").contains("token=***"), "the chained value is masked, the rest kept");
    assert!(!r.stdout.contains(canary) && !r.stderr.contains(canary), "not on the terminal");
    let folder = r.log_folder.unwrap();
    let logs = files(&folder);
    for name in ["console.log", "application.log", "chaining.json", "detailedoutput.json"] {
        assert!(logs.iter().any(|p| p.ends_with(name)), "{name} was written");
    }
    for p in &logs {
        let text = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        assert!(!text.contains(canary), "{} holds the secret", p.display());
    }
}
