//! Least-privilege IAM policies for the config, derived from what the provider calls.
//!
//! Every AWS call in this crate reports errors under its IAM action name (`ec2:CopyImage`,
//! `ssm:PutParameter` …); the lists below are those names, and a test fails when the code
//! calls an action that no policy grants.

use serde_json::{Value, json};

/// Actions the platform account's role needs (find, copy, tag and share images).
pub const PLATFORM_ACTIONS: &[&str] = &[
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
    "ec2:CreateImage",
    "ec2:DeregisterImage",
    "ssm:SendCommand",
    "ssm:GetCommandInvocation",
    "ssm:DescribeInstanceInformation",
    "ec2:DescribeImageAttribute",
    "ec2:CopyImage",
    "ec2:CreateTags",
    "ec2:ModifyImageAttribute",
    "ec2:ModifySnapshotAttribute",
    "ec2:EnableImageDeprecation",
    "ec2:RebootInstances",
    "ec2:DeleteSnapshot",
    "ssm:PutParameter",
    "ssm:GetParametersByPath",
    "ssm:DeleteParameters",
    "ec2:DescribeSnapshots",
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:ListGrants",
];

/// Reading public parameters such as the latest Amazon Linux 2 AMI.
pub const PUBLIC_PARAMETER_ACTIONS: &[&str] = &["ssm:GetParameter"];

/// Actions a consumer account's role needs (the versioned SSM pointers).
pub const CONSUMER_ACTIONS: &[&str] = &["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"];

/// What a consumer role needs when an image line takes advisories from Inspector.
pub const INSPECTOR_ACTIONS: &[&str] = &["inspector2:ListFindings"];

/// What a consumer role needs when amictl rolls out to its auto scaling groups.
pub const CONSUMER_ROLLOUT_ACTIONS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:SetInstanceProtection",
    "autoscaling:StartInstanceRefresh",
    "autoscaling:DescribeInstanceRefreshes",
    "autoscaling:RollbackInstanceRefresh",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:CreateLaunchTemplateVersion",
    "ec2:ModifyLaunchTemplate",
    // ECS container hosts: found, drained before they go, and their capacity provider's
    // managed draining checked before an instance refresh.
    "ecs:ListClusters",
    "ecs:ListContainerInstances",
    "ecs:DescribeContainerInstances",
    "ecs:UpdateContainerInstancesState",
    "ecs:DescribeClusters",
    "ecs:DescribeCapacityProviders",
];

/// What retiring a version searches in every account and region it reached, for anything
/// that still uses its AMIs (see `crate::retire`).
pub const RETIRE_SEARCH_ACTIONS: &[&str] = &[
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribeLaunchTemplateVersions",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLaunchConfigurations",
    "ssm:GetParameter",
];

/// What retiring removes where the organisation owns the AMIs.
pub const RETIRE_REMOVE_ACTIONS: &[&str] = &[
    "ec2:DescribeImages",
    "ec2:DescribeImageAttribute",
    "ec2:DisableImage",
    "ec2:EnableImage",
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
    "ssm:DeleteParameter",
];

/// What the platform role needs to tell owners (SNS topics named in `rollout.sns_topic`).
pub const NOTIFY_ACTIONS: &[&str] = &["sns:Publish"];

/// Checkpoints of the audit chain in S3 (`[audit.anchors] s3`). `PutObject` with Object
/// Lock headers needs `s3:PutObjectRetention` as well.
pub const ANCHOR_OBJECT_ACTIONS: &[&str] =
    &["s3:PutObject", "s3:PutObjectRetention", "s3:GetObject", "s3:GetObjectRetention"];
/// Listing checkpoints and checking the bucket has Object Lock.
pub const ANCHOR_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket", "s3:GetBucketObjectLockConfiguration"];

/// What a consumer role needs so the fleet scan can read its hosts and their agents.
pub const CONSUMER_SCAN_ACTIONS: &[&str] = &[
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplates",
    "ssm:DescribeInstanceInformation",
    "ssm:SendCommand",
    "ssm:GetCommandInvocation",
];

