//! How a consumer's hosts move to a new version, and what moving them did.

use serde::{Deserialize, Serialize};

use crate::place::Target;

/// A consumer's rollout method (config `rollout = { kind = … }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RolloutMethod {
    /// Tell the owner (on an SNS topic, when given); the team replaces its own hosts.
    Notify {
        /// The topic's ARN.
        sns_topic: Option<String>,
    },
    /// The consumer's code owns the AMI id (Terraform pins it): amictl writes nothing in
    /// its account; it sends the exact change (the AMI per region, the deadline) to the
    /// owner, again each day while hosts are behind, and follows the fleet.
    Pinned {
        /// The topic's ARN.
        sns_topic: Option<String>,
    },
    /// A new launch template version with the new AMI becomes the group's default.
    LaunchTemplate,
    /// The launch template change, then amictl replaces the group's instances `batch` at a
    /// time, waiting for each replacement to be InService with its SSM agent Online. ECS
    /// container instances are drained first.
    RollingReplace {
        /// Instances replaced at once.
        batch: usize,
        /// What to do with instances protected from scale-in.
        #[serde(default)]
        protected: Protected,
        /// How long an ECS container instance may take to drain.
        #[serde(default = "default_drain_seconds")]
        drain_timeout_seconds: u64,
    },
    /// The launch template change, then an EC2 Auto Scaling instance refresh.
    InstanceRefresh {
        /// The refresh's `MinHealthyPercentage`.
        min_healthy_percent: u8,
        /// The refresh's `ScaleInProtectedInstances`.
        #[serde(default)]
        scale_in_protected: RefreshProtected,
        /// The refresh's `StandbyInstances`.
        #[serde(default)]
        standby: RefreshStandby,
        /// `CheckpointPercentages`, ascending, the last 100: a staged rollout.
        #[serde(default)]
        checkpoints: Vec<u8>,
        /// `CheckpointDelay`.
        #[serde(default)]
        checkpoint_delay_seconds: Option<u32>,
    },
}

fn default_drain_seconds() -> u64 {
    DEFAULT_DRAIN_SECONDS
}

/// ECS moves a service's tasks within minutes; a quarter hour leaves room for slow stops.
pub const DEFAULT_DRAIN_SECONDS: u64 = 900;

/// What `rolling-replace` does with an instance protected from scale-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protected {
    /// Leave it on its image (the fleet keeps reporting it behind): someone protected it.
    #[default]
    Skip,
    /// Drain it, lift the protection, replace it: for ECS capacity providers with managed
    /// termination protection, where protection only means "runs tasks".
    Replace,
}

/// An instance refresh's `ScaleInProtectedInstances`. amictl's default is `refresh`: with
/// ECS managed draining the tasks move before AWS terminates the host, and AWS's own
/// default (`Wait`) fails the refresh after an hour on every capacity-provider group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshProtected {
    /// Replace them too.
    #[default]
    Refresh,
    /// Leave them on their image.
    Ignore,
    /// Wait (AWS: up to an hour) for the protection to be lifted.
    Wait,
}

/// An instance refresh's `StandbyInstances`. amictl's default is `ignore`: a host put on
/// standby was taken out on purpose; the fleet keeps reporting it behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshStandby {
    /// Terminate them; the group launches replacements.
    Terminate,
    /// Leave them on their image.
    #[default]
    Ignore,
    /// Wait (AWS: up to an hour) for them to return to service.
    Wait,
}

impl RolloutMethod {
    /// The method's config name.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutMethod::Notify { .. } => "notify",
            RolloutMethod::Pinned { .. } => "pinned",
            RolloutMethod::LaunchTemplate => "launch-template",
            RolloutMethod::RollingReplace { .. } => "rolling-replace",
            RolloutMethod::InstanceRefresh { .. } => "instance-refresh",
        }
    }

    /// Whether the method moves auto scaling groups (everything but notify and pinned).
    pub fn moves_groups(&self) -> bool {
        !matches!(self, RolloutMethod::Notify { .. } | RolloutMethod::Pinned { .. })
    }
}

/// One auto scaling group to move, where it is, and the AMI its consumer launches there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RolloutGroup {
    /// The consumer's account and the group's region.
    pub target: Target,
    /// The group's name.
    pub asg: String,
    /// The AMI the group must launch (the consumer's view of the new version).
    pub image_id: String,
}

/// A launch template change, for the record and for a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateChange {
    /// `lt-…`.
    pub template_id: String,
    /// The version the group launched before.
    pub from_version: i64,
    /// The version it launches now.
    pub to_version: i64,
    /// The AMI it launched before.
    pub from_image: String,
    /// False when the template already launched the new image (a re-run), or resolves it.
    pub changed: bool,
    /// The SSM parameter the template's image resolves (`resolve:ssm:<parameter>`): the
    /// template is never rewritten, the parameter is what moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves: Option<String>,
    /// The version the group asks for (`$Default`, `$Latest` or a number).
    #[serde(default)]
    pub group_version: String,
}

/// What replacing a group's instances did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// Instances terminated for replacement.
    pub replaced: Vec<String>,
    /// Their replacements.
    pub launched: Vec<String>,
    /// The instance refresh that replaced them, for that method.
    pub instance_refresh: Option<String>,
    /// ECS container instances drained before they were terminated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drained: Vec<String>,
    /// Instances left on their image, each with why (scale-in protected, `protected = "skip"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(String, String)>,
}

/// One group moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRolled {
    /// The launch template change.
    pub template: TemplateChange,
    /// The replacement, for methods that replace instances.
    pub replacement: Option<Replacement>,
}

/// One group that could not be moved, and what was put back.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct GroupFailure {
    /// Why.
    #[source]
    pub error: crate::ProviderError,
    /// The launch template change made before the failure, if any (boxed: errors stay small).
    pub template: Option<Box<TemplateChange>>,
    /// Restoring the previous template version: `Some(Ok)` restored, `Some(Err)` could
    /// not, `None` nothing to restore.
    pub restored: Option<Result<(), String>>,
}

/// A message to a consumer's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The account that sends it (the topic's owner).
    pub account: String,
    /// The SNS topic's ARN.
    pub topic: String,
    /// A one-line subject.
    pub subject: String,
    /// The message.
    pub message: String,
}
