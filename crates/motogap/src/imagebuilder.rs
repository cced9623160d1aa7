//! EC2 Image Builder, which moto lacks, modelled from the Image Builder API reference
//! (restJson1: `PUT /StartImagePipelineExecution`, `GET /GetImage?imageBuildVersionArn=…`).
//!
//! **Modelled**
//! - `CreateComponent`, `CreateImageRecipe`, `CreateInfrastructureConfiguration`,
//!   `CreateDistributionConfiguration`, `CreateImagePipeline` store what they are given and
//!   return ARNs of AWS's shape (`arn:aws:imagebuilder:<region>:<account>:image-pipeline/<name>`);
//!   `GetImagePipeline`, `ListImagePipelines` (filter `name`), `GetImageRecipe`,
//!   `GetComponent`, `ListComponents` (owner `Self` or `Amazon`, filter `name`) read them.
//!   Two AWS-managed components are there from the start (`update-linux`,
//!   `aws-cli-version-2-linux`, owner `aws`, documents written for this emulator).
//! - `StartImagePipelineExecution` creates an image `…:image/<recipe>/<version>/<build>`.
//!   The **clientToken rule**: the same token for the same pipeline returns the same image
//!   and starts nothing; the same token for another pipeline is
//!   `IdempotentParameterMismatchException`.
//! - The image moves `PENDING → BUILDING → TESTING → DISTRIBUTING → AVAILABLE`, one state
//!   per [`ImageBuilder::polls_per_state`] `GetImage` calls (time in the emulator is the
//!   caller's polling, so a killed caller leaves the execution where it was, as in AWS).
//!   Entering AVAILABLE makes the output AMIs **in moto, through its EC2 API**: per region
//!   of the distribution configuration, `CopyImage` of the recipe's parent in the
//!   pipeline's account and in each `targetAccountIds` account (the consumers own their
//!   copies), tagged `CreatedBy=EC2 Image Builder` and `Ec2ImageBuilderArn=<image ARN>`,
//!   named from `amiDistributionConfiguration.name` with `{{ imagebuilder:buildDate }}`
//!   rendered; `outputResources.amis` lists each with its account and region.
//! - A parent given as `ssm:/…` or an Image Builder managed image ARN is resolved through
//!   moto's SSM (`/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2` for the
//!   latter); an `ami-…` is used as it is.
//! - [`ImageBuilder::fail_next`] makes the next execution FAILED in a stage, with a reason;
//!   `CancelImageCreation` makes a running one CANCELLED (a finished one is
//!   `InvalidRequestException`).
//! - `ListImagePackages` (once AVAILABLE) answers the package list set by
//!   [`ImageBuilder::set_packages`]; `ListImagePipelineImages`; `ListWorkflowExecutions`
//!   and `ListWorkflowStepExecutions` give BUILD, TEST and DISTRIBUTION workflows whose
//!   steps follow the image's state.
//! - Errors as restJson1 sends them: HTTP status, `x-amzn-ErrorType` and `{"message"}`.
//!
//! **Not modelled**: schedules, image scanning, lifecycle policies, container recipes,
//! launch templates in distributions, KMS, pagination (`nextToken` is never set), the
//! recipe's block devices and working directory, IAM (every caller may do everything),
//! the instance types and subnets of infrastructure configurations, running the
//! components (an execution "succeeds" unless told to fail), and deleting anything.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use serde_json::{Value, json};

/// The AWS-managed components the emulator holds, and their versions.
const MANAGED: &[(&str, &str)] = &[("update-linux", "1.0.2"), ("aws-cli-version-2-linux", "1.0.4")];

const STATES: [&str; 5] = ["PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE"];

/// One image (a pipeline execution).
struct Run {
    image: Value,
    account: String,
    region: String,
    /// Index into [`STATES`]; terminal states are set in `image.state` directly.
    stage: usize,
    polls: u32,
    /// (stage, reason) this run fails at.
    fails: Option<(String, String)>,
    packages: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, Value>,
    runs: BTreeMap<String, Run>,
    /// clientToken → (pipeline ARN, image ARN).
    tokens: BTreeMap<String, (String, String)>,
    builds: BTreeMap<String, u32>,
    fail_next: Option<(String, String)>,
    packages: Vec<(String, String)>,
    polls_per_state: u32,
}

