//! # policy — decide what to do, and say why
//!
//! `plan(desired, policy, observed, now) -> Plan` is a pure function: no I/O, no clock.
//! Everything it needs arrives as plain data ([`observed`]), so it is table-tested,
//! property-tested, and what it decides can be replayed from the audit log. Every
//! [`Action`] carries what acting needs (the parent to build from, the targets, the groups
//! to roll, the AMIs to deprecate) and machine-readable [`Reason`]s ("age 93d ≥ max 90d",
//! "parent moved", "component scan-agent 1.2.0 → 1.3.0").
//!
//! Rules, in order:
//! 1. a build left `pending`/`building`/`testing` by a run that died is **recovered**
//!    (cleaned up and marked failed) before anything else; one a live run is doing right
//!    now (it holds the state lock) is reported as **running**, and its line gets no
//!    second build;
//! 2. an image line with no available version is **built** ("never built");
//! 3. otherwise it is rebuilt when its newest available version is at least `max_age` old,
//!    its parent moved (when `rebuild_on_parent_update`), a component's version or the
//!    recipe changed, a fix at or above the threshold was published after it was built,
//!    or a rebuild is forced — all applicable reasons are listed; when none applies the
//!    plan notes when it falls due;
//! 4. when no rebuild is due, the newest available version is **distributed** to every
//!    configured target it has not reached (a new consumer account, a region that failed);
//! 5. a version superseded by a released successor is **deprecated** at the successor's
//!    release plus the rollout SLA — a time that belongs to the version, set once per AMI
//!    and retried until it is set ([`deprecations`]);
//! 6. available versions beyond `keep_versions` are **retired**, never the newest and
//!    never one a consumer is recorded as using;
//! 7. a consumer with hosts behind the newest version of its line gets a **rollout** by
//!    its method, naming the groups to move (from the scan), how far behind it is and,
//!    once the rollout SLA has passed, an escalation reason.
#![deny(missing_docs)]

mod action;
pub mod eol;
pub mod observed;

use std::collections::BTreeSet;

use jiff::Timestamp;
use provider::{RolloutGroup, Target};

pub use action::{Action, Kept, Note, Plan, Reason, Running, StaleCheck, Unmovable};
pub use observed::{
    AdvisoryCheck, ConsumerLag, DeprecationRecord, DesiredImage, MissingFix, Observed, ObservedVersion, PolicyView,
    VersionState,
};

const DAY: i64 = 86_400;

/// Newest first: by build time, then by version name so the order is total.
fn newest_first(a: &ObservedVersion, b: &ObservedVersion) -> std::cmp::Ordering {
    b.built_at.cmp(&a.built_at).then_with(|| b.version.cmp(&a.version))
}

/// The plan for `desired` lines given what was `observed`, as of `now`.
pub fn plan(desired: &[DesiredImage], policy: &PolicyView, observed: &Observed, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let mut images: Vec<&DesiredImage> = desired.iter().collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));

    let mut unfinished: Vec<&ObservedVersion> =
        observed.versions.iter().filter(|v| v.state == VersionState::Unfinished).collect();
    unfinished.sort_by(|a, b| (&a.image, &a.version).cmp(&(&b.image, &b.version)));
    let mut busy = BTreeSet::new();
    let resumes: BTreeSet<&str> = desired.iter().filter(|d| d.resumes).map(|d| d.name.as_str()).collect();
    for v in unfinished {
        match &v.running {
            Some(holder) => {
                busy.insert(v.image.clone());
                plan.running.push(Running {
                    image: v.image.clone(),
                    version: v.version.clone(),
                    build_id: v.build_id.clone(),
                    stage: v.stage.clone(),
                    holder: holder.clone(),
                });
            }
            None => {
                let follow = resumes.contains(v.image.as_str());
                let mut reasons = vec![Reason::Interrupted { build_id: v.build_id.clone(), stage: v.stage.clone() }];
                if follow {
                    // Its line gets no second build: the followed one makes the version.
                    busy.insert(v.image.clone());
                    reasons.push(Reason::Following { execution: v.execution.clone() });
                }
                plan.actions.push(Action::Recover {
                    image: v.image.clone(),
                    version: v.version.clone(),
                    build_id: v.build_id.clone(),
                    follow,
                    reasons,
                });
            }
        }
    }

    for image in images {
        let mut available: Vec<&ObservedVersion> =
            observed.versions.iter().filter(|v| v.image == image.name && v.state == VersionState::Available).collect();
        available.sort_by(|a, b| newest_first(a, b));
        if !busy.contains(&image.name) {
            build_or_distribute(&mut plan, image, policy, observed, &available, now);
        }
        if let Some(p) = observed.parents.get(&image.name)
            && let Some(e) = eol::check(&image.name, &p.name, now).or_else(|| eol::check(&image.name, &p.id, now))
        {
            plan.end_of_support.push(e);
        }
        plan.actions.extend(deprecations(&image.name, policy, observed));
        for (i, old) in available.iter().enumerate().skip(policy.keep_versions.max(1)) {
            if observed.in_use.contains(&(old.image.clone(), old.version.clone())) {
                plan.kept.push(Kept {
                    image: image.name.clone(),
                    version: old.version.clone(),
                    why: "consumers' hosts run it (last fleet scan)".into(),
                });
                continue;
            }
            let mut reasons = vec![Reason::BeyondKeep { keep: policy.keep_versions, newer: i }];
            reasons.extend(old.cleanup_blocked.clone().map(|why| Reason::CleanupBlocked { why }));
            plan.actions.push(Action::Retire {
                image: image.name.clone(),
                version: old.version.clone(),
                build_id: old.build_id.clone(),
                reasons,
            });
        }
    }
    let (rollouts, unmovable) = rollouts(observed);
    plan.actions.extend(rollouts);
    plan.unmovable = unmovable;
    plan
}

