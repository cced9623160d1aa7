//! The kinds of audit events. The chain stores each as its text (`build.intent`); this enum
//! is the only place those texts are written, and the only parser.

use std::fmt;

/// An action the engine records twice: its intent before, its outcome after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Act {
    /// Cleaning up a build a dead run left.
    Recover,
    /// Building and testing a version.
    Build,
    /// Publishing a version to accounts and regions.
    Publish,
    /// Deprecating a superseded version's AMIs.
    Deprecate,
    /// Moving a consumer's hosts.
    Rollout,
    /// Retiring an old version.
    Retire,
}

impl Act {
    /// Every act, in plan order.
    pub const ALL: [Act; 6] = [Act::Recover, Act::Build, Act::Publish, Act::Deprecate, Act::Rollout, Act::Retire];

    /// The act's name (`build`), the prefix of its events.
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Recover => "recover",
            Act::Build => "build",
            Act::Publish => "publish",
            Act::Deprecate => "deprecate",
            Act::Rollout => "rollout",
            Act::Retire => "retire",
        }
    }
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A run starts (its plan's size, the time it planned for).
    ApplyStart,
    /// A run ends (how many actions succeeded, failed, were interrupted).
    ApplyFinish,
    /// The planner decided an action, with its reasons.
    Decision,
    /// An act is about to start.
    Intent(Act),
    /// An act ended: done, failed or interrupted. Its data names the intent's `seq`.
    Outcome(Act),
    /// One region published.
    PublishRegion,
    /// One region failed to publish.
    PublishRegionFailed,
    /// A group's launch template now launches the new AMI.
    RolloutLaunchTemplate,
    /// An owner was told to move their hosts.
    RolloutNotified,
    /// A group's rollout stopped, and what was restored.
    RolloutStopped,
    /// A launch template version amictl wrote is no longer what the group launches
    /// (Terraform or a person put another back).
    RolloutDrift,
    /// An existing image was adopted as a version (`amictl import`), with what matched and why.
    Imported,
    /// An action is held for a person (`policy.require_approval`), with the planner's reasons.
    ApprovalRequested,
    /// A person approved a held action (who and when).
    ApprovalApproved,
    /// A person denied one.
    ApprovalDenied,
    /// Nobody decided in time, or the approved action was not run in time.
    ApprovalExpired,
    /// The approved action is carried out now.
    ApprovalUsed,
    /// A notice was queued for delivery (build failed, version released, deadlines, approvals).
    NoticeQueued,
    /// The advisory watch found new fixes that matter for a current image, and starts a cycle.
    WatchMatched,
    /// A scheduled or requested cycle could not run (AWS, a feed, the state), and why.
    CycleFailed,
}

impl EventKind {
    /// The text the chain stores.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ApplyStart => "apply.start",
            EventKind::ApplyFinish => "apply.finish",
            EventKind::Decision => "decision",
            EventKind::Intent(a) => match a {
                Act::Recover => "recover.intent",
                Act::Build => "build.intent",
                Act::Publish => "publish.intent",
                Act::Deprecate => "deprecate.intent",
                Act::Rollout => "rollout.intent",
                Act::Retire => "retire.intent",
            },
            EventKind::Outcome(a) => match a {
                Act::Recover => "recover.outcome",
                Act::Build => "build.outcome",
                Act::Publish => "publish.outcome",
                Act::Deprecate => "deprecate.outcome",
                Act::Rollout => "rollout.outcome",
                Act::Retire => "retire.outcome",
            },
            EventKind::PublishRegion => "publish.region",
            EventKind::PublishRegionFailed => "publish.region.failed",
            EventKind::RolloutLaunchTemplate => "rollout.launch-template",
            EventKind::RolloutNotified => "rollout.notified",
            EventKind::RolloutStopped => "rollout.stopped",
            EventKind::RolloutDrift => "rollout.drift",
            EventKind::Imported => "imported",
            EventKind::ApprovalRequested => "approval.requested",
            EventKind::ApprovalApproved => "approval.approved",
            EventKind::ApprovalDenied => "approval.denied",
            EventKind::ApprovalExpired => "approval.expired",
            EventKind::ApprovalUsed => "approval.used",
            EventKind::NoticeQueued => "notice.queued",
            EventKind::WatchMatched => "watch.matched",
            EventKind::CycleFailed => "cycle.failed",
        }
    }

    /// Every kind (for parsing and documentation).
    pub fn all() -> Vec<EventKind> {
        let mut all = vec![EventKind::ApplyStart, EventKind::ApplyFinish, EventKind::Decision];
        all.extend(Act::ALL.iter().map(|a| EventKind::Intent(*a)));
        all.extend(Act::ALL.iter().map(|a| EventKind::Outcome(*a)));
        all.extend([
            EventKind::PublishRegion,
            EventKind::PublishRegionFailed,
            EventKind::RolloutLaunchTemplate,
            EventKind::RolloutNotified,
            EventKind::RolloutStopped,
            EventKind::RolloutDrift,
            EventKind::Imported,
            EventKind::ApprovalRequested,
            EventKind::ApprovalApproved,
            EventKind::ApprovalDenied,
            EventKind::ApprovalExpired,
            EventKind::ApprovalUsed,
            EventKind::NoticeQueued,
            EventKind::WatchMatched,
            EventKind::CycleFailed,
        ]);
        all
    }

    /// The kind a stored text names; `None` for texts this amictl does not know.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::all().into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_text() {
        let all = EventKind::all();
        for k in &all {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        let texts: std::collections::BTreeSet<&str> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(texts.len(), all.len(), "two kinds share a text");
        assert_eq!(EventKind::parse("no.such"), None);
    }
}
