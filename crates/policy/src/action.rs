//! What the planner decides: actions that carry everything acting needs, with reasons.

use jiff::Timestamp;
use provider::{Act, AmiRef, ParentRef, RolloutGroup, RolloutMethod, Target, VersionRef};
use serde::Serialize;

/// Why an action is planned: machine-readable, with a sentence for people (`Display`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Reason {
    /// A build a dead run left unfinished.
    Interrupted { build_id: String, stage: String },
    /// The interrupted build's execution goes on without amictl; `execution` is its ARN
    /// (empty when the run died before recording it: the start's token finds it).
    Following { execution: String },
    /// The line has no available version.
    NeverBuilt,
    /// The newest version is `max_age` old or more.
    MaxAge { age_days: i64, max_days: i64 },
    /// The line's parent is no longer the one the newest version was built from.
    ParentMoved { from: String, to: String, parent: String },
    /// A component's configured version differs from the one built.
    ComponentChanged { component: String, from: Option<String>, to: Option<String> },
    /// Something else in the recipe changed.
    RecipeChanged { from: String, to: String },
    /// `build --force`.
    Forced,
    /// More available versions exist than `keep_versions`.
    BeyondKeep { keep: usize, newer: usize },
    /// The last retirement was refused: something still used the version (it is checked again).
    CleanupBlocked { why: String },
    /// Configured targets the newest version has not reached.
    NotDistributed { missing: Vec<Target> },
    /// A consumer runs older versions.
    ConsumerBehind { consumer: String, behind: usize, total: usize, versions: Vec<String>, released_days_ago: i64 },
    /// …and some of its hosts are past their deadline.
    DeadlinePassed { consumer: String, overdue: usize, days_over: i64 },
    /// Fixes at or above the threshold published after the newest version was built.
    Advisories { severity: String, advisories: Vec<String>, packages: Vec<String> },
    /// A newer version was released; this one is deprecated once its hosts had the SLA to move.
    Superseded { by: String, released: Timestamp, deprecate_at: Timestamp },
    /// The last attempt to deprecate failed; this one retries it.
    DeprecationFailed { error: String },
    /// Hosts behind that the consumer's method cannot move (they are in no group).
    Ungrouped { consumer: String, instances: Vec<String> },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Interrupted { build_id, stage } => write!(f, "build {build_id} was interrupted while {stage}"),
            Reason::Following { execution } if execution.is_empty() => {
                write!(f, "its execution goes on in the cloud: find it by the build's token and follow it")
            }
            Reason::Following { execution } => write!(f, "its execution {execution} goes on in the cloud: follow it"),
            Reason::NeverBuilt => write!(f, "never built"),
            Reason::MaxAge { age_days, max_days } => write!(f, "age {age_days}d ≥ max {max_days}d"),
            // Parent ids are AMI ids or content hashes: shown whole, operators paste them.
            Reason::ParentMoved { from, to, parent } => write!(f, "parent {parent} moved: {from} → {to}"),
            Reason::ComponentChanged { component, from, to } => match (from, to) {
                (Some(a), Some(b)) => write!(f, "component {component} {a} → {b}"),
                (None, Some(b)) => write!(f, "component {component} {b} added"),
                (Some(a), None) => write!(f, "component {component} {a} removed"),
                (None, None) => write!(f, "component {component} changed"),
            },
            Reason::RecipeChanged { from, to } => write!(f, "recipe changed: {} → {}", short(from), short(to)),
            Reason::Forced => write!(f, "forced"),
            Reason::BeyondKeep { keep, newer } => write!(f, "{newer} newer versions exist; keep {keep}"),
            Reason::CleanupBlocked { why } => write!(f, "the last retirement was refused: {why}"),
            Reason::NotDistributed { missing } => {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                write!(f, "not yet published to {}", list.join(", "))
            }
            Reason::ConsumerBehind { consumer, behind, total, versions, released_days_ago } => write!(
                f,
                "{consumer}: {behind} of {total} instances on {}, successor released {released_days_ago} day(s) ago",
                versions.join(", ")
            ),
            Reason::DeadlinePassed { consumer, overdue, days_over: 0 } => {
                write!(f, "{consumer}: deadline passed less than a day ago for {overdue} instance(s) — escalate")
            }
            Reason::DeadlinePassed { consumer, overdue, days_over } => {
                write!(f, "{consumer}: deadline passed {days_over} day(s) ago for {overdue} instance(s) — escalate")
            }
            Reason::Advisories { severity, advisories, packages } => {
                let more =
                    if advisories.len() > 3 { format!(" (+{} more)", advisories.len() - 3) } else { String::new() };
                write!(
                    f,
                    "{} {severity}+ advisor{} fixed since built: {}{more} ({})",
                    advisories.len(),
                    if advisories.len() == 1 { "y" } else { "ies" },
                    advisories.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    packages.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            }
            Reason::Superseded { by, released, deprecate_at } => {
                write!(f, "superseded by {by} (released {released}); deprecated from {deprecate_at}")
            }
            Reason::DeprecationFailed { error } => write!(f, "the last deprecation attempt failed: {error}"),
            Reason::Ungrouped { consumer, instances } => write!(
                f,
                "{consumer}: {} instance(s) in no auto scaling group cannot be moved by the rollout ({})",
                instances.len(),
                instances.join(", ")
            ),
        }
    }
}

