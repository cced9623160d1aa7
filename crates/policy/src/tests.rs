use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use provider::{Act, AmiRef, Distribution, How, ParentRef, RolloutGroup, RolloutMethod, Target};

use super::*;

fn t(day: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + day * DAY).unwrap()
}

fn policy() -> PolicyView {
    PolicyView {
        max_age_seconds: 90 * DAY,
        rebuild_on_parent_update: true,
        keep_versions: 3,
        rebuild_on_severity: "important".into(),
        rollout_sla_seconds: 14 * DAY,
    }
}

fn desired() -> DesiredImage {
    DesiredImage {
        name: "host".into(),
        recipe_hash: "r1".into(),
        components: [("agent".to_string(), "1.0".to_string())].into(),
        targets: BTreeSet::new(),
        pointers: false,
        resumes: false,
    }
}

fn version(n: u32, day: i64) -> ObservedVersion {
    ObservedVersion {
        image: "host".into(),
        version: format!("v{n}"),
        build_id: format!("b{n}"),
        state: VersionState::Available,
        stage: String::new(),
        running: None,
        execution: String::new(),
        built_at: t(day),
        released_at: Some(t(day)),
        recipe_hash: "r1".into(),
        parent_id: "p1".into(),
        components: [("agent".to_string(), "1.0".to_string())].into(),
        distributions: Vec::new(),
        source: None,
        deprecations: BTreeMap::new(),
        cleanup_blocked: None,
    }
}

fn parent(id: &str) -> ParentRef {
    ParentRef { id: id.into(), name: "debootstrap:stable".into(), created: String::new() }
}

fn observed(versions: Vec<ObservedVersion>) -> Observed {
    Observed { versions, parents: [("host".to_string(), parent("p1"))].into(), ..Observed::default() }
}

fn reasons(p: &Plan, act: Act) -> Vec<Reason> {
    p.actions.iter().filter(|a| a.act() == act).flat_map(|a| a.reasons().to_vec()).collect()
}

fn placed(account: &str, region: &str, ami: &str, how: How) -> Distribution {
    Distribution { target: Target::new(account, region), image_id: ami.into(), how, parameters: Vec::new() }
}

#[test]
fn a_new_image_line_is_built_because_it_was_never_built() {
    let p = plan(&[desired()], &policy(), &Observed::default(), t(0));
    assert_eq!(reasons(&p, Act::Build), vec![Reason::NeverBuilt]);
}

#[test]
fn a_fresh_image_plans_nothing_and_says_when_it_falls_due() {
    let p = plan(&[desired()], &policy(), &observed(vec![version(1, 0)]), t(10));
    assert!(p.is_empty());
    assert_eq!(p.notes, vec![Note { image: "host".into(), version: "v1".into(), due_in_days: 80 }]);
}

#[test]
fn an_image_at_max_age_is_rebuilt_with_its_age() {
    let p = plan(&[desired()], &policy(), &observed(vec![version(1, 0)]), t(91));
    assert_eq!(reasons(&p, Act::Build), vec![Reason::MaxAge { age_days: 91, max_days: 90 }]);
    let p = plan(&[desired()], &policy(), &observed(vec![version(1, 0)]), t(90));
    assert_eq!(reasons(&p, Act::Build), vec![Reason::MaxAge { age_days: 90, max_days: 90 }], "exactly 90 days is due");
}

#[test]
fn a_moved_parent_rebuilds_from_the_parent_it_names_unless_the_policy_says_not_to() {
    let mut o = observed(vec![version(1, 0)]);
    o.parents.insert("host".into(), parent("p2"));
    let p = plan(&[desired()], &policy(), &o, t(1));
    assert_eq!(
        reasons(&p, Act::Build),
        vec![Reason::ParentMoved { from: "p1".into(), to: "p2".into(), parent: "debootstrap:stable".into() }]
    );
    let Action::Build { parent: Some(chosen), .. } = &p.actions[0] else { panic!("{p:?}") };
    assert_eq!(chosen.id, "p2", "the build starts from the parent its reason names");
    let lax = PolicyView { rebuild_on_parent_update: false, ..policy() };
    assert!(plan(&[desired()], &lax, &o, t(1)).is_empty());
}

#[test]
fn ami_ids_in_reasons_are_shown_whole_and_hashes_shortened() {
    let moved = Reason::ParentMoved {
        from: "ami-0123456789abcdef0".into(),
        to: "ami-0fedcba9876543210".into(),
        parent: "ssm:/aws/service/x".into(),
    };
    assert_eq!(moved.to_string(), "parent ssm:/aws/service/x moved: ami-0123456789abcdef0 → ami-0fedcba9876543210");
    let recipe = Reason::RecipeChanged { from: "a".repeat(64), to: "b".repeat(64) };
    assert_eq!(recipe.to_string(), format!("recipe changed: {} → {}", "a".repeat(12), "b".repeat(12)));
}

