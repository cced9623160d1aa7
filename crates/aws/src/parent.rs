//! The newest parent AMI: from an SSM public parameter (the way AWS publishes "latest
//! Amazon Linux 2"), or from a name filter and owners, newest first.

use aws_sdk_ec2::types::Filter;

use crate::Aws;
use crate::error::{AwsError, api};

/// A parent image as lineage records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParentAmi {
    pub image_id: String,
    pub name: String,
    /// The AMI's creation date as EC2 reports it (RFC 3339).
    pub created: String,
}

/// Resolves `parameter` (e.g. `/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2`)
/// and describes the AMI it points at.
pub async fn from_ssm_parameter(
    aws: &Aws,
    account: &str,
    region: &str,
    parameter: &str,
) -> Result<ParentAmi, AwsError> {
    let ssm = aws.ssm(account, region).await?;
    aws.limits(account, region).await.describe.take().await;
    let out = ssm.get_parameter().name(parameter).send().await.map_err(|e| {
        let service = e.as_service_error();
        if service.is_some_and(|s| s.is_parameter_not_found()) {
            AwsError::NotFound {
                what: format!("SSM parameter {parameter}"),
                account: account.into(),
                region: region.into(),
            }
        } else {
            api("ssm:GetParameter", account, region)(e)
        }
    })?;
    let image_id = out.parameter().and_then(|p| p.value()).unwrap_or_default().to_string();
    if !image_id.starts_with("ami-") {
        return Err(AwsError::Failed {
            what: format!("SSM parameter {parameter}"),
            region: region.into(),
            message: format!("value `{image_id}` is not an AMI id"),
        });
    }
    describe(aws, account, region, &image_id).await
}

/// The newest AMI named like `pattern` (EC2 wildcards) owned by `owners`. Newest means the
/// latest creation date, then the greatest name (names embed the build date; ties on
/// creation date happen in emulators and in bulk-registered catalogues).
pub async fn from_name_filter(
    aws: &Aws,
    account: &str,
    region: &str,
    owners: &[String],
    pattern: &str,
) -> Result<ParentAmi, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    aws.limits(account, region).await.describe.take().await;
    let out = ec2
        .describe_images()
        .set_owners(Some(owners.to_vec()))
        .filters(Filter::builder().name("name").values(pattern).build())
        .filters(Filter::builder().name("state").values("available").build())
        .send()
        .await
        .map_err(api("ec2:DescribeImages", account, region))?;
    let newest = out
        .images()
        .iter()
        .max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())))
        .ok_or_else(|| AwsError::NotFound {
        what: format!("an AMI named {pattern} owned by {}", owners.join(",")),
        account: account.into(),
        region: region.into(),
    })?;
    Ok(ParentAmi {
        image_id: newest.image_id().unwrap_or_default().into(),
        name: newest.name().unwrap_or_default().into(),
        created: newest.creation_date().unwrap_or_default().into(),
    })
}

/// Describes one AMI; absent is a precise error.
pub async fn describe(aws: &Aws, account: &str, region: &str, image_id: &str) -> Result<ParentAmi, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    aws.limits(account, region).await.describe.take().await;
    let out =
        ec2.describe_images().image_ids(image_id).send().await.map_err(api("ec2:DescribeImages", account, region))?;
    let image = out.images().first().ok_or_else(|| AwsError::NotFound {
        what: format!("AMI {image_id}"),
        account: account.into(),
        region: region.into(),
    })?;
    Ok(ParentAmi {
        image_id: image_id.into(),
        name: image.name().unwrap_or_default().into(),
        created: image.creation_date().unwrap_or_default().into(),
    })
}
