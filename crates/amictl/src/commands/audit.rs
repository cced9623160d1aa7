//! `amictl audit verify | export | log` and `amictl state backup`.

use anyhow::Result;
use serde_json::json;

use super::{catalog, catalog_read, load_config_reading};
use crate::cli::{AuditCommand, Common, StateCommand};
use crate::exit;

pub fn run(common: &Common, cmd: &AuditCommand) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let cat = catalog_read(&cfg)?;
    match cmd {
        AuditCommand::Verify => verify(common, &cat),
        AuditCommand::Export { .. } => {
            for e in cat.events(None)? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(exit::OK)
        }
        AuditCommand::Log { image } => {
            let events = cat.events(image.as_deref())?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&events)?);
                return Ok(exit::OK);
            }
            for e in events {
                let reason = if e.reason.is_empty() { String::new() } else { format!(" — {}", e.reason) };
                println!("{:>5}  {}  {:<16} {}{reason}", e.seq, e.time, e.kind, e.subject);
            }
            Ok(exit::OK)
        }
    }
}

/// Every check of the state; exit 1 when any fails, naming what and where.
fn verify(common: &Common, cat: &catalog::Catalog) -> Result<u8> {
    let integrity = cat.integrity()?;
    let missing = cat.missing_safeguards()?;
    let chain = cat.verify_chain()?;
    let records = cat.check_records()?;
    let ok = integrity.is_empty() && missing.is_empty() && chain.is_ok() && records.mismatches.is_empty();
    if common.json {
        let chain = match &chain {
            Ok(n) => json!({"ok": true, "events": n}),
            Err(b) => json!({"ok": false, "seq": b.seq, "problem": b.problem}),
        };
        println!(
            "{}",
            json!({
                "ok": ok, "integrity": integrity, "missing_triggers": missing, "chain": chain,
                "events": chain["events"], "records": records,
            })
        );
        return Ok(if ok { exit::OK } else { exit::FAILED });
    }
    match integrity.as_slice() {
        [] => println!("database ok: SQLite integrity_check passed"),
        problems => println!("database DAMAGED: integrity_check: {}", problems.join("; ")),
    }
    if missing.is_empty() {
        println!("append-only triggers present");
    } else {
        println!("append-only triggers MISSING: {} (the audit log can be edited in place)", missing.join(", "));
    }
    match &chain {
        Ok(n) => println!("audit chain ok: {n} event(s) verified"),
        Err(b) => println!("audit chain BROKEN at event {}: {}", b.seq, b.problem),
    }
    for m in &records.mismatches {
        println!("record CHANGED: build {}'s {} differs from what event {} recorded", m.build_id, m.what, m.seq);
    }
    if records.mismatches.is_empty() {
        println!(
            "records ok: {} manifest(s) and {} artifact list(s) match their audit events",
            records.manifests, records.artifacts
        );
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

pub fn state(common: &Common, cmd: &StateCommand) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    match cmd {
        StateCommand::Backup { dest } => {
            if !cfg.state.exists() {
                return Err(crate::UsageError(format!(
                    "{} does not exist: there is no state to back up",
                    cfg.state.display()
                ))
                .into());
            }
            let cat = catalog(&cfg)?;
            let bytes = cat.backup(dest)?;
            let events = cat.event_count()?;
            if common.json {
                println!("{}", json!({"backup": dest, "bytes": bytes, "events": events}));
            } else {
                println!(
                    "backed up {} to {} ({bytes} bytes, {events} audit event(s))",
                    cfg.state.display(),
                    dest.display()
                );
            }
            Ok(exit::OK)
        }
    }
}
