//! Moving a consumer's hosts to a new version, by the consumer's chosen method.
//!
//! Every method starts the same way: the group's launch template gets a new version with
//! the new AMI (made from the current one with `SourceVersion`, so everything else is
//! inherited) and becomes the group's default, so new launches use the new image. Then
//! `rolling-replace` replaces instances in batches and waits for each replacement to be
//! InService with its SSM agent Online; `instance-refresh` hands the replacement to EC2
//! Auto Scaling and follows it to the end, rolling back on failure. `notify` tells the
//! owner. A failure stops the rollout and restores the previous launch template version
//! where the method allows, so new launches do not keep using a version that failed.

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, RefreshPreferences};
use aws_sdk_ec2::types::{LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData};

use provider::{Replacement, TemplateChange};

use crate::Aws;
use crate::builder::Polling;
use crate::error::{AwsError, api, sdk_message};

/// One auto scaling group to move to `image_id` (the AMI the consumer launches there).
#[derive(Debug, Clone)]
pub struct Target {
    pub account: String,
    pub region: String,
    pub asg: String,
    pub image_id: String,
}

async fn autoscaling(aws: &Aws, account: &str, region: &str) -> Result<aws_sdk_autoscaling::Client, AwsError> {
    Ok(aws_sdk_autoscaling::Client::new(&aws.config(account, region).await?))
}

async fn group(
    asc: &aws_sdk_autoscaling::Client,
    t: &Target,
) -> Result<aws_sdk_autoscaling::types::AutoScalingGroup, AwsError> {
    let out = asc.describe_auto_scaling_groups().auto_scaling_group_names(&t.asg).send().await.map_err(api(
        "autoscaling:DescribeAutoScalingGroups",
        &t.account,
        &t.region,
    ))?;
    out.auto_scaling_groups().first().cloned().ok_or_else(|| AwsError::NotFound {
        what: format!("auto scaling group {}", t.asg),
        account: t.account.clone(),
        region: t.region.clone(),
    })
}

/// Points the group's launch template at the new AMI (a new default version). Idempotent.
pub async fn update_launch_template(aws: &Aws, t: &Target) -> Result<TemplateChange, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let asc = autoscaling(aws, account, region).await?;
    let ec2 = aws.ec2(account, region).await?;
    let g = group(&asc, t).await?;
    let spec = g
        .launch_template()
        .or_else(|| {
            g.mixed_instances_policy().and_then(|m| m.launch_template()).and_then(|l| l.launch_template_specification())
        })
        .ok_or_else(|| AwsError::Failed {
            what: format!("auto scaling group {}", t.asg),
            region: region.into(),
            message: "uses a launch configuration, not a launch template; amictl rolls out through launch templates"
                .into(),
        })?;
    let pinned = spec.version().unwrap_or("$Default").to_string();
    let mut describe = ec2.describe_launch_template_versions().versions(&pinned);
    describe = match (spec.launch_template_id(), spec.launch_template_name()) {
        (Some(id), _) => describe.launch_template_id(id),
        (None, Some(name)) => describe.launch_template_name(name),
        (None, None) => describe,
    };
    let current = describe.send().await.map_err(api("ec2:DescribeLaunchTemplateVersions", account, region))?;
    let current = current.launch_template_versions().first().cloned().ok_or_else(|| AwsError::NotFound {
        what: format!("launch template version {pinned} of {}", t.asg),
        account: account.into(),
        region: region.into(),
    })?;
    let template_id = current.launch_template_id().unwrap_or_default().to_string();
    let from_version = current.version_number().unwrap_or_default();
    let data = current.launch_template_data();
    let from_image = data.and_then(|d| d.image_id()).unwrap_or_default().to_string();
    if from_image == t.image_id {
        return Ok(TemplateChange { template_id, from_version, to_version: from_version, from_image, changed: false });
    }
    // SourceVersion makes AWS inherit everything; the plain fields are carried explicitly too
    // so emulators that do not merge behave the same.
    let mut request = RequestLaunchTemplateData::builder().image_id(&t.image_id);
    if let Some(d) = data {
        request = request
            .set_instance_type(d.instance_type().cloned())
            .set_key_name(d.key_name().map(str::to_string))
            .set_user_data(d.user_data().map(str::to_string))
            .set_security_group_ids(Some(d.security_group_ids().to_vec()).filter(|v| !v.is_empty()));
        if let Some(p) = d.iam_instance_profile() {
            request = request.iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .set_arn(p.arn().map(str::to_string))
                    .set_name(p.name().map(str::to_string))
                    .build(),
            );
        }
    }
    let created = ec2
        .create_launch_template_version()
        .launch_template_id(&template_id)
        .source_version(from_version.to_string())
        .version_description(format!("amictl: {}", t.image_id))
        .launch_template_data(request.build())
        .send()
        .await
        .map_err(api("ec2:CreateLaunchTemplateVersion", account, region))?;
    let to_version = created.launch_template_version().and_then(|v| v.version_number()).unwrap_or_default();
    set_version(aws, t, &template_id, to_version, &pinned).await?;
    Ok(TemplateChange { template_id, from_version, to_version, from_image, changed: true })
}

