//! The advisory check of one version, the same for `plan`, `advisories` and the report:
//! its manifest against its line's feed, or Inspector's findings on hosts running it.

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

/// The newest available version of a line: by build time, then name — the planner's rule.
pub fn newest_available(versions: &[catalog::Version]) -> Option<&catalog::Version> {
    versions.iter().filter(|v| v.state == BuildState::Available).max_by(|a, b| {
        crate::views::time(a.built_at()).cmp(&crate::views::time(b.built_at())).then_with(|| a.version.cmp(&b.version))
    })
}

/// A version to check, with what the check reads from the catalog (taken up front, so the
/// check itself — network, Inspector — runs without the catalog).
pub struct Subject {
    /// The line.
    pub image: config::Image,
    /// The version.
    pub version: catalog::Version,
    packages: Vec<provider::Package>,
    amis: Vec<AmiRef>,
}

impl Subject {
    /// `version` of `image`.
    pub fn of(cat: &Catalog, image: &config::Image, version: &catalog::Version) -> Result<Subject, EngineError> {
        Ok(Subject {
            image: image.clone(),
            version: version.clone(),
            packages: cat.packages(&version.build_id)?,
            amis: cat.distributions(&version.build_id)?.into_iter().map(|d| d.distribution.ami()).collect(),
        })
    }

    /// The newest available version of `image`, if any.
    pub fn newest(cfg: &Config, cat: &Catalog, image: &config::Image) -> Result<Option<Subject>, EngineError> {
        let _ = cfg;
        let versions = cat.versions(Some(&image.name))?;
        newest_available(&versions).map(|v| Subject::of(cat, image, v)).transpose()
    }
}

/// Checks a version against its line's source; `None` when the line has none (or uses
/// Inspector in [`Mode::Cached`], or has no cached copy yet).
pub fn check(
    cfg: &Config,
    subject: &Subject,
    inspector: Option<&dyn AdvisorySource>,
    mode: Mode,
    now: Timestamp,
) -> Option<Checked> {
    let feed = subject.image.advisories.as_ref()?;
    let done = |findings, stale, loaded| {
        Some(Checked {
            image: subject.image.name.clone(),
            version: subject.version.clone(),
            source: feed.location().to_string(),
            findings,
            stale,
            loaded,
        })
    };
    match feed {
        AdvisoryFeed::Inspector => {
            if mode == Mode::Cached {
                return None;
            }
            let found = match inspector {
                None => Err("Inspector findings need the AWS provider ([aws] and accounts)".to_string()),
                Some(source) => source.findings(&subject.amis).map_err(|e| e.to_string()),
            };
            match found {
                Ok(mut f) => {
                    f.sort_by(|a, b| (b.severity, &a.advisory, &a.package).cmp(&(a.severity, &b.advisory, &b.package)));
                    f.dedup_by(|a, b| a.advisory == b.advisory && a.package == b.package);
                    done(f, None, None)
                }
                Err(e) => done(Vec::new(), Some(e), None),
            }
        }
        _ => {
            let loaded = match mode {
                Mode::Live => feeds::load(&cfg.cache_dir, feed, now),
                Mode::Cached => feeds::load_cached(&cfg.cache_dir, feed)?,
            };
            let findings = loaded.findings(&subject.packages);
            let stale = loaded.stale.clone();
            done(findings, stale, Some(loaded))
        }
    }
}
