//! The cloud path end to end: the real `amictl` binary against a real `moto` server on
//! 127.0.0.1, for the reference organisation (examples/reference-org: platform
//! 111111111111 builds two Amazon Linux 2 lines, consumers workflow 222222222222 and
//! digirati 333333333333, regions eu-west-1 and eu-west-2).
//!
//! moto runs nothing on instances (every Run Command succeeds with empty output) and has
//! no SSM registration; `motogap` in front of it answers DescribeInstanceInformation,
//! maps the static test key to the platform account, injects faults and counts calls.

mod cloud;

use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use cloud::*;
use motogap::{Fault, FaultKind, Moto};
use serde_json::Value;

#[test]
fn apply_builds_tests_and_publishes_the_reference_organisation_through_moto() {
    let org = Org::new();
    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2, "a plan with changes exits 2: {stderr}");
    assert_eq!(actions(&plan), [("build".to_string(), ECS.to_string()), ("build".into(), BASTION.into())]);

    org.gap.reset_calls();
    let started = Instant::now();
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    let wall = started.elapsed();
    assert_eq!(code, 0, "apply failed: {stderr}\n{out:#}");
    let calls = org.gap.calls();
    let total: u64 = calls.values().sum();
    eprintln!("apply for the reference organisation: {total} AWS calls in {wall:.1?}: {calls:#?}");
    assert_eq!(calls.get("ec2:CopyImage"), Some(&2), "one copy per image line into eu-west-2");
    assert_eq!(calls.get("ec2:RunInstances"), Some(&4), "a builder and a tester per image line");

    let cat = org.catalog();
    let versions = cat.versions(None).unwrap();
    assert_eq!(versions.len(), 2);
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    for v in &versions {
        assert_eq!(v.state, catalog::BuildState::Available, "{v:?}");
        assert!(v.parent_id.starts_with("ami-") && v.parent_name.starts_with("amzn2-ami-"), "lineage: {v:?}");
        let tests: Vec<String> = cat.tests(&v.build_id).unwrap().into_iter().map(|t| t.name).collect();
        for t in ["ssm-agent-online", "services-active", "survives-reboot"] {
            assert!(tests.contains(&t.to_string()), "{t} missing from {tests:?}");
        }
        let rows = cat.distributions(&v.build_id).unwrap();
        assert_eq!(rows.len(), 6, "platform + two consumers in two regions: {rows:#?}");
        let name = format!("{}-{}", v.image, v.version);
        for region in REGIONS {
            let images = rt.block_on(own_images(&aws, region));
            let ids = images.get(&name).unwrap_or_else(|| panic!("no {name} in {region}: {images:?}"));
            assert_eq!(ids.len(), 1, "exactly one {name} in {region}");
            let ec2 = rt.block_on(aws.ec2("platform", region)).unwrap();
            let perms = rt
                .block_on(
                    ec2.describe_image_attribute()
                        .image_id(&ids[0])
                        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                        .send(),
                )
                .unwrap();
            let mut users: Vec<&str> = perms.launch_permissions().iter().filter_map(|p| p.user_id()).collect();
            users.sort();
            assert_eq!(users, ["222222222222", "333333333333"]);
            for (consumer, _) in CONSUMERS {
                let ssm = rt.block_on(aws.ssm(consumer, region)).unwrap();
                for p in ["latest".to_string(), v.version.clone()] {
                    let name = format!("/platform/base-ami/{}/{p}", v.image);
                    let got = rt.block_on(ssm.get_parameter().name(&name).send()).unwrap();
                    assert_eq!(
                        got.parameter().and_then(|p| p.value()),
                        Some(ids[0].as_str()),
                        "{consumer} {region} {name}"
                    );
                }
            }
        }
    }
    assert!(rt.block_on(live_build_instances(&aws)).is_empty(), "builder and test instances are terminated");
    let ssm = rt.block_on(aws.ssm("platform", "eu-west-1")).unwrap();
    let left = rt.block_on(ssm.get_parameters_by_path().path("/amictl/build").recursive(true).send()).unwrap();
    assert!(left.parameters().is_empty(), "build secrets are deleted after the build");
    assert!(files_containing(org.dir.path(), SECRET.as_bytes()).is_empty(), "the secret reached a file");
    // Run Command keeps every command's text: the services are checked, the secret never sent.
    let mut scripts = Vec::new();
    let mut pages = ssm.list_commands().into_paginator().send();
    while let Some(page) = rt.block_on(pages.next()) {
        for c in page.unwrap().commands() {
            scripts.extend(c.parameters().and_then(|p| p.get("commands")).into_iter().flatten().cloned());
        }
    }
    assert!(scripts.iter().any(|s| s.contains("'amazon-ssm-agent' 'auditd' 'scan-agent'")), "{scripts:#?}");
    assert!(scripts.iter().any(|s| s.contains("--phases 'build,validate'") && s.contains("/ActivationKey'")));
    assert!(!scripts.iter().any(|s| s.contains(SECRET)), "a secret travelled in a command");
    // The snapshot cleanup is each build's last build document: after every component,
    // so the AMI (CreateImage comes next) is made from the cleaned instance.
    let built: Vec<(String, String)> = scripts
        .iter()
        .filter(|s| s.contains("--phases 'build,validate'"))
        .filter_map(|s| {
            let dir = s.lines().find_map(|l| l.strip_prefix("d="))?.trim_matches('\'');
            let mut parts = dir.rsplit('/');
            let name = parts.next()?.to_string();
            Some((parts.next()?.to_string(), name))
        })
        .collect();
    let builds: std::collections::BTreeSet<&String> = built.iter().map(|(b, _)| b).collect();
    assert_eq!(builds.len(), 2, "{built:#?}");
    for b in builds {
        let last = built.iter().rfind(|(id, _)| id == b).map(|(_, n)| n.as_str());
        assert_eq!(last, Some("amictl-snapshot-cleanup"), "{b}: {built:#?}");
    }

    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "nothing left to do: {stderr} {plan:#}");
    let (code, _, stderr) = org.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<String> =
        cat.events(None).unwrap().into_iter().map(|e| format!("{} {}", e.kind, e.subject)).collect();
    assert!(events.iter().any(|e| e.starts_with("publish.region ")), "{events:#?}");
}

