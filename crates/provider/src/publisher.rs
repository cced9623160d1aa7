//! Distributing images: the [`Publisher`] trait and what crosses it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::place::{AmiRef, Target};
use crate::{Cancel, ProviderError};

/// Publishes one image line's versions (copies, shares, pointers) and deprecates the
/// versions they supersede. One value per line, made from its distribution settings.
pub trait Publisher: Send + Sync {
    /// Publishes `job.source` to every target, find-before-create. Every region's result is
    /// reported, so the operator knows what exists even when one region failed.
    fn publish(&self, job: &PublishJob<'_>) -> PublishReport;

    /// Marks an AMI deprecated at `at` in the account that owns it (a time already past is
    /// set as soon as the cloud allows).
    fn deprecate(&self, ami: &AmiRef, at: Timestamp) -> Result<Deprecated, ProviderError>;
}

/// What deprecating one AMI did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deprecated {
    /// Deprecated; the time the cloud recorded.
    Set(Timestamp),
    /// The AMI no longer exists (deregistered, or its account is gone): nothing to do, ever.
    Gone,
}

/// One publication, as the engine decided it.
#[derive(Debug, Clone)]
pub struct PublishJob<'a> {
    /// The image line.
    pub image: &'a str,
    /// The version.
    pub version: &'a str,
    /// Its build.
    pub build_id: &'a str,
    /// The tested AMI.
    pub source: &'a AmiRef,
    /// Everything its build made (a pipeline's distribution lists every copy it made).
    pub artifacts: &'a [crate::Artifact],
    /// Accounts and regions it must reach.
    pub targets: &'a [Target],
    /// Set when the operator asks amictl to stop.
    pub cancel: &'a Cancel,
}

/// How an account gets a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The platform's own AMI (the source or its regional copy).
    Owner,
    /// Launch permission on the platform's AMI.
    Shared,
    /// The consumer's own copy.
    Copy,
}

impl How {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Owner => "owner",
            How::Shared => "shared",
            How::Copy => "copy",
        }
    }

    /// The kind a stored name stands for.
    pub fn parse(s: &str) -> Option<How> {
        [How::Owner, How::Shared, How::Copy].into_iter().find(|h| h.as_str() == s)
    }

    /// Whether the account owns the AMI (and so can deprecate it).
    pub fn owns(self) -> bool {
        matches!(self, How::Owner | How::Copy)
    }
}

/// One version available in one account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// The account and region.
    pub target: Target,
    /// The AMI launched there.
    pub image_id: String,
    /// How the account has it.
    pub how: How,
    /// SSM parameters written for it.
    pub parameters: Vec<String>,
}

impl Distribution {
    /// The AMI as a reference.
    pub fn ami(&self) -> AmiRef {
        AmiRef { target: self.target.clone(), image_id: self.image_id.clone() }
    }
}

/// One region done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionPublished {
    /// The region.
    pub region: String,
    /// The platform's AMI there.
    pub image_id: String,
    /// False when an existing AMI of the version's name was adopted.
    pub copied: bool,
    /// The platform's own row, then each consumer's.
    pub distributions: Vec<Distribution>,
    /// The AWS RAM share that holds the platform's `latest` parameter, when it is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_share: Option<String>,
}

/// One region that failed.
#[derive(Debug)]
pub struct RegionFailure {
    /// The region.
    pub region: String,
    /// Why.
    pub error: ProviderError,
}

/// Every region's result.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Regions done.
    pub done: Vec<RegionPublished>,
    /// Regions that failed.
    pub failed: Vec<RegionFailure>,
}
