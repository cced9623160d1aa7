//! Moving a consumer's hosts to a new version, by the consumer's chosen method.
//!
//! Every method starts the same way: the group's launch template gets a new version with
//! the new AMI (made from the current one with `SourceVersion`, so everything else is
//! inherited) and becomes the group's default, so new launches use the new image. A
//! template whose image is `resolve:ssm:<parameter>` is never rewritten: the parameter is
//! what moved (amictl checks it names the new AMI), and only the instances are replaced.
//! Then `rolling-replace` replaces instances in batches (draining ECS container instances
//! first, leaving scale-in protected ones unless told) and waits for each replacement to
//! be InService with its SSM agent Online; `instance-refresh` hands the replacement to EC2
//! Auto Scaling with the preferences for protected and standby hosts, checkpoints, and a
//! desired configuration, and follows it to the end, rolling back on failure. A failure
//! stops the rollout and restores the previous launch template version where the method
//! allows, so new launches do not keep using a version that failed.

use aws_sdk_autoscaling::types::{
    DesiredConfiguration, LaunchTemplateSpecification, RefreshPreferences, ScaleInProtectedInstances, StandbyInstances,
};
use aws_sdk_ec2::types::{LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData};

use provider::{Protected, RefreshProtected, RefreshStandby, Replacement, RolloutMethod, TemplateChange};

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
/// A group that pins a version number is moved to the new one unless `move_group` is
/// false (an instance refresh moves it through its desired configuration, so AWS's
/// rollback can put it back).
pub async fn update_launch_template(aws: &Aws, t: &Target, move_group: bool) -> Result<TemplateChange, AwsError> {
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
    let unchanged = |resolves: Option<String>| TemplateChange {
        template_id: template_id.clone(),
        from_version,
        to_version: from_version,
        from_image: from_image.clone(),
        changed: false,
        resolves,
        group_version: pinned.clone(),
    };
    if let Some(parameter) = from_image.strip_prefix("resolve:ssm:") {
        let names = resolve(aws, account, region, parameter).await?;
        if names != t.image_id {
            return Err(AwsError::Failed {
                what: format!("launch template {template_id} of {}", t.asg),
                region: region.into(),
                message: format!(
                    "its image is resolve:ssm:{parameter}, which names {names}, not {}: replacing hosts now would launch the old image",
                    t.image_id
                ),
            });
        }
        return Ok(unchanged(Some(parameter.to_string())));
    }
    if from_image == t.image_id {
        return Ok(unchanged(None));
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
    set_version(aws, t, &template_id, to_version, if move_group { &pinned } else { "$Default" }).await?;
    Ok(TemplateChange {
        template_id,
        from_version,
        to_version,
        from_image,
        changed: true,
        resolves: None,
        group_version: pinned,
    })
}

/// Where a parameter is read: a parameter shared by ARN in its own region, a name in `region`.
pub(crate) fn parameter_region<'a>(parameter: &'a str, region: &'a str) -> &'a str {
    parameter.strip_prefix("arn:").and_then(|r| r.split(':').nth(2)).filter(|r| !r.is_empty()).unwrap_or(region)
}

/// What an SSM parameter (a name, `name:version`, `name:label` or an ARN) names now.
async fn resolve(aws: &Aws, account: &str, region: &str, parameter: &str) -> Result<String, AwsError> {
    let region = parameter_region(parameter, region);
    let ssm = aws.ssm(account, region).await?;
    let out = ssm.get_parameter().name(parameter).send().await.map_err(api("ssm:GetParameter", account, region))?;
    Ok(out.parameter().and_then(|p| p.value()).unwrap_or_default().to_string())
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

/// How `rolling-replace` treats the group's hosts.
#[derive(Debug, Clone, Copy)]
pub struct Replace {
    /// Instances replaced at once.
    pub batch: usize,
    /// Scale-in protected instances: left alone, or drained, unprotected and replaced.
    pub protected: Protected,
    /// How long an ECS container instance may take to drain.
    pub drain_timeout: std::time::Duration,
}

/// Replaces the group's instances not on the new AMI, `batch` at a time; each batch's
/// replacements must be InService with SSM Online before the next batch starts. ECS
/// container instances are drained (their tasks gone) before they are terminated.
pub async fn rolling_replace(aws: &Aws, t: &Target, how: Replace, p: Polling) -> Result<Replacement, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let asc = autoscaling(aws, account, region).await?;
    let ec2 = aws.ec2(account, region).await?;
    let ssm = aws.ssm(account, region).await?;
    let mut report = Replacement::default();
    // Found once, from the hosts behind at the start: replacements are already current.
    let mut containers = None;
    loop {
        let g = group(&asc, t).await?;
        let members: Vec<String> = g.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
        let behind = instances_not_on(&ec2, t, &members).await?;
        // A replacement that is itself behind means the group launches another image: going
        // on would replace hosts forever.
        if let Some((id, image)) = behind.iter().find(|(id, _)| report.launched.contains(id)) {
            return Err(AwsError::Failed {
                what: format!("replacing hosts of {}", t.asg),
                region: region.into(),
                message: format!("its replacement {id} launched {image}, not {}; stopped", t.image_id),
            });
        }
        let mut old: Vec<String> = behind.into_iter().map(|(id, _)| id).collect();
        old.retain(|id| !report.skipped.iter().any(|(s, _)| s == id));
        if old.is_empty() {
            return Ok(report);
        }
        let containers = match &containers {
            Some(c) => c,
            None => containers.insert(crate::ecs::container_hosts(aws, account, region, &old).await?),
        };
        let protected = |id: &str| {
            g.instances().iter().any(|i| i.instance_id() == Some(id) && i.protected_from_scale_in() == Some(true))
        };
        let mut this_batch: Vec<String> = Vec::new();
        for id in old {
            if this_batch.len() >= how.batch.max(1) {
                break;
            }
            if protected(&id) && how.protected == Protected::Skip {
                report.skipped.push((id, "protected from scale-in (rollout.protected = \"skip\")".into()));
                continue;
            }
            this_batch.push(id);
        }
        if this_batch.is_empty() {
            continue;
        }
        for id in &this_batch {
            if let Some(host) = containers.get(id) {
                crate::ecs::drain(aws, account, region, id, host, how.drain_timeout, p).await?;
                report.drained.push(id.clone());
            }
        }
        let lift: Vec<String> = this_batch.iter().filter(|id| protected(id)).cloned().collect();
        if !lift.is_empty() {
            asc.set_instance_protection()
                .auto_scaling_group_name(&t.asg)
                .set_instance_ids(Some(lift))
                .protected_from_scale_in(false)
                .send()
                .await
                .map_err(api("autoscaling:SetInstanceProtection", account, region))?;
        }
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
        let mut backoff = p.backoff();
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
            tokio::time::sleep(backoff.next_wait()).await;
        };
        for id in &fresh {
            crate::builder::wait_online(&ssm, account, region, id, p).await?;
        }
        report.launched.extend(fresh);
    }
}

