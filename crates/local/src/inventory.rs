//! [`InventoryFleet`]: consumers' hosts from saved AWS CLI output, for offline audits.
//!
//! Each file is `aws ec2 describe-instances` output (`Reservations`), `aws ec2
//! describe-launch-templates` output (`LaunchTemplates`, which names the templates
//! instances only carry the ids of), or both in one object. Hosts are selected with the
//! same [`provider::Selection`] rule live scans use, so an audit and a scan agree; a
//! consumer selected by launch template whose hosts' templates the inventory cannot name
//! is an error (reported as unknown), never an empty, compliant fleet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use provider::fleet::{ASG_TAG, LAUNCH_TEMPLATE_ID_TAG};
use provider::{FleetSource, Host, HostQuery, ProviderError};
use serde::Deserialize;

/// A file that is not the JSON it should be, and where.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InventoryError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with line and column for JSON errors.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct File {
    #[serde(default)]
    reservations: Option<Vec<Reservation>>,
    #[serde(default)]
    launch_templates: Option<Vec<Template>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Reservation {
    instances: Vec<Instance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Instance {
    instance_id: String,
    image_id: String,
    state: State,
    #[serde(default)]
    tags: Vec<TagKv>,
    placement: Option<Placement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagKv {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Placement {
    availability_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Template {
    launch_template_id: String,
    launch_template_name: String,
}

#[derive(Default)]
struct Account {
    instances: Vec<Instance>,
    /// Template id → name, when some file gave them.
    templates: Option<BTreeMap<String, String>>,
}

/// Hosts from inventory files, per account.
#[derive(Default)]
pub struct InventoryFleet {
    accounts: BTreeMap<String, Account>,
}

impl InventoryFleet {
    /// Reads `(account, file)` pairs; several files may describe one account.
    pub fn load(files: &[(String, PathBuf)]) -> Result<InventoryFleet, InventoryError> {
        let mut fleet = InventoryFleet::default();
        for (account, path) in files {
            let bad = |message: String| InventoryError { path: path.clone(), message };
            let text = toe::input::read_text(path, toe::input::INVENTORY_LIMIT).map_err(|e| bad(e.to_string()))?;
            fleet.add(account, path, &text)?;
        }
        Ok(fleet)
    }

    /// Adds one file's text for `account`.
    pub fn add(&mut self, account: &str, path: &Path, text: &str) -> Result<(), InventoryError> {
        let bad = |message: String| InventoryError { path: path.to_path_buf(), message };
        let file: File =
            serde_json::from_str(text).map_err(|e| bad(format!("line {}, column {}: {e}", e.line(), e.column())))?;
        if file.reservations.is_none() && file.launch_templates.is_none() {
            return Err(bad(
                "neither `Reservations` (describe-instances) nor `LaunchTemplates` (describe-launch-templates)".into(),
            ));
        }
        let entry = self.accounts.entry(account.to_string()).or_default();
        entry.instances.extend(file.reservations.into_iter().flatten().flat_map(|r| r.instances));
        if let Some(list) = file.launch_templates {
            let names = entry.templates.get_or_insert_with(BTreeMap::new);
            names.extend(list.into_iter().map(|t| (t.launch_template_id, t.launch_template_name)));
        }
        Ok(())
    }
}

impl FleetSource for InventoryFleet {
    fn hosts(&self, q: &HostQuery<'_>) -> Result<Vec<Host>, ProviderError> {
        let Some(inv) = self.accounts.get(q.account) else {
            return Err(ProviderError::message(format!("no --inventory for account {}", q.account)));
        };
        let mut hosts = Vec::new();
        for i in &inv.instances {
            if matches!(i.state.name.as_str(), "terminated" | "shutting-down") {
                continue;
            }
            let tag = |k: &str| i.tags.iter().find(|t| t.key == k).map(|t| t.value.as_str());
            let template_id = tag(LAUNCH_TEMPLATE_ID_TAG);
            let template = match (template_id, &inv.templates) {
                (Some(id), Some(names)) => names.get(id).cloned(),
                (Some(id), None) if !q.selection.launch_templates.is_empty() => {
                    return Err(ProviderError::message(format!(
                        "consumer {} is selected by launch template, but the inventory of account {} does not name template {id} \
                         (add `aws ec2 describe-launch-templates` output with --inventory {}=FILE)",
                        q.consumer, q.account, q.account
                    )));
                }
                _ => None,
            };
            if !q.selection.matches(tag, template.as_deref()) {
                continue;
            }
            let zone = i.placement.as_ref().and_then(|p| p.availability_zone.clone()).unwrap_or_default();
            let region = zone.trim_end_matches(|c: char| c.is_ascii_lowercase()).to_string();
            let region = if region.is_empty() { zone } else { region };
            // The regions a live scan would look in, when the query names them.
            if !q.regions.is_empty() && !q.regions.contains(&region) {
                continue;
            }
            hosts.push(Host {
                consumer: q.consumer.into(),
                account: q.account.into(),
                region: region.into(),
                instance_id: i.instance_id.as_str().into(),
                image_id: i.image_id.as_str().into(),
                state: i.state.name.as_str().into(),
                name: tag("Name").map(Into::into),
                asg: tag(ASG_TAG).map(Into::into),
                launch_template: template.map(Into::into),
                agent: None,
                agent_checked: false,
                services: None,
            });
        }
        Ok(hosts)
    }
}

#[cfg(test)]
mod tests {
    use provider::Selection;

    use super::*;

    const INSTANCES: &str = r#"{"Reservations":[{"Instances":[
        {"InstanceId":"i-1","ImageId":"ami-1a","State":{"Name":"running"},"Placement":{"AvailabilityZone":"eu-west-1a"},
         "Tags":[{"Key":"aws:autoscaling:groupName","Value":"goobi-container-hosts"},{"Key":"aws:ec2launchtemplate:id","Value":"lt-9"}]},
        {"InstanceId":"i-2","ImageId":"ami-1a","State":{"Name":"terminated"},
         "Tags":[{"Key":"aws:autoscaling:groupName","Value":"goobi-container-hosts"}]},
        {"InstanceId":"i-3","ImageId":"ami-1a","State":{"Name":"running"},"Tags":[{"Key":"Name","Value":"goobi-bastion"}]},
        {"InstanceId":"i-4","ImageId":"ami-1a","State":{"Name":"running"}}]}]}"#;

    fn hosts(fleet: &InventoryFleet, selection: Selection) -> Result<Vec<String>, String> {
        let q = HostQuery { consumer: "goobi", account: "workflow", regions: &[], selection: &selection, agents: None };
        fleet.hosts(&q).map(|h| h.into_iter().map(|h| h.instance_id.into()).collect()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_inventory_yields_the_consumers_live_hosts_without_an_agent_verdict() {
        let mut fleet = InventoryFleet::default();
        fleet.add("workflow", Path::new("w.json"), INSTANCES).unwrap();
        let by_group = Selection { asgs: vec!["goobi-container-hosts".into()], ..Selection::default() };
        assert_eq!(hosts(&fleet, by_group).unwrap(), ["i-1"]);
        let q = HostQuery {
            consumer: "goobi",
            account: "workflow",
            regions: &[],
            selection: &Selection { asgs: vec!["goobi-container-hosts".into()], ..Selection::default() },
            agents: None,
        };
        let h = &fleet.hosts(&q).unwrap()[0];
        assert_eq!((h.region.as_str(), h.agent_checked), ("eu-west-1", false));
        let by_tag = Selection { tags: vec![("Name".into(), "goobi-bastion".into())], ..Selection::default() };
        assert_eq!(hosts(&fleet, by_tag).unwrap(), ["i-3"]);
        let err = InventoryFleet::default().add("w", Path::new("bad.json"), "{\n  \"Reservations\": 7 }").unwrap_err();
        assert!(err.to_string().starts_with("bad.json: line 2, column"), "{err}");
    }

    #[test]
    fn a_launch_template_selection_needs_the_templates_names_and_never_reads_as_empty() {
        let mut fleet = InventoryFleet::default();
        fleet.add("workflow", Path::new("w.json"), INSTANCES).unwrap();
        let by_template = Selection { launch_templates: vec!["goobi-container-hosts".into()], ..Selection::default() };
        let err = hosts(&fleet, by_template.clone()).unwrap_err();
        assert!(err.contains("describe-launch-templates") && err.contains("lt-9"), "{err}");
        fleet
            .add(
                "workflow",
                Path::new("t.json"),
                r#"{"LaunchTemplates":[{"LaunchTemplateId":"lt-9","LaunchTemplateName":"goobi-container-hosts"}]}"#,
            )
            .unwrap();
        assert_eq!(hosts(&fleet, by_template).unwrap(), ["i-1"]);
    }
}
