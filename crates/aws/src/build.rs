//! One image build on EC2, start to finish: builder instance → components (awstoe via Run
//! Command) → package manifest → AMI → test instance from that AMI → built-in and
//! document tests → cleanup.
//!
//! Whatever happens, [`build`] ends by removing everything tagged with the build id except
//! a finished, tested AMI; a run killed before that point leaves tagged resources that
//! the next `apply` removes with [`crate::builder::cleanup`]. The [`Journal`] is filled as
//! the build goes, so the caller can record logs and test results of a failed build too.

use std::time::Duration;

use aws_sdk_ec2::types::Tag;

use crate::Aws;
use crate::builder::{self, BUILD_ID_TAG, Cleanup, LaunchSpec, Polling};
use crate::error::{AwsError, api};
use crate::publish::{Waiter, ami_name};
use crate::remote::{self, RemoteDocument};
use provider::{Cancel, Package, TestResult};

/// How long to wait for what. Production defaults; tests against an emulator shorten
/// only `poll`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub poll: Duration,
    pub running: Duration,
    pub online: Duration,
    pub command: Duration,
    pub image: Duration,
}

impl Timing {
    pub fn with_poll(poll: Duration) -> Timing {
        Timing {
            poll,
            running: Duration::from_secs(600),
            online: Duration::from_secs(900),
            command: Duration::from_secs(7200),
            image: Duration::from_secs(7200),
        }
    }

    fn command(&self) -> Polling {
        Polling { interval: self.poll, timeout: self.command }
    }

    fn running(&self) -> Polling {
        Polling { interval: self.poll, timeout: self.running }
    }

    fn online(&self) -> Polling {
        Polling { interval: self.poll, timeout: self.online }
    }

    pub fn waiter(&self) -> Waiter {
        Waiter { interval: self.poll, sightings: 3, timeout: self.image }
    }
}

/// What to build, and where. (`Debug` is written out so secret values never print.)
#[derive(Clone)]
pub struct BuildSpec {
    pub build_id: String,
    pub image: String,
    pub version: String,
    /// The platform account's name.
    pub account: String,
    pub region: String,
    pub parent_ami: String,
    pub instance_type: String,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub instance_profile: Option<String>,
    /// Run with phases `build,validate` on the builder.
    pub components: Vec<RemoteDocument>,
    /// Run with phase `test` on the test instance.
    pub tests: Vec<RemoteDocument>,
    /// Services that must be active on the test instance, before and after a reboot.
    pub services: Vec<String>,
    /// (SecureString name, value) for the documents' secret parameters.
    pub secrets: Vec<(String, String)>,
    pub timing: Timing,
    /// Set when the operator asks amictl to stop: the build stops where it is and cleans up.
    pub cancel: Cancel,
    /// The other regions the version will be published in. Copies take longest of all, so
    /// they start as soon as the AMI is available and run beside the tests; nobody is given
    /// them before the version is published, and a failed build removes them.
    pub copy_to: Vec<String>,
}

impl std::fmt::Debug for BuildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSpec")
            .field("build_id", &self.build_id)
            .field("image", &self.image)
            .field("version", &self.version)
            .field("account", &self.account)
            .field("region", &self.region)
            .field("parent_ami", &self.parent_ami)
            .field("components", &self.components.iter().map(|c| &c.name).collect::<Vec<_>>())
            .field("secrets", &self.secrets.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("copy_to", &self.copy_to)
            .finish_non_exhaustive()
    }
}