/// What a consumer role also needs when it receives owned copies (`copy = true`).
pub const CONSUMER_COPY_ACTIONS: &[&str] = &[
    "ec2:DescribeImages",
    "ec2:CopyImage",
    "ec2:CreateTags",
    "ec2:EnableImageDeprecation",
    "ec2:DescribeImageAttribute",
    "ec2:DisableImage",
    "ec2:EnableImage",
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
];

/// What the platform role needs to drive Image Builder pipelines (`kind = "imagebuilder"`
/// lines) and adopt their images (`amictl import`).
pub const IMAGE_BUILDER_ACTIONS: &[&str] = &[
    "imagebuilder:GetImagePipeline",
    "imagebuilder:ListImagePipelines",
    "imagebuilder:GetImageRecipe",
    "imagebuilder:StartImagePipelineExecution",
    "imagebuilder:GetImage",
    "imagebuilder:CancelImageCreation",
    "imagebuilder:ListImagePackages",
    "imagebuilder:ListWorkflowExecutions",
    "imagebuilder:ListWorkflowStepExecutions",
    "imagebuilder:ListImagePipelineImages",
];

/// What reading components by ARN (`[components.x] arn = …`, `ExecuteDocument` by ARN) needs.
pub const COMPONENT_ACTIONS: &[&str] = &["imagebuilder:GetComponent"];

/// What the platform needs to share its own `latest` parameter by AWS RAM
/// (`distribute.share_parameter`); creating a share with tags needs `ram:TagResource`.
pub const SHARE_ACTIONS: &[&str] = &[
    "ram:GetResourceShares",
    "ram:CreateResourceShare",
    "ram:AssociateResourceShare",
    "ram:GetResourceShareAssociations",
    "ram:TagResource",
];

/// What a consumer role needs when its AMIs are verified or imported (Image Builder lines'
/// `targetAccountIds` copies, `import = { name, owner }`).
pub const CONSUMER_IMAGE_ACTIONS: &[&str] = &["ec2:DescribeImages"];

