//! The provider traits on AWS: [`Ec2Builder`], [`AmiPublisher`], [`Ec2Fleet`],
//! [`AsgRollout`] and [`Inspector`], all over one [`Cloud`] that owns the tokio runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use config::{Builder as BuilderSpec, Component, Config, Image, ParentSpec};
use jiff::Timestamp;
use provider::{
    AdvisorySource, AmiRef, Artifact, ArtifactKind, BuildEvents, BuildFailure, BuildJob, BuildOutput, Builder, Cancel,
    CleanupJob, CleanupReport, Deprecated, Distribution, Finding, FleetSource, GroupFailure, GroupRolled, Host,
    HostQuery, How, Notice, ParentRef, ProviderError, PublishJob, PublishReport, Publisher, RegionFailure,
    RegionPublished, Replacement, Resource, RetireJob, RetireReport, Rollout, RolloutGroup, RolloutMethod, Severity,
    Target,
};

use crate::build::{BuildSpec, Journal, Step, Timing};
use crate::builder::{Cleanup, Polling};
use crate::publish::{PublishRequest, RegionReport};
use crate::remote::RemoteDocument;
use crate::{AccountAccess, Aws, AwsError};

/// The config cannot reach AWS (no region, no platform account): an input error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// One tokio runtime and the clients of every configured account, for a whole run. The
/// platform account is the one without a `role` (amictl runs with its credentials); the
/// home region is `[aws] region`, where images are built.
pub struct Cloud {
    rt: tokio::runtime::Runtime,
    /// Clients per account and region.
    pub aws: Aws,
    /// The platform account's name.
    pub platform: String,
    /// The home region.
    pub region: String,
    /// How long to wait for what.
    pub timing: Timing,
}

