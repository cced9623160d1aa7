//! Finding a consumer's hosts: instances by tags and by auto scaling group, with their
//! SSM agent's health. Read-only, through the consumer's role.
//!
//! ASG membership comes from the `aws:autoscaling:groupName` tag EC2 puts on every group
//! instance, so one paginated DescribeInstances per selector finds everything and no
//! instance is fetched twice.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use provider::fleet::{ASG_TAG, LAUNCH_TEMPLATE_ID_TAG};
use provider::{Agent, Host, Selection, Short};

use crate::Aws;
use crate::error::{AwsError, api};

/// Where and what to look for.
#[derive(Debug, Clone)]
pub struct Selector {
    pub consumer: String,
    pub account: String,
    pub region: String,
    /// Which instances are the consumer's (by tags, groups and launch template names).
    pub selection: Selection,
}

/// Every live (not terminated) instance the selector names, with its agent's status. The
/// queries narrow what EC2 returns; [`Selection::matches`] — the rule inventory audits use
/// too — decides.
pub async fn scan(aws: &Aws, sel: &Selector) -> Result<Vec<Host>, AwsError> {
    let selection = &sel.selection;
    let ec2 = aws.ec2(&sel.account, &sel.region).await?;
    let live = Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build();
    let mut queries = Vec::new();
    if !selection.tags.is_empty() {
        let mut filters = vec![live.clone()];
        filters
            .extend(selection.tags.iter().map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build()));
        queries.push(filters);
    }
    if !selection.asgs.is_empty() {
        let asg = Filter::builder().name(format!("tag:{ASG_TAG}")).set_values(Some(selection.asgs.clone())).build();
        queries.push(vec![live.clone(), asg]);
    }
    // Template id → name, for the templates the selection names.
    let mut templates: BTreeMap<String, String> = BTreeMap::new();
    if !selection.launch_templates.is_empty() {
        let found = ec2
            .describe_launch_templates()
            .set_launch_template_names(Some(selection.launch_templates.clone()))
            .send()
            .await;
        // A template lives in one region; elsewhere EC2 says "not found", which means "none here".
        match found {
            Ok(out) => templates.extend(
                out.launch_templates()
                    .iter()
                    .filter_map(|t| Some((t.launch_template_id()?.to_string(), t.launch_template_name()?.to_string()))),
            ),
            Err(e)
                if e.as_service_error()
                    .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
                    .is_some_and(|c| c.starts_with("InvalidLaunchTemplateName.NotFound")) => {}
            Err(e) => return Err(api("ec2:DescribeLaunchTemplates", &sel.account, &sel.region)(e)),
        };
        if !templates.is_empty() {
            let ids: Vec<String> = templates.keys().cloned().collect();
            let lt = Filter::builder().name(format!("tag:{LAUNCH_TEMPLATE_ID_TAG}")).set_values(Some(ids)).build();
            queries.push(vec![live.clone(), lt]);
        }
    }
    // A plain list, sorted and deduplicated at the end (an instance two selectors name is
    // found twice): no second copy of every id in a map, at tens of thousands of hosts.
    let mut hosts: Vec<Host> = Vec::new();
    for filters in queries {
        // Pages of 500, not EC2's largest (1,000): the SDK's parse of a page is many times
        // the page, and at 50,000 hosts halving it takes the scan's peak from ~75 to ~60 MiB
        // at the same instances/s (`scripts/bench-scan`).
        let mut pages = ec2.describe_instances().set_filters(Some(filters)).max_results(500).into_paginator().send();
        loop {
            aws.limits(&sel.account, &sel.region).await.describe.take().await;
            // One page read and reduced to hosts at a time per turn: the SDK's parse of a
            // page is many times its useful part.
            let _turn = aws.page_turn().await;
            let Some(page) = pages.next().await else { break };
            let page = page.map_err(api("ec2:DescribeInstances", &sel.account, &sel.region))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                let tag = |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value());
                let template = tag(LAUNCH_TEMPLATE_ID_TAG).and_then(|t| templates.get(t)).cloned();
                if !selection.matches(tag, template.as_deref()) {
                    continue;
                }
                hosts.push(Host {
                    consumer: sel.consumer.as_str().into(),
                    account: sel.account.as_str().into(),
                    region: sel.region.as_str().into(),
                    instance_id: id.into(),
                    image_id: i.image_id().unwrap_or_default().into(),
                    state: i.state().and_then(|s| s.name()).map(|n| n.as_str().into()).unwrap_or_default(),
                    name: tag("Name").map(Short::from),
                    asg: tag(ASG_TAG).map(Short::from),
                    launch_template: template.as_deref().map(Short::from),
                    agent: None,
                    agent_checked: true,
                    services: None,
                });
            }
        }
    }
    hosts.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    hosts.dedup_by(|a, b| a.instance_id == b.instance_id);
    hosts.shrink_to_fit();
    agents(aws, &sel.account, &sel.region, &mut hosts).await?;
    Ok(hosts)
}

