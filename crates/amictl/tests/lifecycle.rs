//! The lifecycle on this machine: config → plan → apply (build in an overlay, test in a
//! fresh overlay, artifacts) → catalog and audit chain, and the faults around it. Needs
//! root and network access to a Debian mirror (for the debootstrap parent, prepared once
//! per machine in AMICTL_TEST_CACHE). Built only with `--features sandbox-tests`.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Org {
    dir: tempfile::TempDir,
}

const COMPONENT: &str = "name: motd\nschemaVersion: 1.0\nparameters:\n  - Greeting:\n      type: string\n      default: hello\nphases:\n  - name: build\n    steps:\n      - name: Write\n        action: CreateFile\n        inputs:\n          - path: /etc/motd-amictl\n            content: '{{ Greeting }}'\n      - name: Slow\n        action: ExecuteBash\n        inputs:\n          commands: ['if [ -e /etc/amictl-slow ]; then sleep 60; fi; true']\n  - name: validate\n    steps:\n      - name: Present\n        action: Assert\n        inputs:\n          fileExists: /etc/motd-amictl\n  - name: test\n    steps:\n      - name: Content\n        action: ReadFile\n        inputs:\n          - path: /etc/motd-amictl\n      - name: Says\n        action: Assert\n        inputs:\n          stringEquals: '{{ Greeting }}'\n          value: '{{ test.Content.outputs.content }}'\n      - name: TestLeavesATrace\n        action: CreateFile\n        inputs:\n          - path: /etc/written-by-test\n            content: x\n";

