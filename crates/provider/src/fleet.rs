//! Hosts as a fleet scan sees them, and which hosts belong to a consumer.

use serde::{Deserialize, Serialize};

/// A host's short fields (ids, names, states): kept inline up to 24 bytes, so a scan of
/// tens of thousands of hosts holds one allocation per host instead of a dozen.
pub type Short = compact_str::CompactString;

/// The tag EC2 Auto Scaling puts on every instance of a group.
pub const ASG_TAG: &str = "aws:autoscaling:groupName";
/// The tag EC2 puts on every instance launched from a launch template.
pub const LAUNCH_TEMPLATE_ID_TAG: &str = "aws:ec2launchtemplate:id";

/// One instance as a scan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The consumer it was found for.
    pub consumer: Short,
    /// The account's config name.
    pub account: Short,
    /// Its region.
    pub region: Short,
    /// `i-…`.
    pub instance_id: Short,
    /// The AMI it runs.
    pub image_id: Short,
    /// `pending`, `running`, `stopped` …
    pub state: Short,
    /// Its `Name` tag.
    pub name: Option<Short>,
    /// The auto scaling group it belongs to.
    pub asg: Option<Short>,
    /// The launch template it was launched from (by name, when known).
    #[serde(default)]
    pub launch_template: Option<Short>,
    /// SSM's view of its agent; `None` means it is not registered.
    pub agent: Option<Agent>,
    /// False when the scan could not ask SSM (an offline inventory): no agent verdict.
    #[serde(default = "yes")]
    pub agent_checked: bool,
    /// The agents' own check (their services active), when one was run: `Err` says why not.
    #[serde(default)]
    pub services: Option<Result<(), String>>,
}

fn yes() -> bool {
    true
}

/// What SSM says about a host's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `Online`, `ConnectionLost`, `Inactive`.
    pub ping: Short,
    /// The agent's version.
    pub version: Short,
    /// When it last reported (RFC 3339).
    pub last_ping: Option<Short>,
}

/// Which instances belong to a consumer: those carrying *all* `tags`, those in one of
/// `asgs`, and those launched from one of `launch_templates` (by name). One rule, used by
/// live scans and inventory files alike, so both select the same hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Selection {
    /// `(key, value)` pairs an instance must all carry.
    pub tags: Vec<(String, String)>,
    /// Auto scaling group names.
    pub asgs: Vec<String>,
    /// Launch template names.
    pub launch_templates: Vec<String>,
}

impl Selection {
    /// Whether an instance with these tags, launched from the template named
    /// `launch_template` (when known), belongs to the consumer.
    pub fn matches<'a>(&self, tag: impl Fn(&str) -> Option<&'a str>, launch_template: Option<&str>) -> bool {
        let by_tags = !self.tags.is_empty() && self.tags.iter().all(|(k, v)| tag(k) == Some(v.as_str()));
        let by_asg = tag(ASG_TAG).is_some_and(|g| self.asgs.iter().any(|a| a == g));
        let by_template = launch_template.is_some_and(|t| self.launch_templates.iter().any(|l| l == t));
        by_tags || by_asg || by_template
    }

    /// Whether nothing can match (a config error the loader reports).
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.asgs.is_empty() && self.launch_templates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_selected_by_all_tags_a_group_or_a_template() {
        let sel = Selection {
            tags: vec![("Service".into(), "goobi".into()), ("Team".into(), "goobi-team".into())],
            asgs: vec!["goobi-container-hosts".into()],
            launch_templates: vec!["goobi-bastion".into()],
        };
        let tags = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        };
        assert!(sel.matches(tags(&[("Service", "goobi"), ("Team", "goobi-team")]), None));
        assert!(!sel.matches(tags(&[("Service", "goobi")]), None), "every tag must match");
        assert!(sel.matches(tags(&[(ASG_TAG, "goobi-container-hosts")]), None));
        assert!(!sel.matches(tags(&[(ASG_TAG, "other")]), None));
        assert!(sel.matches(tags(&[]), Some("goobi-bastion")));
        assert!(!sel.matches(tags(&[]), Some("other")));
        assert!(!Selection::default().matches(tags(&[("Service", "goobi")]), None), "an empty selection finds nothing");
    }
}