#[test]
fn an_apply_killed_mid_build_is_cleaned_up_by_the_next_one_and_no_ami_is_made_twice() {
    let org = Org::new();
    // Slow Run Command down so the kill lands while the test instance runs.
    org.slow_run_command();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let mut child = org.command(&["build", BASTION]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        let live = rt.block_on(live_build_instances(&aws));
        let imaged = rt.block_on(own_images(&aws, "eu-west-1")).keys().any(|n| n.starts_with(BASTION));
        if imaged && live.iter().any(|(_, role)| role == "tester") {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the build ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(120), "no test instance appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let copies = org.gap.calls().get("ec2:CopyImage").copied().unwrap_or(0);
    assert_eq!(copies, 1, "its copy to eu-west-2 had started before the tests");
    let killed = org.catalog().versions(Some(BASTION)).unwrap().remove(0);
    assert_eq!(killed.state, catalog::BuildState::Testing, "killed while testing");
    assert!(!rt.block_on(live_build_instances(&aws)).is_empty(), "the kill left instances behind");

    org.gap.clear_faults();
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    assert_eq!(out["actions"][0]["action"], "recover", "{out:#}");
    assert!(rt.block_on(live_build_instances(&aws)).is_empty(), "no tagged instance is left running");
    for region in REGIONS {
        let ec2 = rt.block_on(aws.ec2("platform", region)).unwrap();
        let of_killed = rt
            .block_on(
                ec2.describe_images()
                    .owners("self")
                    .filters(Filter::builder().name("tag:amictl:build-id").values(&killed.build_id).build())
                    .send(),
            )
            .unwrap();
        assert!(of_killed.images().is_empty(), "the interrupted build's AMI is deregistered in {region}");
    }
    for region in REGIONS {
        for (name, ids) in rt.block_on(own_images(&aws, region)) {
            assert_eq!(ids.len(), 1, "{name} exists {} times in {region}", ids.len());
        }
    }
    let versions = org.catalog().versions(Some(BASTION)).unwrap();
    assert_eq!(versions[0].state, catalog::BuildState::Failed);
    assert_eq!(versions.last().unwrap().state, catalog::BuildState::Available);
}

#[test]
fn throttling_is_retried_and_a_region_that_fails_is_published_by_the_next_apply() {
    let org = Org::new();
    for (op, times) in [("ec2:RunInstances", 1), ("ssm:PutParameter", 2), ("ec2:DescribeImages", 2)] {
        org.gap.inject(Fault { op: op.into(), region: None, times: Some(times), kind: FaultKind::Throttle });
    }
    org.gap.inject(Fault {
        op: "ec2:CopyImage".into(),
        region: Some("eu-west-2".into()),
        times: None,
        kind: FaultKind::ServerError,
    });
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 1, "a failed region fails the run: {stderr}\n{out:#}");
    let errors: Vec<&str> = out["actions"].as_array().unwrap().iter().filter_map(|a| a["error"].as_str()).collect();
    assert_eq!(errors.len(), 2, "{out:#}");
    assert!(errors.iter().all(|e| e.contains("eu-west-2") && e.contains("not fully published")), "{errors:#?}");
    assert_eq!(org.gap.calls().get("ec2:RunInstances"), Some(&5), "4 launches and one throttled retry");

    let cat = org.catalog();
    for v in cat.versions(None).unwrap() {
        assert_eq!(v.state, catalog::BuildState::Available, "built and tested; only publishing failed");
        let regions: Vec<String> =
            cat.distributions(&v.build_id).unwrap().into_iter().map(|d| d.distribution.target.region).collect();
        assert!(regions.iter().all(|r| r == "eu-west-1"), "{regions:?}");
    }

    org.gap.clear_faults();
    let (code, plan, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2);
    assert_eq!(actions(&plan), [("distribute".to_string(), ECS.to_string()), ("distribute".into(), BASTION.into())]);
    assert_eq!(
        plan["actions"][0]["reasons"][0]["missing"],
        serde_json::json!(["digirati/eu-west-2", "workflow/eu-west-2"])
    );
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    for v in cat.versions(None).unwrap() {
        assert_eq!(cat.distributions(&v.build_id).unwrap().len(), 6);
    }
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let ssm = rt.block_on(aws.ssm("workflow", "eu-west-2")).unwrap();
    let latest = rt.block_on(ssm.get_parameter().name(format!("/platform/base-ami/{BASTION}/latest")).send()).unwrap();
    assert!(latest.parameter().and_then(|p| p.value()).is_some_and(|v| v.starts_with("ami-")));
    let (code, _, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "everything is published");
}

#[test]
fn bad_parents_silent_instances_and_denied_roles_get_precise_errors_and_leave_nothing_running() {
    let org = Org::new();
    let rt = runtime();
    let parent = "ssm:/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2";
    org.edit(parent, "ssm:/aws/service/no/such/parameter");
    let (code, _, stderr) = org.run(&["plan"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/aws/service/no/such/parameter") && stderr.contains("not found"), "{stderr}");
    assert!(org.catalog().versions(None).unwrap().is_empty(), "a failed plan changes nothing");
    org.edit("ssm:/aws/service/no/such/parameter", parent);

    // An instance whose SSM agent never reports Online: a bounded wait naming the causes.
    org.edit("poll_interval = \"50ms\"\n", "poll_interval = \"50ms\"\nssm_timeout = \"1s\"\n");
    org.gap.set_ssm_online(false);
    let (code, _, stderr) = org.run(&["build", BASTION]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("did not report Online within 1s") && stderr.contains("instance profile"), "{stderr}");
    let failed = org.catalog().versions(Some(BASTION)).unwrap().remove(0);
    assert_eq!(failed.state, catalog::BuildState::Failed);
    assert!(failed.failure.as_deref().is_some_and(|f| f.contains("Online")), "{failed:?}");
    let aws = rt.block_on(org.aws());
    assert!(rt.block_on(live_build_instances(&aws)).is_empty(), "the builder is terminated");
    org.gap.set_ssm_online(true);

    // A consumer role that cannot be assumed: built and tested, not published, and said why.
    org.gap.inject(Fault { op: "sts:AssumeRole".into(), region: None, times: None, kind: FaultKind::Denied });
    let (code, _, stderr) = org.run(&["build", BASTION]);
    org.gap.clear_faults();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot assume arn:aws:iam::")
            && stderr.contains("AccessDenied")
            && stderr.contains("trust policy"),
        "{stderr}"
    );
    let built = org.catalog().versions(Some(BASTION)).unwrap().pop().unwrap();
    assert_eq!(built.state, catalog::BuildState::Available);
    assert!(rt.block_on(live_build_instances(&aws)).is_empty());
    let (code, plan, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2);
    assert!(actions(&plan).contains(&("distribute".to_string(), BASTION.to_string())), "{plan:#}");
}

#[test]
fn a_parent_that_moves_is_a_rebuild_reason_naming_both_amis() {
    let org = Org::new();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    org.edit("ssm:/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2", "ami:self/golden-parent-*");
    let first = rt.block_on(parent_ami(&aws, "golden-parent-2026.10.01"));
    let (code, _, stderr) = org.run(&["build", BASTION]);
    assert_eq!(code, 0, "{stderr}");
    let built = org.catalog().versions(Some(BASTION)).unwrap().remove(0);
    assert_eq!((built.parent_id.as_str(), built.parent_name.as_str()), (first.as_str(), "golden-parent-2026.10.01"));
    let bastion = |plan: &Value| -> Vec<Value> {
        plan["actions"].as_array().unwrap().iter().filter(|a| a["image"] == BASTION).cloned().collect()
    };
    let (_, plan, _) = org.run(&["--json", "plan"]);
    assert!(bastion(&plan).is_empty(), "{plan:#}");

    let second = rt.block_on(parent_ami(&aws, "golden-parent-2026.11.01"));
    let (code, plan, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2);
    let actions = bastion(&plan);
    assert_eq!(actions.len(), 1, "{plan:#}");
    let reason = &actions[0]["reasons"][0];
    assert_eq!(reason["kind"], "parent_moved");
    assert_eq!((reason["from"].as_str(), reason["to"].as_str()), (Some(first.as_str()), Some(second.as_str())));
    // Operators paste AMI ids: the text plan shows them whole.
    let text = org.command(&["plan"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("{first} → {second}")), "{text}");
}

#[test]
fn consumers_lagging_behind_are_rolled_out_notified_and_reported_against_the_deadline() {
    // moto lets no account see another's AMI; without validation consumers can launch the
    // shared AMI ids, as they can on AWS.
    let org = Org::with_moto(Moto::start_with_ami_validation(false));
    org.edit("consumers.archivematica]\naccount = \"workflow\"\nimage = \"weco-amzn2-ecs-optimised-hvm-x86_64\"\nowner = \"archivematica-team\"\nselect = { asgs = [\"archivematica-container-hosts\"] }\nrollout = { kind = \"instance-refresh\", min_healthy_percent = 90, scale_in_protected = \"refresh\", checkpoints = [50, 100], checkpoint_delay = \"10m\" }",
             "consumers.archivematica]\naccount = \"workflow\"\nimage = \"weco-amzn2-ecs-optimised-hvm-x86_64\"\nowner = \"archivematica-team\"\nselect = { asgs = [\"archivematica-container-hosts\"] }\nrollout = { kind = \"rolling-replace\", batch = 1 }");
    org.edit("select = { asgs = [\"goobi-container-hosts\"] }\nrollout = { kind = \"pinned\", sns_topic = \"arn:aws:sns:eu-west-1:111111111111:amictl-rollouts\" }",
             "select = { asgs = [\"goobi-container-hosts\"] }\nrollout = { kind = \"launch-template\" }");
    org.edit("select = { asgs = [\"digirati-container-hosts\"] }\nrollout = { kind = \"rolling-replace\", batch = 1, protected = \"replace\", drain_timeout = \"15m\" }",
             "select = { asgs = [\"digirati-container-hosts\"] }\nrollout = { kind = \"rolling-replace\", batch = 2 }");
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    // The bastions' owners listen on an SNS topic; a queue stands in for their mailboxes.
    let (topic, sqs, queue) = owners_queue(&rt, &aws);
    assert_eq!(topic, "arn:aws:sns:eu-west-1:111111111111:amictl-rollouts");

    // A consumer found by launch template name instead of group (same hosts as goobi).
    let text = std::fs::read_to_string(&org.config).unwrap();
    std::fs::write(
        &org.config,
        format!("{text}\n[consumers.goobi-by-template]\naccount = \"workflow\"\nimage = \"{ECS}\"\nselect = {{ launch_templates = [\"goobi-container-hosts\"] }}\n"),
    )
    .unwrap();
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 0, "{stderr}");
    let ecs_v1 = published_ami(&org, ECS, "workflow");
    let bastion_v1 = published_ami(&org, BASTION, "workflow");
    for (account, consumer, size) in
        [("workflow", "archivematica", 2), ("workflow", "goobi", 2), ("digirati", "digirati", 2)]
    {
        rt.block_on(seed_group(&aws, account, &format!("{consumer}-container-hosts"), &ecs_v1, size));
        rt.block_on(seed_bastion(&aws, account, &format!("{consumer}-bastion"), &bastion_v1));
    }
    let (code, fleet, stderr) = org.run(&["--json", "fleet"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fleet["compliant"], true);
    assert_eq!(consumer(&fleet, "goobi")["summary"]["current"], 2);
    assert_eq!(consumer(&fleet, "goobi-by-template")["summary"]["current"], 2, "found by launch template name");
    assert_eq!(consumer(&fleet, "digirati-bastion")["summary"]["current"], 1);
    // The agents' own check (their services, from the components' `services`) ran on each host.
    assert_eq!(consumer(&fleet, "goobi")["hosts"][0]["host"]["services"], serde_json::json!({"Ok": null}), "{fleet:#}");

    // Version 2 of both lines: every host is now behind, with 14 days to move.
    for image in [ECS, BASTION] {
        let (code, _, stderr) = org.run(&["build", "--force", image]);
        assert_eq!(code, 0, "{stderr}");
    }
    let ecs_v2 = published_ami(&org, ECS, "workflow");
    assert_ne!(ecs_v1, ecs_v2);
    let (code, fleet, _) = org.run(&["--json", "fleet"]);
    assert_eq!(code, 0, "behind but within the SLA is compliant");
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["within_sla"], 2);
    let (code, fleet, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(code, 3, "overdue is not compliant");
    assert_eq!(consumer(&fleet, "goobi")["summary"]["overdue"], 2);
    assert_eq!(consumer(&fleet, "goobi")["hosts"][0]["standing"]["state"], "overdue");
    // 15 days after the release, a little more than a day past the 14-day deadline: whole
    // days rounded down, never up.
    assert_eq!(consumer(&fleet, "goobi")["hosts"][0]["standing"]["days_over"], 1, "{fleet:#}");

    let (code, plan, _) = org.run(&["--json", "plan", "--now", "+15d"]);
    assert_eq!(code, 2);
    let rollouts: Vec<&Value> = plan["actions"].as_array().unwrap().iter().filter(|a| a["kind"] == "rollout").collect();
    assert_eq!(rollouts.len(), 7, "{plan:#}");
    let goobi = rollouts.iter().find(|a| a["consumer"] == "goobi").unwrap();
    assert_eq!(goobi["reasons"][0]["kind"], "consumer_behind");
    assert_eq!(goobi["reasons"][0]["behind"], 2);
    assert_eq!(goobi["reasons"][1]["kind"], "deadline_passed");

    // A rollout whose replacements never report healthy stops and restores the template.
    org.edit("poll_interval = \"50ms\"\n", "poll_interval = \"50ms\"\nssm_timeout = \"1s\"\n");
    org.gap.set_ssm_online(false);
    let (code, out, _) = org.run(&["--json", "apply", "--now", "+15d"]);
    org.gap.set_ssm_online(true);
    org.edit("ssm_timeout = \"1s\"\n", "");
    assert_eq!(code, 1, "{out:#}");
    let failed: Vec<&Value> = out["actions"].as_array().unwrap().iter().filter(|a| a["ok"] == false).collect();
    assert_eq!(failed.len(), 2, "the two rolling replacements: {out:#}");
    assert!(failed[0]["error"].as_str().unwrap().contains("did not report Online"), "{out:#}");
    let ec2 = rt.block_on(aws.ec2("workflow", "eu-west-1")).unwrap();
    let default_ami = |name: &str| {
        let lt = rt
            .block_on(ec2.describe_launch_template_versions().launch_template_name(name).versions("$Default").send())
            .unwrap();
        lt.launch_template_versions()[0].launch_template_data().unwrap().image_id().unwrap().to_string()
    };
    assert_eq!(default_ami("archivematica-container-hosts"), ecs_v1, "the previous template version is restored");
    let stopped = org.catalog().events(Some("consumer:archivematica")).unwrap();
    assert!(stopped.iter().any(|e| e.kind == "rollout.stopped"), "{stopped:#?}");

    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    assert_eq!(default_ami("archivematica-container-hosts"), ecs_v2);
    // rolling-replace: every group instance runs version 2.
    let asc = |account: &str| aws_sdk_autoscaling::Client::new(&rt.block_on(aws.config(account, "eu-west-1")).unwrap());
    for (account, group) in [("workflow", "archivematica-container-hosts"), ("digirati", "digirati-container-hosts")] {
        let g =
            rt.block_on(asc(account).describe_auto_scaling_groups().auto_scaling_group_names(group).send()).unwrap();
        let ids: Vec<String> =
            g.auto_scaling_groups()[0].instances().iter().map(|i| i.instance_id().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 2);
        let ec2 = rt.block_on(aws.ec2(account, "eu-west-1")).unwrap();
        let out = rt.block_on(ec2.describe_instances().set_instance_ids(Some(ids)).send()).unwrap();
        let amis: Vec<&str> =
            out.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.image_id()).collect();
        let want = published_ami(&org, ECS, account);
        assert!(amis.iter().all(|a| *a == want), "{group}: {amis:?} should all be {want}");
    }
    // launch-template: goobi's template launches version 2; its hosts stay until goobi moves them.
    assert_eq!(default_ami("goobi-container-hosts"), ecs_v2);
    // notify: each bastion owner got a message naming the deadline.
    let mut bodies = Vec::new();
    loop {
        let got = rt.block_on(sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send()).unwrap();
        if got.messages().is_empty() {
            break;
        }
        bodies.extend(got.messages().iter().filter_map(|m| m.body()).map(str::to_string));
    }
    for bastion in ["archivematica-bastion", "goobi-bastion", "digirati-bastion"] {
        assert!(bodies.iter().any(|b| b.contains(bastion) && b.contains("deadline passed")), "{bastion}: {bodies:#?}");
    }

    let (code, fleet, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(code, 3, "goobi and the bastions still lag");
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["current"], 2);
    assert_eq!(consumer(&fleet, "digirati")["summary"]["current"], 2);
    assert_eq!(consumer(&fleet, "goobi")["summary"]["overdue"], 2);
    // A version a consumer still runs is never retired.
    let used = org.catalog().versions_in_use().unwrap();
    assert!(used.iter().any(|(i, _)| i == ECS), "{used:?}");

    // The manager's page and the metrics, from the scans just made.
    let page = org.dir.path().join("report.html");
    let (code, _, stderr) = org.run(&["report", "--html", page.to_str().unwrap(), "--now", "+15d"]);
    assert_eq!(code, 3, "{stderr}");
    let dom = rendered(&page);
    assert!(dom.contains("consumers compliant") && dom.contains("Overdue instances"), "{dom}");
    assert!(dom.contains("goobi-container-hosts") && dom.contains("goobi-bastion"), "{dom}");
    let metrics = org.command(&["metrics", "--now", "+15d"]).output().unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("amictl_fleet_instances{consumer=\"goobi\",state=\"overdue\"} 2"), "{metrics}");
    assert!(metrics.contains("amictl_fleet_instances{consumer=\"archivematica\",state=\"current\"} 2"), "{metrics}");

    // Offline audit from saved `aws ec2 describe-instances` output: same verdicts, no AWS call.
    let mut args = vec!["--json".to_string(), "fleet".into(), "--now".into(), "+15d".into()];
    for account in ["workflow", "digirati"] {
        let file = org.dir.path().join(format!("{account}.json"));
        std::fs::write(&file, rt.block_on(inventory(&aws, account)).to_string()).unwrap();
        args.push("--inventory".into());
        args.push(format!("{account}={}", file.display()));
    }
    org.gap.reset_calls();
    let (code, offline, stderr) = org.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 3, "{stderr}");
    assert!(org.gap.calls().is_empty(), "an inventory audit calls nothing: {:?}", org.gap.calls());
    assert_eq!(consumer(&offline, "archivematica")["summary"]["current"], 2);
    assert_eq!(consumer(&offline, "goobi")["summary"]["overdue"], 2);
    assert_eq!(consumer(&offline, "goobi")["summary"]["agents_unhealthy"], 0, "no agent verdict offline");
    let bad = org.dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"Reservations\": [\n").unwrap();
    let (code, _, stderr) = org.run(&["fleet", "--inventory", &format!("workflow={}", bad.display())]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.json: line 3"), "{stderr}");

    // Agents that stop reporting are flagged; an account that cannot be read is unknown.
    org.gap.set_ssm_online(false);
    let (_, fleet, _) = org.run(&["--json", "fleet", "--now", "+15d"]);
    assert_eq!(consumer(&fleet, "archivematica")["summary"]["agents_unhealthy"], 2);
    org.gap.set_ssm_online(true);
    org.gap.inject(Fault { op: "sts:AssumeRole".into(), region: None, times: None, kind: FaultKind::Denied });
    let (code, fleet, _) = org.run(&["--json", "fleet"]);
    org.gap.clear_faults();
    assert_eq!(code, 3);
    let unknown = consumer(&fleet, "digirati")["summary"]["unknown"].as_str().unwrap_or_default().to_string();
    assert!(unknown.contains("AccessDenied"), "{fleet:#}");
    assert_eq!(fleet["compliant"], false);
}

