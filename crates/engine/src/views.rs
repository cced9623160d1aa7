//! What several commands show, computed once: releases, each line's status (age, due
//! date, deprecations), consumers as their latest scans stand at a given time, exposure.

use std::collections::{BTreeMap, BTreeSet};

use catalog::{BuildState, Catalog, Published};
use config::Config;
use fleet::{Assessment, Summary};
use jiff::Timestamp;
use serde::Serialize;

use crate::EngineError;
use crate::advisories::{newest_available, threshold};

const DAY: i64 = 86_400;

/// A time the catalog wrote, read back (a damaged value reads as the epoch).
pub fn time(text: &str) -> Timestamp {
    text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

/// When a version was released: first published, or finished when it is never published.
pub fn released_at(v: &catalog::Version, published: &[Published]) -> Timestamp {
    published.iter().map(|p| time(&p.at)).min().unwrap_or_else(|| time(v.built_at()))
}

/// Every released version with every AMI that is it (the build's own, regional copies,
/// consumers' copies), as the fleet judgement reads them.
pub fn releases(cat: &Catalog) -> Result<Vec<fleet::Release>, EngineError> {
    let mut out = Vec::new();
    for v in cat.versions(None)? {
        if !matches!(v.state, BuildState::Available | BuildState::Retired) {
            continue;
        }
        let published = cat.distributions(&v.build_id)?;
        let mut amis: BTreeSet<String> = published.iter().map(|p| p.distribution.image_id.clone()).collect();
        amis.extend(cat.artifacts(&v.build_id)?.iter().filter_map(|a| a.ami()).map(|a| a.image_id));
        out.push(fleet::Release {
            image: v.image.clone(),
            version: v.version.clone(),
            released_at: released_at(&v, &published),
            amis,
        });
    }
    Ok(out)
}

/// Whole days from `earlier` to `later`, rounded down.
pub fn days_between(earlier: Timestamp, later: Timestamp) -> i64 {
    (later.as_second() - earlier.as_second()).div_euclid(DAY)
}

/// How a version's deprecation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeprecationStatus {
    /// When its AMIs are (to be) deprecated.
    pub at: String,
    /// AMIs deprecated.
    pub set: usize,
    /// AMIs whose last attempt failed, with why.
    pub failed: Vec<String>,
}

/// A version's deprecation, when one was attempted.
pub fn deprecation(cat: &Catalog, build_id: &str) -> Result<Option<DeprecationStatus>, EngineError> {
    let records = cat.deprecations(build_id)?;
    let Some(first) = records.first() else { return Ok(None) };
    Ok(Some(DeprecationStatus {
        at: first.at.clone(),
        set: records.iter().filter(|d| d.error.is_none()).count(),
        failed: records.iter().filter_map(|d| Some(format!("{}: {}", d.ami, d.error.as_ref()?))).collect(),
    }))
}

/// One image line at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct LineStatus {
    /// The line.
    pub image: String,
    /// Its newest available version.
    pub newest: Option<String>,
    /// Whole days since that version was built.
    pub age_days: Option<i64>,
    /// Whole days until it is due for a rebuild (as the planner counts).
    pub due_in_days: Option<i64>,
    /// Available versions.
    pub available: usize,
    /// Versions whose deprecation failed, with why.
    pub deprecation_failures: Vec<String>,
}

/// Every configured line's status as of `now`.
pub fn lines(cfg: &Config, cat: &Catalog, now: Timestamp) -> Result<Vec<LineStatus>, EngineError> {
    let mut out = Vec::new();
    for name in cfg.images.keys() {
        let versions = cat.versions(Some(name))?;
        let newest = newest_available(&versions);
        let age = newest.map(|v| now.as_second() - time(v.built_at()).as_second());
        let mut failures = Vec::new();
        for v in &versions {
            if let Some(d) = deprecation(cat, &v.build_id)? {
                failures.extend(d.failed.iter().map(|f| format!("{}: {f}", v.version)));
            }
        }
        out.push(LineStatus {
            image: name.clone(),
            newest: newest.map(|v| v.version.clone()),
            // A `--now` before the build would make it negative: it is 0 days old then.
            age_days: age.map(|a| a.max(0).div_euclid(DAY)),
            due_in_days: age.map(|a| policy::due_in_days(cfg.policy.max_age_seconds, a)),
            available: versions.iter().filter(|v| v.state == BuildState::Available).count(),
            deprecation_failures: failures,
        });
    }
    Ok(out)
}

/// A consumer as its latest scan stands, judged again at a time.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerView {
    /// The consumer.
    pub consumer: String,
    /// Its account.
    pub account: String,
    /// Its line.
    pub image: String,
    /// Who owns it.
    pub owner: Option<String>,
    /// When it was scanned.
    pub scanned_at: Option<String>,
    /// Its totals.
    pub summary: Summary,
    /// Its hosts.
    pub hosts: Vec<Assessment>,
}

