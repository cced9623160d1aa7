//! Distribution: copy to every region, share with every consumer account, tag, and move
//! the versioned SSM pointers — idempotently.
//!
//! Every step looks before it creates: the AMI is found by name before `CopyImage`, a
//! launch permission already granted is not granted again, a versioned parameter that
//! already holds the right AMI is left alone. A re-run after a crash therefore adopts what
//! exists and never makes a second AMI for the same version. The `latest` pointer moves
//! only after the AMI is verified available and shared in that region, and is read back.

use std::time::Duration;

use aws_sdk_ec2::types::{
    CreateVolumePermission, CreateVolumePermissionModifications, ImageAttributeName, ImageState, LaunchPermission,
    LaunchPermissionModifications, Tag,
};
use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use futures::StreamExt;

use crate::Aws;
use crate::error::{AwsError, api};

/// What to publish, and where.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub image: String,
    pub version: String,
    pub build_id: String,
    /// The account that owns the images (the platform account).
    pub owner: String,
    pub source_region: String,
    pub source_image_id: String,
    pub regions: Vec<String>,
    /// Consumer account names; each gets launch permission and SSM pointers.
    pub consumers: Vec<String>,
    /// Consumers get their own copy (made through their role) instead of a shared AMI.
    pub copy: bool,
    /// e.g. `/platform/base-ami/weco-amzn2-hvm-x86_64-gp2`: `<prefix>/<version>` and `<prefix>/latest`.
    pub ssm_prefix: Option<String>,
    /// Organisation and OU ARNs given launch permission (and RAM principals).
    pub organizations: Vec<String>,
    /// The pointers are also written in the owner's account, and `<prefix>/latest` shared
    /// by AWS RAM with the consumers (or the organisations, when given).
    pub share_parameter: bool,
    /// The owner's tags, on every AMI, snapshot and copy.
    pub tags: Vec<(String, String)>,
    pub wait: Waiter,
}

/// How to wait for an AMI: several *consecutive* sightings of `available` (EC2 is
/// eventually consistent), failing at once on a terminal state. Looks back off up to
/// `interval`; the confirming sightings come a quarter interval apart.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    pub interval: Duration,
    pub sightings: u32,
    pub timeout: Duration,
}

impl Default for Waiter {
    fn default() -> Waiter {
        Waiter { interval: Duration::from_secs(10), sightings: 3, timeout: Duration::from_secs(3600) }
    }
}

/// The outcome in one region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionReport {
    pub region: String,
    pub image_id: String,
    /// False when an existing AMI of this name was adopted.
    pub copied: bool,
    /// The owner's own pointers (when the parameter is shared).
    pub parameters: Vec<String>,
    /// The RAM share that holds `<prefix>/latest`.
    pub resource_share: Option<String>,
    pub consumers: Vec<ConsumerReport>,
}

/// What one consumer account launches in one region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerReport {
    pub account: String,
    /// The platform's shared AMI, or the consumer's own copy.
    pub image_id: String,
    /// `shared` or `copy`.
    pub how: String,
    /// SSM parameters written in the consumer's account.
    pub parameters: Vec<String>,
}

/// Every region's result: the operator learns what exists even when one region failed.
#[derive(Debug)]
pub struct PublishReport {
    pub done: Vec<RegionReport>,
    pub failed: Vec<(String, AwsError)>,
}

pub fn ami_name(image: &str, version: &str) -> String {
    format!("{image}-{version}")
}

pub async fn publish(aws: &Aws, req: &PublishRequest) -> PublishReport {
    // An encrypted AMI the consumers could not use is refused before anything is copied.
    let key = match encryption(aws, req).await {
        Ok(key) => key,
        Err(e) => return PublishReport { done: Vec::new(), failed: vec![(req.source_region.clone(), e)] },
    };
    let key = key.as_deref();
    let results: Vec<(String, Result<RegionReport, AwsError>)> = futures::stream::iter(req.regions.clone())
        .map(|region| async move { (region.clone(), publish_region(aws, req, &region, key).await) })
        .buffer_unordered(2)
        .collect()
        .await;
    let mut report = PublishReport { done: Vec::new(), failed: Vec::new() };
    for (region, r) in results {
        match r {
            Ok(done) => report.done.push(done),
            Err(e) => report.failed.push((region, e)),
        }
    }
    report.done.sort_by(|a, b| a.region.cmp(&b.region));
    report
}

