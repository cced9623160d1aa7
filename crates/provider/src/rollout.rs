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
    /// time, waiting for each replacement to be InService with its SSM agent Online.
    RollingReplace {
        /// Instances replaced at once.
        batch: usize,
    },
    /// The launch template change, then an EC2 Auto Scaling instance refresh.
    InstanceRefresh {
        /// The refresh's `MinHealthyPercentage`.
        min_healthy_percent: u8,
    },
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
    /// False when the template already launched the new image (a re-run).
    pub changed: bool,
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
    /// The launch template change made before the failure, if any.
    pub template: Option<TemplateChange>,
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
