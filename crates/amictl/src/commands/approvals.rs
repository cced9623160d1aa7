//! `amictl approvals`, `amictl approve ID`, `amictl deny ID`: the held actions of
//! `policy.require_approval`, decided from a terminal (the API and the dashboard decide
//! through the same engine call).

use anyhow::Result;
use catalog::ApprovalStatus;
use engine::{Decision, Engine, EngineError, Providers};
use serde_json::json;

use super::{actor, catalog, catalog_read, load_config_reading};
use crate::cli::{ApprovalsArgs, Common, DecideArgs};
use crate::render::table;
use crate::{UsageError, exit};

pub fn list(common: &Common, args: &ApprovalsArgs) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let cat = catalog_read(&cfg)?;
    let approvals = cat.approvals(if args.all { None } else { Some(ApprovalStatus::Pending) })?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&approvals)?);
        return Ok(exit::OK);
    }
    if approvals.is_empty() {
        println!("{}", if args.all { "No approvals yet." } else { "Nothing waits for approval." });
        return Ok(exit::OK);
    }
    let mut rows = vec![
        ["ID", "ACTION", "SUBJECT", "STATUS", "REQUESTED", "EXPIRES", "DECIDED BY", "WHY"].map(String::from).to_vec(),
    ];
    for a in &approvals {
        rows.push(vec![
            a.id.clone(),
            a.action.clone(),
            a.subject.clone(),
            a.status.as_str().to_string(),
            a.requested_at.clone(),
            a.expires_at.clone(),
            a.decided_by.clone().unwrap_or_else(|| "-".into()),
            a.reasons.clone(),
        ]);
    }
    table::print(&rows, &[]);
    Ok(exit::OK)
}

pub fn decide(common: &Common, args: &DecideArgs, decision: Decision) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let cat = catalog(&cfg)?;
    let engine = Engine::new(cfg, cat, Providers::default()).with_actor(actor());
    let by = args.by.clone().unwrap_or_else(actor);
    match engine.decide(&args.id, decision, &by) {
        Ok(a) => {
            if common.json {
                println!("{}", serde_json::to_string_pretty(&json!(a))?);
            } else {
                let verb = if decision == Decision::Approve { "approved" } else { "denied" };
                println!(
                    "{verb} {} ({} {}); a running `amictl serve` acts on it now, otherwise the next apply",
                    a.id, a.action, a.subject
                );
            }
            Ok(exit::OK)
        }
        Err(EngineError::Refused(why)) => Err(UsageError(why).into()),
        Err(e) => Err(e.into()),
    }
}