/// The source AMI's KMS key when it is encrypted, after checking that every consumer may
/// use it and that it can follow the copies to the other regions.
async fn encryption(aws: &Aws, req: &PublishRequest) -> Result<Option<String>, AwsError> {
    let keys = crate::kms::image_keys(aws, &req.owner, &req.source_region, &req.source_image_id).await?;
    let mut consumers = Vec::new();
    for c in &req.consumers {
        consumers.push((c.clone(), aws.account(c)?.id.clone()));
    }
    let crosses = req.regions.iter().any(|r| r != &req.source_region);
    let mut arn = None;
    for key in &keys {
        let facts = crate::kms::facts(aws, &req.owner, &req.source_region, key).await?;
        crate::kms::judge(&facts, &consumers, crosses).map_err(|message| AwsError::Failed {
            what: format!("AMI {}", req.source_image_id),
            region: req.source_region.clone(),
            message,
        })?;
        arn = Some(facts.arn);
    }
    Ok(arn)
}

async fn publish_region(
    aws: &Aws,
    req: &PublishRequest,
    region: &str,
    key: Option<&str>,
) -> Result<RegionReport, AwsError> {
    let owner = &req.owner;
    let ec2 = aws.ec2(owner, region).await?;
    let name = ami_name(&req.image, &req.version);

    // 1. Find before create (the build may have started this region's copy already).
    let (image_id, copied) = if region == req.source_region {
        match crate::builder::find_image(aws, owner, region, &name).await? {
            Some((id, _)) => (id, false),
            None => (req.source_image_id.clone(), false),
        }
    } else {
        let copy = CopyOf {
            image: &req.image,
            version: &req.version,
            build_id: &req.build_id,
            source_region: &req.source_region,
            source_image_id: &req.source_image_id,
            key,
        };
        copy_to_region(aws, owner, region, &copy).await?
    };
    let snapshots = wait_available(aws, &ec2, owner, region, &image_id, req.wait).await?;

    // 2. Tags (CopyImage does not always carry them).
    aws.limits(owner, region).await.mutate.take().await;
    let mut tags: Vec<(&str, String)> = vec![
        ("Name", name.clone()),
        ("amictl:image", req.image.clone()),
        ("amictl:version", req.version.clone()),
        ("amictl:build-id", req.build_id.clone()),
        ("amictl:source-ami", req.source_image_id.clone()),
    ];
    tags.extend(req.tags.iter().map(|(k, v)| (k.as_str(), v.clone())));
    tag(&ec2, owner, region, &image_id, &snapshots, &tags).await?;

    // 3. Share with every consumer account, organisation and OU not yet allowed.
    let mut ids = Vec::new();
    for c in &req.consumers {
        ids.push(aws.account(c)?.id.clone());
    }
    let granted = launch_permissions(aws, &ec2, owner, region, &image_id).await?;
    let orgs: Vec<&String> = req.organizations.iter().filter(|a| !granted.contains(a)).collect();
    if !orgs.is_empty() {
        aws.limits(owner, region).await.mutate.take().await;
        let mut perms = LaunchPermissionModifications::builder();
        for arn in &orgs {
            let p = LaunchPermission::builder();
            let p = if arn.contains(":ou/") { p.organizational_unit_arn(*arn) } else { p.organization_arn(*arn) };
            perms = perms.add(p.build());
        }
        ec2.modify_image_attribute().image_id(&image_id).launch_permission(perms.build()).send().await.map_err(api(
            "ec2:ModifyImageAttribute",
            owner,
            region,
        ))?;
    }
    let missing: Vec<&String> = ids.iter().filter(|id| !granted.contains(id)).collect();
    if !missing.is_empty() {
        aws.limits(owner, region).await.mutate.take().await;
        let mut perms = LaunchPermissionModifications::builder();
        for id in &missing {
            perms = perms.add(LaunchPermission::builder().user_id(id.as_str()).build());
        }
        ec2.modify_image_attribute().image_id(&image_id).launch_permission(perms.build()).send().await.map_err(api(
            "ec2:ModifyImageAttribute",
            owner,
            region,
        ))?;
        for snapshot in &snapshots {
            aws.limits(owner, region).await.mutate.take().await;
            let mut perms = CreateVolumePermissionModifications::builder();
            for id in &missing {
                perms = perms.add(CreateVolumePermission::builder().user_id(id.as_str()).build());
            }
            ec2.modify_snapshot_attribute()
                .snapshot_id(snapshot)
                .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                .create_volume_permission(perms.build())
                .send()
                .await
                .map_err(api("ec2:ModifySnapshotAttribute", owner, region))?;
        }
    }
    // Verify before any pointer moves.
    let granted = launch_permissions(aws, &ec2, owner, region, &image_id).await?;
    if let Some(absent) = ids.iter().chain(&req.organizations).find(|id| !granted.contains(id)) {
        return Err(AwsError::Failed {
            what: format!("launch permission for {absent} on {image_id}"),
            region: region.into(),
            message: "not present after granting it".into(),
        });
    }

    // 4. Per consumer: the AMI it launches (shared, or its own copy), then its pointers.
    let mut consumers = Vec::new();
    for consumer in &req.consumers {
        let (id, how) = if req.copy {
            (owned_copy(aws, req, region, consumer, &image_id, &tags).await?, "copy")
        } else {
            (image_id.clone(), "shared")
        };
        let parameters = match &req.ssm_prefix {
            Some(prefix) => pointers(aws, &req.version, prefix, region, consumer, &id).await?,
            None => Vec::new(),
        };
        consumers.push(ConsumerReport { account: consumer.clone(), image_id: id, how: how.into(), parameters });
    }

    // 5. The owner's own pointers, the latest shared by RAM (advanced tier: RAM shares
    //    only those).
    let (parameters, resource_share) = match (&req.ssm_prefix, req.share_parameter) {
        (Some(prefix), true) => {
            let parameters = pointers_in(aws, &req.version, prefix, region, owner, &image_id, true).await?;
            let owner_id = aws.account(owner)?.id.clone();
            let latest = crate::ram::parameter_arn(region, &owner_id, &parameters[1]);
            // The organisations, and the listed accounts (one may be outside them).
            let principals: Vec<String> = req.organizations.iter().chain(&ids).cloned().collect();
            let share =
                crate::ram::share(aws, owner, region, &crate::ram::share_name(&req.image), &latest, &principals)
                    .await?;
            (parameters, Some(share))
        }
        _ => (Vec::new(), None),
    };
    Ok(RegionReport { region: region.into(), image_id, copied, parameters, resource_share, consumers })
}