/// The platform role's policy: image actions in the configured regions, public parameters,
/// and assuming the consumer roles.
pub fn platform_policy(
    platform_account: &str,
    regions: &[String],
    consumer_roles: &[String],
    topics: &[String],
) -> Value {
    let images: Vec<String> = regions
        .iter()
        .flat_map(|r| [format!("arn:aws:ec2:{r}::image/*"), format!("arn:aws:ec2:{r}:{platform_account}:snapshot/*")])
        .collect();
    let public: Vec<String> = regions.iter().map(|r| format!("arn:aws:ssm:{r}::parameter/aws/service/*")).collect();
    let mut statements = vec![
        json!({"Sid": "Describe", "Effect": "Allow", "Action": PLATFORM_ACTIONS.iter().filter(|a| a.contains(":Describe") || a.starts_with("ssm:GetCommand")).collect::<Vec<_>>(), "Resource": "*"}),
        json!({"Sid": "CheckImageKeys", "Effect": "Allow", "Action": ["kms:GetKeyPolicy", "kms:ListGrants"], "Resource": format!("arn:aws:kms:*:{platform_account}:key/*")}),
        json!({"Sid": "PublishImages", "Effect": "Allow", "Action": ["ec2:CopyImage", "ec2:CreateTags", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "ec2:EnableImageDeprecation", "ec2:DisableImage", "ec2:EnableImage", "ec2:DeregisterImage", "ec2:DeleteSnapshot"], "Resource": images}),
        json!({"Sid": "RetireSearch", "Effect": "Allow", "Action": RETIRE_SEARCH_ACTIONS, "Resource": "*", "Condition": {"StringEquals": {"aws:RequestedRegion": regions}}}),
        json!({"Sid": "BuildAndTestInstances", "Effect": "Allow", "Action": ["ec2:RunInstances", "ec2:TerminateInstances", "ec2:RebootInstances", "ec2:CreateImage", "ec2:CreateTags", "ssm:SendCommand"], "Resource": "*",
               "Condition": {"StringEqualsIfExists": {"aws:RequestedRegion": regions}}}),
        json!({"Sid": "PassBuilderInstanceProfile", "Effect": "Allow", "Action": "iam:PassRole", "Resource": format!("arn:aws:iam::{platform_account}:role/*"),
               "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}),
        json!({"Sid": "BuildSecrets", "Effect": "Allow", "Action": ["ssm:PutParameter", "ssm:GetParametersByPath", "ssm:DeleteParameters"], "Resource": build_secrets(platform_account, regions)}),
        json!({"Sid": "ReadPublicParameters", "Effect": "Allow", "Action": PUBLIC_PARAMETER_ACTIONS, "Resource": public}),
    ];
    if !topics.is_empty() {
        statements
            .push(json!({"Sid": "NotifyOwners", "Effect": "Allow", "Action": NOTIFY_ACTIONS, "Resource": topics}));
    }
    if !consumer_roles.is_empty() {
        statements.push(json!({"Sid": "ReachConsumerAccounts", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": consumer_roles}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn build_secrets(account: &str, regions: &[String]) -> Vec<String> {
    regions.iter().map(|r| format!("arn:aws:ssm:{r}:{account}:parameter/amictl/build/*")).collect()
}

/// The role of the builder/test instances' profile: the SSM agent's managed policy
/// (attach `AmazonSSMManagedInstanceCore`) plus reading this build's secrets.
pub fn builder_instance_policy(platform_account: &str, regions: &[String]) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadBuildSecrets", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": build_secrets(platform_account, regions)}
    ]})
}

/// A consumer role's policy: the parameters under `prefix` in its account, reading its
/// hosts, and — only when configured — rollouts to its groups and owned copies.
pub fn consumer_policy(
    account: &str,
    regions: &[String],
    prefixes: &[String],
    copy: bool,
    rollouts: bool,
    inspector: bool,
    images: bool,
) -> Value {
    let resources: Vec<String> = regions
        .iter()
        .flat_map(|r| {
            prefixes.iter().map(move |p| format!("arn:aws:ssm:{r}:{account}:parameter{}/*", p.trim_end_matches('/')))
        })
        .collect();
    let mut statements = vec![
        json!({"Sid": "BaseImagePointers", "Effect": "Allow", "Action": CONSUMER_ACTIONS, "Resource": resources}),
        json!({"Sid": "FleetScan", "Effect": "Allow", "Action": CONSUMER_SCAN_ACTIONS, "Resource": "*"}),
        json!({"Sid": "RetireSearch", "Effect": "Allow", "Action": RETIRE_SEARCH_ACTIONS, "Resource": "*", "Condition": {"StringEquals": {"aws:RequestedRegion": regions}}}),
    ];
    let in_regions = json!({"StringEquals": {"aws:RequestedRegion": regions}});
    if rollouts {
        statements.push(json!({"Sid": "Rollouts", "Effect": "Allow", "Action": CONSUMER_ROLLOUT_ACTIONS, "Resource": "*", "Condition": in_regions}));
    }
    if inspector {
        statements
            .push(json!({"Sid": "InspectorFindings", "Effect": "Allow", "Action": INSPECTOR_ACTIONS, "Resource": "*"}));
    }
    if images && !copy {
        statements.push(json!({"Sid": "FindImages", "Effect": "Allow", "Action": CONSUMER_IMAGE_ACTIONS, "Resource": "*", "Condition": in_regions}));
    }
    if copy {
        statements.push(json!({"Sid": "OwnedCopies", "Effect": "Allow", "Action": CONSUMER_COPY_ACTIONS, "Resource": "*", "Condition": in_regions}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Every policy a config needs: the platform identity's, the builder instance profile's,
/// and each consumer role's with its trust policy. `Err` when no account is the platform.
pub fn for_config(cfg: &config::Config) -> Result<Value, String> {
    use std::collections::{BTreeMap, BTreeSet};
    let platform = cfg
        .platform()
        .ok_or("no platform account: one account must have no `role` (amictl runs with its credentials)")?;
    let mut regions: BTreeSet<String> = cfg.aws_region.iter().cloned().collect();
    let mut prefixes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut copies: BTreeSet<String> = BTreeSet::new();
    let mut shared_parameters: BTreeSet<String> = BTreeSet::new();
    let mut inspected: BTreeSet<String> = BTreeSet::new();
    for image in cfg.images.values() {
        if let Some(d) = &image.distribute {
            regions.extend(d.regions.iter().cloned());
            if d.share_parameter
                && let Some(p) = &d.ssm_parameter
            {
                shared_parameters.insert(p.trim_end_matches('/').to_string());
            }
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
            config::RolloutMethod::Notify { sns_topic } | config::RolloutMethod::Pinned { sns_topic } => {
                topics.extend(sns_topic.iter().cloned())
            }
            _ => {
                rollouts.insert(c.account.clone());
            }
        }
    }
    let pipelines = cfg.images.values().any(|i| matches!(i.builder, config::Builder::ImageBuilder { .. }));
    // Name-pattern imports read Image Builder's packages of images it made.
    let imports = cfg.images.values().any(|i| i.import.is_some());
    let finds_images = pipelines || cfg.images.values().any(|i| i.import.is_some());
    // Each component read by ARN, any version: `arn:…:component/<name>/*`.
    let component_resources: Vec<String> = cfg
        .components
        .values()
        .filter(|c| c.arn.is_some())
        .map(|c| c.file.display().to_string())
        .chain(cfg.fetched.keys().cloned())
        .filter_map(|arn| {
            let (prefix, rest) = arn.split_once(":component/")?;
            Some(format!("{prefix}:component/{}/*", rest.split('/').next()?))
        })
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let by_arn = !component_resources.is_empty();
    // Documents that run others by ARN are fetched by awstoe on EC2 builder instances.
    let nested = cfg.components.values().any(|c| !c.nested.is_empty());
    let regions: Vec<String> = regions.into_iter().collect();
    let topics: Vec<String> = topics.into_iter().collect();
    let roles: Vec<String> =
        prefixes.keys().filter_map(|a| cfg.accounts.get(a)).filter_map(|a| a.role.clone()).collect();
    let mut consumers = serde_json::Map::new();
    for (name, p) in &prefixes {
        let Some(account) = cfg.accounts.get(name) else { continue };
        let p: Vec<String> = p.iter().cloned().collect();
        consumers.insert(
            name.clone(),
            json!({
                "account": account.id,
                "role": account.role,
                "policy": consumer_policy(&account.id, &regions, &p, copies.contains(name), rollouts.contains(name), inspected.contains(name), finds_images),
                "trust_policy": consumer_trust_policy(&platform.id, account.external_id.as_deref()),
            }),
        );
    }
    let mut platform_doc = platform_policy(&platform.id, &regions, &roles, &topics);
    let mut builder_instance = builder_instance_policy(&platform.id, &regions);
    if nested && let Some(statements) = builder_instance["Statement"].as_array_mut() {
        statements.push(json!({"Sid": "ExecuteDocumentByArn", "Effect": "Allow", "Action": COMPONENT_ACTIONS, "Resource": component_resources}));
    }
    if let Some(statements) = platform_doc["Statement"].as_array_mut() {
        if imports && !pipelines {
            statements.push(json!({"Sid": "ReadImageBuilderImages", "Effect": "Allow", "Action": ["imagebuilder:GetImage", "imagebuilder:ListImagePackages"], "Resource": "*"}));
        }
        if pipelines {
            // Image Builder's read and start actions take no finer resource in practice
            // (pipelines, images and workflows are named at run time).
            statements.push(json!({"Sid": "ImageBuilderPipelines", "Effect": "Allow", "Action": IMAGE_BUILDER_ACTIONS, "Resource": "*", "Condition": {"StringEquals": {"aws:RequestedRegion": regions}}}));
        }
        if !shared_parameters.is_empty() {
            let own: Vec<String> = regions
                .iter()
                .flat_map(|r| {
                    shared_parameters.iter().map(move |p| format!("arn:aws:ssm:{r}:{}:parameter{p}/*", platform.id))
                })
                .collect();
            statements.push(json!({"Sid": "SharedPointers", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"], "Resource": own}));
            statements.push(json!({"Sid": "ShareByRam", "Effect": "Allow", "Action": SHARE_ACTIONS, "Resource": "*", "Condition": {"StringEquals": {"aws:RequestedRegion": regions}}}));
        }
        if by_arn {
            statements.push(json!({"Sid": "ReadComponents", "Effect": "Allow", "Action": COMPONENT_ACTIONS, "Resource": component_resources}));
        }
        // Audit anchors: write and read checkpoints, never delete or shorten them (Object
        // Lock in compliance mode refuses that even to the bucket's owner).
        if let Some(url) = &cfg.anchors.s3 {
            let rest = url.trim_start_matches("s3://");
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let objects = if prefix.is_empty() {
                format!("arn:aws:s3:::{bucket}/*")
            } else {
                format!("arn:aws:s3:::{bucket}/{}/*", prefix.trim_matches('/'))
            };
            statements.push(
                json!({"Sid": "AuditAnchors", "Effect": "Allow", "Action": ANCHOR_OBJECT_ACTIONS, "Resource": objects}),
            );
            statements.push(json!({"Sid": "AuditAnchorBucket", "Effect": "Allow", "Action": ANCHOR_BUCKET_ACTIONS, "Resource": format!("arn:aws:s3:::{bucket}")}));
        }
    }
    Ok(json!({
        "platform": {"account": platform.id, "policy": platform_doc},
        "builder_instance_profile": {
            "managed_policies": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"],
            "policy": builder_instance,
        },
        "consumers": consumers,
    }))
}

/// The trust policy a consumer role needs so the platform account can assume it.
pub fn consumer_trust_policy(platform_account: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{platform_account}:root")}, "Action": "sts:AssumeRole"});
    if let Some(ext) = external_id {
        statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": ext}});
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"ec2:…"`/`"ssm:…"` action named in this crate's code is granted somewhere.
    #[test]
    fn every_action_the_code_calls_is_in_a_policy() {
        let granted: Vec<&str> = PLATFORM_ACTIONS
            .iter()
            .chain(PUBLIC_PARAMETER_ACTIONS)
            .chain(CONSUMER_ACTIONS)
            .chain(CONSUMER_SCAN_ACTIONS)
            .chain(IMAGE_BUILDER_ACTIONS)
            .chain(COMPONENT_ACTIONS)
            .chain(CONSUMER_IMAGE_ACTIONS)
            .chain(SHARE_ACTIONS)
            .chain(RETIRE_SEARCH_ACTIONS)
            .chain(RETIRE_REMOVE_ACTIONS)
            .copied()
            .collect();
        let sources = [
            include_str!("publish.rs"),
            include_str!("parent.rs"),
            include_str!("builder.rs"),
            include_str!("build.rs"),
            include_str!("imagebuilder.rs"),
            include_str!("import.rs"),
            include_str!("ram.rs"),
            include_str!("retire.rs"),
        ];
        for source in sources {
            for piece in source.split('"').skip(1).step_by(2) {
                let action = ["ec2:", "ssm:", "kms:", "sns:", "autoscaling:", "inspector2:", "imagebuilder:", "ram:"]
                    .iter()
                    .find_map(|p| piece.strip_prefix(p))
                    .filter(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
                let is_action = action.is_some();
                if is_action {
                    assert!(granted.contains(&piece), "{piece} is called but no policy grants it");
                }
            }
        }
    }

    #[test]
    fn consumer_policies_are_scoped_to_the_prefix() {
        let p = consumer_policy(
            "222222222222",
            &["eu-west-1".into()],
            &["/platform/base-ami/host".into()],
            false,
            false,
            false,
            false,
        );
        assert_eq!(
            p["Statement"][0]["Resource"][0],
            "arn:aws:ssm:eu-west-1:222222222222:parameter/platform/base-ami/host/*"
        );
        let t = consumer_trust_policy("111111111111", Some("x"));
        assert_eq!(t["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"], "x");
        let sids: Vec<&str> = p["Statement"].as_array().unwrap().iter().filter_map(|s| s["Sid"].as_str()).collect();
        assert_eq!(sids, ["BaseImagePointers", "FleetScan", "RetireSearch"], "no image actions without copies");
        let c = consumer_policy("222222222222", &["eu-west-1".into()], &["/p".into()], true, true, false, true);
        assert_eq!(c["Statement"][3]["Sid"], "Rollouts");
        assert_eq!(c["Statement"][4]["Action"][1], "ec2:CopyImage");
        assert!(
            c["Statement"][4]["Action"].as_array().unwrap().contains(&"ec2:DeregisterImage".into()),
            "copies are retired"
        );
        let i = consumer_policy("222222222222", &["eu-west-1".into()], &["/p".into()], false, false, false, true);
        assert_eq!(i["Statement"][3]["Sid"], "FindImages", "imports and Image Builder copies are looked up");
    }
}
