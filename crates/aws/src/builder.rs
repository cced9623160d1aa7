//! The EC2 builder's steps: launch a tagged instance, wait for the SSM agent, run commands
//! through Run Command, image the instance, and clean up after a failed or interrupted
//! build by its `amictl:build-id` tag.
//!
//! Every resource a build creates carries `amictl:build-id`, so [`cleanup`] can find and
//! remove what a crashed run left behind, and [`find_image`] lets a resumed build adopt an
//! AMI it already made instead of making a second one.

use std::time::Duration;

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IamInstanceProfileSpecification, ImageState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType, Tag, TagSpecification,
};
use aws_sdk_ssm::types::{CommandInvocationStatus, InstanceInformationStringFilter, PingStatus};

use crate::Aws;
use crate::error::{AwsError, api, sdk_message};

pub const BUILD_ID_TAG: &str = "amictl:build-id";
pub const ROLE_TAG: &str = "amictl:role";

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub build_id: String,
    /// `builder` or `tester`.
    pub role: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub instance_profile: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Polling {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.interval)
    }
}

/// The waits between looks at something AWS is changing: a quarter of the interval, then
/// doubling up to it. A state that changes in seconds (a short command, an instance's
/// start) is seen within seconds; a long wait costs one call an interval, far inside every
/// API family's refill rate (EC2's Describe* refill 20 a second per account and region).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(interval: Duration) -> Backoff {
        Backoff { next: interval / 4, max: interval }
    }

    /// How long to wait before the next look.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

fn tags(spec: &LaunchSpec, resource: ResourceType) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Tag::builder().key("Name").value(&spec.name).build())
        .tags(Tag::builder().key(BUILD_ID_TAG).value(&spec.build_id).build())
        .tags(Tag::builder().key(ROLE_TAG).value(&spec.role).build())
        .build()
}