impl Cloud {
    /// From the config, with credentials and endpoint from the standard chain.
    pub fn new(cfg: &Config) -> Result<Cloud, SetupError> {
        let region = cfg.aws_region.clone().ok_or_else(|| {
            SetupError(format!(
                "{}: EC2 image lines need [aws] region = \"…\" (where images are built)",
                cfg.file.display()
            ))
        })?;
        let platform = cfg.platform().map(|a| a.name.clone()).ok_or_else(|| {
            SetupError(format!(
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
            .map_err(|e| SetupError(format!("cannot start the async runtime: {e}")))?;
        let aws = rt.block_on(Aws::from_env(&region, accounts));
        let mut timing = Timing::with_poll(Duration::from_millis(cfg.aws_poll_ms));
        timing.online = Duration::from_millis(cfg.aws_ssm_timeout_ms);
        Ok(Cloud { rt, aws, platform, region, timing })
    }

    /// Runs a future to completion on the cloud's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Like [`Cloud::block_on`], but gives up (with [`AwsError::Cancelled`]) once `cancel`
    /// is set; dropping the future drops its in-flight requests.
    pub fn until_cancelled<T>(
        &self,
        cancel: &Cancel,
        f: impl std::future::Future<Output = Result<T, AwsError>>,
    ) -> Result<T, AwsError> {
        let poll = self.timing.poll;
        self.rt.block_on(async {
            tokio::select! {
                r = f => r,
                () = crate::build::cancelled(cancel, poll) => Err(AwsError::Cancelled),
            }
        })
    }

    /// The parent AMI a line would build from now.
    pub fn parent(&self, spec: &ParentSpec) -> Result<ParentRef, AwsError> {
        let p = match spec {
            ParentSpec::SsmParameter { name } => {
                self.block_on(crate::parent::from_ssm_parameter(&self.aws, &self.platform, &self.region, name))?
            }
            ParentSpec::AmiName { owners, pattern } => self.block_on(crate::parent::from_name_filter(
                &self.aws,
                &self.platform,
                &self.region,
                owners,
                pattern,
            ))?,
            other => {
                return Err(AwsError::Failed {
                    what: format!("parent {other}"),
                    region: self.region.clone(),
                    message: "is not an AMI parent; EC2 lines need ssm: or ami: parents".into(),
                });
            }
        };
        Ok(ParentRef { id: p.image_id, name: p.name, created: p.created })
    }

    fn polling(&self) -> Polling {
        Polling { interval: self.timing.poll, timeout: self.timing.online }
    }
}

fn cleanup_report(c: &Cleanup, place: &Target) -> CleanupReport {
    let at = |kind: &str, id: &str| Resource { kind: kind.into(), id: id.into(), place: Some(place.clone()) };
    let mut removed: Vec<Resource> = c.terminated.iter().map(|i| at("instance", i)).collect();
    removed.extend(c.deregistered.iter().map(|i| at("ami", i)));
    removed.extend(c.snapshots_deleted.iter().map(|i| at("snapshot", i)));
    if c.secrets_deleted > 0 {
        removed.push(at("secret", &format!("{} SSM parameter(s)", c.secrets_deleted)));
    }
    CleanupReport { removed }
}

/// Builds an EC2 line's versions: a builder instance from the parent AMI, the components
/// under AWSTOE, an AMI, a test instance from it (see [`crate::build`]).
pub struct Ec2Builder {
    cloud: Arc<Cloud>,
    image: Image,
    components: Vec<Component>,
}

impl Ec2Builder {
    /// The builder of `image` as `cfg` describes it.
    pub fn new(cloud: Arc<Cloud>, cfg: &Config, image: &Image) -> Ec2Builder {
        let components = image.components.iter().filter_map(|c| cfg.components.get(c)).cloned().collect();
        Ec2Builder { cloud, image: image.clone(), components }
    }

    fn spec(&self, job: &BuildJob<'_>, parent_ami: &str) -> Result<BuildSpec, AwsError> {
        let BuilderSpec::Ec2 { instance_type, subnet, security_groups, instance_profile } = &self.image.builder else {
            return Err(AwsError::Failed {
                what: format!("image line {}", self.image.name),
                region: self.cloud.region.clone(),
                message: "does not use the EC2 builder".into(),
            });
        };
        let mut secrets = Vec::new();
        let mut components = Vec::new();
        let mut tests = Vec::new();
        let mut services = BTreeSet::new();
        for c in &self.components {
            let doc = remote_document(job.build_id, c, &mut secrets).map_err(|message| AwsError::Failed {
                what: format!("component {}", c.name),
                region: self.cloud.region.clone(),
                message,
            })?;
            if c.document.phases.iter().any(|p| p.name == "test") {
                tests.push(doc.clone());
            }
            components.push(doc);
            services.extend(c.services.iter().cloned());
        }
        if self.image.snapshot_cleanup {
            // The last build document: nothing a component does after it undoes it, and
            // CreateImage follows it.
            let refs: Vec<&Component> = self.components.iter().collect();
            components.push(RemoteDocument {
                name: config::hygiene::NAME.into(),
                yaml: config::hygiene::document(&refs),
                parameters: Vec::new(),
                secrets: Vec::new(),
            });
        }
        for t in &self.image.tests {
            let name = t.file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "test".into());
            tests.push(RemoteDocument {
                name: format!("test-{name}"),
                yaml: t.document.source.clone(),
                parameters: Vec::new(),
                secrets: Vec::new(),
            });
        }
        Ok(BuildSpec {
            build_id: job.build_id.into(),
            image: job.image.into(),
            version: job.version.into(),
            account: self.cloud.platform.clone(),
            region: self.cloud.region.clone(),
            parent_ami: parent_ami.into(),
            instance_type: instance_type.clone(),
            subnet: subnet.clone(),
            security_groups: security_groups.clone(),
            instance_profile: instance_profile.clone(),
            components,
            tests,
            services: services.into_iter().collect(),
            secrets,
            timing: self.cloud.timing,
            cancel: job.cancel.clone(),
            copy_to: self.copy_regions(),
        })
    }

    fn home(&self) -> Target {
        Target::new(&self.cloud.platform, &self.cloud.region)
    }

    /// The regions besides the home region the line is published in.
    fn copy_regions(&self) -> Vec<String> {
        let regions = self.image.distribute.as_ref().map(|d| d.regions.clone()).unwrap_or_default();
        regions.into_iter().filter(|r| *r != self.cloud.region).collect()
    }
}

/// A component as awstoe on the instance runs it. Secret values go to `secrets` (stored as
/// SecureString parameters for the build's lifetime), never into the document or command.
fn remote_document(
    build_id: &str,
    c: &Component,
    secrets: &mut Vec<(String, String)>,
) -> Result<RemoteDocument, String> {
    let mut parameters = Vec::new();
    let mut secret_refs = Vec::new();
    for (name, value) in &c.parameters {
        let resolved = value.resolve().map_err(|e| format!("parameter {name}: {e}"))?;
        if value.is_secret() {
            let stored = format!("{}/{}/{name}", crate::builder::secret_path(build_id), c.name);
            secrets.push((stored.clone(), resolved));
            secret_refs.push((name.clone(), stored));
        } else {
            parameters.push((name.clone(), resolved));
        }
    }
    Ok(RemoteDocument { name: c.name.clone(), yaml: c.document.source.clone(), parameters, secrets: secret_refs })
}

/// One log file per Run Command step, in order, for `show` and the operator.
fn write_logs(dir: &Path, journal: &Journal) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    for (i, log) in journal.logs.iter().enumerate() {
        let file: String =
            log.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let text = format!("# {} (command {})\n{}\n# stderr\n{}\n", log.name, log.command_id, log.stdout, log.stderr);
        let _ = std::fs::write(dir.join(format!("{:02}-{file}.log", i + 1)), text);
    }
}

impl Builder for Ec2Builder {
    fn kind(&self) -> &'static str {
        "ec2"
    }

    fn current_parent(&self) -> Result<Option<ParentRef>, ProviderError> {
        Ok(Some(self.cloud.parent(&self.image.parent)?))
    }

    fn build(&self, job: &BuildJob<'_>, events: &dyn BuildEvents) -> Result<BuildOutput, BuildFailure> {
        // The plan's parent, exactly; resolved now only when the plan had none.
        let parent = match job.parent {
            Some(p) => p.clone(),
            None => self.cloud.parent(&self.image.parent).map_err(|e| BuildFailure::early(e.into()))?,
        };
        events.parent(&parent);
        let spec = self.spec(job, &parent.id).map_err(|e| BuildFailure::early(e.into()))?;
        let mut journal = Journal::default();
        let result = self.cloud.block_on(crate::build::build(&self.cloud.aws, &spec, &mut journal, &|step| {
            if matches!(step, Step::Launching("tester")) {
                events.testing();
            }
            events.status(&step.to_string());
        }));
        write_logs(job.log_dir, &journal);
        let home = self.home();
        let cleanup = journal.cleanup.as_ref().map(|c| {
            let mut report = cleanup_report(c, &home);
            for (region, c) in &journal.copy_cleanups {
                report.removed.extend(cleanup_report(c, &Target::new(&self.cloud.platform, region)).removed);
            }
            report
        });
        match result {
            Ok(image_id) => Ok(BuildOutput {
                parent,
                packages: journal.packages,
                artifacts: vec![Artifact {
                    kind: ArtifactKind::Ami,
                    path: AmiRef { target: home, image_id }.to_string(),
                    sha256: String::new(),
                    size: 0,
                }],
                tests: journal.tests,
                cleanup: cleanup.unwrap_or_default(),
                components: Vec::new(),
            }),
            Err(e) => {
                Err(BuildFailure { error: e.into(), parent: Some(Box::new(parent)), tests: journal.tests, cleanup })
            }
        }
    }

    /// The build's resources in its home region, and the copies it may have started in the
    /// others.
    fn clean_up(&self, job: &CleanupJob<'_>) -> Result<CleanupReport, ProviderError> {
        let mut report = CleanupReport::default();
        for region in std::iter::once(self.cloud.region.clone()).chain(self.copy_regions()) {
            let c = self.cloud.block_on(crate::builder::cleanup(
                &self.cloud.aws,
                &self.cloud.platform,
                &region,
                job.build_id,
                None,
            ))?;
            report.removed.extend(cleanup_report(&c, &Target::new(&self.cloud.platform, &region)).removed);
        }
        Ok(report)
    }

    /// Retires the version's AMIs in every account and region, with proof that nothing
    /// uses them (see [`crate::retire`]).
    fn retire(&self, job: &RetireJob<'_>) -> Result<RetireReport, ProviderError> {
        Ok(self.cloud.block_on(crate::retire::retire(&self.cloud.aws, job.distributions))?)
    }
}

/// Publishes an EC2 line's versions: copies, launch permissions, owned copies, SSM pointers
/// (see [`crate::publish`]), and deprecates superseded AMIs.
pub struct AmiPublisher {
    cloud: Arc<Cloud>,
    distribution: config::Distribution,
}

impl AmiPublisher {
    /// The publisher of `image` as its `distribute` describes it.
    pub fn new(cloud: Arc<Cloud>, image: &Image) -> AmiPublisher {
        AmiPublisher { cloud, distribution: image.distribute.clone().unwrap_or_default() }
    }
}

fn region_published(platform: &str, r: RegionReport) -> RegionPublished {
    let mut distributions = vec![Distribution {
        target: Target::new(platform, &r.region),
        image_id: r.image_id.clone(),
        how: How::Owner,
        parameters: r.parameters,
    }];
    distributions.extend(r.consumers.into_iter().map(|c| Distribution {
        target: Target::new(c.account, &r.region),
        image_id: c.image_id,
        how: How::parse(&c.how).unwrap_or(How::Shared),
        parameters: c.parameters,
    }));
    RegionPublished {
        region: r.region,
        image_id: r.image_id,
        copied: r.copied,
        distributions,
        resource_share: r.resource_share,
    }
}

impl Publisher for AmiPublisher {
    fn publish(&self, job: &PublishJob<'_>) -> PublishReport {
        let cloud = &self.cloud;
        let mut regions = vec![job.source.target.region.clone()];
        for t in job.targets {
            if !regions.contains(&t.region) {
                regions.push(t.region.clone());
            }
        }
        let mut consumers: Vec<String> = Vec::new();
        for t in job.targets.iter().filter(|t| t.account != cloud.platform) {
            if !consumers.contains(&t.account) {
                consumers.push(t.account.clone());
            }
        }
        let req = PublishRequest {
            image: job.image.into(),
            version: job.version.into(),
            build_id: job.build_id.into(),
            owner: cloud.platform.clone(),
            source_region: job.source.target.region.clone(),
            source_image_id: job.source.image_id.clone(),
            regions,
            consumers,
            copy: self.distribution.copy,
            ssm_prefix: self.distribution.ssm_parameter.clone(),
            organizations: [&self.distribution.organizations[..], &self.distribution.organizational_units[..]].concat(),
            share_parameter: self.distribution.share_parameter,
            tags: self.distribution.tags.clone(),
            wait: cloud.timing.waiter(),
        };
        let report = cloud.until_cancelled(job.cancel, async { Ok(crate::publish::publish(&cloud.aws, &req).await) });
        match report {
            Ok(r) => PublishReport {
                done: r.done.into_iter().map(|d| region_published(&cloud.platform, d)).collect(),
                failed: r.failed.into_iter().map(|(region, e)| RegionFailure { region, error: e.into() }).collect(),
            },
            Err(e) => PublishReport {
                done: Vec::new(),
                failed: vec![RegionFailure { region: job.source.target.region.clone(), error: e.into() }],
            },
        }
    }

