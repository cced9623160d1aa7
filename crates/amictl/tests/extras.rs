//! The spec digest's "extra cases": phase selection, reboot resume, ExecuteDocument,
//! file modules, downloads with checksums, object-store transfers and secret handling.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::{Toe, build_doc, read};

fn three_phases(tag: &str) -> String {
    let step = |phase: &str| {
        format!(
            "  - name: {phase}\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: ['echo {tag}-{phase} >> \"$TMPDIR/order\"']\n"
        )
    };
    format!("schemaVersion: 1.0\nphases:\n{}{}{}", step("build"), step("validate"), step("test"))
}

#[test]
fn phases_run_in_document_order_whatever_the_flag_order() {
    let t = Toe::new();
    t.write("one.yml", &three_phases("one"));
    t.write("two.yml", &three_phases("two"));
    let r = t.run(&["one.yml", "two.yml"], &["--phases", "test,build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("order")), "one-build\none-test\ntwo-build\ntwo-test\n");

    t.write("build-only.yml", &build_doc("- name: S\n  action: ExecuteBash\n  inputs:\n    commands: ['true']\n"));
    let r = t.run(&["build-only.yml"], &["--phases", "test"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.count("executedStepCount"), 0);
}

#[test]
fn exit_194_hands_off_and_the_next_run_resumes_the_same_step() {
    let t = Toe::new();
    t.write(
        "d.yml",
        &build_doc(
            "- name: Before\n  action: ExecuteBash\n  inputs:\n    commands: ['echo before >> \"$TMPDIR/trail\"; echo v1']\n\
             - name: NeedsReboot\n  action: ExecuteBash\n  if:\n    not:\n      fileExists: ./flip\n  inputs:\n    commands:\n      - |\n        echo needs >> \"$TMPDIR/trail\"\n        if [ -e \"$TMPDIR/marker\" ]; then echo resumed; exit 0; fi\n        touch \"$TMPDIR/marker\" ./flip\n        exit 194\n\
             - name: After\n  action: ExecuteBash\n  inputs:\n    commands: ['echo \"after {{ build.Before.outputs.stdout }}\" >> \"$TMPDIR/trail\"']\n",
        ),
    );
    let first = t.run(&["d.yml"], &[]);
    assert_eq!(first.code, 194, "{}", first.stderr);
    assert!(t.path("state/execution-state.json").exists());
    // The condition would now be false (./flip exists) but its first result is kept.
    let second = t.run(&["d.yml"], &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(read(&t.path("trail")), "before\nneeds\nneeds\nafter v1\n");
    assert_eq!(second.output("build", "NeedsReboot", "stdout"), "resumed");
    assert_eq!(second.count("executedStepCount"), 3);
    assert!(!t.path("state/execution-state.json").exists(), "state is removed when the run ends");
    assert!(first.summary.is_none(), "a reboot hand-off prints no final summary");
}

#[test]
fn a_reboot_step_resumes_at_the_next_step() {
    let t = Toe::new();
    t.write(
        "d.yml",
        &build_doc(
            "- name: One\n  action: ExecuteBash\n  inputs:\n    commands: ['echo one >> \"$TMPDIR/trail\"']\n\
             - name: Restart\n  action: Reboot\n  inputs:\n    delaySeconds: 0\n\
             - name: Two\n  action: ExecuteBash\n  inputs:\n    commands: ['echo two >> \"$TMPDIR/trail\"']\n",
        ),
    );
    assert_eq!(t.run(&["d.yml"], &[]).code, 194);
    assert_eq!(read(&t.path("trail")), "one\n");
    let r = t.run(&["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("trail")), "one\ntwo\n");
    assert_eq!(r.step_status("build", "Restart"), "success");
}

fn caller(name: &str, target: &str) -> String {
    format!(
        "name: {name}\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Mark\n        action: ExecuteBash\n        inputs:\n          commands: ['echo {name} >> \"$TMPDIR/chain\"']\n      - name: Call\n        action: ExecuteDocument\n        inputs:\n          document: {target}\n"
    )
}

#[test]
fn execute_document_nests_three_levels_and_not_four() {
    let t = Toe::new();
    t.write("main.yml", &caller("main", "a.yml"));
    t.write("a.yml", &caller("a", "b.yml"));
    t.write("b.yml", &caller("b", "c.yml"));
    t.write(
        "c.yml",
        "name: c\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Leaf\n        action: ExecuteBash\n        inputs:\n          commands: ['echo c >> \"$TMPDIR/chain\"']\n  - name: test\n    steps:\n      - name: LeafTest\n        action: ExecuteBash\n        inputs:\n          commands: ['echo c-test >> \"$TMPDIR/chain\"']\n",
    );
    let r = t.run(&["main.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("chain")), "main\na\nb\nc\nc-test\n", "no `phases` runs every phase of the child");
    let outputs: serde_json::Value =
        serde_json::from_str(r.step("build", "Call")["outputs"].as_str().unwrap()).unwrap();
    assert_eq!(outputs[0]["status"], "success");
    assert_eq!(outputs[0]["executedStepCount"], 2);
    let nested = &r.step("build", "Call")["detailedOutput"][0]["documents"][0];
    assert_eq!(nested["name"], "a");
    assert_eq!(nested["phases"][0]["steps"][1]["detailedOutput"][0]["documents"][0]["name"], "b");

    t.write("c.yml", &caller("c", "d.yml"));
    t.write("d.yml", &build_doc("- name: Deep\n  action: ExecuteBash\n  inputs:\n    commands: ['true']\n"));
    let r = t.run(&["main.yml"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nest at most 3 levels"), "{}", r.stderr);
}

#[test]
fn execute_document_refuses_cycles() {
    let t = Toe::new();
    t.write("self.yml", &caller("self", "self.yml"));
    let r = t.run(&["self.yml"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.step("build", "Call")["failureMessage"].as_str().unwrap().contains("cycle"));
    assert_eq!(read(&t.path("chain")), "self\n");
}

#[test]
fn execute_document_passes_parameters_and_selects_phases() {
    let t = Toe::new();
    t.write(
        "child.yml",
        "schemaVersion: 1.0\nparameters:\n  - Word:\n      type: string\nphases:\n  - name: build\n    steps:\n      - name: B\n        action: ExecuteBash\n        inputs:\n          commands: ['echo build-{{ Word }} >> \"$TMPDIR/out\"']\n  - name: test\n    steps:\n      - name: T\n        action: ExecuteBash\n        inputs:\n          commands: ['echo test-{{ Word }} >> \"$TMPDIR/out\"']\n",
    );
    t.write("parent.yml", &build_doc("- name: Call\n  action: ExecuteDocument\n  inputs:\n    document: child.yml\n    phases: test\n    parameters:\n      - name: Word\n        value: hello\n"));
    let r = t.run(&["parent.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("out")), "test-hello\n");
}

#[test]
fn file_modules_behave_as_documented() {
    let t = Toe::new();
    t.write("src/a.txt", "A");
    t.write("src/b.txt", "B");
    t.write("full/keep.txt", "x");
    let steps = "\
- name: Create
  action: CreateFile
  inputs:
    - path: ./made/secret.conf
      content: 'k=v'
      permissions: '0640'
- name: Copy
  action: CopyFile
  inputs:
    - source: ./src/*.txt
      destination: ./copied/
- name: List
  action: ListFiles
  inputs:
    - path: ./copied
- name: Read
  action: ReadFile
  inputs:
    - path: ./copied/a.txt
- name: UseRead
  action: CreateFile
  inputs:
    - path: ./from-read.txt
      content: 'got {{ build.Read.outputs.content }}'
- name: Append
  action: AppendFile
  inputs:
    - path: ./from-read.txt
      content: '!'
- name: Folder
  action: CopyFolder
  inputs:
    - source: ./src
      destination: ./tree/inner
- name: Move
  action: MoveFile
  inputs:
    - source: ./tree/inner/b.txt
      destination: ./moved.txt
- name: Link
  action: CreateSymlink
  inputs:
    - path: ./link-to-a
      target: ./copied/a.txt
- name: Mode
  action: SetFolderPermissions
  inputs:
    - path: ./tree
      permissions: '0750'
- name: NoOverwrite
  action: CopyFile
  onFailure: Continue
  inputs:
    - source: ./src/a.txt
      destination: ./copied/a.txt
      overwrite: false
- name: NotEmpty
  action: DeleteFolder
  onFailure: Continue
  inputs:
    - path: ./full
- name: Forced
  action: DeleteFolder
  inputs:
    - path: ./tree
      force: true
- name: DeleteGlob
  action: DeleteFile
  inputs:
    - path: ./copied/*.txt
";
    t.write("d.yml", &build_doc(steps));
    let old = unsafe { libc_umask(0o022) };
    let r = t.run(&["d.yml"], &[]);
    unsafe { libc_umask(old) };
    let mode = std::fs::metadata(t.path("made/secret.conf")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "an explicit mode is applied exactly");
    let files = r.output("build", "List", "files");
    assert_eq!(files, "./copied/a.txt,./copied/b.txt", "ListFiles joins with commas");
    assert_eq!(read(&t.path("from-read.txt")), "got A!");
    assert_eq!(read(&t.path("moved.txt")), "B");
    assert_eq!(std::fs::read_link(t.path("link-to-a")).unwrap().to_str(), Some("./copied/a.txt"));
    assert_eq!(r.step_status("build", "NoOverwrite"), "failed");
    assert!(r.step("build", "NoOverwrite")["failureMessage"].as_str().unwrap().contains("overwrite is false"));
    assert_eq!(r.step_status("build", "NotEmpty"), "failed");
    assert!(r.step("build", "NotEmpty")["failureMessage"].as_str().unwrap().contains("not empty"));
    assert!(t.path("full/keep.txt").exists());
    assert!(!t.path("tree").exists());
    assert!(!t.path("copied/a.txt").exists() && t.path("copied").is_dir());
    assert_eq!(r.count("failedStepCount"), 2, "{}", r.stderr);
}

unsafe extern "C" {
    #[link_name = "umask"]
    fn libc_umask(mask: u32) -> u32;
}

#[test]
fn s3_transfers_use_the_object_store_and_need_existing_folders() {
    let t = Toe::new();
    t.write("store/bucket/agents/agent.rpm", "payload");
    t.write("store/bucket/agents/sub/extra.txt", "extra");
    t.write("upload/report.txt", "report");
    t.write(
        "d.yml",
        &build_doc(
            "- name: One\n  action: S3Download\n  inputs:\n    - source: s3://bucket/agents/agent.rpm\n      destination: ./dl/agent.rpm\n\
             - name: Prefix\n  action: S3Download\n  inputs:\n    - source: s3://bucket/agents/*\n      destination: ./all\n\
             - name: Up\n  action: S3Upload\n  inputs:\n    - source: ./upload/report.txt\n      destination: s3://bucket/reports/\n",
        ),
    );
    std::fs::create_dir_all(t.path("dl")).unwrap();
    std::fs::create_dir_all(t.path("all")).unwrap();
    let store = t.path("store").display().to_string();
    let r = t.run(&["d.yml"], &["--object-store", &store]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("dl/agent.rpm")), "payload");
    assert_eq!(read(&t.path("all/sub/extra.txt")), "extra");
    assert_eq!(read(&t.path("store/bucket/reports/report.txt")), "report");

    t.write("missing.yml", &build_doc("- name: One\n  action: S3Download\n  inputs:\n    - source: s3://bucket/agents/agent.rpm\n      destination: ./nowhere/agent.rpm\n"));
    let r = t.run(&["missing.yml"], &["--object-store", &store]);
    assert_eq!(r.code, 1);
    assert!(r.step("build", "One")["failureMessage"].as_str().unwrap().contains("does not exist"));
    let r = t.run(&["missing.yml"], &[]);
    assert!(
        r.step("build", "One")["failureMessage"].as_str().unwrap().contains("--object-store"),
        "no store: the message says how to get one"
    );
}

#[test]
fn web_download_verifies_checksums_and_reports_http_errors() {
    let t = Toe::new();
    let base = common::serve("/agent.tgz", b"agent-bits".to_vec(), 3);
    // sha256("agent-bits")
    let good = sha256_hex(b"agent-bits");
    let doc = |sum: &str, path: &str| {
        build_doc(&format!(
            "- name: Get\n  action: WebDownload\n  inputs:\n    - source: {base}/{path}\n      destination: ./dl/\n      checksum: {sum}\n      algorithm: SHA256\n"
        ))
    };
    t.write("ok.yml", &doc(&good, "agent.tgz"));
    let r = t.run(&["ok.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("dl/agent.tgz")), "agent-bits");
    assert_eq!(r.output("build", "Get", "destination"), "./dl/agent.tgz");

    t.write("bad.yml", &doc(&"0".repeat(64), "agent.tgz").replace("./dl/", "./dl2/"));
    let r = t.run(&["bad.yml"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.step("build", "Get")["failureMessage"].as_str().unwrap().contains("checksum mismatch"));
    assert!(!t.path("dl2/agent.tgz").exists(), "a file that fails its checksum is not left behind");

    t.write("404.yml", &doc(&good, "missing.tgz"));
    let r = t.run(&["404.yml"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.step("build", "Get")["failureMessage"].as_str().unwrap().contains("404"));
}

fn sha256_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        });
    String::from_utf8(out.unwrap().stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

#[test]
fn disable_logging_keeps_secrets_out_of_every_log() {
    let t = Toe::new();
    t.write(
        "d.yml",
        "schemaVersion: 1.0\nparameters:\n  - ApiKey:\n      type: string\nphases:\n  - name: build\n    steps:\n      - name: UseKey\n        action: ExecuteBash\n        disableLogging: true\n        inputs:\n          commands: ['echo configured-with-{{ ApiKey }}; echo {{ ApiKey }} >&2']\n      - name: Write\n        action: CreateFile\n        disableLogging: true\n        inputs:\n          - path: ./agent.conf\n            content: 'key={{ ApiKey }}'\n            permissions: '0600'\n",
    );
    let r = t.run(&["d.yml"], &["--parameters", "ApiKey=s3cr3t-value", "--trace"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&t.path("agent.conf")), "key=s3cr3t-value");
    let folder = r.log_folder.clone().unwrap();
    for entry in walk(&folder) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains("s3cr3t-value"), "secret leaked into {}", entry.display());
    }
    assert!(!r.stderr.contains("s3cr3t-value"), "secret leaked to the terminal");
    assert!(
        !t.path("state/scratch").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false),
        "the secret script is deleted"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn interrupting_amictl_kills_the_running_step() {
    let t = Toe::new();
    t.write("d.yml", &build_doc("- name: Long\n  action: ExecuteBash\n  inputs:\n    commands: ['echo $$ > \"$TMPDIR/step.pid\"; exec sleep 300']\n"));
    let mut child = common::amictl()
        .args(["toe", "run", "--documents"])
        .arg(t.path("d.yml"))
        .arg("--log-directory")
        .arg(t.path("logs"))
        .env("TMPDIR", t.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = t.path("step.pid");
    let started = std::time::Instant::now();
    while read(&pid_file).trim().is_empty() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let step_pid = read(&pid_file).trim().to_string();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Gone, or a zombie waiting for PID 1 to reap it: either way no longer running.
    let stat = read(std::path::Path::new(&format!("/proc/{step_pid}/stat")));
    let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).unwrap_or("gone");
    assert!(state == "gone" || state == "Z", "the step's process outlived amictl (state {state})");
}

#[test]
fn an_invalid_config_is_reported_in_full_and_changes_nothing() {
    let t = Toe::new();
    t.write("c.yml", "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: ['true']\n");
    t.write(
        "amictl.toml",
        "[state]\npath = \"s/state.db\"\n[policy]\nmax_age = \"ninety\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1\"\n[images.host]\nparent = \"debootstrap:stable\"\ncomponents = [\"c\", \"missing\"]\ncolour = \"red\"\n",
    );
    for cmd in [&["validate"][..], &["plan"], &["apply"]] {
        let out = common::amictl().arg("--config").arg(t.path("amictl.toml")).args(cmd).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.contains("amictl.toml:4:11: error[bad-duration]"), "{err}");
        assert!(err.contains("amictl.toml:10:20: error[unknown-component]"), "{err}");
        assert!(err.contains("amictl.toml:11:1: error[unknown-key]"), "{err}");
        assert!(!t.path("s").exists(), "{cmd:?} created state from an invalid config");
    }
}

#[test]
fn a_closed_output_pipe_ends_amictl_quietly() {
    let t = Toe::new();
    let steps: String =
        (0..400).map(|i| format!("- name: S{i}\n  action: ExecuteBash\n  inputs:\n    commands: ['true']\n")).collect();
    t.write("d.yml", &build_doc(&steps));
    let mut child = common::amictl()
        .args(["--json", "toe", "validate", "--documents"])
        .arg(t.path("d.yml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "amictl panicked on a closed pipe: {err}");
}

#[test]
fn iam_policy_covers_the_reference_organisation_with_least_privilege() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = common::amictl()
        .args(["--json", "--config"])
        .arg(repo.join("examples/reference-org/amictl.toml"))
        .arg("iam-policy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["platform"]["account"], "111111111111");
    let statements = v["platform"]["policy"]["Statement"].as_array().unwrap();
    let assume = statements.iter().find(|s| s["Sid"] == "ReachConsumerAccounts").unwrap();
    assert_eq!(assume["Resource"].as_array().unwrap().len(), 2, "exactly the two consumer roles");
    let workflow = &v["consumers"]["workflow"];
    let resources: Vec<&str> = workflow["policy"]["Statement"][0]["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        resources
            .contains(&"arn:aws:ssm:eu-west-2:222222222222:parameter/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/*"),
        "{resources:?}"
    );
    assert!(
        resources.iter().all(|r| r.contains(":222222222222:parameter/platform/base-ami/")),
        "nothing beyond the pointers"
    );
    assert_eq!(workflow["trust_policy"]["Statement"][0]["Principal"]["AWS"], "arn:aws:iam::111111111111:root");
    // `serve` runs as the platform identity, from EC2 or ECS.
    assert_eq!(
        v["service_role"]["trust_policy"]["Statement"][0]["Principal"]["Service"],
        serde_json::json!(["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"])
    );
}

/// `amictl advisories --manifest`: any manifest against a real ALAS feed, outside the catalog.
#[test]
fn an_ad_hoc_manifest_is_checked_against_a_real_updateinfo_feed() {
    let toe = common::Toe::new();
    let feed = format!("{}/../vuln/tests/fixtures/alas/vlu_updateinfo_2_items.xml.gz", env!("CARGO_MANIFEST_DIR"));
    // qemu-img from before ALAS2-2018-942's fix (epoch 10), java at the fixed version.
    let manifest = toe.write(
        "rpm-qa.tsv",
        "qemu-img\t10\t1.5.3\t141.amzn2.5.2\tx86_64\njava-1.8.0-openjdk\t1\t1.8.0.161\t0.b14.amzn2\tx86_64\nbash\t0\t4.2.46\t30.amzn2\tx86_64\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "advisories", "--manifest", manifest.to_str().unwrap(), "--updateinfo", &feed];
        args.extend_from_slice(extra);
        common::amictl().args(&args).output().unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(3), "findings exit 3: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "rpm");
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v:#}");
    assert_eq!(findings[0]["advisory"], "ALAS2-2018-942");
    assert_eq!(findings[0]["severity"], "important");
    assert_eq!(findings[0]["package"], "qemu-img.x86_64");
    assert_eq!(findings[0]["installed"], "10:1.5.3-141.amzn2.5.2");
    assert_eq!(findings[0]["fixed"], "10:1.5.3-141.amzn2.5.3");
    assert_eq!(findings[0]["cves"][0], "CVE-2017-5715");
    let critical = run(&["--min-severity", "critical"]);
    assert_eq!(critical.status.code(), Some(0), "nothing critical");

    let bad = toe.write("bad.tsv", "bash\t0\t4.2.46\t30.amzn2\tx86_64\nbroken\n");
    let out = common::amictl()
        .args(["advisories", "--manifest", bad.to_str().unwrap(), "--updateinfo", &feed])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.tsv: manifest at line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
