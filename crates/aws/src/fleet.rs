//! Finding a consumer's hosts: instances by tags and by auto scaling group, with their
//! SSM agent's health. Read-only, through the consumer's role.
//!
//! ASG membership comes from the `aws:autoscaling:groupName` tag EC2 puts on every group
//! instance, so one paginated DescribeInstances per selector finds everything and no
//! instance is fetched twice.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use fleet::{Agent, Host};

use crate::Aws;
use crate::error::{AwsError, api, sdk_message};

const ASG_TAG: &str = "aws:autoscaling:groupName";

/// Where and what to look for.
#[derive(Debug, Clone)]
pub struct Selector {
    pub consumer: String,
    pub account: String,
    pub region: String,
    pub tags: Vec<(String, String)>,
    pub asgs: Vec<String>,
}

/// Every live (not terminated) instance the selector names, with its agent's status.
pub async fn scan(aws: &Aws, sel: &Selector) -> Result<Vec<Host>, AwsError> {
    let ec2 = aws.ec2(&sel.account, &sel.region).await?;
    let live = Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build();
    let mut queries = Vec::new();
    if !sel.tags.is_empty() {
        let mut filters = vec![live.clone()];
        filters.extend(sel.tags.iter().map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build()));
        queries.push(filters);
    }
    if !sel.asgs.is_empty() {
        let asg = Filter::builder().name(format!("tag:{ASG_TAG}")).set_values(Some(sel.asgs.clone())).build();
        queries.push(vec![live.clone(), asg]);
    }
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    for filters in queries {
        let mut pages = ec2.describe_instances().set_filters(Some(filters)).max_results(1000).into_paginator().send();
        while let Some(page) = pages.next().await {
            aws.limits(&sel.account, &sel.region).await.describe.take().await;
            let page = page.map_err(|e| api("ec2:DescribeInstances", &sel.account, &sel.region)(sdk_message(&e)))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                let tag =
                    |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
                hosts.entry(id.to_string()).or_insert_with(|| Host {
                    consumer: sel.consumer.clone(),
                    account: sel.account.clone(),
                    region: sel.region.clone(),
                    instance_id: id.to_string(),
                    image_id: i.image_id().unwrap_or_default().to_string(),
                    state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
                    name: tag("Name"),
                    asg: tag(ASG_TAG),
                    agent: None,
                    agent_checked: true,
                });
            }
        }
    }
    let ids: Vec<String> = hosts.keys().cloned().collect();
    for (id, agent) in agents(aws, &sel.account, &sel.region, &ids).await? {
        if let Some(h) = hosts.get_mut(&id) {
            h.agent = Some(agent);
        }
    }
    Ok(hosts.into_values().collect())
}

/// SSM's view of the given instances (those it does not know are absent).
pub async fn agents(
    aws: &Aws,
    account: &str,
    region: &str,
    instances: &[String],
) -> Result<Vec<(String, Agent)>, AwsError> {
    let ssm = aws.ssm(account, region).await?;
    let mut out = Vec::new();
    // The InstanceIds filter takes at most 50 values.
    for chunk in instances.chunks(50) {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .set_values(Some(chunk.to_vec()))
            .build()
            .map_err(|e| api("ssm:DescribeInstanceInformation", account, region)(e.to_string()))?;
        let mut pages = ssm.describe_instance_information().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            aws.limits(account, region).await.describe.take().await;
            let page = page.map_err(|e| api("ssm:DescribeInstanceInformation", account, region)(sdk_message(&e)))?;
            for i in page.instance_information_list() {
                let Some(id) = i.instance_id() else { continue };
                out.push((
                    id.to_string(),
                    Agent {
                        ping: i.ping_status().map(|p| p.as_str().to_string()).unwrap_or_default(),
                        version: i.agent_version().unwrap_or_default().to_string(),
                        last_ping: i.last_ping_date_time().map(|t| t.to_string()),
                    },
                ));
            }
        }
    }
    Ok(out)
}
