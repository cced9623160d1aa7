//! Reading the fleet, moving it, and asking about advisories: [`FleetSource`],
//! [`Rollout`], [`AdvisorySource`].

use crate::advisory::Finding;
use crate::fleet::{Host, Selection};
use crate::place::AmiRef;
use crate::rollout::{GroupFailure, GroupRolled, Notice, RolloutGroup, RolloutMethod};
use crate::{Cancel, ProviderError};

/// The agents' own check on a host: these services must be active.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCheck {
    /// systemd units (the SSM agent is always checked).
    pub services: Vec<String>,
}

/// Which hosts to find for one consumer.
#[derive(Debug, Clone)]
pub struct HostQuery<'a> {
    /// The consumer.
    pub consumer: &'a str,
    /// Its account's config name.
    pub account: &'a str,
    /// Regions to look in.
    pub regions: &'a [String],
    /// Which instances are the consumer's.
    pub selection: &'a Selection,
    /// Also run the agents' own check on hosts whose SSM agent is Online.
    pub agents: Option<&'a AgentCheck>,
}

/// Where hosts come from: a live account, or saved inventory files.
pub trait FleetSource: Send + Sync {
    /// Every live (not terminated) host the query selects, with its agent's health when
    /// the source can tell. An error means the consumer could not be read (reported as
    /// unknown, never as compliant).
    fn hosts(&self, query: &HostQuery<'_>) -> Result<Vec<Host>, ProviderError>;
}

/// Moves auto scaling groups and tells owners.
pub trait Rollout: Send + Sync {
    /// Moves one group to `group.image_id` by `method` (not `notify`); on failure the
    /// previous launch template version is restored where the method allows.
    fn roll_group(
        &self,
        group: &RolloutGroup,
        method: &RolloutMethod,
        cancel: &Cancel,
    ) -> Result<GroupRolled, GroupFailure>;

    /// Sends a notice; returns the message id.
    fn notify(&self, notice: &Notice) -> Result<String, ProviderError>;
}

/// Findings on hosts running a version's AMIs (Amazon Inspector).
pub trait AdvisorySource: Send + Sync {
    /// Active package findings on instances launched from `amis`.
    fn findings(&self, amis: &[AmiRef]) -> Result<Vec<Finding>, ProviderError>;
}
