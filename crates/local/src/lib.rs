//! # local — build and test images on this machine
//!
//! The embedded default builder: no cloud account, real components.
//!
//! - **Parents** are root filesystems: `debootstrap:<suite>` (Debian minbase) or
//!   `tarball:<path>` (for example an exported Amazon Linux 2 container). Each is stored
//!   once under `parents/<id>/`, where the id is a content hash (of the tarball, or of the
//!   package database debootstrap produced), so "the parent moved" means its content did.
//! - **Build**: the components' build and validate phases run in a sandbox whose root is an
//!   overlay over the parent; the parent is never written. The result is materialised as
//!   the new image's root filesystem.
//! - **Test**: the components' test phases and the recipe's test documents run in a
//!   *fresh* overlay over that output — never in the build root — and the package manifest
//!   is read from inside the image (dpkg or rpm, whichever it has).
//! - **Artifacts**: `rootfs.tar.zst`, a raw ext4 disk image made without loop devices
//!   (`mkfs.ext4 -d`), its qcow2 conversion, and the manifest, each with its SHA-256.
//!
//! Every mount lives in a private mount namespace of a child process that dies with
//! amictl, so a failed or killed build leaves no mounts and no processes behind.
//!
//! [`LocalBuilder`] is the [`provider::Builder`] over all this; [`InventoryFleet`] is a
//! [`provider::FleetSource`] over saved `aws ec2 describe-instances` output (offline audits).

mod artifacts;
mod builder;
pub mod inventory;
mod parent;

use std::fs;
use std::path::{Path, PathBuf};

use config::{Component, ParamValue, TestDocument};
use provider::{Package, TestResult};
use sandbox::{Overlay, Sandbox};
use toe::{Document, RunOptions, RunOutcome};

pub use artifacts::sha256_file;
pub use builder::LocalBuilder;
pub use inventory::InventoryFleet;
pub use parent::{Parent, observe_parent, prepare_parent};

#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error("{stage}: {message}")]
    Stage { stage: &'static str, message: String },
    #[error("{stage}: {source}")]
    Sandbox { stage: &'static str, source: sandbox::SandboxError },
    #[error("{0}")]
    Parent(String),
}

fn stage_err(stage: &'static str) -> impl Fn(std::io::Error) -> FactoryError {
    move |e| FactoryError::Stage { stage, message: e.to_string() }
}

/// What to build.
pub struct BuildRequest<'a> {
    pub build_id: &'a str,
    pub image: &'a str,
    pub version: &'a str,
    pub parent: &'a Parent,
    pub components: Vec<&'a Component>,
    pub tests: &'a [TestDocument],
    pub disk_size_mb: Option<u64>,
    /// Run the cleanup before the image is made from the build (`config::hygiene`).
    pub snapshot_cleanup: bool,
}

#[derive(Debug)]
pub struct BuildOutput {
    pub packages: Vec<Package>,
    pub artifacts: Vec<provider::Artifact>,
    pub tests: Vec<TestResult>,
}

/// Build stages, for progress and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Build,
    Materialise,
    Test,
    Artifacts,
}

pub struct Factory {
    pub work_dir: PathBuf,
    /// Documents run by ARN through `ExecuteDocument`, fetched before the build (the
    /// sandbox does not reach Image Builder).
    pub components: std::sync::Arc<toe::component::Prefetched>,
}

/// Where the sandbox sees what the host lends it.
const IN_LOGS: &str = "/run/amictl/logs";
const IN_STATE: &str = "/run/amictl/state";
const IN_OUT: &str = "/run/amictl/out";
const IN_DOCS: &str = "/run/amictl/documents";

impl Factory {
    pub fn new(work_dir: &Path) -> Factory {
        Factory { work_dir: work_dir.to_path_buf(), components: Default::default() }
    }

    pub fn build_dir(&self, build_id: &str) -> PathBuf {
        self.work_dir.join("builds").join(build_id)
    }

    pub fn image_dir(&self, image: &str, version: &str) -> PathBuf {
        self.work_dir.join("images").join(image).join(version)
    }

    /// Logs of a build (kept after the scratch space is removed).
    pub fn log_dir(&self, build_id: &str) -> PathBuf {
        self.build_dir(build_id).join("logs")
    }

