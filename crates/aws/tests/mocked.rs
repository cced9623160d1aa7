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
    let ec2 = mock_client!(aws_sdk_ec2, [&rule]);
    aws::publish::deprecate(&ec2, "platform", "eu-west-1", "ami-0123456789abcdef0", at).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
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
