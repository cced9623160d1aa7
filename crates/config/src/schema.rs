//! The config's schema: what `amictl.toml` describes, after [`crate::Config::load`] checked it.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use provider::{RolloutMethod, Selection};
use toe::Document;

use crate::DAY;

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub dir: PathBuf,
    pub state: PathBuf,
    /// `[state] url`: a PostgreSQL database in place of the SQLite file at `state`.
    pub state_db: Option<StateDb>,
    /// `[audit.anchors]`: where the chain's head is written outside the database.
    pub anchors: Anchors,
    /// Builds and images.
    pub work_dir: PathBuf,
    /// Content-addressed parents, shared by every config on the machine
    /// (`$AMICTL_CACHE`, default `~/.cache/amictl`).
    pub cache_dir: PathBuf,
    pub policy: Policy,
    pub aws_region: Option<String>,
    /// How often the AWS provider polls while it waits (instances, commands, AMIs).
    pub aws_poll_ms: u64,
    /// How long a new instance may take to report Online to SSM.
    pub aws_ssm_timeout_ms: u64,
    pub accounts: BTreeMap<String, Account>,
    pub components: BTreeMap<String, Component>,
    pub images: BTreeMap<String, Image>,
    pub consumers: BTreeMap<String, Consumer>,
    /// How `amictl serve` runs the loop unattended.
    pub serve: Serve,
    /// Component documents fetched by ARN while loading (components given by `arn`, and
    /// what any document runs through `ExecuteDocument` by ARN), keyed by the ARN as
    /// written, for builds that cannot reach Image Builder themselves.
    pub fetched: BTreeMap<String, toe::component::Fetched>,
}

/// An AWS account amictl works in; `role` is assumed for every account but the one whose
/// credentials amictl runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub id: String,
    pub role: Option<String>,
    pub external_id: Option<String>,
}

/// A team that runs hosts on an image line (used by the fleet and rollout commands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub account: String,
    pub image: String,
    pub owner: Option<String>,
    pub select: Selection,
    pub rollout: RolloutMethod,
    pub exemptions: Vec<Exemption>,
}

/// An instance allowed to lag until a date, with a reason (both shown in every report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemption {
    pub instance: String,
    /// `YYYY-MM-DD`, inclusive.
    pub until: String,
    pub reason: String,
}

/// Where an image line is shared (used by the AWS publisher).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Distribution {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub ssm_parameter: Option<String>,
    /// Each consumer account gets its own copy: what `owners = ["self"]` lookups need.
    pub copy: bool,
    /// Organisation ARNs given launch permission (and the RAM share, when there is one).
    pub organizations: Vec<String>,
    /// Organisational unit ARNs given launch permission (and the RAM share).
    pub organizational_units: Vec<String>,
    /// `<ssm_parameter>/latest` is also written in the platform account and shared by AWS
    /// RAM, so consumers resolve one central parameter by its ARN.
    pub share_parameter: bool,
    /// The owner's tags, on every AMI, snapshot and copy amictl makes.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub max_age_seconds: i64,
    pub rebuild_on_parent_update: bool,
    pub rebuild_on_severity: String,
    pub rollout_sla_seconds: i64,
    pub keep_versions: usize,
    /// Action kinds (`build`, `rollout`, `retire`) held until a person approves them.
    pub require_approval: Vec<String>,
    /// How long a request waits for a decision, and an approval for its action.
    pub approval_ttl_seconds: i64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            max_age_seconds: 90 * DAY,
            rebuild_on_parent_update: true,
            rebuild_on_severity: "important".into(),
            rollout_sla_seconds: 14 * DAY,
            keep_versions: 3,
            require_approval: Vec::new(),
            approval_ttl_seconds: 3 * DAY,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    /// The document's file; for a component given by ARN, the ARN as written.
    pub file: PathBuf,
    /// The build version ARN a component given by `arn` resolved to.
    pub arn: Option<String>,
    /// What its document runs by ARN through `ExecuteDocument` (and those in turn), as
    /// `<arn> sha256=<hash>`: part of the recipe, so a moved version plans a rebuild.
    pub nested: Vec<String>,
    /// Commands run before the snapshot, after the default cleanup (`crate::hygiene`):
    /// what this component leaves that must be fresh on each instance (an agent's id).
    pub snapshot_cleanup: Vec<String>,
    pub version: String,
    pub parameters: Vec<(String, ParamValue)>,
    pub document: Document,
    pub sha256: String,
    /// systemd units this component installs; tests check them active (on EC2 test
    /// instances, before and after a reboot). Not part of the recipe hash: it changes what
    /// is checked, not what is built.
    pub services: Vec<String>,
}

