//! The AWS side of `plan` and `apply`: parent AMIs, EC2 builds, publishing, deprecation
//! and cleanup — config and catalog in, `aws` crate calls out.
//!
//! One tokio runtime serves a whole run; clients and assumed-role credentials are cached
//! in [`aws::Aws`]. The platform account is the one without a `role` (amictl runs with its
//! credentials); the home region is `[aws] region`, where images are built.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws::build::{BuildSpec, Journal, Step, Timing};
use aws::publish::{PublishRequest, RegionReport};
use aws::remote::RemoteDocument;
use aws::{AccountAccess, Aws};
use config::{Config, Image, ParentSpec};

pub struct Cloud {
    rt: tokio::runtime::Runtime,
    pub aws: Aws,
    /// The platform account's name.
    pub platform: String,
    pub region: String,
    pub timing: Timing,
}

/// Whether any image line needs AWS.
pub fn needed(cfg: &Config) -> bool {
    cfg.images.values().any(|i| matches!(i.builder, config::Builder::Ec2 { .. }))
}

impl Cloud {
    pub fn new(cfg: &Config) -> Result<Cloud> {
        let region = cfg.aws_region.clone().ok_or_else(|| {
            crate::UsageError(format!(
                "{}: EC2 image lines need [aws] region = \"…\" (where images are built)",
                cfg.file.display()
            ))
        })?;
        let platform = cfg.accounts.values().find(|a| a.role.is_none()).map(|a| a.name.clone()).ok_or_else(|| {
            crate::UsageError(format!(
                "{}: no platform account: one [accounts.*] must have no `role` (amictl runs with its credentials)",
                cfg.file.display()
            ))
        })?;
        let accounts = cfg
            .accounts
            .values()
            .map(|a| AccountAccess {
                name: a.name.clone(),
                id: a.id.clone(),
                role: a.role.clone(),
                external_id: a.external_id.clone(),
            })
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let aws = rt.block_on(Aws::from_env(&region, accounts));
        let mut timing = Timing::with_poll(Duration::from_millis(cfg.aws_poll_ms));
        timing.online = Duration::from_millis(cfg.aws_ssm_timeout_ms);
        Ok(Cloud { rt, aws, platform, region, timing })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The parent AMI an image line would build from now.
    pub fn parent(&self, spec: &ParentSpec) -> Result<aws::parent::ParentAmi> {
        match spec {
            ParentSpec::SsmParameter { name } => Ok(self
                .block_on(aws::parent::from_ssm_parameter(&self.aws, &self.platform, &self.region, name))
                .with_context(|| format!("resolving the parent {spec}"))?),
            ParentSpec::AmiName { owners, pattern } => Ok(self
                .block_on(aws::parent::from_name_filter(&self.aws, &self.platform, &self.region, owners, pattern))
                .with_context(|| format!("resolving the parent {spec}"))?),
            other => Err(anyhow!("{other} is not an AMI parent")),
        }
    }

    /// Builds and tests one version on EC2.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        cfg: &Config,
        image: &Image,
        build_id: &str,
        version: &str,
        parent_ami: &str,
        journal: &mut Journal,
        step: &dyn Fn(Step),
    ) -> Result<String> {
        let config::Builder::Ec2 { instance_type, subnet, security_groups, instance_profile } = &image.builder else {
            return Err(anyhow!("image {} does not use the EC2 builder", image.name));
        };
        let mut secrets = Vec::new();
        let mut components = Vec::new();
        let mut tests = Vec::new();
        let mut services = BTreeSet::new();
        for name in &image.components {
            let c = &cfg.components[name];
            let doc = remote_document(build_id, c, &mut secrets)?;
            if c.document.phases.iter().any(|p| p.name == "test") {
                tests.push(doc.clone());
            }
            components.push(doc);
            services.extend(c.services.iter().cloned());
        }
        for t in &image.tests {
            let name = t.file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "test".into());
            tests.push(RemoteDocument {
                name: format!("test-{name}"),
                yaml: t.document.source.clone(),
                parameters: Vec::new(),
                secrets: Vec::new(),
            });
        }
        let spec = BuildSpec {
            build_id: build_id.into(),
            image: image.name.clone(),
            version: version.into(),
            account: self.platform.clone(),
            region: self.region.clone(),
            parent_ami: parent_ami.into(),
            instance_type: instance_type.clone(),
            subnet: subnet.clone(),
            security_groups: security_groups.clone(),
            instance_profile: instance_profile.clone(),
            components,
            tests,
            services: services.into_iter().collect(),
            secrets,
            timing: self.timing,
        };
        Ok(self.block_on(aws::build::build(&self.aws, &spec, journal, step))?)
    }

    /// Removes what an interrupted build left: instances, a half-made AMI, secrets.
    pub fn cleanup(&self, build_id: &str) -> Result<aws::builder::Cleanup> {
        Ok(self.block_on(aws::builder::cleanup(&self.aws, &self.platform, &self.region, build_id, None))?)
    }

    /// Publishes a built AMI to every configured region and consumer account.
    pub fn publish(
        &self,
        image: &Image,
        version: &str,
        build_id: &str,
        source_image_id: &str,
    ) -> aws::publish::PublishReport {
        let d = image.distribute.clone().unwrap_or(config::Distribution {
            accounts: Vec::new(),
            regions: Vec::new(),
            ssm_parameter: None,
            copy: false,
        });
        let mut regions = d.regions.clone();
        if !regions.contains(&self.region) {
            regions.insert(0, self.region.clone());
        }
        let req = PublishRequest {
            image: image.name.clone(),
            version: version.into(),
            build_id: build_id.into(),
            owner: self.platform.clone(),
            source_region: self.region.clone(),
            source_image_id: source_image_id.into(),
            regions,
            consumers: d.accounts.clone(),
            copy: d.copy,
            ssm_prefix: d.ssm_parameter.clone(),
            wait: self.timing.waiter(),
        };
        self.block_on(aws::publish::publish(&self.aws, &req))
    }

    /// Marks an AMI deprecated at `at` in the account that owns it.
    pub fn deprecate(&self, account: &str, region: &str, image_id: &str, at: std::time::SystemTime) -> Result<()> {
        self.block_on(async {
            let ec2 = self.aws.ec2(account, region).await?;
            aws::publish::deprecate(&ec2, account, region, image_id, at).await
        })?;
        Ok(())
    }
}

