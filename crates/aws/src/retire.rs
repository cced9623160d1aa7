//! Retiring a version's AMIs with proof that nothing uses them.
//!
//! Every account and region the version reached is searched for what still uses its AMI
//! there: instances (pending, running, stopping or stopped), every launch template's
//! `$Default` and `$Latest` version (a `resolve:ssm:` image is resolved now), every auto
//! scaling group's pinned template version or launch configuration, and the `latest`
//! parameters amictl wrote. Anything found refuses the whole retirement: nothing is
//! removed anywhere, and what was found is reported. Otherwise every AMI the organisation
//! owns (the platform's in each region, consumers' own copies) is first **disabled** — no
//! launch can start from it while the rest is removed, and an interrupted run leaves only
//! unlaunchable AMIs for the next one — then deregistered and its snapshots deleted, and
//! the version's own `<prefix>/<version>` parameters are deleted.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use provider::{Checked, Distribution, Reference, Resource, RetireReport, Target};

use crate::Aws;
use crate::error::{AwsError, api};

/// Instance states that still hold an AMI: a stopped instance starts again from it.
const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Checks every place `distributions` names, then (when nothing uses the AMIs) removes
/// what the organisation owns.
pub async fn retire(aws: &Aws, distributions: &[Distribution]) -> Result<RetireReport, AwsError> {
    let mut report = RetireReport::default();
    for d in distributions {
        report.checked.push(check(aws, d).await?);
    }
    if report.references().next().is_some() {
        report.left = owned(distributions);
        return Ok(report);
    }
    let owned: Vec<&Distribution> = distributions.iter().filter(|d| d.how.owns()).collect();
    for d in &owned {
        disable(aws, &d.target, &d.image_id).await?;
    }
    for d in &owned {
        report.removed.extend(deregister(aws, &d.target, &d.image_id).await?);
    }
    for d in distributions {
        for name in d.parameters.iter().filter(|p| !p.ends_with("/latest")) {
            if delete_parameter(aws, &d.target, name).await? {
                report.removed.push(Resource {
                    kind: "parameter".into(),
                    id: name.clone(),
                    place: Some(d.target.clone()),
                });
            }
        }
    }
    Ok(report)
}

/// The AMIs a refused retirement leaves registered.
fn owned(distributions: &[Distribution]) -> Vec<Resource> {
    let mut left: Vec<Resource> = distributions
        .iter()
        .filter(|d| d.how.owns())
        .map(|d| Resource { kind: "ami".into(), id: d.image_id.clone(), place: Some(d.target.clone()) })
        .collect();
    left.sort();
    left.dedup();
    left
}

/// What uses `d.image_id` in `d`'s account and region.
async fn check(aws: &Aws, d: &Distribution) -> Result<Checked, AwsError> {
    let (account, region) = (d.target.account.as_str(), d.target.region.as_str());
    let ami = d.image_id.as_str();
    let at = |kind: &str, id: &str, how: String| Reference {
        place: d.target.clone(),
        kind: kind.into(),
        id: id.into(),
        how,
    };
    let mut found = Vec::new();
    let ec2 = aws.ec2(account, region).await?;

    let mut pages = ec2
        .describe_instances()
        .filters(Filter::builder().name("image-id").values(ami).build())
        .filters(
            Filter::builder().name("instance-state-name").set_values(Some(LIVE.map(String::from).to_vec())).build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2:DescribeInstances", account, region))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
            found.push(at("instance", i.instance_id().unwrap_or_default(), state));
        }
    }

    let mut templates = Vec::new();
    let mut pages = ec2.describe_launch_templates().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("ec2:DescribeLaunchTemplates", account, region))?;
        templates.extend(page.launch_templates().iter().filter_map(|t| t.launch_template_id()).map(str::to_string));
    }
    for id in &templates {
        let out = ec2
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions("$Default")
            .versions("$Latest")
            .send()
            .await
            .map_err(api("ec2:DescribeLaunchTemplateVersions", account, region))?;
        let mut seen = Vec::new();
        for v in out.launch_template_versions() {
            let n = v.version_number().unwrap_or_default();
            if seen.contains(&n) {
                continue;
            }
            seen.push(n);
            let image = v.launch_template_data().and_then(|t| t.image_id()).unwrap_or_default();
            if names(aws, account, region, image, ami).await? {
                let which = if v.default_version() == Some(true) { "$Default" } else { "$Latest" };
                let name = v.launch_template_name().unwrap_or(id);
                found.push(at("launch-template", name, format!("version {n} ({which}) image {image}")));
            }
        }
    }

    let asg = aws_sdk_autoscaling::Client::new(&aws.config(account, region).await?);
    let mut configurations = Vec::new();
    let mut pages = asg.describe_auto_scaling_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(api("autoscaling:DescribeAutoScalingGroups", account, region))?;
        for g in page.auto_scaling_groups() {
            let group = g.auto_scaling_group_name().unwrap_or_default();
            if let Some(lc) = g.launch_configuration_name() {
                configurations.push((group.to_string(), lc.to_string()));
            }
            let spec = g.launch_template().or_else(|| {
                g.mixed_instances_policy()
                    .and_then(|m| m.launch_template())
                    .and_then(|t| t.launch_template_specification())
            });
            // `$Default` and `$Latest` were checked with the templates; a pinned number is not.
            let Some(spec) = spec else { continue };
            let Some(version) = spec.version().filter(|v| v.bytes().all(|b| b.is_ascii_digit())) else { continue };
            let out = ec2
                .describe_launch_template_versions()
                .set_launch_template_id(spec.launch_template_id().map(str::to_string))
                .set_launch_template_name(
                    spec.launch_template_id()
                        .is_none()
                        .then(|| spec.launch_template_name().map(str::to_string))
                        .flatten(),
                )
                .versions(version)
                .send()
                .await
                .map_err(api("ec2:DescribeLaunchTemplateVersions", account, region))?;
            for v in out.launch_template_versions() {
                let image = v.launch_template_data().and_then(|t| t.image_id()).unwrap_or_default();
                if names(aws, account, region, image, ami).await? {
                    found.push(at("auto-scaling-group", group, format!("pins launch template version {version}")));
                }
            }
        }
    }
    for (group, lc) in &configurations {
        let out = asg.describe_launch_configurations().launch_configuration_names(lc).send().await.map_err(api(
            "autoscaling:DescribeLaunchConfigurations",
            account,
            region,
        ))?;
        if out.launch_configurations().iter().any(|c| c.image_id() == Some(ami)) {
            found.push(at("launch-configuration", lc, format!("of auto scaling group {group}")));
        }
    }

    // A `latest` pointer still naming the AMI means consumers still resolve it.
    for name in d.parameters.iter().filter(|p| p.ends_with("/latest")) {
        if parameter(aws, account, region, name).await?.as_deref() == Some(ami) {
            found.push(at("parameter", name, "still names it".into()));
        }
    }
    Ok(Checked {
        place: d.target.clone(),
        image_id: ami.into(),
        searched: ["instances", "launch-templates", "auto-scaling-groups", "parameters"].map(String::from).to_vec(),
        references: found,
    })
}

