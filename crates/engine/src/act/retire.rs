//! Retire: remove what the builder can of an old version and say what is left — or, when
//! something still uses it, remove nothing and say what (the version stays available, is
//! shown as blocked in `images` and `plan`, and is checked again by the next run).

use catalog::BuildState;
use policy::Action;
use provider::{Act, RetireJob};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::{Engine, EngineError};

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Retire { image, version, build_id, .. } = a else { unreachable!("retire::run on {a:?}") };
    let subject = a.subject();
    let reasons = a.reasons_text();
    let data = engine.recorded(Act::Retire, &subject, &reasons, json!({"build_id": build_id}), || {
        let line = engine.line(image)?;
        let (artifacts, distributions) = {
            let cat = engine.catalog();
            let published: Vec<_> = cat.distributions(build_id)?.into_iter().map(|p| p.distribution).collect();
            (cat.artifacts(build_id)?, published)
        };
        let job = RetireJob { image, version, build_id, artifacts: &artifacts, distributions: &distributions };
        let report = line.builder.retire(&job).map_err(|e| EngineError::provider(format!("retiring {subject}"), e))?;
        let references: Vec<String> = report.references().map(ToString::to_string).collect();
        let data = json!({
            "build_id": build_id,
            "removed": report.removed,
            "left": report.left,
            "checked": report.checked,
            "refused": !references.is_empty(),
        });
        if !references.is_empty() {
            let why = format!("{} still use it: {}", references.len(), references.join("; "));
            engine.catalog().set_cleanup(build_id, Some(&format!("{why} (checked {})", engine.now())))?;
            return Ok::<_, Fail>(Done { reason: format!("kept: {why}"), data });
        }
        engine.catalog().set_state(build_id, BuildState::Retired, None, &engine.now().to_string())?;
        engine.catalog().set_cleanup(build_id, None)?;
        let places = report.checked.len();
        let reason = if report.left.is_empty() {
            format!("removed {} resource(s); nothing used it in {places} place(s) checked", report.removed.len())
        } else {
            format!("version retired; {} resource(s) left in place", report.left.len())
        };
        Ok::<_, Fail>(Done { reason, data })
    })?;
    if data["refused"] == true {
        let list: Vec<String> = data["checked"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| serde_json::from_value::<provider::Checked>(c.clone()).ok())
            .flat_map(|c| c.references)
            .map(|r| r.to_string())
            .collect();
        engine.progress().line(&format!("kept {subject}: {reasons}; still used by {}", list.join(", ")));
        return Ok(data);
    }
    let left = data["left"].as_array().map(Vec::len).unwrap_or(0);
    let tail = if left == 0 {
        String::new()
    } else {
        let list: Vec<String> = data["left"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| serde_json::from_value::<provider::Resource>(r.clone()).ok())
            .map(|r| r.to_string())
            .collect();
        format!("; left in place: {}", list.join(", "))
    };
    engine.progress().line(&format!("retired {subject}: {reasons}{tail}"));
    Ok(data)
}