    fn deprecate(&self, ami: &AmiRef, at: Timestamp) -> Result<Deprecated, ProviderError> {
        // EC2 refuses a deprecation time in the past: such a version is deprecated now.
        let soonest = Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let at = at.max(soonest);
        let when = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.as_second()).unwrap_or(0));
        let (account, region) = (&ami.target.account, &ami.target.region);
        let done = self.cloud.block_on(async {
            let ec2 = self.cloud.aws.ec2(account, region).await?;
            crate::publish::deprecate(&ec2, account, region, &ami.image_id, when).await
        });
        match done {
            Ok(Some(recorded)) => Ok(Deprecated::Set(recorded.parse().unwrap_or(at))),
            Ok(None) => Ok(Deprecated::Gone),
            // An account no longer in the config cannot be reached, ever: nothing to do.
            Err(AwsError::UnknownAccount(_)) => Ok(Deprecated::Gone),
            Err(e) => Err(e.into()),
        }
    }
}

/// Consumers' hosts from their accounts, through their roles, with SSM's view of each
/// agent and, when asked, the agents' own check through Run Command.
pub struct Ec2Fleet {
    cloud: Arc<Cloud>,
}

impl Ec2Fleet {
    /// A fleet source over `cloud`.
    pub fn new(cloud: Arc<Cloud>) -> Ec2Fleet {
        Ec2Fleet { cloud }
    }
}

