//! The advisory check of one version, the same for `plan`, `advisories` and the report:
//! its manifest against its line's feed, or Inspector's findings on hosts running it.

use std::collections::BTreeMap;

use catalog::{BuildState, Catalog};
use config::{AdvisoryFeed, Config};
use jiff::Timestamp;
use provider::{AdvisorySource, AmiRef, Finding, Severity};

use crate::EngineError;
use crate::feeds::{self, Loaded};

/// How fresh the check must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fetch the feed (through its cache), ask Inspector.
    Live,
    /// The feed's last good copy only; no network, no Inspector (reports read state).
    Cached,
}

/// One version checked.
pub struct Checked {
    /// The line.
    pub image: String,
    /// The version.
    pub version: catalog::Version,
    /// Where its findings come from.
    pub source: String,
    /// What it lacks, most severe first.
    pub findings: Vec<Finding>,
    /// Why the check is not current (the findings are then from the last good copy).
    pub stale: Option<String>,
    loaded: Option<Loaded>,
}

impl Checked {
    /// When a finding's fix was published: the advisory's date, or when amictl first saw it.
    pub fn published(&self, f: &Finding) -> Timestamp {
        match &self.loaded {
            Some(l) => l.published(f),
            None => [f.issued.clone(), format!("{}Z", f.issued)]
                .iter()
                .find_map(|s| s.parse::<Timestamp>().ok())
                .unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }

    /// The planner's view: fixes at or above `threshold` (with a fix), and staleness.
    pub fn for_policy(&self, threshold: Severity) -> policy::AdvisoryCheck {
        let fixes: Vec<policy::MissingFix> = self
            .findings
            .iter()
            .filter(|f| f.severity >= threshold)
            .filter_map(|f| {
                Some(policy::MissingFix {
                    published: self.published(f),
                    advisory: f.advisory.clone(),
                    severity: f.severity.to_string(),
                    package: f.package.clone(),
                    installed: f.installed.clone(),
                    fixed: f.fixed.clone()?,
                })
            })
            .collect();
        match &self.stale {
            Some(reason) => policy::AdvisoryCheck::Stale { reason: reason.clone(), findings: fixes },
            None => policy::AdvisoryCheck::Findings(fixes),
        }
    }
}

/// The policy's rebuild threshold.
pub fn threshold(cfg: &Config) -> Severity {
    Severity::threshold(&cfg.policy.rebuild_on_severity).unwrap_or(Severity::Important)
}

/// The newest available version of a line (by build time, then name, as the planner).
pub fn newest_available(versions: &[catalog::Version]) -> Option<&catalog::Version> {
    versions
        .iter()
        .filter(|v| v.state == BuildState::Available)
        .max_by(|a, b| a.built_at().cmp(b.built_at()).then_with(|| a.version.cmp(&b.version)))
}

/// Checks `version` of `image` against its line's source; `None` when the line has none
/// (or Inspector in [`Mode::Cached`]).
pub fn check(
    cfg: &Config,
    cat: &Catalog,
    inspector: Option<&dyn AdvisorySource>,
    image: &config::Image,
    version: &catalog::Version,
    mode: Mode,
    now: Timestamp,
) -> Result<Option<Checked>, EngineError> {
    let Some(feed) = &image.advisories else { return Ok(None) };
    let done = |findings, stale, loaded| {
        Some(Checked {
            image: image.name.clone(),
            version: version.clone(),
            source: feed.location().to_string(),
            findings,
            stale,
            loaded,
        })
    };
    match feed {
        AdvisoryFeed::Inspector => {
            if mode == Mode::Cached {
                return Ok(None);
            }
            let amis: Vec<AmiRef> =
                cat.distributions(&version.build_id)?.into_iter().map(|d| d.distribution.ami()).collect();
            let found = match inspector {
                None => Err("Inspector findings need the AWS provider ([aws] and accounts)".to_string()),
                Some(source) => source.findings(&amis).map_err(|e| e.to_string()),
            };
            Ok(match found {
                Ok(mut f) => {
                    f.sort_by(|a, b| (b.severity, &a.advisory, &a.package).cmp(&(a.severity, &b.advisory, &b.package)));
                    f.dedup_by(|a, b| a.advisory == b.advisory && a.package == b.package);
                    done(f, None, None)
                }
                Err(e) => done(Vec::new(), Some(e), None),
            })
        }
        _ => {
            let loaded = match mode {
                Mode::Live => feeds::load(&cfg.cache_dir, feed, now),
                Mode::Cached => match feeds::load_cached(&cfg.cache_dir, feed) {
                    Some(l) => l,
                    None => return Ok(None),
                },
            };
            let findings = loaded.findings(&cat.packages(&version.build_id)?);
            let stale = loaded.stale.clone();
            Ok(done(findings, stale, Some(loaded)))
        }
    }
}

/// The newest available version of every line with a source, checked (the planner's input).
pub fn check_lines(
    cfg: &Config,
    cat: &Catalog,
    inspector: Option<&dyn AdvisorySource>,
    mode: Mode,
    now: Timestamp,
) -> Result<BTreeMap<String, Checked>, EngineError> {
    let mut out = BTreeMap::new();
    for image in cfg.images.values().filter(|i| i.advisories.is_some()) {
        let versions = cat.versions(Some(&image.name))?;
        let Some(newest) = newest_available(&versions) else { continue };
        if let Some(c) = check(cfg, cat, inspector, image, newest, mode, now)? {
            out.insert(image.name.clone(), c);
        }
    }
    Ok(out)
}
