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

    // A process the document asks to keep (a server for a later step) is left alone.
    let kept = marker("kept");
    t.write(
        "keep.yml",
        &build_doc(&format!(
            "- name: Serve\n  action: ExecuteBash\n  inputs:\n    commands: ['AMICTL_KEEP_RUNNING=1 setsid bash -c \"exec -a {kept} sleep 30\" > /dev/null 2>&1 < /dev/null &', 'sleep 0.2']\n\
             - name: Uses\n  action: ExecuteBash\n  inputs:\n    commands: ['pgrep -f ^{kept}']\n"
        )),
    );
    let r = t.run(&["keep.yml"], &[]);
    assert_eq!(r.code, 0, "the next step sees it: {}", r.stderr);
    assert!(gone(&kept).is_err(), "a process started with AMICTL_KEEP_RUNNING=1 outlives its step");
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

/// The checked-in corpus of broken configs (`tests/hostile/config/<case>.toml`): each
/// `<case>.expect` gives the exit code and what stderr must (not) say. Run in a copy, so
/// "changes nothing" is checked too.
#[test]
fn every_hostile_config_in_the_corpus_is_refused_with_its_message() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/config");
    let work = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&corpus).unwrap().flatten() {
        std::fs::copy(e.path(), work.path().join(e.file_name())).unwrap();
    }
    let before: Vec<PathBuf> = files(work.path());
    let mut cases: Vec<PathBuf> =
        before.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")).cloned().collect();
    cases.sort();
    assert!(cases.len() >= 25, "the corpus is there: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let expect = std::fs::read_to_string(case.with_extension("expect")).expect("each case has an .expect");
        let out = common::amictl().arg("validate").arg("--config").arg(case).current_dir(work.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = case.file_stem().unwrap().to_string_lossy();
        for line in expect.lines().filter(|l| !l.trim().is_empty()) {
            let ok = if let Some(code) = line.strip_prefix("exit ") {
                out.status.code() == code.parse().ok()
            } else if let Some(text) = line.strip_prefix("stderr contains ") {
                stderr.contains(text)
            } else if let Some(text) = line.strip_prefix("stderr lacks ") {
                !stderr.contains(text)
            } else {
                panic!("{name}.expect: cannot read {line:?}")
            };
            if !ok {
                failures.push(format!("{name}: expected `{line}` (exit {:?}), stderr:\n{stderr}", out.status.code()));
            }
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let mut after = files(work.path());
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(before, after, "validating created or removed files");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_device_as_the_config_is_named_as_such() {
    let out = common::amictl().args(["validate", "--config", "/dev/zero"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/zero is not a regular file (it is a character device)"), "{err}");
    assert!(!err.contains("does not exist"), "{err}");
}

#[test]
fn now_outside_the_documented_range_is_a_usage_error() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/config");
    let work = tempfile::tempdir().unwrap();
    for f in ["valid.toml", "agent.yml"] {
        std::fs::copy(corpus.join(f), work.path().join(f)).unwrap();
    }
    for when in ["9999-12-31", "1970-01-01", "+9223372036854775807s"] {
        let out = common::amictl()
            .args(["plan", "--config"])
            .arg(work.path().join("valid.toml"))
            .args(["--now", when])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{when}: {err}");
        assert!(err.contains("from 2000-01-01 to 2100-12-31"), "{when}: {err}");
        assert!(!err.contains("overflow"), "{when}: {err}");
    }
}

/// A config folder with the corpus's valid config, and its state path.
fn project() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/config");
    let work = tempfile::tempdir().unwrap();
    for f in ["valid.toml", "agent.yml"] {
        std::fs::copy(corpus.join(f), work.path().join(f)).unwrap();
    }
    let config = work.path().join("valid.toml");
    let state = work.path().join(".amictl/state.db");
    (work, config, state)
}

fn amictl_on(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::amictl().arg("--config").arg(config).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A history like an `apply` leaves: the database with one event, and the run lock.
fn make_history(state: &Path) {
    let mut cat = catalog::Catalog::open(state).unwrap();
    let data = serde_json::json!({"note": "history"});
    cat.append_event(&catalog::NewEvent {
        time: "2026-12-01T00:00:00Z",
        actor: "test",
        kind: "note",
        subject: "host",
        reason: "a history to lose",
        data: &data,
        opens: false,
        closes: None,
    })
    .unwrap();
    drop(catalog::RunLock::acquire(state, false, "test", |_| {}, || false).unwrap());
}

#[test]
fn read_only_commands_never_create_state_and_a_lost_history_is_an_error() {
    let (work, config, state) = project();
    for args in [&["plan"][..], &["images"], &["audit", "verify"], &["report"], &["metrics"], &["audit", "log"]] {
        let (code, out, err) = amictl_on(&config, args);
        assert!(code == 0 || code == 2, "{args:?}: {code} {err}");
        assert!(!work.path().join(".amictl").exists(), "{args:?} created state: {out}");
    }
    make_history(&state);
    std::fs::remove_file(&state).unwrap();
    for args in [&["plan"][..], &["images"], &["audit", "verify"]] {
        let (code, _, err) = amictl_on(&config, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("is missing, but") && err.contains("Restore the latest backup"), "{args:?}: {err}");
        assert!(!state.exists(), "{args:?} made a new, empty history");
    }
    std::fs::write(&state, "").unwrap();
    let (code, _, err) = amictl_on(&config, &["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("is empty (0 bytes)"), "{err}");
}

#[test]
fn audit_verify_checks_integrity_triggers_and_chain_and_a_backup_restores() {
    let (work, config, state) = project();
    make_history(&state);
    let (code, out, err) = amictl_on(&config, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("integrity_check passed") && out.contains("append-only triggers present"), "{out}");
    assert!(out.contains("1 event(s) verified"), "{out}");

    let backup = work.path().join("backup.db");
    let (code, out, err) = amictl_on(&config, &["state", "backup", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 audit event(s)"), "{out}");
    let (code, _, err) = amictl_on(&config, &["state", "backup", backup.to_str().unwrap()]);
    assert_eq!(code, 1, "a backup never overwrites");
    assert!(err.contains("already exists"), "{err}");

    rusqlite_exec(&state, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;");
    let (code, out, _) = amictl_on(&config, &["--json", "audit", "verify"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["missing_triggers"], serde_json::json!(["audit_no_update", "audit_no_delete"]));

    // Restoring is copying the backup over the state (README: "Backing up and restoring").
    std::fs::remove_file(&state).unwrap();
    for side in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(work.path().join(".amictl").join(side));
    }
    std::fs::copy(&backup, &state).unwrap();
    let (code, out, err) = amictl_on(&config, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 event(s) verified"), "{out}");
}

#[test]
fn a_damaged_state_is_refused_once_in_plain_words() {
    let (_work, config, state) = project();
    make_history(&state);
    rusqlite_exec(&state, "PRAGMA journal_mode = DELETE;");
    let mut bytes = std::fs::read(&state).unwrap();
    let page = 4096;
    for b in &mut bytes[page..page + 12] {
        *b = 0xff;
    }
    std::fs::write(&state, &bytes).unwrap();
    let (code, _, err) = amictl_on(&config, &["plan"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("damaged") || err.contains("malformed"), "{err}");
    let first_line = err.lines().find(|l| l.starts_with("amictl: error")).unwrap_or_default();
    for word in ["malformed", "damaged"] {
        assert!(first_line.matches(word).count() <= 1, "said once: {first_line}");
    }
    assert!(first_line.contains("Restore it from a backup") || first_line.contains("malformed"), "{first_line}");
}

fn rusqlite_exec(db: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn a_misplaced_or_misspelt_step_key_says_where_it_belongs() {
    let t = Toe::new();
    t.write(
        "keys.yml",
        &build_doc(
            "- name: A\n  action: ExecuteBash\n  inputs:\n    commands: [echo]\n    timeoutSecondss: 3\n\
             - name: B\n  action: ExecuteBash\n  timeoutSeconds: [1]\n  inputs:\n    commands: [echo]\n",
        ),
    );
    let out = t.validate(&["keys.yml"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diags = v["diagnostics"].as_array().unwrap();
    let text: Vec<String> = diags.iter().map(|d| format!("{} | {}", d["message"], d["hint"])).collect();
    assert!(
        text.iter().any(|t| t.contains("timeoutSecondss") && t.contains("belongs to the step, not to its inputs")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.contains("found a list")), "{text:#?}");
}

/// The compatibility corpus (`tests/compat/`): documents written for amictl in the shapes
/// public components use, each with its expected verdict and diagnostics in
/// `verdicts.txt` (`code@line:column`, `~` for a warning).
#[test]
fn the_compatibility_corpus_gets_its_expected_verdicts() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let verdicts = std::fs::read_to_string(corpus.join("verdicts.txt")).unwrap();
    let mut failures = Vec::new();
    let mut listed = 0;
    for line in verdicts.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (file, verdict) = (words.next().unwrap(), words.next().unwrap());
        let expected: Vec<&str> = words.collect();
        listed += 1;
        let out = common::amictl()
            .args(["toe", "validate", "--json", "--documents"])
            .arg(corpus.join(file))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got: Vec<String> = v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let warn = if d["severity"] == "warning" { "~" } else { "" };
                format!("{warn}{}@{}:{}", d["code"].as_str().unwrap(), d["line"], d["column"])
            })
            .collect();
        let valid = if v["valid"] == true { "valid" } else { "invalid" };
        if valid != verdict || got != expected {
            failures.push(format!("{file}: expected {verdict} {expected:?}, got {valid} {got:?}"));
        }
    }
    let documents = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yml" || x == "json"))
        .count();
    assert_eq!(listed, documents, "every document in the corpus has a verdict");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The unclosed `{{` runs as written.
    let t = Toe::new();
    std::fs::copy(corpus.join("unclosed-braces.yml"), t.path("u.yml")).unwrap();
    let r = t.run(&["u.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(t.path("template.txt")).unwrap(),
        "VERSION\n",
        "sed ran with the `{{{{` as written"
    );
}

#[test]
fn a_secret_with_quotes_backslashes_and_tabs_is_masked_in_its_escaped_forms_too() {
    let t = Toe::new();
    let canary = "S3CR42\"T\\x\tq-7a1";
    t.write("key", canary);
    t.write(
        "q.yml",
        &build_doc(
            "- name: Secret\n  action: ExecuteBash\n  disableLogging: true\n  inputs:\n    commands: ['cat \"$TMPDIR/key\"']\n\
             - name: Uses\n  action: ExecuteBash\n  inputs:\n    commands: ['echo \"{{ build.Secret.outputs.stdout }}\"']\n\
             - name: Fails\n  action: ExecuteBinary\n  onFailure: Continue\n  inputs:\n    path: '{{ build.Secret.outputs.stdout }}'\n",
        ),
    );
    let r = t.run(&["q.yml"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let escaped = serde_json::to_string(canary).unwrap();
    let once = &escaped[1..escaped.len() - 1];
    let twice_q = serde_json::to_string(once).unwrap();
    let twice = &twice_q[1..twice_q.len() - 1];
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains(canary) && !text.contains(once), "on the terminal: {text}");
    }
    for p in files(&r.log_folder.unwrap()) {
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        for form in [canary, once, twice] {
            assert!(!text.contains(form), "{} holds {form:?}", p.display());
        }
    }
}

#[test]
fn a_secret_cut_by_a_kept_tail_leaves_no_fragment_and_pieces_of_a_split_secret_are_masked() {
    let t = Toe::new();
    let canary = "TAILSECRET-ABCDEFGHIJ";
    t.write("key", canary);
    t.write(
        "tail.yml",
        &build_doc(
            "- name: Secret\n  action: ExecuteBash\n  disableLogging: true\n  inputs:\n    commands: ['cat \"$TMPDIR/key\"']\n\
             - name: Loud\n  action: ExecuteBash\n  onFailure: Continue\n  inputs:\n    commands: ['echo \"{{ build.Secret.outputs.stdout }}\" >&2; head -c 4086 /dev/zero | tr \"\\0\" y >&2; exit 3']\n\
             - name: Split\n  action: ExecuteBash\n  loop:\n    forEach:\n      list: 'user42:{{ build.Secret.outputs.stdout }}'\n      delimiter: ':'\n  inputs:\n    commands: ['echo piece={{ loop.value }}']\n",
        ),
    );
    let r = t.run(&["tail.yml"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let fragment = &canary[canary.len() - 10..];
    for p in files(&r.log_folder.clone().unwrap()) {
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        assert!(!text.contains(canary), "{} holds the secret", p.display());
        if !p.ends_with("002-Loud.log") {
            assert!(!text.contains(fragment), "{} holds a fragment of the secret", p.display());
        }
    }
    assert!(!r.stdout.contains(fragment) && !r.stderr.contains(fragment));
}

#[test]
fn a_loop_is_bounded_in_iterations_log_and_reports() {
    let t = Toe::new();
    t.write(
        "huge.yml",
        &build_doc(
            "- name: Forever\n  action: ExecuteBash\n  loop:\n    for: {start: 0, end: 9223372036854775807, updateBy: 1}\n  inputs:\n    commands: ['true']\n",
        ),
    );
    assert_eq!(t.error_codes("huge.yml"), vec!["too-many-iterations"]);
    t.write(
        "edge.yml",
        &build_doc(
            "- name: Edge\n  action: ExecuteBash\n  loop:\n    for: {start: 9223372036854775806, end: 9223372036854775807, updateBy: 2}\n  inputs:\n    commands: ['echo {{ loop.value }}']\n",
        ),
    );
    let r = t.run(&["edge.yml"], &[]);
    assert_eq!(r.code, 0, "no overflow at the end of the range: {}", r.stderr);
    // Five iterations of 600 KB: one step log with all of it, one console budget, bounded reports.
    t.write(
        "loud.yml",
        &build_doc(
            "- name: Loud\n  action: ExecuteBash\n  loop:\n    for: {start: 1, end: 5, updateBy: 1}\n  inputs:\n    commands: ['head -c 600000 /dev/zero | tr \"\\0\" z; echo; echo iteration-{{ loop.value }}']\n",
        ),
    );
    let r = t.run(&["loud.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let folder = r.log_folder.clone().unwrap();
    let step_log = files(&folder).into_iter().find(|p| p.to_string_lossy().ends_with("Loud.log")).unwrap();
    let log = std::fs::read_to_string(&step_log).unwrap();
    assert!(log.contains("iteration-1") && log.contains("iteration-5"), "every iteration is in the one step log");
    let size = |n: &str| std::fs::metadata(folder.join(n)).unwrap().len();
    assert!(size("console.log") < (1 << 20) + 4096, "one console budget for the step: {}", size("console.log"));
    assert!(size("detailedoutput.json") < 3 << 20, "reports stay bounded: {}", size("detailedoutput.json"));
    assert!(r.output("build", "Loud", "stdout").ends_with("iteration-5"));
}

#[test]
fn a_saved_state_that_is_a_device_is_refused_and_a_saved_state_is_owner_only() {
    let t = Toe::new();
    t.write("hello.yml", &build_doc("- name: Hello\n  action: ExecuteBash\n  inputs:\n    commands: ['echo hi']\n"));
    std::fs::create_dir_all(t.path("state")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", t.path("state/execution-state.json")).unwrap();
    let start = Instant::now();
    let r = t.run(&["hello.yml"], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    assert!(start.elapsed() < Duration::from_secs(10));

    let t = Toe::new();
    t.write(
        "reboot.yml",
        &build_doc("- name: Reboot\n  action: ExecuteBash\n  inputs:\n    commands: ['[ -e \"$TMPDIR/booted\" ] || { touch \"$TMPDIR/booted\"; exit 194; }']\n"),
    );
    let r = t.run(&["reboot.yml"], &[]);
    assert_eq!(r.code, 194, "{}", r.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.path("state/execution-state.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it may hold disableLogging outputs");
    let bad = common::amictl()
        .args(["toe", "run", "--documents"])
        .arg(t.path("reboot.yml"))
        .args(["--execution-id", "../../escaped"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn sigterm_to_toe_run_ends_the_step_and_what_it_detached() {
    let t = Toe::new();
    let m = marker("sigterm");
    t.write(
        "s.yml",
        &build_doc(&format!(
            "- name: Wait\n  action: ExecuteBash\n  inputs:\n    commands: ['setsid bash -c \"exec -a {m} sleep 30\" > /dev/null 2>&1 < /dev/null &', 'sleep 30']\n"
        )),
    );
    let mut child = common::amictl()
        .args(["toe", "run", "--documents"])
        .arg(t.path("s.yml"))
        .arg("--log-directory")
        .arg(t.path("logs"))
        .arg("--state-directory")
        .arg(t.path("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while running(&m).is_empty() {
        assert!(Instant::now() < until, "the detached child never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    gone(&m).expect("the detached child is ended before amictl exits");
}

#[test]
fn feeds_and_manifests_that_say_nothing_are_errors_not_zero_findings() {
    let d = tempfile::tempdir().unwrap();
    let w = |n: &str, text: &str| {
        let p = d.path().join(n);
        std::fs::write(&p, text).unwrap();
        p
    };
    let manifest = w("m.tsv", "openssl-libs\t1\t1.0.2k\t24.amzn2\tx86_64\n");
    let html = w("html.xml", "<html><body>404 Not Found</body></html>");
    let empty = w("empty.xml", "");
    let run = |feed: &Path, m: &Path| {
        common::amictl().arg("advisories").arg("--manifest").arg(m).arg("--updateinfo").arg(feed).output().unwrap()
    };
    for feed in [&html, &empty] {
        let out = run(feed, &manifest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", feed.display());
        assert!(err.contains("not an updateinfo") || err.contains("<html>"), "{err}");
    }
    let blank = w("blank.tsv", "");
    let good = w("u.xml", "<updates></updates>");
    let out = run(&good, &blank);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no packages"));
    // A local mirror's repomd.xml is followed to its updateinfo.
    std::fs::create_dir_all(d.path().join("repo/repodata")).unwrap();
    std::fs::write(
        d.path().join("repo/repodata/repomd.xml"),
        "<repomd><data type=\"updateinfo\"><checksum type=\"sha256\">abc</checksum><location href=\"repodata/updateinfo.xml\"/></data></repomd>",
    )
    .unwrap();
    std::fs::write(d.path().join("repo/repodata/updateinfo.xml"), "<updates><update><id>ALAS2-2099-1</id><severity>important</severity><pkglist><collection><package name=\"openssl-libs\" epoch=\"1\" version=\"1.0.2k\" release=\"99.amzn2\" arch=\"x86_64\"/></collection></pkglist></update></updates>").unwrap();
    let out = run(&d.path().join("repo/repodata/repomd.xml"), &manifest);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "a finding: {text}");
    assert!(text.contains("ALAS2-2099-1"), "{text}");
}

#[test]
fn a_read_of_a_state_with_a_foreign_wal_changes_nothing_on_disk() {
    let (work, config, state) = project();
    make_history(&state);
    // Another database's write-ahead log, as a careless restore leaves it.
    let other = work.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    std::fs::copy(work.path().join("other.db-wal"), work.path().join(".amictl/state.db-wal")).unwrap();
    drop(conn);
    // Compared by length and a checksum, so a failure does not print megabytes.
    let digest = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        (
            b.len(),
            b.iter().enumerate().fold(0u64, |h, (i, x)| h.wrapping_mul(31).wrapping_add(u64::from(*x) ^ i as u64)),
        )
    };
    let (before, wal) = (digest(&state), digest(&work.path().join(".amictl/state.db-wal")));
    let _ = amictl_on(&config, &["images"]);
    let _ = amictl_on(&config, &["audit", "verify"]);
    assert_eq!(digest(&state), before, "the state file is as it was");
    assert_eq!(digest(&work.path().join(".amictl/state.db-wal")), wal, "and so is its -wal");
}
