//! `amictl images` and `amictl show`.

use std::collections::BTreeSet;

use anyhow::Result;
use catalog::BuildState;
use engine::views;
use jiff::Timestamp;
use serde_json::json;

use super::{catalog_read, load_config_reading};
use crate::cli::{Common, ImagesArgs, ShowArgs};
use crate::render::table;
use crate::{UsageError, exit};

pub fn images(common: &Common, args: &ImagesArgs) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let cat = catalog_read(&cfg)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&records(&cat, args.image.as_deref())?)?);
        return Ok(exit::OK);
    }
    let versions = cat.versions(args.image.as_deref())?;
    let mut published = Vec::new();
    let mut deprecations = Vec::new();
    for v in &versions {
        published.push(cat.distributions(&v.build_id)?);
        deprecations.push(views::deprecation(&cat, &v.build_id)?);
    }
    if versions.is_empty() {
        println!("No image versions yet. Run `amictl apply`.");
        return Ok(exit::OK);
    }
    let now = Timestamp::now();
    let mut rows = vec![
        ["IMAGE", "VERSION", "STATUS", "AGE", "PARENT", "PACKAGES", "TESTS", "PUBLISHED", "DEPRECATED"]
            .map(String::from)
            .to_vec(),
    ];
    for ((v, d), dep) in versions.iter().zip(&published).zip(&deprecations).rev() {
        let age = format!("{}d", views::days_between(views::time(v.built_at()), now));
        let parent =
            if v.parent_id.is_empty() { v.parent_name.clone() } else { format!("{} ({})", v.parent_name, v.parent_id) };
        let tests = if v.tests_passed + v.tests_failed == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", v.tests_passed, v.tests_passed + v.tests_failed)
        };
        let regions: BTreeSet<&str> = d.iter().map(|x| x.distribution.target.region.as_str()).collect();
        let accounts: BTreeSet<&str> = d
            .iter()
            .filter(|x| x.distribution.how != provider::How::Owner)
            .map(|x| x.distribution.target.account.as_str())
            .collect();
        let published = if d.is_empty() {
            "-".to_string()
        } else {
            format!("{} region(s), {} account(s)", regions.len(), accounts.len())
        };
        let deprecated = match dep {
            None => "-".to_string(),
            Some(s) if s.failed.is_empty() => s.at.get(..10).unwrap_or(&s.at).to_string(),
            Some(s) => format!("FAILED for {} AMI(s): {}", s.failed.len(), s.failed.join("; ")),
        };
        rows.push(vec![
            v.image.clone(),
            v.version.clone(),
            v.state.as_str().to_string(),
            age,
            parent,
            v.package_count.to_string(),
            tests,
            published,
            deprecated,
        ]);
    }
    table::print(&rows, &[3, 5]);
    for v in versions.iter().rev().filter(|v| v.state == BuildState::Available) {
        if let Some(why) = &v.cleanup {
            println!("  {}@{} cannot be retired yet: {why}", v.image, v.version);
        }
    }
    Ok(exit::OK)
}

/// Versions as `images --json` and `GET /api/images/{image}/versions` give them: each
/// with where it was published and its deprecation.
pub fn records(cat: &catalog::Catalog, image: Option<&str>) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for v in cat.versions(image)? {
        let mut value = serde_json::to_value(&v)?;
        value["distributions"] = serde_json::to_value(cat.distributions(&v.build_id)?)?;
        value["deprecation"] = serde_json::to_value(views::deprecation(cat, &v.build_id)?)?;
        out.push(value);
    }
    Ok(out)
}

pub fn show(common: &Common, args: &ShowArgs) -> Result<u8> {
    let cfg = load_config_reading(common)?;
    let cat = catalog_read(&cfg)?;
    let (image, version) = match args.target.split_once('@') {
        Some((i, v)) => (i.to_string(), Some(v.to_string())),
        None => (args.target.clone(), None),
    };
    let versions = cat.versions(Some(&image))?;
    let idx = match &version {
        Some(v) => versions.iter().position(|x| &x.version == v),
        // The newest available, by the planner's rule; else the latest attempt.
        None => engine::advisories::newest_available(&versions)
            .and_then(|n| versions.iter().position(|x| x.build_id == n.build_id))
            .or(versions.len().checked_sub(1)),
    }
    .ok_or_else(|| UsageError(format!("no version {} of image `{image}`", version.as_deref().unwrap_or("(any)"))))?;
    let v = &versions[idx];
    let previous =
        versions[..idx].iter().rev().find(|p| matches!(p.state, BuildState::Available | BuildState::Retired));
    let packages = cat.packages(&v.build_id)?;
    let diff = match previous {
        Some(p) => Some(views::manifest_diff(&cat.packages(&p.build_id)?, &packages)),
        None => None,
    };
    let artifacts = cat.artifacts(&v.build_id)?;
    let tests = cat.tests(&v.build_id)?;
    let distributions = cat.distributions(&v.build_id)?;
    let deprecations = cat.deprecations(&v.build_id)?;
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": v, "previous": previous.map(|p| &p.version), "artifacts": artifacts, "tests": tests,
                "distributions": distributions, "deprecations": deprecations, "manifest_diff": diff, "packages": packages,
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
    if let Some(why) = v.cleanup.as_ref().filter(|_| v.state == BuildState::Available) {
        println!("  retirement refused: {why}");
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
        println!("  artifact   {:<15} {:>12} bytes  sha256 {}  {}", a.kind.as_str(), a.size, a.sha256, a.path);
    }
    for p in &distributions {
        let d = &p.distribution;
        println!(
            "  published  {:<10} {:<10} {} ({}) {}",
            d.target.account,
            d.target.region,
            d.image_id,
            d.how.as_str(),
            if d.parameters.is_empty() { String::new() } else { format!("→ {}", d.parameters.join(",")) }
        );
    }
    for d in &deprecations {
        match &d.error {
            None => println!("  deprecated {} from {}", d.ami, d.at),
            Some(e) => println!("  deprecate  {} from {} FAILED: {e}", d.ami, d.at),
        }
    }
    println!("  packages   {}", packages.len());
    match (previous, diff) {
        (Some(p), Some(diff)) => {
            println!("  manifest   compared with {}:", p.version);
            for (label, items) in [("added", &diff.added), ("removed", &diff.removed), ("changed", &diff.changed)] {
                for item in items {
                    println!("    {label:<8} {item}");
                }
            }
            if diff.added.is_empty() && diff.removed.is_empty() && diff.changed.is_empty() {
                println!("    (no package changes)");
            }
        }
        _ => println!("  manifest   first version: no previous manifest to compare"),
    }
    Ok(exit::OK)
}
