//! The harness for tests of the cloud path: the real `amictl` binary against a real
//! `moto` server on 127.0.0.1 behind `motogap`, for the reference organisation.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws::{AccountAccess, Aws};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::Filter;
use motogap::{Gap, Moto};
use serde_json::Value;

pub const SECRET: &str = "act-7f3c9e1d-never-in-any-log";
pub const BASTION: &str = "weco-amzn2-hvm-x86_64-gp2";
pub const ECS: &str = "weco-amzn2-ecs-optimised-hvm-x86_64";
pub const CONSUMERS: [(&str, &str); 2] = [("workflow", "222222222222"), ("digirati", "333333333333")];
pub const REGIONS: [&str; 2] = ["eu-west-1", "eu-west-2"];

pub struct Org {
    pub moto: Moto,
    pub gap: Gap,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Org {
    /// moto + motogap + the reference organisation's config, polling fast.
    pub fn new() -> Org {
        Org::with_moto(Moto::start())
    }

    pub fn with_moto(moto: Moto) -> Org {
        Org::from_example(moto, "amictl.toml")
    }

    /// The reference organisation as it runs: its lines are Image Builder pipelines.
    pub fn image_builder() -> Org {
        Org::from_example(Moto::start(), "imagebuilder.toml")
    }

    /// The Image Builder organisation on a moto that launches any AMI id (consumer accounts
    /// launching shared copies, `resolve:ssm:` templates motogap resolves).
    pub fn image_builder_unvalidated() -> Org {
        Org::from_example(Moto::start_with_ami_validation(false), "imagebuilder.toml")
    }

    fn from_example(moto: Moto, file: &str) -> Org {
        let gap = Gap::start(moto.addr, 0).unwrap();
        gap.map_key("testing", "111111111111");
        let dir = tempfile::tempdir().unwrap();
        let components = repo().join("examples/components");
        let text = std::fs::read_to_string(repo().join("examples/reference-org").join(file))
            .unwrap()
            .replace("../components/", &format!("{}/", components.display()))
            .replace("[aws]\nregion = \"eu-west-1\"\n", "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"50ms\"\n");
        assert!(text.contains("poll_interval"), "the reference config changed shape");
        let config = dir.path().join("amictl.toml");
        std::fs::write(&config, text).unwrap();
        Org { moto, gap, dir, config }
    }

    /// Rewrites the config (a bad parent, shorter waits).
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from} is not in the config");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(&self.config, args)
    }

    /// [`Org::command`] with another config.
    pub fn command_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_amictl"));
        c.arg("--config")
            .arg(config)
            .args(args)
            .env("AMICTL_COMPONENT_CACHE", self.dir.path().join("components"))
            .env("AWS_ENDPOINT_URL", self.gap.url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SCAN_AGENT_URL", "https://artifacts.example.invalid/scan-agent-1.2.0.tar.gz")
            .env("SCAN_AGENT_SHA256", "0".repeat(64))
            .env("SCAN_AGENT_ACTIVATION_KEY", SECRET)
            .env("AMICTL_CACHE", self.dir.path().join("cache"));
        c
    }

    pub fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let out: Output = self.command(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, stderr)
    }

    pub async fn aws(&self) -> Aws {
        aws_at(&self.gap.url()).await
    }

    /// Slows Run Command down (700 ms per poll) so a kill or an outage lands while a build's
    /// test instance runs.
    pub fn slow_run_command(&self) {
        self.gap.inject(motogap::Fault {
            op: "ssm:GetCommandInvocation".into(),
            region: None,
            times: None,
            kind: motogap::FaultKind::Delay(Duration::from_millis(700)),
        });
    }

    pub fn catalog(&self) -> catalog::Catalog {
        catalog::Catalog::open(&self.dir.path().join(".amictl/state.db")).unwrap()
    }
}