    /// Runs a whole build. `on_stage` is called as each stage starts.
    pub fn build(&self, req: &BuildRequest<'_>, mut on_stage: impl FnMut(Stage)) -> Result<BuildOutput, FactoryError> {
        let dir = self.build_dir(req.build_id);
        let logs = self.log_dir(req.build_id);
        let out_dir = self.image_dir(req.image, req.version);
        let rootfs = out_dir.join("rootfs");
        for d in [&dir, &logs] {
            fs::create_dir_all(d).map_err(stage_err("prepare"))?;
        }
        if out_dir.exists() {
            fs::remove_dir_all(&out_dir).map_err(stage_err("prepare"))?;
        }
        let secrets = secret_values(&req.components);
        // A failure's message quotes the step's output, which may hold a secret value.
        let result = self.build_stages(req, &dir, &logs, &rootfs, &mut on_stage).map_err(|e| match e {
            FactoryError::Stage { stage, message } => {
                FactoryError::Stage { stage, message: masked(&message, &secrets) }
            }
            other => other,
        });
        redact_logs(&logs, &secrets);
        self.clean_scratch(req.build_id);
        if result.is_err() {
            let _ = fs::remove_dir_all(&out_dir);
        }
        result
    }

    fn build_stages(
        &self,
        req: &BuildRequest<'_>,
        dir: &Path,
        logs: &Path,
        rootfs: &Path,
        on_stage: &mut impl FnMut(Stage),
    ) -> Result<BuildOutput, FactoryError> {
        on_stage(Stage::Build);
        let build_overlay = Overlay {
            lowers: vec![req.parent.rootfs.clone()],
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        };
        let mut plans: Vec<ComponentRun> = req
            .components
            .iter()
            .map(|c| ComponentRun::new(c, Some(vec!["build".into(), "validate".into()])))
            .collect::<Result<_, _>>()?;
        if req.snapshot_cleanup {
            // Last in the build, so nothing a component does afterwards undoes it.
            let folder = dir.join("cleanup");
            fs::create_dir_all(&folder).map_err(stage_err("build"))?;
            let (document, _) =
                Document::parse(config::hygiene::NAME, folder, config::hygiene::document(&req.components)).map_err(
                    |d| FactoryError::Stage {
                        stage: "build",
                        message: format!("the snapshot cleanup document is invalid: {d:?}"),
                    },
                )?;
            plans.push(ComponentRun {
                label: config::hygiene::NAME.into(),
                document,
                phases: None,
                parameters: Vec::new(),
                secrets: Vec::new(),
            });
        }
        self.run_documents(&build_overlay, &plans, &logs.join("build"), &dir.join("state-build"), None, "build")?;

        on_stage(Stage::Materialise);
        fs::create_dir_all(rootfs).map_err(stage_err("materialise"))?;
        let target = rootfs.to_path_buf();
        let code = sandbox::with_overlay(&build_overlay, |merged| {
            let status =
                std::process::Command::new("cp").arg("-a").arg(format!("{}/.", merged.display())).arg(&target).status();
            i32::from(!status.is_ok_and(|s| s.success()))
        })
        .map_err(|source| FactoryError::Sandbox { stage: "materialise", source })?;
        if code != 0 {
            return Err(FactoryError::Stage {
                stage: "materialise",
                message: "copying the built root filesystem failed".into(),
            });
        }
        remove_dir(&build_overlay.upper);
        remove_dir(&build_overlay.work);

        on_stage(Stage::Test);
        let test_overlay = Overlay {
            lowers: vec![rootfs.to_path_buf()],
            upper: dir.join("test-upper"),
            work: dir.join("test-work"),
            merged: dir.join("test-merged"),
        };
        let mut runs: Vec<ComponentRun> = Vec::new();
        for c in &req.components {
            if c.document.phases.iter().any(|p| p.name == "test") {
                runs.push(ComponentRun::new(c, Some(vec!["test".into()]))?);
            }
        }
        for t in req.tests {
            runs.push(ComponentRun::test_document(t));
        }
        let out = dir.join("out");
        fs::create_dir_all(&out).map_err(stage_err("test"))?;
        let test_result =
            self.run_documents(&test_overlay, &runs, &logs.join("test"), &dir.join("state-test"), Some(&out), "test");
        let tests: Vec<TestResult> = runs.iter().map(|r| r.outcome(&logs.join("test"))).collect();
        if let Err(e) = test_result {
            if tests.iter().all(|t| t.passed) {
                return Err(e);
            }
            let failed: Vec<String> =
                tests.iter().filter(|t| !t.passed).map(|t| format!("{}: {}", t.name, t.detail)).collect();
            return Err(FactoryError::Stage { stage: "test", message: format!("tests failed: {}", failed.join("; ")) });
        }
        let manifest_text =
            toe::input::read_text(&out.join("manifest.tsv"), toe::input::FEED_LIMIT).unwrap_or_default();
        let packages = parse_manifest(&manifest_text);
        if packages.is_empty() {
            return Err(FactoryError::Stage {
                stage: "test",
                message: "the image has no readable package database (dpkg or rpm)".into(),
            });
        }

        on_stage(Stage::Artifacts);
        let image_dir = rootfs.parent().unwrap_or(rootfs).to_path_buf();
        fs::write(image_dir.join("manifest.tsv"), &manifest_text).map_err(stage_err("artifacts"))?;
        let artifacts = artifacts::produce(rootfs, &image_dir, req.disk_size_mb)?;
        // rootfs.tar.zst and the disk images carry the tree now; keep only those.
        remove_dir(rootfs);
        Ok(BuildOutput { packages, artifacts, tests })
    }