/// Makes `version` the template's default and, when the group pins a number, the group's.
async fn set_version(aws: &Aws, t: &Target, template_id: &str, version: i64, pinned: &str) -> Result<(), AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let ec2 = aws.ec2(account, region).await?;
    ec2.modify_launch_template()
        .launch_template_id(template_id)
        .default_version(version.to_string())
        .send()
        .await
        .map_err(api("ec2:ModifyLaunchTemplate", account, region))?;
    if pinned != "$Default" && pinned != "$Latest" {
        autoscaling(aws, account, region)
            .await?
            .update_auto_scaling_group()
            .auto_scaling_group_name(&t.asg)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(template_id)
                    .version(version.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(api("autoscaling:UpdateAutoScalingGroup", account, region))?;
    }
    Ok(())
}

/// Puts the previous launch template version back (after a failed rollout).
pub async fn restore(aws: &Aws, t: &Target, change: &TemplateChange) -> Result<(), AwsError> {
    let asc = autoscaling(aws, &t.account, &t.region).await?;
    let g = group(&asc, t).await?;
    let pinned = g.launch_template().and_then(|l| l.version()).unwrap_or("$Default").to_string();
    set_version(aws, t, &change.template_id, change.from_version, &pinned).await
}

/// Replaces the group's instances not on the new AMI, `batch` at a time; each batch's
/// replacements must be InService with SSM Online before the next batch starts.
pub async fn rolling_replace(aws: &Aws, t: &Target, batch: usize, p: Polling) -> Result<Replacement, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let asc = autoscaling(aws, account, region).await?;
    let ec2 = aws.ec2(account, region).await?;
    let ssm = aws.ssm(account, region).await?;
    let mut report = Replacement::default();
    loop {
        let g = group(&asc, t).await?;
        let members: Vec<String> = g.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
        let old = instances_not_on(&ec2, t, &members).await?;
        if old.is_empty() {
            return Ok(report);
        }
        let this_batch: Vec<String> = old.into_iter().take(batch.max(1)).collect();
        for id in &this_batch {
            asc.terminate_instance_in_auto_scaling_group()
                .instance_id(id)
                .should_decrement_desired_capacity(false)
                .send()
                .await
                .map_err(|e| api("autoscaling:TerminateInstanceInAutoScalingGroup", account, region)(e))?;
        }
        report.replaced.extend(this_batch.iter().cloned());
        // Wait until the group is back to its desired size without the replaced instances.
        let start = tokio::time::Instant::now();
        let fresh = loop {
            let g = group(&asc, t).await?;
            let in_service: Vec<String> = g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .filter_map(|i| i.instance_id())
                .filter(|id| !this_batch.iter().any(|b| b == id))
                .map(str::to_string)
                .collect();
            if in_service.len() as i32 >= g.desired_capacity().unwrap_or_default() {
                break in_service.into_iter().filter(|id| !members.contains(id)).collect::<Vec<_>>();
            }
            if start.elapsed() >= p.timeout {
                return Err(AwsError::Timeout {
                    what: format!("{} to replace {}", t.asg, this_batch.join(", ")),
                    region: region.into(),
                    seconds: p.timeout.as_secs(),
                });
            }
            tokio::time::sleep(p.interval).await;
        };
        for id in &fresh {
            crate::builder::wait_online(&ssm, account, region, id, p).await?;
        }
        report.launched.extend(fresh);
    }
}