#[test]
fn an_inspector_finding_on_a_consumers_host_plans_a_rebuild_naming_it() {
    let org = Org::new();
    let (code, _, stderr) = org.run(&["build", BASTION]);
    assert_eq!(code, 0, "{stderr}");
    let ami = published_ami(&org, BASTION, "workflow");
    // Inspector saw a fixable HIGH vulnerability on a workflow host launched from it, an
    // hour after the build (moto serves seeded findings; see moto-notes).
    let observed = jiff::Timestamp::now().as_second() + 3600;
    let finding = serde_json::json!({
        "findingArn": "arn:aws:inspector2:eu-west-1:222222222222:finding/0001",
        "awsAccountId": "222222222222", "type": "PACKAGE_VULNERABILITY", "status": "ACTIVE",
        "description": "openssl: a flaw", "title": "CVE-2026-1111 - openssl-libs",
        "remediation": {"recommendation": {"text": "Update openssl-libs"}},
        "severity": "HIGH", "firstObservedAt": observed, "lastObservedAt": observed, "fixAvailable": "YES",
        "resources": [{"id": "i-0123456789abcdef0", "type": "AWS_EC2_INSTANCE",
                       "details": {"awsEc2Instance": {"imageId": ami}}}],
        "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2026-1111", "source": "ALAS",
            "vulnerablePackages": [{"name": "openssl-libs", "version": "1.0.2k", "epoch": 1, "release": "24.amzn2",
                                    "arch": "X86_64", "fixedInVersion": "1:1.0.2k-26.amzn2"}]}
    });
    let seed = serde_json::json!({"account_id": "222222222222", "region": "eu-west-1", "results": [[finding]]});
    let url = format!("{}/moto-api/static/inspector2/findings-results", org.moto.url());
    ureq::post(&url).header("content-type", "application/json").send(seed.to_string()).unwrap();
    let line = format!("[images.{BASTION}]\n");
    org.edit(&line, &format!("{line}advisories = {{ inspector = true }}\n"));

    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2, "{stderr}");
    let bastion = plan["actions"].as_array().unwrap().iter().find(|a| a["image"] == BASTION).cloned();
    let reason = bastion.map(|a| a["reasons"][0].clone()).unwrap_or_default();
    assert_eq!(reason["kind"], "advisories", "{plan:#} {stderr}");
    assert_eq!(reason["advisories"], serde_json::json!(["CVE-2026-1111"]));
    assert_eq!(reason["packages"][0], "openssl-libs.X86_64 1:1.0.2k-24.amzn2 → 1:1.0.2k-26.amzn2");
    let (code, found, _) = org.run(&["--json", "advisories", BASTION]);
    assert_eq!(code, 3);
    assert_eq!(found[0]["findings"][0]["severity"], "important", "HIGH is important on the ALAS scale");
}