/// The emulator's state, shared by every connection.
pub struct ImageBuilder {
    state: Mutex<State>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        let packages = [
            ("kernel", "4.14.355-275.570.amzn2"),
            ("openssl-libs", "1:1.0.2k-24.amzn2.0.14"),
            ("bash", "4.2.46-34.amzn2"),
            ("amazon-ssm-agent", "3.3.1142.0-1.amzn2"),
        ];
        let state = State {
            packages: packages.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            polls_per_state: 1,
            ..State::default()
        };
        ImageBuilder { state: Mutex::new(state) }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An answer: status, error type (for errors), JSON body.
pub struct Answer {
    pub status: u16,
    pub error: Option<&'static str>,
    pub body: Value,
}

fn ok(body: Value) -> Answer {
    Answer { status: 200, error: None, body }
}

fn fail(status: u16, error: &'static str, message: impl Into<String>) -> Answer {
    Answer { status, error: Some(error), body: json!({ "message": message.into() }) }
}

fn not_found(what: &str) -> Answer {
    fail(404, "ResourceNotFoundException", format!("The resource {what} was not found."))
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A managed component's document: what the name says, written for this emulator.
fn managed_document(name: &str) -> &'static str {
    match name {
        "update-linux" => {
            "name: update-linux\ndescription: Updates the operating system's packages (emulated managed component).\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: UpdateOS\n        action: ExecuteBash\n        inputs:\n          commands:\n            - if command -v dnf >/dev/null; then dnf -y update; elif command -v yum >/dev/null; then yum -y update; elif command -v dpkg >/dev/null; then dpkg --audit; fi\n"
        }
        _ => {
            "name: aws-cli-version-2-linux\ndescription: Installs the AWS CLI version 2 (emulated managed component).\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Install\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo \"would install the AWS CLI {{ cli-version\"\n  - name: validate\n    steps:\n      - name: Present\n        action: ExecuteBash\n        inputs:\n          commands:\n            - 'true'\n"
        }
    }
}

impl ImageBuilder {
    /// How many `GetImage` calls each state lasts (1 at start).
    pub fn polls_per_state(&self, polls: u32) {
        lock(&self.state).polls_per_state = polls.max(1);
    }

    /// The next execution fails when it reaches `stage` (`BUILDING`, `TESTING`,
    /// `DISTRIBUTING`), with `reason` as its `state.reason`.
    pub fn fail_next(&self, stage: &str, reason: &str) {
        lock(&self.state).fail_next = Some((stage.to_string(), reason.to_string()));
    }

    /// The packages `ListImagePackages` reports for executions started from now on.
    pub fn set_packages(&self, packages: &[(&str, &str)]) {
        lock(&self.state).packages = packages.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    }

    /// Executions started so far, by pipeline ARN.
    pub fn executions(&self) -> BTreeMap<String, Vec<String>> {
        let st = lock(&self.state);
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (arn, run) in &st.runs {
            let pipeline = run.image["sourcePipelineArn"].as_str().unwrap_or_default().to_string();
            out.entry(pipeline).or_default().push(arn.clone());
        }
        out
    }

