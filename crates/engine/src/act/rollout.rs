//! Rollout: move a consumer's groups by its method, or tell its owner.

use policy::Action;
use provider::{Act, EventKind, Notice, RolloutGroup, RolloutMethod, TemplateChange};
use serde_json::{Value, json};

use crate::record::{Done, Fail};
use crate::views::time;
use crate::{Engine, EngineError};

/// Notices are not repeated for the same consumer and version within a day.
const RENOTIFY_SECONDS: i64 = 86_400;

pub(super) fn run(engine: &Engine, a: &Action) -> Result<Value, EngineError> {
    let Action::Rollout { consumer, image, version, method, groups, unpublished, reasons, .. } = a else {
        unreachable!("rollout::run on {a:?}")
    };
    let subject = a.subject();
    let intent =
        json!({"image": image, "version": version, "method": method.name(), "reasons": reasons, "groups": groups});
    let data = engine.recorded(Act::Rollout, &subject, &a.reasons_text(), intent, || {
        engine.progress().status(&format!("{consumer}: rolling out {image}@{version} ({})", method.name()));
        let result = match method {
            RolloutMethod::Notify { sns_topic } => notify(engine, a, sns_topic.as_deref())?,
            RolloutMethod::Pinned { sns_topic } => notify(engine, a, sns_topic.as_deref())?,
            _ => move_groups(engine, &subject, method, groups, unpublished)?,
        };
        Ok(Done { reason: "done".into(), data: json!({"version": version, "method": method.name(), "result": result}) })
    })?;
    engine.progress().line(&format!("rolled out {image}@{version} to {consumer} ({})", method.name()));
    Ok(data)
}

/// What a `pinned` consumer's code must change to: the version's AMI in each region of
/// its account, and the deadline (its release there + the rollout SLA).
fn pinned_change(engine: &Engine, a: &Action) -> Result<Option<Value>, Fail> {
    let Action::Rollout { consumer, build_id, method: RolloutMethod::Pinned { .. }, .. } = a else {
        return Ok(None);
    };
    let cfg = engine.config();
    let c = cfg.consumers.get(consumer).ok_or_else(|| EngineError::Failed(format!("no consumer `{consumer}`")))?;
    let rows = engine.catalog().distributions(build_id)?;
    let mine: Vec<&catalog::Published> = rows.iter().filter(|p| p.distribution.target.account == c.account).collect();
    let released = mine.iter().map(|p| time(&p.at)).min().unwrap_or_else(|| engine.now());
    let deadline = jiff::Timestamp::from_second(released.as_second().saturating_add(cfg.policy.rollout_sla_seconds))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let amis: Vec<Value> = mine
        .iter()
        .map(|p| json!({"region": p.distribution.target.region, "image_id": p.distribution.image_id}))
        .collect();
    Ok(Some(json!({"account": c.account, "amis": amis, "deadline": deadline})))
}

