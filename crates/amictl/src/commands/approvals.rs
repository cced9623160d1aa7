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

/// A decider's name as the audit trail records it: 1 to 64 characters, none of them a
/// control or formatting character (a bidirectional override could make the trail lie).
pub fn valid_name(name: &str) -> bool {
    let formatting = |c: char| matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}');
    let n = name.chars().count();
    (1..=64).contains(&n) && name.trim() == name && !name.chars().any(|c| c.is_control() || formatting(c))
}

pub fn decide(common: &Common, args: &DecideArgs, decision: Decision) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let cat = catalog(&cfg)?;
    let engine = Engine::new(cfg, cat, Providers::default()).with_actor(actor());
    let by = args.by.clone().unwrap_or_else(actor);
    if !valid_name(&by) {
        return Err(UsageError("--as: a name of 1 to 64 printable characters".into()).into());
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_that_could_make_the_trail_lie_is_refused() {
        for ok in ["alice", "Zoë O'Brien (dashboard)", "ci@runner-7"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", " alice", "al\u{202E}ecila", "a\u{200B}b", "a\nb", &"x".repeat(65)] {
            assert!(!super::valid_name(bad), "{bad:?}");
        }
    }
}
