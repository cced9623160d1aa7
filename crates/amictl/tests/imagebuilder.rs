//! Image Builder lines end to end: the real binary drives the organisation's pipelines
//! (examples/reference-org/imagebuilder.toml) through motogap's Image Builder emulation,
//! whose executions make real AMIs in moto. amictl starts each execution once, follows it,
//! records what it made and publishes it; a run killed mid-execution is followed, not
//! repeated; failures and refusals say what Image Builder said.

mod cloud;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cloud::*;
use motogap::{Fault, FaultKind};

fn image_builder_calls(org: &Org) -> Vec<(String, u64)> {
    org.gap.calls().into_iter().filter(|(k, _)| k.starts_with("imagebuilder:")).collect()
}

#[test]
fn a_pipeline_driven_build_is_started_once_followed_recorded_and_published() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let pipelines = rt.block_on(seed_pipelines(&aws));
    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(actions(&plan), [("build".to_string(), ECS.to_string()), ("build".into(), BASTION.into())]);

    org.gap.reset_calls();
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "apply failed: {stderr}\n{out:#}");
    let calls = image_builder_calls(&org);
    eprintln!("Image Builder calls for two builds: {calls:#?}");
    let count = |op: &str| org.gap.calls().get(op).copied().unwrap_or(0);
    assert_eq!(count("imagebuilder:StartImagePipelineExecution"), 2, "one execution per line");
    assert_eq!(count("ec2:RunInstances"), 0, "amictl launched nothing itself");
    let executions = org.gap.image_builder().executions();
    for (line, arn) in &pipelines {
        assert_eq!(executions[arn].len(), 1, "{line}");
    }

    let cat = org.catalog();
    for v in cat.versions(None).unwrap() {
        assert_eq!(v.state, catalog::BuildState::Available, "{v:?}");
        assert!(v.execution.starts_with("arn:aws:imagebuilder:eu-west-1:111111111111:image/"), "{v:?}");
        assert!(v.parent_id.starts_with("ami-"), "the parent the recipe resolved: {v:?}");
        let packages = cat.packages(&v.build_id).unwrap();
        assert!(packages.iter().any(|p| p.name == "openssl-libs"), "the manifest is ListImagePackages: {packages:?}");
        let tests = cat.tests(&v.build_id).unwrap();
        assert!(tests.iter().any(|t| t.name == "image builder test workflow" && t.passed), "{tests:?}");
        let components: Vec<String> = v.components.iter().map(|c| format!("{}@{}", c.name, c.version)).collect();
        assert!(components.contains(&"update-linux@x.x.x".to_string()), "{components:?}");
        let artifacts = cat.artifacts(&v.build_id).unwrap();
        assert_eq!(artifacts.len(), 6, "an AMI per account and region: {artifacts:#?}");
        assert!(artifacts[0].path.starts_with("platform/eu-west-1/ami-"), "the home copy first: {artifacts:?}");
        let rows = cat.distributions(&v.build_id).unwrap();
        assert_eq!(rows.len(), 6, "{rows:#?}");
        for (consumer, _) in CONSUMERS {
            for region in REGIONS {
                let own = rows
                    .iter()
                    .find(|r| r.distribution.target.account == consumer && r.distribution.target.region == region)
                    .unwrap_or_else(|| panic!("{consumer} {region}: {rows:#?}"));
                assert_eq!(own.distribution.how, provider::How::Copy, "the consumer owns its copy");
                let ssm = rt.block_on(aws.ssm(consumer, region)).unwrap();
                let name = format!("/platform/base-ami/{}/latest", v.image);
                let got = rt.block_on(ssm.get_parameter().name(&name).send()).unwrap();
                assert_eq!(got.parameter().and_then(|p| p.value()), Some(own.distribution.image_id.as_str()));
            }
        }
        let log = std::fs::read_to_string(std::path::Path::new(&v.log_dir).join("imagebuilder.log")).unwrap();
        assert!(log.contains("started execution") && log.contains("workflow TEST COMPLETED"), "{log}");
    }
    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "nothing left to do: {stderr} {plan:#}");
    let (code, _, stderr) = org.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_apply_killed_mid_execution_is_followed_by_the_next_one_not_started_again() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let pipelines = rt.block_on(seed_pipelines(&aws));
    // Executions that stay BUILDING while the first run watches.
    org.gap.image_builder().polls_per_state(100_000);
    let mut child = org.command(&["apply"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recorded = org.catalog().versions(None).unwrap().iter().filter(|v| !v.execution.is_empty()).count();
        if recorded == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the executions never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2, "{stderr}");
    let follows: Vec<&serde_json::Value> =
        plan["actions"].as_array().unwrap().iter().filter(|a| a["kind"] == "recover" && a["follow"] == true).collect();
    assert_eq!(follows.len(), 2, "both interrupted builds are followed: {plan:#}");
    assert!(!actions(&plan).iter().any(|(k, _)| k == "build"), "and not built again: {plan:#}");

    org.gap.image_builder().polls_per_state(1);
    let (code, out, stderr) = org.run(&["apply"]);
    assert_eq!(code, 0, "{stderr}\n{out}");
    assert!(stderr.contains("following") || stderr.contains("followed"), "{stderr}");
    for (line, arn) in &pipelines {
        assert_eq!(org.gap.image_builder().executions()[arn].len(), 1, "{line}: still one execution");
    }
    let versions = org.catalog().versions(None).unwrap();
    assert_eq!(versions.len(), 2, "the followed builds are the versions: {versions:#?}");
    assert!(versions.iter().all(|v| v.state == catalog::BuildState::Available), "{versions:#?}");
    assert!(org.catalog().open_intents().unwrap().is_empty());
    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "{stderr} {plan:#}");
}

#[test]
fn a_failed_execution_a_missing_pipeline_and_a_refusal_say_what_image_builder_said() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    rt.block_on(seed_pipelines(&aws));
    org.gap.image_builder().fail_next("TESTING", "Test phase failed: RunTestSuite exited 1 on i-0abc");
    org.edit(&format!("pipeline = \"{ECS}\""), "pipeline = \"no-such-pipeline\"");
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Image Builder pipeline no-such-pipeline not found in account platform (eu-west-1)"),
        "{stderr}"
    );
    assert!(stderr.contains("Test phase failed: RunTestSuite exited 1 on i-0abc"), "the reason verbatim: {stderr}");
    let failed = org.catalog().versions(Some(BASTION)).unwrap();
    assert_eq!(failed[0].state, catalog::BuildState::Failed);
    assert!(failed[0].failure.as_deref().unwrap().contains("RunTestSuite exited 1"), "{failed:?}");

    org.edit("pipeline = \"no-such-pipeline\"", &format!("pipeline = \"{ECS}\""));
    org.gap.inject(Fault {
        op: "imagebuilder:StartImagePipelineExecution".into(),
        region: None,
        times: None,
        kind: FaultKind::Denied,
    });
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("imagebuilder:StartImagePipelineExecution in account platform (eu-west-1)"), "{stderr}");
    assert!(stderr.contains("ForbiddenException"), "{stderr}");

    // Throttling is retried by the SDK; the build goes through.
    org.gap.clear_faults();
    org.gap.inject(Fault {
        op: "imagebuilder:GetImage".into(),
        region: None,
        times: Some(2),
        kind: FaultKind::Throttle,
    });
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "{stderr}");
}
