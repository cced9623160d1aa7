//! Client code for the EC2 APIs moto does not implement, tested with the SDK's own
//! `aws-smithy-mocks` (as the test names say). Everything moto does implement is tested
//! against moto in `moto.rs`.

use std::time::{Duration, SystemTime};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::enable_image_deprecation::{EnableImageDeprecationError, EnableImageDeprecationOutput};
use aws_smithy_mocks::{mock, mock_client};

#[tokio::test]
async fn deprecating_a_superseded_ami_sends_its_id_and_time_mocked_because_moto_lacks_enable_image_deprecation() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let rule = mock!(Client::enable_image_deprecation)
        .match_requests(move |r| {
            r.image_id() == Some("ami-0123456789abcdef0") && r.deprecate_at().map(|d| d.secs()) == Some(1_800_000_000)
        })
        .then_output(|| EnableImageDeprecationOutput::builder().r#return(true).build());
    // EC2 rounds to the minute; what it recorded is read back.
    let read = mock!(Client::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-0123456789abcdef0"])
        .then_output(|| {
            aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder()
                .images(
                    aws_sdk_ec2::types::Image::builder()
                        .image_id("ami-0123456789abcdef0")
                        .deprecation_time("2027-01-15T08:00:00.000Z")
                        .build(),
                )
                .build()
        });
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&rule, &read]);
    let recorded = aws::publish::deprecate(&ec2, "platform", "eu-west-1", "ami-0123456789abcdef0", at).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(recorded.as_deref(), Some("2027-01-15T08:00:00.000Z"));
}

#[tokio::test]
async fn deprecating_an_ami_that_is_gone_is_done_not_failed_mocked_because_moto_lacks_enable_image_deprecation() {
    let rule = mock!(Client::enable_image_deprecation).then_error(|| {
        EnableImageDeprecationError::generic(
            aws_sdk_ec2::error::ErrorMetadata::builder().code("InvalidAMIID.NotFound").message("no such AMI").build(),
        )
    });
    let ec2 = mock_client!(aws_sdk_ec2, [&rule]);
    let gone = aws::publish::deprecate(&ec2, "workflow", "eu-west-1", "ami-0123456789abcdef0", SystemTime::now()).await;
    assert_eq!(gone.unwrap(), None, "nothing left to deprecate");
}

#[tokio::test]
async fn a_refused_deprecation_names_the_operation_account_and_region_mocked_because_moto_lacks_enable_image_deprecation()
 {
    let rule = mock!(Client::enable_image_deprecation).then_error(|| {
        EnableImageDeprecationError::generic(
            aws_sdk_ec2::error::ErrorMetadata::builder().code("UnauthorizedOperation").message("not allowed").build(),
        )
    });
    let ec2 = mock_client!(aws_sdk_ec2, [&rule]);
    let err = aws::publish::deprecate(&ec2, "platform", "eu-west-2", "ami-0123456789abcdef0", SystemTime::now())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("ec2:EnableImageDeprecation") && text.contains("platform") && text.contains("eu-west-2"),
        "{text}"
    );
    assert!(text.contains("UnauthorizedOperation") || text.contains("not allowed"), "{text}");
}

use aws_sdk_ssm::operation::describe_instance_information::DescribeInstanceInformationOutput;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::operation::send_command::SendCommandOutput;
use aws_sdk_ssm::types::{Command, CommandInvocationStatus, InstanceInformation, PingStatus};
use aws_smithy_mocks::RuleMode;

const FAST: aws::builder::Polling =
    aws::builder::Polling { interval: Duration::from_millis(1), timeout: Duration::from_millis(300) };

fn info(status: PingStatus) -> DescribeInstanceInformationOutput {
    DescribeInstanceInformationOutput::builder()
        .instance_information_list(InstanceInformation::builder().instance_id("i-0abc").ping_status(status).build())
        .build()
}

#[tokio::test]
async fn waiting_for_ssm_returns_once_the_agent_is_online_mocked_because_moto_lacks_describe_instance_information() {
    let rule = mock!(aws_sdk_ssm::Client::describe_instance_information)
        .sequence()
        .output(|| DescribeInstanceInformationOutput::builder().build())
        .output(|| info(PingStatus::ConnectionLost))
        .output(|| info(PingStatus::Online))
        .build();
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::Sequential, [&rule]);
    aws::builder::wait_online(&ssm, "platform", "eu-west-1", "i-0abc", FAST).await.unwrap();
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn an_instance_that_never_registers_is_a_bounded_wait_naming_the_causes_mocked_because_moto_lacks_describe_instance_information()
 {
    let rule = mock!(aws_sdk_ssm::Client::describe_instance_information)
        .sequence()
        .output(|| DescribeInstanceInformationOutput::builder().build())
        .repeatedly()
        .build();
    let ssm = mock_client!(aws_sdk_ssm, [&rule]);
    let start = std::time::Instant::now();
    let err = aws::builder::wait_online(&ssm, "platform", "eu-west-1", "i-0abc", FAST).await.unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(5));
    for cause in ["instance profile", "route to the SSM endpoints", "SSM agent"] {
        assert!(err.contains(cause), "{cause} missing: {err}");
    }
}