async fn instances_not_on(ec2: &aws_sdk_ec2::Client, t: &Target, ids: &[String]) -> Result<Vec<String>, AwsError> {
    let mut old = Vec::new();
    for chunk in ids.chunks(100) {
        let out = ec2.describe_instances().set_instance_ids(Some(chunk.to_vec())).send().await.map_err(api(
            "ec2:DescribeInstances",
            &t.account,
            &t.region,
        ))?;
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            if i.image_id() != Some(t.image_id.as_str())
                && let Some(id) = i.instance_id()
            {
                old.push(id.to_string());
            }
        }
    }
    old.sort();
    Ok(old)
}

/// Starts an instance refresh that skips instances already on the new template, follows it
/// to the end, and rolls it back if it fails.
pub async fn instance_refresh(aws: &Aws, t: &Target, min_healthy_percent: u8, p: Polling) -> Result<String, AwsError> {
    let asc = autoscaling(aws, &t.account, &t.region).await?;
    follow_instance_refresh(&asc, t, min_healthy_percent, p).await
}

/// [`instance_refresh`] on a given client (tests hand in a mocked one: moto has no
/// instance refresh).
pub async fn follow_instance_refresh(
    asc: &aws_sdk_autoscaling::Client,
    t: &Target,
    min_healthy_percent: u8,
    p: Polling,
) -> Result<String, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let started = asc
        .start_instance_refresh()
        .auto_scaling_group_name(&t.asg)
        .preferences(
            RefreshPreferences::builder()
                .min_healthy_percentage(i32::from(min_healthy_percent))
                .skip_matching(true)
                .build(),
        )
        .send()
        .await
        .map_err(api("autoscaling:StartInstanceRefresh", account, region))?;
    let id = started.instance_refresh_id().unwrap_or_default().to_string();
    let start = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(p.interval).await;
        let out = asc
            .describe_instance_refreshes()
            .auto_scaling_group_name(&t.asg)
            .instance_refresh_ids(&id)
            .send()
            .await
            .map_err(api("autoscaling:DescribeInstanceRefreshes", account, region))?;
        let refresh = out.instance_refreshes().first();
        let status = refresh.and_then(|r| r.status()).map(|s| s.as_str().to_string()).unwrap_or_default();
        match status.as_str() {
            "Successful" => return Ok(id),
            "Failed" | "Cancelled" | "RollbackSuccessful" | "RollbackFailed" => {
                let reason = refresh.and_then(|r| r.status_reason()).unwrap_or_default().to_string();
                if status == "Failed" {
                    // Best effort: the rollback's own failure is reported with the original.
                    let rollback = asc.rollback_instance_refresh().auto_scaling_group_name(&t.asg).send().await;
                    let note = match rollback {
                        Ok(_) => "rolled back".to_string(),
                        Err(e) => format!("rollback failed: {}", sdk_message(&e)),
                    };
                    return Err(AwsError::Failed {
                        what: format!("instance refresh {id} of {}", t.asg),
                        region: region.into(),
                        message: format!("Failed: {reason}; {note}"),
                    });
                }
                return Err(AwsError::Failed {
                    what: format!("instance refresh {id} of {}", t.asg),
                    region: region.into(),
                    message: format!("{status}: {reason}"),
                });
            }
            _ => {}
        }
        if start.elapsed() >= p.timeout {
            return Err(AwsError::Timeout {
                what: format!("instance refresh {id} of {}", t.asg),
                region: region.into(),
                seconds: p.timeout.as_secs(),
            });
        }
    }
}

/// Publishes a rollout notice to an SNS topic (the topic's region comes from its ARN).
pub async fn notify(
    aws: &Aws,
    account: &str,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<String, AwsError> {
    let region = topic_arn.split(':').nth(3).filter(|r| !r.is_empty()).ok_or_else(|| AwsError::Failed {
        what: format!("SNS topic {topic_arn}"),
        region: String::new(),
        message: "not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)".into(),
    })?;
    let sns = aws_sdk_sns::Client::new(&aws.config(account, region).await?);
    let subject: String = subject.chars().filter(|c| !c.is_control()).take(100).collect();
    let out = sns.publish().topic_arn(topic_arn).subject(subject).message(message).send().await.map_err(api(
        "sns:Publish",
        account,
        region,
    ))?;
    Ok(out.message_id().unwrap_or_default().to_string())
}
