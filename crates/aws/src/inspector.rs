//! Amazon Inspector2 as an advisory source: package findings on instances launched from a
//! version's AMIs, in the accounts that run them. Inspector knows what is installed on a
//! running host (including what changed after boot), so it complements the feeds, which
//! judge the manifest recorded at build time.

use aws_sdk_inspector2::types::{FilterCriteria, StringComparison, StringFilter};

use crate::Aws;
use crate::error::{AwsError, api};

/// One vulnerable package Inspector reports, with the fix when there is one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageFinding {
    /// The CVE (or other vulnerability id).
    pub vulnerability: String,
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, `INFORMATIONAL`, `UNTRIAGED`.
    pub severity: String,
    pub package: String,
    /// `[epoch:]version-release` as installed.
    pub installed: String,
    /// `NotAvailable` when there is no fix.
    pub fixed: Option<String>,
    /// RFC 3339.
    pub first_observed: String,
    /// When the vulnerability was published (the vendor's date; first observed when absent),
    /// RFC 3339: "fixed since built" is judged by it, as feeds are by their issue date.
    pub published: String,
    pub instance: String,
}

/// Active package-vulnerability findings on instances from `amis` in `account`/`region`.
pub async fn findings(
    aws: &Aws,
    account: &str,
    region: &str,
    amis: &[String],
) -> Result<Vec<PackageFinding>, AwsError> {
    if amis.is_empty() {
        return Ok(Vec::new());
    }
    let client = aws_sdk_inspector2::Client::new(&aws.config(account, region).await?);
    let equals = |value: &str| {
        StringFilter::builder()
            .comparison(StringComparison::Equals)
            .value(value)
            .build()
            .map_err(|e| api("inspector2:ListFindings", account, region)(e.to_string()))
    };
    let mut criteria =
        FilterCriteria::builder().finding_status(equals("ACTIVE")?).finding_type(equals("PACKAGE_VULNERABILITY")?);
    for ami in amis {
        criteria = criteria.ec2_instance_image_id(equals(ami)?);
    }
    let mut out = Vec::new();
    let mut pages = client.list_findings().filter_criteria(criteria.build()).into_paginator().send();
    while let Some(page) = pages.next().await {
        aws.limits(account, region).await.describe.take().await;
        let page = page.map_err(api("inspector2:ListFindings", account, region))?;
        for f in page.findings() {
            let Some(details) = f.package_vulnerability_details() else { continue };
            let instance = f.resources().first().map(|r| r.id().to_string()).unwrap_or_default();
            for p in details.vulnerable_packages() {
                let mut installed = String::new();
                if p.epoch() > 0 {
                    installed.push_str(&format!("{}:", p.epoch()));
                }
                installed.push_str(p.version());
                if let Some(r) = p.release().filter(|r| !r.is_empty()) {
                    installed.push('-');
                    installed.push_str(r);
                }
                out.push(PackageFinding {
                    vulnerability: details.vulnerability_id().to_string(),
                    severity: f.severity().as_str().to_string(),
                    package: match p.arch() {
                        Some(a) => format!("{}.{a}", p.name()),
                        None => p.name().to_string(),
                    },
                    installed,
                    fixed: p.fixed_in_version().filter(|v| *v != "NotAvailable").map(str::to_string),
                    first_observed: f
                        .first_observed_at()
                        .fmt(aws_sdk_inspector2::primitives::DateTimeFormat::DateTime)
                        .unwrap_or_default(),
                    published: details
                        .vendor_created_at()
                        .unwrap_or(f.first_observed_at())
                        .fmt(aws_sdk_inspector2::primitives::DateTimeFormat::DateTime)
                        .unwrap_or_default(),
                    instance: instance.clone(),
                });
            }
        }
    }
    Ok(out)
}
