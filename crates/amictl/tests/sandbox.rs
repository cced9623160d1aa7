//! `toe run --root`: documents run inside a real Debian root filesystem. Needs root and a
//! debootstrapped rootfs in AMICTL_TEST_ROOTFS (`scripts/test` provides both); built only
//! with `--features sandbox-tests`, so an unprivileged `cargo test` does not fail on them.
#![cfg(feature = "sandbox-tests")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Toe, build_doc, collect, read};

/// A private copy of the cached rootfs, so each test starts from a clean image.
fn rootfs(t: &Toe) -> PathBuf {
    let cached = std::env::var("AMICTL_TEST_ROOTFS")
        .expect("AMICTL_TEST_ROOTFS must point at a debootstrapped rootfs (scripts/test sets it)");
    let dest = t.path("rootfs");
    let ok = Command::new("cp").args(["-a", "--reflink=auto"]).arg(&cached).arg(&dest).status().unwrap().success();
    assert!(ok, "copying {cached} failed");
    dest
}

fn run_in(t: &Toe, root: &Path, docs: &[&str], extra: &[&str]) -> common::Run {
    let mut args: Vec<String> = vec!["--root".into(), root.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    t.run(docs, &refs)
}

fn mounts_under(path: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.display().to_string();
    info.lines().filter(|l| l.contains(&p)).map(str::to_string).collect()
}

#[test]
fn documents_run_inside_the_root_with_private_namespaces() {
    let t = Toe::new();
    let root = rootfs(&t);
    let host_marker = t.write("host-only-file", "x");
    t.write(
        "d.yml",
        &build_doc(&format!(
            "- name: Where\n  action: ExecuteBash\n  inputs:\n    commands:\n      - |\n        echo \"$(hostname) $(cat /etc/debian_version | cut -c1-2) $(ls /proc | grep -c '^[0-9]')\"\n\
             - name: MakeFile\n  action: CreateFile\n  inputs:\n    - path: /etc/amictl-sandbox-test\n      content: inside\n\
             - name: HostInvisible\n  action: Assert\n  inputs:\n    not:\n      fileExists: {}\n\
             - name: Background\n  action: ExecuteBash\n  inputs:\n    commands: ['setsid sleep 600 </dev/null >/dev/null 2>&1 &']\n",
            host_marker.display()
        )),
    );
    let r = run_in(&t, &root, &["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = r.output("build", "Where", "stdout");
    let parts: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(parts[0], "amictl-sandbox", "own UTS namespace");
    assert!(parts[1].parse::<u32>().is_ok(), "ran on the Debian root: {seen}");
    assert!(parts[2].parse::<u32>().unwrap() < 10, "only the sandbox's processes are visible: {seen}");
    assert_eq!(read(&root.join("etc/amictl-sandbox-test")), "inside");
    assert!(!Path::new("/etc/amictl-sandbox-test").exists(), "file modules act inside the root");
    assert!(mounts_under(&root).is_empty(), "no mount outlives the sandbox: {:?}", mounts_under(&root));
    let leftover = Command::new("pgrep").args(["-f", "sleep 600"]).output().unwrap();
    assert!(leftover.stdout.is_empty(), "a background process outlived the sandbox");
    assert!(r.log_folder.unwrap().starts_with(t.path("logs")), "logUrl is the host path");
}

#[test]
fn a_reboot_restarts_the_sandbox_and_resumes() {
    let t = Toe::new();
    let root = rootfs(&t);
    t.write(
        "d.yml",
        &build_doc(
            "- name: Kernel\n  action: ExecuteBash\n  inputs:\n    commands:\n      - |\n        if [ -e /var/tmp/rebooted ]; then echo second-boot; exit 0; fi\n        touch /var/tmp/rebooted\n        echo pre-reboot > /run/volatile\n        exit 194\n\
             - name: AfterBoot\n  action: ExecuteBash\n  inputs:\n    commands: ['test ! -e /run/volatile && echo fresh-run']\n\
             - name: Restart\n  action: Reboot\n\
             - name: Last\n  action: ExecuteBash\n  inputs:\n    commands: ['echo {{ build.Kernel.outputs.stdout }}']\n",
        ),
    );
    let r = run_in(&t, &root, &["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr.matches("reboot requested").count(), 2, "{}", r.stderr);
    assert_eq!(r.output("build", "Kernel", "stdout"), "second-boot");
    assert_eq!(r.output("build", "AfterBoot", "stdout"), "fresh-run", "/run is fresh after a reboot");
    assert_eq!(r.output("build", "Last", "stdout"), "second-boot");
}

#[test]
fn update_os_uses_the_package_manager_found_in_the_root() {
    let t = Toe::new();
    let root = rootfs(&t);
    // An Amazon Linux-like root: yum and no apt-get. The fake yum records its arguments.
    std::fs::rename(root.join("usr/bin/apt-get"), root.join("usr/bin/apt-get.hidden")).unwrap();
    std::fs::write(root.join("usr/bin/yum"), "#!/bin/sh\necho \"$@\" > /var/tmp/yum-args\n").unwrap();
    Command::new("chmod").arg("755").arg(root.join("usr/bin/yum")).status().unwrap();
    t.write(
        "d.yml",
        &build_doc(
            "- name: Update\n  action: UpdateOS\n  inputs:\n    include: [openssl, kernel]\n    exclude: [kernel]\n",
        ),
    );
    let r = run_in(&t, &root, &["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read(&root.join("var/tmp/yum-args")).trim(), "-y update --exclude=kernel openssl");
    assert!(!Path::new("/var/tmp/yum-args").exists());
}

#[test]
fn update_os_upgrades_a_debian_root_with_apt() {
    let t = Toe::new();
    let root = rootfs(&t);
    t.write(
        "d.yml",
        &build_doc("- name: Update\n  action: UpdateOS\n  timeoutSeconds: 600\n  inputs:\n    exclude: [base-files]\n"),
    );
    let r = run_in(&t, &root, &["d.yml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let console = read(&r.log_folder.unwrap().join("console.log"));
    assert!(console.contains("Reading package lists"), "apt-get ran inside the root: {console}");
    let held = Command::new("chroot").arg(&root).args(["apt-mark", "showhold"]).output().unwrap();
    assert!(held.stdout.is_empty(), "excluded packages are unheld again");
}

#[test]
fn the_example_agent_components_install_and_pass_their_tests() {
    let t = Toe::new();
    let root = rootfs(&t);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(repo.join("scripts/build-scan-agent-artifact")).arg(t.path("artifacts")).output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let (tarball, sha) = line.trim().split_once(' ').unwrap();
    let url = format!(
        "{}/scan-agent-1.2.0.tar.gz",
        common::serve("/scan-agent-1.2.0.tar.gz", std::fs::read(tarball).unwrap(), 1)
    );
    std::fs::write(root.join("etc/scan-key"), "k-3f9a-secret").unwrap();
    for doc in ["audit-agent.yml", "scan-agent.yml"] {
        std::fs::copy(repo.join("examples/components").join(doc), t.path(doc)).unwrap();
    }
    let params = format!("ArtifactUrl={url},ArtifactSha256={sha},ActivationKeyFile=/etc/scan-key");
    let r = run_in(&t, &root, &["audit-agent.yml", "scan-agent.yml"], &["--parameters", &params]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.count("executedStepCount"), 22);
    let detail = r.detail.as_ref().unwrap();
    for doc in detail["documents"].as_array().unwrap() {
        let test_phase = doc["phases"].as_array().unwrap().iter().find(|p| p["name"] == "test").unwrap();
        assert_eq!(test_phase["status"], "success", "{}", doc["name"]);
    }
    assert!(read(&root.join("etc/scan-agent/agent.conf")).contains("activation_key=k-3f9a-secret"));
    assert!(!root.join("etc/scan-key").exists(), "the key file is consumed");
    // An absolute symlink into the image: inspect the link, not its (host) target.
    assert!(std::fs::symlink_metadata(root.join("etc/systemd/system/multi-user.target.wants/auditd.service")).is_ok());
    let logs = Command::new("grep").args(["-r", "k-3f9a-secret"]).arg(r.log_folder.as_ref().unwrap()).output().unwrap();
    assert!(logs.stdout.is_empty(), "the activation key reached the logs");
    assert!(mounts_under(&root).is_empty());
}

#[test]
fn a_folder_that_is_not_a_rootfs_is_refused_before_anything_runs() {
    let t = Toe::new();
    std::fs::create_dir_all(t.path("empty")).unwrap();
    t.write(
        "d.yml",
        &build_doc(
            "- name: S\n  action: ExecuteBash\n  inputs:\n    commands: ['touch /tmp/should-not-exist-amictl']\n",
        ),
    );
    let out = common::amictl()
        .args(["toe", "run", "--root"])
        .arg(t.path("empty"))
        .arg("--documents")
        .arg(t.path("d.yml"))
        .arg("--log-directory")
        .arg(t.path("logs"))
        .output()
        .unwrap();
    let r = collect(out);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a root filesystem"), "{}", r.stderr);
    assert!(!Path::new("/tmp/should-not-exist-amictl").exists());
}