/// Where a parameter's value comes from at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Literal(String),
    Env { var: String, secret: bool },
    File { path: PathBuf, secret: bool },
}

impl ParamValue {
    pub fn is_secret(&self) -> bool {
        matches!(self, ParamValue::Env { secret: true, .. } | ParamValue::File { secret: true, .. })
    }

    /// The value now. Errors name the variable or file, never a value.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            ParamValue::Literal(v) => Ok(v.clone()),
            ParamValue::Env { var, .. } => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
            }
            ParamValue::File { path, .. } => toe::input::read_text(path, toe::input::PARAMETER_LIMIT)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn spec(&self) -> String {
        match self {
            ParamValue::Literal(v) => format!("literal:{v}"),
            ParamValue::Env { var, secret } => format!("env:{var}:{secret}"),
            ParamValue::File { path, secret } => format!("file:{}:{secret}", path.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentSpec {
    /// A Debian minbase root filesystem from debootstrap.
    Debootstrap { suite: String },
    /// A root filesystem tarball, e.g. an exported Amazon Linux 2 container.
    Tarball { path: PathBuf },
    /// An AMI named by an SSM parameter, e.g. AWS's "latest Amazon Linux 2" public one.
    SsmParameter { name: String },
    /// The newest AMI named like `pattern` (EC2 wildcards) owned by `owners`, e.g.
    /// `ami:amazon/amzn2-ami-ecs-hvm-*-x86_64-ebs`.
    AmiName { owners: Vec<String>, pattern: String },
    /// Whatever the Image Builder pipeline's recipe names (`parentImage`): an Image Builder
    /// line with no `parent` of its own.
    Recipe,
}

impl ParentSpec {
    /// An AMI (built on EC2) rather than a root filesystem (built locally).
    pub fn is_ami(&self) -> bool {
        matches!(self, ParentSpec::SsmParameter { .. } | ParentSpec::AmiName { .. })
    }
}

impl std::fmt::Display for ParentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParentSpec::Debootstrap { suite } => write!(f, "debootstrap:{suite}"),
            ParentSpec::Tarball { path } => write!(f, "tarball:{}", path.display()),
            ParentSpec::SsmParameter { name } => write!(f, "ssm:{name}"),
            ParentSpec::AmiName { owners, pattern } => write!(f, "ami:{}/{pattern}", owners.join(",")),
            ParentSpec::Recipe => write!(f, "the pipeline's recipe"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builder {
    Local {
        disk_size_mb: Option<u64>,
    },
    /// Build and test on EC2 instances (the AWS provider).
    Ec2 {
        instance_type: String,
        subnet: Option<String>,
        security_groups: Vec<String>,
        instance_profile: Option<String>,
    },
    /// Run an EC2 Image Builder pipeline: a build is one execution of it; its recipe,
    /// components, tests and distribution are the pipeline's.
    ImageBuilder {
        /// The pipeline's ARN, or its name in the platform account and home region.
        pipeline: String,
    },
}

#[derive(Debug, Clone)]
pub struct TestDocument {
    pub file: PathBuf,
    pub document: Document,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub description: String,
    pub parent: ParentSpec,
    pub components: Vec<String>,
    pub tests: Vec<TestDocument>,
    pub builder: Builder,
    pub distribute: Option<Distribution>,
    /// Where fixes for its packages are announced (not part of the recipe).
    pub advisories: Option<AdvisoryFeed>,
    /// Where `amictl import` finds this line's existing AMIs (not part of the recipe).
    pub import: Option<ImportSpec>,
    /// Run the cleanup before the snapshot (`crate::hygiene`; default true).
    pub snapshot_cleanup: bool,
    pub recipe_hash: String,
}

/// `import = { name = "weco-amzn2-hvm-x86_64-gp2*", owner = "self" }`: AMIs whose name
/// matches (EC2's `name` filter: `*` and `?`), owned by `owner`, in the platform account's
/// home region and every account and region the line is distributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    pub name: String,
    /// `self` (each account's own AMIs, as consumers' copies are) or a 12-digit account id.
    pub owner: String,
}

/// A security advisory feed: a URL (`https://…/repomd.xml` or an `updateinfo.xml[.gz]`) or
/// a file (relative to the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvisoryFeed {
    Updateinfo {
        location: String,
    },
    DebianTracker {
        location: String,
        release: String,
    },
    /// Amazon Inspector2 findings on instances launched from the version's AMIs, in the
    /// accounts it is published to.
    Inspector,
}

impl AdvisoryFeed {
    pub fn location(&self) -> &str {
        match self {
            AdvisoryFeed::Updateinfo { location } | AdvisoryFeed::DebianTracker { location, .. } => location,
            AdvisoryFeed::Inspector => "inspector2",
        }
    }
}

impl Config {
    /// The platform account: the one without a `role` (amictl runs with its credentials).
    pub fn platform(&self) -> Option<&Account> {
        self.accounts.values().find(|a| a.role.is_none())
    }
}

impl Distribution {
    /// Every account and region a version must reach: each consumer account in each region
    /// (the platform's own, when it names no consumers).
    pub fn targets(&self, platform: &str) -> std::collections::BTreeSet<provider::Target> {
        let accounts: Vec<&str> =
            if self.accounts.is_empty() { vec![platform] } else { self.accounts.iter().map(String::as_str).collect() };
        accounts.iter().flat_map(|a| self.regions.iter().map(move |r| provider::Target::new(*a, r))).collect()
    }
}

/// A shared state: `[state] url` (a literal, `{ env }` or `{ file }`) and, kept apart from
/// it, `password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDb {
    pub url: ParamValue,
    pub password: Option<ParamValue>,
}

/// `[audit.anchors]`: checkpoints of the chain's head kept where the database's writers
/// cannot rewrite them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchors {
    /// A directory of signed checkpoints (a mounted volume, another machine's share).
    pub dir: Option<PathBuf>,
    /// `s3://bucket/prefix`: objects under S3 Object Lock (compliance mode).
    pub s3: Option<String>,
    /// How long each S3 anchor is locked.
    pub retention_days: u32,
    /// The Ed25519 signing key (64 hex digits: its seed), never stored in the state.
    pub signing_key: Option<ParamValue>,
    /// The Ed25519 public key checkpoints are verified with (64 hex digits); derived from
    /// the signing key when not given.
    pub public_key: Option<String>,
}

