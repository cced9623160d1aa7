//! EC2 Image Builder pipelines as a builder: a build is one pipeline execution.
//!
//! amictl is the schedule: its plan decides when an execution starts (age, parent moved,
//! advisories), and a build is then `StartImagePipelineExecution` with the build id as the
//! `clientToken` — so a start that is retried, or repeated by a run after one that died,
//! never starts a second execution — followed with `GetImage` through BUILDING, TESTING and
//! DISTRIBUTING to AVAILABLE or FAILED (its reason verbatim). What the execution made is
//! read back: the output AMIs per account and region (`outputResources`), the package list
//! (`ListImagePackages`, the version's manifest, so advisories work on these lines), the
//! recipe's components, the test workflow's result and every workflow step as the log.
//! Distribution is the pipeline's; [`PipelinePublisher`] verifies it and writes amictl's SSM
//! pointers.
//!
//! Calls per build, counted through the emulator (`tests/imagebuilder.rs`): one
//! `ListImagePipelines` (or `GetImagePipeline` for an ARN; `GetImageRecipe` too when the
//! recipe names the parent), one `StartImagePipelineExecution`, one `GetImage` per poll (4
//! when each state lasts one poll), one `ListImagePackages` per page, one
//! `ListWorkflowExecutions` and one `ListWorkflowStepExecutions` per workflow (3). Then per
//! target account and region one `ec2:DescribeImages` and, with `ssm_parameter`, the
//! pointers' SSM calls.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{Filter, Image};
use config::{Builder as BuilderSpec, Distribution as DistributionSpec, Image as ImageSpec, ParentSpec};
use jiff::Timestamp;
use provider::{
    AmiRef, Artifact, ArtifactKind, BuildEvents, BuildFailure, BuildJob, BuildOutput, Builder, Cancel, CleanupJob,
    CleanupReport, ComponentVersion, Deprecated, Distribution, How, Package, ParentRef, ProviderError, PublishJob,
    PublishReport, Publisher, RegionFailure, RegionPublished, RetireJob, RetireReport, Target, TestResult,
};

use crate::error::api;
use crate::providers::Cloud;
use crate::{Aws, AwsError};

/// The Image Builder client for `account` in `region`.
pub async fn client(aws: &Aws, account: &str, region: &str) -> Result<Client, AwsError> {
    Ok(Client::new(&aws.config(account, region).await?))
}

/// A pipeline as far as a build needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub arn: String,
    pub name: String,
    pub recipe_arn: String,
}

/// Finds a pipeline by ARN, or by name in the account and region.
pub async fn pipeline(c: &Client, account: &str, region: &str, pipeline: &str) -> Result<Pipeline, AwsError> {
    let found = if pipeline.starts_with("arn:") {
        let out = c.get_image_pipeline().image_pipeline_arn(pipeline).send().await.map_err(|e| {
            use aws_sdk_imagebuilder::error::ProvideErrorMetadata;
            if e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException") {
                not_found(pipeline, account, region)
            } else {
                api("imagebuilder:GetImagePipeline", account, region)(e)
            }
        })?;
        out.image_pipeline().cloned()
    } else {
        let filter = Filter::builder().name("name").values(pipeline).build();
        let out = c.list_image_pipelines().filters(filter).send().await.map_err(api(
            "imagebuilder:ListImagePipelines",
            account,
            region,
        ))?;
        out.image_pipeline_list().iter().find(|p| p.name() == Some(pipeline)).cloned()
    };
    let p = found.ok_or_else(|| not_found(pipeline, account, region))?;
    Ok(Pipeline {
        arn: p.arn().unwrap_or_default().to_string(),
        name: p.name().unwrap_or_default().to_string(),
        recipe_arn: p.image_recipe_arn().unwrap_or_default().to_string(),
    })
}

fn not_found(pipeline: &str, account: &str, region: &str) -> AwsError {
    AwsError::NotFound {
        what: format!("Image Builder pipeline {pipeline}"),
        account: account.into(),
        region: region.into(),
    }
}

/// The recipe's `parentImage`: an AMI id, `ssm:/…`, or an Image Builder image ARN.
pub async fn recipe_parent(c: &Client, account: &str, region: &str, recipe_arn: &str) -> Result<String, AwsError> {
    let out = c.get_image_recipe().image_recipe_arn(recipe_arn).send().await.map_err(api(
        "imagebuilder:GetImageRecipe",
        account,
        region,
    ))?;
    Ok(out.image_recipe().and_then(|r| r.parent_image()).unwrap_or_default().to_string())
}

