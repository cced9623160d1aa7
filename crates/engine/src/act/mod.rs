//! The act step: one module per action kind, each inside [`Engine::recorded`]'s intent →
//! outcome wrapper, run in the order and with the concurrency described in the crate doc.

mod build;
mod deprecate;
mod distribute;
mod recover;
mod retire;
mod rollout;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use catalog::{Holder, RunLock};
use jiff::Timestamp;
use policy::{Action, Plan};
use provider::EventKind;
use serde::Serialize;
use serde_json::{Value, json};

use crate::observe::Mode;
use crate::record::Closed;
use crate::{Engine, EngineError, Scope};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Wait for another run holding the state lock instead of failing.
    pub wait: bool,
    /// Fetch parents afresh before planning, so a moved parent is noticed.
    pub refresh_parents: bool,
    /// How many independent actions (image lines, consumers) run at once.
    pub parallel: usize,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions { wait: false, refresh_parents: false, parallel: 2 }
    }
}

/// How one action went.
#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    /// Its kind (`build`, `distribute` …, as in the plan's JSON).
    pub action: &'static str,
    /// Its image line.
    pub image: String,
    /// Its audit subject.
    pub subject: String,
    /// Whether it did its work.
    pub ok: bool,
    /// Whether it was stopped by the operator.
    pub interrupted: bool,
    /// What it did (its outcome's data).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The approval it waits for (`policy.require_approval`): it did not run, and did not fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// What an `apply` did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The plan it carried out.
    pub plan: Plan,
    /// Intents a dead run left open, closed as interrupted.
    pub closed: Vec<Closed>,
    /// Each action that ran, in plan order (follow-up deprecations after their line).
    pub actions: Vec<ActionResult>,
    /// Actions not started because the operator asked to stop.
    pub not_started: usize,
}

impl ApplyReport {
    /// Actions that failed (interrupted ones included).
    pub fn failed(&self) -> usize {
        self.actions.iter().filter(|a| !a.ok).count()
    }

    /// Actions held for approval.
    pub fn held(&self) -> impl Iterator<Item = &ActionResult> {
        self.actions.iter().filter(|a| a.held.is_some())
    }

    /// Whether the run was stopped by the operator.
    pub fn interrupted(&self) -> bool {
        self.not_started > 0 || self.actions.iter().any(|a| a.interrupted)
    }
}

/// Lines this plan builds or distributes.
fn changing_lines(plan: &Plan) -> std::collections::BTreeSet<String> {
    plan.actions
        .iter()
        .filter(|a| matches!(a, Action::Build { .. } | Action::Distribute { .. }))
        .map(|a| a.image().to_string())
        .collect()
}

/// A rollout of a line the run changes first: decided after that change.
fn deferred(a: &Action, changing: &std::collections::BTreeSet<String>) -> bool {
    matches!(a, Action::Rollout { .. }) && changing.contains(a.image())
}

