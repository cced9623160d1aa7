//! In-memory providers: they record what the engine asked and answer as told.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catalog::Catalog;
use config::Config;
use engine::{Clock, Engine, Line, Providers};
use jiff::Timestamp;
use provider::*;

/// A clock that moves only when told.
pub struct FixedClock(pub Mutex<Timestamp>);

impl FixedClock {
    pub fn at(t: &str) -> Arc<FixedClock> {
        Arc::new(FixedClock(Mutex::new(t.parse().unwrap())))
    }

    pub fn advance_days(&self, days: i64) {
        let mut t = self.0.lock().unwrap();
        *t += jiff::SignedDuration::from_hours(24 * days);
    }

    pub fn get(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        // Each reading a second later, so records made in one run are ordered.
        let mut t = self.0.lock().unwrap();
        *t += jiff::SignedDuration::from_secs(1);
        *t
    }
}

#[derive(Default)]
pub struct FakeBuilder {
    /// Every parent lookup returns a new parent (the parent keeps moving).
    pub moving_parent: AtomicBool,
    lookups: AtomicU32,
    pub fail: AtomicBool,
    /// Set this cancel token while building (an operator's Ctrl-C mid-build).
    pub cancel_during_build: Mutex<Option<Cancel>>,
    pub delay: Mutex<Duration>,
    pub jobs: Mutex<Vec<(String, Option<ParentRef>)>>,
    pub cleaned: Mutex<Vec<String>>,
    pub retired: Mutex<Vec<String>>,
    pub busy: Mutex<Vec<(String, std::time::Instant, std::time::Instant)>>,
    /// Builds go on without amictl (an Image Builder execution): followed when interrupted.
    pub resumable: AtomicBool,
    /// The execution each build was handed (`None`: start one).
    pub executions: Mutex<Vec<Option<String>>>,
}

impl FakeBuilder {
    fn parent(&self, n: u32) -> ParentRef {
        ParentRef {
            id: format!("ami-parent{n}"),
            name: "amzn2-ami-hvm-test".into(),
            created: "2026-11-01T00:00:00Z".into(),
        }
    }
}

impl Builder for FakeBuilder {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn current_parent(&self) -> Result<Option<ParentRef>, ProviderError> {
        let n =
            if self.moving_parent.load(Ordering::SeqCst) { self.lookups.fetch_add(1, Ordering::SeqCst) + 1 } else { 1 };
        Ok(Some(self.parent(n)))
    }

    fn resumes(&self) -> bool {
        self.resumable.load(Ordering::SeqCst)
    }

    fn build(&self, job: &BuildJob<'_>, events: &dyn BuildEvents) -> Result<BuildOutput, BuildFailure> {
        let started = std::time::Instant::now();
        self.jobs.lock().unwrap().push((job.build_id.to_string(), job.parent.cloned()));
        self.executions.lock().unwrap().push(job.execution.map(str::to_string));
        if self.resumes() && job.execution.is_none() {
            events.started(&format!("exec-{}", job.build_id));
        }
        let parent = job.parent.cloned().unwrap_or_else(|| self.parent(0));
        events.parent(&parent);
        std::thread::sleep(*self.delay.lock().unwrap());
        if let Some(c) = self.cancel_during_build.lock().unwrap().take() {
            c.cancel();
        }
        job.cancel.check().map_err(|e| BuildFailure {
            error: e,
            parent: Some(Box::new(parent.clone())),
            tests: vec![],
            cleanup: None,
        })?;
        events.testing();
        self.busy.lock().unwrap().push((job.image.to_string(), started, std::time::Instant::now()));
        if self.fail.load(Ordering::SeqCst) {
            return Err(BuildFailure {
                error: ProviderError::message("the new AMI's tests: 1 of 1 failed: services-active"),
                parent: Some(Box::new(parent)),
                tests: vec![TestResult {
                    name: "services-active".into(),
                    passed: false,
                    detail: "inactive: agent".into(),
                }],
                cleanup: Some(CleanupReport::default()),
            });
        }
        Ok(BuildOutput {
            parent,
            packages: vec![Package {
                name: "openssl-libs".into(),
                version: "1:1.0.2k-24.amzn2".into(),
                arch: "x86_64".into(),
                source_name: "openssl".into(),
                source_version: "1:1.0.2k-24.amzn2".into(),
            }],
            artifacts: vec![Artifact {
                kind: ArtifactKind::Ami,
                path: AmiRef::new("platform", "eu-west-1", format!("ami-{}", job.version.replace('.', ""))).to_string(),
                sha256: String::new(),
                size: 0,
            }],
            tests: vec![TestResult { name: "services-active".into(), passed: true, detail: "active".into() }],
            cleanup: CleanupReport::default(),
            components: Vec::new(),
        })
    }