#[test]
fn component_changes_are_named_and_explain_the_recipe_change() {
    let mut d = desired();
    d.components.insert("agent".into(), "1.1".into());
    d.components.insert("scanner".into(), "2.0".into());
    d.recipe_hash = "r2".into();
    let p = plan(&[d], &policy(), &observed(vec![version(1, 0)]), t(1));
    assert_eq!(
        reasons(&p, Act::Build),
        vec![
            Reason::ComponentChanged { component: "agent".into(), from: Some("1.0".into()), to: Some("1.1".into()) },
            Reason::ComponentChanged { component: "scanner".into(), from: None, to: Some("2.0".into()) },
        ]
    );
}

#[test]
fn a_recipe_change_alone_rebuilds() {
    let mut d = desired();
    d.recipe_hash = "r2".into();
    let p = plan(&[d], &policy(), &observed(vec![version(1, 0)]), t(1));
    assert_eq!(reasons(&p, Act::Build), vec![Reason::RecipeChanged { from: "r1".into(), to: "r2".into() }]);
}

#[test]
fn forced_builds_say_so() {
    let mut o = observed(vec![version(1, 0)]);
    o.forced.insert("host".into());
    assert_eq!(reasons(&plan(&[desired()], &policy(), &o, t(1)), Act::Build), vec![Reason::Forced]);
}

#[test]
fn interrupted_builds_are_recovered_first() {
    let mut v = version(2, 1);
    v.state = VersionState::Unfinished;
    v.stage = "building".into();
    let p = plan(&[desired()], &policy(), &observed(vec![version(1, 0), v]), t(2));
    assert_eq!(p.actions[0].act(), Act::Recover);
    assert_eq!(p.actions[0].reasons(), [Reason::Interrupted { build_id: "b2".into(), stage: "building".into() }]);
    assert!(matches!(p.actions[0], Action::Recover { follow: false, .. }));
}

#[test]
fn an_interrupted_build_that_goes_on_in_the_cloud_is_followed_and_not_built_again() {
    let mut v = version(2, 1);
    v.state = VersionState::Unfinished;
    v.stage = "building".into();
    v.execution = "arn:aws:imagebuilder:eu-west-1:111111111111:image/host/1.0.0/2".into();
    let mut d = desired();
    d.resumes = true;
    // Old enough to be rebuilt, but the followed build is the rebuild.
    let p = plan(&[d], &policy(), &observed(vec![version(1, 0), v]), t(200));
    assert!(matches!(p.actions[0], Action::Recover { follow: true, .. }), "{:?}", p.actions);
    assert_eq!(
        p.actions[0].reasons()[1],
        Reason::Following { execution: "arn:aws:imagebuilder:eu-west-1:111111111111:image/host/1.0.0/2".into() }
    );
    assert!(!p.actions.iter().any(|a| a.act() == Act::Build), "no second build: {:?}", p.actions);
}

#[test]
fn a_build_a_live_run_is_doing_is_running_not_interrupted_and_not_built_twice() {
    let mut v = version(2, 1);
    v.state = VersionState::Unfinished;
    v.stage = "building".into();
    v.running = Some("pid 4242".into());
    let mut o = observed(vec![version(1, 0), v]);
    o.forced.insert("host".into());
    let p = plan(&[desired()], &policy(), &o, t(2));
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(p.running.len(), 1);
    assert_eq!((p.running[0].version.as_str(), p.running[0].holder.as_str()), ("v2", "pid 4242"));
}

#[test]
fn old_versions_beyond_keep_are_retired_unless_in_use() {
    let versions: Vec<_> = (1..=5).map(|n| version(n, n as i64)).collect();
    let mut o = observed(versions);
    let retired = |p: &Plan| -> Vec<String> {
        p.actions.iter().filter(|a| a.act() == Act::Retire).map(|a| a.version().unwrap().to_string()).collect()
    };
    let p = plan(&[desired()], &policy(), &o, t(6));
    assert_eq!(retired(&p), vec!["v2", "v1"]);
    o.in_use.insert(("host".into(), "v1".into()));
    let p = plan(&[desired()], &policy(), &o, t(6));
    assert_eq!(retired(&p), vec!["v2"], "a version a consumer runs is never retired");
    assert_eq!(p.kept.iter().map(|k| k.version.as_str()).collect::<Vec<_>>(), ["v1"], "and the plan says why");
    assert!(p.kept[0].why.contains("hosts run it"), "{:?}", p.kept);

    // A refused retirement is tried again, and the plan carries what refused it.
    o.versions[1].cleanup_blocked = Some("launch-template lt-1 (version 3 ($Default))".into());
    let p = plan(&[desired()], &policy(), &o, t(6));
    let retire = p.actions.iter().find(|a| a.act() == Act::Retire).unwrap();
    assert!(retire.reasons_text().contains("the last retirement was refused: launch-template lt-1"), "{retire:?}");
}

