//! Recover: clean up a build a dead run left, and mark it failed (or, for a build whose
//! execution goes on in the cloud, follow it: [`super::build::follow`]).

use catalog::BuildState;
use policy::Action;
use provider::{Act, CleanupJob};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::{Engine, EngineError};

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Recover { image, version, build_id, follow, .. } = a else { unreachable!("recover::run on {a:?}") };
    if *follow {
        return super::build::follow(engine, a);
    }
    let subject = a.subject();
    let reasons = a.reasons_text();
    engine.progress().status(&format!("recovering {subject}: cleaning up the interrupted build"));
    let data = engine.recorded(Act::Recover, &subject, &reasons, json!({"build_id": build_id}), || {
        // The line's own builder; for a line gone from the config, one of the kind that
        // started the build (its resources are found by build id). Without either nothing
        // can be cleaned: the build stays unfinished, so a later run (with the builder back)
        // cleans it up.
        let builder = match engine.line(image) {
            Ok(line) => line.builder.clone(),
            Err(e) => {
                let kind = started_by(engine, build_id)?;
                engine
                    .providers()
                    .lines
                    .values()
                    .map(|l| l.builder.clone())
                    .find(|b| Some(b.kind()) == kind.as_deref())
                    .ok_or_else(|| {
                        EngineError::Failed(format!(
                            "{} and no line builds with {}; resources tagged amictl:build-id={build_id} may remain",
                            e.text(),
                            kind.as_deref().unwrap_or("its builder")
                        ))
                    })?
            }
        };
        let job = CleanupJob { build_id, image, version };
        let report = builder.clean_up(&job).map_err(|e| EngineError::provider(format!("cleaning up {subject}"), e))?;
        let now = engine.now().to_string();
        engine.catalog().set_state(build_id, BuildState::Failed, Some(&format!("interrupted: {reasons}")), &now)?;
        Ok::<_, Fail>(Done {
            reason: "cleaned up and marked failed".into(),
            data: json!({"build_id": build_id, "state": "failed", "removed": report.removed}),
        })
    })?;
    engine.progress().line(&format!("recovered {subject}: {reasons}"));
    Ok(data)
}

/// The builder kind a build's intent names.
fn started_by(engine: &Engine, build_id: &str) -> Result<Option<String>, EngineError> {
    let events = engine.catalog().events(None)?;
    Ok(events
        .iter()
        .find(|e| e.kind == provider::EventKind::Intent(Act::Build).as_str() && e.data["build_id"] == build_id)
        .and_then(|e| e.data["builder"].as_str().map(str::to_string)))
}