/// (instance, image) of those among `ids` not on the new AMI, by id.
async fn instances_not_on(
    ec2: &aws_sdk_ec2::Client,
    t: &Target,
    ids: &[String],
) -> Result<Vec<(String, String)>, AwsError> {
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
                old.push((id.to_string(), i.image_id().unwrap_or_default().to_string()));
            }
        }
    }
    old.sort();
    Ok(old)
}

/// What an instance refresh is started with, from the consumer's method and the template
/// change: pure, so the mapping is tested without AWS.
#[derive(Debug, Clone)]
pub struct Refresh {
    pub preferences: RefreshPreferences,
    pub desired: Option<DesiredConfiguration>,
}

/// The refresh for `method` after `change`. Skip matching compares template versions, so it
/// is off for a `resolve:ssm:` template (whose version did not move); AWS rolls back only a
/// group that pins a version number of a template naming an AMI id, so only then is
/// `AutoRollback` asked for — elsewhere amictl restores the template itself on failure.
pub fn refresh_for(method: &RolloutMethod, change: &TemplateChange) -> Refresh {
    let RolloutMethod::InstanceRefresh {
        min_healthy_percent,
        scale_in_protected,
        standby,
        checkpoints,
        checkpoint_delay_seconds,
    } = method
    else {
        return Refresh { preferences: RefreshPreferences::builder().build(), desired: None };
    };
    let numbered = change.group_version.parse::<i64>().is_ok();
    let mut p = RefreshPreferences::builder()
        .min_healthy_percentage(i32::from(*min_healthy_percent))
        .skip_matching(change.resolves.is_none())
        .scale_in_protected_instances(match scale_in_protected {
            RefreshProtected::Refresh => ScaleInProtectedInstances::Refresh,
            RefreshProtected::Ignore => ScaleInProtectedInstances::Ignore,
            RefreshProtected::Wait => ScaleInProtectedInstances::Wait,
        })
        .standby_instances(match standby {
            RefreshStandby::Terminate => StandbyInstances::Terminate,
            RefreshStandby::Ignore => StandbyInstances::Ignore,
            RefreshStandby::Wait => StandbyInstances::Wait,
        });
    if !checkpoints.is_empty() {
        p = p.set_checkpoint_percentages(Some(checkpoints.iter().map(|c| i32::from(*c)).collect()));
        if let Some(d) = checkpoint_delay_seconds {
            p = p.checkpoint_delay(*d as i32);
        }
    }
    let rollback = numbered && change.resolves.is_none();
    p = p.auto_rollback(rollback);
    let desired = numbered.then(|| {
        DesiredConfiguration::builder()
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&change.template_id)
                    .version(change.to_version.to_string())
                    .build(),
            )
            .build()
    });
    Refresh { preferences: p.build(), desired }
}

