//! `amictl import`: adopt a line's existing AMIs as versions.

use anyhow::Result;
use engine::Engine;

use super::{actor, catalog, load_config};
use crate::cli::{Common, ImportArgs};
use crate::ui::Ui;
use crate::wiring::{self, Needs};
use crate::{UsageError, exit};

pub fn run(common: &Common, args: &ImportArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    if let Some(only) = &args.image
        && !cfg.images.contains_key(only)
    {
        let known = cfg.images.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err(
            UsageError(format!("no image line `{only}` in {} (known: {known})", common.config.display())).into()
        );
    }
    let providers = wiring::providers(&cfg, Needs { cloud: true })?;
    if !providers.lines.values().any(|l| l.importer.is_some()) {
        return Err(UsageError(format!(
            "{}: no line says where to import from: add import = {{ name = \"<AMI name pattern>\", owner = \"self\" }} to a line, or use an Image Builder line",
            common.config.display()
        ))
        .into());
    }
    if let Some(only) = &args.image
        && providers.lines.get(only).is_some_and(|l| l.importer.is_none())
    {
        return Err(UsageError(format!(
            "image line `{only}` says nowhere to import from: add import = {{ name = \"<AMI name pattern>\", owner = \"self\" }}, or make it an Image Builder line"
        ))
        .into());
    }
    let ui = std::sync::Arc::new(Ui::new(common.json));
    // A dry run with no history yet reads an empty one, and creates nothing.
    let scratch = std::env::temp_dir().join(format!("amictl-import-dry-run-{}.db", std::process::id()));
    let cat = match (args.dry_run, cfg.state_db.is_some() || cfg.state.exists()) {
        (true, true) => super::catalog_read(&cfg)?,
        (true, false) => catalog::Catalog::open(&scratch)?,
        (false, _) => catalog(&cfg)?,
    };
    let engine = Engine::new(cfg, cat, providers).with_progress(ui.clone()).with_actor(actor());
    let lines = engine.import(args.image.as_deref(), args.dry_run);
    ui.done();
    drop(engine);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
    }
    let lines = lines?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"dry_run": args.dry_run, "lines": lines}))?);
        return Ok(exit::OK);
    }
    let verb = if args.dry_run { "would adopt" } else { "adopted" };
    for l in &lines {
        eprintln!("{} ({}): {verb} {}, {} already known", l.image, l.source, l.adopted.len(), l.known.len());
        for a in &l.adopted {
            let parent =
                a.image.parent.as_ref().map_or("parent not recorded".to_string(), |p| format!("parent {}", p.id));
            eprintln!(
                "  {:<14} {}  made {}  {} cop{}  {} package(s)  {parent}",
                a.version,
                a.image.name,
                a.image.created,
                a.image.copies.len(),
                if a.image.copies.len() == 1 { "y" } else { "ies" },
                a.image.packages.len()
            );
            for c in &a.image.copies {
                eprintln!("      {} {}", c.target, c.image_id);
            }
        }
        for k in &l.known {
            eprintln!("  known          {} is {} ({})", k.name, k.version, k.why);
        }
    }
    if args.dry_run {
        eprintln!("dry run: nothing was recorded");
    }
    Ok(exit::OK)
}