    /// Runs documents in a sandbox over `overlay`, restarting it on reboot requests.
    fn run_documents(
        &self,
        overlay: &Overlay,
        runs: &[ComponentRun],
        logs: &Path,
        state: &Path,
        out: Option<&Path>,
        stage: &'static str,
    ) -> Result<(), FactoryError> {
        fs::create_dir_all(logs).map_err(stage_err(stage))?;
        // Bound below even when no document runs (a line with no test documents).
        fs::create_dir_all(state).map_err(stage_err(stage))?;
        let mut sb = Sandbox::over(overlay.clone()).map_err(|source| FactoryError::Sandbox { stage, source })?;
        sb = sb.bind(logs, IN_LOGS, true).map_err(|source| FactoryError::Sandbox { stage, source })?;
        let mut docs: Vec<Document> = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let run_state = state.join(i.to_string());
            fs::create_dir_all(&run_state).map_err(stage_err(stage))?;
            let mut doc = run.document.clone();
            let inside = format!("{IN_DOCS}/{}", i + 1);
            sb = sb.bind(&doc.dir, &inside, false).map_err(|source| FactoryError::Sandbox { stage, source })?;
            doc.dir = PathBuf::from(inside);
            docs.push(doc);
        }
        sb = sb.bind(state, IN_STATE, true).map_err(|source| FactoryError::Sandbox { stage, source })?;
        if let Some(out) = out {
            sb = sb.bind(out, IN_OUT, true).map_err(|source| FactoryError::Sandbox { stage, source })?;
        }
        loop {
            let code = sb
                .run(|| {
                    for (i, (run, doc)) in runs.iter().zip(&docs).enumerate() {
                        // After a reboot the sandbox starts again: skip what already finished.
                        let done = PathBuf::from(format!("{IN_STATE}/{i}/done"));
                        if done.exists() {
                            continue;
                        }
                        let opts = RunOptions {
                            phases: run.phases.clone(),
                            parameters: run.parameters.clone(),
                            execution_id: Some(format!("{}-{}", i + 1, run.label)),
                            log_directory: PathBuf::from(IN_LOGS),
                            log_directory_display: Some(logs.to_path_buf()),
                            state_directory: PathBuf::from(format!("{IN_STATE}/{i}")),
                            object_store: None,
                            parameter_store: None,
                            components: Some(self.components.clone()),
                            secrets: run.secrets.clone(),
                        };
                        match toe::run(std::slice::from_ref(doc), &opts, &mut toe::NoObserver) {
                            Ok(RunOutcome::Finished(s)) if s.status.is_success() => {
                                let _ = fs::write(&done, "");
                            }
                            Ok(RunOutcome::Finished(s)) => {
                                eprintln!("{}: {}", run.label, s.failure_message);
                                return 1;
                            }
                            Ok(RunOutcome::RebootRequested { .. }) => return 194,
                            Err(e) => {
                                eprintln!("{}: {e}", run.label);
                                return 1;
                            }
                        }
                    }
                    if out.is_some() {
                        return write_manifest(Path::new(IN_OUT).join("manifest.tsv").as_path());
                    }
                    0
                })
                .map_err(|source| FactoryError::Sandbox { stage, source })?;
            match code {
                0 => return Ok(()),
                194 => continue,
                _ => {
                    let failed = runs.iter().map(|r| r.outcome(logs)).find(|o| !o.passed);
                    let message = failed
                        .map(|o| format!("{}: {}", o.name, o.detail))
                        .unwrap_or_else(|| format!("exit status {code}"));
                    return Err(FactoryError::Stage {
                        stage,
                        message: format!("{message} (logs: {})", logs.display()),
                    });
                }
            }
        }
    }

    /// Removes a build's scratch space (keeps its logs).
    pub fn clean_scratch(&self, build_id: &str) {
        let dir = self.build_dir(build_id);
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name() != "logs" {
                    remove_dir(&e.path());
                }
            }
        }
    }

    /// Removes an image version's files (retire).
    pub fn remove_image(&self, image: &str, version: &str) -> std::io::Result<()> {
        let dir = self.image_dir(image, version);
        if dir.exists() { fs::remove_dir_all(dir) } else { Ok(()) }
    }
}

