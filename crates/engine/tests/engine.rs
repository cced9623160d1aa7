//! The engine with in-memory providers: every action records its intent before and its
//! outcome after, failures leave the catalog consistent, interrupted work is recovered,
//! builds use exactly the parent their plan names, and `plan` writes nothing.

mod fakes;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use catalog::{AuditEvent, BuildState, NewEvent};
use engine::{ApplyOptions, ApplyReport, Scope};
use fakes::Org;
use jiff::Timestamp;
use policy::Action;
use provider::{Act, AmiRef, Cancel, EventKind};

fn apply(org: &Org, engine: &engine::Engine) -> ApplyReport {
    engine.apply(org.clock.get(), &Scope::default(), &ApplyOptions::default(), |_| {}).unwrap()
}

fn run(org: &Org) -> ApplyReport {
    apply(org, &org.engine())
}

fn events(org: &Org) -> Vec<AuditEvent> {
    org.catalog().events(None).unwrap()
}

fn kinds(events: &[AuditEvent]) -> Vec<String> {
    events.iter().map(|e| e.kind.clone()).collect()
}

/// Every intent has exactly one later outcome naming it, every outcome names an earlier
/// intent of its act, and every decision is followed by its act's intent with the same
/// reasons.
fn assert_paired(events: &[AuditEvent]) {
    let by_seq: BTreeMap<i64, &AuditEvent> = events.iter().map(|e| (e.seq, e)).collect();
    for e in events {
        match EventKind::parse(&e.kind) {
            Some(EventKind::Intent(act)) => {
                let outcomes: Vec<&AuditEvent> = events
                    .iter()
                    .filter(|o| o.kind == EventKind::Outcome(act).as_str() && o.data["intent"] == e.seq)
                    .collect();
                assert_eq!(outcomes.len(), 1, "intent {} ({}) has {} outcomes", e.seq, e.kind, outcomes.len());
                assert!(outcomes[0].seq > e.seq);
                assert_eq!(outcomes[0].subject, e.subject);
            }
            Some(EventKind::Outcome(act)) => {
                let intent = e.data["intent"]
                    .as_i64()
                    .and_then(|s| by_seq.get(&s))
                    .unwrap_or_else(|| panic!("outcome {} names no intent", e.seq));
                assert_eq!(intent.kind, EventKind::Intent(act).as_str());
                assert!(["done", "failed", "interrupted"].contains(&e.data["result"].as_str().unwrap()), "{e:?}");
            }
            Some(EventKind::Decision) => {
                let act = match e.data["action"].as_str().unwrap() {
                    "distribute" => Act::Publish,
                    other => Act::ALL.into_iter().find(|a| a.as_str() == other).unwrap(),
                };
                let intent = events
                    .iter()
                    .find(|i| i.seq > e.seq && i.kind == EventKind::Intent(act).as_str() && i.reason == e.reason);
                assert!(
                    intent.is_some(),
                    "decision {} ({}: {}) was never acted on with its reasons",
                    e.seq,
                    act.as_str(),
                    e.reason
                );
            }
            _ => {}
        }
    }
}

