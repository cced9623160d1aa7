//! What the planner is given: the desired image lines, the policy, and what was observed.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use provider::{AmiRef, Distribution, ParentRef, RolloutMethod, Target};
use serde::Serialize;

/// The policy's numbers, as the planner reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    /// A version this old is rebuilt.
    pub max_age_seconds: i64,
    /// Whether a moved parent is a rebuild reason.
    pub rebuild_on_parent_update: bool,
    /// Available versions kept per line (the newest is never retired).
    pub keep_versions: usize,
    /// The threshold the advisory findings were filtered with (for the reason's text).
    pub rebuild_on_severity: String,
    /// How long hosts have to move once a successor is released; a superseded version's
    /// AMIs are deprecated at its successor's release plus this.
    pub rollout_sla_seconds: i64,
}

/// An image line as the config wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredImage {
    /// The line's name.
    pub name: String,
    /// Hash of everything that defines what a build produces.
    pub recipe_hash: String,
    /// Component name → version, as configured.
    pub components: BTreeMap<String, String>,
    /// Where its versions must be published.
    pub targets: BTreeSet<Target>,
    /// Its versions move SSM pointers in the consumers' accounts (`ssm_parameter`): a
    /// consumer target is reached only when they were written there.
    pub pointers: bool,
    /// Its builder's work goes on without amictl (see `provider::Builder::resumes`): an
    /// interrupted build is followed, not failed and rebuilt.
    pub resumes: bool,
}

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Pending, building or testing.
    Unfinished,
    /// Built, tested, usable.
    Available,
    /// Did not build or test.
    Failed,
    /// Retired.
    Retired,
}

/// One recorded deprecation of one AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeprecationRecord {
    /// The time asked for (or, once set, the time the cloud recorded).
    pub at: Timestamp,
    /// Why the last attempt failed; `None` once it is set (or the AMI is gone).
    pub error: Option<String>,
}

/// One version as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVersion {
    /// The line.
    pub image: String,
    /// The version's name.
    pub version: String,
    /// Its build.
    pub build_id: String,
    /// Where it stands.
    pub state: VersionState,
    /// A short name of an unfinished build's stage, for the reason.
    pub stage: String,
    /// For an unfinished build: the live run that holds the state lock (so it is being
    /// built right now, not interrupted), as `pid N …`.
    pub running: Option<String>,
    /// The cloud execution it started, when its builder records one.
    pub execution: String,
    /// When it finished building (started, if it never finished).
    pub built_at: Timestamp,
    /// When it was first published (or finished, when it is never published).
    pub released_at: Option<Timestamp>,
    /// The recipe it was built from.
    pub recipe_hash: String,
    /// The parent it was built from.
    pub parent_id: String,
    /// Component name → version it was built with.
    pub components: BTreeMap<String, String>,
    /// Where it is published, verified.
    pub distributions: Vec<Distribution>,
    /// The tested AMI it was built as, for cloud builds.
    pub source: Option<AmiRef>,
    /// Deprecations recorded for its AMIs.
    pub deprecations: BTreeMap<AmiRef, DeprecationRecord>,
    /// Why its last retirement was refused (what still used it).
    pub cleanup_blocked: Option<String>,
}

impl ObservedVersion {
    /// The targets it reached.
    pub fn reached(&self) -> BTreeSet<Target> {
        self.distributions.iter().map(|d| d.target.clone()).collect()
    }

    /// The targets it reached as `image` wants: with its pointers, when it has them (an
    /// imported version has its AMIs in place but no pointer of amictl's yet).
    pub fn reached_by(&self, image: &DesiredImage) -> BTreeSet<Target> {
        self.distributions
            .iter()
            .filter(|d| !image.pointers || d.how == provider::How::Owner || !d.parameters.is_empty())
            .map(|d| d.target.clone())
            .collect()
    }
}

/// A consumer whose hosts run older versions than the newest of their line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    /// The consumer.
    pub consumer: String,
    /// Its account.
    pub account: String,
    /// Its line.
    pub image: String,
    /// How it moves.
    pub method: RolloutMethod,
    /// The newest version of its line.
    pub newest: String,
    /// Hosts behind.
    pub behind: usize,
    /// Hosts in all.
    pub total: usize,
    /// Hosts past their deadline.
    pub overdue: usize,
    /// The most whole days any host is past its deadline.
    pub most_days_over: i64,
    /// Days since the oldest release a host missed.
    pub released_days_ago: i64,
    /// Versions behind hosts run.
    pub behind_versions: Vec<String>,
    /// The auto scaling groups behind hosts belong to, where they are.
    pub groups: BTreeSet<(String, String)>,
    /// Behind hosts in no auto scaling group.
    pub loose: Vec<String>,
}

/// The advisory check of an image line's newest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisoryCheck {
    /// Fixes at or above the threshold the version lacks, each with when it was published.
    Findings(Vec<MissingFix>),
    /// The source could not be read; `findings` are from the last good copy, if any.
    Stale {
        /// Why.
        reason: String,
        /// From the last good copy.
        findings: Vec<MissingFix>,
    },
}

/// A fix the newest version of a line lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingFix {
    /// The advisory id.
    pub advisory: String,
    /// Its severity.
    pub severity: String,
    /// The package.
    pub package: String,
    /// Installed version.
    pub installed: String,
    /// Fixed version.
    pub fixed: String,
    /// When the fix was published.
    pub published: Timestamp,
}

/// Everything observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Every version of every line.
    pub versions: Vec<ObservedVersion>,
    /// The current parent of each image line, where known.
    pub parents: BTreeMap<String, ParentRef>,
    /// Lines to rebuild whatever else holds (`build --force`).
    pub forced: BTreeSet<String>,
    /// `(image, version)` pairs some consumer runs.
    pub in_use: BTreeSet<(String, String)>,
    /// Consumers with hosts behind, from the latest fleet scan.
    pub lagging: Vec<ConsumerLag>,
    /// Per image line: the newest version's missing fixes, or why they could not be checked.
    pub advisories: BTreeMap<String, AdvisoryCheck>,
}