    /// Answers one Image Builder request. `upstream` is moto, for the AMIs and parameters.
    pub fn handle(
        &self,
        upstream: SocketAddr,
        account: &str,
        region: &str,
        op: &str,
        query: &str,
        body: &[u8],
    ) -> Answer {
        let input: Value = serde_json::from_slice(body).unwrap_or(json!({}));
        let q = |key: &str| query_value(query, key);
        let arn = |kind: &str, name: &str| format!("arn:aws:imagebuilder:{region}:{account}:{kind}/{name}");
        let token = input["clientToken"].as_str().unwrap_or_default().to_string();
        match op {
            "CreateComponent" => {
                let (name, version) = (text(&input, "name"), text(&input, "semanticVersion"));
                let id = arn("component", &format!("{}/{version}/1", name.to_lowercase()));
                let data = input["data"].as_str().unwrap_or_default();
                let component = json!({
                    "arn": id, "name": name, "version": version, "platform": input["platform"], "owner": account,
                    "type": "BUILD", "data": data, "description": input["description"], "dateCreated": now(),
                    "state": {"status": "ACTIVE"},
                });
                self.create(id.clone(), component);
                ok(json!({"requestId": "motogap", "clientToken": token, "componentBuildVersionArn": id}))
            }
            "CreateImageRecipe" => {
                let (name, version) = (text(&input, "name"), text(&input, "semanticVersion"));
                let id = arn("image-recipe", &format!("{}/{version}", name.to_lowercase()));
                let recipe = json!({
                    "arn": id, "type": "AMI", "name": name, "version": version, "owner": account,
                    "platform": "Linux", "parentImage": input["parentImage"], "components": input["components"],
                    "description": input["description"], "dateCreated": now(), "tags": input["tags"],
                });
                self.create(id.clone(), recipe);
                ok(json!({"requestId": "motogap", "clientToken": token, "imageRecipeArn": id}))
            }
            "CreateInfrastructureConfiguration" => {
                let id = arn("infrastructure-configuration", &text(&input, "name").to_lowercase());
                let mut config = input.clone();
                config["arn"] = json!(id);
                self.create(id.clone(), config);
                ok(json!({"requestId": "motogap", "clientToken": token, "infrastructureConfigurationArn": id}))
            }
            "CreateDistributionConfiguration" => {
                let id = arn("distribution-configuration", &text(&input, "name").to_lowercase());
                let mut config = input.clone();
                config["arn"] = json!(id);
                self.create(id.clone(), config);
                ok(json!({"requestId": "motogap", "clientToken": token, "distributionConfigurationArn": id}))
            }
            "CreateImagePipeline" => {
                let id = arn("image-pipeline", &text(&input, "name").to_lowercase());
                let recipe = text(&input, "imageRecipeArn");
                if !lock(&self.state).resources.contains_key(&recipe) {
                    return fail(
                        400,
                        "InvalidParameterValueException",
                        format!("The image recipe {recipe} does not exist."),
                    );
                }
                let pipeline = json!({
                    "arn": id, "name": input["name"], "description": input["description"], "platform": "Linux",
                    "imageRecipeArn": recipe,
                    "infrastructureConfigurationArn": input["infrastructureConfigurationArn"],
                    "distributionConfigurationArn": input["distributionConfigurationArn"],
                    "status": input["status"].as_str().unwrap_or("ENABLED"), "dateCreated": now(),
                    "schedule": input["schedule"], "tags": input["tags"],
                });
                self.create(id.clone(), pipeline);
                ok(json!({"requestId": "motogap", "clientToken": token, "imagePipelineArn": id}))
            }
            "GetImagePipeline" => match self.get(&q("imagePipelineArn")) {
                Some(p) => ok(json!({"requestId": "motogap", "imagePipeline": p})),
                None => not_found(&q("imagePipelineArn")),
            },
            "GetImageRecipe" => match self.get(&q("imageRecipeArn")) {
                Some(r) => ok(json!({"requestId": "motogap", "imageRecipe": r})),
                None => not_found(&q("imageRecipeArn")),
            },
            "GetComponent" => {
                let id = q("componentBuildVersionArn");
                match self.component(&id) {
                    Some(c) => ok(json!({"requestId": "motogap", "component": c})),
                    None => not_found(&id),
                }
            }
            "ListComponents" => self.list_components(region, account, &input),
            "ListImagePipelines" => {
                let names = filter_values(&input, "name");
                let st = lock(&self.state);
                let list: Vec<&Value> = st
                    .resources
                    .iter()
                    .filter(|(k, _)| k.contains(":image-pipeline/") && k.contains(&format!(":{region}:{account}:")))
                    .map(|(_, v)| v)
                    .filter(|p| names.is_empty() || names.iter().any(|n| p["name"].as_str() == Some(n)))
                    .collect();
                ok(json!({"requestId": "motogap", "imagePipelineList": list}))
            }
            "StartImagePipelineExecution" => self.start(account, region, &input),
            "GetImage" => self.get_image(upstream, &q("imageBuildVersionArn")),
            "CancelImageCreation" => {
                let id = text(&input, "imageBuildVersionArn");
                let mut st = lock(&self.state);
                let Some(run) = st.runs.get_mut(&id) else { return not_found(&id) };
                let status = run.image["state"]["status"].as_str().unwrap_or_default().to_string();
                if ["AVAILABLE", "FAILED", "CANCELLED"].contains(&status.as_str()) {
                    return fail(
                        400,
                        "InvalidRequestException",
                        format!("The image {id} is {status} and cannot be cancelled."),
                    );
                }
                run.image["state"] = json!({"status": "CANCELLED", "reason": "Cancelled by the caller."});
                ok(json!({"requestId": "motogap", "clientToken": token, "imageBuildVersionArn": id}))
            }
            "ListImagePackages" => {
                let id = text(&input, "imageBuildVersionArn");
                let st = lock(&self.state);
                let Some(run) = st.runs.get(&id) else { return not_found(&id) };
                if run.image["state"]["status"] != "AVAILABLE" {
                    return fail(400, "InvalidRequestException", format!("The image {id} is not AVAILABLE."));
                }
                let list: Vec<Value> =
                    run.packages.iter().map(|(n, v)| json!({"packageName": n, "packageVersion": v})).collect();
                ok(json!({"requestId": "motogap", "imagePackageList": list}))
            }
            "ListImagePipelineImages" => {
                let pipeline = text(&input, "imagePipelineArn");
                let st = lock(&self.state);
                if !st.resources.contains_key(&pipeline) {
                    return not_found(&pipeline);
                }
                let list: Vec<Value> = st
                    .runs
                    .values()
                    .filter(|r| r.image["sourcePipelineArn"] == pipeline.as_str())
                    .map(|r| {
                        let i = &r.image;
                        json!({
                            "arn": i["arn"], "name": i["name"], "type": "AMI", "version": i["version"],
                            "platform": "Linux", "state": i["state"], "owner": r.account, "dateCreated": i["dateCreated"],
                            "outputResources": i["outputResources"], "buildType": "USER_INITIATED",
                            "imageSource": "CUSTOM",
                        })
                    })
                    .collect();
                ok(json!({"requestId": "motogap", "imageSummaryList": list}))
            }
            "ListWorkflowExecutions" => {
                let id = text(&input, "imageBuildVersionArn");
                let st = lock(&self.state);
                let Some(run) = st.runs.get(&id) else { return not_found(&id) };
                ok(json!({"requestId": "motogap", "imageBuildVersionArn": id, "workflowExecutions": workflows(run)}))
            }
            "ListWorkflowStepExecutions" => {
                let wf = text(&input, "workflowExecutionId");
                let st = lock(&self.state);
                let Some((run, kind)) = st.runs.values().find_map(|r| {
                    ["BUILD", "TEST", "DISTRIBUTION"].into_iter().find(|k| workflow_id(r, k) == wf).map(|k| (r, k))
                }) else {
                    return not_found(&wf);
                };
                ok(json!({
                    "requestId": "motogap", "workflowExecutionId": wf, "imageBuildVersionArn": run.image["arn"],
                    "steps": steps(run, kind),
                }))
            }
            other => fail(400, "InvalidRequestException", format!("motogap does not emulate Image Builder's {other}")),
        }
    }

