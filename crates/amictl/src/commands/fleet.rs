//! `amictl fleet`: every consumer's hosts against the rollout SLA, live or from saved
//! inventories (no AWS calls).

use std::path::PathBuf;

use ::fleet::{Standing, Summary};
use anyhow::Result;
use engine::fleet::{ConsumerScan, record, scan};
use serde_json::json;

use super::{catalog, load_config_reading};
use crate::cli::{Common, FleetArgs};
use crate::render::table;
use crate::wiring::{self, Needs};
use crate::{UsageError, clock, exit};

pub fn run(common: &Common, args: &FleetArgs) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    if cfg.consumers.is_empty() {
        return Err(UsageError(format!("{} defines no [consumers.*]", cfg.file.display())).into());
    }
    let now = clock::resolve(args.now.as_deref())?;
    let mut files = Vec::new();
    for spec in &args.inventory {
        let (account, file) = spec.split_once('=').ok_or_else(|| {
            UsageError(format!("--inventory {spec}: expected ACCOUNT=FILE (saved `aws ec2 describe-instances` output)"))
        })?;
        if !cfg.accounts.contains_key(account) {
            return Err(UsageError(format!("--inventory {spec}: no account `{account}` in the config")).into());
        }
        files.push((account.to_string(), PathBuf::from(file)));
    }
    let source: std::sync::Arc<dyn provider::FleetSource> = if files.is_empty() {
        let providers = wiring::providers(&cfg, Needs { cloud: true })?;
        providers.fleet.ok_or_else(|| UsageError("a live fleet scan needs [aws] and accounts".into()))?
    } else {
        // Bad JSON is an input error: say where, change nothing.
        std::sync::Arc::new(local::InventoryFleet::load(&files).map_err(|e| UsageError(e.to_string()))?)
    };
    let mut cat = catalog(&cfg)?;
    let releases = engine::views::releases(&cat)?;
    let scans = scan(&cfg, releases, source.as_ref(), files.is_empty(), now, |_| true);
    // A scan is an observation; it is stored as each consumer's latest unless a run holds
    // the state (that run records its own scan).
    match catalog::RunLock::acquire_at(cat.location(), false, "amictl fleet", |_| {}, || false) {
        Ok(_lock) => record(&mut cat, &scans, jiff::Timestamp::now())?,
        Err(catalog::CatalogError::Locked { holder, .. }) => {
            eprintln!("amictl: this scan is not stored: a run holds the state ({holder}) and records its own")
        }
        Err(e) => return Err(e.into()),
    }
    let summaries: Vec<Summary> = scans.iter().map(ConsumerScan::summary).collect();
    let compliant = summaries.iter().all(Summary::compliant);
    if common.json {
        let consumers: Vec<serde_json::Value> = scans
            .iter()
            .zip(&summaries)
            .map(|(s, sum)| {
                json!({
                    "consumer": s.consumer.name, "account": s.consumer.account, "image": s.consumer.image,
                    "owner": s.consumer.owner, "summary": sum,
                    "hosts": s.hosts.as_ref().map(|h| json!(h)).unwrap_or(json!(null)),
                })
            })
            .collect();
        let out = json!({"now": now.to_string(), "compliant": compliant, "consumers": consumers});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&scans, &summaries);
    }
    Ok(if compliant { exit::OK } else { exit::NONCOMPLIANT })
}

fn print_table(scans: &[ConsumerScan], summaries: &[Summary]) {
    let mut rows = vec![
        ["CONSUMER", "IMAGE", "HOSTS", "CURRENT", "WITHIN", "OVERDUE", "EXEMPT", "UNMANAGED", "AGENTS", "STATUS"]
            .map(String::from)
            .to_vec(),
    ];
    for (s, sum) in scans.iter().zip(summaries) {
        let status = match (&sum.unknown, sum.overdue, sum.within_sla) {
            (Some(e), _, _) => format!("UNKNOWN ({})", e.chars().take(60).collect::<String>()),
            (None, o, _) if o > 0 && sum.most_days_over == 0 => "OVERDUE (<1d)".to_string(),
            (None, o, _) if o > 0 => format!("OVERDUE by {}d", sum.most_days_over),
            (None, 0, w) if w > 0 => {
                format!("behind; deadline {}", sum.next_deadline.as_deref().unwrap_or("?").get(..10).unwrap_or("?"))
            }
            _ => "compliant".into(),
        };
        let agents =
            if sum.agents_unhealthy == 0 { "ok".to_string() } else { format!("{} unhealthy", sum.agents_unhealthy) };
        rows.push(vec![
            s.consumer.name.clone(),
            s.consumer.image.clone(),
            sum.total.to_string(),
            sum.current.to_string(),
            sum.within_sla.to_string(),
            sum.overdue.to_string(),
            sum.exempt.to_string(),
            sum.unmanaged.to_string(),
            agents,
            status,
        ]);
    }
    let total = |f: fn(&Summary) -> usize| summaries.iter().map(f).sum::<usize>().to_string();
    rows.push(vec![
        "TOTAL".into(),
        String::new(),
        total(|s| s.total),
        total(|s| s.current),
        total(|s| s.within_sla),
        total(|s| s.overdue),
        total(|s| s.exempt),
        total(|s| s.unmanaged),
        total(|s| s.agents_unhealthy),
        format!("{} of {} consumers compliant", summaries.iter().filter(|s| s.compliant()).count(), summaries.len()),
    ]);
    table::print(&rows, &[]);
    for s in scans {
        for a in s.hosts.iter().flatten() {
            if matches!(a.standing, Standing::Current) && a.agent_problem.is_none() {
                continue;
            }
            println!(
                "  {} {} {} {} on {} ({}){}",
                s.consumer.name,
                a.host.region,
                a.host.instance_id,
                a.host.name.as_deref().or(a.host.asg.as_deref()).unwrap_or("-"),
                a.version.as_deref().unwrap_or(&a.host.image_id),
                standing_text(&a.standing),
                a.agent_problem.as_deref().map(|p| format!("; {p}")).unwrap_or_default()
            );
        }
    }
}

/// A host's standing for people; whole days rounded down (see the `fleet` crate).
fn standing_text(s: &Standing) -> String {
    match s {
        Standing::Current => "current".into(),
        Standing::WithinSla { days_left, deadline } => format!("behind, {days_left} day(s) left (deadline {deadline})"),
        Standing::Overdue { days_over, deadline } => format!("OVERDUE by {days_over} day(s) (deadline {deadline})"),
        Standing::Exempt { until, reason } => format!("exempt until {until}: {reason}"),
        Standing::Unmanaged => "unmanaged AMI".into(),
    }
}