/// A hash shortened for reading; anything else (AMI ids) is shown whole.
fn short(s: &str) -> &str {
    if s.len() > 16 && s.chars().all(|c| c.is_ascii_hexdigit()) { &s[..12] } else { s }
}

/// One decided action. Each carries what acting needs, so acting never decides again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Clean up a build a dead run left, and mark it failed — or, when its work goes on
    /// without amictl (`follow`), follow it to its end and publish what it made.
    Recover {
        /// The line.
        image: String,
        /// The version it was building.
        version: String,
        /// Its build.
        build_id: String,
        /// Follow the build's cloud execution rather than clean it up.
        follow: bool,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Build, test and publish a new version.
    Build {
        /// The line.
        image: String,
        /// The parent to build from (`None`: the builder prepares it, on a first local build).
        parent: Option<ParentRef>,
        /// Where to publish it.
        targets: Vec<Target>,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Publish an existing version to targets it has not reached.
    Distribute {
        /// The line.
        image: String,
        /// The version.
        version: String,
        /// Its build.
        build_id: String,
        /// Its tested AMI.
        source: AmiRef,
        /// The targets it has not reached.
        targets: Vec<Target>,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Deprecate a superseded version's AMIs at a time that belongs to the version.
    Deprecate {
        /// The line.
        image: String,
        /// The superseded version.
        version: String,
        /// Its build.
        build_id: String,
        /// Its successor's release plus the rollout SLA.
        at: Timestamp,
        /// Its AMIs not yet deprecated (the owner's and consumers' own copies).
        amis: Vec<AmiRef>,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Move a consumer's hosts to the newest version.
    Rollout {
        /// The consumer.
        consumer: String,
        /// Its line.
        image: String,
        /// The newest version.
        version: String,
        /// Its build.
        build_id: String,
        /// How.
        method: RolloutMethod,
        /// The groups to move, where they are, and the AMI each launches (from the scan).
        groups: Vec<RolloutGroup>,
        /// Where the consumer has behind hosts but the version is not published.
        unpublished: Vec<Target>,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Retire an old version.
    Retire {
        /// The line.
        image: String,
        /// The version.
        version: String,
        /// Its build.
        build_id: String,
        /// Why.
        reasons: Vec<Reason>,
    },
}

impl Action {
    /// The act this action is recorded as.
    pub fn act(&self) -> Act {
        match self {
            Action::Recover { .. } => Act::Recover,
            Action::Build { .. } => Act::Build,
            Action::Distribute { .. } => Act::Publish,
            Action::Deprecate { .. } => Act::Deprecate,
            Action::Rollout { .. } => Act::Rollout,
            Action::Retire { .. } => Act::Retire,
        }
    }

    /// The image line it concerns.
    pub fn image(&self) -> &str {
        match self {
            Action::Recover { image, .. }
            | Action::Build { image, .. }
            | Action::Distribute { image, .. }
            | Action::Deprecate { image, .. }
            | Action::Rollout { image, .. }
            | Action::Retire { image, .. } => image,
        }
    }

    /// The version it acts on; a build's is named when it starts.
    pub fn version(&self) -> Option<&str> {
        match self {
            Action::Build { .. } => None,
            Action::Recover { version, .. }
            | Action::Distribute { version, .. }
            | Action::Deprecate { version, .. }
            | Action::Rollout { version, .. }
            | Action::Retire { version, .. } => Some(version),
        }
    }

    /// Why it is planned.
    pub fn reasons(&self) -> &[Reason] {
        match self {
            Action::Recover { reasons, .. }
            | Action::Build { reasons, .. }
            | Action::Distribute { reasons, .. }
            | Action::Deprecate { reasons, .. }
            | Action::Rollout { reasons, .. }
            | Action::Retire { reasons, .. } => reasons,
        }
    }

    /// The reasons as one line for people.
    pub fn reasons_text(&self) -> String {
        self.reasons().iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }

    /// The audit subject: `image@version`, `image` for a build, `consumer:name` for a rollout.
    pub fn subject(&self) -> String {
        match self {
            Action::Build { image, .. } => image.clone(),
            Action::Rollout { consumer, .. } => format!("consumer:{consumer}"),
            other => VersionRef::new(other.image(), other.version().unwrap_or_default()).to_string(),
        }
    }

    /// Its kind as the plan's JSON names it (`build`, `distribute` …).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Recover { .. } => "recover",
            Action::Build { .. } => "build",
            Action::Distribute { .. } => "distribute",
            Action::Deprecate { .. } => "deprecate",
            Action::Rollout { .. } => "rollout",
            Action::Retire { .. } => "retire",
        }
    }

    /// What identifies this action from one cycle to the next, for approvals: the same
    /// build of a line from the same parent, the same consumer moving to the same version,
    /// the same version retired. A new parent or version is a new question.
    pub fn approval_key(&self) -> String {
        match self {
            Action::Build { image, parent, .. } => {
                format!("build:{image}:{}", parent.as_ref().map_or("-", |p| p.id.as_str()))
            }
            Action::Rollout { consumer, image, version, .. } => format!("rollout:{consumer}:{image}@{version}"),
            other => format!("{}:{}", other.kind(), other.subject()),
        }
    }

    /// What people read for its kind (`--json` keeps the serde names).
    pub fn label(&self) -> &'static str {
        match self {
            Action::Distribute { .. } => "publish",
            other => other.act().as_str(),
        }
    }
}

/// A line with nothing to do, and when it falls due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The line.
    pub image: String,
    /// Its newest version.
    pub version: String,
    /// Whole days until the newest version reaches `max_age`, rounded up: 1 while anything
    /// up to 24 hours is left, 0 once it is due.
    pub due_in_days: i64,
}