    fn create(&self, arn: String, value: Value) {
        lock(&self.state).resources.insert(arn, value);
    }

    fn get(&self, arn: &str) -> Option<Value> {
        lock(&self.state).resources.get(arn).cloned()
    }

    /// `GetComponent`'s lookup: a build version ARN names one build; a version ARN (its
    /// nodes may be `x` in trailing positions) resolves to the newest matching build.
    fn component(&self, requested: &str) -> Option<Value> {
        let (prefix, rest) = requested.split_once(":component/")?;
        let mut parts = rest.split('/');
        let (name, pattern, build) = (parts.next()?, parts.next()?, parts.next());
        let wanted: Vec<&str> = pattern.split('.').collect();
        let matches = |version: &str| {
            let nodes: Vec<&str> = version.split('.').collect();
            nodes.len() == 3 && wanted.len() == 3 && wanted.iter().zip(&nodes).all(|(w, n)| *w == "x" || w == n)
        };
        let mut found: Vec<Value> = lock(&self.state)
            .resources
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{prefix}:component/{name}/")))
            .map(|(_, v)| v.clone())
            .collect();
        let region = prefix.split(':').nth(3).unwrap_or_default();
        if prefix.ends_with(":aws") {
            for (n, v) in MANAGED {
                if *n == name {
                    found.push(managed(&format!("arn:aws:imagebuilder:{region}:aws:component/{n}/{v}/1"))?);
                }
            }
        }
        found.retain(|c| {
            let arn = c["arn"].as_str().unwrap_or_default();
            matches(c["version"].as_str().unwrap_or_default())
                && build.is_none_or(|b| arn.rsplit('/').next() == Some(b))
        });
        let key = |c: &Value| -> Vec<u64> {
            c["version"].as_str().unwrap_or_default().split('.').filter_map(|n| n.parse().ok()).collect()
        };
        found.into_iter().max_by_key(key)
    }

    fn list_components(&self, region: &str, account: &str, input: &Value) -> Answer {
        let names = filter_values(input, "name");
        let amazon = input["owner"].as_str() == Some("Amazon");
        let mut list: Vec<Value> = Vec::new();
        if amazon {
            for (name, version) in MANAGED {
                let arn = format!("arn:aws:imagebuilder:{region}:aws:component/{name}/{version}");
                list.push(json!({"arn": arn, "name": name, "version": version, "platform": "Linux", "owner": "Amazon", "type": "BUILD"}));
            }
        } else {
            let st = lock(&self.state);
            for (arn, c) in st.resources.iter().filter(|(k, _)| k.contains(&format!(":{region}:{account}:component/")))
            {
                let version_arn = arn.rsplit_once('/').map_or(arn.as_str(), |(a, _)| a);
                list.push(json!({"arn": version_arn, "name": c["name"], "version": c["version"], "platform": c["platform"], "owner": account, "type": "BUILD"}));
            }
        }
        list.retain(|c| names.is_empty() || names.iter().any(|n| c["name"].as_str() == Some(n)));
        ok(json!({"requestId": "motogap", "componentVersionList": list}))
    }

