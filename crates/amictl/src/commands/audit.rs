//! `amictl audit verify | export | log | anchor | keygen` and `amictl state backup | copy`.

use anyhow::Result;
use serde_json::json;

use super::{anchors, catalog, catalog_read, load_config_reading, location};
use crate::cli::{AuditCommand, Common, StateCommand};
use crate::{UsageError, exit};

pub fn run(common: &Common, cmd: &AuditCommand) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    match cmd {
        AuditCommand::Verify { anchors } => return verify_all(common, &cfg, anchors.as_deref()),
        AuditCommand::Keygen { file } => return keygen(common, file),
        AuditCommand::Anchor => {
            let cat = catalog_read(&cfg)?;
            if !cfg.anchors.any() {
                return Err(
                    UsageError(format!("{} has no [audit.anchors]: nowhere to write one", cfg.file.display())).into()
                );
            }
            let written = anchors::write(&cfg, &cat, &jiff::Timestamp::now().to_string())?;
            let head = cat.head()?;
            if common.json {
                println!(
                    "{}",
                    json!({"anchors": written, "seq": head.as_ref().map(|h| h.0), "hash": head.map(|h| h.1)})
                );
            } else if written.is_empty() {
                println!("the audit chain is empty: nothing to anchor");
            } else {
                for w in &written {
                    println!("anchored event {} at {w}", head.as_ref().map_or(0, |h| h.0));
                }
            }
            return Ok(exit::OK);
        }
        _ => {}
    }
    let cat = catalog_read(&cfg)?;
    match cmd {
        AuditCommand::Verify { .. } | AuditCommand::Anchor | AuditCommand::Keygen { .. } => {
            unreachable!("handled above")
        }
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

fn keygen(common: &Common, file: &std::path::Path) -> Result<u8> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (signer, seed) = anchor::Signer::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| UsageError(format!("{}: {e} (a key is never overwritten)", file.display())))?;
    f.write_all(format!("{seed}\n").as_bytes())?;
    f.sync_all()?;
    if common.json {
        println!("{}", json!({"file": file, "public_key": signer.public_hex()}));
    } else {
        println!("{}", signer.public_hex());
        eprintln!(
            "wrote the private key to {}; put it where only amictl reads it, and the public key above in [audit.anchors] public_key",
            file.display()
        );
    }
    Ok(exit::OK)
}

/// `audit verify`: the state's own checks, then the anchors'. A state that is gone is
/// judged by the anchors (reported as missing), not refused.
fn verify_all(common: &Common, cfg: &config::Config, anchors_arg: Option<&str>) -> Result<u8> {
    let opened = catalog::Catalog::open_read_at(&location(cfg)?);
    let stores = anchors::stores(cfg, anchors_arg)?;
    let cat = match opened {
        Ok(c) => c,
        Err(e @ catalog::CatalogError::Missing { .. }) if !stores.is_empty() => {
            // Judged as an empty chain: the anchors say what was lost.
            eprintln!("amictl: {e}");
            catalog::Catalog::empty(&location(cfg)?.label())?
        }
        Err(e) => return Err(e.into()),
    };
    let public = anchors::public(cfg)?;
    let chain_view = anchor::Chain {
        first: cat.hash_at(1)?,
        head: cat.head()?,
        broken: cat.verify_chain()?.err().map(|b| (b.seq, b.problem)),
    };
    let mut judged = Vec::new();
    for s in &stores {
        let hash_at = |seq: i64| cat.hash_at(seq).ok().flatten();
        judged.push(anchor::judge(s.as_ref(), public.as_ref(), &chain_view, &hash_at)?);
    }
    let anchors_ok =
        judged.iter().all(|j| matches!(j.verdict, anchor::Verdict::Intact { .. } | anchor::Verdict::NoAnchors));
    verify(common, &cat, &judged, anchors_ok)
}

/// Every check of the state; exit 1 when any fails, naming what and where.
fn verify(common: &Common, cat: &catalog::Catalog, judged: &[anchor::Judgement], anchors_ok: bool) -> Result<u8> {
    let integrity = cat.integrity()?;
    let missing = cat.missing_safeguards()?;
    let chain = cat.verify_chain()?;
    let records = cat.check_records()?;
    let ok = integrity.is_empty() && missing.is_empty() && chain.is_ok() && records.mismatches.is_empty() && anchors_ok;
    if common.json {
        let chain = match &chain {
            Ok(n) => json!({"ok": true, "events": n}),
            Err(b) => json!({"ok": false, "seq": b.seq, "problem": b.problem}),
        };
        println!(
            "{}",
            json!({
                "ok": ok, "integrity": integrity, "missing_triggers": missing, "chain": chain,
                "events": chain["events"], "records": records, "anchors": judged,
            })
        );
        return Ok(if ok { exit::OK } else { exit::FAILED });
    }
    match integrity.as_slice() {
        [] if cat.is_postgres() => println!("database ok: PostgreSQL {}", cat.path().display()),
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
    for j in judged {
        let ok = matches!(j.verdict, anchor::Verdict::Intact { .. } | anchor::Verdict::NoAnchors);
        println!("anchors {}: {} ({} checkpoint(s) listed)", j.store, j.verdict, j.listed);
        if let Some((cp, at)) = j.newest.as_ref().filter(|_| !ok) {
            println!("  newest checkpoint: event {} hash {} at {} ({at})", cp.seq, cp.hash, cp.time);
        }
        match &j.last_good {
            Some((cp, at)) => {
                println!("  last good checkpoint: event {} hash {} at {} ({at})", cp.seq, cp.hash, cp.time)
            }
            None if !ok => println!("  no checkpoint agrees with this state: restore it from a backup"),
            None => {}
        }
        for (at, why) in &j.rejected {
            println!("  ignored {at}: {why}");
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

pub fn state(common: &Common, cmd: &StateCommand) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    match cmd {
        StateCommand::Copy { to, to_password_env } => {
            let password = to_password_env
                .as_ref()
                .map(|v| std::env::var(v).map_err(|_| UsageError(format!("--to-password-env: {v} is not set"))))
                .transpose()?;
            let dest = if to.starts_with("postgres://") || to.starts_with("postgresql://") {
                catalog::Location::postgres(to, password.as_deref()).map_err(|e| UsageError(format!("--to: {e}")))?
            } else {
                catalog::Location::File(std::path::PathBuf::from(to))
            };
            let from = catalog_read(&cfg)?;
            let target = catalog::Catalog::open_at(&dest)?;
            // The destination's run lock too: nothing acts on a history while it arrives.
            let _lock = catalog::RunLock::acquire_at(&dest, false, "amictl state copy", |_| {}, || false)?;
            let copied = from.copy_to(&target)?;
            if common.json {
                println!("{}", json!({"from": from.path(), "to": target.path(), "copied": copied}));
            } else {
                let rows: i64 = copied.tables.iter().map(|(_, n)| n).sum();
                println!(
                    "copied {} to {}: {rows} row(s), {} audit event(s) re-hashed on the target{}",
                    from.path().display(),
                    target.path().display(),
                    copied.events,
                    copied.head.as_ref().map(|(s, h)| format!(", head event {s} {h}")).unwrap_or_default()
                );
            }
            Ok(exit::OK)
        }
        StateCommand::Backup { dest } => {
            if cfg.state_db.is_none() && !cfg.state.exists() {
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