#[test]
fn a_current_version_missing_targets_is_distributed_and_a_rebuild_supersedes_that() {
    let mut d = desired();
    d.targets = [Target::new("workflow", "eu-west-1"), Target::new("workflow", "eu-west-2")].into();
    let mut v = version(1, 0);
    v.source = Some(AmiRef::new("platform", "eu-west-1", "ami-1"));
    v.distributions = vec![placed("workflow", "eu-west-1", "ami-1", How::Shared)];
    let p = plan(std::slice::from_ref(&d), &policy(), &observed(vec![v.clone()]), t(5));
    assert_eq!(p.actions.len(), 1);
    let Action::Distribute { version, targets, source, reasons, .. } = &p.actions[0] else { panic!("{p:?}") };
    assert_eq!(version, "v1");
    assert_eq!(source.image_id, "ami-1");
    assert_eq!(targets, &[Target::new("workflow", "eu-west-2")]);
    assert_eq!(reasons, &[Reason::NotDistributed { missing: vec![Target::new("workflow", "eu-west-2")] }]);
    // Everything reached: nothing to do.
    v.distributions.push(placed("workflow", "eu-west-2", "ami-2", How::Shared));
    assert!(plan(std::slice::from_ref(&d), &policy(), &observed(vec![v.clone()]), t(5)).is_empty());
    // A line with pointers: an AMI in place without its pointer (an imported version) is
    // not reached there until they are written.
    let mut with_pointers = d.clone();
    with_pointers.pointers = true;
    v.distributions[0].parameters = vec!["/p/host/v1".into(), "/p/host/latest".into()];
    let p = plan(std::slice::from_ref(&with_pointers), &policy(), &observed(vec![v.clone()]), t(5));
    let Action::Distribute { targets, .. } = &p.actions[0] else { panic!("{p:?}") };
    assert_eq!(targets, &[Target::new("workflow", "eu-west-2")]);
    // Due for a rebuild: the new version gets distributed instead.
    v.distributions.clear();
    let p = plan(&[d], &policy(), &observed(vec![v]), t(95));
    assert_eq!(p.actions.iter().map(Action::act).collect::<Vec<_>>(), vec![Act::Build]);
    let Action::Build { targets, .. } = &p.actions[0] else { panic!() };
    assert_eq!(targets.len(), 2, "a build carries every target it is published to");
}

fn lag(consumer: &str, behind: usize, overdue: usize, method: RolloutMethod) -> ConsumerLag {
    ConsumerLag {
        consumer: consumer.into(),
        account: "workflow".into(),
        image: "host".into(),
        method,
        newest: "v2".into(),
        behind,
        total: 4,
        overdue,
        most_days_over: if overdue > 0 { 2 } else { 0 },
        released_days_ago: 16,
        behind_versions: vec!["v1".into()],
        groups: [("eu-west-1".to_string(), format!("{consumer}-hosts")), ("eu-west-2".into(), "far-hosts".into())]
            .into(),
        loose: Vec::new(),
    }
}

#[test]
fn lagging_consumers_get_a_rollout_and_an_escalation_once_overdue() {
    let notify = RolloutMethod::Notify { sns_topic: None };
    let mut o = observed(vec![version(1, 0), version(2, 2)]);
    o.lagging = vec![
        lag("goobi", 3, 3, notify.clone()),
        lag("digirati", 1, 0, notify.clone()),
        lag("archivematica", 0, 0, notify),
    ];
    let p = plan(&[desired()], &policy(), &o, t(4));
    let rollouts: Vec<&Action> = p.actions.iter().filter(|a| a.act() == Act::Rollout).collect();
    assert_eq!(rollouts.len(), 2, "nothing for a consumer that is current");
    assert_eq!(rollouts[0].subject(), "consumer:digirati");
    assert_eq!(rollouts[0].reasons().len(), 1);
    assert_eq!(rollouts[1].version(), Some("v2"));
    assert_eq!(rollouts[1].reasons()[0].to_string(), "goobi: 3 of 4 instances on v1, successor released 16 day(s) ago");
    assert_eq!(rollouts[1].reasons()[1], Reason::DeadlinePassed { consumer: "goobi".into(), overdue: 3, days_over: 2 });
}