/// Every consumer from its latest scan, with deadlines judged against `now` from the facts
/// the scan recorded.
pub fn consumers(cfg: &Config, cat: &Catalog, now: Timestamp) -> Result<Vec<ConsumerView>, EngineError> {
    let index = fleet::Releases::new(releases(cat)?);
    let scans = cat.latest_scans()?;
    let mut out = Vec::new();
    for c in cfg.consumers.values() {
        let exemptions = crate::fleet::exemptions(c);
        let unknown = |why: &str| Summary { consumer: c.name.clone(), unknown: Some(why.into()), ..Summary::default() };
        let (summary, hosts, at) = match scans.iter().find(|s| s.consumer == c.name) {
            None => (unknown("never scanned"), Vec::new(), None),
            Some(catalog::Scan { at, unknown: Some(why), .. }) => (unknown(why), Vec::new(), Some(at.clone())),
            Some(catalog::Scan { at, unknown: None, hosts: rows, .. }) => {
                let hosts: Vec<Assessment> = rows
                    .iter()
                    .filter_map(|r| serde_json::from_str::<Assessment>(&r.detail).ok())
                    .map(|a| fleet::assess(a.host, &index, &exemptions, cfg.policy.rollout_sla_seconds, now))
                    .collect();
                (fleet::summarize(&c.name, &hosts), hosts, Some(at.clone()))
            }
        };
        out.push(ConsumerView {
            consumer: c.name.clone(),
            account: c.account.clone(),
            image: c.image.clone(),
            owner: c.owner.clone(),
            scanned_at: at,
            summary,
            hosts,
        });
    }
    Ok(out)
}

/// Running instances exposed to one finding at or above the rebuild threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Exposure {
    /// The advisory.
    pub advisory: String,
    /// Its severity.
    pub severity: String,
    /// The line.
    pub image: String,
    /// Running hosts on a version lacking its fix.
    pub instances: usize,
}

/// From each line's cached feed (read once per line): how many running hosts run a version
/// missing each fix. Inspector findings are live, not cached, so they are not counted here.
pub fn exposure(cfg: &Config, cat: &Catalog, consumers: &[ConsumerView]) -> Result<Vec<Exposure>, EngineError> {
    let threshold = threshold(cfg);
    let mut running: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for a in consumers.iter().flat_map(|c| &c.hosts) {
        if let (Some(i), Some(v), "running") = (&a.image, &a.version, a.host.state.as_str()) {
            *running.entry(i.clone()).or_default().entry(v.clone()).or_default() += 1;
        }
    }
    let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (image, versions_running) in running {
        let Some(feed) = cfg.images.get(&image).and_then(|i| i.advisories.as_ref()) else { continue };
        let Some(loaded) = crate::feeds::load_cached(&cfg.cache_dir, feed) else { continue };
        let versions = cat.versions(Some(&image))?;
        for (version, hosts) in versions_running {
            let Some(v) = versions.iter().find(|x| x.version == version) else { continue };
            let mut seen = BTreeSet::new();
            for f in loaded.findings(&cat.packages(&v.build_id)?) {
                if f.severity >= threshold && f.fixed.is_some() && seen.insert(f.advisory.clone()) {
                    *counts.entry((f.advisory, f.severity.to_string(), image.clone())).or_default() += hosts;
                }
            }
        }
    }
    let mut out: Vec<Exposure> = counts
        .into_iter()
        .map(|((advisory, severity, image), instances)| Exposure { advisory, severity, image, instances })
        .collect();
    out.sort_by(|a, b| b.instances.cmp(&a.instances).then_with(|| a.advisory.cmp(&b.advisory)));
    Ok(out)
}

/// The page for people (and `/metrics`): lines, consumers, exposure, at one time.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The time it judges at.
    pub generated: String,
    /// Every line.
    pub images: Vec<LineStatus>,
    /// Every consumer.
    pub consumers: Vec<ConsumerView>,
    /// Exposure to advisories.
    pub exposure: Vec<Exposure>,
}

/// The report as of `now`, from the state alone (no cloud calls).
pub fn report(cfg: &Config, cat: &Catalog, now: Timestamp) -> Result<Report, EngineError> {
    let consumers = consumers(cfg, cat, now)?;
    let exposure = exposure(cfg, cat, &consumers)?;
    Ok(Report { generated: now.to_string(), images: lines(cfg, cat, now)?, consumers, exposure })
}

/// Packages added, removed and changed between two manifests (`name:arch version`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManifestDiff {
    /// New packages.
    pub added: Vec<String>,
    /// Gone packages.
    pub removed: Vec<String>,
    /// Version changes.
    pub changed: Vec<String>,
}

/// What changed between two versions' manifests.
pub fn manifest_diff(old: &[catalog::Package], new: &[catalog::Package]) -> ManifestDiff {
    let key = |p: &catalog::Package| format!("{}:{}", p.name, p.arch);
    let old: BTreeMap<String, &str> = old.iter().map(|p| (key(p), p.version.as_str())).collect();
    let new: BTreeMap<String, &str> = new.iter().map(|p| (key(p), p.version.as_str())).collect();
    ManifestDiff {
        added: new.iter().filter(|(k, _)| !old.contains_key(*k)).map(|(k, v)| format!("{k} {v}")).collect(),
        removed: old.iter().filter(|(k, _)| !new.contains_key(*k)).map(|(k, v)| format!("{k} {v}")).collect(),
        changed: new
            .iter()
            .filter_map(|(k, v)| old.get(k).filter(|o| *o != v).map(|o| format!("{k} {o} → {v}")))
            .collect(),
    }
}