impl FleetSource for Ec2Fleet {
    fn hosts(&self, q: &HostQuery<'_>) -> Result<Vec<Host>, ProviderError> {
        let cloud = &self.cloud;
        let regions = if q.regions.is_empty() { vec![cloud.region.clone()] } else { q.regions.to_vec() };
        let mut hosts = Vec::new();
        for region in regions {
            let sel = crate::fleet::Selector {
                consumer: q.consumer.into(),
                account: q.account.into(),
                region: region.clone(),
                selection: q.selection.clone(),
            };
            let mut found = cloud.block_on(crate::fleet::scan(&cloud.aws, &sel))?;
            if let Some(check) = q.agents {
                let online: Vec<String> = found
                    .iter()
                    .filter(|h| h.state == "running" && h.agent.as_ref().is_some_and(|a| a.ping == "Online"))
                    .map(|h| h.instance_id.to_string())
                    .collect();
                if !online.is_empty() {
                    let script = crate::remote::services_script(&check.services);
                    let polling = Polling { interval: cloud.timing.poll, timeout: Duration::from_secs(300) };
                    let results = cloud.block_on(async {
                        let ssm = cloud.aws.ssm(q.account, &region).await?;
                        crate::fleet::check_services(&ssm, q.account, &region, &online, &script, polling).await
                    })?;
                    for (id, r) in results {
                        if let Some(h) = found.iter_mut().find(|h| h.instance_id == id) {
                            h.services = Some(r);
                        }
                    }
                }
            }
            hosts.extend(found);
        }
        Ok(hosts)
    }
}