/// The test's own clients for the organisation's accounts, through the endpoint at `url`
/// (a thread of its own can make them from the URL alone).
pub async fn aws_at(url: &str) -> Aws {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(url)
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let mut accounts =
        vec![AccountAccess { name: "platform".into(), id: "111111111111".into(), role: None, external_id: None }];
    for (name, id) in CONSUMERS {
        accounts.push(AccountAccess {
            name: name.into(),
            id: id.into(),
            role: Some(format!("arn:aws:iam::{id}:role/amictl-consumer")),
            external_id: None,
        });
    }
    Aws::with_config(base, accounts)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Instances carrying a build id that are not terminated.
pub async fn live_build_instances(aws: &Aws) -> Vec<(String, String)> {
    let ec2 = aws.ec2("platform", "eu-west-1").await.unwrap();
    let out = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag-key").values("amictl:build-id").build())
        .filters(Filter::builder().name("instance-state-name").values("pending").values("running").build())
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let role = i.tags().iter().find(|t| t.key() == Some("amictl:role")).and_then(|t| t.value());
            (i.instance_id().unwrap_or_default().to_string(), role.unwrap_or_default().to_string())
        })
        .collect()
}

/// The platform's own AMIs in a region: name → ids.
pub async fn own_images(aws: &Aws, region: &str) -> BTreeMap<String, Vec<String>> {
    let ec2 = aws.ec2("platform", region).await.unwrap();
    let out = ec2.describe_images().owners("self").send().await.unwrap();
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in out.images() {
        names.entry(i.name().unwrap_or_default().into()).or_default().push(i.image_id().unwrap_or_default().into());
    }
    names
}

pub fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|a| (a["kind"].as_str().unwrap_or_default().into(), a["image"].as_str().unwrap_or_default().into()))
        .collect()
}

pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(p);
        }
    }
    hits
}

/// An AMI in the platform account named like `pattern`, made from Amazon Linux 2.
pub async fn parent_ami(aws: &Aws, name: &str) -> String {
    let ec2 = aws.ec2("platform", "eu-west-1").await.unwrap();
    let al2 = aws::parent::from_ssm_parameter(
        aws,
        "platform",
        "eu-west-1",
        "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2",
    )
    .await
    .unwrap();
    let run = ec2.run_instances().image_id(al2.image_id).min_count(1).max_count(1).send().await.unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_string();
    let id = ec2.create_image().instance_id(&instance).name(name).send().await.unwrap().image_id().unwrap().to_string();
    ec2.terminate_instances().instance_ids(instance).send().await.unwrap();
    id
}

/// The owners' notice channel: the `amictl-rollouts` SNS topic in the platform account and
/// a queue subscribed to it standing in for their mailboxes. (topic ARN, SQS client, queue URL)
pub fn owners_queue(rt: &tokio::runtime::Runtime, aws: &Aws) -> (String, aws_sdk_sqs::Client, String) {
    let platform = rt.block_on(aws.config("platform", "eu-west-1")).unwrap();
    let sns = aws_sdk_sns::Client::new(&platform);
    let sqs = aws_sdk_sqs::Client::new(&platform);
    let topic =
        rt.block_on(sns.create_topic().name("amictl-rollouts").send()).unwrap().topic_arn().unwrap().to_string();
    let queue = rt.block_on(sqs.create_queue().queue_name("owners").send()).unwrap().queue_url().unwrap().to_string();
    let attrs = rt
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(&queue)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send(),
        )
        .unwrap();
    let queue_arn = attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    rt.block_on(sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(queue_arn).send()).unwrap();
    (topic, sqs, queue)
}

/// A consumer's auto scaling group on `ami` (launch template + group of `size`).
pub async fn seed_group(aws: &Aws, account: &str, name: &str, ami: &str, size: i32) {
    seed_group_with(aws, account, name, ami, size, false).await
}

/// [`seed_group`] with the template's `image` as given (an AMI id or `resolve:ssm:…`) and,
/// when `protected`, new instances protected from scale-in.
pub async fn seed_group_with(aws: &Aws, account: &str, name: &str, image: &str, size: i32, protected: bool) {
    let ec2 = aws.ec2(account, "eu-west-1").await.unwrap();
    let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
        .build();
    let lt = ec2.create_launch_template().launch_template_name(name).launch_template_data(data).send().await.unwrap();
    let lt_id = lt.launch_template().unwrap().launch_template_id().unwrap().to_string();
    let asc = aws_sdk_autoscaling::Client::new(&aws.config(account, "eu-west-1").await.unwrap());
    asc.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt_id)
                .version("$Default")
                .build(),
        )
        .min_size(size)
        .max_size(size + 2)
        .desired_capacity(size)
        .new_instances_protected_from_scale_in(protected)
        .availability_zones("eu-west-1a")
        .send()
        .await
        .unwrap();
}

