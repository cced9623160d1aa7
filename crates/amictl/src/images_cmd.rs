//! `amictl images`, `amictl show` and `amictl audit`.

use std::collections::BTreeMap;

use anyhow::Result;
use catalog::{BuildState, Catalog};
use jiff::Timestamp;
use serde_json::json;

use crate::cli::{AuditCommand, Common, ImagesArgs, ShowArgs};
use crate::lifecycle::load_config;
use crate::{UsageError, clock, exit};

pub fn images(common: &Common, args: &ImagesArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let cat = Catalog::open(&cfg.state)?;
    let versions = cat.versions(args.image.as_deref())?;
    let mut published = Vec::new();
    for v in &versions {
        published.push(cat.distributions(&v.build_id)?);
    }
    if common.json {
        let mut out = Vec::new();
        for (v, d) in versions.iter().zip(&published) {
            let mut value = serde_json::to_value(v)?;
            value["distributions"] = serde_json::to_value(d)?;
            out.push(value);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    if versions.is_empty() {
        println!("No image versions yet. Run `amictl apply`.");
        return Ok(exit::OK);
    }
    let now = Timestamp::now();
    let mut rows =
        vec![["IMAGE", "VERSION", "STATUS", "AGE", "PARENT", "PACKAGES", "TESTS", "PUBLISHED"].map(String::from)];
    for (v, d) in versions.iter().zip(&published).rev() {
        let age = clock::days_between(v.finished_at.as_deref().unwrap_or(&v.started_at), now)
            .map(|d| format!("{d}d"))
            .unwrap_or_default();
        let parent =
            if v.parent_id.is_empty() { v.parent_name.clone() } else { format!("{} ({})", v.parent_name, v.parent_id) };
        let tests = if v.tests_passed + v.tests_failed == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", v.tests_passed, v.tests_passed + v.tests_failed)
        };
        let regions: std::collections::BTreeSet<&str> = d.iter().map(|x| x.region.as_str()).collect();
        let accounts: std::collections::BTreeSet<&str> =
            d.iter().filter(|x| x.how != "owner").map(|x| x.account.as_str()).collect();
        let published = if d.is_empty() {
            "-".to_string()
        } else {
            format!("{} region(s), {} account(s)", regions.len(), accounts.len())
        };
        rows.push([
            v.image.clone(),
            v.version.clone(),
            v.state.as_str().to_string(),
            age,
            parent,
            v.package_count.to_string(),
            tests,
            published,
        ]);
    }
    let widths: Vec<usize> = (0..8).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 3 || i == 5 { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(exit::OK)
}

pub fn show(common: &Common, args: &ShowArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let cat = Catalog::open(&cfg.state)?;
    let (image, version) = match args.target.split_once('@') {
        Some((i, v)) => (i.to_string(), Some(v.to_string())),
        None => (args.target.clone(), None),
    };
    let versions = cat.versions(Some(&image))?;
    let idx = match &version {
        Some(v) => versions.iter().position(|x| &x.version == v),
        None => versions.iter().rposition(|x| x.state == BuildState::Available).or(versions.len().checked_sub(1)),
    }
    .ok_or_else(|| UsageError(format!("no version {} of image `{image}`", version.as_deref().unwrap_or("(any)"))))?;
    let v = &versions[idx];
    let previous =
        versions[..idx].iter().rev().find(|p| matches!(p.state, BuildState::Available | BuildState::Retired));
    let packages = cat.packages(&v.build_id)?;
    let diff = match previous {
        Some(p) => manifest_diff(&cat.packages(&p.build_id)?, &packages),
        None => json!(null),
    };
    let artifacts = cat.artifacts(&v.build_id)?;
    let tests = cat.tests(&v.build_id)?;
    let distributions = cat.distributions(&v.build_id)?;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": v, "previous": previous.map(|p| &p.version), "artifacts": artifacts, "tests": tests,
                "distributions": distributions, "manifest_diff": diff, "packages": packages,
            }))?
        );
        return Ok(exit::OK);
    }
    println!("{}@{}  ({})", v.image, v.version, v.state.as_str());
    println!(
        "  build      {}  started {}  finished {}",
        v.build_id,
        v.started_at,
        v.finished_at.as_deref().unwrap_or("-")
    );
    println!("  reason     {}", v.reason);
    println!("  parent     {}  id {}  prepared {}", v.parent_name, v.parent_id, v.parent_created);
    println!("  recipe     {}", v.recipe_hash);
    if let Some(f) = &v.failure {
        println!("  failure    {f}");
    }
    println!("  logs       {}", v.log_dir);
    for c in &v.components {
        println!("  component  {} {} (document sha256 {})", c.name, c.version, &c.sha256[..12.min(c.sha256.len())]);
    }
    for t in &tests {
        println!(
            "  test       {} {}{}",
            if t.passed { "passed" } else { "FAILED" },
            t.name,
            if t.detail.is_empty() { String::new() } else { format!(": {}", t.detail) }
        );
    }
    for a in &artifacts {
        println!("  artifact   {:<15} {:>12} bytes  sha256 {}  {}", a.kind, a.size, a.sha256, a.path);
    }
    for d in &distributions {
        println!(
            "  published  {:<10} {:<10} {} ({}) {}",
            d.account,
            d.region,
            d.image_id,
            d.how,
            if d.parameters.is_empty() { String::new() } else { format!("→ {}", d.parameters) }
        );
    }
    println!("  packages   {}", packages.len());
    match previous {
        None => println!("  manifest   first version: no previous manifest to compare"),
        Some(p) => {
            println!("  manifest   compared with {}:", p.version);
            for (label, key) in [("added", "added"), ("removed", "removed"), ("changed", "changed")] {
                for item in diff[key].as_array().into_iter().flatten() {
                    println!("    {label:<8} {}", item.as_str().unwrap_or_default());
                }
            }
            if diff.as_object().is_some_and(|o| o.values().all(|v| v.as_array().is_some_and(Vec::is_empty))) {
                println!("    (no package changes)");
            }
        }
    }
    Ok(exit::OK)
}

/// Packages added, removed and changed between two manifests.
fn manifest_diff(old: &[catalog::Package], new: &[catalog::Package]) -> serde_json::Value {
    let key = |p: &catalog::Package| format!("{}:{}", p.name, p.arch);
    let old: BTreeMap<String, &str> = old.iter().map(|p| (key(p), p.version.as_str())).collect();
    let new: BTreeMap<String, &str> = new.iter().map(|p| (key(p), p.version.as_str())).collect();
    let added: Vec<String> =
        new.iter().filter(|(k, _)| !old.contains_key(*k)).map(|(k, v)| format!("{k} {v}")).collect();
    let removed: Vec<String> =
        old.iter().filter(|(k, _)| !new.contains_key(*k)).map(|(k, v)| format!("{k} {v}")).collect();
    let changed: Vec<String> =
        new.iter().filter_map(|(k, v)| old.get(k).filter(|o| *o != v).map(|o| format!("{k} {o} → {v}"))).collect();
    json!({"added": added, "removed": removed, "changed": changed})
}

pub fn audit(common: &Common, cmd: &AuditCommand) -> Result<u8> {
    let cfg = load_config(common)?;
    let cat = Catalog::open(&cfg.state)?;
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