#[test]
fn every_action_kind_records_its_intent_before_and_its_outcome_after_with_the_plans_reasons() {
    let org = Org::new("");
    // 1. Never built: build, then publish in both regions.
    let r = run(&org);
    assert_eq!(r.failed(), 0, "{r:#?}");
    let v1 = org.catalog().versions(Some("host")).unwrap().remove(0);
    assert_eq!(v1.state, BuildState::Available);
    assert_eq!(org.catalog().distributions(&v1.build_id).unwrap().len(), 4, "owner + workflow in two regions");
    // 2. Consumers on v1, a second version forced: the group rolls, the owner is told, v1
    //    is deprecated once v2 is out, and with keep_versions = 2 nothing is retired yet.
    let ami_v1 = format!("ami-{}-eu-west-1", v1.version.replace('.', ""));
    org.run_hosts("goobi", &ami_v1, Some("goobi-hosts"), 2);
    org.run_hosts("goobi-bastion", &ami_v1, None, 1);
    org.clock.advance_days(1);
    let engine = org.engine();
    let r = engine
        .apply(
            org.clock.get(),
            &Scope { only: None, forced: ["host".to_string()].into() },
            &ApplyOptions::default(),
            |_| {},
        )
        .unwrap();
    assert_eq!(r.failed(), 0, "{r:#?}");
    let done: Vec<&str> = r.actions.iter().map(|a| a.action).collect();
    assert_eq!(done, ["build", "deprecate"], "the predecessor is deprecated in the same run");
    // 3. Hosts still on v1: rollouts are planned (to v2); a third version built in the same
    //    run moves them once, to v3.
    org.clock.advance_days(1);
    let engine = org.engine();
    let r = engine
        .apply(
            org.clock.get(),
            &Scope { only: None, forced: ["host".to_string()].into() },
            &ApplyOptions::default(),
            |_| {},
        )
        .unwrap();
    let done: Vec<&str> = r.actions.iter().map(|a| a.action).collect();
    assert_eq!(done, ["build", "deprecate", "rollout", "rollout"], "{r:#?}");
    let v3 = org.catalog().versions(Some("host")).unwrap().remove(2);
    let rolled = org.rollout.rolled.lock().unwrap().clone();
    assert_eq!(rolled.len(), 1);
    assert_eq!((rolled[0].asg.as_str(), rolled[0].target.region.as_str()), ("goobi-hosts", "eu-west-1"));
    assert_eq!(
        rolled[0].image_id,
        format!("ami-{}-eu-west-1", v3.version.replace('.', "")),
        "to the version this run released, not the one planned before it"
    );
    org.clock.advance_days(1);
    run(&org);
    let notices: Vec<String> = org.rollout.notices.lock().unwrap().iter().map(|n| n.subject.clone()).collect();
    assert_eq!(notices.len(), 2, "told in run 3 and again a day later, never twice a day: {notices:?}");
    assert!(notices.iter().all(|n| n.ends_with(&v3.version)), "about the newest version: {notices:?}");
    // 4. A build a dead run left behind is recovered.
    {
        let mut cat = org.catalog();
        let reason = serde_json::json!([]);
        cat.insert_build(&catalog::NewBuild {
            build_id: "b-dead",
            image: "host",
            version: "2026.12.01.9",
            reason: &reason,
            recipe_hash: "r",
            parent_id: "",
            parent_name: "ssm:/aws/service/test",
            parent_created: "",
            started_at: "2026-12-01T10:00:00Z",
            log_dir: "/tmp/x",
            components: &[],
            runner: "4194305",
        })
        .unwrap();
        cat.set_state("b-dead", BuildState::Building, None, "2026-12-01T10:00:01Z").unwrap();
    }
    // …and once every host runs the newest version, the oldest is retired (after one run
    // has recorded the scan that shows nobody runs it).
    let newest =
        org.catalog().versions(Some("host")).unwrap().into_iter().rfind(|v| v.state == BuildState::Available).unwrap();
    let ami = format!("ami-{}-eu-west-1", newest.version.replace('.', ""));
    org.run_hosts("goobi", &ami, Some("goobi-hosts"), 2);
    org.run_hosts("goobi-bastion", &ami, None, 1);
    let r = run(&org);
    assert_eq!(r.actions[0].action, "recover");
    assert_eq!(org.builder.cleaned.lock().unwrap().as_slice(), ["b-dead"]);
    let r = run(&org);
    assert_eq!(r.actions.iter().map(|a| a.action).collect::<Vec<_>>(), ["retire"], "{r:#?}");
    assert_eq!(org.builder.retired.lock().unwrap().as_slice(), [v1.version.as_str()]);
    assert!(r.actions[0].result["left"].as_array().is_some_and(|l| l.len() == 2), "what is left in the cloud is said");
    let all = events(&org);
    for act in Act::ALL {
        assert!(
            kinds(&all).contains(&EventKind::Intent(act).as_str().to_string()),
            "no {}: {:?}",
            act.as_str(),
            kinds(&all)
        );
    }
    assert_paired(&all);
    assert_eq!(org.catalog().verify_chain().unwrap(), Ok(all.len()));
}