/// One version's AMI, to be copied to another region of its owner's account.
pub(crate) struct CopyOf<'a> {
    pub image: &'a str,
    pub version: &'a str,
    pub build_id: &'a str,
    pub source_region: &'a str,
    pub source_image_id: &'a str,
    /// The source's KMS key, when it is encrypted: the copy is encrypted with its replica.
    pub key: Option<&'a str>,
}

/// The version's AMI in `region`: found by name (adopted: the build's early copy, or what a
/// killed publish made), else copied now. Returns (id, copied now).
pub(crate) async fn copy_to_region(
    aws: &Aws,
    owner: &str,
    region: &str,
    c: &CopyOf<'_>,
) -> Result<(String, bool), AwsError> {
    let name = ami_name(c.image, c.version);
    if let Some((id, _)) = crate::builder::find_image(aws, owner, region, &name).await? {
        return Ok((id, false));
    }
    let ec2 = aws.ec2(owner, region).await?;
    aws.limits(owner, region).await.copy_image.take().await;
    let out = ec2
        .copy_image()
        .source_region(c.source_region)
        .source_image_id(c.source_image_id)
        .name(&name)
        .description(format!("{} {} (amictl build {})", c.image, c.version, c.build_id))
        .copy_image_tags(true)
        .set_encrypted(c.key.map(|_| true))
        .set_kms_key_id(c.key.map(|k| crate::kms::replica_arn(k, region)))
        .send()
        .await
        .map_err(api("ec2:CopyImage", owner, region))?;
    Ok((out.image_id().unwrap_or_default().to_string(), true))
}

