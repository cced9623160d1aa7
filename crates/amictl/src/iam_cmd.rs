//! `amictl iam-policy`: the IAM documents the config needs, least privilege.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde_json::json;

use crate::cli::Common;
use crate::lifecycle::load_config;
use crate::{UsageError, exit};

pub fn iam_policy(common: &Common) -> Result<u8> {
    let cfg = load_config(common)?;
    let platform = cfg.accounts.values().find(|a| a.role.is_none()).ok_or_else(|| {
        UsageError("no platform account: one account must have no `role` (amictl runs with its credentials)".into())
    })?;
    let mut regions: BTreeSet<String> = cfg.aws_region.iter().cloned().collect();
    let mut prefixes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut copies: BTreeSet<String> = BTreeSet::new();
    let mut inspected: BTreeSet<String> = BTreeSet::new();
    for image in cfg.images.values() {
        if let Some(d) = &image.distribute {
            regions.extend(d.regions.iter().cloned());
            for account in &d.accounts {
                let entry = prefixes.entry(account.clone()).or_default();
                if let Some(p) = &d.ssm_parameter {
                    entry.insert(p.clone());
                }
                if d.copy {
                    copies.insert(account.clone());
                }
                if image.advisories == Some(config::AdvisoryFeed::Inspector) {
                    inspected.insert(account.clone());
                }
            }
        }
    }
    let mut rollouts: BTreeSet<String> = BTreeSet::new();
    let mut topics: BTreeSet<String> = BTreeSet::new();
    for c in cfg.consumers.values() {
        prefixes.entry(c.account.clone()).or_default();
        match &c.rollout {
            config::Rollout::Notify { sns_topic } => topics.extend(sns_topic.iter().cloned()),
            _ => {
                rollouts.insert(c.account.clone());
            }
        }
    }
    let regions: Vec<String> = regions.into_iter().collect();
    let topics: Vec<String> = topics.into_iter().collect();
    let roles: Vec<String> =
        prefixes.keys().filter_map(|a| cfg.accounts.get(a)).filter_map(|a| a.role.clone()).collect();
    let mut consumers = serde_json::Map::new();
    for (name, p) in &prefixes {
        let account = &cfg.accounts[name];
        let p: Vec<String> = p.iter().cloned().collect();
        consumers.insert(
            name.clone(),
            json!({
                "account": account.id,
                "role": account.role,
                "policy": aws::iam::consumer_policy(&account.id, &regions, &p, copies.contains(name), rollouts.contains(name), inspected.contains(name)),
                "trust_policy": aws::iam::consumer_trust_policy(&platform.id, account.external_id.as_deref()),
            }),
        );
    }
    let out = json!({
        "platform": {"account": platform.id, "policy": aws::iam::platform_policy(&platform.id, &regions, &roles, &topics)},
        "builder_instance_profile": {
            "managed_policies": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"],
            "policy": aws::iam::builder_instance_policy(&platform.id, &regions),
        },
        "consumers": consumers,
    });
    if common.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("# Platform account {} — attach to the identity amictl runs as", platform.id);
        println!("{}", serde_json::to_string_pretty(&out["platform"]["policy"])?);
        println!("\n# Builder/test instance profile role — attach AmazonSSMManagedInstanceCore and");
        println!("{}", serde_json::to_string_pretty(&out["builder_instance_profile"]["policy"])?);
        for (name, c) in &consumers {
            println!(
                "\n# Consumer `{name}` ({}) — role {}",
                c["account"].as_str().unwrap_or_default(),
                c["role"].as_str().unwrap_or("(none)")
            );
            println!("{}", serde_json::to_string_pretty(&c["policy"])?);
            println!("# trust policy of that role");
            println!("{}", serde_json::to_string_pretty(&c["trust_policy"])?);
        }
    }
    Ok(exit::OK)
}