/// Progress, for the operator.
#[derive(Debug, Clone)]
pub enum Step {
    Launching(&'static str),
    WaitingForSsm(&'static str),
    Component(String),
    Manifest,
    Imaging,
    Test(String),
    Rebooting,
    CleaningUp,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Launching(role) => write!(f, "launching the {role} instance"),
            Step::WaitingForSsm(role) => write!(f, "waiting for the {role}'s SSM agent"),
            Step::Component(name) => write!(f, "running component {name}"),
            Step::Manifest => write!(f, "collecting the package manifest"),
            Step::Imaging => write!(f, "creating the AMI"),
            Step::Test(name) => write!(f, "testing: {name}"),
            Step::Rebooting => write!(f, "testing: reboot"),
            Step::CleaningUp => write!(f, "cleaning up instances"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepLog {
    pub name: String,
    pub command_id: String,
    pub stdout: String,
    pub stderr: String,
}

/// What the build did so far; complete on success, partial on failure.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    pub builder: Option<String>,
    pub tester: Option<String>,
    pub image_id: Option<String>,
    pub snapshots: Vec<String>,
    pub packages: Vec<Package>,
    pub tests: Vec<TestResult>,
    pub logs: Vec<StepLog>,
    pub cleanup: Option<Cleanup>,
    /// Copies started before the tests: (region, AMI id).
    pub copies: Vec<(String, String)>,
    /// What a failed build's cleanup removed in the copies' regions.
    pub copy_cleanups: Vec<(String, Cleanup)>,
    /// Secret values, masked in every output the build keeps (awstoe may echo them).
    redact: Vec<String>,
}

/// `text` with every secret masked, in every form it may be written in (each line, and
/// JSON-escaped: awstoe's reports quote it).
fn masked(text: &str, secrets: &[String]) -> String {
    let mut all = toe::report::Secrets::default();
    for s in secrets {
        all.add(s);
    }
    all.mask(text)
}

/// Builds and tests; returns the tested AMI's id. Cleans up either way — also when the
/// operator asks to stop, which ends the build within a poll interval.
pub async fn build(
    aws: &Aws,
    spec: &BuildSpec,
    journal: &mut Journal,
    step: &(dyn Fn(Step) + Sync),
) -> Result<String, AwsError> {
    let result = tokio::select! {
        r = run(aws, spec, journal, step) => r,
        () = cancelled(&spec.cancel, spec.timing.poll) => Err(AwsError::Cancelled),
    };
    step(Step::CleaningUp);
    let keep = result.as_ref().ok().map(String::as_str);
    let mut cleaned = builder::cleanup(aws, &spec.account, &spec.region, &spec.build_id, keep).await;
    if result.is_err() {
        for (region, _) in journal.copies.clone() {
            match builder::cleanup(aws, &spec.account, &region, &spec.build_id, None).await {
                Ok(c) => journal.copy_cleanups.push((region, c)),
                Err(e) => cleaned = cleaned.and(Err(e)),
            }
        }
    }
    match (cleaned, result) {
        (Ok(c), result) => {
            journal.cleanup = Some(c);
            result
        }
        // The AMI is fine but instances may be left: fail, so the next run cleans up.
        (Err(c), Ok(_)) => Err(c),
        (Err(c), Err(e)) => Err(AwsError::Failed {
            what: format!("build {}", spec.build_id),
            region: spec.region.clone(),
            message: format!("{e}; cleaning up also failed ({c}), the next apply retries it"),
        }),
    }
}

/// Returns once `cancel` is set, looking every `poll` (at least 10 times a second).
pub(crate) async fn cancelled(cancel: &Cancel, poll: Duration) {
    let every = poll.min(Duration::from_millis(100));
    while !cancel.is_cancelled() {
        tokio::time::sleep(every).await;
    }
}

fn launch_spec(spec: &BuildSpec, role: &str, image_id: &str) -> LaunchSpec {
    LaunchSpec {
        build_id: spec.build_id.clone(),
        role: role.into(),
        image_id: image_id.into(),
        instance_type: spec.instance_type.clone(),
        subnet: spec.subnet.clone(),
        security_groups: spec.security_groups.clone(),
        instance_profile: spec.instance_profile.clone(),
        name: format!("amictl {role} {} {}", spec.image, spec.version),
    }
}

async fn run(
    aws: &Aws,
    spec: &BuildSpec,
    journal: &mut Journal,
    step: &(dyn Fn(Step) + Sync),
) -> Result<String, AwsError> {
    let (account, region) = (spec.account.as_str(), spec.region.as_str());
    journal.redact = spec.secrets.iter().map(|(_, v)| v.clone()).collect();
    let ssm = aws.ssm(account, region).await?;
    let script_error = |e: remote::ScriptError| AwsError::Failed {
        what: "component".into(),
        region: region.into(),
        message: e.to_string(),
    };
    // Refuse before launching anything.
    let mut scripts = Vec::new();
    for doc in &spec.components {
        scripts.push((
            doc.name.clone(),
            remote::run_document(&spec.build_id, doc, "build,validate", region).map_err(script_error)?,
        ));
    }
    let mut test_scripts = Vec::new();
    for doc in &spec.tests {
        test_scripts
            .push((doc.name.clone(), remote::run_document(&spec.build_id, doc, "test", region).map_err(script_error)?));
    }
    builder::put_secrets(&ssm, account, region, &spec.secrets).await?;

    // Builder.
    step(Step::Launching("builder"));
    let instance = builder::launch(aws, account, region, &launch_spec(spec, "builder", &spec.parent_ami)).await?;
    journal.builder = Some(instance.clone());
    builder::wait_running(aws, account, region, &instance, spec.timing.running()).await?;
    step(Step::WaitingForSsm("builder"));
    builder::wait_online(&ssm, account, region, &instance, spec.timing.online()).await?;
    for (name, script) in &scripts {
        step(Step::Component(name.clone()));
        let what = format!("component {name} (build, validate)");
        command(&ssm, account, region, &instance, &what, script, spec.timing, journal).await?;
    }
    step(Step::Manifest);
    let out =
        command(&ssm, account, region, &instance, "package manifest", &remote::manifest_script(), spec.timing, journal)
            .await?;
    journal.packages = remote::parse_manifest(&out).map_err(|message| AwsError::Failed {
        what: format!("the package manifest of {instance}"),
        region: region.into(),
        message,
    })?;
    command(
        &ssm,
        account,
        region,
        &instance,
        "removing the build's files",
        &remote::build_files_script(),
        spec.timing,
        journal,
    )
    .await?;

    // Image.
    step(Step::Imaging);
    let name = ami_name(&spec.image, &spec.version);
    let image_id = match builder::find_image(aws, account, region, &name).await? {
        Some((id, Some(b))) if b == spec.build_id => id,
        Some((id, other)) => {
            return Err(AwsError::Failed {
                what: format!("AMI name {name}"),
                region: region.into(),
                message: format!(
                    "already used by {id} (build {}); a version is never imaged twice",
                    other.unwrap_or_default()
                ),
            });
        }
        None => builder::create_image(aws, account, region, &instance, &name, &spec.build_id).await?,
    };
    journal.image_id = Some(image_id.clone());
    let ec2 = aws.ec2(account, region).await?;
    journal.snapshots =
        crate::publish::wait_available(aws, &ec2, account, region, &image_id, spec.timing.waiter()).await?;
    if !journal.snapshots.is_empty() {
        // CreateImage can tag snapshots itself, but not everywhere (and not in emulators).
        ec2.create_tags()
            .set_resources(Some(journal.snapshots.clone()))
            .tags(Tag::builder().key(BUILD_ID_TAG).value(&spec.build_id).build())
            .tags(Tag::builder().key("Name").value(&name).build())
            .send()
            .await
            .map_err(api("ec2:CreateTags", account, region))?;
    }

    if !spec.copy_to.is_empty() {
        journal.copies = early_copies(aws, spec, &image_id).await;
    }

    // The builder's work is in the AMI: it need not run through the tests.
    builder::terminate(aws, account, region, &instance).await?;

    // Test instance from the new AMI.
    step(Step::Launching("tester"));
    let tester = builder::launch(aws, account, region, &launch_spec(spec, "tester", &image_id)).await?;
    journal.tester = Some(tester.clone());
    builder::wait_running(aws, account, region, &tester, spec.timing.running()).await?;
    step(Step::WaitingForSsm("tester"));
    let online = builder::wait_online(&ssm, account, region, &tester, spec.timing.online()).await;
    let ok = online.is_ok();
    journal
        .tests
        .push(outcome("ssm-agent-online", online.map(|_| "the SSM agent registered and reports Online".into())));
    if !ok {
        return Err(failed_tests(journal, region));
    }
    // The checks before the reboot run as one command (see `remote::checks_script`).
    let mut names = vec!["services-active".to_string()];
    let mut checks = vec![remote::services_script(&spec.services)];
    for (name, script) in &test_scripts {
        names.push(format!("test:{name}"));
        checks.push(script.clone());
    }
    step(Step::Test(names.join(", ")));
    // As few commands as Run Command's 64 KB parameter limit allows (one, usually).
    let mut recorded = false;
    let mut from = 0;
    for batch in remote::batches(&checks) {
        let script = remote::checks_script(&spec.build_id, &checks[from..from + batch]);
        let ran = command_to_end(&ssm, account, region, &tester, "checks", &script, spec.timing, journal).await;
        // The script's first line records the boot id: it did if the script ran at all.
        recorded = match &ran {
            Ok((_, None)) => true,
            Ok((stdout, Some(_))) => stdout.lines().any(|l| l.starts_with(remote::CHECK_MARK)),
            Err(_) => false,
        };
        journal.tests.extend(verdicts(&names[from..from + batch], ran));
        from += batch;
    }
    step(Step::Rebooting);
    let r = survives_reboot(aws, &ssm, spec, &tester, recorded, journal).await;
    journal.tests.push(outcome("survives-reboot", r.map(|_| "rebooted; SSM Online and services active again".into())));
    if journal.tests.iter().any(|t| !t.passed) {
        return Err(failed_tests(journal, region));
    }
    Ok(image_id)
}

/// Starts the copies to the other regions, tagged with the build id (so a failed or
/// interrupted build's cleanup finds them); an encrypted AMI is left to the publisher, which
/// checks the key and re-encrypts per region. Only a head start: a copy that cannot be
/// started now is the publisher's to make (and to report).
async fn early_copies(aws: &Aws, spec: &BuildSpec, image_id: &str) -> Vec<(String, String)> {
    match crate::kms::image_keys(aws, &spec.account, &spec.region, image_id).await {
        Ok(keys) if keys.is_empty() => {}
        Ok(_) => return Vec::new(),
        Err(e) => {
            tracing::warn!("not copying {image_id} before its tests: {e}");
            return Vec::new();
        }
    }
    let copy = crate::publish::CopyOf {
        image: &spec.image,
        version: &spec.version,
        build_id: &spec.build_id,
        source_region: &spec.region,
        source_image_id: image_id,
        key: None,
    };
    let mut copies = Vec::new();
    for region in &spec.copy_to {
        let started = async {
            let (id, made) = crate::publish::copy_to_region(aws, &spec.account, region, &copy).await?;
            copies.push((region.clone(), id.clone()));
            if made {
                let ec2 = aws.ec2(&spec.account, region).await?;
                aws.limits(&spec.account, region).await.mutate.take().await;
                let tags = [(BUILD_ID_TAG, spec.build_id.clone()), ("Name", ami_name(&spec.image, &spec.version))];
                crate::publish::tag(&ec2, &spec.account, region, &id, &[], &tags).await?;
            }
            Ok::<_, AwsError>(())
        };
        if let Err(e) = started.await {
            tracing::warn!("not copying {image_id} to {region} before its tests: {e}");
        }
    }
    copies
}

#[allow(clippy::too_many_arguments)]
async fn command(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    instance: &str,
    what: &str,
    script: &str,
    timing: Timing,
    journal: &mut Journal,
) -> Result<String, AwsError> {
    match command_to_end(ssm, account, region, instance, what, script, timing, journal).await? {
        (stdout, None) => Ok(stdout),
        (_, Some(failed)) => Err(failed),
    }
}

/// Runs a script on the instance, output masked and kept in the journal: its stdout, with
/// the failure beside it when the script ran and failed.
#[allow(clippy::too_many_arguments)]
async fn command_to_end(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    instance: &str,
    what: &str,
    script: &str,
    timing: Timing,
    journal: &mut Journal,
) -> Result<(String, Option<AwsError>), AwsError> {
    let mask = |e: AwsError| match e {
        AwsError::Command { what, instance, region, status, exit_code, tail } => {
            AwsError::Command { what, instance, region, status, exit_code, tail: masked(&tail, &journal.redact) }
        }
        other => other,
    };
    let r = builder::run_command_to_end(ssm, account, region, instance, what, &[script.to_string()], timing.command())
        .await
        .map(|(mut o, failed)| {
            o.stdout = masked(&o.stdout, &journal.redact);
            o.stderr = masked(&o.stderr, &journal.redact);
            (o, failed.map(mask))
        })
        .map_err(mask);
    journal.logs.push(match &r {
        Ok((o, failed)) => StepLog {
            name: what.into(),
            command_id: o.command_id.clone(),
            stdout: o.stdout.clone(),
            stderr: match failed {
                None => o.stderr.clone(),
                Some(e) if o.stderr.is_empty() || o.stderr.ends_with('\n') => format!("{}{e}", o.stderr),
                Some(e) => format!("{}\n{e}", o.stderr),
            },
        },
        Err(e) => {
            StepLog { name: what.into(), command_id: String::new(), stdout: String::new(), stderr: e.to_string() }
        }
    });
    r.map(|(o, failed)| (o.stdout, failed))
}

/// Each check's result from a `checks_script` run. The exit status is the verdict on the
/// whole (0 only when every check passed: an emulator that runs nothing reports that),
/// and the markers say which check failed and how; a check the output has no marker for
/// failed when the run did.
fn verdicts(names: &[String], ran: Result<(String, Option<AwsError>), AwsError>) -> Vec<TestResult> {
    let (stdout, failed) = match ran {
        Ok(r) => r,
        Err(e) => {
            let detail = e.to_string();
            return names
                .iter()
                .map(|n| TestResult { name: n.clone(), passed: false, detail: detail.clone() })
                .collect();
        }
    };
    let marks = remote::check_verdicts(&stdout, names.len());
    names
        .iter()
        .zip(marks)
        .map(|(name, mark)| {
            let last =
                |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string();
            let passed = |text: &str| match (name.as_str(), last(text)) {
                ("services-active", line) if !line.is_empty() => line,
                ("services-active", _) => "every service active".into(),
                _ => "test phase passed".into(),
            };
            match (mark, &failed) {
                (Some((0, text)), _) => TestResult { name: name.clone(), passed: true, detail: passed(&text) },
                (Some((rc, text)), _) => {
                    TestResult { name: name.clone(), passed: false, detail: format!("exit code {rc}: {}", last(&text)) }
                }
                (None, None) => TestResult { name: name.clone(), passed: true, detail: passed("") },
                (None, Some(e)) => TestResult { name: name.clone(), passed: false, detail: format!("no verdict: {e}") },
            }
        })
        .collect()
}

async fn survives_reboot(
    aws: &Aws,
    ssm: &aws_sdk_ssm::Client,
    spec: &BuildSpec,
    tester: &str,
    boot_id_recorded: bool,
    journal: &mut Journal,
) -> Result<(), AwsError> {
    let (account, region) = (spec.account.as_str(), spec.region.as_str());
    if !boot_id_recorded {
        command(
            ssm,
            account,
            region,
            tester,
            "record boot id",
            &remote::save_boot_id(&spec.build_id),
            spec.timing,
            journal,
        )
        .await?;
    }
    builder::reboot(aws, account, region, tester).await?;
    let start = tokio::time::Instant::now();
    let script = remote::rebooted_script(&spec.build_id, &spec.services);
    loop {
        tokio::time::sleep(spec.timing.poll).await;
        builder::wait_online(ssm, account, region, tester, spec.timing.online()).await?;
        match command(ssm, account, region, tester, "after reboot", &script, spec.timing, journal).await {
            Err(AwsError::Command { exit_code, .. })
                if exit_code == remote::NOT_YET_REBOOTED && start.elapsed() < spec.timing.online => {}
            other => return other.map(|_| ()),
        }
    }
}

fn outcome(name: &str, r: Result<String, AwsError>) -> TestResult {
    match r {
        Ok(detail) => TestResult { name: name.into(), passed: true, detail },
        Err(e) => TestResult { name: name.into(), passed: false, detail: e.to_string() },
    }
}

fn failed_tests(journal: &Journal, region: &str) -> AwsError {
    let failed: Vec<&str> = journal.tests.iter().filter(|t| !t.passed).map(|t| t.name.as_str()).collect();
    AwsError::Failed {
        what: "the new AMI's tests".into(),
        region: region.into(),
        message: format!("{} of {} failed: {}", failed.len(), journal.tests.len(), failed.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_values_are_masked_in_kept_output() {
        let secrets = vec!["act-123".to_string(), String::new()];
        assert_eq!(super::masked("key=act-123 and act-123", &secrets), "key=*** and ***");
        assert_eq!(super::masked("nothing", &secrets), "nothing");
    }

    #[test]
    fn the_checks_verdicts_come_from_the_markers_and_the_exit_status() {
        use super::{AwsError, verdicts};
        let names: Vec<String> = ["services-active", "test:hardening", "test:agents"].map(String::from).into();
        let failed = || AwsError::Command {
            what: "checks".into(),
            instance: "i-1".into(),
            region: "eu-west-1".into(),
            status: "Failed".into(),
            exit_code: 1,
            tail: String::new(),
        };
        // Exit 0 with no output (an emulator's Run Command): every check passed.
        let all = verdicts(&names, Ok((String::new(), None)));
        assert!(all.iter().all(|t| t.passed), "{all:?}");
        // A failure names its check and how; a check without a marker failed with the run.
        let out = "AMICTL-CHECK 0 0\n  active: amazon-ssm-agent\n\nAMICTL-CHECK 1 3\n  CIS 1.1 failed\n\n";
        let got = verdicts(&names, Ok((out.into(), Some(failed()))));
        assert_eq!((got[0].passed, got[0].detail.as_str()), (true, "active: amazon-ssm-agent"));
        assert_eq!((got[1].passed, got[1].detail.as_str()), (false, "exit code 3: CIS 1.1 failed"));
        assert!(!got[2].passed && got[2].detail.starts_with("no verdict: "), "{:?}", got[2]);
        // A run that could not be read fails every check.
        let lost = verdicts(&names, Err(AwsError::Timeout { what: "checks".into(), region: "r".into(), seconds: 5 }));
        assert!(lost.iter().all(|t| !t.passed && t.detail.contains("checks")), "{lost:?}");
    }
}