/// Starts an instance refresh, follows it to the end, and rolls it back if it fails. A
/// group an ECS capacity provider manages without managed draining is refused: AWS would
/// terminate its hosts with their tasks running.
pub async fn instance_refresh(
    aws: &Aws,
    t: &Target,
    method: &RolloutMethod,
    change: &TemplateChange,
    p: Polling,
) -> Result<String, AwsError> {
    let asc = autoscaling(aws, &t.account, &t.region).await?;
    let g = group(&asc, t).await?;
    let arn = g.auto_scaling_group_arn().unwrap_or_default();
    if let Some((provider, false)) = crate::ecs::capacity_provider(aws, &t.account, &t.region, arn, &t.asg).await? {
        return Err(AwsError::Failed {
            what: format!("instance refresh of {}", t.asg),
            region: t.region.clone(),
            message: format!(
                "the group is ECS capacity provider {provider}'s, whose managed draining is DISABLED: a refresh would stop running tasks; enable managed draining, or use rollout = {{ kind = \"rolling-replace\" }}, which drains each host"
            ),
        });
    }
    follow_instance_refresh(&asc, t, &refresh_for(method, change), p).await
}

/// [`instance_refresh`] on a given client (tests hand in a mocked one: moto has no
/// instance refresh).
pub async fn follow_instance_refresh(
    asc: &aws_sdk_autoscaling::Client,
    t: &Target,
    refresh: &Refresh,
    p: Polling,
) -> Result<String, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let started = asc
        .start_instance_refresh()
        .auto_scaling_group_name(&t.asg)
        .preferences(refresh.preferences.clone())
        .set_desired_configuration(refresh.desired.clone())
        .send()
        .await
        .map_err(api("autoscaling:StartInstanceRefresh", account, region))?;
    let id = started.instance_refresh_id().unwrap_or_default().to_string();
    let auto_rollback = refresh.preferences.auto_rollback() == Some(true);
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
        let reason = refresh.and_then(|r| r.status_reason()).unwrap_or_default().to_string();
        let failed = |message: String| AwsError::Failed {
            what: format!("instance refresh {id} of {}", t.asg),
            region: region.into(),
            message,
        };
        match status.as_str() {
            "Successful" => return Ok(id),
            // AWS is rolling back on its own: follow it.
            "Failed" if auto_rollback => {}
            "Failed" => {
                // Best effort: the rollback's own failure is reported with the original.
                let rollback = asc.rollback_instance_refresh().auto_scaling_group_name(&t.asg).send().await;
                let note = match rollback {
                    Ok(_) => "rolled back".to_string(),
                    Err(e) => format!("rollback failed: {}", sdk_message(&e)),
                };
                return Err(failed(format!("Failed: {reason}; {note}")));
            }
            "RollbackSuccessful" => return Err(failed(format!("failed and AWS rolled the group back: {reason}"))),
            "Cancelled" | "RollbackFailed" => return Err(failed(format!("{status}: {reason}"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(group_version: &str, resolves: Option<&str>) -> TemplateChange {
        TemplateChange {
            template_id: "lt-1".into(),
            from_version: 1,
            to_version: 2,
            from_image: "ami-old".into(),
            changed: resolves.is_none(),
            resolves: resolves.map(str::to_string),
            group_version: group_version.into(),
        }
    }

    fn refresh() -> RolloutMethod {
        RolloutMethod::InstanceRefresh {
            min_healthy_percent: 90,
            scale_in_protected: RefreshProtected::default(),
            standby: RefreshStandby::default(),
            checkpoints: Vec::new(),
            checkpoint_delay_seconds: None,
        }
    }

    #[test]
    fn only_a_numbered_ami_template_gets_a_desired_configuration_and_aws_rollback() {
        let r = refresh_for(&refresh(), &change("7", None));
        assert_eq!(r.preferences.auto_rollback(), Some(true));
        let lt = r.desired.as_ref().and_then(|d| d.launch_template()).unwrap();
        assert_eq!((lt.launch_template_id(), lt.version()), (Some("lt-1"), Some("2")));
        assert_eq!(r.preferences.skip_matching(), Some(true));
        assert_eq!(r.preferences.scale_in_protected_instances(), Some(&ScaleInProtectedInstances::Refresh));
        assert_eq!(r.preferences.standby_instances(), Some(&StandbyInstances::Ignore));
        assert!(r.preferences.checkpoint_percentages().is_empty());

        let r = refresh_for(&refresh(), &change("$Default", None));
        assert_eq!(r.preferences.auto_rollback(), Some(false), "AWS rolls back no $Default group");
        assert!(r.desired.is_none());
    }

    #[test]
    fn a_resolve_ssm_template_is_refreshed_without_skip_matching_or_rollback() {
        let r = refresh_for(&refresh(), &change("3", Some("/platform/base-ami/x/latest")));
        assert_eq!(r.preferences.skip_matching(), Some(false), "the version did not move: nothing would be replaced");
        assert_eq!(r.preferences.auto_rollback(), Some(false));
    }
}
