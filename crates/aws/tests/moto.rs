//! The AWS provider against a real `moto` server on 127.0.0.1 (PyPI `moto[server]`), for
//! the reference organisation: platform 111111111111 owns the images, consumers workflow
//! (222222222222) and digirati (333333333333), regions eu-west-1 and eu-west-2.
//!
//! The server comes from `AMICTL_MOTO_SERVER` (scripts/test installs it in a venv) or
//! `moto_server` on PATH; a test fails with that message when neither exists.

use std::time::Duration;

use aws::publish::{PublishRequest, Waiter, ami_name, publish};
use aws::{AccountAccess, Aws, AwsError};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{Filter, ImageAttributeName, InstanceType};

const AL2: &str = "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2";

use motogap::Moto;

fn moto() -> Moto {
    Moto::start()
}

fn account(name: &str, id: &str) -> AccountAccess {
    AccountAccess {
        name: name.into(),
        id: id.into(),
        role: Some(format!("arn:aws:iam::{id}:role/amictl")),
        external_id: None,
    }
}

async fn reference_org(m: &Moto) -> Aws {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(m.url())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "moto"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    Aws::with_config(
        base,
        vec![
            account("platform", "111111111111"),
            account("workflow", "222222222222"),
            account("digirati", "333333333333"),
        ],
    )
}

/// A finished build: an instance launched from the current Amazon Linux 2 and imaged.
async fn built_ami(aws: &Aws, name: &str) -> String {
    built_ami_in(aws, "platform", "eu-west-1", name).await
}

async fn built_ami_in(aws: &Aws, account: &str, region: &str, name: &str) -> String {
    let parent = aws::parent::from_ssm_parameter(aws, account, region, AL2).await.unwrap();
    let ec2 = aws.ec2(account, region).await.unwrap();
    let run = ec2
        .run_instances()
        .image_id(&parent.image_id)
        .instance_type(InstanceType::T3Medium)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_string();
    ec2.create_image().instance_id(instance).name(name).send().await.unwrap().image_id().unwrap().to_string()
}

fn request(source: &str) -> PublishRequest {
    PublishRequest {
        image: "weco-amzn2-hvm-x86_64-gp2".into(),
        version: "2026.11.27.1".into(),
        build_id: "b-1".into(),
        owner: "platform".into(),
        source_region: "eu-west-1".into(),
        source_image_id: source.into(),
        regions: vec!["eu-west-1".into(), "eu-west-2".into()],
        consumers: vec!["workflow".into(), "digirati".into()],
        copy: false,
        ssm_prefix: Some("/platform/base-ami/weco-amzn2-hvm-x86_64-gp2".into()),
        organizations: Vec::new(),
        share_parameter: false,
        tags: Vec::new(),
        wait: Waiter { interval: Duration::from_millis(20), sightings: 3, timeout: Duration::from_secs(30) },
    }
}

