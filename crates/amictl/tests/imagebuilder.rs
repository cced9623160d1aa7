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
    // Both lines are Amazon Linux 2, whose support ended on 2026-06-30: said, with where to go.
    let eos = plan["end_of_support"].as_array().unwrap();
    assert_eq!(eos.len(), 2, "{plan:#}");
    let ecs = eos.iter().find(|e| e["image"] == ECS).unwrap();
    assert_eq!(ecs["ends"], "2026-06-30");
    assert_eq!(ecs["successor"], "ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id");
    let human = org.command(&["plan"]).output().unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains(&format!("{ECS}: its parent amzn2-ami-ecs-hvm-")), "{human}");
    assert!(human.contains("whose support ended 2026-06-30"), "{human}");

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

const UPDATE_LINUX: &str = "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/x.x.x";
const AWS_CLI: &str = "arn:aws:imagebuilder:eu-west-1:aws:component/aws-cli-version-2-linux/1.0.4/1";

fn output(mut c: impl std::borrow::BorrowMut<std::process::Command>) -> (i32, String, String) {
    let o = c.borrow_mut().output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn components_by_arn_are_fetched_once_cached_and_run_by_toe_and_execute_document() {
    let org = Org::image_builder();
    let gets = || org.gap.calls().get("imagebuilder:GetComponent").copied().unwrap_or(0);
    let both = format!("{UPDATE_LINUX},{AWS_CLI}");

    let (code, out, err) = output(org.command(&["--json", "toe", "validate", "--documents", &both]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert!(err.is_empty() || !err.contains("error"), "{err}");
    assert_eq!(gets(), 2);
    // The build version ARN comes from the cache; the wildcard is asked again (it may move).
    let (code, _, err) = output(org.command(&["toe", "validate", "--documents", &both]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(gets(), 3, "only the x.x.x ARN is fetched again");
    // Image Builder out of reach: the cached copies serve, and the wildcard says so.
    let (code, _, err) = output(
        org.command(&["toe", "validate", "--documents", &both])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_MAX_ATTEMPTS", "1"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{UPDATE_LINUX}: using the cached version 1.0.2")), "{err}");
    let missing = "arn:aws:imagebuilder:eu-west-1:aws:component/no-such-component/1.0.0";
    let (code, _, err) = output(org.command(&["toe", "validate", "--documents", missing]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{missing}: no such component in eu-west-1")), "{err}");
    let (code, _, err) = output(org.command(&[
        "toe",
        "validate",
        "--documents",
        "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/x.0.1",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`x` is allowed only in trailing positions"), "{err}");

    // ExecuteDocument with a component ARN, as awstoe runs it.
    let doc = org.dir.path().join("uses-cli.yml");
    std::fs::write(
        &doc,
        format!(
            "name: uses-cli\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Cli\n        action: ExecuteDocument\n        inputs:\n          document: {AWS_CLI}\n      - name: After\n        action: ExecuteBash\n        inputs:\n          commands: ['echo after-the-component']\n"
        ),
    )
    .unwrap();
    let logs = org.dir.path().join("toe-logs");
    let (code, out, err) = output(org.command(&[
        "toe",
        "run",
        "--documents",
        doc.to_str().unwrap(),
        "--log-directory",
        logs.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}\n{out}");
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "success", "{summary:#}");
    let app_log = files_containing(
        &logs,
        b"resolved to arn:aws:imagebuilder:eu-west-1:aws:component/aws-cli-version-2-linux/1.0.4/1",
    );
    assert!(!app_log.is_empty(), "the engine's log says what the ARN resolved to");

    // An account's own component, by a version ARN with wildcards, in a config.
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let ib = rt.block_on(aws::imagebuilder::client(&aws, "platform", "eu-west-1")).unwrap();
    for (version, word) in [("1.0.0", "old"), ("1.2.0", "new")] {
        rt.block_on(
            ib.create_component()
                .name("agent-check")
                .semantic_version(version)
                .platform(aws_sdk_imagebuilder::types::Platform::Linux)
                .data(format!("name: agent-check\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Say\n        action: ExecuteBash\n        inputs:\n          commands: ['echo {word}']\n"))
                .client_token(format!("create-{version}"))
                .send(),
        )
        .unwrap();
    }
    let local = org.dir.path().join("local.toml");
    let write = |extra: &str| {
        std::fs::write(
            &local,
            format!(
                "[components.agent]\narn = \"arn:aws:imagebuilder:eu-west-1:111111111111:component/agent-check/1.x.x\"\n{extra}\n[accounts.platform]\nid = \"111111111111\"\n\n[components.update]\narn = \"{UPDATE_LINUX}\"\n\n[images.host]\nparent = \"debootstrap:stable\"\ncomponents = [\"update\", \"agent\"]\n"
            ),
        )
        .unwrap()
    };
    write("");
    let (code, out, err) = output(org.command_with(&local, &["--json", "validate"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let agent = v["components"].as_array().unwrap().iter().find(|c| c["name"] == "agent").unwrap().clone();
    assert_eq!(agent["version"], "1.2.0", "1.x.x resolves to the newest 1.*: {agent}");
    assert_eq!(agent["arn"], "arn:aws:imagebuilder:eu-west-1:111111111111:component/agent-check/1.2.0/1");
    write("version = \"1.0.0\"");
    let (code, _, err) = output(org.command_with(&local, &["validate"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("local.toml:3:1") && err.contains("is version 1.2.0"), "file:line:column and why: {err}");
    write("");

    // The policy reads exactly these components.
    let (code, out, err) = output(org.command_with(&local, &["--json", "iam-policy"]));
    assert_eq!(code, 0, "{err}");
    let policy: serde_json::Value = serde_json::from_str(&out).unwrap();
    let read = policy["platform"]["policy"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ReadComponents")
        .cloned()
        .unwrap_or_else(|| panic!("{policy:#}"));
    assert_eq!(
        read["Resource"],
        serde_json::json!([
            "arn:aws:imagebuilder:eu-west-1:111111111111:component/agent-check/*",
            "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/*"
        ])
    );
    // Access denied is Image Builder's answer: the cached copy does not paper over it.
    org.gap.inject(Fault {
        op: "imagebuilder:GetComponent".into(),
        region: None,
        times: None,
        kind: FaultKind::Denied,
    });
    let (code, _, err) = output(org.command(&["toe", "validate", "--documents", UPDATE_LINUX]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("access denied (imagebuilder:GetComponent)"), "{err}");
    org.gap.clear_faults();
    // A command that only reads goes on without a component it cannot fetch; one that
    // decides does not.
    let empty = org.dir.path().join("empty-cache");
    let offline = |args: &[&str]| {
        output(
            org.command_with(&local, args)
                .env("AMICTL_COMPONENT_CACHE", &empty)
                .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
                .env("AWS_MAX_ATTEMPTS", "1"),
        )
    };
    let (code, _, err) = offline(&["iam-policy"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning[component-unavailable]"), "{err}");
    let (code, _, err) = offline(&["validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error[component-fetch-failed]") && err.contains("cannot reach Image Builder"), "{err}");
}

#[test]
fn imported_pipeline_images_let_fleet_judge_two_consumer_accounts_hosts() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let pipelines = rt.block_on(seed_pipelines(&aws));
    // History from before amictl: two executions of each pipeline.
    let mut made = std::collections::BTreeMap::new();
    for (line, arn) in &pipelines {
        let old = rt.block_on(execution(&aws, arn, &format!("{line}-before-1")));
        let new = rt.block_on(execution(&aws, arn, &format!("{line}-before-2")));
        made.insert(line.clone(), (old, new));
    }
    let (workflow, digirati) = (CONSUMERS[0].1, CONSUMERS[1].1);
    let ((_, ecs_old), (_, ecs_new)) = &made[ECS];
    let ((_, bastion_old), (_, bastion_new)) = &made[BASTION];
    rt.block_on(seed_group(&aws, "workflow", "archivematica-container-hosts", &ami_in(ecs_old, workflow), 2));
    rt.block_on(seed_group(&aws, "digirati", "digirati-container-hosts", &ami_in(ecs_new, digirati), 2));
    rt.block_on(seed_bastion(&aws, "workflow", "goobi-bastion", &ami_in(bastion_old, workflow)));
    rt.block_on(seed_bastion(&aws, "digirati", "digirati-bastion", &ami_in(bastion_new, digirati)));

    let (_, fleet, stderr) = org.run(&["--json", "fleet"]);
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["unmanaged"], 2, "before import: {stderr} {fleet:#}");

    // An import killed between recording a version and its event, as it left the state.
    let ((old_arn, _), _) = &made[ECS];
    let killed = engine::import::import_id(ECS, old_arn);
    let names = [("111111111111", "platform"), (workflow, "workflow"), (digirati, "digirati")];
    let published: Vec<catalog::Published> = ecs_old
        .iter()
        .map(|(account, region, ami)| catalog::Published {
            distribution: provider::Distribution {
                target: provider::Target::new(names.iter().find(|(id, _)| id == account).unwrap().1, region),
                image_id: ami.clone(),
                how: provider::How::Copy,
                parameters: Vec::new(),
            },
            at: "2026-12-01T00:00:00Z".into(),
        })
        .collect();
    let reason = serde_json::json!({"imported": {}});
    org.catalog()
        .insert_imported(
            &catalog::NewBuild {
                build_id: &killed,
                image: ECS,
                version: "2026.12.01.1",
                reason: &reason,
                recipe_hash: "x",
                parent_id: "unknown",
                parent_name: "",
                parent_created: "",
                started_at: "2026-12-01T00:00:00Z",
                log_dir: "",
                components: &[],
                runner: "",
            },
            Some(old_arn),
            &published,
            &[],
            &[],
        )
        .unwrap();
    let (code, _, stderr) = org.run(&["audit", "verify"]);
    assert_ne!(code, 0, "a version without its event is found: {stderr}");

    let (code, dry, stderr) = org.run(&["--json", "import", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let adopted: usize = dry["lines"].as_array().unwrap().iter().map(|l| l["adopted"].as_array().unwrap().len()).sum();
    assert_eq!(adopted, 3, "two per line, less the one recorded already: {dry:#}");
    assert_eq!(org.catalog().versions(None).unwrap().len(), 1, "a dry run records nothing");

    let (code, out, stderr) = org.run(&["--json", "import"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = out["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    let cat = org.catalog();
    let versions = cat.versions(None).unwrap();
    assert_eq!(versions.len(), 4, "{versions:#?}");
    for v in &versions {
        assert_eq!(v.state, catalog::BuildState::Available);
        assert!(v.execution.contains(":image/"), "the Image Builder image that made it: {v:?}");
        assert_eq!(cat.distributions(&v.build_id).unwrap().len(), 6, "every copy, in every account and region");
        if v.build_id != killed {
            assert!(cat.packages(&v.build_id).unwrap().iter().any(|p| p.name == "openssl-libs"), "its manifest");
        }
    }
    let imported: Vec<_> = cat.events(None).unwrap().into_iter().filter(|e| e.kind == "imported").collect();
    assert_eq!(imported.len(), 4);
    assert!(imported.iter().any(|e| e.data["build_id"] == killed.as_str()), "the killed import's event, written now");
    assert!(imported[0].data["matched"].as_str().unwrap().contains("of pipeline"), "{:?}", imported[0].data);
    drop(cat);

    let (code, again, stderr) = org.run(&["--json", "import"]);
    assert_eq!(code, 0, "{stderr}");
    for line in again["lines"].as_array().unwrap() {
        assert!(line["adopted"].as_array().unwrap().is_empty(), "a second import adds nothing: {line:#}");
        assert_eq!(line["known"].as_array().unwrap().len(), 2);
    }
    assert_eq!(org.catalog().versions(None).unwrap().len(), 4);

    let (code, fleet, stderr) = org.run(&["--json", "fleet"]);
    assert_eq!(code, 0, "behind within the SLA is compliant: {stderr}");
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["within_sla"], 2, "{fleet:#}");
    assert_eq!(consumer(&fleet, "digirati")["summary"]["current"], 2);
    assert_eq!(consumer(&fleet, "goobi-bastion")["summary"]["within_sla"], 1);
    assert_eq!(consumer(&fleet, "digirati-bastion")["summary"]["current"], 1);
    let (code, later, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(code, 3, "overdue 15 days on");
    assert_eq!(consumer(&later, "archivematica")["summary"]["overdue"], 2);
    assert_eq!(consumer(&later, "archivematica")["summary"]["unmanaged"], 0);
    let (code, _, stderr) = org.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{stderr}");
}

/// Import by name: AMIs made by hand (no Image Builder), owned by each consumer account,
/// adopted with the parent their `SourceAMI` tag names.
#[test]
fn import_by_name_pattern_adopts_each_accounts_copies_with_their_tagged_parent() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    org.edit(
        &format!("builder = {{ kind = \"imagebuilder\", pipeline = \"{BASTION}\" }}"),
        &format!("builder = {{ kind = \"imagebuilder\", pipeline = \"{BASTION}\" }}\nimport = {{ name = \"legacy-bastion-*\" }}"),
    );
    let parent = rt
        .block_on(aws::parent::from_ssm_parameter(
            &aws,
            "platform",
            "eu-west-1",
            "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2",
        ))
        .unwrap()
        .image_id;
    let mut ids = Vec::new();
    for account in ["platform", "workflow", "digirati"] {
        let ec2 = rt.block_on(aws.ec2(account, "eu-west-1")).unwrap();
        let run = rt.block_on(ec2.run_instances().image_id(&parent).min_count(1).max_count(1).send()).unwrap();
        let instance = run.instances()[0].instance_id().unwrap().to_string();
        let image =
            rt.block_on(ec2.create_image().instance_id(&instance).name("legacy-bastion-2026-06-01").send()).unwrap();
        let id = image.image_id().unwrap().to_string();
        rt.block_on(
            ec2.create_tags()
                .resources(&id)
                .tags(aws_sdk_ec2::types::Tag::builder().key("SourceAMI").value(&parent).build())
                .send(),
        )
        .unwrap();
        ids.push(id);
    }
    let (code, out, stderr) = org.run(&["--json", "import", "--image", BASTION]);
    assert_eq!(code, 0, "{stderr}");
    let adopted = out["lines"][0]["adopted"].as_array().unwrap();
    assert_eq!(adopted.len(), 1, "one name, one version: {out:#}");
    assert_eq!(adopted[0]["image"]["copies"].as_array().unwrap().len(), 3, "{out:#}");
    assert_eq!(adopted[0]["image"]["parent"]["id"], parent.as_str());
    let v = org.catalog().versions(Some(BASTION)).unwrap().remove(0);
    assert_eq!(v.parent_id, parent);
    assert!(v.recipe_hash.starts_with("imported:"), "not built from amictl's recipe: {v:?}");
    let (code, again, _) = org.run(&["--json", "import", "--image", BASTION]);
    assert_eq!(code, 0);
    assert!(again["lines"][0]["adopted"].as_array().unwrap().is_empty());
}

/// A consumer whose Terraform pins the AMI id is told the exact change (the AMI in each of
/// its regions, the deadline) and amictl writes nothing to its groups, templates or hosts.
#[test]
fn a_pinned_consumer_gets_the_exact_change_and_nothing_moves_its_hosts() {
    let org = Org::image_builder();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let pipelines = rt.block_on(seed_pipelines(&aws));
    let (_, old) = rt.block_on(execution(&aws, &pipelines[ECS], "ecs-before-1"));
    let (_, new) = rt.block_on(execution(&aws, &pipelines[ECS], "ecs-before-2"));
    let digirati = CONSUMERS[1].1;
    rt.block_on(seed_group(&aws, "digirati", "digirati-container-hosts", &ami_in(&old, digirati), 2));
    org.edit(
        "select = { asgs = [\"digirati-container-hosts\"] }\nrollout = { kind = \"rolling-replace\", batch = 1, protected = \"replace\", drain_timeout = \"15m\" }",
        "select = { asgs = [\"digirati-container-hosts\"] }\nrollout = { kind = \"pinned\", sns_topic = \"arn:aws:sns:eu-west-1:111111111111:amictl-rollouts\" }",
    );
    org.edit("rebuild_on_parent_update = true", "rebuild_on_parent_update = false");
    let (_, sqs, queue) = owners_queue(&rt, &aws);
    let (code, _, stderr) = org.run(&["import", "--image", ECS]);
    assert_eq!(code, 0, "{stderr}");

    org.gap.reset_calls();
    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let calls = org.gap.calls();
    let writes: Vec<&String> = calls
        .keys()
        .filter(|k| {
            k.starts_with("autoscaling:")
                || ["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:TerminateInstances"]
                    .contains(&k.as_str())
        })
        .collect();
    assert!(writes.is_empty(), "nothing touched the pinned consumer's groups: {writes:?}");
    let rollout = out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "rollout" && a["subject"] == "consumer:digirati")
        .cloned()
        .unwrap_or_else(|| panic!("{out:#}"));
    let text = rollout.to_string();
    let wanted = ami_in(&new, digirati);
    assert!(text.contains(&wanted) && text.contains("\"deadline\""), "the change, as JSON: {rollout:#}");
    let got = rt.block_on(sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send()).unwrap();
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    let notice = bodies.iter().find(|b| b.contains("digirati:")).unwrap_or_else(|| panic!("{bodies:#?}"));
    assert!(notice.contains(&format!("eu-west-1: {wanted}")), "the AMI per region: {notice}");
    assert!(notice.contains("OVERDUE") && notice.contains("amictl changes nothing in your account"), "{notice}");
    // Hosts stay where they are until the owner moves them; the fleet says so.
    let (code, fleet, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(code, 3);
    assert_eq!(consumer(&fleet, "digirati")["summary"]["overdue"], 2, "{fleet:#}");
}