#[test]
fn a_provider_failure_records_a_failed_outcome_and_leaves_the_catalog_consistent() {
    let org = Org::new("");
    org.builder.fail.store(true, Ordering::SeqCst);
    let r = run(&org);
    assert_eq!(r.failed(), 1);
    assert!(r.actions[0].error.as_deref().unwrap().contains("services-active"), "{r:#?}");
    let cat = org.catalog();
    let v = cat.versions(Some("host")).unwrap().remove(0);
    assert_eq!(v.state, BuildState::Failed);
    assert!(v.failure.as_deref().unwrap().contains("services-active"));
    assert!(cat.artifacts(&v.build_id).unwrap().is_empty() && cat.distributions(&v.build_id).unwrap().is_empty());
    assert!(!cat.tests(&v.build_id).unwrap()[0].passed, "the tests that ran are kept");
    let outcome = events(&org).into_iter().find(|e| e.kind == "build.outcome").unwrap();
    assert_eq!(outcome.data["result"], "failed");
    drop(cat);
    // A region that fails to publish: the version is available, what exists is recorded,
    // and the next plan distributes the rest.
    org.builder.fail.store(false, Ordering::SeqCst);
    org.publisher.failing_regions.lock().unwrap().insert("eu-west-2".into());
    let r = run(&org);
    assert_eq!(r.failed(), 1);
    assert!(r.actions[0].error.as_deref().unwrap().contains("not fully published"), "{r:#?}");
    let cat = org.catalog();
    let v = cat.versions(Some("host")).unwrap().pop().unwrap();
    assert_eq!(v.state, BuildState::Available);
    let regions: Vec<String> =
        cat.distributions(&v.build_id).unwrap().into_iter().map(|d| d.distribution.target.region).collect();
    assert_eq!(regions, ["eu-west-1", "eu-west-1"]);
    drop(cat);
    org.publisher.failing_regions.lock().unwrap().clear();
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    let Some(Action::Distribute { targets, .. }) = plan.actions.first() else { panic!("{plan:#?}") };
    assert_eq!(targets, &[provider::Target::new("workflow", "eu-west-2")]);
    assert_eq!(run(&org).failed(), 0);
    assert_paired(&events(&org));
}

#[test]
fn an_interrupted_run_is_closed_and_its_build_recovered_by_the_next_one() {
    let org = Org::new("");
    // What `kill -9` leaves: a building version and open intents (its build and a publish).
    {
        let mut cat = org.catalog();
        let reason = serde_json::json!([]);
        cat.insert_build(&catalog::NewBuild {
            build_id: "b-killed",
            image: "host",
            version: "2026.12.01.1",
            reason: &reason,
            recipe_hash: "r",
            parent_id: "ami-parent1",
            parent_name: "amzn2",
            parent_created: "",
            started_at: "2026-12-01T08:00:00Z",
            log_dir: "/tmp/x",
            components: &[],
            runner: "4194305",
        })
        .unwrap();
        cat.set_state("b-killed", BuildState::Building, None, "2026-12-01T08:00:01Z").unwrap();
        let data = serde_json::json!({"build_id": "b-killed"});
        for kind in ["build.intent", "publish.intent"] {
            cat.append_event(&NewEvent {
                time: "2026-12-01T08:00:02Z",
                actor: "killed run",
                kind,
                subject: "host@2026.12.01.1",
                reason: "never built",
                data: &data,
                opens: true,
                closes: None,
            })
            .unwrap();
        }
    }
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    assert!(matches!(plan.actions[0], Action::Recover { .. }), "{plan:#?}");
    let r = run(&org);
    assert_eq!(r.closed.len(), 2, "both dangling intents are closed");
    assert_eq!(r.actions[0].action, "recover");
    let all = events(&org);
    let closed: Vec<&AuditEvent> = all.iter().filter(|e| e.data["result"] == "interrupted").collect();
    assert_eq!(closed.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["build.outcome", "publish.outcome"]);
    assert!(org.catalog().open_intents().unwrap().is_empty());
    let versions = org.catalog().versions(Some("host")).unwrap();
    assert_eq!(versions[0].state, BuildState::Failed);
    assert!(versions[0].failure.as_deref().unwrap().contains("interrupted"));
    assert_eq!(versions.last().unwrap().state, BuildState::Available, "and the line is built");
    assert_eq!(org.builder.cleaned.lock().unwrap().as_slice(), ["b-killed"]);
}