#[test]
fn a_rollout_names_each_group_with_the_ami_its_account_launches_there() {
    let mut v2 = version(2, 2);
    v2.distributions = vec![
        placed("platform", "eu-west-1", "ami-p", How::Owner),
        placed("workflow", "eu-west-1", "ami-w1", How::Copy),
    ];
    let mut o = observed(vec![version(1, 0), v2]);
    let mut l = lag(
        "goobi",
        3,
        0,
        RolloutMethod::RollingReplace {
            batch: 1,
            protected: provider::Protected::Skip,
            drain_timeout_seconds: provider::DEFAULT_DRAIN_SECONDS,
        },
    );
    l.loose = vec!["i-loose".into()];
    o.lagging = vec![l];
    let p = plan(&[desired()], &policy(), &o, t(4));
    let Some(Action::Rollout { groups, unpublished, reasons, .. }) = p.actions.iter().find(|a| a.act() == Act::Rollout)
    else {
        panic!("{p:?}")
    };
    assert_eq!(
        groups,
        &[RolloutGroup {
            target: Target::new("workflow", "eu-west-1"),
            asg: "goobi-hosts".into(),
            image_id: "ami-w1".into()
        }]
    );
    assert_eq!(unpublished, &[Target::new("workflow", "eu-west-2")], "no AMI there to move to");
    assert!(matches!(&reasons[1], Reason::Ungrouped { instances, .. } if instances == &["i-loose".to_string()]));
    // Only hosts outside any group: nothing to move, no action that could only fail.
    let mut l = lag("goobi", 1, 0, RolloutMethod::LaunchTemplate);
    l.groups.clear();
    l.loose = vec!["i-bastion".into()];
    o.lagging = vec![l];
    let p = plan(&[desired()], &policy(), &o, t(4));
    assert!(!p.actions.iter().any(|a| a.act() == Act::Rollout), "{p:?}");
    assert_eq!(p.unmovable[0].instances, ["i-bastion"]);
}

#[test]
fn a_superseded_version_is_deprecated_once_at_its_successors_release_plus_the_sla() {
    let mut v1 = version(1, 0);
    v1.distributions = vec![
        placed("platform", "eu-west-1", "ami-1", How::Owner),
        placed("workflow", "eu-west-1", "ami-1", How::Shared),
        placed("digirati", "eu-west-1", "ami-1d", How::Copy),
    ];
    let mut v2 = version(2, 10);
    v2.released_at = Some(t(11));
    let mut o = observed(vec![v1.clone(), v2.clone(), version(3, 20)]);
    let p = plan(&[desired()], &policy(), &o, t(21));
    let due: Vec<&Action> = p.actions.iter().filter(|a| a.act() == Act::Deprecate).collect();
    assert_eq!(due.len(), 1, "v2 has no owned AMIs; v3 has no successor: {p:?}");
    let Action::Deprecate { version, at, amis, .. } = due[0] else { panic!() };
    assert_eq!(version, "v1");
    assert_eq!(*at, t(25), "v2's release (day 11) + 14 days, whatever day it is now");
    assert_eq!(
        amis,
        &[AmiRef::new("digirati", "eu-west-1", "ami-1d"), AmiRef::new("platform", "eu-west-1", "ami-1")],
        "owned copies only: a shared AMI is the owner's"
    );
    // Later plans give the same time: it belongs to the version.
    let later: Vec<Action> =
        plan(&[desired()], &policy(), &o, t(40)).actions.into_iter().filter(|a| a.act() == Act::Deprecate).collect();
    assert_eq!(deprecations("host", &policy(), &o), later);
    // Set once: nothing more to do.
    for ami in [AmiRef::new("digirati", "eu-west-1", "ami-1d"), AmiRef::new("platform", "eu-west-1", "ami-1")] {
        v1.deprecations.insert(ami, DeprecationRecord { at: t(25), error: None });
    }
    o.versions[0] = v1.clone();
    assert!(!plan(&[desired()], &policy(), &o, t(21)).actions.iter().any(|a| a.act() == Act::Deprecate));
    // A refused attempt is retried, saying why it failed last time.
    v1.deprecations.insert(
        AmiRef::new("platform", "eu-west-1", "ami-1"),
        DeprecationRecord { at: t(25), error: Some("AccessDenied".into()) },
    );
    o.versions[0] = v1;
    let p = plan(&[desired()], &policy(), &o, t(21));
    let Some(Action::Deprecate { amis, reasons, .. }) = p.actions.iter().find(|a| a.act() == Act::Deprecate) else {
        panic!("{p:?}")
    };
    assert_eq!(amis, &[AmiRef::new("platform", "eu-west-1", "ami-1")]);
    assert!(matches!(&reasons[1], Reason::DeprecationFailed { error } if error.contains("AccessDenied")));
}

