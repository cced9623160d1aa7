//! Deprecate: a superseded version's AMIs, at the time that belongs to the version.

use catalog::Deprecation;
use policy::Action;
use provider::{Act, Deprecated};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::{Engine, EngineError};

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Deprecate { image, build_id, at, amis, .. } = a else { unreachable!("deprecate::run on {a:?}") };
    let subject = a.subject();
    let line = engine.line(image)?;
    let publisher = line
        .publisher
        .as_ref()
        .ok_or_else(|| EngineError::Failed(format!("image line {image} has no publisher to deprecate with")))?;
    let data = engine.recorded(
        Act::Deprecate,
        &subject,
        &a.reasons_text(),
        json!({"build_id": build_id, "at": at, "amis": amis}),
        || {
            let mut set = Vec::new();
            let mut failed = Vec::new();
            for ami in amis {
                engine.cancel().check().map_err(|e| EngineError::provider("deprecating", e))?;
                let record = |at: String, error: Option<String>, gone: bool| Deprecation {
                    ami: ami.clone(),
                    at,
                    error,
                    gone,
                    recorded_at: engine.now().to_string(),
                };
                match publisher.deprecate(ami, *at) {
                    Ok(Deprecated::Set(effective)) => {
                        engine.catalog().record_deprecation(build_id, &record(effective.to_string(), None, false))?;
                        set.push(json!({"ami": ami, "at": effective}));
                    }
                    // Gone for good (deregistered, or its account left the config): nothing to
                    // deprecate, now or later.
                    Ok(Deprecated::Gone) => {
                        engine.catalog().record_deprecation(build_id, &record(at.to_string(), None, true))?;
                        set.push(json!({"ami": ami, "gone": true}));
                    }
                    Err(e) => {
                        let text = provider::chain(&e);
                        engine
                            .catalog()
                            .record_deprecation(build_id, &record(at.to_string(), Some(text.clone()), false))?;
                        failed.push(format!("{ami}: {text}"));
                    }
                }
            }
            if failed.is_empty() {
                return Ok(Done { reason: format!("deprecated from {at}"), data: json!({"at": at, "set": set}) });
            }
            Err(Fail {
                error: EngineError::Failed(format!(
                    "{} of {} AMI(s) not deprecated (the next apply retries): {}",
                    failed.len(),
                    amis.len(),
                    failed.join("; ")
                )),
                data: json!({"at": at, "set": set, "failed": failed}),
            })
        },
    )?;
    engine.progress().line(&format!("deprecated {subject} from {at}: {} AMI(s)", amis.len()));
    Ok(data)
}
