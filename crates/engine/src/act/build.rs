//! Build: a new version from exactly the parent the plan named, tested, then published.

use std::sync::Mutex;

use catalog::{BuildState, CatalogError, ComponentUse, NewBuild};
use policy::Action;
use provider::{Act, BuildEvents, BuildJob, ParentRef, VersionRef};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::{Engine, EngineError};

/// Records what a build reports as it goes: the parent at once, `testing` when tests start.
struct Events<'a> {
    engine: &'a Engine,
    build_id: &'a str,
    subject: String,
    /// The first error recording failed with (the build cannot be stopped from here).
    error: Mutex<Option<CatalogError>>,
}

impl Events<'_> {
    fn keep(&self, r: Result<(), CatalogError>) {
        if let Err(e) = r {
            self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        }
    }
}

impl BuildEvents for Events<'_> {
    fn parent(&self, p: &ParentRef) {
        self.keep(self.engine.catalog().set_parent(self.build_id, &p.id, &p.name, &p.created));
    }

    fn testing(&self) {
        let now = self.engine.now().to_string();
        let cat = self.engine.catalog();
        // A followed build may have reached testing under the run that started it.
        match cat.state(self.build_id) {
            Ok(Some(BuildState::Testing)) => {}
            Ok(_) => self.keep(cat.set_state(self.build_id, BuildState::Testing, None, &now)),
            Err(e) => self.keep(Err(e)),
        }
    }

    fn status(&self, text: &str) {
        self.engine.progress().status(&format!("{}: {text}", self.subject));
    }

    fn started(&self, execution: &str) {
        self.keep(self.engine.catalog().set_execution(self.build_id, execution));
    }
}

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Build { image, parent, targets, .. } = a else { unreachable!("build::run on {a:?}") };
    let cfg = engine.config();
    let line = engine.line(image)?;
    let spec = cfg.images.get(image).ok_or_else(|| EngineError::Failed(format!("no image line `{image}`")))?;
    let uses: Vec<ComponentUse> = spec
        .components
        .iter()
        .filter_map(|c| cfg.components.get(c))
        .map(|c| ComponentUse { name: c.name.clone(), version: c.version.clone(), sha256: c.sha256.clone() })
        .collect();
    let build_id = uuid::Uuid::new_v4().to_string();
    let started = engine.now();
    let reasons = a.reasons_text();
    let log_dir = cfg.work_dir.join("builds").join(&build_id).join("logs");
    let version = {
        let mut cat = engine.catalog();
        let version = cat.next_version(image, &started.strftime("%Y.%m.%d").to_string())?;
        let reason = serde_json::to_value(a.reasons()).unwrap_or_default();
        let planned = parent.clone().unwrap_or(ParentRef {
            id: String::new(),
            name: spec.parent.to_string(),
            created: String::new(),
        });
        cat.insert_build(&NewBuild {
            build_id: &build_id,
            image,
            version: &version,
            reason: &reason,
            recipe_hash: &spec.recipe_hash,
            parent_id: &planned.id,
            parent_name: &planned.name,
            parent_created: &planned.created,
            started_at: &started.to_string(),
            log_dir: &log_dir.display().to_string(),
            components: &uses,
            runner: &std::process::id().to_string(),
        })?;
        version
    };
    let subject = VersionRef::new(image, &version).to_string();
    let intent = json!({
        "build_id": build_id, "recipe": spec.recipe_hash, "parent": parent, "parent_spec": spec.parent.to_string(),
        "components": uses, "targets": targets, "builder": line.builder.kind(),
    });
    let built = engine.recorded(Act::Build, &subject, &reasons, intent, || {
        engine.catalog().set_state(&build_id, BuildState::Building, None, &engine.now().to_string())?;
        let job = Job { image, version: &version, build_id: &build_id, parent: parent.as_ref(), log_dir: &log_dir };
        build_once(engine, line, &job, None, &subject, "built and tested")
    })?;
    let summary = report(engine, &subject, &version, &build_id, &built, &reasons);
    publish_built(engine, line, image, &version, &build_id, &built, targets, summary)
}

/// Follows a build a dead run left whose execution goes on in the cloud (`Recover` with
/// `follow`): the builder picks up the recorded execution (or finds it by the build's
/// token), waits for its end, and what it made is recorded and published as if this run
/// had started it.
pub(super) fn follow(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Recover { image, version, build_id, .. } = a else { unreachable!("build::follow on {a:?}") };
    let line = engine.line(image)?;
    let cfg = engine.config();
    let recorded = engine
        .catalog()
        .versions(Some(image))?
        .into_iter()
        .find(|v| &v.build_id == build_id)
        .ok_or_else(|| EngineError::Failed(format!("no build {build_id} of {image} in the state")))?;
    let parent = (!recorded.parent_id.is_empty()).then(|| ParentRef {
        id: recorded.parent_id.clone(),
        name: recorded.parent_name.clone(),
        created: recorded.parent_created.clone(),
    });
    let targets: Vec<provider::Target> =
        match (cfg.images.get(image).and_then(|i| i.distribute.as_ref()), cfg.platform()) {
            (Some(d), Some(p)) => d.targets(&p.name).into_iter().collect(),
            _ => Vec::new(),
        };
    let log_dir = std::path::PathBuf::from(&recorded.log_dir);
    let subject = a.subject();
    let reasons = a.reasons_text();
    let execution = (!recorded.execution.is_empty()).then_some(recorded.execution.as_str());
    engine.progress().status(&format!("{subject}: following the interrupted build's execution"));
    let intent = json!({"build_id": build_id, "execution": execution, "follow": true, "builder": line.builder.kind()});
    let built = engine.recorded(Act::Recover, &subject, &reasons, intent, || {
        let job = Job { image, version, build_id, parent: parent.as_ref(), log_dir: &log_dir };
        build_once(engine, line, &job, execution, &subject, "followed to its end, built and tested")
    })?;
    let summary = report(engine, &subject, version, build_id, &built, &reasons);
    publish_built(engine, line, image, version, build_id, &built, &targets, summary)
}

