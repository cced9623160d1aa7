//! ECS container hosts in a group: which instances are container instances, draining them
//! so their tasks move before the host goes, and whether a capacity provider drains for
//! AWS's own instance refresh. Read and drain calls only, in the consumer's account.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::ContainerInstanceStatus;

use crate::Aws;
use crate::builder::Polling;
use crate::error::{AwsError, api};

/// An EC2 instance registered with an ECS cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHost {
    /// The cluster's ARN.
    pub cluster: String,
    /// The container instance's ARN.
    pub arn: String,
}

async fn client(aws: &Aws, account: &str, region: &str) -> Result<aws_sdk_ecs::Client, AwsError> {
    Ok(aws_sdk_ecs::Client::new(&aws.config(account, region).await?))
}

/// The container instances among `instances` (EC2 ids), in every cluster of the region.
pub async fn container_hosts(
    aws: &Aws,
    account: &str,
    region: &str,
    instances: &[String],
) -> Result<BTreeMap<String, ContainerHost>, AwsError> {
    let mut found = BTreeMap::new();
    if instances.is_empty() {
        return Ok(found);
    }
    let ecs = client(aws, account, region).await?;
    let mut clusters = Vec::new();
    let mut pages = ecs.list_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ecs:ListClusters", account, region))?;
        clusters.extend(page.cluster_arns().iter().cloned());
    }
    // The cluster query language narrows the listing on AWS; the ids are checked here too.
    let quoted: Vec<String> = instances.iter().map(|i| format!("'{i}'")).collect();
    for cluster in clusters {
        let mut arns = Vec::new();
        for chunk in quoted.chunks(100) {
            let filter = format!("ec2InstanceId in [{}]", chunk.join(","));
            let mut pages = ecs.list_container_instances().cluster(&cluster).filter(filter).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(api("ecs:ListContainerInstances", account, region))?;
                arns.extend(page.container_instance_arns().iter().cloned());
            }
        }
        for chunk in arns.chunks(100) {
            let out = ecs
                .describe_container_instances()
                .cluster(&cluster)
                .set_container_instances(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(api("ecs:DescribeContainerInstances", account, region))?;
            for ci in out.container_instances() {
                let (Some(ec2), Some(arn)) = (ci.ec2_instance_id(), ci.container_instance_arn()) else { continue };
                if instances.iter().any(|i| i == ec2) {
                    found.insert(ec2.to_string(), ContainerHost { cluster: cluster.clone(), arn: arn.to_string() });
                }
            }
        }
    }
    Ok(found)
}

/// Sets the host DRAINING (ECS moves service tasks elsewhere and places none on it) and
/// waits until no task runs or is pending there. A host that does not drain in time is
/// set ACTIVE again, so the group keeps its capacity, and the error says what is left.
pub async fn drain(
    aws: &Aws,
    account: &str,
    region: &str,
    instance: &str,
    host: &ContainerHost,
    timeout: std::time::Duration,
    p: Polling,
) -> Result<(), AwsError> {
    let ecs = client(aws, account, region).await?;
    set_state(&ecs, account, region, host, ContainerInstanceStatus::Draining).await?;
    let start = tokio::time::Instant::now();
    let mut backoff = p.backoff();
    loop {
        let out = ecs
            .describe_container_instances()
            .cluster(&host.cluster)
            .container_instances(&host.arn)
            .send()
            .await
            .map_err(api("ecs:DescribeContainerInstances", account, region))?;
        let Some(ci) = out.container_instances().first() else { return Ok(()) };
        let (running, pending) = (ci.running_tasks_count(), ci.pending_tasks_count());
        if running == 0 && pending == 0 {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            // Best effort: the timeout is the error either way.
            let _ = set_state(&ecs, account, region, host, ContainerInstanceStatus::Active).await;
            return Err(AwsError::Failed {
                what: format!("draining {instance} (ECS container instance {})", host.arn),
                region: region.into(),
                message: format!(
                    "{running} task(s) still running and {pending} pending after {} s; set back to ACTIVE, not terminated",
                    timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

async fn set_state(
    ecs: &aws_sdk_ecs::Client,
    account: &str,
    region: &str,
    host: &ContainerHost,
    status: ContainerInstanceStatus,
) -> Result<(), AwsError> {
    let out = ecs
        .update_container_instances_state()
        .cluster(&host.cluster)
        .container_instances(&host.arn)
        .status(status)
        .send()
        .await
        .map_err(api("ecs:UpdateContainerInstancesState", account, region))?;
    if let Some(f) = out.failures().first() {
        return Err(AwsError::Failed {
            what: format!("ECS container instance {}", host.arn),
            region: region.into(),
            message: format!("{}: {}", f.reason().unwrap_or_default(), f.detail().unwrap_or_default()),
        });
    }
    Ok(())
}

/// The capacity provider that manages the group, if one does: its name, and whether it
/// drains hosts before AWS terminates them (`managedDraining`; absent means ENABLED, AWS's
/// default since it was introduced).
pub async fn capacity_provider(
    aws: &Aws,
    account: &str,
    region: &str,
    group_arn: &str,
    group_name: &str,
) -> Result<Option<(String, bool)>, AwsError> {
    let ecs = client(aws, account, region).await?;
    // The providers in use are the clusters' (DescribeCapacityProviders is asked by name:
    // every provider an account ever made may be many, and moto requires the names).
    let mut clusters = Vec::new();
    let mut pages = ecs.list_clusters().into_paginator().send();
    while let Some(page) = pages.next().await {
        clusters.extend(page.map_err(api("ecs:ListClusters", account, region))?.cluster_arns().iter().cloned());
    }
    let mut names = Vec::new();
    for chunk in clusters.chunks(100) {
        let out = ecs.describe_clusters().set_clusters(Some(chunk.to_vec())).send().await.map_err(api(
            "ecs:DescribeClusters",
            account,
            region,
        ))?;
        for c in out.clusters() {
            names.extend(c.capacity_providers().iter().filter(|n| !n.starts_with("FARGATE")).cloned());
        }
    }
    names.sort();
    names.dedup();
    for chunk in names.chunks(10) {
        let out = ecs
            .describe_capacity_providers()
            .set_capacity_providers(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(api("ecs:DescribeCapacityProviders", account, region))?;
        for cp in out.capacity_providers() {
            let Some(asg) = cp.auto_scaling_group_provider() else { continue };
            let arn = asg.auto_scaling_group_arn();
            if arn == group_arn || arn == group_name || arn.ends_with(&format!("autoScalingGroupName/{group_name}")) {
                let drains = asg.managed_draining().is_none_or(|d| d.as_str() != "DISABLED");
                return Ok(Some((cp.name().unwrap_or_default().to_string(), drains)));
            }
        }
    }
    Ok(None)
}
