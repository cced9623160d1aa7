//! Encrypted AMIs: can the consumers use the key, and can the copies be made?
//!
//! Sharing an encrypted AMI shares nothing unless each consumer account may use its KMS
//! key, and the AWS managed key (`aws/ebs`) can never be used by another account. A copy to
//! another region needs a key there; with a multi-Region key that is the replica of the
//! same key. The publisher asks these questions before it copies or shares anything, so a
//! refused AMI leaves no half-distributed state behind.

use std::collections::BTreeSet;

use crate::Aws;
use crate::error::{AwsError, api};

/// What the publisher needs to know about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub arn: String,
    /// Managed by AWS (`aws/ebs`): never usable by another account.
    pub aws_managed: bool,
    pub multi_region: bool,
    /// Accounts the key policy or a grant lets decrypt.
    pub accounts: BTreeSet<String>,
}

/// Whether an AMI encrypted with `key` may go to `consumers` (name, account id) and, when
/// `crosses_regions`, be copied to other regions.
pub fn judge(key: &KeyFacts, consumers: &[(String, String)], crosses_regions: bool) -> Result<(), String> {
    if key.aws_managed && !consumers.is_empty() {
        return Err(format!(
            "the AMI is encrypted with the AWS managed key {}, which other accounts cannot use; rebuild it encrypted with a customer managed key and grant the consumer accounts",
            key.arn
        ));
    }
    if crosses_regions && !key.multi_region && !key.aws_managed {
        return Err(format!(
            "the AMI is encrypted with the single-Region key {}; copies to other regions need a multi-Region key (mrk-…) replicated there",
            key.arn
        ));
    }
    let missing: Vec<String> = consumers
        .iter()
        .filter(|(_, id)| !key.accounts.contains(id))
        .map(|(name, id)| format!("{name} ({id})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "key {} does not let {} decrypt; add them to the key policy (kms:Decrypt, kms:DescribeKey, kms:CreateGrant, kms:ReEncrypt*, kms:GenerateDataKey*) or create grants",
            key.arn,
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The same key's ARN in another region (multi-Region keys keep their id).
pub fn replica_arn(arn: &str, region: &str) -> String {
    let mut parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6 {
        parts[3] = region;
    }
    parts.join(":")
}

/// Account ids a policy principal names: `123456789012`, `arn:aws:iam::123456789012:root`,
/// role and user ARNs. `*` names nobody in particular and is not counted.
fn principal_accounts(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(s) => {
            let id = if s.starts_with("arn:") { s.split(':').nth(4).unwrap_or_default() } else { s.as_str() };
            if id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()) {
                out.insert(id.to_string());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| principal_accounts(i, out)),
        serde_json::Value::Object(map) => {
            if let Some(aws) = map.get("AWS") {
                principal_accounts(aws, out);
            }
        }
        _ => {}
    }
}

/// Accounts a key policy allows to decrypt.
pub fn policy_accounts(policy: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else { return out };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(s) => s.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    for s in statements {
        if s["Effect"] != "Allow" {
            continue;
        }
        let actions: Vec<String> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        if actions.iter().any(|a| a == "kms:*" || a == "kms:Decrypt" || a == "*") {
            principal_accounts(&s["Principal"], &mut out);
        }
    }
    out
}

/// Reads a key's facts in the account and region that hold it.
pub async fn facts(aws: &Aws, account: &str, region: &str, key_id: &str) -> Result<KeyFacts, AwsError> {
    let kms = aws_sdk_kms::Client::new(&aws.config(account, region).await?);
    let described = kms.describe_key().key_id(key_id).send().await.map_err(api("kms:DescribeKey", account, region))?;
    let meta = described.key_metadata().ok_or_else(|| AwsError::NotFound {
        what: format!("KMS key {key_id}"),
        account: account.into(),
        region: region.into(),
    })?;
    let arn = meta.arn().unwrap_or(key_id).to_string();
    let aws_managed = meta.key_manager() == Some(&aws_sdk_kms::types::KeyManagerType::Aws);
    let mut accounts = BTreeSet::new();
    if !aws_managed {
        let policy = kms.get_key_policy().key_id(key_id).policy_name("default").send().await.map_err(api(
            "kms:GetKeyPolicy",
            account,
            region,
        ))?;
        accounts = policy_accounts(policy.policy().unwrap_or_default());
        let grants = kms.list_grants().key_id(key_id).send().await.map_err(api("kms:ListGrants", account, region))?;
        for g in grants.grants() {
            if g.operations().iter().any(|o| o.as_str() == "Decrypt")
                && let Some(p) = g.grantee_principal()
            {
                principal_accounts(&serde_json::Value::String(p.to_string()), &mut accounts);
            }
        }
    }
    Ok(KeyFacts { arn, aws_managed, multi_region: meta.multi_region().unwrap_or(false), accounts })
}

/// The KMS keys of an AMI's encrypted snapshots (none for an unencrypted AMI).
pub async fn image_keys(aws: &Aws, account: &str, region: &str, image_id: &str) -> Result<BTreeSet<String>, AwsError> {
    let ec2 = aws.ec2(account, region).await?;
    aws.limits(account, region).await.describe.take().await;
    let images =
        ec2.describe_images().image_ids(image_id).send().await.map_err(api("ec2:DescribeImages", account, region))?;
    let mut keys = BTreeSet::new();
    for image in images.images() {
        for b in image.block_device_mappings() {
            let Some(ebs) = b.ebs() else { continue };
            if ebs.encrypted() == Some(true) {
                match ebs.kms_key_id() {
                    Some(k) => {
                        keys.insert(k.to_string());
                    }
                    // The mapping says encrypted without a key: ask the snapshot.
                    None => {
                        if let Some(snapshot) = ebs.snapshot_id() {
                            let s = ec2.describe_snapshots().snapshot_ids(snapshot).send().await.map_err(api(
                                "ec2:DescribeSnapshots",
                                account,
                                region,
                            ))?;
                            keys.extend(s.snapshots().iter().filter_map(|s| s.kms_key_id()).map(str::to_string));
                        }
                    }
                }
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(aws_managed: bool, multi_region: bool, accounts: &[&str]) -> KeyFacts {
        KeyFacts {
            arn: "arn:aws:kms:eu-west-1:111111111111:key/mrk-1".into(),
            aws_managed,
            multi_region,
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn consumers() -> Vec<(String, String)> {
        vec![("workflow".into(), "222222222222".into()), ("digirati".into(), "333333333333".into())]
    }

    #[test]
    fn the_aws_managed_key_is_refused_for_sharing() {
        let e = judge(&key(true, false, &[]), &consumers(), false).unwrap_err();
        assert!(e.contains("AWS managed key"), "{e}");
        assert!(judge(&key(true, false, &[]), &[], false).is_ok(), "no consumers: nothing to share");
    }

    #[test]
    fn consumers_the_key_does_not_allow_are_named() {
        let e = judge(&key(false, true, &["222222222222"]), &consumers(), true).unwrap_err();
        assert!(e.contains("digirati (333333333333)") && !e.contains("workflow"), "{e}");
        assert!(judge(&key(false, true, &["222222222222", "333333333333"]), &consumers(), true).is_ok());
    }

    #[test]
    fn a_single_region_key_cannot_follow_copies_to_other_regions() {
        let k = key(false, false, &["222222222222", "333333333333"]);
        assert!(judge(&k, &consumers(), false).is_ok());
        assert!(judge(&k, &consumers(), true).unwrap_err().contains("multi-Region"));
        assert_eq!(
            replica_arn("arn:aws:kms:eu-west-1:111111111111:key/mrk-1", "eu-west-2"),
            "arn:aws:kms:eu-west-2:111111111111:key/mrk-1"
        );
    }

    #[test]
    fn key_policies_yield_the_accounts_allowed_to_decrypt() {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"kms:*","Resource":"*"},
            {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::222222222222:root","333333333333"]},"Action":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"},
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444444444444:role/x"},"Action":"kms:Encrypt","Resource":"*"},
            {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::555555555555:root"},"Action":"kms:*","Resource":"*"},
            {"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#;
        assert_eq!(
            policy_accounts(policy).into_iter().collect::<Vec<_>>(),
            ["111111111111", "222222222222", "333333333333"]
        );
        assert!(policy_accounts("not json").is_empty());
    }
}