/// What one build works on.
struct Job<'a> {
    image: &'a str,
    version: &'a str,
    build_id: &'a str,
    parent: Option<&'a ParentRef>,
    log_dir: &'a std::path::Path,
}

/// Runs the builder once and records what it made (or why it failed).
fn build_once(
    engine: &Engine,
    line: &crate::Line,
    j: &Job<'_>,
    execution: Option<&str>,
    subject: &str,
    done: &str,
) -> Result<Done, Fail> {
    let events = Events { engine, build_id: j.build_id, subject: subject.to_string(), error: Mutex::new(None) };
    let job = BuildJob {
        build_id: j.build_id,
        image: j.image,
        version: j.version,
        parent: j.parent,
        log_dir: j.log_dir,
        cancel: engine.cancel(),
        execution,
    };
    let result = line.builder.build(&job, &events);
    if let Some(e) = events.error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(Fail::from(e));
    }
    let (build_id, version) = (j.build_id, j.version);
    let mut cat = engine.catalog();
    match result {
        Ok(out) => {
            cat.record_outputs(build_id, &out.packages, &out.artifacts, &out.tests)?;
            let ran: Vec<ComponentUse> = out
                .components
                .iter()
                .map(|c| ComponentUse { name: c.name.clone(), version: c.version.clone(), sha256: c.source.clone() })
                .collect();
            cat.add_components(build_id, &ran)?;
            cat.set_state(build_id, BuildState::Available, None, &engine.now().to_string())?;
            Ok(Done {
                reason: format!("{done} ({})", line.builder.kind()),
                data: json!({
                    "build_id": build_id, "version": version, "state": "available", "parent": out.parent,
                    "packages": out.packages.len(), "tests": out.tests, "artifacts": out.artifacts,
                    "manifest_sha256": catalog::manifest_digest(&out.packages),
                    "cleanup": out.cleanup.removed, "components": out.components,
                }),
            })
        }
        Err(f) => {
            let error = EngineError::provider(format!("building {subject}"), f.error);
            cat.record_outputs(build_id, &[], &[], &f.tests)?;
            let text = match &error {
                EngineError::Provider { source, .. } => provider::chain(source),
                other => other.text(),
            };
            cat.set_state(build_id, BuildState::Failed, Some(&text), &engine.now().to_string())?;
            Err(Fail {
                error,
                data: json!({
                    "build_id": build_id, "version": version, "state": "failed", "parent": f.parent,
                    "logs": j.log_dir.display().to_string(), "tests": f.tests,
                    "cleanup": f.cleanup.map(|c| c.removed),
                }),
            })
        }
    }
}

/// Says what was built; the summary the action returns.
fn report(engine: &Engine, subject: &str, version: &str, build_id: &str, built: &Value, reasons: &str) -> Value {
    let tests = built["tests"].as_array().map(Vec::len).unwrap_or(0);
    let artifacts: Vec<provider::Artifact> = serde_json::from_value(built["artifacts"].clone()).unwrap_or_default();
    let source = artifacts.iter().find_map(|a| a.ami());
    let place = source.as_ref().map(|s| format!("{} in {}, ", s.image_id, s.target.region)).unwrap_or_default();
    engine
        .progress()
        .line(&format!("built {subject}: {place}{} packages, {tests} test(s) passed ({reasons})", built["packages"]));
    json!({"version": version, "build_id": build_id, "packages": built["packages"]})
}

/// Publishes a version just built (cloud lines), adding the result to `summary`.
#[allow(clippy::too_many_arguments)]
fn publish_built(
    engine: &Engine,
    line: &crate::Line,
    image: &str,
    version: &str,
    build_id: &str,
    built: &Value,
    targets: &[provider::Target],
    mut summary: Value,
) -> Result<Value, EngineError> {
    let Some(publisher) = &line.publisher else { return Ok(summary) };
    let subject = VersionRef::new(image, version).to_string();
    let artifacts: Vec<provider::Artifact> = serde_json::from_value(built["artifacts"].clone()).unwrap_or_default();
    let source = artifacts
        .iter()
        .find_map(|a| a.ami())
        .ok_or_else(|| EngineError::Failed(format!("{subject} is built but its builder recorded no AMI to publish")))?;
    summary["image_id"] = json!(source.image_id);
    let reason = "publish a tested version";
    match super::distribute::publish(engine, publisher.as_ref(), image, version, build_id, &source, targets, reason) {
        Ok(p) => summary["published"] = p,
        Err(e) if e.is_cancelled() => return Err(e),
        Err(e) => {
            return Err(EngineError::Failed(format!(
                "{subject} is built and tested ({}) but not fully published; the next apply retries: {}",
                source.image_id,
                e.text()
            )));
        }
    }
    Ok(summary)
}