/// A line whose advisory check is stale: "no findings" would be a guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleCheck {
    /// The line.
    pub image: String,
    /// Why.
    pub reason: String,
}

/// A build a live run is doing right now (it holds the state lock): not interrupted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Running {
    /// The line.
    pub image: String,
    /// The version.
    pub version: String,
    /// Its build.
    pub build_id: String,
    /// Its stage.
    pub stage: String,
    /// The run doing it.
    pub holder: String,
}

/// A consumer behind whose hosts its rollout method cannot move (they are in none of its
/// auto scaling groups): for people to act on, not an action that could only fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmovable {
    /// The consumer.
    pub consumer: String,
    /// Its method.
    pub method: String,
    /// The hosts behind.
    pub instances: Vec<String>,
}

/// The plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// Lines with nothing to do, and when they fall due.
    pub notes: Vec<Note>,
    /// Lines whose advisory check is stale.
    pub stale: Vec<StaleCheck>,
    /// Builds in progress in a live run.
    pub running: Vec<Running>,
    /// Consumers behind that their method cannot move.
    pub unmovable: Vec<Unmovable>,
    /// Lines whose parent's operating system is past, or within 90 days of, its end of
    /// support: rebuilding does not help; moving to the successor does.
    pub end_of_support: Vec<crate::eol::EndOfSupport>,
    /// Versions beyond `keep_versions` that are not retired, and why.
    pub kept: Vec<Kept>,
}

/// A version that would be retired but is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The line.
    pub image: String,
    /// The version.
    pub version: String,
    /// Why.
    pub why: String,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}
