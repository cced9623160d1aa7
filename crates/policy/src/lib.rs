//! # policy — decide what to do, and say why
//!
//! `plan(desired, observed, now) -> Plan` is a pure function: no I/O, no clock. Everything
//! it needs arrives as plain data, so it is table-tested, property-tested, and what it
//! decides can be replayed from the audit log. Every action carries machine-readable
//! [`Reason`]s ("age 93d ≥ max 90d", "parent moved", "component scan-agent 1.2.0 → 1.3.0").
//!
//! Rules, in order:
//! 1. a build left `pending`/`building`/`testing` by a run that died is **recovered**
//!    (cleaned up and marked failed) before anything else;
//! 2. an image line with no available version is **built** ("never built");
//! 3. otherwise it is rebuilt when its newest available version is at least `max_age` old,
//!    its parent moved (when `rebuild_on_parent_update`), a component's version or the
//!    recipe changed, or a rebuild is forced — all applicable reasons are listed;
//!    when none applies the plan notes when it falls due;
//! 4. when no rebuild is due, the newest available version is **distributed** to every
//!    configured `account/region` target it has not reached (a new consumer account, a
//!    region that failed last time);
//! 5. a consumer with hosts behind the newest version of its line gets a **rollout**
//!    (its method is the consumer's), with how far behind it is and, once the rollout SLA
//!    has passed, an escalation reason;
//! 6. available versions beyond `keep_versions` are **retired**, never the newest and
//!    never one a consumer is recorded as using.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