    fn clean_up(&self, job: &CleanupJob<'_>) -> Result<CleanupReport, ProviderError> {
        self.cleaned.lock().unwrap().push(job.build_id.to_string());
        Ok(CleanupReport { removed: vec![Resource { kind: "instance".into(), id: "i-left".into(), place: None }] })
    }

    fn retire(&self, job: &RetireJob<'_>) -> Result<RetireReport, ProviderError> {
        self.retired.lock().unwrap().push(job.version.to_string());
        let left = job
            .distributions
            .iter()
            .filter(|d| d.how.owns())
            .map(|d| Resource { kind: "ami".into(), id: d.image_id.clone(), place: Some(d.target.clone()) })
            .collect();
        Ok(RetireReport { removed: vec![], left, checked: vec![] })
    }
}

#[derive(Default)]
pub struct FakePublisher {
    /// Regions that fail to publish until removed.
    pub failing_regions: Mutex<BTreeSet<String>>,
    pub refuse_deprecation: AtomicBool,
    pub deprecations: Mutex<Vec<(AmiRef, Timestamp)>>,
    pub published: Mutex<Vec<(String, Vec<Target>)>>,
}

impl Publisher for FakePublisher {
    fn publish(&self, job: &PublishJob<'_>) -> PublishReport {
        self.published.lock().unwrap().push((job.version.to_string(), job.targets.to_vec()));
        let mut regions = vec![job.source.target.region.clone()];
        for t in job.targets {
            if !regions.contains(&t.region) {
                regions.push(t.region.clone());
            }
        }
        let failing = self.failing_regions.lock().unwrap().clone();
        let mut report = PublishReport::default();
        for region in regions {
            if failing.contains(&region) {
                report.failed.push(RegionFailure { region, error: ProviderError::message("InternalError: injected") });
                continue;
            }
            let ami = format!("{}-{region}", job.source.image_id);
            let mut distributions = vec![Distribution {
                target: Target::new("platform", &region),
                image_id: ami.clone(),
                how: How::Owner,
                parameters: vec![],
            }];
            for t in job.targets.iter().filter(|t| t.region == region) {
                distributions.push(Distribution {
                    target: t.clone(),
                    image_id: ami.clone(),
                    how: How::Shared,
                    parameters: vec![],
                });
            }
            report.done.push(RegionPublished {
                region,
                image_id: ami,
                copied: true,
                distributions,
                resource_share: None,
            });
        }
        report
    }

    fn deprecate(&self, ami: &AmiRef, at: Timestamp) -> Result<Deprecated, ProviderError> {
        self.deprecations.lock().unwrap().push((ami.clone(), at));
        if self.refuse_deprecation.load(Ordering::SeqCst) {
            return Err(ProviderError::message("ec2:EnableImageDeprecation in account platform: AccessDenied"));
        }
        Ok(Deprecated::Set(at))
    }
}

#[derive(Default)]
pub struct FakeFleet {
    pub hosts: Mutex<Vec<Host>>,
}

impl FleetSource for FakeFleet {
    fn hosts(&self, q: &HostQuery<'_>) -> Result<Vec<Host>, ProviderError> {
        Ok(self.hosts.lock().unwrap().iter().filter(|h| h.consumer == q.consumer).cloned().collect())
    }
}

#[derive(Default)]
pub struct FakeRollout {
    pub rolled: Mutex<Vec<RolloutGroup>>,
    pub notices: Mutex<Vec<Notice>>,
    pub fail: AtomicBool,
}

impl Rollout for FakeRollout {
    fn roll_group(&self, g: &RolloutGroup, _: &RolloutMethod, _: &Cancel) -> Result<GroupRolled, GroupFailure> {
        self.rolled.lock().unwrap().push(g.clone());
        let template = TemplateChange {
            template_id: "lt-1".into(),
            from_version: 1,
            to_version: 2,
            from_image: "ami-old".into(),
            changed: true,
            resolves: None,
            group_version: "$Default".into(),
        };
        if self.fail.load(Ordering::SeqCst) {
            return Err(GroupFailure {
                error: ProviderError::message("its SSM agent did not report Online within 1s"),
                template: Some(Box::new(template)),
                restored: Some(Ok(())),
            });
        }
        Ok(GroupRolled { template, replacement: Some(Replacement::default()) })
    }

