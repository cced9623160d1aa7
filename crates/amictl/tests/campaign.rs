//! What a kill -9 campaign on the cloud path found, each through the real binary against
//! moto: deprecation refused and reported, deprecation times set once, a plan beside a
//! running apply, intents closed after a kill, SIGTERM cleaning up, the lock's holder.

mod cloud;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use cloud::*;
use jiff::Timestamp;
use motogap::{Fault, FaultKind};

fn delay(org: &Org, op: &str, ms: u64) {
    org.gap.inject(Fault {
        op: op.into(),
        region: None,
        times: None,
        kind: FaultKind::Delay(Duration::from_millis(ms)),
    });
}

/// Waits until `ready` holds, while `child` still runs.
fn wait_for(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {what}");
        assert!(start.elapsed() < Duration::from_secs(120), "never saw {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kinds(org: &Org) -> Vec<String> {
    org.catalog().events(None).unwrap().into_iter().map(|e| e.kind).collect()
}

/// The deprecation time DescribeImages reports for an AMI (motogap models it).
fn deprecation_time(org: &Org, account: &str, region: &str, ami: &str) -> Option<String> {
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let ec2 = rt.block_on(aws.ec2(account, region)).unwrap();
    let out = rt.block_on(ec2.describe_images().image_ids(ami).send()).unwrap();
    out.images().first().and_then(|i| i.deprecation_time()).map(str::to_string)
}

/// One available version: its name, the platform's AMI per region, its release.
type Released = (String, Vec<(String, String)>, Timestamp);

/// The platform's AMIs of every available version of `image`, oldest first.
fn owner_amis(org: &Org, image: &str) -> Vec<Released> {
    let cat = org.catalog();
    cat.versions(Some(image))
        .unwrap()
        .into_iter()
        .filter(|v| v.state == catalog::BuildState::Available)
        .map(|v| {
            let rows = cat.distributions(&v.build_id).unwrap();
            let released = rows.iter().map(|p| p.at.parse::<Timestamp>().unwrap()).min().unwrap();
            let owned = rows
                .into_iter()
                .filter(|p| p.distribution.how == provider::How::Owner)
                .map(|p| (p.distribution.target.region, p.distribution.image_id))
                .collect();
            (v.version, owned, released)
        })
        .collect()
}

#[test]
fn a_refused_deprecation_is_reported_shown_everywhere_and_retried_by_a_later_run() {
    let org = Org::new();
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 0, "{stderr}");
    org.gap.inject(Fault {
        op: "ec2:EnableImageDeprecation".into(),
        region: None,
        times: None,
        kind: FaultKind::Denied,
    });
    let (code, _, stderr) = org.run(&["build", "--force", BASTION]);
    assert_eq!(code, 1, "a refused deprecation fails the run: {stderr}");
    assert!(stderr.contains("FAIL deprecate") && stderr.contains("UnauthorizedOperation"), "{stderr}");
    // Shown where operators look.
    let images = org.command(&["images", BASTION]).output().unwrap();
    let images = String::from_utf8_lossy(&images.stdout);
    assert!(images.contains("FAILED for 2 AMI(s)"), "{images}");
    let (code, plan, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2);
    let dep =
        plan["actions"].as_array().unwrap().iter().find(|a| a["kind"] == "deprecate").cloned().unwrap_or_default();
    assert_eq!(dep["image"], BASTION, "{plan:#}");
    assert_eq!(dep["reasons"][1]["kind"], "deprecation_failed");
    let page = org.dir.path().join("report.html");
    org.run(&["report", "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Deprecations that failed") && html.contains("UnauthorizedOperation"), "the report says so");
    // A later run sets it, at the time planned, and then there is nothing left to do.
    org.gap.clear_faults();
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 0, "{stderr}");
    let amis = owner_amis(&org, BASTION);
    let (_, v1, _) = &amis[0];
    let planned: Timestamp = dep["at"].as_str().unwrap().parse().unwrap();
    for (region, ami) in v1 {
        let set: Timestamp = deprecation_time(&org, "platform", region, ami).expect("deprecated").parse().unwrap();
        assert_eq!(set, planned, "{region}");
    }
    let (code, plan, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "{plan:#}");
    let (code, _, _) = org.run(&["audit", "verify"]);
    assert_eq!(code, 0);
}