/// Launches one instance with IMDSv2 required and every resource tagged with the build id.
pub async fn launch(aws: &Aws, account: &str, region: &str, spec: &LaunchSpec) -> Result<String, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    let mut req = ec2
        .run_instances()
        .image_id(&spec.image_id)
        .instance_type(InstanceType::from(spec.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .tag_specifications(tags(spec, ResourceType::Instance))
        .tag_specifications(tags(spec, ResourceType::Volume))
        .set_subnet_id(spec.subnet.clone());
    if !spec.security_groups.is_empty() {
        req = req.set_security_group_ids(Some(spec.security_groups.clone()));
    }
    if let Some(profile) = &spec.instance_profile {
        req = req.iam_instance_profile(IamInstanceProfileSpecification::builder().name(profile).build());
    }
    let out = req.send().await.map_err(api("ec2:RunInstances", account, region))?;
    out.instances().first().and_then(|i| i.instance_id()).map(str::to_string).ok_or_else(|| AwsError::Failed {
        what: "RunInstances".into(),
        region: region.into(),
        message: "no instance in the response".into(),
    })
}

/// Waits for `running`; fails at once on a terminal state.
pub async fn wait_running(aws: &Aws, account: &str, region: &str, instance: &str, p: Polling) -> Result<(), AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    let start = tokio::time::Instant::now();
    let mut backoff = p.backoff();
    loop {
        aws.limits(account, region).await.describe.take().await;
        let out = ec2.describe_instances().instance_ids(instance).send().await.map_err(api(
            "ec2:DescribeInstances",
            account,
            region,
        ))?;
        let state = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.state().and_then(|s| s.name()).cloned());
        match state {
            Some(InstanceStateName::Running) => return Ok(()),
            Some(
                s @ (InstanceStateName::Terminated | InstanceStateName::ShuttingDown | InstanceStateName::Stopped),
            ) => {
                return Err(AwsError::Failed {
                    what: format!("instance {instance}"),
                    region: region.into(),
                    message: format!("is {s:?} instead of running"),
                });
            }
            _ => {}
        }
        if start.elapsed() >= p.timeout {
            return Err(AwsError::Timeout {
                what: format!("instance {instance} to run"),
                region: region.into(),
                seconds: p.timeout.as_secs(),
            });
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// Waits until the instance's SSM agent reports Online. The timeout message names the
/// usual causes, because "never registered" is the most common first-build failure.
pub async fn wait_online(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    instance: &str,
    p: Polling,
) -> Result<(), AwsError> {
    let start = tokio::time::Instant::now();
    let mut backoff = p.backoff();
    loop {
        let out = ssm
            .describe_instance_information()
            .filters(
                InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .values(instance)
                    .build()
                    .map_err(|e| api("ssm:DescribeInstanceInformation", account, region)(e.to_string()))?,
            )
            .send()
            .await
            .map_err(api("ssm:DescribeInstanceInformation", account, region))?;
        if out
            .instance_information_list()
            .iter()
            .any(|i| i.instance_id() == Some(instance) && i.ping_status() == Some(&PingStatus::Online))
        {
            return Ok(());
        }
        if start.elapsed() >= p.timeout {
            return Err(AwsError::Failed {
                what: format!("instance {instance}"),
                region: region.into(),
                message: format!(
                    "its SSM agent did not report Online within {}s; usual causes: the instance profile lacks AmazonSSMManagedInstanceCore, \
                     the subnet has no route to the SSM endpoints (NAT or VPC endpoints), or the image has no running SSM agent",
                    p.timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// The result of one Run Command invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub command_id: String,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a shell script on the instance with AWS-RunShellScript and waits for the result.
/// Anything but success is [`AwsError::Command`] with the exit code and the output's tail.
pub async fn run_command(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    instance: &str,
    what: &str,
    commands: &[String],
    p: Polling,
) -> Result<CommandOutput, AwsError> {
    match run_command_to_end(ssm, account, region, instance, what, commands, p).await? {
        (out, None) => Ok(out),
        (_, Some(failed)) => Err(failed),
    }
}

/// [`run_command`] for a script that reports on several things: a command that ran and
/// failed still gives everything it printed, beside its [`AwsError::Command`]. `Err` is a
/// command that could not be sent or read, or did not end in time.
pub async fn run_command_to_end(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    instance: &str,
    what: &str,
    commands: &[String],
    p: Polling,
) -> Result<(CommandOutput, Option<AwsError>), AwsError> {
    let sent = ssm
        .send_command()
        .document_name("AWS-RunShellScript")
        .comment(what.chars().take(100).collect::<String>())
        .instance_ids(instance)
        .parameters("commands", commands.to_vec())
        // The document's own limit on the script's run (its default is 3600 s), as long as
        // amictl waits; `timeout_seconds` only bounds delivery.
        .parameters("executionTimeout", vec![p.timeout.as_secs().clamp(1, 172_800).to_string()])
        .timeout_seconds(p.timeout.as_secs().clamp(30, 2_592_000) as i32)
        .send()
        .await
        .map_err(api("ssm:SendCommand", account, region))?;
    let command_id = sent.command().and_then(|c| c.command_id()).unwrap_or_default().to_string();
    let start = tokio::time::Instant::now();
    let mut backoff = p.backoff();
    loop {
        tokio::time::sleep(backoff.next_wait()).await;
        let inv = match ssm.get_command_invocation().command_id(&command_id).instance_id(instance).send().await {
            Ok(inv) => inv,
            // Right after SendCommand the invocation may not exist yet.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_invocation_does_not_exist()) => continue,
            Err(e) => return Err(api("ssm:GetCommandInvocation", account, region)(e)),
        };
        let stdout = inv.standard_output_content().unwrap_or_default().to_string();
        let stderr = inv.standard_error_content().unwrap_or_default().to_string();
        match inv.status() {
            Some(CommandInvocationStatus::Success) => return Ok((CommandOutput { command_id, stdout, stderr }, None)),
            Some(
                s @ (CommandInvocationStatus::Failed
                | CommandInvocationStatus::Cancelled
                | CommandInvocationStatus::TimedOut),
            ) => {
                let tail: Vec<&str> = stderr.lines().chain(stdout.lines()).rev().take(8).collect();
                let failed = AwsError::Command {
                    what: format!("{what} (command {command_id})"),
                    instance: instance.into(),
                    region: region.into(),
                    status: format!("{s:?}"),
                    exit_code: inv.response_code(),
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                };
                return Ok((CommandOutput { command_id, stdout, stderr }, Some(failed)));
            }
            _ => {}
        }
        if start.elapsed() >= p.timeout {
            return Err(AwsError::Timeout {
                what: format!("{what} (command {command_id} on {instance})"),
                region: region.into(),
                seconds: p.timeout.as_secs(),
            });
        }
    }
}

/// Terminates one instance (the builder, once its AMI exists).
pub async fn terminate(aws: &Aws, account: &str, region: &str, instance: &str) -> Result<(), AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    ec2.terminate_instances().instance_ids(instance).send().await.map_err(api(
        "ec2:TerminateInstances",
        account,
        region,
    ))?;
    Ok(())
}

/// Reboots the instance (the test instance's "survives a reboot" check).
pub async fn reboot(aws: &Aws, account: &str, region: &str, instance: &str) -> Result<(), AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    ec2.reboot_instances().instance_ids(instance).send().await.map_err(api("ec2:RebootInstances", account, region))?;
    Ok(())
}

/// Where a build's secret parameter values live while it runs.
pub fn secret_path(build_id: &str) -> String {
    format!("/amictl/build/{build_id}")
}

/// Stores a build's secrets as SecureString parameters under [`secret_path`]; the
/// instance reads them, and [`cleanup`] deletes them.
pub async fn put_secrets(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    secrets: &[(String, String)],
) -> Result<(), AwsError> {
    for (name, value) in secrets {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            // The SDK's message never includes the value; say which parameter.
            .map_err(|e| api("ssm:PutParameter", account, region)(format!("{name}: {}", sdk_message(&e))))?;
    }
    Ok(())
}

/// Images the instance, tagging the AMI with the build id; returns the AMI id.
pub async fn create_image(
    aws: &Aws,
    account: &str,
    region: &str,
    instance: &str,
    name: &str,
    build_id: &str,
) -> Result<String, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    let out = ec2
        .create_image()
        .instance_id(instance)
        .name(name)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Image)
                .tags(Tag::builder().key("Name").value(name).build())
                .tags(Tag::builder().key(BUILD_ID_TAG).value(build_id).build())
                .build(),
        )
        .send()
        .await
        .map_err(api("ec2:CreateImage", account, region))?;
    out.image_id().map(str::to_string).ok_or_else(|| AwsError::Failed {
        what: "CreateImage".into(),
        region: region.into(),
        message: "no image id".into(),
    })
}

/// The AMI this account owns under `name`, if any: a resumed build adopts it, and the
/// publisher finds a region's copy before making one.
pub async fn find_image(
    aws: &Aws,
    account: &str,
    region: &str,
    name: &str,
) -> Result<Option<(String, Option<String>)>, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    aws.limits(account, region).await.describe.take().await;
    let out = ec2
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .send()
        .await
        .map_err(api("ec2:DescribeImages", account, region))?;
    Ok(out.images().iter().find(|i| i.name() == Some(name) && i.state() != Some(&ImageState::Deregistered)).map(|i| {
        let build = i.tags().iter().find(|t| t.key() == Some(BUILD_ID_TAG)).and_then(|t| t.value()).map(str::to_string);
        (i.image_id().unwrap_or_default().to_string(), build)
    }))
}

/// What [`cleanup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cleanup {
    pub terminated: Vec<String>,
    pub deregistered: Vec<String>,
    pub snapshots_deleted: Vec<String>,
    pub secrets_deleted: usize,
}

/// Terminates every instance tagged with the build id, deregisters its AMIs (and deletes
/// their snapshots, which EC2 keeps otherwise) unless `keep_image` names one (the build's
/// finished product), and deletes the build's secret parameters. Safe to run again.
pub async fn cleanup(
    aws: &Aws,
    account: &str,
    region: &str,
    build_id: &str,
    keep_image: Option<&str>,
) -> Result<Cleanup, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    let tag = Filter::builder().name(format!("tag:{BUILD_ID_TAG}")).values(build_id).build();
    let mut report = Cleanup::default();
    let mut pages = ec2
        .describe_instances()
        .filters(tag.clone())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2:DescribeInstances", account, region))?;
        report.terminated.extend(
            page.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id()).map(str::to_string),
        );
    }
    if !report.terminated.is_empty() {
        ec2.terminate_instances().set_instance_ids(Some(report.terminated.clone())).send().await.map_err(api(
            "ec2:TerminateInstances",
            account,
            region,
        ))?;
    }
    let images = ec2.describe_images().owners("self").filters(tag).send().await.map_err(api(
        "ec2:DescribeImages",
        account,
        region,
    ))?;
    for image in images.images() {
        let Some(id) = image.image_id() else { continue };
        if Some(id) == keep_image {
            continue;
        }
        let snapshots: Vec<String> = image
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
            .collect();
        ec2.deregister_image().image_id(id).send().await.map_err(api("ec2:DeregisterImage", account, region))?;
        report.deregistered.push(id.to_string());
        for snapshot in snapshots {
            ec2.delete_snapshot().snapshot_id(&snapshot).send().await.map_err(api(
                "ec2:DeleteSnapshot",
                account,
                region,
            ))?;
            report.snapshots_deleted.push(snapshot);
        }
    }
    report.terminated.sort();
    let ssm = aws.ssm(account, region).await?;
    let mut names = Vec::new();
    let mut pages = ssm.get_parameters_by_path().path(secret_path(build_id)).recursive(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ssm:GetParametersByPath", account, region))?;
        names.extend(page.parameters().iter().filter_map(|p| p.name()).map(str::to_string));
    }
    for chunk in names.chunks(10) {
        ssm.delete_parameters().set_names(Some(chunk.to_vec())).send().await.map_err(api(
            "ssm:DeleteParameters",
            account,
            region,
        ))?;
    }
    report.secrets_deleted = names.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_at_a_quarter_interval_and_double_up_to_it() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [2500, 5000, 10_000, 10_000, 10_000]);
    }
}
