//! Actions held for a person: `policy.require_approval = ["build", "rollout", "retire"]`.
//!
//! When the plan reaches a held kind, the engine looks for the action's approval (by
//! [`policy::Action::approval_key`]): approved → the action runs and the approval is used;
//! pending or denied → the action is held (reported, not failed); none → a request is
//! recorded with the planner's reasons and a notice is queued. Requests and approvals
//! expire after `policy.approval_ttl` (a denied one then asks again); expiry is settled
//! once at the start of each run, not per action. Every change is one
//! catalog transaction with its audit event, so the chain says who decided and when.

use catalog::{Approval, ApprovalStatus, NewEvent};
use jiff::Timestamp;
use policy::Action;
use provider::EventKind;
use serde_json::{Value, json};

use crate::{Engine, EngineError, views};

/// What the gate decided for one action.
pub(crate) enum Gate {
    /// Run it: not held, or approved (the approval, to be marked used once it did its work).
    Go(Option<Approval>),
    /// Hold it: the approval's id and where it stands.
    Held(Approval),
}

/// A decision on a held action, from `amictl approve|deny` or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it run.
    Approve,
    /// Do not.
    Deny,
}

fn live(a: &Approval) -> bool {
    matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved | ApprovalStatus::Denied)
}

/// A request (pending or denied) expires at its `expires_at`; an approval has the same
/// time again from its decision, so one given late in the window is not lost before the
/// cycle it starts can use it, nor while its action runs.
fn expired(a: &Approval, now: Timestamp, ttl: i64) -> bool {
    match a.status {
        ApprovalStatus::Approved => a
            .decided_at
            .as_deref()
            .map(views::time)
            .and_then(|d| d.saturating_add(jiff::SignedDuration::from_secs(ttl)).ok())
            .is_some_and(|until| until <= now),
        _ => live(a) && views::time(&a.expires_at) <= now,
    }
}