impl Org {
    fn new(parent: &str) -> Org {
        let org = Org { dir: tempfile::tempdir().unwrap() };
        org.write("components/motd.yml", COMPONENT);
        org.write(
            "amictl.toml",
            &format!(
                "[state]\npath = \"state/state.db\"\nwork_dir = \"work\"\n\n[policy]\nmax_age = \"90d\"\nkeep_versions = 2\n\n[components.motd]\nfile = \"components/motd.yml\"\nversion = \"1.0.0\"\n\n[images.host]\nparent = \"{parent}\"\ncomponents = [\"motd\"]\nbuilder = {{ kind = \"local\", disk_size = \"512M\" }}\n"
            ),
        );
        org
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn write(&self, p: &str, text: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::amictl();
        c.arg("--config").arg(self.path("amictl.toml")).args(args);
        c.env("AMICTL_CACHE", cache()).env("AMICTL_COMPONENT_CACHE", self.path("component-cache"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn images(&self) -> Vec<Value> {
        let out = self.run(&["--json", "images"]);
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("images --json: {e}: {}", text(&out)));
        v.as_array().unwrap().clone()
    }
}

fn cache() -> String {
    std::env::var("AMICTL_TEST_CACHE")
        .expect("AMICTL_TEST_CACHE must name the shared parent cache (scripts/test sets it)")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn verify(org: &Org) -> Output {
    org.run(&["audit", "verify"])
}

fn mounts_mentioning(dir: &Path) -> Vec<String> {
    let p = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&p))
        .map(str::to_string)
        .collect()
}

#[test]
fn apply_builds_tests_records_and_then_plans_nothing() {
    let org = Org::new("debootstrap:stable");
    let plan = org.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(text(&plan).contains("never built"));

    let apply = org.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let images = org.images();
    assert_eq!(images.len(), 1);
    let v = &images[0];
    assert_eq!(v["state"], "available");
    assert!(v["package_count"].as_u64().unwrap() > 50, "the manifest was read from the image");
    assert_eq!(v["tests_passed"], 1);
    assert_eq!(v["components"][0]["version"], "1.0.0");

    let show: Value = serde_json::from_slice(&org.run(&["--json", "show", "host"]).stdout).unwrap();
    let artifacts = show["artifacts"].as_array().unwrap();
    let kinds: Vec<&str> = artifacts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rootfs.tar.zst", "disk.raw", "disk.qcow2", "manifest"]);
    for a in artifacts {
        let path = a["path"].as_str().unwrap();
        let sum = Command::new("sha256sum").arg(path).output().unwrap();
        assert!(
            String::from_utf8_lossy(&sum.stdout).starts_with(a["sha256"].as_str().unwrap()),
            "{path} matches its recorded sha256"
        );
    }
    let tarball = artifacts[0]["path"].as_str().unwrap();
    let listing = Command::new("tar").args(["--zstd", "-tf", tarball]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("./etc/motd-amictl"), "the build's change is in the image");
    assert!(!listing.contains("written-by-test"), "tests ran in a fresh overlay, not in the image");
    let fsck = Command::new("e2fsck").args(["-fn", artifacts[1]["path"].as_str().unwrap()]).output().unwrap();
    assert!(fsck.status.success(), "the raw disk is a clean ext4 filesystem: {}", text(&fsck));
    let parent_rootfs = Path::new(&cache()).join("parents");
    let touched = Command::new("find").arg(&parent_rootfs).args(["-name", "motd-amictl"]).output().unwrap();
    assert!(touched.stdout.is_empty(), "the parent was never written");

    let again = org.run(&["plan"]);
    assert_eq!(again.status.code(), Some(0), "a second plan has nothing to do: {}", text(&again));
    let later = org.run(&["plan", "--now", "+91d"]);
    assert_eq!(later.status.code(), Some(2));
    assert!(text(&later).contains("age 91d ≥ max 90d"), "{}", text(&later));

    // Advisories: a fix for a package the image has plans a rebuild naming it; one for a
    // package it lacks plans nothing; a broken feed is reported stale, not as "no findings".
    let packages = show["packages"].as_array().unwrap();
    let bash = packages.iter().find(|p| p["name"] == "bash").expect("bash is in the manifest");
    let (source, installed) = (bash["source_name"].as_str().unwrap(), bash["source_version"].as_str().unwrap());
    let entry = |fixed: &str| serde_json::json!({"releases": {"stable-test": {"status": "resolved", "fixed_version": fixed, "urgency": "high"}}});
    let absent = serde_json::json!({"no-such-source": {"CVE-2099-0002": entry("9.9-1")}});
    org.write("tracker.json", &absent.to_string());
    let cfg = std::fs::read_to_string(org.path("amictl.toml")).unwrap().replace(
        "builder = { kind = \"local\", disk_size = \"512M\" }",
        "builder = { kind = \"local\", disk_size = \"512M\" }\nadvisories = { debian_tracker = \"tracker.json\", release = \"stable-test\" }",
    );
    org.write("amictl.toml", &cfg);
    let quiet = org.run(&["plan"]);
    assert_eq!(quiet.status.code(), Some(0), "an advisory for an absent package plans nothing: {}", text(&quiet));
    let mut feed = absent.clone();
    feed[source] = serde_json::json!({"CVE-2099-0001": entry(&format!("{installed}+deb99u1"))});
    org.write("tracker.json", &feed.to_string());
    let due = org.run(&["plan"]);
    assert_eq!(due.status.code(), Some(2), "{}", text(&due));
    assert!(text(&due).contains("1 important+ advisory fixed since built: CVE-2099-0001"), "{}", text(&due));
    let found: Value = serde_json::from_slice(&org.run(&["--json", "advisories", "host"]).stdout).unwrap();
    assert_eq!(found[0]["findings"][0]["advisory"], "CVE-2099-0001", "{found:#}");
    assert_eq!(found[0]["findings"][0]["package"], source);
    org.write("tracker.json", &feed.to_string()[..20]);
    let stale = org.run(&["plan"]);
    assert!(
        text(&stale).contains("advisory check STALE") && text(&stale).contains("using the copy from"),
        "{}",
        text(&stale)
    );
    assert!(text(&stale).contains("CVE-2099-0001"), "the last good copy still plans the rebuild: {}", text(&stale));

    // A component version bump plans a rebuild that names it; the new version diffs its manifest.
    let cfg =
        std::fs::read_to_string(org.path("amictl.toml")).unwrap().replace("version = \"1.0.0\"", "version = \"1.1.0\"");
    org.write("amictl.toml", &cfg);
    let bump = org.run(&["plan"]);
    assert!(text(&bump).contains("component motd 1.0.0 → 1.1.0"), "{}", text(&bump));
    assert_eq!(org.run(&["build", "host"]).status.code(), Some(0));
    let show = text(&org.run(&["show", "host"]));
    assert!(show.contains("compared with"), "{show}");
    assert!(show.contains("component  motd 1.1.0"), "{show}");

    assert_eq!(verify(&org).status.code(), Some(0), "{}", text(&verify(&org)));
    let log = text(&org.run(&["audit", "log", "--image", "host"]));
    for kind in ["decision", "build.intent", "build.outcome"] {
        assert!(log.contains(kind), "{kind} missing from\n{log}");
    }

    // Tamper with one byte of one audit row: verify fails and names it.
    let db = org.path("state/state.db");
    let script = format!(
        "import sqlite3; c = sqlite3.connect('{}'); c.execute('DROP TRIGGER audit_no_update'); c.execute(\"UPDATE audit_events SET reason = reason || '.' WHERE seq = 3\"); c.commit()",
        db.display()
    );
    assert!(Command::new("python3").args(["-c", &script]).status().unwrap().success());
    let broken = verify(&org);
    assert_eq!(broken.status.code(), Some(1));
    assert!(text(&broken).contains("BROKEN at event 3"), "{}", text(&broken));
}

#[test]
fn a_failing_test_phase_fails_the_build_and_ships_nothing() {
    let org = Org::new("debootstrap:stable");
    org.write(
        "components/motd.yml",
        &COMPONENT.replace("stringEquals: '{{ Greeting }}'", "stringEquals: 'something else'"),
    );
    let apply = org.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert!(text(&apply).contains("tests failed"), "{}", text(&apply));
    let images = org.images();
    assert_eq!(images[0]["state"], "failed");
    assert!(images[0]["failure"].as_str().unwrap().contains("motd (test phase)"));
    assert!(
        !org.path("work/images/host").join(images[0]["version"].as_str().unwrap()).exists(),
        "a failed build leaves no image"
    );
    let logs = PathBuf::from(images[0]["log_dir"].as_str().unwrap());
    assert!(logs.join("test").is_dir(), "the failed build keeps its logs");
    assert_eq!(verify(&org).status.code(), Some(0));
    assert!(mounts_mentioning(org.dir.path()).is_empty());
    assert_eq!(org.run(&["plan"]).status.code(), Some(2), "the image is still wanted");
}

#[test]
fn a_secret_in_a_failing_build_reaches_no_file_no_terminal_and_no_record() {
    let org = Org::new("debootstrap:stable");
    let canary = "canary-5d1e8a09c3";
    org.write(
        "components/leaky.yml",
        "name: leaky\nschemaVersion: 1.0\nparameters:\n  - Key:\n      type: string\nphases:\n  - name: build\n    steps:\n      - name: Leak\n        action: ExecuteBash\n        inputs:\n          commands: ['echo \"using {{ Key }}\"', 'echo \"failed with {{ Key }}\" >&2', 'exit 4']\n",
    );
    let config = std::fs::read_to_string(org.path("amictl.toml"))
        .unwrap()
        .replace("components = [\"motd\"]", "components = [\"motd\", \"leaky\"]")
        + "\n[components.leaky]\nfile = \"components/leaky.yml\"\nversion = \"1.0.0\"\nparameters = { Key = { env = \"AMICTL_TEST_CANARY\", secret = true } }\n";
    org.write("amictl.toml", &config);
    let apply = org.cmd(&["apply"]).env("AMICTL_TEST_CANARY", canary).output().unwrap();
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert!(text(&apply).contains("failed with ***"), "the failure is shown, masked: {}", text(&apply));
    assert!(!text(&apply).contains(canary), "{}", text(&apply));
    for args in [&["--json", "images"][..], &["audit", "export"], &["--json", "show", "host"]] {
        let out = org.run(args);
        assert!(!text(&out).contains(canary), "{args:?}: {}", text(&out));
    }
    let mut leaks = Vec::new();
    let mut stack = vec![org.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(canary.len()).any(|w| w == canary.as_bytes())) {
                leaks.push(p);
            }
        }
    }
    assert!(leaks.is_empty(), "the secret reached {leaks:?}");
}

