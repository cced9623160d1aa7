//! `amictl advisories`: missing fixes per image version (from its line's source), or for
//! any manifest against any feed (`--manifest`, outside the catalog).

use anyhow::{Result, anyhow};
use config::AdvisoryFeed;
use engine::advisories::{self, Mode};
use engine::feeds::{self, Loaded};
use jiff::Timestamp;
use provider::{Finding, Severity};
use serde_json::json;

use super::{catalog_read, load_config_reading};
use crate::cli::{AdvisoriesArgs, Common};
use crate::wiring::{self, Needs};
use crate::{UsageError, exit};

pub fn run(common: &Common, args: &AdvisoriesArgs) -> Result<u8> {
    let min = match &args.min_severity {
        Some(s) => Severity::threshold(s)
            .ok_or_else(|| UsageError(format!("--min-severity {s}: use low, medium, important or critical")))?,
        None => Severity::Low,
    };
    if let Some(manifest) = &args.manifest {
        return ad_hoc(common, args, manifest, min);
    }
    let cfg = load_config_reading(common)?;
    let cat = catalog_read(&cfg)?;
    let (image, version) = match args.target.as_deref().map(|t| t.split_once('@').unwrap_or((t, ""))) {
        Some((i, v)) => (Some(i.to_string()), (!v.is_empty()).then(|| v.to_string())),
        None => (None, None),
    };
    let lines: Vec<&config::Image> =
        cfg.images.values().filter(|i| image.as_deref().is_none_or(|n| n == i.name)).collect();
    // The cloud only for the lines that read Inspector; when it cannot be reached those
    // lines' checks say so (stale), and the feed lines are still checked.
    let providers = if lines.iter().any(|l| l.advisories == Some(config::AdvisoryFeed::Inspector)) {
        wiring::providers(&cfg, Needs { cloud: true }).ok()
    } else {
        None
    };
    let inspector = providers.as_ref().and_then(|p| p.inspector.as_deref());
    let mut any = false;
    let mut reports = Vec::new();
    for line in lines {
        let versions = cat.versions(Some(&line.name))?;
        let v = match &version {
            Some(want) => versions.iter().find(|v| &v.version == want),
            None => advisories::newest_available(&versions),
        };
        let Some(v) = v else { continue };
        let subject = advisories::Subject::of(&cat, line, v)?;
        let Some(checked) = advisories::check(&cfg, &subject, inspector, Mode::Live, Timestamp::now()) else {
            continue;
        };
        let found: Vec<Finding> = checked.findings.into_iter().filter(|f| f.severity >= min).collect();
        any |= !found.is_empty();
        reports.push((json!({"image": line.name, "version": v.version, "feed": checked.source}), found, checked.stale));
    }
    if let (Some(i), true) = (&image, reports.is_empty()) {
        return Err(anyhow!("no checked version of `{i}` (is it built, and does it have `advisories = {{ … }}`?)"));
    }
    if common.json {
        let out: Vec<serde_json::Value> = reports
            .iter()
            .map(|(head, found, stale)| {
                let mut v = head.clone();
                v["stale"] = json!(stale);
                v["findings"] = json!(found);
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (head, found, stale) in &reports {
            print(false, head, found, stale.as_deref())?;
        }
    }
    Ok(if any { exit::NONCOMPLIANT } else { exit::OK })
}

fn ad_hoc(common: &Common, args: &AdvisoriesArgs, manifest: &std::path::Path, min: Severity) -> Result<u8> {
    let text = toe::input::read_text(manifest, toe::input::FEED_LIMIT).map_err(|e| UsageError(e.to_string()))?;
    let (kind, installed) =
        vuln::parse_manifest(&text).map_err(|e| UsageError(format!("{}: {e}", manifest.display())))?;
    if installed.is_empty() {
        return Err(UsageError(format!("{}: no packages (an empty manifest finds nothing)", manifest.display())).into());
    }
    let feed = match (&args.updateinfo, &args.debian_tracker) {
        (Some(u), None) => AdvisoryFeed::Updateinfo { location: u.clone() },
        (None, Some(d)) => AdvisoryFeed::DebianTracker {
            location: d.clone(),
            release: args.release.clone().ok_or_else(|| UsageError("--debian-tracker needs --release".into()))?,
        },
        _ => return Err(UsageError("--manifest needs exactly one of --updateinfo or --debian-tracker".into()).into()),
    };
    let text = feeds::fetch(feed.location(), None).map_err(UsageError)?.0;
    let loaded = Loaded::fresh(feeds::parse(&feed, &text).map_err(UsageError)?);
    let found: Vec<Finding> = loaded.findings(&installed).into_iter().filter(|f| f.severity >= min).collect();
    print(common.json, &json!({"manifest": manifest, "kind": kind, "packages": installed.len()}), &found, None)?;
    Ok(if found.is_empty() { exit::OK } else { exit::NONCOMPLIANT })
}

fn print(json: bool, head: &serde_json::Value, found: &[Finding], stale: Option<&str>) -> Result<()> {
    if json {
        let mut v = head.clone();
        v["stale"] = json!(stale);
        v["findings"] = json!(found);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let title = match (head["image"].as_str(), head["version"].as_str()) {
        (Some(i), Some(v)) => format!("{i}@{v}"),
        _ => head["manifest"].as_str().unwrap_or("manifest").to_string(),
    };
    println!("{title}: {} finding(s)", found.len());
    if let Some(s) = stale {
        println!("  STALE advisory check: {s}");
    }
    for f in found {
        println!(
            "  {:<10} {:<24} {:<36} {} → {}  {}",
            f.severity.to_string(),
            f.advisory,
            f.package,
            f.installed,
            f.fixed.as_deref().unwrap_or("(no fix yet)"),
            f.cves.join(",")
        );
    }
    Ok(())
}
