//! Actions held for a person (`policy.require_approval`). Each change of an approval and
//! the audit event that records it are written in one transaction: the chain never says
//! "approved" for a row that is still pending, or the other way round. The rules (who may
//! decide, when one expires) are the engine's; this is storage.

use serde::Serialize;

use crate::audit::append_in;
use crate::store::{DbError, Row, args};
use crate::{AuditEvent, Catalog, NewEvent, Result, rows};

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for a person.
    Pending,
    /// A person said yes; the next cycle runs the action.
    Approved,
    /// A person said no; the action is not asked for again until this expires.
    Denied,
    /// Nobody decided in time (or an approval was not used in time).
    Expired,
    /// The approved action ran.
    Used,
}

impl ApprovalStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }

    fn parse(s: &str) -> ApprovalStatus {
        match s {
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "used" => ApprovalStatus::Used,
            _ => ApprovalStatus::Pending,
        }
    }
}

/// One held action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    /// Short and unique (`ap-3f9c2a1b`): what `amictl approve` takes.
    pub id: String,
    /// What identifies the action across cycles (kind, subject and what it acts on).
    pub action_key: String,
    /// `build`, `rollout` or `retire`.
    pub action: String,
    /// The action's audit subject.
    pub subject: String,
    /// The planner's reasons, for people.
    pub reasons: String,
    /// The planned action as JSON.
    pub detail: serde_json::Value,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// RFC 3339.
    pub requested_at: String,
    /// RFC 3339: pending or approved after this, it is expired.
    pub expires_at: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// RFC 3339.
    pub decided_at: Option<String>,
}

const COLUMNS: &str =
    "id, action_key, action, subject, reasons, detail, status, requested_at, expires_at, decided_by, decided_at";

fn approval(r: &Row) -> std::result::Result<Approval, DbError> {
    Ok(Approval {
        id: r.get(0)?,
        action_key: r.get(1)?,
        action: r.get(2)?,
        subject: r.get(3)?,
        reasons: r.get(4)?,
        detail: serde_json::from_str(&r.get::<String>(5)?).unwrap_or(serde_json::Value::Null),
        status: ApprovalStatus::parse(&r.get::<String>(6)?),
        requested_at: r.get(7)?,
        expires_at: r.get(8)?,
        decided_by: r.get(9)?,
        decided_at: r.get(10)?,
    })
}

impl Catalog {
    /// Records a new pending approval and the event asking for it.
    pub fn request_approval(&mut self, a: &Approval, ev: &NewEvent<'_>) -> Result<AuditEvent> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                args![
                    a.id,
                    a.action_key,
                    a.action,
                    a.subject,
                    a.reasons,
                    a.detail.to_string(),
                    a.status.as_str(),
                    a.requested_at,
                    a.expires_at,
                    a.decided_by,
                    a.decided_at
                ],
            )?;
            append_in(tx, ev)
        })
    }

    /// Moves approval `id` from `from` to `to` (with who and when, for a decision) and
    /// appends `ev`, or changes nothing and returns `None` when it is not in `from` — so
    /// two people deciding at once, or a decision racing an expiry, cannot both win.
    pub fn move_approval(
        &mut self,
        id: &str,
        from: ApprovalStatus,
        to: ApprovalStatus,
        decided: Option<(&str, &str)>,
        ev: &NewEvent<'_>,
    ) -> Result<Option<AuditEvent>> {
        self.write(|tx| {
            let changed = match decided {
                Some((by, at)) => tx.execute(
                    "UPDATE approvals SET status = ?3, decided_by = ?4, decided_at = ?5 WHERE id = ?1 AND status = ?2",
                    args![id, from.as_str(), to.as_str(), by, at],
                ),
                None => tx.execute(
                    "UPDATE approvals SET status = ?3 WHERE id = ?1 AND status = ?2",
                    args![id, from.as_str(), to.as_str()],
                ),
            }?;
            if changed == 0 {
                return Ok(None);
            }
            append_in(tx, ev).map(Some)
        })
    }

    /// One approval.
    pub fn approval(&self, id: &str) -> Result<Option<Approval>> {
        let row = self.one(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"), args![id])?;
        row.as_ref().map(approval).transpose().map_err(|e| self.err(e))
    }

    /// Approvals, newest first; only those in `status` when given.
    pub fn approvals(&self, status: Option<ApprovalStatus>) -> Result<Vec<Approval>> {
        let found = self.all(
            &format!("SELECT {COLUMNS} FROM approvals WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) ORDER BY requested_at DESC, id"),
            args![status.map(ApprovalStatus::as_str)],
        )?;
        rows(self, found, approval)
    }

    /// The approvals of one action, newest first.
    pub fn approvals_of(&self, action_key: &str) -> Result<Vec<Approval>> {
        let found = self.all(
            &format!("SELECT {COLUMNS} FROM approvals WHERE action_key = ?1 ORDER BY requested_at DESC, id"),
            args![action_key],
        )?;
        rows(self, found, approval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::catalog;

    fn held(id: &str) -> Approval {
        Approval {
            id: id.into(),
            action_key: "build:host".into(),
            action: "build".into(),
            subject: "host".into(),
            reasons: "age 91d ≥ max 90d".into(),
            detail: serde_json::json!({"kind": "build"}),
            status: ApprovalStatus::Pending,
            requested_at: "2027-01-01T00:00:00Z".into(),
            expires_at: "2027-01-04T00:00:00Z".into(),
            decided_by: None,
            decided_at: None,
        }
    }

    fn ev<'a>(kind: &'a str, data: &'a serde_json::Value) -> NewEvent<'a> {
        NewEvent {
            time: "2027-01-01T00:00:00Z",
            actor: "test",
            kind,
            subject: "host",
            reason: "",
            data,
            opens: false,
            closes: None,
        }
    }

    #[test]
    fn a_decision_is_made_once_and_recorded_with_its_event() {
        let (_d, mut c) = catalog();
        let data = serde_json::json!({});
        c.request_approval(&held("ap-1"), &ev("approval.requested", &data)).unwrap();
        let by = Some(("alice", "2027-01-02T00:00:00Z"));
        let first = c
            .move_approval(
                "ap-1",
                ApprovalStatus::Pending,
                ApprovalStatus::Approved,
                by,
                &ev("approval.approved", &data),
            )
            .unwrap();
        assert!(first.is_some());
        // A second decision (someone else denying at the same moment) changes nothing.
        let second = c
            .move_approval("ap-1", ApprovalStatus::Pending, ApprovalStatus::Denied, by, &ev("approval.denied", &data))
            .unwrap();
        assert!(second.is_none());
        let a = c.approval("ap-1").unwrap().unwrap();
        assert_eq!((a.status, a.decided_by.as_deref()), (ApprovalStatus::Approved, Some("alice")));
        let kinds: Vec<String> = c.events(None).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["approval.requested", "approval.approved"]);
        assert_eq!(c.approvals(Some(ApprovalStatus::Pending)).unwrap(), []);
        assert_eq!(c.approvals_of("build:host").unwrap().len(), 1);
    }
}
