//! The platform account's central parameter, shared with AWS RAM so consumers resolve
//! `resolve:ssm:arn:aws:ssm:<region>:<platform>:parameter/<line>/latest` without a copy of
//! it in their own account.
//!
//! RAM shares are regional, so each region has one share per image line, named
//! [`share_name`]; it is found by name before it is made, and what it lacks (the
//! parameter, a principal) is associated, then read back.

use std::collections::BTreeSet;

use aws_sdk_ram::types::{ResourceShareAssociationStatus, ResourceShareAssociationType, ResourceShareStatus, Tag};

use crate::Aws;
use crate::error::{AwsError, api};

/// The share's name in every region.
pub fn share_name(image: &str) -> String {
    format!("amictl-{image}")
}

/// The ARN of `name` (which starts with `/`) in the owner's account and region.
pub fn parameter_arn(region: &str, account_id: &str, name: &str) -> String {
    format!("arn:aws:ssm:{region}:{account_id}:parameter{name}")
}

/// Makes sure the share named `name` in `region` holds `resource` and every principal
/// (account ids, organisation or OU ARNs); returns the share's ARN.
pub(crate) async fn share(
    aws: &Aws,
    owner: &str,
    region: &str,
    name: &str,
    resource: &str,
    principals: &[String],
) -> Result<String, AwsError> {
    let ram = aws_sdk_ram::Client::new(&aws.config(owner, region).await?);
    aws.limits(owner, region).await.describe.take().await;
    let found = ram
        .get_resource_shares()
        .resource_owner(aws_sdk_ram::types::ResourceOwner::SelfValue)
        .name(name)
        .resource_share_status(ResourceShareStatus::Active)
        .send()
        .await
        .map_err(api("ram:GetResourceShares", owner, region))?;
    let existing = found
        .resource_shares()
        .iter()
        .find(|s| s.name() == Some(name))
        .and_then(|s| s.resource_share_arn())
        .map(str::to_string);
    // Accounts outside the organisation can only be principals of a share that allows it.
    let external = principals.iter().any(|p| !p.starts_with("arn:aws:organizations::"));
    let arn = match existing {
        Some(arn) => {
            let (resources, present) = associations(&ram, owner, region, &arn).await?;
            let resources: Vec<String> =
                [resource.to_string()].into_iter().filter(|r| !resources.contains(r)).collect();
            let missing: Vec<String> = principals.iter().filter(|p| !present.contains(*p)).cloned().collect();
            if !resources.is_empty() || !missing.is_empty() {
                aws.limits(owner, region).await.mutate.take().await;
                ram.associate_resource_share()
                    .resource_share_arn(&arn)
                    .set_resource_arns(Some(resources).filter(|r| !r.is_empty()))
                    .set_principals(Some(missing).filter(|p| !p.is_empty()))
                    .send()
                    .await
                    .map_err(api("ram:AssociateResourceShare", owner, region))?;
            }
            arn
        }
        None => {
            aws.limits(owner, region).await.mutate.take().await;
            let out = ram
                .create_resource_share()
                .name(name)
                .resource_arns(resource)
                .set_principals(Some(principals.to_vec()))
                .allow_external_principals(external)
                .tags(Tag::builder().key("amictl:managed").value("true").build())
                .send()
                .await
                .map_err(api("ram:CreateResourceShare", owner, region))?;
            out.resource_share().and_then(|s| s.resource_share_arn()).unwrap_or_default().to_string()
        }
    };
    let (resources, present) = associations(&ram, owner, region, &arn).await?;
    let absent: Vec<&str> = std::iter::once(resource)
        .filter(|r| !resources.contains(*r))
        .chain(principals.iter().map(String::as_str).filter(|p| !present.contains(*p)))
        .collect();
    if !absent.is_empty() {
        return Err(AwsError::Failed {
            what: format!("RAM share {name}"),
            region: region.into(),
            message: format!("{} not associated after sharing", absent.join(", ")),
        });
    }
    Ok(arn)
}

/// The share's (resources, principals), associated or being associated.
async fn associations(
    ram: &aws_sdk_ram::Client,
    owner: &str,
    region: &str,
    arn: &str,
) -> Result<(BTreeSet<String>, BTreeSet<String>), AwsError> {
    let mut out = (BTreeSet::new(), BTreeSet::new());
    for kind in [ResourceShareAssociationType::Resource, ResourceShareAssociationType::Principal] {
        let mut token = None;
        loop {
            let page = ram
                .get_resource_share_associations()
                .association_type(kind.clone())
                .resource_share_arns(arn)
                .set_next_token(token)
                .send()
                .await
                .map_err(api("ram:GetResourceShareAssociations", owner, region))?;
            for a in page.resource_share_associations() {
                let live = matches!(
                    a.status(),
                    Some(ResourceShareAssociationStatus::Associated | ResourceShareAssociationStatus::Associating)
                );
                if let (true, Some(entity)) = (live, a.associated_entity()) {
                    let set = if kind == ResourceShareAssociationType::Resource { &mut out.0 } else { &mut out.1 };
                    set.insert(entity.to_string());
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}