#[test]
fn deprecation_times_are_set_once_per_version_and_never_moved_later() {
    let org = Org::new();
    for _ in 0..3 {
        let (code, _, stderr) = org.run(&["build", "--force", BASTION]);
        assert_eq!(code, 0, "{stderr}");
    }
    let amis = owner_amis(&org, BASTION);
    assert_eq!(amis.len(), 3);
    let sla = jiff::SignedDuration::from_hours(14 * 24);
    let times_of = |(_, owned, _): &Released| -> Vec<Option<String>> {
        owned.iter().map(|(region, ami)| deprecation_time(&org, "platform", region, ami)).collect()
    };
    // Each superseded version is deprecated at its successor's release plus the SLA…
    for pair in amis.windows(2) {
        let want = pair[1].2 + sla;
        for t in times_of(&pair[0]) {
            let t: Timestamp = t.expect("deprecated").parse().unwrap();
            assert_eq!(t.as_second(), want.as_second(), "{} deprecated from its successor's release + 14d", pair[0].0);
        }
    }
    assert!(times_of(&amis[2]).iter().all(Option::is_none), "the newest is not deprecated");
    // …once: the fourth version deprecates only the third, and moves nobody's time.
    let before = times_of(&amis[0]);
    org.gap.reset_calls();
    let (code, _, stderr) = org.run(&["build", "--force", BASTION]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        org.gap.calls().get("ec2:EnableImageDeprecation"),
        Some(&2),
        "only the newly superseded version, in 2 regions"
    );
    assert_eq!(times_of(&amis[0]), before, "never moved");
}