#[tokio::test]
async fn a_failed_command_reports_its_status_and_output_tail_mocked_because_moto_reports_every_command_as_success() {
    let send = mock!(aws_sdk_ssm::Client::send_command)
        .then_output(|| SendCommandOutput::builder().command(Command::builder().command_id("cmd-1").build()).build());
    let get = mock!(aws_sdk_ssm::Client::get_command_invocation)
        .sequence()
        .output(|| GetCommandInvocationOutput::builder().status(CommandInvocationStatus::InProgress).build())
        .output(|| {
            GetCommandInvocationOutput::builder()
                .status(CommandInvocationStatus::Failed)
                .response_code(3)
                .standard_output_content("installing agent\n")
                .standard_error_content("rpm: package corrupt\n")
                .build()
        })
        .build();
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&send, &get]);
    let err = aws::builder::run_command(&ssm, "platform", "eu-west-1", "i-0abc", "install", &["install".into()], FAST)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Failed") && err.contains("exit code 3") && err.contains("rpm: package corrupt"), "{err}");
}

mod instance_refresh {
    use std::time::Duration;

    use aws::builder::Polling;
    use aws::rollout::{Refresh, Target, follow_instance_refresh, refresh_for};
    use aws_sdk_autoscaling::Client;
    use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
    use aws_sdk_autoscaling::operation::rollback_instance_refresh::RollbackInstanceRefreshOutput;
    use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
    use aws_sdk_autoscaling::types::{InstanceRefresh, InstanceRefreshStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const FAST: Polling = Polling { interval: Duration::from_millis(1), timeout: Duration::from_secs(5) };

    fn target() -> Target {
        Target {
            account: "workflow".into(),
            region: "eu-west-1".into(),
            asg: "goobi-container-hosts".into(),
            image_id: "ami-0new".into(),
        }
    }

    /// An ECS group that pins launch template version 4, moved to 5, refreshed in stages.
    fn staged() -> Refresh {
        let method = provider::RolloutMethod::InstanceRefresh {
            min_healthy_percent: 90,
            scale_in_protected: provider::RefreshProtected::Refresh,
            standby: provider::RefreshStandby::Ignore,
            checkpoints: vec![50, 100],
            checkpoint_delay_seconds: Some(600),
        };
        let change = provider::TemplateChange {
            template_id: "lt-0goobi".into(),
            from_version: 4,
            to_version: 5,
            from_image: "ami-0old".into(),
            changed: true,
            resolves: None,
            group_version: "4".into(),
        };
        refresh_for(&method, &change)
    }

    fn status(s: InstanceRefreshStatus, reason: &str) -> DescribeInstanceRefreshesOutput {
        DescribeInstanceRefreshesOutput::builder()
            .instance_refreshes(
                InstanceRefresh::builder().instance_refresh_id("r-1").status(s).status_reason(reason).build(),
            )
            .build()
    }

    #[tokio::test]
    async fn a_refresh_skips_matching_instances_and_is_followed_to_success_mocked_because_moto_lacks_instance_refresh()
    {
        let start = mock!(Client::start_instance_refresh)
            .match_requests(|r| {
                let p = r.preferences().unwrap();
                let lt = r.desired_configuration().and_then(|d| d.launch_template());
                r.auto_scaling_group_name() == Some("goobi-container-hosts")
                    && p.min_healthy_percentage() == Some(90)
                    && p.skip_matching() == Some(true)
                    && p.scale_in_protected_instances().map(|v| v.as_str()) == Some("Refresh")
                    && p.standby_instances().map(|v| v.as_str()) == Some("Ignore")
                    && p.checkpoint_percentages() == [50, 100]
                    && p.checkpoint_delay() == Some(600)
                    && p.auto_rollback() == Some(true)
                    && lt.and_then(|l| l.launch_template_id()) == Some("lt-0goobi")
                    && lt.and_then(|l| l.version()) == Some("5")
            })
            .then_output(|| StartInstanceRefreshOutput::builder().instance_refresh_id("r-1").build());
        let describe = mock!(Client::describe_instance_refreshes)
            .sequence()
            .output(|| status(InstanceRefreshStatus::InProgress, ""))
            .output(|| status(InstanceRefreshStatus::Successful, ""))
            .build();
        let asc = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&start, &describe]);
        assert_eq!(follow_instance_refresh(&asc, &target(), &staged(), FAST).await.unwrap(), "r-1");
        assert_eq!((start.num_calls(), describe.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn a_failed_refresh_is_rolled_back_and_reported_mocked_because_moto_lacks_instance_refresh() {
        // A group on `$Default`: AWS cannot roll it back, amictl asks for the rollback.
        let mut refresh = staged();
        refresh.preferences = aws_sdk_autoscaling::types::RefreshPreferences::builder().auto_rollback(false).build();
        let start = mock!(Client::start_instance_refresh)
            .then_output(|| StartInstanceRefreshOutput::builder().instance_refresh_id("r-1").build());
        let describe = mock!(Client::describe_instance_refreshes)
            .then_output(|| status(InstanceRefreshStatus::Failed, "instances failed ELB health checks"));
        let rollback = mock!(Client::rollback_instance_refresh)
            .match_requests(|r| r.auto_scaling_group_name() == Some("goobi-container-hosts"))
            .then_output(|| RollbackInstanceRefreshOutput::builder().instance_refresh_id("r-2").build());
        let asc = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&start, &describe, &rollback]);
        let err = follow_instance_refresh(&asc, &target(), &refresh, FAST).await.unwrap_err().to_string();
        assert!(err.contains("ELB health checks") && err.contains("rolled back"), "{err}");
        assert_eq!(rollback.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_refresh_aws_rolls_back_is_followed_to_its_end_mocked_because_moto_lacks_instance_refresh() {
        let start = mock!(Client::start_instance_refresh)
            .then_output(|| StartInstanceRefreshOutput::builder().instance_refresh_id("r-1").build());
        let describe = mock!(Client::describe_instance_refreshes)
            .sequence()
            .output(|| status(InstanceRefreshStatus::Failed, "health checks"))
            .output(|| status(InstanceRefreshStatus::RollbackInProgress, "rolling back"))
            .output(|| status(InstanceRefreshStatus::RollbackSuccessful, "rolled back after health checks"))
            .build();
        let rollback = mock!(Client::rollback_instance_refresh)
            .then_output(|| RollbackInstanceRefreshOutput::builder().instance_refresh_id("r-2").build());
        let asc = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&start, &describe, &rollback]);
        let err = follow_instance_refresh(&asc, &target(), &staged(), FAST).await.unwrap_err().to_string();
        assert!(err.contains("AWS rolled the group back"), "{err}");
        assert_eq!(rollback.num_calls(), 0, "AWS's own rollback is not asked for twice");
        assert_eq!(describe.num_calls(), 3);
    }
}