const DAY: i64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub max_age_seconds: i64,
    pub rebuild_on_parent_update: bool,
    pub keep_versions: usize,
    /// The threshold the advisory findings were filtered with (for the reason's text).
    pub rebuild_on_severity: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredImage {
    pub name: String,
    pub recipe_hash: String,
    /// Component name → version, as configured.
    pub components: BTreeMap<String, String>,
    /// Where its versions must be published: `account/region`.
    pub targets: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Unfinished,
    Available,
    Failed,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVersion {
    pub image: String,
    pub version: String,
    pub build_id: String,
    pub state: VersionState,
    /// A short name of an unfinished build's stage, for the reason.
    pub stage: String,
    pub built_at: Timestamp,
    pub recipe_hash: String,
    pub parent_id: String,
    pub components: BTreeMap<String, String>,
    /// `account/region` targets this version is verified published to.
    pub distributed: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentObservation {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub versions: Vec<ObservedVersion>,
    /// The current parent of each image line, where known.
    pub parents: BTreeMap<String, ParentObservation>,
    pub forced: BTreeSet<String>,
    /// `(image, version)` pairs some consumer runs.
    pub in_use: BTreeSet<(String, String)>,
    /// Consumers with hosts behind, from the latest fleet scan.
    pub lagging: Vec<ConsumerLag>,
    /// Per image line: the newest version's missing fixes at or above the threshold, or
    /// why they could not be checked.
    pub advisories: BTreeMap<String, AdvisoryCheck>,
}

/// The advisory check of an image line's newest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisoryCheck {
    /// Fixes at or above the threshold the version lacks, each with when it was published.
    Findings(Vec<MissingFix>),
    /// The feed could not be read; `findings` are from the last good copy, if any.
    Stale { reason: String, findings: Vec<MissingFix> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingFix {
    pub advisory: String,
    pub severity: String,
    pub package: String,
    pub installed: String,
    pub fixed: String,
    pub published: Timestamp,
}

/// A consumer whose hosts run older versions than the newest of their line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    pub consumer: String,
    pub image: String,
    pub newest: String,
    pub behind: usize,
    pub total: usize,
    pub overdue: usize,
    pub most_days_over: i64,
    /// Days since the oldest release a host missed.
    pub released_days_ago: i64,
    pub behind_versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Interrupted {
        build_id: String,
        stage: String,
    },
    NeverBuilt,
    MaxAge {
        age_days: i64,
        max_days: i64,
    },
    ParentMoved {
        from: String,
        to: String,
        parent: String,
    },
    ComponentChanged {
        component: String,
        from: Option<String>,
        to: Option<String>,
    },
    RecipeChanged {
        from: String,
        to: String,
    },
    Forced,
    BeyondKeep {
        keep: usize,
        newer: usize,
    },
    NotDistributed {
        missing: Vec<String>,
    },
    ConsumerBehind {
        consumer: String,
        behind: usize,
        total: usize,
        versions: Vec<String>,
        released_days_ago: i64,
    },
    DeadlinePassed {
        consumer: String,
        overdue: usize,
        days_over: i64,
    },
    /// Fixes at or above the threshold published after the newest version was built.
    Advisories {
        severity: String,
        advisories: Vec<String>,
        packages: Vec<String>,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Interrupted { build_id, stage } => write!(f, "build {build_id} was interrupted while {stage}"),
            Reason::NeverBuilt => write!(f, "never built"),
            Reason::MaxAge { age_days, max_days } => write!(f, "age {age_days}d ≥ max {max_days}d"),
            Reason::ParentMoved { from, to, parent } => {
                write!(f, "parent {parent} moved: {} → {}", short(from), short(to))
            }
            Reason::ComponentChanged { component, from, to } => match (from, to) {
                (Some(a), Some(b)) => write!(f, "component {component} {a} → {b}"),
                (None, Some(b)) => write!(f, "component {component} {b} added"),
                (Some(a), None) => write!(f, "component {component} {a} removed"),
                (None, None) => write!(f, "component {component} changed"),
            },
            Reason::RecipeChanged { from, to } => write!(f, "recipe changed: {} → {}", short(from), short(to)),
            Reason::Forced => write!(f, "forced"),
            Reason::BeyondKeep { keep, newer } => write!(f, "{newer} newer versions exist; keep {keep}"),
            Reason::NotDistributed { missing } => write!(f, "not yet published to {}", missing.join(", ")),
            Reason::ConsumerBehind { consumer, behind, total, versions, released_days_ago } => write!(
                f,
                "{consumer}: {behind} of {total} instances on {}, successor released {released_days_ago} day(s) ago",
                versions.join(", ")
            ),
            Reason::Advisories { severity, advisories, packages } => {
                let more =
                    if advisories.len() > 3 { format!(" (+{} more)", advisories.len() - 3) } else { String::new() };
                write!(
                    f,
                    "{} {severity}+ advisor{} fixed since built: {}{more} ({})",
                    advisories.len(),
                    if advisories.len() == 1 { "y" } else { "ies" },
                    advisories.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    packages.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            }
            Reason::DeadlinePassed { consumer, overdue, days_over } => {
                write!(f, "{consumer}: deadline passed {days_over} day(s) ago for {overdue} instance(s) — escalate")
            }
        }
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Recover,
    Build,
    Distribute,
    Rollout,
    Retire,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub kind: ActionKind,
    pub image: String,
    /// The version acted on (recover, retire); builds get theirs when they start.
    pub version: Option<String>,
    pub build_id: Option<String>,
    /// The consumer a rollout is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub image: String,
    pub version: String,
    pub due_in_days: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Images with nothing to do, and when they fall due.
    pub notes: Vec<Note>,
    /// Image lines whose advisory check is stale: "no findings" would be a guess.
    pub stale: Vec<StaleCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleCheck {
    pub image: String,
    pub reason: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

pub fn plan(desired: &[DesiredImage], policy: &PolicyView, observed: &Observed, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let mut images: Vec<&DesiredImage> = desired.iter().collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));

    let mut unfinished: Vec<&ObservedVersion> =
        observed.versions.iter().filter(|v| v.state == VersionState::Unfinished).collect();
    unfinished.sort_by(|a, b| (&a.image, &a.version).cmp(&(&b.image, &b.version)));
    for v in unfinished {
        plan.actions.push(Action {
            kind: ActionKind::Recover,
            image: v.image.clone(),
            version: Some(v.version.clone()),
            build_id: Some(v.build_id.clone()),
            consumer: None,
            reasons: vec![Reason::Interrupted { build_id: v.build_id.clone(), stage: v.stage.clone() }],
        });
    }

    for image in images {
        let mut available: Vec<&ObservedVersion> =
            observed.versions.iter().filter(|v| v.image == image.name && v.state == VersionState::Available).collect();
        // Newest first; ties broken by version name so the order is total.
        available.sort_by(|a, b| b.built_at.cmp(&a.built_at).then_with(|| b.version.cmp(&a.version)));
        let Some(newest) = available.first() else {
            plan.actions.push(build(image, vec![Reason::NeverBuilt]));
            continue;
        };
        let mut reasons = Vec::new();
        let age = now.as_second() - newest.built_at.as_second();
        if age >= policy.max_age_seconds {
            reasons.push(Reason::MaxAge { age_days: age / DAY, max_days: policy.max_age_seconds / DAY });
        }
        if policy.rebuild_on_parent_update
            && let Some(parent) = observed.parents.get(&image.name)
            && !parent.id.is_empty()
            && parent.id != newest.parent_id
        {
            reasons.push(Reason::ParentMoved {
                from: newest.parent_id.clone(),
                to: parent.id.clone(),
                parent: parent.name.clone(),
            });
        }
        let names: BTreeSet<&String> = image.components.keys().chain(newest.components.keys()).collect();
        let mut component_changed = false;
        for name in names {
            let (from, to) = (newest.components.get(name), image.components.get(name));
            if from != to {
                component_changed = true;
                reasons.push(Reason::ComponentChanged {
                    component: name.clone(),
                    from: from.cloned(),
                    to: to.cloned(),
                });
            }
        }
        if !component_changed && newest.recipe_hash != image.recipe_hash {
            reasons.push(Reason::RecipeChanged { from: newest.recipe_hash.clone(), to: image.recipe_hash.clone() });
        }
        if observed.forced.contains(&image.name) {
            reasons.push(Reason::Forced);
        }
        let fixes = match observed.advisories.get(&image.name) {
            Some(AdvisoryCheck::Findings(f)) => f.as_slice(),
            Some(AdvisoryCheck::Stale { reason, findings }) => {
                plan.stale.push(StaleCheck { image: image.name.clone(), reason: reason.clone() });
                findings.as_slice()
            }
            None => &[],
        };
        // Only fixes published after the build: an older one the build did not pick up
        // would rebuild forever; `amictl advisories` still reports it.
        let fresh: Vec<&MissingFix> = fixes.iter().filter(|f| f.published > newest.built_at).collect();
        if !fresh.is_empty() {
            let mut advisories: Vec<String> = fresh.iter().map(|f| f.advisory.clone()).collect();
            advisories.dedup();
            let mut packages: Vec<String> =
                fresh.iter().map(|f| format!("{} {} → {}", f.package, f.installed, f.fixed)).collect();
            packages.sort();
            packages.dedup();
            reasons.push(Reason::Advisories { severity: policy.rebuild_on_severity.clone(), advisories, packages });
        }
        if reasons.is_empty() {
            let due = (policy.max_age_seconds - age + DAY - 1).div_euclid(DAY);
            plan.notes.push(Note { image: image.name.clone(), version: newest.version.clone(), due_in_days: due });
            let missing: Vec<String> = image.targets.difference(&newest.distributed).cloned().collect();
            if !missing.is_empty() {
                plan.actions.push(Action {
                    kind: ActionKind::Distribute,
                    image: image.name.clone(),
                    version: Some(newest.version.clone()),
                    build_id: Some(newest.build_id.clone()),
                    consumer: None,
                    reasons: vec![Reason::NotDistributed { missing }],
                });
            }
        } else {
            plan.actions.push(build(image, reasons));
        }
        for (i, old) in available.iter().enumerate().skip(policy.keep_versions.max(1)) {
            if observed.in_use.contains(&(old.image.clone(), old.version.clone())) {
                continue;
            }
            plan.actions.push(Action {
                kind: ActionKind::Retire,
                image: image.name.clone(),
                version: Some(old.version.clone()),
                build_id: Some(old.build_id.clone()),
                consumer: None,
                reasons: vec![Reason::BeyondKeep { keep: policy.keep_versions, newer: i }],
            });
        }
    }
    let mut lagging: Vec<&ConsumerLag> = observed.lagging.iter().filter(|l| l.behind > 0).collect();
    lagging.sort_by(|a, b| a.consumer.cmp(&b.consumer));
    for l in lagging {
        let newest = observed
            .versions
            .iter()
            .find(|v| v.image == l.image && v.version == l.newest && v.state == VersionState::Available);
        let Some(newest) = newest else { continue };
        let mut reasons = vec![Reason::ConsumerBehind {
            consumer: l.consumer.clone(),
            behind: l.behind,
            total: l.total,
            versions: l.behind_versions.clone(),
            released_days_ago: l.released_days_ago,
        }];
        if l.overdue > 0 {
            reasons.push(Reason::DeadlinePassed {
                consumer: l.consumer.clone(),
                overdue: l.overdue,
                days_over: l.most_days_over,
            });
        }
        plan.actions.push(Action {
            kind: ActionKind::Rollout,
            image: l.image.clone(),
            version: Some(newest.version.clone()),
            build_id: Some(newest.build_id.clone()),
            consumer: Some(l.consumer.clone()),
            reasons,
        });
    }
    plan
}

fn build(image: &DesiredImage, reasons: Vec<Reason>) -> Action {
    Action {
        kind: ActionKind::Build,
        image: image.name.clone(),
        version: None,
        build_id: None,
        consumer: None,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(day: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + day * DAY).unwrap()
    }

    fn policy() -> PolicyView {
        PolicyView {
            max_age_seconds: 90 * DAY,
            rebuild_on_parent_update: true,
            keep_versions: 3,
            rebuild_on_severity: "important".into(),
        }
    }

    fn desired() -> DesiredImage {
        DesiredImage {
            name: "host".into(),
            recipe_hash: "r1".into(),
            components: [("agent".to_string(), "1.0".to_string())].into(),
            targets: BTreeSet::new(),
        }
    }

    fn version(n: u32, day: i64) -> ObservedVersion {
        ObservedVersion {
            image: "host".into(),
            version: format!("v{n}"),
            build_id: format!("b{n}"),
            state: VersionState::Available,
            stage: String::new(),
            built_at: t(day),
            recipe_hash: "r1".into(),
            parent_id: "p1".into(),
            components: [("agent".to_string(), "1.0".to_string())].into(),
            distributed: BTreeSet::new(),
        }
    }

    fn observed(versions: Vec<ObservedVersion>) -> Observed {
        Observed {
            versions,
            parents: [("host".to_string(), ParentObservation { id: "p1".into(), name: "debootstrap:stable".into() })]
                .into(),
            ..Observed::default()
        }
    }

    fn reasons(p: &Plan, kind: ActionKind) -> Vec<Reason> {
        p.actions.iter().filter(|a| a.kind == kind).flat_map(|a| a.reasons.clone()).collect()
    }

    #[test]
    fn a_new_image_line_is_built_because_it_was_never_built() {
        let p = plan(&[desired()], &policy(), &Observed::default(), t(0));
        assert_eq!(reasons(&p, ActionKind::Build), vec![Reason::NeverBuilt]);
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
        assert_eq!(reasons(&p, ActionKind::Build), vec![Reason::MaxAge { age_days: 91, max_days: 90 }]);
        let p = plan(&[desired()], &policy(), &observed(vec![version(1, 0)]), t(90));
        assert_eq!(
            reasons(&p, ActionKind::Build),
            vec![Reason::MaxAge { age_days: 90, max_days: 90 }],
            "exactly 90 days is due"
        );
    }

    #[test]
    fn a_moved_parent_rebuilds_unless_the_policy_says_not_to() {
        let mut o = observed(vec![version(1, 0)]);
        o.parents.insert("host".into(), ParentObservation { id: "p2".into(), name: "debootstrap:stable".into() });
        let p = plan(&[desired()], &policy(), &o, t(1));
        assert_eq!(
            reasons(&p, ActionKind::Build),
            vec![Reason::ParentMoved { from: "p1".into(), to: "p2".into(), parent: "debootstrap:stable".into() }]
        );
        let lax = PolicyView { rebuild_on_parent_update: false, ..policy() };
        assert!(plan(&[desired()], &lax, &o, t(1)).is_empty());
    }

    #[test]
    fn component_changes_are_named_and_explain_the_recipe_change() {
        let mut d = desired();
        d.components.insert("agent".into(), "1.1".into());
        d.components.insert("scanner".into(), "2.0".into());
        d.recipe_hash = "r2".into();
        let p = plan(&[d], &policy(), &observed(vec![version(1, 0)]), t(1));
        assert_eq!(
            reasons(&p, ActionKind::Build),
            vec![
                Reason::ComponentChanged {
                    component: "agent".into(),
                    from: Some("1.0".into()),
                    to: Some("1.1".into())
                },
                Reason::ComponentChanged { component: "scanner".into(), from: None, to: Some("2.0".into()) },
            ]
        );
    }

    #[test]
    fn a_recipe_change_alone_rebuilds() {
        let mut d = desired();
        d.recipe_hash = "r2".into();
        let p = plan(&[d], &policy(), &observed(vec![version(1, 0)]), t(1));
        assert_eq!(reasons(&p, ActionKind::Build), vec![Reason::RecipeChanged { from: "r1".into(), to: "r2".into() }]);
    }

    #[test]
    fn forced_builds_say_so() {
        let mut o = observed(vec![version(1, 0)]);
        o.forced.insert("host".into());
        assert_eq!(reasons(&plan(&[desired()], &policy(), &o, t(1)), ActionKind::Build), vec![Reason::Forced]);
    }

    #[test]
    fn interrupted_builds_are_recovered_first() {
        let mut v = version(2, 1);
        v.state = VersionState::Unfinished;
        v.stage = "building".into();
        let p = plan(&[desired()], &policy(), &observed(vec![version(1, 0), v]), t(2));
        assert_eq!(p.actions[0].kind, ActionKind::Recover);
        assert_eq!(p.actions[0].reasons, vec![Reason::Interrupted { build_id: "b2".into(), stage: "building".into() }]);
    }

    #[test]
    fn old_versions_beyond_keep_are_retired_unless_in_use() {
        let versions: Vec<_> = (1..=5).map(|n| version(n, n as i64)).collect();
        let mut o = observed(versions);
        let p = plan(&[desired()], &policy(), &o, t(6));
        let retired: Vec<_> =
            p.actions.iter().filter(|a| a.kind == ActionKind::Retire).map(|a| a.version.clone().unwrap()).collect();
        assert_eq!(retired, vec!["v2", "v1"]);
        o.in_use.insert(("host".into(), "v1".into()));
        let p = plan(&[desired()], &policy(), &o, t(6));
        let retired: Vec<_> =
            p.actions.iter().filter(|a| a.kind == ActionKind::Retire).map(|a| a.version.clone().unwrap()).collect();
        assert_eq!(retired, vec!["v2"], "a version a consumer runs is never retired");
    }

    #[test]
    fn a_current_version_missing_targets_is_distributed_and_a_rebuild_supersedes_that() {
        let mut d = desired();
        d.targets = ["workflow/eu-west-1".to_string(), "workflow/eu-west-2".to_string()].into();
        let mut v = version(1, 0);
        v.distributed = ["workflow/eu-west-1".to_string()].into();
        let p = plan(std::slice::from_ref(&d), &policy(), &observed(vec![v.clone()]), t(5));
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].kind, ActionKind::Distribute);
        assert_eq!(p.actions[0].version.as_deref(), Some("v1"));
        assert_eq!(p.actions[0].reasons, vec![Reason::NotDistributed { missing: vec!["workflow/eu-west-2".into()] }]);
        // Everything reached: nothing to do.
        v.distributed = d.targets.clone();
        assert!(plan(std::slice::from_ref(&d), &policy(), &observed(vec![v.clone()]), t(5)).is_empty());
        // Due for a rebuild: the new version gets distributed instead.
        v.distributed.clear();
        let p = plan(&[d], &policy(), &observed(vec![v]), t(95));
        assert_eq!(p.actions.iter().map(|a| a.kind).collect::<Vec<_>>(), vec![ActionKind::Build]);
    }

    #[test]
    fn lagging_consumers_get_a_rollout_and_an_escalation_once_overdue() {
        let lag = |consumer: &str, behind: usize, overdue: usize| ConsumerLag {
            consumer: consumer.into(),
            image: "host".into(),
            newest: "v2".into(),
            behind,
            total: 4,
            overdue,
            most_days_over: if overdue > 0 { 2 } else { 0 },
            released_days_ago: 16,
            behind_versions: vec!["v1".into()],
        };
        let mut o = observed(vec![version(1, 0), version(2, 2)]);
        o.lagging = vec![lag("goobi", 3, 3), lag("digirati", 1, 0), lag("archivematica", 0, 0)];
        let p = plan(&[desired()], &policy(), &o, t(4));
        let rollouts: Vec<&Action> = p.actions.iter().filter(|a| a.kind == ActionKind::Rollout).collect();
        assert_eq!(rollouts.len(), 2, "nothing for a consumer that is current");
        assert_eq!(rollouts[0].consumer.as_deref(), Some("digirati"));
        assert_eq!(rollouts[0].reasons.len(), 1);
        assert_eq!(rollouts[1].version.as_deref(), Some("v2"));
        assert_eq!(
            rollouts[1].reasons[0].to_string(),
            "goobi: 3 of 4 instances on v1, successor released 16 day(s) ago"
        );
        assert_eq!(
            rollouts[1].reasons[1],
            Reason::DeadlinePassed { consumer: "goobi".into(), overdue: 3, days_over: 2 }
        );
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
            p.actions[0].reasons,
            vec![Reason::Advisories {
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
                prop_assert!(!p.actions.iter().any(|a| a.kind == ActionKind::Retire && a.version.as_deref() == Some(newest.version.as_str())));
            }
            let retired = p.actions.iter().filter(|a| a.kind == ActionKind::Retire).count();
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
}
