//! Retiring a version's AMIs with proof that nothing uses them.
//!
//! Every account and region the version reached is searched for what still uses its AMI
//! there: instances (pending, running, stopping or stopped), every launch template's
//! `$Default` and `$Latest` version (a `resolve:ssm:` image is resolved now), every auto
//! scaling group's pinned template version or launch configuration, and the `latest`
//! parameters amictl wrote; and who else may launch an owned AMI (a launch permission to an
//! account amictl does not search, an organisation, an OU or everyone counts as a use it
//! cannot rule out). Anything found refuses the whole retirement: nothing is
//! removed anywhere, and what was found is reported. Otherwise every AMI the organisation
//! owns (the platform's in each region, consumers' own copies) is first **disabled** — no
//! launch can start from it while the rest is removed, and an interrupted run leaves only
//! unlaunchable AMIs for the next one — then deregistered and its snapshots deleted, and
//! the version's own `<prefix>/<version>` parameters are deleted.

use std::collections::BTreeMap;

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
    // Whoever may launch an owned AMI but is not searched could still use it.
    let searched: Vec<String> =
        distributions.iter().filter_map(|d| aws.account(&d.target.account).ok().map(|a| a.id.clone())).collect();
    for d in distributions.iter().filter(|d| d.how.owns()) {
        let unsearched: Vec<Reference> = grantees(aws, &d.target, &d.image_id)
            .await?
            .into_iter()
            .filter(|g| !searched.contains(g))
            .map(|g| Reference {
                place: d.target.clone(),
                kind: "launch-permission".into(),
                id: g,
                how: format!("may launch {} and is not an account amictl searches", d.image_id),
            })
            .collect();
        if !unsearched.is_empty()
            && let Some(c) = report.checked.iter_mut().find(|c| c.place == d.target && c.image_id == d.image_id)
        {
            c.searched.push("launch-permissions".into());
            c.references.extend(unsearched);
        }
    }
    if report.references().next().is_some() {
        report.left = owned(distributions);
        return Ok(report);
    }
    let owned: Vec<&Distribution> = distributions.iter().filter(|d| d.how.owns()).collect();
    for (i, d) in owned.iter().enumerate() {
        if let Err(e) = disable(aws, &d.target, &d.image_id).await {
            // Nothing is half-disabled: those already disabled launch again.
            for done in &owned[..i] {
                let _ = enable(aws, &done.target, &done.image_id).await;
            }
            return Err(e);
        }
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
    let mut resolved = BTreeMap::new();
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
            if names(aws, (account, region), &mut resolved, image, ami).await? {
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
            // The group's template, a mixed-instances policy's, and each override's.
            let mixed = g.mixed_instances_policy().and_then(|m| m.launch_template());
            let specs =
                g.launch_template().into_iter().chain(mixed.and_then(|t| t.launch_template_specification())).chain(
                    mixed.into_iter().flat_map(|t| t.overrides()).filter_map(|o| o.launch_template_specification()),
                );
            for spec in specs {
                // `$Default` and `$Latest` were checked with the templates; a pinned number is not.
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
                    if names(aws, (account, region), &mut resolved, image, ami).await? {
                        found.push(at("auto-scaling-group", group, format!("pins launch template version {version}")));
                    }
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
/// Many templates resolve one parameter: each is read once per place.
async fn names(
    aws: &Aws,
    (account, region): (&str, &str),
    resolved: &mut BTreeMap<String, Option<String>>,
    image: &str,
    ami: &str,
) -> Result<bool, AwsError> {
    let Some(p) = image.strip_prefix("resolve:ssm:") else { return Ok(image == ami) };
    if !resolved.contains_key(p) {
        let value = parameter(aws, account, crate::rollout::parameter_region(p, region), p).await?;
        resolved.insert(p.to_string(), value);
    }
    Ok(resolved[p].as_deref() == Some(ami))
}

async fn parameter(aws: &Aws, account: &str, region: &str, name: &str) -> Result<Option<String>, AwsError> {
    crate::publish::get(&aws.ssm(account, region).await?, account, region, name).await
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

/// Enables a disabled AMI again.
async fn enable(aws: &Aws, t: &Target, ami: &str) -> Result<(), AwsError> {
    let ec2 = aws.ec2(&t.account, &t.region).await?;
    aws.limits(&t.account, &t.region).await.mutate.take().await;
    ec2.enable_image().image_id(ami).send().await.map_err(api("ec2:EnableImage", &t.account, &t.region))?;
    Ok(())
}

/// Who may launch an AMI besides its owner: account ids, organisation and OU ARNs, `all`.
async fn grantees(aws: &Aws, t: &Target, ami: &str) -> Result<Vec<String>, AwsError> {
    let ec2 = aws.ec2(&t.account, &t.region).await?;
    aws.limits(&t.account, &t.region).await.describe.take().await;
    let out = ec2
        .describe_image_attribute()
        .image_id(ami)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(gone) => return Ok(Vec::new()),
        Err(e) => return Err(api("ec2:DescribeImageAttribute", &t.account, &t.region)(e)),
    };
    Ok(out
        .launch_permissions()
        .iter()
        .filter_map(|p| {
            p.user_id()
                .or(p.organization_arn())
                .or(p.organizational_unit_arn())
                .map(str::to_string)
                .or_else(|| p.group().map(|g| g.as_str().to_string()))
        })
        .collect())
}

/// Deregisters an AMI and deletes its snapshots: what was removed.
async fn deregister(aws: &Aws, t: &Target, ami: &str) -> Result<Vec<Resource>, AwsError> {
    let (account, region) = (t.account.as_str(), t.region.as_str());
    let ec2 = aws.ec2(account, region).await?;
    // A disabled AMI is left out of DescribeImages unless asked for.
    let out = ec2.describe_images().image_ids(ami).include_disabled(true).send().await;
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