#[test]
fn a_killed_apply_is_recovered_by_the_next_one() {
    let org = Org::new("debootstrap:stable");
    // The component sleeps during its build while this marker exists in the image.
    org.write("components/motd.yml", &COMPONENT.replace("if [ -e /etc/amictl-slow ]", "if [ ! -e /etc/amictl-fast ]"));
    let mut child = org.cmd(&["apply"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        let states: Vec<String> = org.images().iter().map(|v| v["state"].as_str().unwrap().to_string()).collect();
        if states == ["building"] && org.path("work/builds").read_dir().is_ok_and(|mut d| d.next().is_some()) {
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the build never started: {states:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(mounts_mentioning(org.dir.path()).is_empty(), "mounts outlived the killed run");
    let sleepers = Command::new("pgrep").args(["-f", "sleep 60"]).output().unwrap();
    assert!(sleepers.stdout.is_empty(), "the build's processes outlived the killed run");

    org.write("components/motd.yml", COMPONENT);
    let plan = text(&org.run(&["plan"]));
    assert!(plan.contains("recover") && plan.contains("interrupted while building"), "{plan}");
    let apply = org.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(text(&apply).contains("recovered"), "{}", text(&apply));
    let states: Vec<String> = org.images().iter().map(|v| v["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["failed", "available"]);
    assert_eq!(verify(&org).status.code(), Some(0));
    assert_eq!(org.run(&["plan"]).status.code(), Some(0));
}

#[test]
fn sigterm_during_a_local_build_ends_its_sandbox_and_records_the_outcome() {
    let org = Org::new("debootstrap:stable");
    // The component sleeps during its build while this marker is absent from the image.
    org.write("components/motd.yml", &COMPONENT.replace("if [ -e /etc/amictl-slow ]", "if [ ! -e /etc/amictl-fast ]"));
    let mut child = org.cmd(&["apply"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while !org.images().iter().any(|v| v["state"] == "building") {
        assert!(start.elapsed() < Duration::from_secs(300), "the build never started");
        assert!(child.try_wait().unwrap().is_none(), "the apply ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "SIGTERM did not end the run");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
    assert!(mounts_mentioning(org.dir.path()).is_empty(), "no mount outlived the sandbox");
    let sleepers = Command::new("pgrep").args(["-f", "sleep 60"]).output().unwrap();
    assert!(sleepers.stdout.is_empty(), "the build's processes ended with it");
    assert_eq!(org.images()[0]["state"], "failed");
    let export = org.run(&["audit", "export"]);
    let outcome = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["kind"] == "build.outcome")
        .expect("an outcome");
    assert_eq!(outcome["data"]["result"], "interrupted", "{outcome}");
    assert_eq!(verify(&org).status.code(), Some(0));
    org.write("components/motd.yml", COMPONENT);
    assert_eq!(org.run(&["apply"]).status.code(), Some(0), "the next apply builds it");
}

#[test]
fn a_debootstrap_failure_is_a_failed_build_with_its_log() {
    let org = Org::new("debootstrap:no-such-suite-amictl");
    let apply = org.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    let v = &org.images()[0];
    assert_eq!(v["state"], "failed");
    assert!(v["failure"].as_str().unwrap().contains("debootstrap no-such-suite-amictl failed"), "{v}");
    assert!(PathBuf::from(v["log_dir"].as_str().unwrap()).join("parent.log").is_file());
    assert_eq!(verify(&org).status.code(), Some(0));
}

#[test]
fn a_full_disk_mid_build_fails_cleanly() {
    let org = Org::new("debootstrap:stable");
    let work = org.path("work");
    std::fs::create_dir_all(&work).unwrap();
    assert!(
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"]).arg(&work).status().unwrap().success()
    );
    let apply = org.run(&["apply"]);
    let images = org.images();
    let _ = Command::new("umount").arg(&work).status();
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    assert_eq!(images[0]["state"], "failed");
    assert_eq!(verify(&org).status.code(), Some(0));
    assert!(mounts_mentioning(org.dir.path()).is_empty());
}

#[test]
fn a_second_apply_refuses_while_the_first_holds_the_lock() {
    let org = Org::new("debootstrap:stable");
    org.write(
        "components/motd.yml",
        &COMPONENT.replace("if [ -e /etc/amictl-slow ]", "if [ ! -e /etc/amictl-fast ]").replace("sleep 60", "sleep 8"),
    );
    let mut first = org.cmd(&["apply"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while !org.images().iter().any(|v| v["state"] == "building") {
        assert!(start.elapsed() < Duration::from_secs(300), "never saw the build: {:?}", org.images());
        assert!(first.try_wait().unwrap().is_none(), "the first apply ended early: {:?}", org.images());
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = org.run(&["apply"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(text(&second).contains("holds the lock"), "{}", text(&second));
    let waiting = org.run(&["apply", "--wait"]);
    assert_eq!(waiting.status.code(), Some(0), "{}", text(&waiting));
    assert!(text(&waiting).contains("waiting for the run holding the state lock"));
    assert!(first.wait().unwrap().success());
    assert_eq!(org.images().len(), 1, "the waiting run found the image built and did nothing twice");
}

#[test]
fn a_tarball_parent_builds_and_moves_when_the_tarball_changes() {
    // An exported root filesystem, as `docker export` of Amazon Linux 2 would give; here the
    // cached Debian rootfs of the sandbox tests.
    let rootfs = std::env::var("AMICTL_TEST_ROOTFS").expect("AMICTL_TEST_ROOTFS (scripts/test sets it)");
    let org = Org::new("tarball:parent.tar");
    let tar = org.path("parent.tar");
    assert!(
        Command::new("tar")
            .args(["--numeric-owner", "-C", &rootfs, "-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let apply = org.run(&["apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let v = &org.images()[0];
    assert_eq!(v["state"], "available");
    assert!(v["parent_name"].as_str().unwrap().starts_with("tarball:"));
    let sum = Command::new("sha256sum").arg(&tar).output().unwrap();
    assert!(
        String::from_utf8_lossy(&sum.stdout).starts_with(v["parent_id"].as_str().unwrap()),
        "the parent id is the tarball's content hash"
    );
    assert_eq!(org.run(&["plan"]).status.code(), Some(0));

    org.write("extra/etc/vendor-update", "1");
    assert!(
        Command::new("tar")
            .args(["--numeric-owner", "-rf"])
            .arg(&tar)
            .arg("-C")
            .arg(org.path("extra"))
            .arg("./etc/vendor-update")
            .status()
            .unwrap()
            .success()
    );
    let plan = org.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(text(&plan).contains("parent tarball:") && text(&plan).contains("moved"), "{}", text(&plan));
}

/// A recipe that names AWS's managed components by ARN, as Image Builder recipes do, and a
/// repository component that runs one of them through `ExecuteDocument`: fetched from
/// Image Builder (motogap) before the build, run unchanged in the sandbox, recorded with
/// the versions the ARNs resolved to.
#[test]
fn a_recipe_naming_managed_components_by_arn_builds_unchanged() {
    let moto = motogap::Moto::start();
    let gap = motogap::Gap::start(moto.addr, 0).unwrap();
    gap.map_key("testing", "111111111111");
    let org = Org::new("debootstrap:stable");
    org.write(
        "components/wraps.yml",
        "name: wraps\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Cli\n        action: ExecuteDocument\n        inputs:\n          document: arn:aws:imagebuilder:eu-west-1:aws:component/aws-cli-version-2-linux/1.0.4\n          phases: build\n      - name: Mark\n        action: CreateFile\n        inputs:\n          - path: /etc/wrapped\n            content: yes\n",
    );
    let cfg = std::fs::read_to_string(org.path("amictl.toml"))
        .unwrap()
        .replace("components = [\"motd\"]", "components = [\"update-linux\", \"motd\", \"wraps\"]");
    let cfg = format!(
        "{cfg}\n[components.update-linux]\narn = \"arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/x.x.x\"\n\n[components.wraps]\nfile = \"components/wraps.yml\"\nversion = \"1.0.0\"\n"
    );
    org.write("amictl.toml", &cfg);
    let with_aws = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL", gap.url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
    };
    let mut apply = org.cmd(&["apply"]);
    with_aws(&mut apply);
    let out = apply.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(gap.calls().get("imagebuilder:GetComponent").copied(), Some(2), "each ARN fetched once");
    let images = org.images();
    let components: Vec<String> = images[0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}@{}", c["name"].as_str().unwrap(), c["version"].as_str().unwrap()))
        .collect();
    assert!(components.contains(&"update-linux@1.0.2".to_string()), "the version x.x.x resolved to: {components:?}");
    let show: Value = serde_json::from_slice(&org.run(&["--json", "show", "host"]).stdout).unwrap();
    let tarball = show["artifacts"][0]["path"].as_str().unwrap().to_string();
    let listing = Command::new("tar").args(["--zstd", "-tf", &tarball]).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("./etc/wrapped"), "the wrapping component ran");
    let logs = show["version"]["log_dir"].as_str().or_else(|| images[0]["log_dir"].as_str()).unwrap().to_string();
    let grep = Command::new("grep").args(["-rl", "aws-cli-version-2-linux/1.0.4/1", &logs]).output().unwrap();
    assert!(!grep.stdout.is_empty(), "the build log names what the ARN resolved to");

    // With Image Builder out of reach, the cache serves the next plan (and says so).
    let mut plan = org.cmd(&["plan"]);
    with_aws(&mut plan);
    plan.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9").env("AWS_MAX_ATTEMPTS", "1");
    let out = plan.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "nothing changed: {}", text(&out));
    assert!(text(&out).contains("using the cached"), "{}", text(&out));
}

/// The image is cleaned before it is made: SSH host keys, machine-id, logs, shell history
/// and a component's own agent id (its `snapshot_cleanup`) are not in the snapshot — and are
/// when the line says `snapshot_cleanup = false`.
#[test]
fn the_snapshot_has_no_host_keys_machine_id_or_agent_id_unless_cleanup_is_off() {
    let org = Org::new("debootstrap:stable");
    org.write(
        "components/agent.yml",
        "name: agent\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Leave\n        action: ExecuteBash\n        inputs:\n          commands:\n            - mkdir -p /etc/ssh /var/lib/agent /var/log/agent /etc/systemd/system\n            - echo key > /etc/ssh/ssh_host_ed25519_key\n            - echo 0123456789abcdef0123456789abcdef > /etc/machine-id\n            - echo sensor-42 > /var/lib/agent/id\n            - echo build-noise > /var/log/agent/agent.log\n            - echo old-noise > /var/log/agent/agent.log.1\n            - echo history > /root/.bash_history\n",
    );
    let cfg = std::fs::read_to_string(org.path("amictl.toml")).unwrap();
    let cfg = cfg.replace("components = [\"motd\"]", "components = [\"motd\", \"agent\"]")
        + "\n[components.agent]\nfile = \"components/agent.yml\"\nversion = \"1.0.0\"\nsnapshot_cleanup = [\"rm -f /var/lib/agent/id\"]\n";
    org.write("amictl.toml", &cfg);
    let tarball = |org: &Org| {
        let show: Value = serde_json::from_slice(&org.run(&["--json", "show", "host"]).stdout).unwrap();
        show["artifacts"][0]["path"].as_str().unwrap().to_string()
    };
    let read = |tarball: &str, path: &str| {
        let o = Command::new("tar").args(["--zstd", "-xOf", tarball, path]).output().unwrap();
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).to_string())
    };

    let out = org.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = tarball(&org);
    assert_eq!(read(&t, "./etc/ssh/ssh_host_ed25519_key"), None, "host keys are made per instance");
    // Nothing here (no cloud-init, no sshd-keygen) remakes them at boot: a one-shot unit does.
    let unit = read(&t, "./etc/systemd/system/amictl-ssh-host-keys.service").unwrap_or_default();
    assert!(unit.contains("ExecStart=/usr/bin/ssh-keygen -A"), "{unit}");
    assert!(read(&t, "./etc/systemd/system/multi-user.target.wants/amictl-ssh-host-keys.service").is_some());
    assert_eq!(read(&t, "./var/log/agent/agent.log.1"), None, "rotated logs are removed");
    assert_eq!(read(&t, "./etc/machine-id").as_deref(), Some(""), "machine-id is emptied, not removed");
    assert_eq!(read(&t, "./var/lib/agent/id"), None, "the component's own cleanup ran");
    assert_eq!(read(&t, "./var/log/agent/agent.log").as_deref(), Some(""), "logs are kept, empty");
    assert_eq!(read(&t, "./root/.bash_history"), None);
    assert_eq!(read(&t, "./etc/motd-amictl").as_deref(), Some("hello"), "and the build's work is there");

    org.write("amictl.toml", &cfg.replace("builder = {", "snapshot_cleanup = false\nbuilder = {"));
    let plan = org.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "turning the cleanup off changes the recipe: {}", text(&plan));
    let out = org.run(&["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = tarball(&org);
    assert_eq!(read(&t, "./var/lib/agent/id").as_deref(), Some("sensor-42\n"), "off means off");
    assert_eq!(read(&t, "./etc/machine-id").as_deref(), Some("0123456789abcdef0123456789abcdef\n"));
}

/// `amictl serve` on a local config, as the quickstart runs it: its first cycle builds in the
/// sandbox on its own (the cycle is a single-threaded child process, as the sandbox needs),
/// and the dashboard and the API show the result.
#[test]
fn serve_builds_a_local_line_on_its_own_and_shows_it_on_the_dashboard() {
    let org = Org::new("debootstrap:stable");
    let mut child =
        org.cmd(&["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut lines, &mut line).unwrap() > 0, "serve ended before it listened");
        if let Some(a) = line.trim().strip_prefix("amictl serve: listening on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let get = |path: &str| -> String {
        let addr = url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    let start = Instant::now();
    while !org.images().iter().any(|v| v["state"] == "available") {
        assert!(start.elapsed() < Duration::from_secs(600), "the start-up cycle built nothing");
        std::thread::sleep(Duration::from_millis(500));
    }
    let version = org.images()[0]["version"].as_str().unwrap().to_string();
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains(&version), "{page}");
    assert!(get("/api/images").contains(&format!("\"newest\":\"{version}\"")));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(verify(&org).status.code(), Some(0));
}