/// SSM's view of each host's agent, set on the host (those SSM does not know stay `None`).
/// `hosts` is sorted by instance id.
async fn agents(aws: &Aws, account: &str, region: &str, hosts: &mut [Host]) -> Result<(), AwsError> {
    let ssm = aws.ssm(account, region).await?;
    // The InstanceIds filter takes at most 50 values.
    for chunk in 0..hosts.len().div_ceil(50) {
        let ids: Vec<String> =
            hosts[chunk * 50..((chunk + 1) * 50).min(hosts.len())].iter().map(|h| h.instance_id.to_string()).collect();
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .set_values(Some(ids))
            .build()
            .map_err(|e| api("ssm:DescribeInstanceInformation", account, region)(e.to_string()))?;
        let mut pages = ssm.describe_instance_information().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            aws.limits(account, region).await.describe.take().await;
            let page = page.map_err(api("ssm:DescribeInstanceInformation", account, region))?;
            for i in page.instance_information_list() {
                let Some(id) = i.instance_id() else { continue };
                let Ok(at) = hosts.binary_search_by(|h| h.instance_id.as_str().cmp(id)) else { continue };
                hosts[at].agent = Some(Agent {
                    ping: i.ping_status().map(|p| p.as_str().into()).unwrap_or_default(),
                    version: i.agent_version().unwrap_or_default().into(),
                    last_ping: i
                        .last_ping_date_time()
                        .and_then(|t| t.fmt(aws_sdk_ssm::primitives::DateTimeFormat::DateTime).ok())
                        .map(Short::from),
                });
            }
        }
    }
    Ok(())
}

/// Runs the agents' own check (a shell script, e.g. their services active) on Online
/// instances through Run Command, 50 per command, and reads each instance's result.
pub async fn check_services(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    instances: &[String],
    script: &str,
    p: crate::builder::Polling,
) -> Result<Vec<(String, Result<(), String>)>, AwsError> {
    use aws_sdk_ssm::types::CommandInvocationStatus as S;
    let mut out = Vec::new();
    for chunk in instances.chunks(50) {
        let sent = ssm
            .send_command()
            .document_name("AWS-RunShellScript")
            .comment("amictl fleet: agents healthy")
            .set_instance_ids(Some(chunk.to_vec()))
            .parameters("commands", vec![script.to_string()])
            .timeout_seconds(p.timeout.as_secs().clamp(30, 2_592_000) as i32)
            .send()
            .await
            .map_err(api("ssm:SendCommand", account, region))?;
        let id = sent.command().and_then(|c| c.command_id()).unwrap_or_default().to_string();
        let start = tokio::time::Instant::now();
        let mut pending: Vec<String> = chunk.to_vec();
        while !pending.is_empty() {
            tokio::time::sleep(p.interval).await;
            let mut still = Vec::new();
            for instance in pending {
                let inv = match ssm.get_command_invocation().command_id(&id).instance_id(&instance).send().await {
                    Ok(inv) => inv,
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_invocation_does_not_exist()) => {
                        still.push(instance);
                        continue;
                    }
                    Err(e) => return Err(api("ssm:GetCommandInvocation", account, region)(e)),
                };
                match inv.status() {
                    Some(S::Success) => out.push((instance, Ok(()))),
                    Some(s @ (S::Failed | S::Cancelled | S::TimedOut)) => {
                        let text = inv.standard_error_content().or(inv.standard_output_content()).unwrap_or_default();
                        let tail = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
                        out.push((instance, Err(format!("{s:?}: {}", tail.trim()))));
                    }
                    _ => still.push(instance),
                }
            }
            if start.elapsed() >= p.timeout {
                out.extend(still.into_iter().map(|i| (i, Err("no answer to the agent check".to_string()))));
                break;
            }
            pending = still;
        }
    }
    Ok(out)
}