    fn start(&self, account: &str, region: &str, input: &Value) -> Answer {
        let pipeline_arn = text(input, "imagePipelineArn");
        let token = text(input, "clientToken");
        let mut st = lock(&self.state);
        if let Some((pipeline, image)) = st.tokens.get(&token) {
            if *pipeline == pipeline_arn {
                return ok(json!({"requestId": "motogap", "clientToken": token, "imageBuildVersionArn": image}));
            }
            return fail(
                400,
                "IdempotentParameterMismatchException",
                format!("The client token {token} was used with different parameters."),
            );
        }
        let Some(pipeline) = st.resources.get(&pipeline_arn).cloned() else { return not_found(&pipeline_arn) };
        if pipeline["status"] == "DISABLED" {
            return fail(400, "InvalidRequestException", format!("The pipeline {pipeline_arn} is disabled."));
        }
        let recipe_arn = pipeline["imageRecipeArn"].as_str().unwrap_or_default().to_string();
        let Some(recipe) = st.resources.get(&recipe_arn).cloned() else { return not_found(&recipe_arn) };
        let distribution = pipeline["distributionConfigurationArn"]
            .as_str()
            .and_then(|d| st.resources.get(d).cloned())
            .unwrap_or(json!({}));
        let (rname, rversion) = (text(&recipe, "name").to_lowercase(), text(&recipe, "version"));
        let key = format!("{rname}/{rversion}");
        let build = {
            let n = st.builds.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        let image_arn = format!("arn:aws:imagebuilder:{region}:{account}:image/{key}/{build}");
        let image = json!({
            "arn": image_arn, "type": "AMI", "name": recipe["name"], "version": format!("{rversion}/{build}"),
            "platform": "Linux", "state": {"status": "PENDING"}, "imageRecipe": recipe,
            "sourcePipelineName": pipeline["name"], "sourcePipelineArn": pipeline_arn,
            "distributionConfiguration": distribution, "dateCreated": now(),
            "outputResources": {"amis": []}, "buildType": "USER_INITIATED", "imageSource": "CUSTOM",
        });
        let fails = st.fail_next.take();
        let packages = st.packages.clone();
        st.runs.insert(
            image_arn.clone(),
            Run { image, account: account.into(), region: region.into(), stage: 0, polls: 0, fails, packages },
        );
        st.tokens.insert(token.clone(), (pipeline_arn, image_arn.clone()));
        ok(json!({"requestId": "motogap", "clientToken": token, "imageBuildVersionArn": image_arn}))
    }

    fn get_image(&self, upstream: SocketAddr, arn: &str) -> Answer {
        let mut st = lock(&self.state);
        let per_state = st.polls_per_state;
        let Some(run) = st.runs.get_mut(arn) else { return not_found(arn) };
        let status = run.image["state"]["status"].as_str().unwrap_or_default().to_string();
        let terminal = ["AVAILABLE", "FAILED", "CANCELLED"].contains(&status.as_str());
        if !terminal {
            run.polls += 1;
            if run.polls >= per_state {
                run.polls = 0;
                run.stage += 1;
                let next = STATES[run.stage.min(STATES.len() - 1)];
                match &run.fails {
                    Some((stage, reason)) if stage == next => {
                        run.image["state"] = json!({"status": "FAILED", "reason": reason});
                    }
                    _ if next == "AVAILABLE" => match distribute(upstream, run) {
                        Ok(amis) => {
                            run.image["outputResources"] = json!({"amis": amis});
                            run.image["state"] = json!({"status": "AVAILABLE"});
                        }
                        Err(e) => {
                            run.image["state"] =
                                json!({"status": "FAILED", "reason": format!("Distribution failed: {e}")});
                        }
                    },
                    _ => run.image["state"] = json!({"status": next}),
                }
            }
        }
        ok(json!({"requestId": "motogap", "image": run.image}))
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn filter_values(input: &Value, name: &str) -> Vec<String> {
    input["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == name)
        .flat_map(|f| f["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// An AWS-managed component by its build version ARN (`…:aws:component/<name>/<version>/1`).
fn managed(arn: &str) -> Option<Value> {
    let rest = arn.split(":aws:component/").nth(1)?;
    let mut parts = rest.split('/');
    let (name, version) = (parts.next()?, parts.next()?);
    if !MANAGED.iter().any(|(n, _)| *n == name) {
        return None;
    }
    Some(json!({
        "arn": arn, "name": name, "version": version, "platform": "Linux", "owner": "Amazon", "type": "BUILD",
        "data": managed_document(name), "dateCreated": "2025-01-01T00:00:00.000Z", "state": {"status": "ACTIVE"},
    }))
}

fn query_value(query: &str, key: &str) -> String {
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}="))).map(percent_decode).unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) =
                bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(&String::from_utf8_lossy(h), 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn workflow_id(run: &Run, kind: &str) -> String {
    let arn = run.image["arn"].as_str().unwrap_or_default();
    let tail: String = arn.rsplit(['/', ':']).take(3).collect::<Vec<_>>().join("-");
    format!("wf-{}-{}", kind.to_lowercase(), tail.replace('.', "_"))
}

/// Where a run is: how far each workflow got.
fn progress(run: &Run) -> (&'static str, usize) {
    let status = run.image["state"]["status"].as_str().unwrap_or_default();
    match status {
        "FAILED" | "CANCELLED" => ("FAILED", run.stage),
        _ => ("", run.stage),
    }
}

fn workflow_status(run: &Run, kind: &str) -> &'static str {
    let (failed, stage) = progress(run);
    let own = match kind {
        "BUILD" => 1,
        "TEST" => 2,
        _ => 3,
    };
    match stage.cmp(&own) {
        std::cmp::Ordering::Less => "PENDING",
        std::cmp::Ordering::Equal if !failed.is_empty() => "FAILED",
        std::cmp::Ordering::Equal => "RUNNING",
        std::cmp::Ordering::Greater => "COMPLETED",
    }
}

fn workflows(run: &Run) -> Vec<Value> {
    ["BUILD", "TEST", "DISTRIBUTION"]
        .into_iter()
        .filter(|k| workflow_status(run, k) != "PENDING")
        .map(|kind| {
            let steps = steps(run, kind);
            let done = steps.iter().filter(|s| s["status"] == "COMPLETED").count();
            let failed = steps.iter().filter(|s| s["status"] == "FAILED").count();
            json!({
                "workflowBuildVersionArn": format!("arn:aws:imagebuilder:{}:aws:workflow/{}/{}-default/1.0.0/1", run.region, kind.to_lowercase(), kind.to_lowercase()),
                "workflowExecutionId": workflow_id(run, kind), "type": kind, "status": workflow_status(run, kind),
                "message": run.image["state"]["reason"].as_str().filter(|_| failed > 0).unwrap_or_default(),
                "totalStepCount": steps.len(), "totalStepsSucceeded": done, "totalStepsFailed": failed,
                "totalStepsSkipped": 0, "startTime": run.image["dateCreated"],
            })
        })
        .collect()
}

fn steps(run: &Run, kind: &str) -> Vec<Value> {
    let names: &[(&str, &str)] = match kind {
        "BUILD" => &[
            ("LaunchBuildInstance", "LaunchInstance"),
            ("ApplyBuildComponents", "ExecuteComponents"),
            ("CreateOutputAMI", "CreateImage"),
            ("TerminateBuildInstance", "TerminateInstance"),
        ],
        "TEST" => &[
            ("LaunchTestInstance", "LaunchInstance"),
            ("RunTestSuite", "RunCommand"),
            ("TerminateTestInstance", "TerminateInstance"),
        ],
        _ => &[("DistributeImage", "DistributeImage")],
    };
    let status = workflow_status(run, kind);
    let reason = run.image["state"]["reason"].as_str().unwrap_or_default();
    names
        .iter()
        .enumerate()
        .map(|(i, (name, action))| {
            let s = match status {
                "COMPLETED" => "COMPLETED",
                "FAILED" if i + 1 == names.len().min(2) => "FAILED",
                "FAILED" if i + 1 < names.len().min(2) => "COMPLETED",
                "FAILED" => "SKIPPED",
                _ if i == 0 => "RUNNING",
                _ => "PENDING",
            };
            let message = if s == "FAILED" { reason } else { "" };
            json!({
                "stepExecutionId": format!("step-{}-{i}", workflow_id(run, kind)), "name": name, "action": action,
                "status": s, "rollbackStatus": "SKIPPED", "message": message, "startTime": run.image["dateCreated"],
            })
        })
        .collect()
}

/// Makes the output AMIs in moto and returns `outputResources.amis`.
fn distribute(upstream: SocketAddr, run: &Run) -> io::Result<Vec<Value>> {
    let recipe = &run.image["imageRecipe"];
    let parent =
        resolve_parent(upstream, &run.account, &run.region, recipe["parentImage"].as_str().unwrap_or_default())?;
    let date = jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S%.3fZ").to_string();
    let image_arn = run.image["arn"].as_str().unwrap_or_default().to_string();
    let mut distributions: Vec<Value> =
        run.image["distributionConfiguration"]["distributions"].as_array().cloned().unwrap_or_default();
    if distributions.is_empty() {
        distributions.push(json!({"region": run.region}));
    }
    let mut amis = Vec::new();
    for d in distributions {
        let region = d["region"].as_str().unwrap_or(&run.region).to_string();
        let ami = &d["amiDistributionConfiguration"];
        let name = ami["name"]
            .as_str()
            .map(|n| render_name(n, &date, run))
            .unwrap_or_else(|| format!("{}-{date}", recipe["name"].as_str().unwrap_or("image")));
        let mut accounts = vec![run.account.clone()];
        accounts.extend(
            ami["targetAccountIds"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)),
        );
        accounts.dedup();
        for account in accounts {
            let id = copy_image(upstream, &account, &region, &run.region, &parent, &name)?;
            tag_image(upstream, &account, &region, &id, &image_arn)?;
            amis.push(json!({
                "region": region, "image": id, "name": name, "description": ami["description"],
                "accountId": account, "state": {"status": "AVAILABLE"},
            }));
        }
    }
    Ok(amis)
}

fn render_name(template: &str, date: &str, run: &Run) -> String {
    let version = run.image["version"].as_str().unwrap_or_default().replace('/', ".");
    let mut out = template.to_string();
    for (key, value) in [("imagebuilder:buildDate", date), ("imagebuilder:buildVersion", version.as_str())] {
        for form in [format!("{{{{ {key} }}}}"), format!("{{{{{key}}}}}")] {
            out = out.replace(&form, value);
        }
    }
    out
}

fn resolve_parent(upstream: SocketAddr, account: &str, region: &str, parent: &str) -> io::Result<String> {
    if parent.starts_with("ami-") {
        return Ok(parent.to_string());
    }
    let name = match parent.strip_prefix("ssm:") {
        Some(n) => n.to_string(),
        // A managed image ARN: Amazon Linux 2's latest, the only one the emulator knows.
        None => "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2".to_string(),
    };
    let body = json!({ "Name": name }).to_string();
    let (status, text) = call(
        upstream,
        account,
        region,
        "ssm",
        &[("x-amz-target", "AmazonSSM.GetParameter"), ("content-type", "application/x-amz-json-1.1")],
        body.as_bytes(),
    )?;
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    match v["Parameter"]["Value"].as_str() {
        Some(id) if status == 200 => Ok(id.to_string()),
        _ => Err(io::Error::other(format!("the parent {parent} does not resolve ({status}: {text})"))),
    }
}

fn copy_image(
    upstream: SocketAddr,
    account: &str,
    region: &str,
    source_region: &str,
    source: &str,
    name: &str,
) -> io::Result<String> {
    let body = format!(
        "Action=CopyImage&Version=2016-11-15&SourceImageId={source}&SourceRegion={source_region}&Name={}",
        form_encode(name)
    );
    let (status, text) = call(
        upstream,
        account,
        region,
        "ec2",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )?;
    let id = text.split("<imageId>").nth(1).and_then(|t| t.split("</imageId>").next()).map(str::to_string);
    match id {
        Some(id) if status == 200 => Ok(id),
        _ => Err(io::Error::other(format!("CopyImage in {account}/{region} answered {status}: {text}"))),
    }
}

fn tag_image(upstream: SocketAddr, account: &str, region: &str, id: &str, image_arn: &str) -> io::Result<()> {
    let body = format!(
        "Action=CreateTags&Version=2016-11-15&ResourceId.1={id}&Tag.1.Key=CreatedBy&Tag.1.Value={}&Tag.2.Key=Ec2ImageBuilderArn&Tag.2.Value={}",
        form_encode("EC2 Image Builder"),
        form_encode(image_arn)
    );
    let (status, text) = call(
        upstream,
        account,
        region,
        "ec2",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )?;
    if status == 200 { Ok(()) } else { Err(io::Error::other(format!("CreateTags answered {status}: {text}"))) }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request to moto as `account` in `region`: (status, body).
fn call(
    upstream: SocketAddr,
    account: &str,
    region: &str,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String)> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=motogap/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    crate::post(upstream, &auth, Some(account), headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ib() -> (ImageBuilder, SocketAddr) {
        (ImageBuilder::default(), "127.0.0.1:9".parse().unwrap())
    }

    fn pipeline(ib: &ImageBuilder, up: SocketAddr) -> String {
        let h = |op: &str, body: Value| ib.handle(up, "111111111111", "eu-west-1", op, "", body.to_string().as_bytes());
        let recipe = h(
            "CreateImageRecipe",
            json!({"name": "weco", "semanticVersion": "1.0.0", "parentImage": "ami-0123456789abcdef0", "components": []}),
        );
        let r = recipe.body["imageRecipeArn"].as_str().unwrap().to_string();
        let p = h("CreateImagePipeline", json!({"name": "weco-pipeline", "imageRecipeArn": r}));
        p.body["imagePipelineArn"].as_str().unwrap().to_string()
    }

    #[test]
    fn get_component_resolves_wildcard_versions_to_the_newest_build() {
        let (ib, up) = ib();
        let h = |op: &str, query: &str, body: Value| {
            ib.handle(up, "111111111111", "eu-west-1", op, query, body.to_string().as_bytes())
        };
        for v in ["1.0.0", "1.2.0", "2.0.0"] {
            h(
                "CreateComponent",
                "",
                json!({"name": "agent", "semanticVersion": v, "platform": "Linux", "data": format!("v{v}")}),
            );
        }
        let get = |arn: &str| {
            let q = format!("componentBuildVersionArn={}", form_encode(arn));
            h("GetComponent", &q, json!({}))
        };
        let own = "arn:aws:imagebuilder:eu-west-1:111111111111:component/agent";
        assert_eq!(get(&format!("{own}/1.x.x")).body["component"]["version"], "1.2.0");
        assert_eq!(get(&format!("{own}/x.x.x")).body["component"]["data"], "v2.0.0");
        assert_eq!(get(&format!("{own}/1.0.0/1")).body["component"]["version"], "1.0.0");
        assert_eq!(get(&format!("{own}/3.x.x")).status, 404);
        let managed = get("arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/x.x.x");
        assert_eq!(
            managed.body["component"]["arn"],
            "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/1.0.2/1"
        );
        assert!(managed.body["component"]["data"].as_str().unwrap().contains("name: update-linux"));
    }

    #[test]
    fn a_client_token_starts_one_execution_and_is_bound_to_its_pipeline() {
        let (ib, up) = ib();
        let p = pipeline(&ib, up);
        let start = |token: &str, pipeline: &str| {
            ib.handle(
                up,
                "111111111111",
                "eu-west-1",
                "StartImagePipelineExecution",
                "",
                json!({"imagePipelineArn": pipeline, "clientToken": token}).to_string().as_bytes(),
            )
        };
        let first = start("build-1", &p);
        let again = start("build-1", &p);
        assert_eq!(first.body["imageBuildVersionArn"], again.body["imageBuildVersionArn"]);
        assert!(first.body["imageBuildVersionArn"].as_str().unwrap().ends_with(":image/weco/1.0.0/1"));
        assert_eq!(ib.executions()[&p].len(), 1, "a retried start starts nothing");
        let other = start("build-2", &p);
        assert!(other.body["imageBuildVersionArn"].as_str().unwrap().ends_with("/1.0.0/2"));
        let mismatch = start("build-1", "arn:aws:imagebuilder:eu-west-1:111111111111:image-pipeline/other");
        assert_eq!(mismatch.error, Some("IdempotentParameterMismatchException"));
    }

    #[test]
    fn an_execution_moves_one_state_per_poll_and_fails_or_cancels_as_told() {
        let (ib, up) = ib();
        let p = pipeline(&ib, up);
        ib.fail_next("TESTING", "Test phase failed: RunTestSuite exited 1");
        let started = ib.handle(
            up,
            "111111111111",
            "eu-west-1",
            "StartImagePipelineExecution",
            "",
            json!({"imagePipelineArn": p, "clientToken": "t"}).to_string().as_bytes(),
        );
        let arn = started.body["imageBuildVersionArn"].as_str().unwrap().to_string();
        let query = format!("imageBuildVersionArn={}", form_encode(&arn));
        let status = |ib: &ImageBuilder| {
            ib.handle(up, "111111111111", "eu-west-1", "GetImage", &query, b"").body["image"]["state"].clone()
        };
        assert_eq!(status(&ib)["status"], "BUILDING");
        let failed = status(&ib);
        assert_eq!(failed["status"], "FAILED");
        assert_eq!(failed["reason"], "Test phase failed: RunTestSuite exited 1");
        assert_eq!(status(&ib)["status"], "FAILED", "terminal states stay");
        let body = json!({"imageBuildVersionArn": arn, "clientToken": "c"}).to_string();
        let cancel = ib.handle(up, "111111111111", "eu-west-1", "CancelImageCreation", "", body.as_bytes());
        assert_eq!(cancel.error, Some("InvalidRequestException"), "a finished image cannot be cancelled");
        let wf = ib.handle(up, "111111111111", "eu-west-1", "ListWorkflowExecutions", "", body.as_bytes());
        let kinds: Vec<(&str, &str)> = wf.body["workflowExecutions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["type"].as_str().unwrap(), w["status"].as_str().unwrap()))
            .collect();
        assert_eq!(kinds, [("BUILD", "COMPLETED"), ("TEST", "FAILED")]);
    }

    #[test]
    fn build_dates_render_in_ami_names() {
        let run = Run {
            image: json!({"version": "1.0.0/3"}),
            account: "1".into(),
            region: "r".into(),
            stage: 0,
            polls: 0,
            fails: None,
            packages: Vec::new(),
        };
        assert_eq!(
            render_name("weco-amzn2-{{ imagebuilder:buildDate }}", "2026-12-01T10-00-00.000Z", &run),
            "weco-amzn2-2026-12-01T10-00-00.000Z"
        );
        assert_eq!(render_name("x-{{imagebuilder:buildVersion}}", "d", &run), "x-1.0.0.3");
    }
}