#[tokio::test]
async fn a_failed_agent_check_is_reported_per_instance_mocked_because_moto_reports_every_command_as_success() {
    use aws_sdk_ssm::Client;
    use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
    use aws_sdk_ssm::operation::send_command::SendCommandOutput;
    use aws_sdk_ssm::types::{Command, CommandInvocationStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    let send = mock!(Client::send_command)
        .match_requests(|r| r.instance_ids() == ["i-ok", "i-sick"])
        .then_output(|| SendCommandOutput::builder().command(Command::builder().command_id("c-1").build()).build());
    let ok = mock!(Client::get_command_invocation)
        .match_requests(|r| r.instance_id() == Some("i-ok"))
        .then_output(|| GetCommandInvocationOutput::builder().status(CommandInvocationStatus::Success).build());
    let sick =
        mock!(Client::get_command_invocation).match_requests(|r| r.instance_id() == Some("i-sick")).then_output(|| {
            GetCommandInvocationOutput::builder()
                .status(CommandInvocationStatus::Failed)
                .response_code(1)
                .standard_error_content("inactive: scan-agent(failed)\n")
                .build()
        });
    let ssm = mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&send, &ok, &sick]);
    let polling = aws::builder::Polling { interval: Duration::from_millis(1), timeout: Duration::from_secs(5) };
    let got =
        aws::fleet::check_services(&ssm, "workflow", "eu-west-1", &["i-ok".into(), "i-sick".into()], "check", polling)
            .await
            .unwrap();
    assert_eq!(got[0], ("i-ok".to_string(), Ok(())));
    assert_eq!(got[1], ("i-sick".to_string(), Err("Failed: inactive: scan-agent(failed)".to_string())));
}

#[tokio::test]
async fn every_page_of_an_images_packages_is_read_mocked_because_motogap_never_paginates() {
    use aws_sdk_imagebuilder::operation::list_image_packages::ListImagePackagesOutput;
    use aws_sdk_imagebuilder::types::ImagePackage;
    let arn = "arn:aws:imagebuilder:eu-west-1:111111111111:image/weco/1.0.0/3";
    let first = mock!(aws_sdk_imagebuilder::Client::list_image_packages)
        .match_requests(move |r| r.image_build_version_arn() == Some(arn) && r.next_token().is_none())
        .then_output(|| {
            ListImagePackagesOutput::builder()
                .image_package_list(
                    ImagePackage::builder().package_name("openssl-libs").package_version("1.0.2k").build(),
                )
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_imagebuilder::Client::list_image_packages)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            ListImagePackagesOutput::builder()
                .image_package_list(ImagePackage::builder().package_name("bash").package_version("4.2.46").build())
                .build()
        });
    let ib = mock_client!(aws_sdk_imagebuilder, RuleMode::MatchAny, [&first, &second]);
    let packages = aws::imagebuilder::packages(&ib, "platform", "eu-west-1", arn).await.unwrap();
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["bash", "openssl-libs"], "both pages, sorted");
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}