/// Whether a template's image (an AMI id or `resolve:ssm:<parameter>`) is `ami` now.
async fn names(aws: &Aws, account: &str, region: &str, image: &str, ami: &str) -> Result<bool, AwsError> {
    match image.strip_prefix("resolve:ssm:") {
        Some(p) => {
            let region =
                p.strip_prefix("arn:").and_then(|r| r.split(':').nth(2)).filter(|r| !r.is_empty()).unwrap_or(region);
            Ok(parameter(aws, account, region, p).await?.as_deref() == Some(ami))
        }
        None => Ok(image == ami),
    }
}

async fn parameter(aws: &Aws, account: &str, region: &str, name: &str) -> Result<Option<String>, AwsError> {
    let ssm = aws.ssm(account, region).await?;
    match ssm.get_parameter().name(name).send().await {
        Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
        Err(e) => Err(api("ssm:GetParameter", account, region)(e)),
    }
}

fn gone<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code().is_some_and(|c| {
        c.starts_with("InvalidAMIID.NotFound")
            || c.starts_with("InvalidAMIID.Unavailable")
            || c.starts_with("InvalidSnapshot.NotFound")
    })
}

/// Disables an AMI (no new launches); an AMI already gone is fine.
async fn disable(aws: &Aws, t: &Target, ami: &str) -> Result<(), AwsError> {
    let ec2 = aws.ec2(&t.account, &t.region).await?;
    aws.limits(&t.account, &t.region).await.mutate.take().await;
    match ec2.disable_image().image_id(ami).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(gone) => Ok(()),
        Err(e) => Err(api("ec2:DisableImage", &t.account, &t.region)(e)),
    }
}

/// Deregisters an AMI and deletes its snapshots: what was removed.
async fn deregister(aws: &Aws, t: &Target, ami: &str) -> Result<Vec<Resource>, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let ec2 = aws.ec2(account, region).await?;
    let out = ec2.describe_images().image_ids(ami).send().await;
    let image = match out {
        Ok(out) => out.images().first().cloned(),
        Err(e) if e.as_service_error().is_some_and(gone) => None,
        Err(e) => return Err(api("ec2:DescribeImages", account, region)(e)),
    };
    let mut removed = Vec::new();
    let snapshots: Vec<String> = image
        .iter()
        .flat_map(|i| i.block_device_mappings())
        .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
        .collect();
    if image.is_some() {
        aws.limits(account, region).await.mutate.take().await;
        match ec2.deregister_image().image_id(ami).send().await {
            Ok(_) => removed.push(Resource { kind: "ami".into(), id: ami.into(), place: Some(t.clone()) }),
            Err(e) if e.as_service_error().is_some_and(gone) => {}
            Err(e) => return Err(api("ec2:DeregisterImage", account, region)(e)),
        }
    }
    for s in snapshots {
        aws.limits(account, region).await.mutate.take().await;
        match ec2.delete_snapshot().snapshot_id(&s).send().await {
            Ok(_) => removed.push(Resource { kind: "snapshot".into(), id: s, place: Some(t.clone()) }),
            Err(e) if e.as_service_error().is_some_and(gone) => {}
            Err(e) => return Err(api("ec2:DeleteSnapshot", account, region)(e)),
        }
    }
    Ok(removed)
}

/// Deletes a parameter; false when it was already gone.
async fn delete_parameter(aws: &Aws, t: &Target, name: &str) -> Result<bool, AwsError> {
    let ssm = aws.ssm(&t.account, &t.region).await?;
    match ssm.delete_parameter().name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(false),
        Err(e) => Err(api("ssm:DeleteParameter", &t.account, &t.region)(e)),
    }
}
