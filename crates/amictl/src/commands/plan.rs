//! `amictl plan`: what apply would do and why. Writes nothing.

use anyhow::Result;
use engine::{Engine, Scope};
use policy::Plan;

use super::{catalog_read, load_config};
use crate::cli::{Common, PlanArgs};
use crate::wiring::{self, Needs};
use crate::{clock, exit};

pub fn run(common: &Common, args: &PlanArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let now = clock::resolve(args.now.as_deref())?;
    let providers = wiring::providers(&cfg, Needs::default())?;
    let cat = catalog_read(&cfg)?;
    let engine = Engine::new(cfg, cat, providers);
    let (plan, _) = engine.plan(now, &Scope::default())?;
    print(&plan, common.json)?;
    Ok(if plan.is_empty() { exit::OK } else { exit::USAGE })
}

/// The plan as a table (or JSON), with what is running, what is due when, what is stale.
pub fn print(plan: &Plan, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(plan)?);
        return Ok(());
    }
    if plan.actions.is_empty() {
        println!("Nothing to do.");
    } else {
        println!("{:<9} {:<36} {:<16} REASON", "ACTION", "IMAGE", "VERSION");
        for a in &plan.actions {
            println!("{:<9} {:<36} {:<16} {}", a.label(), a.image(), a.version().unwrap_or("(new)"), a.reasons_text());
        }
    }
    for r in &plan.running {
        println!("  {}@{} is being built now by {} ({})", r.image, r.version, r.holder, r.stage);
    }
    for n in &plan.notes {
        println!("  {} {} is current; rebuild due in {} day(s)", n.image, n.version, n.due_in_days);
    }
    for e in &plan.end_of_support {
        let when = if e.days_left < 0 {
            format!("ended {} ({} day(s) ago)", e.ends, -e.days_left)
        } else {
            format!("ends {} (in {} day(s))", e.ends, e.days_left)
        };
        let to = e.successor.as_deref().map(|s| format!("; move `parent` to {s}")).unwrap_or_default();
        println!("  {}: its parent {} is {}, whose support {when}{to} (source: {})", e.image, e.parent, e.os, e.source);
    }
    for s in &plan.stale {
        println!("  {}: advisory check STALE — {}", s.image, s.reason);
    }
    for k in &plan.kept {
        println!("  {}@{} is beyond keep_versions but kept: {}", k.image, k.version, k.why);
    }
    for u in &plan.unmovable {
        println!(
            "  {}: {} host(s) behind in none of its auto scaling groups; {} cannot move them: {}",
            u.consumer,
            u.instances.len(),
            u.method,
            u.instances.join(", ")
        );
    }
    Ok(())
}