/// Moves consumers' auto scaling groups (see [`crate::rollout`]) and tells owners on SNS.
pub struct AsgRollout {
    cloud: Arc<Cloud>,
}

impl AsgRollout {
    /// A rollout over `cloud`.
    pub fn new(cloud: Arc<Cloud>) -> AsgRollout {
        AsgRollout { cloud }
    }
}

impl Rollout for AsgRollout {
    fn roll_group(
        &self,
        group: &RolloutGroup,
        method: &RolloutMethod,
        cancel: &Cancel,
    ) -> Result<GroupRolled, GroupFailure> {
        let cloud = &self.cloud;
        let t = crate::rollout::Target {
            account: group.target.account.clone(),
            region: group.target.region.clone(),
            asg: group.asg.clone(),
            image_id: group.image_id.clone(),
        };
        let failed = |error: AwsError, template, restored| GroupFailure { error: error.into(), template, restored };
        // Not cancellable: stopping between setting the new default version and recording it
        // would leave a template nobody restores. The waits below are.
        let refresh = matches!(method, RolloutMethod::InstanceRefresh { .. });
        let change = cloud
            .block_on(crate::rollout::update_launch_template(&cloud.aws, &t, !refresh))
            .map_err(|e| failed(e, None, None))?;
        let polling = cloud.polling();
        let replaced: Result<Option<Replacement>, AwsError> = match method {
            RolloutMethod::RollingReplace { batch, protected, drain_timeout_seconds } => {
                let how = crate::rollout::Replace {
                    batch: *batch,
                    protected: *protected,
                    drain_timeout: std::time::Duration::from_secs(*drain_timeout_seconds),
                };
                cloud.until_cancelled(cancel, crate::rollout::rolling_replace(&cloud.aws, &t, how, polling)).map(Some)
            }
            RolloutMethod::InstanceRefresh { .. } => cloud
                .until_cancelled(cancel, crate::rollout::instance_refresh(&cloud.aws, &t, method, &change, polling))
                .map(|id| Some(Replacement { instance_refresh: Some(id), ..Replacement::default() })),
            RolloutMethod::LaunchTemplate | RolloutMethod::Notify { .. } | RolloutMethod::Pinned { .. } => Ok(None),
        };
        match replaced {
            Ok(replacement) => Ok(GroupRolled { template: change, replacement }),
            Err(e) => {
                // New launches must not keep using a version whose rollout failed.
                let restored = change.changed.then(|| {
                    cloud.block_on(crate::rollout::restore(&cloud.aws, &t, &change)).map_err(|r| r.to_string())
                });
                Err(failed(e, Some(Box::new(change)), restored))
            }
        }
    }

    fn notify(&self, notice: &Notice) -> Result<String, ProviderError> {
        let cloud = &self.cloud;
        Ok(cloud.block_on(crate::rollout::notify(
            &cloud.aws,
            &notice.account,
            &notice.topic,
            &notice.subject,
            &notice.message,
        ))?)
    }
}

/// Amazon Inspector2 findings on instances from a version's AMIs, in the accounts that
/// run them.
pub struct Inspector {
    cloud: Arc<Cloud>,
}

impl Inspector {
    /// An advisory source over `cloud`.
    pub fn new(cloud: Arc<Cloud>) -> Inspector {
        Inspector { cloud }
    }
}

impl AdvisorySource for Inspector {
    fn findings(&self, amis: &[AmiRef]) -> Result<Vec<Finding>, ProviderError> {
        let mut places: BTreeMap<&Target, Vec<String>> = BTreeMap::new();
        for a in amis {
            places.entry(&a.target).or_default().push(a.image_id.clone());
        }
        let mut out = Vec::new();
        for (place, ids) in places {
            let found = self.cloud.block_on(crate::inspector::findings(
                &self.cloud.aws,
                &place.account,
                &place.region,
                &ids,
            ))?;
            out.extend(found.into_iter().map(|f| Finding {
                severity: Severity::parse(&f.severity),
                cves: vec![f.vulnerability.clone()],
                advisory: f.vulnerability,
                package: f.package,
                installed: f.installed,
                fixed: f.fixed,
                issued: f.published,
            }));
        }
        Ok(out)
    }
}