#[test]
fn an_interrupted_build_whose_execution_goes_on_is_followed_not_rebuilt() {
    let org = Org::new("");
    org.builder.resumable.store(true, Ordering::SeqCst);
    // First run: the build starts its execution (recorded), then the run "dies".
    {
        let mut cat = org.catalog();
        cat.insert_build(&catalog::NewBuild {
            build_id: "b-cloud",
            image: "host",
            version: "2026.12.01.1",
            reason: &serde_json::json!([]),
            recipe_hash: "r",
            parent_id: "ami-parent1",
            parent_name: "amzn2",
            parent_created: "",
            started_at: "2026-12-01T08:00:00Z",
            log_dir: "/tmp/x",
            components: &[],
            runner: "4194305",
        })
        .unwrap();
        cat.set_state("b-cloud", BuildState::Building, None, "2026-12-01T08:00:01Z").unwrap();
        cat.set_execution("b-cloud", "exec-started-by-the-dead-run").unwrap();
    }
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    assert!(matches!(plan.actions[0], Action::Recover { follow: true, .. }), "{plan:#?}");
    assert!(!plan.actions.iter().any(|a| matches!(a, Action::Build { .. })), "no second build: {plan:#?}");
    let r = run(&org);
    assert_eq!(r.failed(), 0, "{r:#?}");
    assert_eq!(org.builder.executions.lock().unwrap().as_slice(), [Some("exec-started-by-the-dead-run".to_string())]);
    assert!(org.builder.cleaned.lock().unwrap().is_empty(), "nothing was cleaned up");
    let versions = org.catalog().versions(Some("host")).unwrap();
    assert_eq!(versions.len(), 1, "the followed build is the version");
    assert_eq!((versions[0].state, versions[0].version.as_str()), (BuildState::Available, "2026.12.01.1"));
    assert_eq!(org.publisher.published.lock().unwrap()[0].0, "2026.12.01.1", "and it is published");
    let recover = events(&org).into_iter().find(|e| e.kind == "recover.outcome").unwrap();
    assert_eq!(recover.data["state"], "available");
    assert_paired(&events(&org));

    // A build this run starts records its execution at once.
    org.clock.advance_days(100);
    run(&org);
    let newest = org.catalog().versions(Some("host")).unwrap().pop().unwrap();
    assert_eq!(newest.execution, format!("exec-{}", newest.build_id));
}

#[test]
fn the_parent_a_build_uses_is_the_one_its_plan_action_names() {
    let org = Org::new("");
    // Every lookup finds a newer parent: resolving again at build time would differ.
    org.builder.moving_parent.store(true, Ordering::SeqCst);
    let engine = org.engine();
    let r = apply(&org, &engine);
    let Some(Action::Build { parent: Some(planned), .. }) = r.plan.actions.first() else { panic!("{r:#?}") };
    let jobs = org.builder.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1.as_ref(), Some(planned), "the build got the plan's parent");
    let v = org.catalog().versions(Some("host")).unwrap().remove(0);
    assert_eq!(v.parent_id, planned.id, "and the catalog records it");
    // The next plan sees the parent moved from exactly that one.
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    let Some(Action::Build { parent: Some(next), reasons, .. }) = plan.actions.first() else { panic!("{plan:#?}") };
    assert_eq!(
        reasons[0],
        policy::Reason::ParentMoved { from: planned.id.clone(), to: next.id.clone(), parent: next.name.clone() }
    );
}

#[test]
fn plan_leaves_the_catalog_unchanged() {
    let org = Org::new("");
    run(&org);
    let v1 = org.catalog().versions(Some("host")).unwrap().remove(0);
    org.run_hosts("goobi", &format!("ami-{}-eu-west-1", v1.version.replace('.', "")), Some("goobi-hosts"), 2);
    let before = (
        org.catalog().event_count().unwrap(),
        org.catalog().latest_scans().unwrap(),
        org.catalog().versions(None).unwrap().len(),
    );
    let bytes = std::fs::read(&org.config.state).unwrap();
    org.clock.advance_days(100);
    let (plan, observation) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    assert!(!plan.is_empty(), "there is something to do: {plan:#?}");
    assert!(!observation.scans.is_empty(), "the plan scanned the fleet");
    let after = (
        org.catalog().event_count().unwrap(),
        org.catalog().latest_scans().unwrap(),
        org.catalog().versions(None).unwrap().len(),
    );
    assert_eq!(before, after);
    assert_eq!(std::fs::read(&org.config.state).unwrap(), bytes, "not a byte of the state changed");
}

fn unfinished(org: &Org, build_id: &str, image: &str, runner: &str) {
    let mut cat = org.catalog();
    cat.insert_build(&catalog::NewBuild {
        build_id,
        image,
        version: &format!("2026.12.01.{}", build_id.len()),
        reason: &serde_json::json!([]),
        recipe_hash: "r",
        parent_id: "",
        parent_name: "",
        parent_created: "",
        started_at: "2026-12-01T08:00:00Z",
        log_dir: "/tmp/x",
        components: &[],
        runner,
    })
    .unwrap();
    cat.set_state(build_id, BuildState::Building, None, "t").unwrap();
}