/// Where an image line must be published: `account/region` for every consumer account
/// and region (the platform's own regions when it has no consumers).
pub fn targets(image: &Image, platform: Option<&str>) -> BTreeSet<String> {
    let Some(d) = &image.distribute else { return BTreeSet::new() };
    let accounts: Vec<&str> = if d.accounts.is_empty() {
        platform.into_iter().collect()
    } else {
        d.accounts.iter().map(String::as_str).collect()
    };
    accounts.iter().flat_map(|a| d.regions.iter().map(move |r| format!("{a}/{r}"))).collect()
}

/// The catalog rows for one region's result: the platform's own AMI, then each consumer's.
pub fn distribution_rows(platform: &str, r: &RegionReport, at: &str) -> Vec<catalog::Distribution> {
    let mut rows = vec![catalog::Distribution {
        account: platform.into(),
        region: r.region.clone(),
        image_id: r.image_id.clone(),
        how: "owner".into(),
        parameters: String::new(),
        at: at.into(),
    }];
    rows.extend(r.consumers.iter().map(|c| catalog::Distribution {
        account: c.account.clone(),
        region: r.region.clone(),
        image_id: c.image_id.clone(),
        how: c.how.clone(),
        parameters: c.parameters.join(","),
        at: at.into(),
    }));
    rows
}

/// A component as awstoe on the instance runs it. Secret values go to `secrets` (stored as
/// SecureString parameters for the build's lifetime), never into the document or command.
fn remote_document(
    build_id: &str,
    c: &config::Component,
    secrets: &mut Vec<(String, String)>,
) -> Result<RemoteDocument> {
    let mut parameters = Vec::new();
    let mut secret_refs = Vec::new();
    for (name, value) in &c.parameters {
        let resolved = value.resolve().map_err(|e| anyhow!("component {} parameter {name}: {e}", c.name))?;
        if value.is_secret() {
            let stored = format!("{}/{}/{name}", aws::builder::secret_path(build_id), c.name);
            secrets.push((stored.clone(), resolved));
            secret_refs.push((name.clone(), stored));
        } else {
            parameters.push((name.clone(), resolved));
        }
    }
    Ok(RemoteDocument { name: c.name.clone(), yaml: c.document.source.clone(), parameters, secrets: secret_refs })
}