/// Tags an AMI and its snapshots.
pub(crate) async fn tag(
    ec2: &aws_sdk_ec2::Client,
    account: &str,
    region: &str,
    image_id: &str,
    snapshots: &[String],
    tags: &[(&str, String)],
) -> Result<(), AwsError> {
    let mut create_tags = ec2.create_tags().resources(image_id);
    for s in snapshots {
        create_tags = create_tags.resources(s);
    }
    for (k, v) in tags {
        create_tags = create_tags.tags(Tag::builder().key(*k).value(v).build());
    }
    create_tags.send().await.map_err(api("ec2:CreateTags", account, region))?;
    Ok(())
}

/// The consumer's own copy of the shared AMI, found by name before it is made.
async fn owned_copy(
    aws: &Aws,
    req: &PublishRequest,
    region: &str,
    consumer: &str,
    shared: &str,
    tags: &[(&str, String)],
) -> Result<String, AwsError> {
    let name = ami_name(&req.image, &req.version);
    let ec2 = aws.ec2(consumer, region).await?;
    let id = match crate::builder::find_image(aws, consumer, region, &name).await? {
        Some((id, _)) => id,
        None => {
            aws.limits(consumer, region).await.copy_image.take().await;
            let out = ec2
                .copy_image()
                .source_region(region)
                .source_image_id(shared)
                .name(&name)
                .description(format!("{} {} (amictl build {}, copy of {shared})", req.image, req.version, req.build_id))
                .send()
                .await
                .map_err(api("ec2:CopyImage", consumer, region))?;
            out.image_id().unwrap_or_default().to_string()
        }
    };
    let snapshots = wait_available(aws, &ec2, consumer, region, &id, req.wait).await?;
    aws.limits(consumer, region).await.mutate.take().await;
    tag(&ec2, consumer, region, &id, &snapshots, tags).await?;
    Ok(id)
}

/// Writes `<prefix>/<version>` once, then moves `<prefix>/latest` and reads it back.
pub(crate) async fn pointers(
    aws: &Aws,
    version: &str,
    prefix: &str,
    region: &str,
    consumer: &str,
    image_id: &str,
) -> Result<Vec<String>, AwsError> {
    pointers_in(aws, version, prefix, region, consumer, image_id, false).await
}

/// [`pointers`], as advanced-tier parameters when they are to be shared.
async fn pointers_in(
    aws: &Aws,
    version: &str,
    prefix: &str,
    region: &str,
    consumer: &str,
    image_id: &str,
    advanced: bool,
) -> Result<Vec<String>, AwsError> {
    let ssm = aws.ssm(consumer, region).await?;
    let tier = advanced.then_some(ParameterTier::Advanced);
    let versioned = format!("{}/{}", prefix.trim_end_matches('/'), version);
    put_once(&ssm, consumer, region, &versioned, image_id, tier.clone()).await?;
    let latest = format!("{}/latest", prefix.trim_end_matches('/'));
    ssm.put_parameter()
        .name(&latest)
        .value(image_id)
        .r#type(ParameterType::String)
        .set_tier(tier)
        .data_type("aws:ec2:image")
        .overwrite(true)
        .send()
        .await
        .map_err(api("ssm:PutParameter", consumer, region))?;
    let read = get(&ssm, consumer, region, &latest).await?;
    if read.as_deref() != Some(image_id) {
        return Err(AwsError::Failed {
            what: format!("SSM parameter {latest} in {consumer}"),
            region: region.into(),
            message: format!("reads back {read:?}, expected {image_id}"),
        });
    }
    Ok(vec![versioned, latest])
}