#[test]
fn a_build_a_live_run_holds_is_running_and_one_a_dead_run_left_is_interrupted() {
    let org = Org::new(
        "[images.second]\nparent = \"ssm:/aws/service/test\"\ncomponents = [\"agent\"]\nbuilder = { kind = \"ec2\", instance_type = \"t3.micro\" }\n",
    );
    // The live run (this process holds the lock) started `host`'s build; a dead one left
    // `second`'s.
    unfinished(&org, "b-live", "host", &std::process::id().to_string());
    unfinished(&org, "b-dead", "second", "4194305");
    let lock = catalog::RunLock::acquire(&org.config.state, false, "amictl apply", |_| {}, || false).unwrap();
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    assert_eq!(plan.running.len(), 1, "{plan:#?}");
    assert_eq!(plan.running[0].build_id, "b-live");
    assert!(plan.running[0].holder.contains(&std::process::id().to_string()), "{:?}", plan.running);
    assert!(
        !plan.actions.iter().any(|a| a.image() == "host"),
        "no recovery and no second build of a live one: {plan:#?}"
    );
    assert!(
        matches!(&plan.actions[0], Action::Recover { build_id, .. } if build_id == "b-dead"),
        "a dead run's build is interrupted whoever holds the lock: {plan:#?}"
    );
    drop(lock);
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    assert!(matches!(plan.actions[0], Action::Recover { .. }), "once its run is gone it is interrupted");
}

#[test]
fn stopping_mid_build_records_an_interrupted_outcome_and_starts_nothing_else() {
    let org = Org::new(
        "[images.second]\nparent = \"ssm:/aws/service/test\"\ncomponents = [\"agent\"]\nbuilder = { kind = \"ec2\", instance_type = \"t3.micro\" }\n",
    );
    let cancel = Cancel::new();
    *org.builder.cancel_during_build.lock().unwrap() = Some(cancel.clone());
    let engine = org.engine().with_cancel(cancel);
    let options = ApplyOptions { parallel: 1, ..ApplyOptions::default() };
    let r = engine.apply(org.clock.get(), &Scope::default(), &options, |_| {}).unwrap();
    assert!(r.interrupted());
    assert_eq!(r.actions.len(), 1, "{r:#?}");
    assert!(r.actions[0].interrupted);
    assert_eq!(r.not_started, 1, "the second line's build never started");
    let outcome = events(&org).into_iter().find(|e| e.kind == "build.outcome").unwrap();
    assert_eq!(outcome.data["result"], "interrupted");
    assert_eq!(org.catalog().versions(None).unwrap()[0].state, BuildState::Failed);
    assert!(org.catalog().open_intents().unwrap().is_empty());
    assert!(events(&org).last().unwrap().reason.contains("interrupted"));
}

#[test]
fn a_refused_deprecation_fails_the_action_and_is_retried_later_at_the_same_time() {
    let org = Org::new("");
    run(&org);
    org.clock.advance_days(1);
    org.publisher.refuse_deprecation.store(true, Ordering::SeqCst);
    let forced = Scope { only: None, forced: ["host".to_string()].into() };
    let r = org.engine().apply(org.clock.get(), &forced, &ApplyOptions::default(), |_| {}).unwrap();
    let dep = r.actions.iter().find(|a| a.action == "deprecate").expect("deprecation attempted");
    assert!(!dep.ok && dep.error.as_deref().unwrap().contains("AccessDenied"), "{dep:#?}");
    assert_eq!(r.failed(), 1, "a refused deprecation fails the run");
    let first: Vec<(AmiRef, Timestamp)> = org.publisher.deprecations.lock().unwrap().clone();
    assert_eq!(first.len(), 2, "the owner's AMI in both regions: {first:?}");
    // Later runs retry, at the same time, until it is set; then never again.
    org.clock.advance_days(3);
    let (plan, _) = org.engine().plan(org.clock.get(), &Scope::default()).unwrap();
    let Some(Action::Deprecate { at, reasons, .. }) =
        plan.actions.iter().find(|a| matches!(a, Action::Deprecate { .. }))
    else {
        panic!("{plan:#?}")
    };
    assert_eq!(*at, first[0].1, "the time belongs to the version");
    assert!(matches!(reasons[1], policy::Reason::DeprecationFailed { .. }));
    org.publisher.refuse_deprecation.store(false, Ordering::SeqCst);
    assert_eq!(run(&org).failed(), 0);
    org.clock.advance_days(1);
    let before = org.publisher.deprecations.lock().unwrap().len();
    run(&org);
    assert_eq!(org.publisher.deprecations.lock().unwrap().len(), before, "set once");
    let times: std::collections::BTreeSet<Timestamp> =
        org.publisher.deprecations.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert_eq!(times.len(), 1, "never moved: {times:?}");
    assert_paired(&events(&org));
}