fn remove_dir(p: &Path) {
    if p.is_dir() {
        let _ = fs::remove_dir_all(p);
    } else {
        let _ = fs::remove_file(p);
    }
}

/// One document to run, with its phases and resolved parameters.
struct ComponentRun {
    label: String,
    document: Document,
    phases: Option<Vec<String>>,
    parameters: Vec<(String, String)>,
    /// The values of its secret parameters, masked in every log.
    secrets: Vec<String>,
}

impl ComponentRun {
    fn new(c: &Component, phases: Option<Vec<String>>) -> Result<ComponentRun, FactoryError> {
        let parameters = c
            .parameters
            .iter()
            .map(|(k, v)| v.resolve().map(|val| (k.clone(), val)))
            .collect::<Result<_, _>>()
            .map_err(|m| FactoryError::Stage { stage: "build", message: format!("component {}: {m}", c.name) })?;
        Ok(ComponentRun {
            label: c.name.clone(),
            document: c.document.clone(),
            phases,
            parameters,
            secrets: secret_values(&[c]),
        })
    }

    fn test_document(t: &TestDocument) -> ComponentRun {
        let label = t.file.file_stem().and_then(|s| s.to_str()).unwrap_or("test").to_string();
        ComponentRun { label, document: t.document.clone(), phases: None, parameters: Vec::new(), secrets: Vec::new() }
    }

    /// Reads this run's result from its detailedoutput.json.
    fn outcome(&self, logs: &Path) -> TestResult {
        let name = match &self.phases {
            Some(p) if p == &["test".to_string()] => format!("{} (test phase)", self.label),
            _ => self.label.clone(),
        };
        let folder = fs::read_dir(logs).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(&self.label)))
        });
        let detail: Option<serde_json::Value> = folder
            .and_then(|f| fs::read_to_string(f.join("detailedoutput.json")).ok())
            .and_then(|t| serde_json::from_str(&t).ok());
        match detail {
            Some(d) if d["status"] == "success" || d["status"] == "successWithIgnoredFailure" => {
                TestResult { name, passed: true, detail: String::new() }
            }
            Some(d) => {
                TestResult { name, passed: false, detail: d["failureMessage"].as_str().unwrap_or("failed").to_string() }
            }
            None => TestResult { name, passed: false, detail: "did not run to completion".into() },
        }
    }
}

/// Inside the image: the package manifest from whichever package database it has.
fn write_manifest(dest: &Path) -> i32 {
    let dpkg =
        "dpkg-query -W -f='${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n'";
    let rpm = "rpm -qa --queryformat '%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t\\n'";
    let script = format!(
        "if command -v dpkg-query >/dev/null; then {dpkg}; elif command -v rpm >/dev/null; then {rpm}; else exit 3; fi"
    );
    match std::process::Command::new("sh").arg("-c").arg(script).output() {
        Ok(o) if o.status.success() => i32::from(fs::write(dest, o.stdout).is_err()),
        _ => 1,
    }
}