/// Runs `f` over `items` on up to `n` threads; results in input order.
fn concurrently<T: Send, R: Send>(items: Vec<T>, n: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if n <= 1 {
        // Inline: a builder that forks needs the process to have no other working thread.
        return items.into_iter().map(f).collect();
    }
    let count = items.len();
    let queue: Mutex<Vec<Option<T>>> = Mutex::new(items.into_iter().map(Some).collect());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..n.clamp(1, count.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        break;
                    }
                    let item = queue.lock().unwrap_or_else(|e| e.into_inner())[i].take();
                    if let Some(item) = item {
                        let r = f(item);
                        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

impl Engine {
    /// Takes the run lock, closes what a dead run left open, observes, plans and carries the
    /// plan out, recording every decision and every action. `waiting` is called once when
    /// another run holds the lock and `options.wait` is set.
    pub fn apply(
        &self,
        now: Timestamp,
        scope: &Scope,
        options: &ApplyOptions,
        waiting: impl FnOnce(&Holder),
    ) -> Result<ApplyReport, EngineError> {
        let _lock = RunLock::acquire_at(self.location(), options.wait, "amictl apply", waiting, || {
            self.cancel().is_cancelled()
        })
        .map_err(|e| if self.cancel().is_cancelled() { EngineError::Cancelled } else { e.into() })?;
        let closed = self.close_open_intents()?;
        self.expire_approvals(self.now())?;
        for c in &closed {
            self.progress().line(&format!(
                "closed {} of {} (event {}, {}): its run ended without an outcome",
                c.kind, c.subject, c.seq, c.time
            ));
        }
        let observation =
            self.observe(&Mode { live_holder: None, refresh_parents: options.refresh_parents }, now, scope)?;
        crate::fleet::record(&mut self.catalog(), &observation.scans, self.now())?;
        let plan = observation.plan(now, scope);
        self.note(
            EventKind::ApplyStart,
            scope.only.as_deref().unwrap_or("*"),
            &format!("{} action(s) planned", plan.actions.len()),
            json!({"now": now.to_string(), "config": self.config().file.display().to_string()}),
        )?;
        // A rollout of a line this run changes is decided after the change (see carry_out).
        let changing = changing_lines(&plan);
        for a in plan.actions.iter().filter(|a| !deferred(a, &changing)) {
            self.decided(a)?;
        }
        let mut report = ApplyReport { plan: plan.clone(), closed, actions: Vec::new(), not_started: 0 };
        self.carry_out(&plan, &observation, now, options.parallel.max(1), &mut report)?;
        // People hear about it; a notice that cannot be queued must not lose the run's record.
        if let Err(e) = self.queue_notices(&report, now) {
            self.progress().line(&format!("notices not queued: {}", e.text()));
        }
        let failed = report.failed();
        self.note(
            EventKind::ApplyFinish,
            scope.only.as_deref().unwrap_or("*"),
            &format!(
                "{} ok{}, {failed} failed{}",
                report.actions.len() - failed,
                match report.held().count() {
                    0 => String::new(),
                    n => format!(" ({n} held for approval)"),
                },
                if report.interrupted() {
                    format!(", interrupted ({} not started)", report.not_started)
                } else {
                    String::new()
                }
            ),
            json!({}),
        )?;
        Ok(report)
    }

    fn decided(&self, a: &Action) -> Result<(), EngineError> {
        self.note(
            EventKind::Decision,
            &a.subject(),
            &a.reasons_text(),
            json!({"action": a.kind(), "reasons": a.reasons()}),
        )?;
        Ok(())
    }

    fn carry_out(
        &self,
        plan: &Plan,
        observation: &crate::Observation,
        now: Timestamp,
        parallel: usize,
        report: &mut ApplyReport,
    ) -> Result<(), EngineError> {
        // Recoveries first: they free what interrupted builds hold.
        for a in plan.actions.iter().filter(|a| matches!(a, Action::Recover { .. })) {
            match self.one(a) {
                Some(r) => report.actions.push(r),
                None => report.not_started += 1,
            }
        }
        // Each line's chain in order; lines side by side.
        let mut chains: Vec<(String, Vec<&Action>)> = Vec::new();
        for a in plan.actions.iter().filter(|a| !matches!(a, Action::Recover { .. } | Action::Rollout { .. })) {
            match chains.iter_mut().find(|(image, _)| image == a.image()) {
                Some((_, list)) => list.push(a),
                None => chains.push((a.image().to_string(), vec![a])),
            }
        }
        // A builder that forks (the local sandbox) must not run beside other threads.
        let forks = chains.iter().any(|(image, _)| self.line(image).is_ok_and(|l| !l.builder.concurrent()));
        let width = if forks { 1 } else { parallel };
        let done = concurrently(chains, width, |(image, actions)| self.chain(&image, &actions));
        let mut released = std::collections::BTreeSet::new();
        for (image, results, skipped) in done {
            if results.iter().any(|r| r.ok && r.held.is_none() && matches!(r.action, "build" | "distribute")) {
                released.insert(image);
            }
            report.actions.extend(results);
            report.not_started += skipped;
        }
        // Rollouts last, one consumer each, to what is newest now.
        let changing = changing_lines(plan);
        let mut rollouts: Vec<Action> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Rollout { .. }) && !deferred(a, &changing))
            .cloned()
            .collect();
        let mut later: Vec<Action> = plan.actions.iter().filter(|a| deferred(a, &changing)).cloned().collect();
        if !released.is_empty() {
            // A planned rollout of a line that released a version in this run moves its
            // consumer once, to what is newest now (and where it is published now): its
            // hosts are judged again and the rollout planned anew. A consumer that had no
            // rollout planned gets none: a version released now starts its rollout window.
            let cfg = self.config();
            let planned: std::collections::BTreeSet<&str> = later
                .iter()
                .filter(|a| released.contains(a.image()))
                .filter_map(|a| match a {
                    Action::Rollout { consumer, .. } => Some(consumer.as_str()),
                    _ => None,
                })
                .collect();
            let scans: Vec<_> =
                observation.scans.iter().filter(|s| planned.contains(s.consumer.name.as_str())).cloned().collect();
            let releases = crate::views::releases(&self.catalog())?;
            let lagging = crate::fleet::lagging(&crate::fleet::rejudge(cfg, &scans, releases, now));
            let observed = policy::Observed { versions: self.observe_versions(None)?, lagging, ..Default::default() };
            let (fresh, _) = policy::rollouts(&observed);
            later.retain(|a| !released.contains(a.image()));
            later.extend(fresh);
        }
        for a in &later {
            self.decided(a)?;
        }
        rollouts.extend(later);
        for r in concurrently(rollouts.iter().collect(), parallel, |a| self.one(a)) {
            match r {
                Some(r) => report.actions.push(r),
                None => report.not_started += 1,
            }
        }
        Ok(())
    }

    /// One line's actions in order, then the deprecations its new releases make due. A
    /// failure to plan those shows as a failed deprecation, not as the loss of the rest.
    fn chain(&self, image: &str, actions: &[&Action]) -> (String, Vec<ActionResult>, usize) {
        let mut results = Vec::new();
        let mut skipped = 0;
        if let Err(e) = self.chain_into(image, actions, &mut results, &mut skipped) {
            self.progress().line(&format!("FAIL deprecate {image}: {}", e.text()));
            results.push(ActionResult {
                action: "deprecate",
                image: image.to_string(),
                subject: image.to_string(),
                ok: false,
                interrupted: e.is_cancelled(),
                result: Value::Null,
                error: Some(e.text()),
                held: None,
            });
        }
        (image.to_string(), results, skipped)
    }

    fn chain_into(
        &self,
        image: &str,
        actions: &[&Action],
        results: &mut Vec<ActionResult>,
        skipped: &mut usize,
    ) -> Result<(), EngineError> {
        let mut published = false;
        for a in actions {
            match self.one(a) {
                Some(r) => {
                    published |=
                        r.ok && r.held.is_none() && matches!(a, Action::Build { .. } | Action::Distribute { .. });
                    results.push(r);
                }
                None => *skipped += 1,
            }
        }
        if published {
            let planned: Vec<&str> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Deprecate { build_id, .. } => Some(build_id.as_str()),
                    _ => None,
                })
                .collect();
            let observed = policy::Observed { versions: self.observe_versions(None)?, ..Default::default() };
            for a in policy::deprecations(image, &self.policy_view(), &observed) {
                let Action::Deprecate { build_id, .. } = &a else { continue };
                if planned.contains(&build_id.as_str()) {
                    continue;
                }
                self.decided(&a)?;
                match self.one(&a) {
                    Some(r) => results.push(r),
                    None => *skipped += 1,
                }
            }
        }
        Ok(())
    }

    /// Carries out one action, or `None` when the operator asked to stop before it began.
    fn one(&self, a: &Action) -> Option<ActionResult> {
        if self.cancel().is_cancelled() {
            return None;
        }
        let result = |ok, interrupted, result, error, held| ActionResult {
            action: a.kind(),
            image: a.image().to_string(),
            subject: a.subject(),
            ok,
            interrupted,
            result,
            error,
            held,
        };
        let approval = match self.gate(a) {
            Ok(crate::approvals::Gate::Go(approval)) => approval,
            Ok(crate::approvals::Gate::Held(ap)) => {
                let status = json!({"approval": ap.id, "status": ap.status.as_str(), "expires_at": ap.expires_at});
                return Some(result(true, false, status, None, Some(ap.id)));
            }
            Err(e) => {
                let text = format!("cannot check its approval: {}", e.text());
                self.progress().line(&format!("FAIL {} {}: {text}", a.label(), a.subject()));
                return Some(result(false, false, Value::Null, Some(text), None));
            }
        };
        let outcome = match a {
            Action::Recover { .. } => recover::run(self, a),
            Action::Build { .. } => build::run(self, a),
            Action::Distribute { .. } => distribute::run(self, a),
            Action::Deprecate { .. } => deprecate::run(self, a),
            Action::Rollout { .. } => rollout::run(self, a),
            Action::Retire { .. } => retire::run(self, a),
        };
        let (ok, interrupted, value, error) = match outcome {
            Ok(v) => (true, false, v, None),
            Err(e) => {
                let text = e.text();
                self.progress().line(&format!("FAIL {} {}: {text}", a.label(), a.subject()));
                (false, e.is_cancelled(), Value::Null, Some(text))
            }
        };
        if ok
            && let Some(ap) = &approval
            && let Err(e) = self.approval_used(ap, &value)
        {
            self.progress().line(&format!("approval {} not marked used: {}", ap.id, e.text()));
        }
        Some(result(ok, interrupted, value, error, None))
    }
}
