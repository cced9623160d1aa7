//! `amictl audit verify | export | log`.

use anyhow::Result;
use serde_json::json;

use super::{catalog, load_config};
use crate::cli::{AuditCommand, Common};
use crate::exit;

pub fn run(common: &Common, cmd: &AuditCommand) -> Result<u8> {
    let cfg = load_config(common)?;
    let cat = catalog(&cfg)?;
    match cmd {
        AuditCommand::Verify => match cat.verify_chain()? {
            Ok(n) => {
                if common.json {
                    println!("{}", json!({"ok": true, "events": n}));
                } else {
                    println!("audit chain ok: {n} event(s) verified");
                }
                Ok(exit::OK)
            }
            Err(b) => {
                if common.json {
                    println!("{}", json!({"ok": false, "seq": b.seq, "problem": b.problem}));
                } else {
                    println!("audit chain BROKEN at event {}: {}", b.seq, b.problem);
                }
                Ok(exit::FAILED)
            }
        },
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
