//! Building images: the [`Builder`] trait and what crosses it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::image::{Artifact, Package, ParentRef, TestResult};
use crate::place::Target;
use crate::publisher::Distribution;
use crate::{Cancel, ProviderError};

/// Builds, tests, cleans up and retires the versions of one image line. One value per
/// line: it is made from the line's recipe (parent spec, components, tests, builder
/// settings), so a job carries only what the engine decided.
pub trait Builder: Send + Sync {
    /// A short name for messages: `local`, `ec2`.
    fn kind(&self) -> &'static str;

    /// Whether builds of this kind may run beside other work on threads. A builder that
    /// forks a sandbox may not: forking is only safe while no other thread runs.
    fn concurrent(&self) -> bool {
        true
    }

    /// Whether a build goes on without amictl (an Image Builder execution runs in the
    /// cloud): a build a dead run left is then *followed* to its end — [`Builder::build`]
    /// again with the same job and [`BuildJob::execution`] — not cleaned up and failed.
    fn resumes(&self) -> bool {
        false
    }

    /// The parent the next build would start from, with no side effects (`plan` calls
    /// it). `None`: not known before a build prepares it (a local parent never prepared).
    fn current_parent(&self) -> Result<Option<ParentRef>, ProviderError>;

    /// Fetches the parent afresh (`apply --refresh-parents`, a new debootstrap) and returns
    /// it; for parents that are always looked up live this is [`Builder::current_parent`].
    fn refresh_parent(&self) -> Result<Option<ParentRef>, ProviderError> {
        self.current_parent()
    }

    /// Builds and tests one version from exactly `job.parent` (when given). On failure
    /// everything the build made is removed except its logs; the failure says what ran.
    fn build(&self, job: &BuildJob<'_>, events: &dyn BuildEvents) -> Result<BuildOutput, BuildFailure>;

    /// Removes whatever a build that did not finish left (instances, a half-made AMI,
    /// secrets, scratch files). Safe to run again.
    fn clean_up(&self, job: &CleanupJob<'_>) -> Result<CleanupReport, ProviderError>;

    /// Retires a version: removes what this builder can and says what is left.
    fn retire(&self, job: &RetireJob<'_>) -> Result<RetireReport, ProviderError>;
}

/// One build, as the engine decided it.
#[derive(Debug, Clone)]
pub struct BuildJob<'a> {
    /// Tags every resource the build makes.
    pub build_id: &'a str,
    /// The image line.
    pub image: &'a str,
    /// The new version's name.
    pub version: &'a str,
    /// The parent the plan named; `None` when the builder must prepare it first.
    pub parent: Option<&'a ParentRef>,
    /// Where the build's logs go (kept after a failure).
    pub log_dir: &'a Path,
    /// Set when the operator asks amictl to stop.
    pub cancel: &'a Cancel,
    /// The cloud execution an earlier run of this build started (see [`Builder::resumes`]);
    /// the builder follows it instead of starting another.
    pub execution: Option<&'a str>,
}

/// What a build tells the engine as it goes.
pub trait BuildEvents: Sync {
    /// The parent is known: recorded at once, so a killed build still names it.
    fn parent(&self, parent: &ParentRef);
    /// Testing starts (the version's state becomes `testing`).
    fn testing(&self);
    /// Progress for people.
    fn status(&self, text: &str);
    /// The build's work started in the cloud as `execution` (an ARN): recorded at once, so
    /// a run that dies next still knows what to follow.
    fn started(&self, _execution: &str) {}
}

/// A finished, tested build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The parent it was built from.
    pub parent: ParentRef,
    /// The new image's package manifest.
    pub packages: Vec<Package>,
    /// What it made (files, or the AMI).
    pub artifacts: Vec<Artifact>,
    /// Every test and its result.
    pub tests: Vec<TestResult>,
    /// What was removed afterwards (build and test instances, scratch space).
    pub cleanup: CleanupReport,
    /// The components the build ran, when the builder learns them from elsewhere (an
    /// Image Builder recipe); empty when they are the configured ones.
    pub components: Vec<ComponentVersion>,
}

/// A component a build ran: its name, version and where it came from (an ARN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentVersion {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it is defined (an Image Builder component ARN).
    pub source: String,
}

/// A build that did not finish, and what it got to.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BuildFailure {
    /// Why.
    #[source]
    pub error: ProviderError,
    /// The parent, if it was resolved (boxed: failures are rare, results stay small).
    pub parent: Option<Box<ParentRef>>,
    /// The tests that ran.
    pub tests: Vec<TestResult>,
    /// What was cleaned up after the failure, when cleaning up succeeded.
    pub cleanup: Option<CleanupReport>,
}

impl BuildFailure {
    /// A failure before anything ran.
    pub fn early(error: ProviderError) -> BuildFailure {
        BuildFailure { error, parent: None, tests: Vec::new(), cleanup: None }
    }
}

/// A build to clean up after.
#[derive(Debug, Clone)]
pub struct CleanupJob<'a> {
    /// The build's id (its resources' tag).
    pub build_id: &'a str,
    /// The image line.
    pub image: &'a str,
    /// The version it was building.
    pub version: &'a str,
}

/// A resource amictl made or left: `instance i-0abc in platform/eu-west-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    /// `instance`, `ami`, `snapshot`, `secret`, `files`.
    pub kind: String,
    /// Its id or path.
    pub id: String,
    /// Where it is, for cloud resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<Target>,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(p) => write!(f, "{} {} in {p}", self.kind, self.id),
            None => write!(f, "{} {}", self.kind, self.id),
        }
    }
}

/// What a clean-up removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Everything removed.
    pub removed: Vec<Resource>,
}

/// A version to retire, with what the catalog knows of it.
#[derive(Debug, Clone)]
pub struct RetireJob<'a> {
    /// The image line.
    pub image: &'a str,
    /// The version.
    pub version: &'a str,
    /// Its build.
    pub build_id: &'a str,
    /// What its build made.
    pub artifacts: &'a [Artifact],
    /// Where it was published.
    pub distributions: &'a [Distribution],
}

/// What retiring did, and what it could not or would not remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireReport {
    /// Removed.
    pub removed: Vec<Resource>,
    /// Still there, and why (in `kind`/`id` terms), so a retired version never pretends.
    pub left: Vec<Resource>,
    /// Every place searched for something that still uses the version's AMIs, with what
    /// was found there: the proof behind a removal, or the reason for a refusal.
    #[serde(default)]
    pub checked: Vec<Checked>,
}

impl RetireReport {
    /// Everything found that still uses the version; when not empty nothing was removed.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.checked.iter().flat_map(|c| c.references.iter())
    }
}

/// One account and region searched for uses of one AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// Where.
    pub place: Target,
    /// The AMI looked for.
    pub image_id: String,
    /// What was searched: `instances`, `launch-templates`, `auto-scaling-groups`, `parameters`.
    pub searched: Vec<String>,
    /// What still uses it.
    pub references: Vec<Reference>,
}

/// Something that still uses an AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// Where.
    pub place: Target,
    /// `instance`, `launch-template`, `auto-scaling-group`, `launch-configuration`, `parameter`.
    pub kind: String,
    /// Its id or name.
    pub id: String,
    /// How it uses the AMI (`version 3 ($Default)`, `running`).
    pub how: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({}) in {}", self.kind, self.id, self.how, self.place)
    }
}
