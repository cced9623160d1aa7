//! Retire: remove what the builder can of an old version and say what is left.

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
        engine.catalog().set_state(build_id, BuildState::Retired, None, &engine.now().to_string())?;
        let reason = if report.left.is_empty() {
            "removed, version retired".to_string()
        } else {
            format!("version retired; {} resource(s) left in place", report.left.len())
        };
        Ok::<_, Fail>(Done {
            reason,
            data: json!({"build_id": build_id, "removed": report.removed, "left": report.left}),
        })
    })?;
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