#[test]
fn plan_beside_a_running_apply_shows_the_build_as_running_and_the_lock_names_its_holder() {
    let org = Org::new();
    delay(&org, "ssm:GetCommandInvocation", 700);
    let mut child = org.command(&["build", BASTION]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&mut child, "the build", || {
        org.catalog().versions(Some(BASTION)).unwrap().iter().any(|v| v.state == catalog::BuildState::Building)
    });
    let (code, plan, stderr) = org.run(&["--json", "plan"]);
    assert!(child.try_wait().unwrap().is_none(), "still building");
    assert_eq!(code, 2, "the other line is still to build: {stderr}");
    let kinds: Vec<&str> = plan["actions"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert!(!kinds.contains(&"recover"), "a live build is not interrupted: {plan:#}");
    assert_eq!(actions(&plan), [("build".to_string(), ECS.to_string())], "and its line is not built twice");
    let running = &plan["running"][0];
    assert_eq!(running["image"], BASTION);
    assert!(running["holder"].as_str().unwrap().contains(&format!("pid {}", child.id())), "{running}");
    let text = org.command(&["plan"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("is being built now by pid"), "the text plan says so too");
    // A second apply is refused, naming the holder.
    let (code, _, stderr) = org.run(&["apply"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("holds the lock") && stderr.contains(&format!("(pid {}, amictl apply, since ", child.id())),
        "{stderr}"
    );
    org.gap.clear_faults();
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_killed_publish_is_closed_as_interrupted_by_the_next_run() {
    let org = Org::new();
    // Sharing happens only in the publish (the copy to eu-west-2 starts during the build).
    delay(&org, "ec2:ModifyImageAttribute", 3000);
    let mut child = org.command(&["build", BASTION]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&mut child, "the publish", || kinds(&org).iter().any(|k| k == "publish.intent"));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!kinds(&org).iter().any(|k| k == "publish.outcome"), "killed mid-publish");
    org.gap.clear_faults();
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let closed: Vec<&str> = out["closed"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(closed, ["publish.intent"], "{out:#}");
    let all = org.catalog().events(None).unwrap();
    let intent = all.iter().find(|e| e.kind == "publish.intent").unwrap();
    let outcome = all.iter().find(|e| e.kind == "publish.outcome" && e.data["intent"] == intent.seq).unwrap();
    assert_eq!(outcome.data["result"], "interrupted");
    assert!(org.catalog().open_intents().unwrap().is_empty());
    // The version was built and tested; the next run published what the kill left undone.
    let v = org.catalog().versions(Some(BASTION)).unwrap().remove(0);
    assert_eq!(v.state, catalog::BuildState::Available);
    assert_eq!(org.catalog().distributions(&v.build_id).unwrap().len(), 6);
    let (code, _, _) = org.run(&["audit", "verify"]);
    assert_eq!(code, 0);
}

#[test]
fn sigterm_during_a_build_cleans_up_what_it_made_and_records_the_outcome() {
    let org = Org::new();
    delay(&org, "ssm:GetCommandInvocation", 500);
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let mut child = org.command(&["build", BASTION]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&mut child, "the test instance", || {
        rt.block_on(live_build_instances(&aws)).iter().any(|(_, role)| role == "tester")
    });
    let live = rt.block_on(live_build_instances(&aws));
    assert!(live.iter().all(|(_, role)| role == "tester"), "the builder is gone once its AMI exists: {live:?}");
    let build = org.catalog().versions(Some(BASTION)).unwrap().remove(0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "SIGTERM did not end the run");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM: {stderr}");
    // Nothing the build made is left in AWS.
    assert!(rt.block_on(live_build_instances(&aws)).is_empty(), "no instance");
    let ssm = rt.block_on(aws.ssm("platform", "eu-west-1")).unwrap();
    let left = rt.block_on(ssm.get_parameters_by_path().path("/amictl/build").recursive(true).send()).unwrap();
    assert!(left.parameters().is_empty(), "no secret");
    let ec2 = rt.block_on(aws.ec2("platform", "eu-west-1")).unwrap();
    let amis = rt
        .block_on(
            ec2.describe_images()
                .owners("self")
                .filters(Filter::builder().name("tag:amictl:build-id").values(&build.build_id).build())
                .send(),
        )
        .unwrap();
    assert!(amis.images().is_empty(), "no AMI");
    // And the chain says what happened.
    let events = org.catalog().events(None).unwrap();
    let outcome = events.iter().find(|e| e.kind == "build.outcome").expect("an outcome");
    assert_eq!(outcome.data["result"], "interrupted", "{outcome:?}");
    assert!(events.last().unwrap().kind == "apply.finish" && events.last().unwrap().reason.contains("interrupted"));
    assert!(org.catalog().open_intents().unwrap().is_empty());
    assert_eq!(org.catalog().versions(Some(BASTION)).unwrap()[0].state, catalog::BuildState::Failed);
    let (code, plan, _) = org.run(&["--json", "plan"]);
    assert_eq!(code, 2);
    assert!(!plan["actions"].as_array().unwrap().iter().any(|a| a["kind"] == "recover"), "nothing left to recover");
}

#[test]
fn a_killed_rollout_is_closed_as_interrupted_and_the_next_run_finishes_it() {
    // moto lets no account see another's AMI; without validation consumers launch the
    // shared ids, as they can on AWS.
    let org = Org::with_moto(motogap::Moto::start_with_ami_validation(false));
    org.edit(
        "select = { asgs = [\"goobi-container-hosts\"] }\nrollout = { kind = \"pinned\", sns_topic = \"arn:aws:sns:eu-west-1:111111111111:amictl-rollouts\" }",
        "select = { asgs = [\"goobi-container-hosts\"] }\nrollout = { kind = \"rolling-replace\", batch = 1 }",
    );
    let (code, _, stderr) = org.run(&["build", ECS]);
    assert_eq!(code, 0, "{stderr}");
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    rt.block_on(seed_group(&aws, "workflow", "goobi-container-hosts", &published_ami(&org, ECS, "workflow"), 2));
    let (code, _, stderr) = org.run(&["build", "--force", ECS]);
    assert_eq!(code, 0, "{stderr}");
    delay(&org, "autoscaling:TerminateInstanceInAutoScalingGroup", 3000);
    let mut child =
        org.command(&["apply", "--now", "+15d"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&mut child, "the rollout", || kinds(&org).iter().any(|k| k == "rollout.intent"));
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    org.gap.clear_faults();
    let (code, out, stderr) = org.run(&["--json", "apply", "--now", "+15d"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let closed: Vec<(&str, &str)> = out["closed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["subject"].as_str().unwrap()))
        .collect();
    assert!(closed.contains(&("rollout.intent", "consumer:goobi")), "{out:#}");
    let all = org.catalog().events(None).unwrap();
    let first = all.iter().find(|e| e.kind == "rollout.intent" && e.subject == "consumer:goobi").unwrap();
    let outcome = all.iter().find(|e| e.kind == "rollout.outcome" && e.data["intent"] == first.seq).unwrap();
    assert_eq!(outcome.data["result"], "interrupted");
    // The next run moved the group for real.
    let done = out["actions"].as_array().unwrap().iter().find(|a| a["subject"] == "consumer:goobi").unwrap();
    assert_eq!(done["ok"], true, "{out:#}");
    assert!(org.catalog().open_intents().unwrap().is_empty());
}