#[test]
fn independent_lines_build_side_by_side() {
    let org = Org::new(
        "[images.second]\nparent = \"ssm:/aws/service/test\"\ncomponents = [\"agent\"]\nbuilder = { kind = \"ec2\", instance_type = \"t3.micro\" }\n",
    );
    *org.builder.delay.lock().unwrap() = Duration::from_millis(300);
    let r = run(&org);
    assert_eq!(r.failed(), 0);
    let busy = org.builder.busy.lock().unwrap().clone();
    assert_eq!(busy.len(), 2);
    let (a, b) = (&busy[0], &busy[1]);
    assert!(a.1 < b.2 && b.1 < a.2, "the two builds overlapped: {busy:?}");
    assert_paired(&events(&org));
}

#[test]
fn a_dead_build_of_a_line_gone_from_the_config_is_cleaned_up_by_a_builder_of_its_kind() {
    let org = Org::new(
        "[images.second]\nparent = \"ssm:/aws/service/test\"\ncomponents = [\"agent\"]\nbuilder = { kind = \"ec2\", instance_type = \"t3.micro\" }\n",
    );
    unfinished(&org, "b-old", "renamed-line", "4194305");
    org.catalog()
        .append_event(&NewEvent {
            time: "2026-12-01T08:00:02Z",
            actor: "killed run",
            kind: "build.intent",
            subject: "renamed-line@2026.12.01.5",
            reason: "never built",
            data: &serde_json::json!({"build_id": "b-old", "builder": "fake"}),
            opens: true,
            closes: None,
        })
        .unwrap();
    let r = run(&org);
    let recover = r.actions.iter().find(|a| a.action == "recover").unwrap();
    assert!(recover.ok, "{recover:#?}");
    assert_eq!(org.builder.cleaned.lock().unwrap().as_slice(), ["b-old"], "cleaned by its kind's builder");
}

#[test]
fn a_held_build_is_asked_for_once_runs_when_approved_and_a_denied_one_waits_for_its_request_to_expire() {
    let org = Org::with_policy("require_approval = [\"build\"]\napproval_ttl = \"1d\"", "");
    // Held: asked for once, however many runs see it.
    let r = run(&org);
    let held: Vec<&str> = r.held().map(|a| a.subject.as_str()).collect();
    assert_eq!((held, r.failed()), (vec!["host"], 0));
    run(&org);
    let pending = org.catalog().approvals(Some(catalog::ApprovalStatus::Pending)).unwrap();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert!(org.catalog().versions(Some("host")).unwrap().is_empty(), "nothing was built");
    // Denied: not run, and not asked for again until the request expires.
    let engine = org.engine();
    engine.decide(&pending[0].id, engine::Decision::Deny, "dave").unwrap();
    assert!(matches!(
        engine.decide(&pending[0].id, engine::Decision::Approve, "erin"),
        Err(engine::EngineError::Refused(_))
    ));
    let r = run(&org);
    assert_eq!(r.held().count(), 1);
    assert_eq!(org.catalog().approvals(None).unwrap().len(), 1);
    org.clock.advance_days(2);
    let r = run(&org);
    assert_eq!(r.held().count(), 1);
    let all = org.catalog().approvals(None).unwrap();
    let statuses: Vec<_> = all.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [catalog::ApprovalStatus::Pending, catalog::ApprovalStatus::Expired],
        "a new request after expiry"
    );
    // Approved: the next run builds, and the approval is spent only once the build did its work.
    let engine = org.engine();
    engine.decide(&all[0].id, engine::Decision::Approve, "frank").unwrap();
    let r = run(&org);
    assert_eq!((r.held().count(), r.failed()), (0, 0), "{r:#?}");
    assert_eq!(org.catalog().versions(Some("host")).unwrap().len(), 1);
    let used = org.catalog().approval(&all[0].id).unwrap().unwrap();
    assert_eq!((used.status, used.decided_by.as_deref()), (catalog::ApprovalStatus::Used, Some("frank")));
    let events = events(&org);
    let k = kinds(&events);
    let pos = |kind: &str| k.iter().rposition(|x| x == kind).unwrap();
    assert!(pos("approval.approved") < pos("build.intent") && pos("build.outcome") < pos("approval.used"), "{k:?}");
    assert_eq!(k.iter().filter(|x| *x == "approval.expired").count(), 1);
    assert_paired(&events);
}