/// Instances of the workflow account: by tags, in an auto scaling group, launched from a
/// launch template (its own group), and some that belong to nobody.
async fn seed_selection(aws: &aws::Aws, ami: &str) {
    let ec2 = aws.ec2("workflow", "eu-west-1").await.unwrap();
    let tagged = |name: &str, service: &str, team: &str| {
        aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
            .tags(aws_sdk_ec2::types::Tag::builder().key("Name").value(name).build())
            .tags(aws_sdk_ec2::types::Tag::builder().key("Service").value(service).build())
            .tags(aws_sdk_ec2::types::Tag::builder().key("Team").value(team).build())
            .build()
    };
    for (name, service, team) in [
        ("goobi-worker", "goobi", "goobi-team"),
        ("goobi-stray", "goobi", "other-team"),
        ("other", "other", "goobi-team"),
    ] {
        ec2.run_instances()
            .image_id(ami)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tagged(name, service, team))
            .send()
            .await
            .unwrap();
    }
    seed_group(aws, "workflow", "goobi-container-hosts", ami, 2).await;
    seed_group(aws, "workflow", "goobi-templated", ami, 2).await;
    seed_group(aws, "workflow", "unrelated-hosts", ami, 1).await;
}

#[test]
fn an_inventory_audit_and_a_live_scan_select_the_same_hosts_by_tags_groups_and_launch_templates() {
    let org = Org::with_moto(Moto::start_with_ami_validation(false));
    let (code, _, stderr) = org.run(&["build", ECS]);
    assert_eq!(code, 0, "{stderr}");
    let ami = published_ami(&org, ECS, "workflow");
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    rt.block_on(seed_selection(&aws, &ami));
    let text = std::fs::read_to_string(&org.config).unwrap();
    let consumers = format!(
        "\n[consumers.by-tags]\naccount = \"workflow\"\nimage = \"{ECS}\"\nselect = {{ tags = {{ Service = \"goobi\", Team = \"goobi-team\" }} }}\n\n[consumers.by-group]\naccount = \"workflow\"\nimage = \"{ECS}\"\nselect = {{ asgs = [\"goobi-container-hosts\"] }}\n\n[consumers.by-template]\naccount = \"workflow\"\nimage = \"{ECS}\"\nselect = {{ launch_templates = [\"goobi-templated\"] }}\n"
    );
    let start = text.find("\n[consumers.").unwrap();
    std::fs::write(&org.config, format!("{}{consumers}", &text[..start])).unwrap();
    let ids = |fleet: &Value, name: &str| -> Vec<String> {
        let mut ids: Vec<String> = consumer(fleet, name)["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {fleet:#}"))
            .iter()
            .map(|h| h["host"]["instance_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let (_, live, stderr) = org.run(&["--json", "fleet"]);
    assert!(live["consumers"].is_array(), "{stderr}");
    let instances = org.dir.path().join("instances.json");
    std::fs::write(&instances, rt.block_on(inventory(&aws, "workflow")).to_string()).unwrap();
    let ec2 = rt.block_on(aws.ec2("workflow", "eu-west-1")).unwrap();
    let templates = rt.block_on(ec2.describe_launch_templates().send()).unwrap();
    let templates = serde_json::json!({"LaunchTemplates": templates.launch_templates().iter().map(|t| serde_json::json!({
        "LaunchTemplateId": t.launch_template_id(), "LaunchTemplateName": t.launch_template_name()})).collect::<Vec<_>>()});
    let names = org.dir.path().join("templates.json");
    std::fs::write(&names, templates.to_string()).unwrap();
    // Without the templates' names the audit cannot tell: unknown, never an empty fleet.
    let only_instances = format!("workflow={}", instances.display());
    let (code, partial, _) = org.run(&["--json", "fleet", "--inventory", &only_instances]);
    assert_eq!(code, 3);
    let unknown = consumer(&partial, "by-template")["summary"]["unknown"].as_str().unwrap_or_default().to_string();
    assert!(unknown.contains("describe-launch-templates"), "{partial:#}");
    let both = format!("workflow={}", names.display());
    let (_, offline, stderr) = org.run(&["--json", "fleet", "--inventory", &only_instances, "--inventory", &both]);
    for name in ["by-tags", "by-group", "by-template"] {
        let (l, o) = (ids(&live, name), ids(&offline, name));
        assert!(!l.is_empty(), "{name} finds hosts live: {live:#}");
        assert_eq!(l, o, "{name}: the live scan and the audit select the same hosts ({stderr})");
    }
    assert_eq!(ids(&live, "by-tags").len(), 1, "all tags must match");
    assert_eq!(ids(&live, "by-group").len(), 2);
    assert_eq!(ids(&live, "by-template").len(), 2);
}

/// Creates the platform's organisation in moto, with one OU under its root: (org, OU) ARNs.
fn organization(org: &Org) -> (String, String) {
    let call = |target: &str, body: &str| {
        let (status, text) = org
            .gap
            .call("111111111111", "organizations", &format!("AWSOrganizationsV20161128.{target}"), body)
            .unwrap();
        assert_eq!(status, 200, "{target}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let created = call("CreateOrganization", r#"{"FeatureSet":"ALL"}"#);
    let arn = created["Organization"]["Arn"].as_str().unwrap().to_string();
    let roots = call("ListRoots", "{}");
    let root = roots["Roots"][0]["Id"].as_str().unwrap().to_string();
    let ou = call("CreateOrganizationalUnit", &serde_json::json!({"ParentId": root, "Name": "workloads"}).to_string());
    (arn, ou["OrganizationalUnit"]["Arn"].as_str().unwrap().to_string())
}

#[test]
fn a_line_shared_with_the_organisation_has_its_launch_permission_a_ram_shared_parameter_owned_copies_and_tags() {
    let org = Org::new();
    let (organization, ou) = organization(&org);
    let prefix = format!("/platform/base-ami/{BASTION}");
    org.edit(
        &format!("ssm_parameter = \"{prefix}\" }}"),
        &format!(
            "ssm_parameter = \"{prefix}\", copy = true, organizations = [\"{organization}\"], organizational_units = [\"{ou}\"], share_parameter = true, tags = {{ CostCentre = \"platform-42\", Team = \"platform\" }} }}"
        ),
    );
    let (code, out, stderr) = org.run(&["--json", "build", BASTION]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");

    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let cat = org.catalog();
    let version = cat.versions(Some(BASTION)).unwrap().pop().unwrap();
    let rows = cat.distributions(&version.build_id).unwrap();
    let name = format!("{BASTION}-{}", version.version);
    let tagged = |account: &str, region: &str, id: &str| {
        let ec2 = rt.block_on(aws.ec2(account, region)).unwrap();
        let image = rt.block_on(ec2.describe_images().image_ids(id).send()).unwrap().images()[0].clone();
        let snapshots: Vec<String> = image
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
            .collect();
        assert!(!snapshots.is_empty(), "{id} has no snapshot");
        let tags =
            rt.block_on(ec2.describe_tags().filters(Filter::builder().name("key").values("CostCentre").build()).send());
        let on: Vec<String> = tags
            .unwrap()
            .tags()
            .iter()
            .filter(|t| t.value() == Some("platform-42"))
            .filter_map(|t| t.resource_id())
            .map(str::to_string)
            .collect();
        for r in std::iter::once(id.to_string()).chain(snapshots) {
            assert!(on.contains(&r), "{r} ({account} {region}) lacks the owner's tag: {on:?}");
        }
    };
    for region in REGIONS {
        let platform = rows
            .iter()
            .find(|r| r.distribution.how == provider::How::Owner && r.distribution.target.region == region)
            .unwrap();
        let ami = platform.distribution.image_id.clone();
        tagged("platform", region, &ami);

        // Launch permission for the organisation and the OU, beside the accounts.
        let ec2 = rt.block_on(aws.ec2("platform", region)).unwrap();
        let perms = rt
            .block_on(
                ec2.describe_image_attribute()
                    .image_id(&ami)
                    .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                    .send(),
            )
            .unwrap();
        let perms = perms.launch_permissions();
        assert!(perms.iter().any(|p| p.organization_arn() == Some(organization.as_str())), "{perms:?}");
        assert!(perms.iter().any(|p| p.organizational_unit_arn() == Some(ou.as_str())), "{perms:?}");

        // The platform's own pointer, shared by RAM with the organisation and the OU.
        let latest = format!("arn:aws:ssm:{region}:111111111111:parameter{prefix}/latest");
        let ram = aws_sdk_ram::Client::new(&rt.block_on(aws.config("platform", region)).unwrap());
        let shares = rt
            .block_on(ram.get_resource_shares().resource_owner(aws_sdk_ram::types::ResourceOwner::SelfValue).send())
            .unwrap();
        let share = shares.resource_shares().iter().find(|s| s.name() == Some(&format!("amictl-{BASTION}"))).unwrap();
        let arn = share.resource_share_arn().unwrap();
        let entities = |kind: aws_sdk_ram::types::ResourceShareAssociationType| -> Vec<String> {
            let out = rt
                .block_on(ram.get_resource_share_associations().association_type(kind).resource_share_arns(arn).send())
                .unwrap();
            out.resource_share_associations().iter().filter_map(|a| a.associated_entity()).map(str::to_string).collect()
        };
        assert_eq!(entities(aws_sdk_ram::types::ResourceShareAssociationType::Resource), [latest.as_str()]);
        let principals = entities(aws_sdk_ram::types::ResourceShareAssociationType::Principal);
        assert!(principals.contains(&organization) && principals.contains(&ou), "{principals:?}");
        let ssm = rt.block_on(aws.ssm("workflow", region)).unwrap();
        let read = rt.block_on(ssm.get_parameter().name(&latest).send()).unwrap();
        assert_eq!(read.parameter().unwrap().value(), Some(ami.as_str()), "a consumer resolves it by ARN");

        // `owners = ["self"]` with `name = "<line>*"` finds each consumer's own copy.
        for (account, _) in CONSUMERS {
            let ec2 = rt.block_on(aws.ec2(account, region)).unwrap();
            let own = rt
                .block_on(
                    ec2.describe_images()
                        .owners("self")
                        .filters(Filter::builder().name("name").values(format!("{BASTION}*")).build())
                        .send(),
                )
                .unwrap();
            let found: Vec<&str> = own.images().iter().filter_map(|i| i.name()).collect();
            assert_eq!(found, [name.as_str()], "{account} {region}");
            let id = own.images()[0].image_id().unwrap();
            let row = rows
                .iter()
                .find(|r| r.distribution.target.account == account && r.distribution.target.region == region)
                .unwrap();
            assert_eq!((row.distribution.how, row.distribution.image_id.as_str()), (provider::How::Copy, id));
            tagged(account, region, id);
        }
    }
}

#[test]
fn copies_start_when_the_ami_is_available_and_a_failed_test_removes_them_in_every_region() {
    let org = Org::new();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    // Every test instance's reboot is refused: both lines fail their tests after imaging.
    org.gap.inject(Fault { op: "ec2:RebootInstances".into(), region: None, times: Some(2), kind: FaultKind::Denied });
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 1, "{stderr}\n{out:#}");
    assert!(out.to_string().contains("survives-reboot"), "{out:#}");
    let calls = org.gap.calls();
    assert_eq!(calls.get("ec2:CopyImage"), Some(&2), "each line's copy started before its tests: {calls:#?}");
    for region in REGIONS {
        assert_eq!(rt.block_on(own_images(&aws, region)), Default::default(), "nothing left in {region}");
    }
    let events = org.catalog().events(None).unwrap();
    let failed: Vec<_> = events.iter().filter(|e| e.kind == "build.outcome").collect();
    assert_eq!(failed.len(), 2);
    for e in failed {
        let removed = e.data["cleanup"].as_array().cloned().unwrap_or_default();
        assert!(
            removed.iter().any(|r| r["kind"] == "ami" && r["place"] == "platform/eu-west-2"),
            "the failed build's record names the copy it removed: {:#}",
            e.data
        );
    }
    org.gap.clear_faults();

    // On AWS's clock the copy to eu-west-2 starts once the AMI is available, before the test
    // instance launches, and the publish adopts it: one copy per line.
    let model = org.gap.model(600.0);
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let ledger = model.report(0.0)["ledger"].as_array().cloned().unwrap();
    let copies: Vec<&Value> = ledger.iter().filter(|n| n["kind"] == "copy-region").collect();
    assert_eq!(copies.len(), 2, "{ledger:#?}");
    for copy in copies {
        let image = &ledger[copy["after"][0].as_u64().unwrap() as usize];
        assert_eq!(image["kind"], "image");
        let tester = ledger
            .iter()
            .position(|n| {
                n["kind"] == "instance"
                    && n["after"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|a| ledger[a.as_u64().unwrap() as usize]["id"] == image["id"])
            })
            .map(|i| &ledger[i])
            .expect("a test instance from the new AMI");
        assert!(copy["start"].as_f64() >= image["ready"].as_f64(), "not before the AMI is available: {copy} {image}");
        assert!(copy["start"].as_f64() <= tester["start"].as_f64(), "before the tests: {copy} {tester}");
    }
    assert_eq!(org.gap.calls().get("ec2:CopyImage"), Some(&4), "the publish adopted the copies");
}