#[tokio::test]
async fn the_parent_resolves_from_the_ssm_public_parameter_with_its_lineage() {
    let m = moto();
    let aws = reference_org(&m).await;
    let p = aws::parent::from_ssm_parameter(&aws, "platform", "eu-west-1", AL2).await.unwrap();
    assert!(p.image_id.starts_with("ami-"));
    assert!(p.name.starts_with("amzn2-ami-hvm-"), "{p:?}");
    assert!(!p.created.is_empty());
    let by_name = aws::parent::from_name_filter(
        &aws,
        "platform",
        "eu-west-1",
        &["amazon".into()],
        "amzn2-ami-hvm-2.0.*-x86_64-gp2",
    )
    .await
    .unwrap();
    assert_eq!(by_name.image_id, p.image_id, "the newest by name is what the parameter points at");
    match aws::parent::from_ssm_parameter(&aws, "platform", "eu-west-1", "/aws/service/no/such/parameter").await {
        Err(AwsError::NotFound { what, account, region }) => {
            assert!(what.contains("/aws/service/no/such/parameter"));
            assert_eq!((account.as_str(), region.as_str()), ("platform", "eu-west-1"));
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn publishing_copies_shares_tags_and_points_ssm_in_every_consumer_account_and_region() {
    let m = moto();
    let aws = reference_org(&m).await;
    let name = ami_name("weco-amzn2-hvm-x86_64-gp2", "2026.11.27.1");
    let source = built_ami(&aws, &name).await;
    let report = publish(&aws, &request(&source)).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.done.len(), 2);
    let west2 = &report.done[1];
    assert_eq!(west2.region, "eu-west-2");
    assert!(west2.copied);
    assert_ne!(west2.image_id, source);
    assert_eq!(report.done[0].image_id, source, "the build region keeps the built AMI");

    for r in &report.done {
        let ec2 = aws.ec2("platform", &r.region).await.unwrap();
        let image = ec2.describe_images().image_ids(&r.image_id).send().await.unwrap();
        let image = &image.images()[0];
        assert_eq!(image.name(), Some(name.as_str()));
        let tags: Vec<(String, String)> =
            image.tags().iter().map(|t| (t.key().unwrap().into(), t.value().unwrap().into())).collect();
        assert!(tags.contains(&("amictl:version".into(), "2026.11.27.1".into())), "{tags:?}");
        assert!(tags.contains(&("amictl:build-id".into(), "b-1".into())));
        let perms = ec2
            .describe_image_attribute()
            .image_id(&r.image_id)
            .attribute(ImageAttributeName::LaunchPermission)
            .send()
            .await
            .unwrap();
        let mut users: Vec<&str> = perms.launch_permissions().iter().filter_map(|p| p.user_id()).collect();
        users.sort();
        assert_eq!(users, ["222222222222", "333333333333"]);
        for consumer in ["workflow", "digirati"] {
            let ssm = aws.ssm(consumer, &r.region).await.unwrap();
            for name in [
                "/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/2026.11.27.1",
                "/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/latest",
            ] {
                let v = ssm.get_parameter().name(name).send().await.unwrap();
                assert_eq!(
                    v.parameter().and_then(|p| p.value()),
                    Some(r.image_id.as_str()),
                    "{consumer} {} {name}",
                    r.region
                );
            }
        }
        // Consumers' parameters live in the consumers' accounts, not the platform's.
        let platform_ssm = aws.ssm("platform", &r.region).await.unwrap();
        assert!(
            platform_ssm
                .get_parameter()
                .name("/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/latest")
                .send()
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn publishing_again_adopts_what_exists_and_never_duplicates_an_ami() {
    let m = moto();
    let aws = reference_org(&m).await;
    let name = ami_name("weco-amzn2-hvm-x86_64-gp2", "2026.11.27.1");
    let source = built_ami(&aws, &name).await;
    let first = publish(&aws, &request(&source)).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let second = publish(&aws, &request(&source)).await;
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert!(second.done.iter().all(|r| !r.copied), "nothing is copied twice");
    assert_eq!(
        first.done,
        second
            .done
            .iter()
            .map(|r| aws::publish::RegionReport {
                copied: first.done.iter().find(|f| f.region == r.region).unwrap().copied,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    );
    let ec2 = aws.ec2("platform", "eu-west-2").await.unwrap();
    let named = ec2
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(&name).build())
        .send()
        .await
        .unwrap();
    assert_eq!(named.images().len(), 1, "exactly one AMI of this version in eu-west-2");
}

#[tokio::test]
async fn a_version_that_would_change_its_ami_is_refused_and_latest_stays() {
    let m = moto();
    let aws = reference_org(&m).await;
    let source = built_ami(&aws, &ami_name("weco-amzn2-hvm-x86_64-gp2", "2026.11.27.1")).await;
    let mut req = request(&source);
    req.regions = vec!["eu-west-1".into()];
    assert!(publish(&aws, &req).await.failed.is_empty());
    // Someone points the versioned parameter elsewhere: the next publish must not move `latest`.
    let ssm = aws.ssm("workflow", "eu-west-1").await.unwrap();
    ssm.put_parameter()
        .name("/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/2026.11.27.1")
        .value("ami-00000000000000000")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    ssm.put_parameter()
        .name("/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/latest")
        .value("ami-11111111111111111")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let report = publish(&aws, &req).await;
    assert_eq!(report.failed.len(), 1);
    let message = report.failed[0].1.to_string();
    assert!(message.contains("never changes its AMI"), "{message}");
    let latest = ssm.get_parameter().name("/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/latest").send().await.unwrap();
    assert_eq!(latest.parameter().and_then(|p| p.value()), Some("ami-11111111111111111"), "latest did not move");
}

#[tokio::test]
async fn a_region_that_fails_is_reported_while_the_others_complete() {
    let m = moto();
    let aws = reference_org(&m).await;
    let source = built_ami(&aws, &ami_name("weco-amzn2-hvm-x86_64-gp2", "2026.11.27.1")).await;
    let mut req = request(&source);
    req.regions = vec!["eu-west-1".into(), "xx-nowhere-1".into()];
    let report = publish(&aws, &req).await;
    assert_eq!(report.done.len(), 1);
    assert_eq!(report.done[0].region, "eu-west-1");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "xx-nowhere-1");
    assert!(
        report.failed[0].1.to_string().contains("xx-nowhere-1"),
        "the error names the region: {}",
        report.failed[0].1
    );
}

fn launch_spec(aws_parent: &str, build_id: &str, role: &str) -> aws::builder::LaunchSpec {
    aws::builder::LaunchSpec {
        build_id: build_id.into(),
        role: role.into(),
        image_id: aws_parent.into(),
        instance_type: "t3.medium".into(),
        subnet: None,
        security_groups: vec![],
        instance_profile: None,
        name: format!("amictl {role} {build_id}"),
    }
}

const FAST: aws::builder::Polling =
    aws::builder::Polling { interval: Duration::from_millis(20), timeout: Duration::from_secs(20) };

#[tokio::test]
async fn a_builder_instance_requires_imdsv2_and_carries_the_build_id() {
    let m = moto();
    let aws = reference_org(&m).await;
    let parent = aws::parent::from_ssm_parameter(&aws, "platform", "eu-west-1", AL2).await.unwrap();
    let id = aws::builder::launch(&aws, "platform", "eu-west-1", &launch_spec(&parent.image_id, "b-42", "builder"))
        .await
        .unwrap();
    aws::builder::wait_running(&aws, "platform", "eu-west-1", &id, FAST).await.unwrap();
    let ec2 = aws.ec2("platform", "eu-west-1").await.unwrap();
    let out = ec2.describe_instances().instance_ids(&id).send().await.unwrap();
    let instance = &out.reservations()[0].instances()[0];
    assert_eq!(instance.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"));
    let tags: Vec<(&str, &str)> = instance.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(tags.contains(&("amictl:build-id", "b-42")) && tags.contains(&("amictl:role", "builder")), "{tags:?}");

    // Run Command plumbing: moto executes nothing but returns the invocation.
    let ssm = aws.ssm("platform", "eu-west-1").await.unwrap();
    let out = aws::builder::run_command(&ssm, "platform", "eu-west-1", &id, "manifest", &["rpm -qa".into()], FAST)
        .await
        .unwrap();
    assert!(!out.command_id.is_empty());

    let ami =
        aws::builder::create_image(&aws, "platform", "eu-west-1", &id, "host-2026.11.27.1", "b-42").await.unwrap();
    let found = aws::builder::find_image(&aws, "platform", "eu-west-1", "host-2026.11.27.1").await.unwrap();
    assert_eq!(
        found,
        Some((ami, Some("b-42".to_string()))),
        "a resumed build finds the AMI it made, by name and build id"
    );
}

#[tokio::test]
async fn cleanup_removes_everything_a_build_left_and_nothing_else() {
    let m = moto();
    let aws = reference_org(&m).await;
    let parent = aws::parent::from_ssm_parameter(&aws, "platform", "eu-west-1", AL2).await.unwrap();
    let builder =
        aws::builder::launch(&aws, "platform", "eu-west-1", &launch_spec(&parent.image_id, "b-dead", "builder"))
            .await
            .unwrap();
    let tester =
        aws::builder::launch(&aws, "platform", "eu-west-1", &launch_spec(&parent.image_id, "b-dead", "tester"))
            .await
            .unwrap();
    let other =
        aws::builder::launch(&aws, "platform", "eu-west-1", &launch_spec(&parent.image_id, "b-other", "builder"))
            .await
            .unwrap();
    let half_made = aws::builder::create_image(&aws, "platform", "eu-west-1", &builder, "host-2026.11.27.2", "b-dead")
        .await
        .unwrap();

    let report = aws::builder::cleanup(&aws, "platform", "eu-west-1", "b-dead", None).await.unwrap();
    let mut expected = vec![builder.clone(), tester.clone()];
    expected.sort();
    assert_eq!(report.terminated, expected);
    assert_eq!(report.deregistered, vec![half_made.clone()]);

    let ec2 = aws.ec2("platform", "eu-west-1").await.unwrap();
    let state = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
            out.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
        }
    };
    assert_eq!(state(builder).await, "terminated");
    assert_eq!(state(other).await, "running", "another build's instance is untouched");
    assert!(aws::builder::find_image(&aws, "platform", "eu-west-1", "host-2026.11.27.2").await.unwrap().is_none());
    let again = aws::builder::cleanup(&aws, "platform", "eu-west-1", "b-dead", None).await.unwrap();
    assert_eq!(again, aws::builder::Cleanup::default(), "a second cleanup finds nothing to do");
}

#[tokio::test]
async fn key_facts_come_from_the_key_policy_and_grants() {
    let m = moto();
    let aws = reference_org(&m).await;
    let kms = aws_sdk_kms::Client::new(&aws.config("platform", "eu-west-1").await.unwrap());
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"kms:*","Resource":"*"},
        {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":["kms:Decrypt","kms:CreateGrant"],"Resource":"*"}]}"#;
    let key = kms.create_key().policy(policy).multi_region(true).send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    let facts = aws::kms::facts(&aws, "platform", "eu-west-1", &key_id).await.unwrap();
    assert!(facts.multi_region && !facts.aws_managed, "{facts:?}");
    assert_eq!(facts.accounts.iter().map(String::as_str).collect::<Vec<_>>(), ["111111111111", "222222222222"]);
    let consumers = [("workflow".to_string(), "222222222222".to_string()), ("digirati".into(), "333333333333".into())];
    let refused = aws::kms::judge(&facts, &consumers, true).unwrap_err();
    assert!(refused.contains("digirati (333333333333)"), "{refused}");

    kms.create_grant()
        .key_id(&key_id)
        .grantee_principal("arn:aws:iam::333333333333:root")
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let facts = aws::kms::facts(&aws, "platform", "eu-west-1", &key_id).await.unwrap();
    assert!(aws::kms::judge(&facts, &consumers, true).is_ok(), "the grant lets digirati decrypt: {facts:?}");
    // moto makes no encrypted AMIs, so an unencrypted one has no keys to check.
    let image = aws::parent::from_ssm_parameter(&aws, "platform", "eu-west-1", AL2).await.unwrap();
    assert!(aws::kms::image_keys(&aws, "platform", "eu-west-1", &image.image_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn owned_copies_are_found_by_name_in_the_consumer_account_and_pointed_to() {
    let m = moto();
    let aws = reference_org(&m).await;
    let name = ami_name("weco-amzn2-hvm-x86_64-gp2", "2026.11.27.1");
    let source = built_ami(&aws, &name).await;
    let mut req = request(&source);
    req.regions = vec!["eu-west-1".into()];
    req.consumers = vec!["workflow".into()];
    req.copy = true;
    // moto does not let one account see another's AMI, so CopyImage from the consumer
    // account fails there; the error names the operation, account and region.
    let report = publish(&aws, &req).await;
    let (region, err) = &report.failed[0];
    assert_eq!(region, "eu-west-1");
    let err = err.to_string();
    assert!(err.contains("ec2:CopyImage in account workflow (eu-west-1)") && err.contains("InvalidAMIID"), "{err}");

    // The consumer's copy exists (a previous run made it): it is adopted, tagged and pointed to.
    let copy = built_ami_in(&aws, "workflow", "eu-west-1", &name).await;
    let report = publish(&aws, &req).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let c = &report.done[0].consumers[0];
    assert_eq!((c.account.as_str(), c.image_id.as_str(), c.how.as_str()), ("workflow", copy.as_str(), "copy"));
    let ssm = aws.ssm("workflow", "eu-west-1").await.unwrap();
    let latest = ssm.get_parameter().name("/platform/base-ami/weco-amzn2-hvm-x86_64-gp2/latest").send().await.unwrap();
    assert_eq!(latest.parameter().and_then(|p| p.value()), Some(copy.as_str()));
    let ec2 = aws.ec2("workflow", "eu-west-1").await.unwrap();
    let image = ec2.describe_images().image_ids(&copy).send().await.unwrap();
    let tags: Vec<(&str, &str)> =
        image.images()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert!(tags.contains(&("amictl:source-ami", source.as_str())), "{tags:?}");
}
