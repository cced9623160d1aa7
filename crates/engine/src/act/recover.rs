//! Recover: clean up a build a dead run left, and mark it failed.

use catalog::BuildState;
use policy::Action;
use provider::{Act, CleanupJob};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::{Engine, EngineError};

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Recover { image, version, build_id, .. } = a else { unreachable!("recover::run on {a:?}") };
    let subject = a.subject();
    let reasons = a.reasons_text();
    engine.progress().status(&format!("recovering {subject}: cleaning up the interrupted build"));
    let data = engine.recorded(Act::Recover, &subject, &reasons, json!({"build_id": build_id}), |_| {
        // A line gone from the config has no builder left to clean up with: say so, and
        // still mark the build failed so it is not recovered forever.
        let removed = match engine.line(image) {
            Ok(line) => {
                let job = CleanupJob { build_id, image, version };
                let report = line
                    .builder
                    .clean_up(&job)
                    .map_err(|e| EngineError::provider(format!("cleaning up {subject}"), e))?;
                json!(report.removed)
            }
            Err(e) => json!({"not_cleaned": e.text()}),
        };
        let now = engine.now().to_string();
        engine.catalog().set_state(build_id, BuildState::Failed, Some(&format!("interrupted: {reasons}")), &now)?;
        Ok::<_, Fail>(Done {
            reason: "cleaned up and marked failed".into(),
            data: json!({"build_id": build_id, "state": "failed", "removed": removed}),
        })
    })?;
    engine.progress().line(&format!("recovered {subject}: {reasons}"));
    Ok(data)
}