/// Waits for `available`; returns the AMI's snapshot ids.
pub(crate) async fn wait_available(
    aws: &Aws,
    ec2: &aws_sdk_ec2::Client,
    owner: &str,
    region: &str,
    image_id: &str,
    w: Waiter,
) -> Result<Vec<String>, AwsError> {
    let start = tokio::time::Instant::now();
    let mut seen = 0;
    let mut polls = 0u32;
    let mut backoff = crate::builder::Backoff::new(w.interval);
    loop {
        aws.limits(owner, region).await.describe.take().await;
        let out =
            ec2.describe_images().image_ids(image_id).send().await.map_err(api("ec2:DescribeImages", owner, region))?;
        let image = out.images().first();
        match image.and_then(|i| i.state()) {
            Some(ImageState::Available) => {
                seen += 1;
                if seen >= w.sightings {
                    let snaps = image
                        .map(|i| {
                            i.block_device_mappings()
                                .iter()
                                .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(snaps);
                }
            }
            Some(s @ (ImageState::Failed | ImageState::Deregistered | ImageState::Invalid | ImageState::Error)) => {
                return Err(AwsError::Failed {
                    what: format!("AMI {image_id}"),
                    region: region.into(),
                    message: format!("reached state {s:?}"),
                });
            }
            _ => seen = 0,
        }
        polls += 1;
        if polls.is_multiple_of(6) {
            tracing::info!("still waiting for {image_id} in {region} ({}s)", start.elapsed().as_secs());
        }
        if start.elapsed() >= w.timeout {
            return Err(AwsError::Timeout {
                what: format!("AMI {image_id} to become available"),
                region: region.into(),
                seconds: w.timeout.as_secs(),
            });
        }
        // Once it reads available, the next sightings only confirm it (EC2 is eventually
        // consistent for seconds, not minutes).
        let wait = if seen > 0 { w.interval / 4 } else { backoff.next_wait() };
        tokio::time::sleep(wait).await;
    }
}

async fn launch_permissions(
    aws: &Aws,
    ec2: &aws_sdk_ec2::Client,
    owner: &str,
    region: &str,
    image_id: &str,
) -> Result<Vec<String>, AwsError> {
    aws.limits(owner, region).await.describe.take().await;
    let out = ec2
        .describe_image_attribute()
        .image_id(image_id)
        .attribute(ImageAttributeName::LaunchPermission)
        .send()
        .await
        .map_err(api("ec2:DescribeImageAttribute", owner, region))?;
    // Accounts by id, organisations and OUs by ARN.
    Ok(out
        .launch_permissions()
        .iter()
        .filter_map(|p| p.user_id().or(p.organization_arn()).or(p.organizational_unit_arn()))
        .map(str::to_string)
        .collect())
}

/// A parameter's value; `None` when it does not exist.
pub(crate) async fn get(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    name: &str,
) -> Result<Option<String>, AwsError> {
    match ssm.get_parameter().name(name).send().await {
        Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
        Err(e) => Err(api("ssm:GetParameter", account, region)(e)),
    }
}

/// A versioned parameter is written once; a re-run that finds the same value is a no-op,
/// a different value is an error (a version must never change its AMI).
async fn put_once(
    ssm: &aws_sdk_ssm::Client,
    account: &str,
    region: &str,
    name: &str,
    value: &str,
    tier: Option<ParameterTier>,
) -> Result<(), AwsError> {
    match get(ssm, account, region, name).await? {
        Some(existing) if existing == value => return Ok(()),
        Some(existing) => {
            return Err(AwsError::Failed {
                what: format!("SSM parameter {name} in {account}"),
                region: region.into(),
                message: format!(
                    "already points at {existing}, not {value}; a published version never changes its AMI"
                ),
            });
        }
        None => {}
    }
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::String)
        .set_tier(tier)
        .data_type("aws:ec2:image")
        .overwrite(false)
        .send()
        .await
        .map_err(api("ssm:PutParameter", account, region))?;
    Ok(())
}

/// Marks a superseded AMI deprecated at `at`, so launch wizards and `describe_images` steer
/// people to the newest version, and returns the time EC2 recorded (it rounds to the
/// minute); `None` when the AMI no longer exists.
pub async fn deprecate(
    ec2: &aws_sdk_ec2::Client,
    owner: &str,
    region: &str,
    image_id: &str,
    at: std::time::SystemTime,
) -> Result<Option<String>, AwsError> {
    let sent = ec2
        .enable_image_deprecation()
        .image_id(image_id)
        .deprecate_at(aws_sdk_ec2::primitives::DateTime::from(at))
        .send()
        .await;
    if let Err(e) = &sent
        && e.as_service_error()
            .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
            .is_some_and(|c| c.starts_with("InvalidAMIID.NotFound") || c.starts_with("InvalidAMIID.Unavailable"))
    {
        return Ok(None);
    }
    sent.map_err(api("ec2:EnableImageDeprecation", owner, region))?;
    let out =
        ec2.describe_images().image_ids(image_id).send().await.map_err(api("ec2:DescribeImages", owner, region))?;
    let recorded = out.images().first().and_then(|i| i.deprecation_time()).map(str::to_string);
    let fallback = aws_sdk_ec2::primitives::DateTime::from(at)
        .fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default();
    Ok(Some(recorded.unwrap_or(fallback)))
}