    fn notify(&self, n: &Notice) -> Result<String, ProviderError> {
        self.notices.lock().unwrap().push(n.clone());
        Ok(format!("m-{}", self.notices.lock().unwrap().len()))
    }
}

/// The fakes of one organisation, shared by every run.
pub struct Org {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub clock: Arc<FixedClock>,
    pub builder: Arc<FakeBuilder>,
    pub publisher: Arc<FakePublisher>,
    pub fleet: Arc<FakeFleet>,
    pub rollout: Arc<FakeRollout>,
}

const AGENT: &str = "name: agent\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Hello\n        action: ExecuteBash\n        inputs:\n          commands: ['true']\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

impl Org {
    /// One cloud line `host` published to workflow in two regions, consumers `goobi`
    /// (rolling-replace group) and `goobi-bastion` (notify), plus `extra` config.
    pub fn new(extra: &str) -> Org {
        Org::with_policy("", extra)
    }

    /// [`Org::new`] with more `[policy]` keys.
    pub fn with_policy(policy: &str, extra: &str) -> Org {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "agent.yml", AGENT);
        let text = format!(
            r#"[state]
path = "state/state.db"

[aws]
region = "eu-west-1"

[accounts.platform]
id = "111111111111"

[accounts.workflow]
id = "222222222222"
role = "arn:aws:iam::222222222222:role/amictl"

[policy]
keep_versions = 2
rollout_sla = "14d"
{policy}

[components.agent]
file = "agent.yml"
version = "1.0"

[images.host]
parent = "ssm:/aws/service/test"
components = ["agent"]
builder = {{ kind = "ec2", instance_type = "t3.micro" }}
distribute = {{ accounts = ["workflow"], regions = ["eu-west-1", "eu-west-2"] }}

[consumers.goobi]
account = "workflow"
image = "host"
select = {{ asgs = ["goobi-hosts"] }}
rollout = {{ kind = "rolling-replace", batch = 1 }}

[consumers.goobi-bastion]
account = "workflow"
image = "host"
owner = "goobi-team"
select = {{ tags = {{ Name = "goobi-bastion" }} }}
rollout = {{ kind = "notify", sns_topic = "arn:aws:sns:eu-west-1:111111111111:rollouts" }}
{extra}"#
        );
        let path = write(dir.path(), "amictl.toml", &text);
        let config = match Config::load(&path) {
            Ok((c, _)) => c,
            Err(d) => panic!("test config: {d:#?}"),
        };
        Org {
            dir,
            config,
            clock: FixedClock::at("2026-12-01T09:00:00Z"),
            builder: Arc::default(),
            publisher: Arc::default(),
            fleet: Arc::default(),
            rollout: Arc::default(),
        }
    }

    pub fn providers(&self) -> Providers {
        let mut p = Providers::default();
        for name in self.config.images.keys() {
            p.lines.insert(
                name.clone(),
                Line { builder: self.builder.clone(), publisher: Some(self.publisher.clone()), importer: None },
            );
        }
        p.fleet = Some(self.fleet.clone());
        p.rollout = Some(self.rollout.clone());
        p
    }

    /// A fresh engine, as a new process would make it.
    pub fn engine(&self) -> Engine {
        Engine::new(self.config.clone(), self.catalog(), self.providers()).with_clock(self.clock.clone())
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::open(&self.config.state).unwrap()
    }

    /// Hosts of a consumer on `ami` (in group `asg` when given).
    pub fn run_hosts(&self, consumer: &str, ami: &str, asg: Option<&str>, n: usize) {
        let mut hosts = self.fleet.hosts.lock().unwrap();
        hosts.retain(|h| h.consumer != consumer);
        for i in 0..n {
            hosts.push(Host {
                consumer: consumer.into(),
                account: "workflow".into(),
                region: "eu-west-1".into(),
                instance_id: format!("i-{consumer}-{i}").into(),
                image_id: ami.into(),
                state: "running".into(),
                name: None,
                asg: asg.map(Into::into),
                launch_template: None,
                agent: Some(Agent { ping: "Online".into(), version: "3".into(), last_ping: None }),
                agent_checked: true,
                services: None,
            });
        }
    }
}