impl Engine {
    fn event<'a>(
        &'a self,
        time: &'a str,
        kind: EventKind,
        a: &'a Approval,
        reason: &'a str,
        data: &'a serde_json::Value,
    ) -> NewEvent<'a> {
        NewEvent {
            time,
            actor: &self.actor,
            kind: kind.as_str(),
            subject: &a.subject,
            reason,
            data,
            opens: false,
            closes: None,
        }
    }

    /// Marks every approval past its time as expired, with an event each.
    pub fn expire_approvals(&self, now: Timestamp) -> Result<usize, EngineError> {
        let all = self.catalog().approvals(None)?;
        let mut n = 0;
        let ttl = self.config().policy.approval_ttl_seconds;
        for a in all.iter().filter(|a| expired(a, now, ttl)) {
            let time = self.now().to_string();
            let data =
                json!({"approval": a.id, "action": a.action, "was": a.status.as_str(), "expires_at": a.expires_at});
            let reason = format!("{} {} was not decided or used by {}", a.id, a.action, a.expires_at);
            let ev = self.event(&time, EventKind::ApprovalExpired, a, &reason, &data);
            if self.catalog().move_approval(&a.id, a.status, ApprovalStatus::Expired, None, &ev)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether `a` may run now, asking for an approval when its kind is held and none exists.
    pub(crate) fn gate(&self, a: &Action) -> Result<Gate, EngineError> {
        if !self.config().policy.require_approval.iter().any(|k| k == a.kind()) {
            return Ok(Gate::Go(None));
        }
        let now = self.now();
        let key = a.approval_key();
        let current = self.catalog().approvals_of(&key)?.into_iter().find(live);
        match current {
            Some(ap) if ap.status == ApprovalStatus::Approved => Ok(Gate::Go(Some(ap))),
            Some(ap) => Ok(Gate::Held(ap)),
            None => {
                let ttl = jiff::SignedDuration::from_secs(self.config().policy.approval_ttl_seconds);
                let ap = Approval {
                    id: format!("ap-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
                    action_key: key,
                    action: a.kind().to_string(),
                    subject: a.subject(),
                    reasons: a.reasons_text(),
                    detail: serde_json::to_value(a).unwrap_or_default(),
                    status: ApprovalStatus::Pending,
                    requested_at: now.to_string(),
                    expires_at: now.saturating_add(ttl).unwrap_or(now).to_string(),
                    decided_by: None,
                    decided_at: None,
                };
                let time = now.to_string();
                let data = json!({"approval": ap.id, "action": ap.action, "key": ap.action_key, "expires_at": ap.expires_at, "reasons": a.reasons()});
                let reason = format!("{} waits for approval: {}", ap.action, ap.reasons);
                let ev = self.event(&time, EventKind::ApprovalRequested, &ap, &reason, &data);
                self.catalog().request_approval(&ap, &ev)?;
                self.progress().line(&format!(
                    "HELD {} {}: approval {} requested (amictl approve {})",
                    a.label(),
                    a.subject(),
                    ap.id,
                    ap.id
                ));
                self.queue_notice(
                    &format!("approval.waiting:{}", ap.id),
                    "approval.waiting",
                    &ap.subject,
                    &format!(
                        "{} {} waits for approval {} until {}: {}",
                        ap.action, ap.subject, ap.id, ap.expires_at, ap.reasons
                    ),
                    json!({"approval": ap.id, "action": ap.action, "expires_at": ap.expires_at}),
                )?;
                Ok(Gate::Held(ap))
            }
        }
    }

    /// Spends an approval once its action did its work. One that failed or was stopped
    /// (or whose run was killed before getting here) stays approved, so the next cycle
    /// carries the same action out again until the approval expires.
    pub(crate) fn approval_used(&self, ap: &Approval, result: &Value) -> Result<(), EngineError> {
        let time = self.now().to_string();
        let data = json!({"approval": ap.id, "action": ap.action, "approved_by": ap.decided_by, "approved_at": ap.decided_at, "result": result});
        let reason = format!(
            "carried out, approved by {} at {}",
            ap.decided_by.as_deref().unwrap_or("?"),
            ap.decided_at.as_deref().unwrap_or("?")
        );
        let ev = self.event(&time, EventKind::ApprovalUsed, ap, &reason, &data);
        let moved = self.catalog().move_approval(&ap.id, ApprovalStatus::Approved, ApprovalStatus::Used, None, &ev)?;
        if moved.is_none() {
            return Err(EngineError::Failed(format!(
                "approval {} was no longer approved when its action ended",
                ap.id
            )));
        }
        Ok(())
    }

    /// Approves or denies a pending action as `by`. Refuses one that is not pending, or
    /// whose time has passed (and records that it expired).
    pub fn decide(&self, id: &str, decision: Decision, by: &str) -> Result<Approval, EngineError> {
        let now = self.now();
        let Some(ap) = self.catalog().approval(id)? else {
            return Err(EngineError::Refused(format!("no approval `{id}` (`amictl approvals` lists them)")));
        };
        if expired(&ap, now, self.config().policy.approval_ttl_seconds) {
            self.expire_approvals(now)?;
            return Err(EngineError::Refused(format!(
                "approval {id} expired at {}; the next cycle asks again",
                ap.expires_at
            )));
        }
        if ap.status != ApprovalStatus::Pending {
            return Err(EngineError::Refused(format!(
                "approval {id} is {} ({}), not pending",
                ap.status.as_str(),
                ap.decided_by.as_deref().map(|b| format!("by {b}")).unwrap_or_default()
            )));
        }
        let (to, kind, verb) = match decision {
            Decision::Approve => (ApprovalStatus::Approved, EventKind::ApprovalApproved, "approved"),
            Decision::Deny => (ApprovalStatus::Denied, EventKind::ApprovalDenied, "denied"),
        };
        let time = now.to_string();
        let data = json!({"approval": ap.id, "action": ap.action, "key": ap.action_key, "by": by});
        let reason = format!("{verb} by {by}");
        let ev = self.event(&time, kind, &ap, &reason, &data);
        // Bound first: a guard in the match's scrutinee would live through the arms.
        let moved = self.catalog().move_approval(id, ApprovalStatus::Pending, to, Some((by, &time)), &ev)?;
        match moved {
            Some(_) => Ok(self.catalog().approval(id)?.unwrap_or(ap)),
            None => Err(EngineError::Refused(format!("approval {id} was decided by someone else just now"))),
        }
    }
}