/// Starts an execution, idempotently: the same `token` returns the same execution.
pub async fn start(
    c: &Client,
    account: &str,
    region: &str,
    pipeline_arn: &str,
    token: &str,
) -> Result<String, AwsError> {
    let out = c
        .start_image_pipeline_execution()
        .image_pipeline_arn(pipeline_arn)
        .client_token(token)
        .send()
        .await
        .map_err(api("imagebuilder:StartImagePipelineExecution", account, region))?;
    out.image_build_version_arn().map(str::to_string).ok_or_else(|| AwsError::Failed {
        what: format!("starting {pipeline_arn}"),
        region: region.into(),
        message: "Image Builder returned no image build version ARN".into(),
    })
}

/// How an execution ended.
#[derive(Debug)]
pub enum Ended {
    Available(Box<Image>),
    /// FAILED, with the reason verbatim.
    Failed(String),
    /// CANCELLED (by someone else).
    Cancelled(String),
}

/// Polls `GetImage` until the execution ends, calling `on_status` at each new status. On
/// `cancel` it asks Image Builder to cancel the execution and returns [`AwsError::Cancelled`].
pub async fn follow(
    c: &Client,
    account: &str,
    region: &str,
    image_arn: &str,
    poll: Duration,
    cancel: &Cancel,
    mut on_status: impl FnMut(&str),
) -> Result<Ended, AwsError> {
    let mut last = String::new();
    loop {
        if cancel.is_cancelled() {
            let _ = c
                .cancel_image_creation()
                .image_build_version_arn(image_arn)
                .client_token(format!("cancel-{}", image_arn.rsplit('/').next().unwrap_or("x")))
                .send()
                .await
                .map_err(api("imagebuilder:CancelImageCreation", account, region))?;
            return Err(AwsError::Cancelled);
        }
        let out = c.get_image().image_build_version_arn(image_arn).send().await.map_err(api(
            "imagebuilder:GetImage",
            account,
            region,
        ))?;
        let image = out.image().cloned().ok_or_else(|| AwsError::NotFound {
            what: format!("image {image_arn}"),
            account: account.into(),
            region: region.into(),
        })?;
        let state = image.state();
        let status = state.and_then(|s| s.status()).map(|s| s.as_str().to_string()).unwrap_or_default();
        let reason = state.and_then(|s| s.reason()).unwrap_or_default().to_string();
        if status != last {
            on_status(&status);
            last = status.clone();
        }
        match status.as_str() {
            "AVAILABLE" => return Ok(Ended::Available(Box::new(image))),
            "FAILED" => return Ok(Ended::Failed(reason)),
            "CANCELLED" => return Ok(Ended::Cancelled(reason)),
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = crate::build::cancelled(cancel, poll.min(Duration::from_millis(200))) => {}
        }
    }
}