/// The rollouts due for `observed.lagging`, by consumer, and the consumers whose hosts the
/// method cannot move. The engine calls this again after a run releases a version, so
/// consumers move to what is newest then.
pub fn rollouts(observed: &Observed) -> (Vec<Action>, Vec<Unmovable>) {
    let mut plan = Plan::default();
    let mut lagging: Vec<&ConsumerLag> = observed.lagging.iter().filter(|l| l.behind > 0).collect();
    lagging.sort_by(|a, b| a.consumer.cmp(&b.consumer));
    for l in lagging {
        rollout(&mut plan, l, observed);
    }
    (plan.actions, plan.unmovable)
}

fn build_or_distribute(
    plan: &mut Plan,
    image: &DesiredImage,
    policy: &PolicyView,
    observed: &Observed,
    available: &[&ObservedVersion],
    now: Timestamp,
) {
    let parent = observed.parents.get(&image.name).cloned();
    let build = |reasons| Action::Build {
        image: image.name.clone(),
        parent: parent.clone(),
        targets: image.targets.iter().cloned().collect(),
        reasons,
    };
    let Some(newest) = available.first() else {
        plan.actions.push(build(vec![Reason::NeverBuilt]));
        return;
    };
    let mut reasons = Vec::new();
    let age = now.as_second() - newest.built_at.as_second();
    if age >= policy.max_age_seconds {
        reasons.push(Reason::MaxAge { age_days: age / DAY, max_days: policy.max_age_seconds / DAY });
    }
    if policy.rebuild_on_parent_update
        && let Some(p) = &parent
        && !p.id.is_empty()
        && p.id != newest.parent_id
    {
        reasons.push(Reason::ParentMoved { from: newest.parent_id.clone(), to: p.id.clone(), parent: p.name.clone() });
    }
    let names: BTreeSet<&String> = image.components.keys().chain(newest.components.keys()).collect();
    let mut component_changed = false;
    for name in names {
        let (from, to) = (newest.components.get(name), image.components.get(name));
        if from != to {
            component_changed = true;
            reasons.push(Reason::ComponentChanged { component: name.clone(), from: from.cloned(), to: to.cloned() });
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
    let fresh = fresh_fixes(fixes, newest.built_at);
    if !fresh.is_empty() {
        let mut advisories: Vec<String> = fresh.iter().map(|f| f.advisory.clone()).collect();
        advisories.dedup();
        let mut packages: Vec<String> =
            fresh.iter().map(|f| format!("{} {} → {}", f.package, f.installed, f.fixed)).collect();
        packages.sort();
        packages.dedup();
        reasons.push(Reason::Advisories { severity: policy.rebuild_on_severity.clone(), advisories, packages });
    }
    if !reasons.is_empty() {
        plan.actions.push(build(reasons));
        return;
    }
    let due = due_in_days(policy.max_age_seconds, age);
    plan.notes.push(Note { image: image.name.clone(), version: newest.version.clone(), due_in_days: due });
    let missing: Vec<Target> = image.targets.difference(&newest.reached_by(image)).cloned().collect();
    if let (false, Some(source)) = (missing.is_empty(), &newest.source) {
        plan.actions.push(Action::Distribute {
            image: image.name.clone(),
            version: newest.version.clone(),
            build_id: newest.build_id.clone(),
            source: source.clone(),
            targets: missing.clone(),
            reasons: vec![Reason::NotDistributed { missing }],
        });
    }
}

/// Whole days until a version `age_seconds` old reaches `max_age_seconds`, rounded up: 1
/// while anything up to 24 hours is left, 0 or less once it is due.
pub fn due_in_days(max_age_seconds: i64, age_seconds: i64) -> i64 {
    max_age_seconds.saturating_sub(age_seconds).saturating_add(DAY - 1).div_euclid(DAY)
}

/// The deprecations due on one line: every released version with a released successor has
/// its owned AMIs (the platform's and consumers' own copies; a shared AMI is the owner's)
/// deprecated at the successor's release plus the rollout SLA. An AMI with a recorded
/// deprecation is never planned again, so the time is set once; a failed attempt is
/// planned again with its error as a reason. The engine calls this again after a run
/// publishes a new version, so its predecessor is deprecated in the same run.
pub fn deprecations(image: &str, policy: &PolicyView, observed: &Observed) -> Vec<Action> {
    let mut released: Vec<(&ObservedVersion, Timestamp)> = observed
        .versions
        .iter()
        .filter(|v| v.image == image && matches!(v.state, VersionState::Available | VersionState::Retired))
        .filter_map(|v| v.released_at.map(|at| (v, at)))
        .collect();
    // Release order, as the fleet judges successors.
    released.sort_by(|(a, at), (b, bt)| at.cmp(bt).then_with(|| a.version.cmp(&b.version)));
    let mut out = Vec::new();
    for pair in released.windows(2) {
        let ((v, _), (next, next_at)) = (pair[0], pair[1]);
        let Ok(at) = Timestamp::from_second(next_at.as_second().saturating_add(policy.rollout_sla_seconds)) else {
            continue;
        };
        let mut amis = Vec::new();
        let mut errors = Vec::new();
        for d in v.distributions.iter().filter(|d| d.how.owns()) {
            let ami = d.ami();
            match v.deprecations.get(&ami) {
                Some(DeprecationRecord { error: None, .. }) => {}
                Some(DeprecationRecord { error: Some(e), .. }) => {
                    errors.push(format!("{ami}: {e}"));
                    amis.push(ami);
                }
                None => amis.push(ami),
            }
        }
        if amis.is_empty() {
            continue;
        }
        amis.sort();
        amis.dedup();
        let mut reasons = vec![Reason::Superseded { by: next.version.clone(), released: next_at, deprecate_at: at }];
        if !errors.is_empty() {
            reasons.push(Reason::DeprecationFailed { error: errors.join("; ") });
        }
        out.push(Action::Deprecate {
            image: image.to_string(),
            version: v.version.clone(),
            build_id: v.build_id.clone(),
            at,
            amis,
            reasons,
        });
    }
    out
}

fn rollout(plan: &mut Plan, l: &ConsumerLag, observed: &Observed) {
    let Some(newest) = observed
        .versions
        .iter()
        .find(|v| v.image == l.image && v.version == l.newest && v.state == VersionState::Available)
    else {
        return;
    };
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
    let mut groups = Vec::new();
    let mut unpublished = BTreeSet::new();
    if l.method.moves_groups() {
        for (region, asg) in &l.groups {
            let target = Target::new(&l.account, region);
            match newest.distributions.iter().find(|d| d.target == target) {
                Some(d) => groups.push(RolloutGroup { target, asg: asg.clone(), image_id: d.image_id.clone() }),
                None => {
                    unpublished.insert(target);
                }
            }
        }
        if !l.loose.is_empty() {
            reasons.push(Reason::Ungrouped { consumer: l.consumer.clone(), instances: l.loose.clone() });
        }
        // Nothing the method can move: say so, but plan nothing that could only fail.
        if groups.is_empty() && unpublished.is_empty() {
            plan.unmovable.push(Unmovable {
                consumer: l.consumer.clone(),
                method: l.method.name().to_string(),
                instances: l.loose.clone(),
            });
            return;
        }
    }
    plan.actions.push(Action::Rollout {
        consumer: l.consumer.clone(),
        image: l.image.clone(),
        version: newest.version.clone(),
        build_id: newest.build_id.clone(),
        method: l.method.clone(),
        groups,
        unpublished: unpublished.into_iter().collect(),
        reasons,
    });
}

#[cfg(test)]
mod tests;

/// The fixes that make a version due: those published after it was built. An older one the
/// build did not pick up would rebuild forever; `amictl advisories` still reports it. The
/// planner and `serve`'s advisory watch both ask this.
pub fn fresh_fixes(fixes: &[MissingFix], built_at: Timestamp) -> Vec<&MissingFix> {
    fixes.iter().filter(|f| f.published > built_at).collect()
}
