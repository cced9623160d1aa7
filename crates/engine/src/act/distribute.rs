//! Distribute: publish a version to targets, recording each region.

use catalog::Published;
use policy::Action;
use provider::{Act, AmiRef, EventKind, PublishJob, Publisher, Target, VersionRef};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::{Engine, EngineError};

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Distribute { image, version, build_id, source, targets, .. } = a else {
        unreachable!("distribute::run on {a:?}")
    };
    let line = engine.line(image)?;
    let publisher = line
        .publisher
        .as_ref()
        .ok_or_else(|| EngineError::Failed(format!("image line {image} has no publisher (it is not a cloud line)")))?;
    publish(engine, publisher.as_ref(), image, version, build_id, source, targets, &a.reasons_text())
}

/// Publishes one version to `targets` (its home region always), recording each region's
/// result; fails when any region failed, after recording what exists.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish(
    engine: &Engine,
    publisher: &dyn Publisher,
    image: &str,
    version: &str,
    build_id: &str,
    source: &AmiRef,
    targets: &[Target],
    reason: &str,
) -> Result<Value, EngineError> {
    let subject = VersionRef::new(image, version).to_string();
    let intent = json!({"build_id": build_id, "source": source, "targets": targets});
    engine.recorded(Act::Publish, &subject, reason, intent, || {
        engine.progress().status(&format!("{subject}: publishing to {} target(s)", targets.len()));
        let artifacts = engine.catalog().artifacts(build_id)?;
        let job =
            PublishJob { image, version, build_id, source, artifacts: &artifacts, targets, cancel: engine.cancel() };
        let report = publisher.publish(&job);
        let at = engine.now().to_string();
        for r in &report.done {
            for d in &r.distributions {
                engine
                    .catalog()
                    .record_distribution(build_id, &Published { distribution: d.clone(), at: at.clone() })?;
            }
            engine.note(EventKind::PublishRegion, &subject, "available, shared and pointed to", json!(r))?;
            let consumers: Vec<String> = r
                .distributions
                .iter()
                .filter(|d| d.how != provider::How::Owner)
                .map(|d| format!("{} ({})", d.target.account, d.how.as_str()))
                .collect();
            engine.progress().line(&format!(
                "published {subject} in {}: {} → {}",
                r.region,
                r.image_id,
                if consumers.is_empty() { "the platform account".into() } else { consumers.join(", ") }
            ));
        }
        for f in &report.failed {
            engine.note(EventKind::PublishRegionFailed, &subject, &f.error.to_string(), json!({"region": f.region}))?;
            if !f.error.is_cancelled() {
                engine.progress().line(&format!("FAIL publishing {subject} in {}: {}", f.region, f.error));
            }
        }
        let reason = format!("{} region(s) done, {} failed", report.done.len(), report.failed.len());
        let regions: Vec<&str> = report.done.iter().map(|r| r.region.as_str()).collect();
        if report.failed.is_empty() {
            return Ok(Done { reason, data: json!({"build_id": build_id, "regions": report.done}) });
        }
        let error = if report.failed.iter().all(|f| f.error.is_cancelled()) {
            EngineError::Cancelled
        } else {
            let list: Vec<String> =
                report.failed.iter().map(|f| format!("{}: {}", f.region, provider::chain(&f.error))).collect();
            EngineError::Failed(format!("publishing failed in {}", list.join("; ")))
        };
        Err(Fail { error, data: json!({"build_id": build_id, "done": regions}) })
    })
}