/// The image's packages (`ListImagePackages`, every page): name and version, as Image
/// Builder reports them (no architecture; the source package is the package itself).
pub async fn packages(c: &Client, account: &str, region: &str, image_arn: &str) -> Result<Vec<Package>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c
            .list_image_packages()
            .image_build_version_arn(image_arn)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(api("imagebuilder:ListImagePackages", account, region))?;
        for p in page.image_package_list() {
            let (name, version) = (p.package_name().unwrap_or_default(), p.package_version().unwrap_or_default());
            out.push(Package {
                name: name.into(),
                version: version.into(),
                arch: String::new(),
                source_name: name.into(),
                source_version: version.into(),
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The execution's workflows: the test result, and every step as log text.
pub async fn workflows(
    c: &Client,
    account: &str,
    region: &str,
    image_arn: &str,
) -> Result<(Vec<TestResult>, String), AwsError> {
    let out = c.list_workflow_executions().image_build_version_arn(image_arn).send().await.map_err(api(
        "imagebuilder:ListWorkflowExecutions",
        account,
        region,
    ))?;
    let mut tests = Vec::new();
    let mut log = String::new();
    for wf in out.workflow_executions() {
        let kind = wf.r#type().map(|t| t.as_str().to_string()).unwrap_or_default();
        let status = wf.status().map(|s| s.as_str().to_string()).unwrap_or_default();
        let _ = writeln!(
            log,
            "workflow {kind} {status}: {} of {} step(s) succeeded{}",
            wf.total_steps_succeeded(),
            wf.total_step_count(),
            wf.message().filter(|m| !m.is_empty()).map(|m| format!(" — {m}")).unwrap_or_default()
        );
        if kind == "TEST" {
            tests.push(TestResult {
                name: "image builder test workflow".into(),
                passed: status == "COMPLETED",
                detail: format!(
                    "{status}: {} of {} step(s) succeeded",
                    wf.total_steps_succeeded(),
                    wf.total_step_count()
                ),
            });
        }
        let Some(id) = wf.workflow_execution_id() else { continue };
        let steps = c.list_workflow_step_executions().workflow_execution_id(id).send().await.map_err(api(
            "imagebuilder:ListWorkflowStepExecutions",
            account,
            region,
        ))?;
        for s in steps.steps() {
            let _ = writeln!(
                log,
                "  {} {}{}",
                s.name().unwrap_or_default(),
                s.status().map(|x| x.as_str()).unwrap_or_default(),
                s.message().filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default()
            );
        }
    }
    Ok((tests, log))
}

/// Builds an Image Builder line: one pipeline execution per build.
pub struct PipelineBuilder {
    cloud: Arc<Cloud>,
    image: ImageSpec,
}

impl PipelineBuilder {
    pub fn new(cloud: Arc<Cloud>, image: ImageSpec) -> PipelineBuilder {
        PipelineBuilder { cloud, image }
    }

    fn pipeline_spec(&self) -> &str {
        match &self.image.builder {
            BuilderSpec::ImageBuilder { pipeline } => pipeline,
            _ => "",
        }
    }

    async fn client(&self) -> Result<Client, AwsError> {
        client(&self.cloud.aws, &self.cloud.platform, &self.cloud.region).await
    }

    /// The parent the next execution starts from: the line's own `parent` when it names
    /// one, else what the pipeline's recipe names, resolved.
    async fn parent(&self, c: &Client) -> Result<ParentRef, AwsError> {
        let (account, region) = (&self.cloud.platform, &self.cloud.region);
        let a = match &self.image.parent {
            ParentSpec::Recipe => {
                let p = pipeline(c, account, region, self.pipeline_spec()).await?;
                let named = recipe_parent(c, account, region, &p.recipe_arn).await?;
                if named.starts_with("ami-") {
                    crate::parent::describe(&self.cloud.aws, account, region, &named).await?
                } else if let Some(name) = named.strip_prefix("ssm:") {
                    crate::parent::from_ssm_parameter(&self.cloud.aws, account, region, name).await?
                } else {
                    // An Image Builder image ARN (`…:aws:image/amazon-linux-2-x86/x.x.x`) is
                    // resolved by Image Builder at execution time; amictl records the ARN.
                    return Ok(ParentRef { id: named.clone(), name: named, created: String::new() });
                }
            }
            ParentSpec::SsmParameter { name } => {
                crate::parent::from_ssm_parameter(&self.cloud.aws, account, region, name).await?
            }
            ParentSpec::AmiName { owners, pattern } => {
                crate::parent::from_name_filter(&self.cloud.aws, account, region, owners, pattern).await?
            }
            other => {
                return Err(AwsError::Failed {
                    what: format!("parent {other}"),
                    region: region.clone(),
                    message: "is not an AMI parent".into(),
                });
            }
        };
        Ok(ParentRef { id: a.image_id, name: a.name, created: a.created })
    }

    fn target_of(&self, account_id: &str, region: &str) -> Target {
        let name =
            self.cloud.aws.account_by_id(account_id).map(|a| a.name.clone()).unwrap_or_else(|| account_id.into());
        Target::new(name, region)
    }
}

impl Builder for PipelineBuilder {
    fn kind(&self) -> &'static str {
        "imagebuilder"
    }

    fn resumes(&self) -> bool {
        true
    }

    /// The line's own `parent` needs no pipeline lookup; the recipe's does.
    fn current_parent(&self) -> Result<Option<ParentRef>, ProviderError> {
        let parent = self.cloud.block_on(async {
            let c = self.client().await?;
            self.parent(&c).await
        })?;
        Ok(Some(parent))
    }

    fn build(&self, job: &BuildJob<'_>, events: &dyn BuildEvents) -> Result<BuildOutput, BuildFailure> {
        let (account, region) = (self.cloud.platform.clone(), self.cloud.region.clone());
        let mut log = String::new();
        let result = self.cloud.block_on(async {
            let c = self.client().await?;
            let p = pipeline(&c, &account, &region, self.pipeline_spec()).await?;
            let parent = match job.parent {
                Some(planned) => planned.clone(),
                None => self.parent(&c).await?,
            };
            events.parent(&parent);
            let arn = match job.execution {
                Some(arn) => {
                    let _ = writeln!(log, "following execution {arn} of {} (started by an earlier run)", p.name);
                    arn.to_string()
                }
                None => {
                    let arn = start(&c, &account, &region, &p.arn, job.build_id).await?;
                    let _ = writeln!(log, "started execution {arn} of {} (clientToken {})", p.name, job.build_id);
                    arn
                }
            };
            events.started(&arn);
            let mut tested = false;
            let ended = follow(&c, &account, &region, &arn, self.cloud.timing.poll, job.cancel, |status| {
                let _ = writeln!(log, "{} {status}", Timestamp::now());
                // Testing is reported once, also when a followed execution is already past it.
                if !tested && matches!(status, "TESTING" | "DISTRIBUTING" | "INTEGRATING" | "AVAILABLE") {
                    tested = true;
                    events.testing();
                }
                events.status(&format!("Image Builder: {}", status.to_lowercase()));
            })
            .await;
            let (tests, steps) = workflows(&c, &account, &region, &arn).await.unwrap_or_default();
            log.push_str(&steps);
            let ended = ended?;
            Ok::<_, AwsError>((c, arn, parent, ended, tests))
        });
        let write_log = |log: &str| {
            let _ = std::fs::create_dir_all(job.log_dir);
            let _ = std::fs::write(job.log_dir.join("imagebuilder.log"), log);
        };
        let (c, arn, parent, ended, tests) = match result {
            Ok(r) => r,
            Err(e) => {
                write_log(&log);
                return Err(BuildFailure::early(e.into()));
            }
        };
        let image = match ended {
            Ended::Available(image) => image,
            Ended::Failed(reason) | Ended::Cancelled(reason) => {
                write_log(&log);
                let error = AwsError::Failed {
                    what: format!("Image Builder execution {arn}"),
                    region: region.clone(),
                    message: if reason.is_empty() { "FAILED".into() } else { reason },
                };
                return Err(BuildFailure { error: error.into(), parent: Some(Box::new(parent)), tests, cleanup: None });
            }
        };
        let packages = self.cloud.block_on(packages(&c, &account, &region, &arn));
        write_log(&log);
        let packages = packages.map_err(|e| BuildFailure {
            error: e.into(),
            parent: Some(Box::new(parent.clone())),
            tests: tests.clone(),
            cleanup: None,
        })?;
        // The home copy first: it is what the engine publishes from.
        let home = Target::new(&account, &region);
        let mut artifacts: Vec<Artifact> = image
            .output_resources()
            .map(|o| o.amis())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| {
                let target = self.target_of(a.account_id().unwrap_or_default(), a.region()?);
                Some(Artifact {
                    kind: ArtifactKind::Ami,
                    path: AmiRef { target, image_id: a.image()?.to_string() }.to_string(),
                    sha256: String::new(),
                    size: 0,
                })
            })
            .collect();
        artifacts.sort_by_key(|a| a.ami().map(|r| r.target != home));
        if artifacts.is_empty() {
            let error = AwsError::Failed {
                what: format!("Image Builder execution {arn}"),
                region,
                message: "is AVAILABLE but lists no output AMI".into(),
            };
            return Err(BuildFailure { error: error.into(), parent: Some(Box::new(parent)), tests, cleanup: None });
        }
        let components = image
            .image_recipe()
            .map(|r| r.components())
            .unwrap_or_default()
            .iter()
            .map(|c| c.component_arn())
            .map(|arn| {
                let mut parts = arn.rsplit(':').next().unwrap_or_default().split('/').skip(1);
                ComponentVersion {
                    name: parts.next().unwrap_or_default().to_string(),
                    version: parts.next().unwrap_or_default().to_string(),
                    source: arn.to_string(),
                }
            })
            .collect();
        Ok(BuildOutput { parent, packages, artifacts, tests, cleanup: CleanupReport::default(), components })
    }

    /// Image Builder removes its own build and test instances; nothing of amictl's is left.
    fn clean_up(&self, _job: &CleanupJob<'_>) -> Result<CleanupReport, ProviderError> {
        Ok(CleanupReport::default())
    }

    /// Every AMI the pipeline made (each distribution, and any artifact beyond them) is
    /// retired as [`crate::retire`] does, with proof that nothing uses it.
    fn retire(&self, job: &RetireJob<'_>) -> Result<RetireReport, ProviderError> {
        let mut places: Vec<Distribution> = job.distributions.to_vec();
        for a in job.artifacts.iter().filter_map(|a| a.ami()) {
            if !places.iter().any(|d| d.target == a.target && d.image_id == a.image_id) {
                places.push(Distribution {
                    target: a.target,
                    image_id: a.image_id,
                    how: How::Copy,
                    parameters: Vec::new(),
                });
            }
        }
        Ok(self.cloud.block_on(crate::retire::retire(&self.cloud.aws, &places))?)
    }
}

/// Publishes an Image Builder line's versions: the pipeline distributed them; this checks
/// that every configured target has its copy (`DescribeImages` there), writes amictl's SSM
/// pointers, and deprecates superseded AMIs like [`crate::providers::AmiPublisher`].
pub struct PipelinePublisher {
    cloud: Arc<Cloud>,
    distribution: DistributionSpec,
    deprecator: crate::providers::AmiPublisher,
}

impl PipelinePublisher {
    /// The publisher of `image` as its `distribute` describes it.
    pub fn new(cloud: Arc<Cloud>, image: &ImageSpec) -> PipelinePublisher {
        let deprecator = crate::providers::AmiPublisher::new(cloud.clone(), image);
        PipelinePublisher { cloud, distribution: image.distribute.clone().unwrap_or_default(), deprecator }
    }
}

impl Publisher for PipelinePublisher {
    fn publish(&self, job: &PublishJob<'_>) -> PublishReport {
        let made: Vec<AmiRef> = job.artifacts.iter().filter_map(|a| a.ami()).collect();
        let mut regions: Vec<String> = vec![job.source.target.region.clone()];
        for t in job.targets {
            if !regions.contains(&t.region) {
                regions.push(t.region.clone());
            }
        }
        let mut report = PublishReport::default();
        for region in regions {
            let result = self.cloud.until_cancelled(job.cancel, self.region(job, &made, &region));
            match result {
                Ok(done) => report.done.push(done),
                Err(e) => report.failed.push(RegionFailure { region, error: e.into() }),
            }
        }
        report
    }

    fn deprecate(&self, ami: &AmiRef, at: Timestamp) -> Result<Deprecated, ProviderError> {
        self.deprecator.deprecate(ami, at)
    }
}

impl PipelinePublisher {
    async fn region(&self, job: &PublishJob<'_>, made: &[AmiRef], region: &str) -> Result<RegionPublished, AwsError> {
        let platform = &self.cloud.platform;
        let find = |account: &str| made.iter().find(|a| a.target.account == account && a.target.region == region);
        let mut wanted: Vec<&str> = vec![platform.as_str()];
        for t in job.targets.iter().filter(|t| t.region == region) {
            if !wanted.contains(&t.account.as_str()) {
                wanted.push(&t.account);
            }
        }
        let mut distributions = Vec::new();
        let mut home_image = String::new();
        for account in wanted {
            let Some(ami) = find(account) else {
                if account == platform && job.targets.iter().all(|t| t.account != *platform || t.region != region) {
                    continue; // the pipeline need not keep a platform copy where only consumers run
                }
                return Err(AwsError::Failed {
                    what: format!("{} {}", job.image, job.version),
                    region: region.into(),
                    message: format!(
                        "the pipeline's distribution made no AMI in account {account}; add the account and region to its distribution configuration"
                    ),
                });
            };
            let ec2 = self.cloud.aws.ec2(account, region).await?;
            let found = ec2.describe_images().image_ids(&ami.image_id).send().await.map_err(api(
                "ec2:DescribeImages",
                account,
                region,
            ))?;
            let state = found.images().first().and_then(|i| i.state()).map(|s| s.as_str().to_string());
            if state.as_deref() != Some("available") {
                return Err(AwsError::Failed {
                    what: format!("{} in account {account}", ami.image_id),
                    region: region.into(),
                    message: format!(
                        "the pipeline lists it, but EC2 says {}",
                        state.as_deref().unwrap_or("it does not exist")
                    ),
                });
            }
            let parameters = match &self.distribution.ssm_parameter {
                Some(prefix) => {
                    crate::publish::pointers(&self.cloud.aws, job.version, prefix, region, account, &ami.image_id)
                        .await?
                }
                None => Vec::new(),
            };
            if account == platform {
                home_image = ami.image_id.clone();
            }
            let how = if account == platform { How::Owner } else { How::Copy };
            distributions.push(Distribution {
                target: Target::new(account, region),
                image_id: ami.image_id.clone(),
                how,
                parameters,
            });
        }
        if home_image.is_empty() {
            home_image = distributions.first().map(|d| d.image_id.clone()).unwrap_or_default();
        }
        Ok(RegionPublished {
            region: region.into(),
            image_id: home_image,
            copied: false,
            distributions,
            resource_share: None,
        })
    }
}