#[test]
fn a_new_critical_fix_for_an_installed_package_rebuilds_and_old_or_absent_ones_do_not() {
    let fix = |id: &str, day: i64| MissingFix {
        advisory: id.into(),
        severity: "critical".into(),
        package: "openssl-libs.x86_64".into(),
        installed: "1:1.0.2k-24".into(),
        fixed: "1:1.0.2k-26".into(),
        published: t(day),
    };
    let mut o = observed(vec![version(1, 10)]);
    // Published after the build (day 10): a reason naming the advisory and package.
    o.advisories.insert("host".into(), AdvisoryCheck::Findings(vec![fix("ALAS2-2026-001", 12)]));
    let p = plan(&[desired()], &policy(), &o, t(13));
    assert_eq!(p.actions.len(), 1);
    assert_eq!(
        p.actions[0].reasons(),
        [Reason::Advisories {
            severity: "important".into(),
            advisories: vec!["ALAS2-2026-001".into()],
            packages: vec!["openssl-libs.x86_64 1:1.0.2k-24 → 1:1.0.2k-26".into()],
        }]
    );
    // Published before the build: the build could not pick it up; no rebuild loop.
    o.advisories.insert("host".into(), AdvisoryCheck::Findings(vec![fix("ALAS2-2026-000", 5)]));
    assert!(plan(&[desired()], &policy(), &o, t(13)).is_empty());
    // An advisory for a package the image lacks produces no finding, so nothing.
    o.advisories.insert("host".into(), AdvisoryCheck::Findings(vec![]));
    assert!(plan(&[desired()], &policy(), &o, t(13)).is_empty());
    // A stale feed says so instead of pretending there is nothing.
    o.advisories.insert("host".into(), AdvisoryCheck::Stale { reason: "truncated gzip".into(), findings: vec![] });
    let p = plan(&[desired()], &policy(), &o, t(13));
    assert!(p.actions.is_empty());
    assert_eq!(p.stale, vec![StaleCheck { image: "host".into(), reason: "truncated gzip".into() }]);
}

fn arb_versions() -> impl Strategy<Value = Vec<ObservedVersion>> {
    prop::collection::vec((0u32..40, 0i64..400, 0u8..4, prop::bool::ANY), 0..12).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (n, day, state, same_recipe))| {
                let mut v = version(n * 100 + i as u32, day);
                v.state = match state {
                    0 => VersionState::Available,
                    1 => VersionState::Failed,
                    2 => VersionState::Retired,
                    _ => VersionState::Available,
                };
                if !same_recipe {
                    v.recipe_hash = "old".into();
                }
                v
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn the_newest_available_version_is_never_retired(versions in arb_versions(), keep in 1usize..5, now in 0i64..500) {
        let policy = PolicyView { keep_versions: keep, ..policy() };
        let o = observed(versions.clone());
        let p = plan(&[desired()], &policy, &o, t(now));
        let newest = versions.iter().filter(|v| v.state == VersionState::Available).max_by(|a, b| a.built_at.cmp(&b.built_at).then_with(|| a.version.cmp(&b.version)));
        if let Some(newest) = newest {
            prop_assert!(!p.actions.iter().any(|a| a.act() == Act::Retire && a.version() == Some(newest.version.as_str())));
        }
        let retired = p.actions.iter().filter(|a| a.act() == Act::Retire).count();
        let available = versions.iter().filter(|v| v.state == VersionState::Available).count();
        prop_assert_eq!(retired, available.saturating_sub(keep));
    }

    #[test]
    fn planning_is_deterministic(versions in arb_versions(), now in 0i64..500) {
        let mut shuffled = versions.clone();
        shuffled.reverse();
        let a = plan(&[desired()], &policy(), &observed(versions), t(now));
        let b = plan(&[desired()], &policy(), &observed(shuffled), t(now));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn an_image_built_from_the_current_recipe_within_max_age_plans_nothing(built in 0i64..400, elapsed in 0i64..90) {
        let p = plan(&[desired()], &policy(), &observed(vec![version(1, built)]), t(built + elapsed));
        prop_assert!(p.is_empty(), "{:?}", p);
    }
}