/// Parses the manifest written by [`write_manifest`].
pub fn parse_manifest(text: &str) -> Vec<Package> {
    let mut out: Vec<Package> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            let source_name = f
                .get(3)
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_end_matches(".src.rpm").to_string())
                .unwrap_or_else(|| f[0].to_string());
            let source_version =
                f.get(4).filter(|s| !s.is_empty()).map(|s| s.to_string()).unwrap_or_else(|| f[1].to_string());
            Some(Package {
                name: f[0].into(),
                version: f[1].trim_start_matches("0:").into(),
                arch: f[2].into(),
                source_name,
                source_version,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    out
}

fn secret_values(components: &[&Component]) -> Vec<String> {
    components
        .iter()
        .flat_map(|c| c.parameters.iter())
        .filter(|(_, v)| v.is_secret())
        .filter_map(|(_, v): &(String, ParamValue)| v.resolve().ok())
        .filter(|s| s.len() >= 4)
        .collect()
}

/// `text` with every secret masked, in every form (each line, JSON-escaped).
fn masked(text: &str, secrets: &[String]) -> String {
    let mut all = toe::report::Secrets::default();
    for s in secrets {
        all.add(s);
    }
    all.mask(text)
}

/// A safety net under `disableLogging`: no secret parameter value survives in a log file.
/// Files are streamed (a step may have logged gigabytes); one is rewritten only when a
/// secret was masked in it (each mask shortens it: secrets are at least four bytes).
fn redact_logs(dir: &Path, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => redact_logs(&p, secrets),
            Ok(t) if t.is_file() => redact_file(&p, secrets),
            _ => {}
        }
    }
}

fn redact_file(path: &Path, secrets: &[String]) {
    use std::io::{Read, Write};
    let tmp = path.with_extension("redacting");
    let result = (|| -> std::io::Result<bool> {
        let mut input = fs::File::open(path)?;
        let mut out = std::io::BufWriter::new(fs::File::create(&tmp)?);
        let mut redactor = toe::report::Redactor::new(secrets);
        let (mut read, mut written) = (0u64, 0u64);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            let safe = redactor.feed(&buf[..n]);
            written += safe.len() as u64;
            out.write_all(&safe)?;
        }
        let rest = redactor.finish();
        written += rest.len() as u64;
        out.write_all(&rest)?;
        out.flush()?;
        Ok(written != read)
    })();
    match result {
        Ok(true) => {
            let _ = fs::rename(&tmp, path);
        }
        _ => {
            let _ = fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_and_rpm_manifests_parse() {
        let dpkg = "libc6\t2.41-12\tamd64\tglibc\t2.41-12\nbash\t5.2.37-2\tamd64\t\t\n";
        let p = parse_manifest(dpkg);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[0].source_name, "bash");
        assert_eq!(p[0].source_version, "5.2.37-2");
        assert_eq!(p[1].source_name, "glibc");
        let rpm = "openssl-libs\t1:1.0.2k-24.amzn2.0.4\tx86_64\topenssl-1.0.2k-24.amzn2.0.4.src.rpm\t\nbash\t0:4.2.46-34.amzn2\tx86_64\tbash-4.2.46-34.amzn2.src.rpm\t\n";
        let p = parse_manifest(rpm);
        assert_eq!(p[0].version, "4.2.46-34.amzn2", "a zero epoch is dropped");
        assert_eq!(p[1].version, "1:1.0.2k-24.amzn2.0.4");
        assert_eq!(p[1].source_name, "openssl-1.0.2k-24.amzn2.0.4");
    }

    #[test]
    fn redaction_removes_secret_values_from_every_log() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::write(d.path().join("a/b/console.log"), "key=hunter22 ok").unwrap();
        redact_logs(d.path(), &["hunter22".into()]);
        assert_eq!(fs::read_to_string(d.path().join("a/b/console.log")).unwrap(), "key=*** ok");
    }
}