impl Anchors {
    /// Whether any anchor is configured.
    pub fn any(&self) -> bool {
        self.dir.is_some() || self.s3.is_some()
    }
}

/// `[serve]`: the schedule, the advisory watch, the HTTP listener and where notices go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// `host:port`; loopback unless the config says otherwise.
    pub listen: String,
    /// A cron expression (5 fields, or 6 with seconds) for full cycles; `None`: no cycles on
    /// a schedule (the watch and the API still start them).
    pub schedule: Option<String>,
    /// The IANA time zone the schedule is read in.
    pub timezone: String,
    /// How often advisory feeds are checked for new fixes.
    pub watch_interval_seconds: i64,
    /// The bearer token changes need; without one, nothing can be changed over HTTP.
    pub token: Option<ParamValue>,
    /// Read-only endpoints answer without a token (only ever when listening on loopback).
    pub open_reads: bool,
    /// Webhooks, by name.
    pub webhooks: BTreeMap<String, Webhook>,
}

impl Default for Serve {
    fn default() -> Serve {
        Serve {
            listen: "127.0.0.1:8421".into(),
            schedule: None,
            timezone: "UTC".into(),
            watch_interval_seconds: 3600,
            token: None,
            open_reads: true,
            webhooks: BTreeMap::new(),
        }
    }
}

/// The events a notice can be about.
pub const NOTICE_EVENTS: &[&str] =
    &["build.failed", "version.released", "deadline.soon", "deadline.passed", "approval.waiting"];

/// One webhook: a Slack-compatible JSON body is POSTed to its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    /// Often a secret itself (a Slack incoming-webhook URL is): from the environment or a
    /// file, and never logged — errors name the webhook, not the URL.
    pub url: ParamValue,
    /// Which events it gets (default: all of [`NOTICE_EVENTS`]).
    pub events: Vec<String>,
}