fn notify(engine: &Engine, a: &Action, topic: Option<&str>) -> Result<Value, Fail> {
    let Action::Rollout { consumer, image, version, .. } = a else { unreachable!() };
    let subject = a.subject();
    let now = engine.now();
    // A pinned consumer's change is recorded (and returned as JSON) even when no topic
    // carries it; amictl writes nothing in its account.
    let change = pinned_change(engine, a)?;
    let change_text = change
        .as_ref()
        .map(|c| {
            let lines: Vec<String> = c["amis"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("- {}: {}", r["region"].as_str().unwrap_or_default(), r["image_id"].as_str().unwrap_or_default()))
                .collect();
            format!(
                "\nThe AMI id is pinned in your code: set it to\n{}\nby {} (the deadline), and apply the change yourself; amictl changes nothing in your account.\n",
                lines.join("\n"),
                c["deadline"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    if let Some(last) = engine.catalog().last_notice(consumer, image, version)?
        && now.as_second() - time(&last).as_second() < RENOTIFY_SECONDS
    {
        return Ok(json!({"notified": false, "already_at": last, "change": change}));
    }
    let Some(topic) = topic else {
        // Nothing to send to: the audit record and the fleet report are the notice.
        return Ok(json!({"notified": false, "reason": "no sns_topic configured", "change": change}));
    };
    let cfg = engine.config();
    let rollout = engine
        .providers()
        .rollout
        .as_ref()
        .ok_or_else(|| EngineError::Failed("notices need the AWS provider".into()))?;
    let c = cfg.consumers.get(consumer).ok_or_else(|| EngineError::Failed(format!("no consumer `{consumer}`")))?;
    let platform = cfg.platform().map(|p| p.name.clone()).ok_or_else(|| {
        EngineError::Failed("no platform account to send the notice from (one account must have no role)".into())
    })?;
    let message = format!(
        "{owner}: hosts of {consumer} run an old base image.\n\n{reasons}\n\nMove them to {image} {version} (SSM parameter …/{image}/latest in your account).\n{change_text}",
        owner = c.owner.as_deref().unwrap_or(consumer),
        reasons = a.reasons().iter().map(|r| format!("- {r}")).collect::<Vec<_>>().join("\n"),
    );
    let overdue = a.reasons().iter().any(|r| matches!(r, policy::Reason::DeadlinePassed { .. }));
    let notice = Notice {
        account: platform,
        topic: topic.to_string(),
        subject: format!("[amictl] {consumer}: {}move to {image} {version}", if overdue { "OVERDUE — " } else { "" }),
        message,
    };
    let id = rollout
        .notify(&notice)
        .map_err(|e| EngineError::provider(format!("notifying {consumer} through {topic}"), e))?;
    engine.catalog().record_notice(consumer, image, version, topic, &id, &now.to_string())?;
    engine.note(
        EventKind::RolloutNotified,
        &subject,
        "owner told",
        json!({"version": version, "topic": topic, "message_id": id, "change": change}),
    )?;
    Ok(json!({"notified": true, "topic": topic, "message_id": id, "change": change}))
}

/// The last launch template version amictl wrote for this group, and when, from the
/// consumer's events (read once per rollout).
fn last_written(events: &[catalog::AuditEvent], g: &RolloutGroup) -> Option<(String, TemplateChange)> {
    let kind = EventKind::RolloutLaunchTemplate.as_str();
    events
        .iter()
        .rev()
        .filter(|e| e.kind == kind && e.data["asg"] == g.asg && e.data["region"] == g.target.region)
        .filter_map(|e| {
            Some((e.time.clone(), serde_json::from_value::<TemplateChange>(e.data["change"].clone()).ok()?))
        })
        .find(|(_, c)| c.changed)
}

/// Whether the group had left what amictl last wrote before this rollout looked: the
/// template's owner (Terraform, a person) put another version back. The rollout writes
/// again, and the owner is told why that will keep happening. Returns the reason and the
/// record.
fn drift(written: Option<(String, TemplateChange)>, now: &TemplateChange) -> Option<(String, Value)> {
    let (at, w) = written?;
    if w.template_id != now.template_id || w.to_version == now.from_version {
        return None;
    }
    let reason = format!(
        "launch template {} version {} was written by amictl at {at}; the group launched version {} ({}) since: its owner (Terraform?) put it back and will again — use image_id = \"resolve:ssm:<parameter>\" or rollout = {{ kind = \"pinned\" }}",
        w.template_id, w.to_version, now.from_version, now.from_image
    );
    let record = json!({
        "template_id": w.template_id,
        "written_version": w.to_version,
        "written_at": at,
        "written_image": w.from_image,
        "found_version": now.from_version,
        "found_image": now.from_image,
        "reason": reason,
    });
    Some((reason, record))
}

fn move_groups(
    engine: &Engine,
    subject: &str,
    method: &RolloutMethod,
    groups: &[RolloutGroup],
    unpublished: &[provider::Target],
) -> Result<Value, Fail> {
    let rollout = engine
        .providers()
        .rollout
        .as_ref()
        .ok_or_else(|| EngineError::Failed("rollouts need the AWS provider".into()))?;
    if groups.is_empty() && unpublished.is_empty() {
        return Err(EngineError::Failed(format!(
            "{subject}: no auto scaling group has hosts behind; {} moves groups only",
            method.name()
        ))
        .into());
    }
    let history = engine.catalog().events(Some(subject))?;
    let mut done = Vec::new();
    for g in groups {
        engine.cancel().check().map_err(|e| EngineError::provider("rolling out", e))?;
        engine.progress().status(&format!("{subject}: {} {} in {}", method.name(), g.asg, g.target));
        let written = last_written(&history, g);
        match rollout.roll_group(g, method, engine.cancel()) {
            Ok(moved) => {
                let drift = drift(written, &moved.template);
                if let Some((reason, record)) = &drift {
                    engine.progress().line(&format!("warning: {subject}: {reason}"));
                    engine.note(
                        EventKind::RolloutDrift,
                        subject,
                        reason,
                        json!({"asg": g.asg, "region": g.target.region, "drift": record}),
                    )?;
                }
                let drift = drift.map(|(_, record)| record);
                let how = match (&moved.template.resolves, moved.template.changed) {
                    (Some(_), _) => "the template resolves the SSM parameter, which names the new AMI: not rewritten",
                    (None, true) => "new default version with the new AMI",
                    (None, false) => "already on the new AMI",
                };
                engine.note(
                    EventKind::RolloutLaunchTemplate,
                    subject,
                    how,
                    json!({"asg": g.asg, "region": g.target.region, "change": moved.template}),
                )?;
                done.push(json!({"asg": g.asg, "region": g.target.region, "image_id": g.image_id,
                                 "template": moved.template, "replacement": moved.replacement, "drift": drift}));
            }
            Err(f) => {
                engine.note(
                    EventKind::RolloutStopped,
                    subject,
                    &f.error.to_string(),
                    json!({"asg": g.asg, "region": g.target.region,
                           // Only what was put back is named as restored.
                           "restored_template_version": f.template.as_ref().filter(|_| matches!(f.restored, Some(Ok(())))).map(|t| t.from_version),
                           "restore": f.restored.as_ref().and_then(|r| r.as_ref().err())}),
                )?;
                let error =
                    EngineError::provider(format!("rollout of {} in {} stopped", g.asg, g.target.region), f.error);
                return Err(Fail { error, data: json!({"done": done}) });
            }
        }
    }
    if !unpublished.is_empty() {
        let places: Vec<String> = unpublished.iter().map(ToString::to_string).collect();
        return Err(Fail {
            error: EngineError::Failed(format!(
                "the version is not published to {}; groups there were not moved",
                places.join(", ")
            )),
            data: json!({"done": done}),
        });
    }
    Ok(json!(done))
}