pub async fn seed_bastion(aws: &Aws, account: &str, name: &str, ami: &str) {
    let ec2 = aws.ec2(account, "eu-west-1").await.unwrap();
    ec2.run_instances()
        .image_id(ami)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(aws_sdk_ec2::types::Tag::builder().key("Name").value(name).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The AMI `account` launches for the newest version of `image` in eu-west-1.
pub fn published_ami(org: &Org, image: &str, account: &str) -> String {
    let cat = org.catalog();
    let v =
        cat.versions(Some(image)).unwrap().into_iter().rfind(|v| v.state == catalog::BuildState::Available).unwrap();
    cat.distributions(&v.build_id)
        .unwrap()
        .into_iter()
        .find(|d| d.distribution.target.account == account && d.distribution.target.region == "eu-west-1")
        .unwrap()
        .distribution
        .image_id
}

pub fn consumer<'a>(fleet: &'a Value, name: &str) -> &'a Value {
    fleet["consumers"].as_array().unwrap().iter().find(|c| c["consumer"] == name).unwrap()
}

/// The page as headless Chromium renders it (its DOM after parsing), so the report is
/// checked in a real browser. scripts/install-deps installs Chromium.
#[cfg(feature = "browser-tests")]
pub fn rendered(page: &Path) -> String {
    let chromium = std::env::var("AMICTL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {chromium} ({e}); scripts/install-deps installs it"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Without a browser the page is read as written.
#[cfg(not(feature = "browser-tests"))]
pub fn rendered(page: &Path) -> String {
    std::fs::read_to_string(page).unwrap()
}

/// What `aws ec2 describe-instances` would have saved for an account (the fields amictl reads).
pub async fn inventory(aws: &Aws, account: &str) -> Value {
    let ec2 = aws.ec2(account, "eu-west-1").await.unwrap();
    let out = ec2.describe_instances().send().await.unwrap();
    let instances: Vec<Value> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            serde_json::json!({
                "InstanceId": i.instance_id(), "ImageId": i.image_id(),
                "State": {"Name": i.state().and_then(|s| s.name()).map(|n| n.as_str())},
                "Placement": {"AvailabilityZone": i.placement().and_then(|p| p.availability_zone())},
                "Tags": i.tags().iter().map(|t| serde_json::json!({"Key": t.key(), "Value": t.value()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"Reservations": [{"Instances": instances}]})
}

/// The organisation's Terraform, as API calls: per line a component, a recipe on the
/// line's parent with the component and AWS's `update-linux`, an infrastructure
/// configuration, a distribution to both regions with the consumer accounts as
/// `targetAccountIds`, and the pipeline (named like the line, no schedule). Returns line →
/// pipeline ARN.
pub async fn seed_pipelines(aws: &Aws) -> BTreeMap<String, String> {
    use aws_sdk_imagebuilder::types::{AmiDistributionConfiguration, ComponentConfiguration, Distribution, Platform};
    let conf = aws.config("platform", "eu-west-1").await.unwrap();
    let ib = aws_sdk_imagebuilder::Client::new(&conf);
    let agent = std::fs::read_to_string(repo().join("examples/components/audit-agent.yml")).unwrap();
    let mut out = BTreeMap::new();
    for (line, parent) in [
        (BASTION, "ssm:/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2"),
        (ECS, "ssm:/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id"),
    ] {
        let component = ib
            .create_component()
            .name(format!("{line}-security-agent"))
            .semantic_version("1.0.0")
            .platform(Platform::Linux)
            .data(&agent)
            .client_token(format!("{line}-component"))
            .send()
            .await
            .unwrap();
        let recipe = ib
            .create_image_recipe()
            .name(line)
            .semantic_version("1.0.0")
            .parent_image(parent)
            .components(
                ComponentConfiguration::builder()
                    .component_arn("arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/x.x.x")
                    .build()
                    .unwrap(),
            )
            .components(
                ComponentConfiguration::builder()
                    .component_arn(component.component_build_version_arn().unwrap())
                    .build()
                    .unwrap(),
            )
            .client_token(format!("{line}-recipe"))
            .send()
            .await
            .unwrap();
        let infra = ib
            .create_infrastructure_configuration()
            .name(line)
            .instance_profile_name("imagebuilder-instance")
            .client_token(format!("{line}-infra"))
            .send()
            .await
            .unwrap();
        let mut distribution = ib.create_distribution_configuration().name(line).client_token(format!("{line}-dist"));
        for region in REGIONS {
            let ami = AmiDistributionConfiguration::builder()
                .name(format!("{line}-{{{{ imagebuilder:buildDate }}}}"))
                .target_account_ids("222222222222")
                .target_account_ids("333333333333")
                .build();
            distribution = distribution.distributions(
                Distribution::builder().region(region).ami_distribution_configuration(ami).build().unwrap(),
            );
        }
        let distribution = distribution.send().await.unwrap();
        let pipeline = ib
            .create_image_pipeline()
            .name(line)
            .image_recipe_arn(recipe.image_recipe_arn().unwrap())
            .infrastructure_configuration_arn(infra.infrastructure_configuration_arn().unwrap())
            .distribution_configuration_arn(distribution.distribution_configuration_arn().unwrap())
            .client_token(format!("{line}-pipeline"))
            .send()
            .await
            .unwrap();
        out.insert(line.to_string(), pipeline.image_pipeline_arn().unwrap().to_string());
    }
    out
}

/// Runs one execution of `pipeline` (as the organisation did before amictl) and returns
/// its image ARN and (account, region, AMI) per copy.
pub async fn execution(aws: &aws::Aws, pipeline: &str, token: &str) -> (String, Vec<(String, String, String)>) {
    let ib = aws::imagebuilder::client(aws, "platform", "eu-west-1").await.unwrap();
    let started =
        ib.start_image_pipeline_execution().image_pipeline_arn(pipeline).client_token(token).send().await.unwrap();
    let arn = started.image_build_version_arn().unwrap().to_string();
    let mut last = None;
    // Until a terminal state (the emulator moves one state per few polls); a FAILED or
    // CANCELLED execution is reported with its reason rather than polled on.
    for _ in 0..100 {
        let got = ib.get_image().image_build_version_arn(&arn).send().await.unwrap();
        let image = got.image().unwrap();
        last = image.state().cloned();
        if image.state().and_then(|s| s.status()).map(|s| s.as_str()) == Some("AVAILABLE") {
            let amis = image
                .output_resources()
                .unwrap()
                .amis()
                .iter()
                .map(|a| {
                    (
                        a.account_id().unwrap().to_string(),
                        a.region().unwrap().to_string(),
                        a.image().unwrap().to_string(),
                    )
                })
                .collect();
            return (arn, amis);
        }
        if matches!(image.state().and_then(|s| s.status()).map(|s| s.as_str()), Some("FAILED" | "CANCELLED")) {
            break;
        }
    }
    panic!("{arn} never became AVAILABLE: {last:?}");
}

/// The copy in `account_id`'s eu-west-1.
pub fn ami_in(amis: &[(String, String, String)], account_id: &str) -> String {
    amis.iter().find(|(a, r, _)| a == account_id && r == "eu-west-1").map(|(_, _, i)| i.clone()).unwrap()
}

/// A running `amictl serve`, its address, and what it printed.
pub struct Serving {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<String>>,
}

impl Serving {
    pub fn start(org: &Org) -> Serving {
        let mut child = org
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("amictl serve: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            panic!("serve did not start: {}", log.lock().unwrap());
        });
        Serving { child, url, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        http(&self.url, "GET", path, None, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        http(&self.url, "POST", path, token, Some(body))
    }

    /// Polls `path` until `ok` holds for its body.
    pub fn until(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (_, v) = self.get(path);
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: {v:#}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): the status and the
/// body, as JSON when it is.
pub fn http(base: &str, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap_or_else(|e| panic!("{method} {path}: {e} (got {response:?})"));
    let (head, text) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(text).unwrap_or(Value::String(text.to_string())))
}

/// `amictl … apply` processes of this org's config.
pub fn applies_of(org: &Org) -> usize {
    let needle = org.config.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle) && c.contains(" apply"))
        .count()
}
