//! Carrying out a rollout action: the consumer's method, in every region its groups live,
//! with intent and outcome in the audit chain.

use anyhow::{Context, Result, anyhow};
use aws::builder::Polling;
use aws::rollout::Target;
use config::{Config, Rollout};
use jiff::Timestamp;
use policy::Action;
use serde_json::json;

use crate::cloud::Cloud;
use crate::lifecycle::{Recorder, Ui, reasons_text};

/// Notices are not repeated for the same consumer and version within a day.
const RENOTIFY_SECONDS: i64 = 86_400;

pub fn rollout(
    cfg: &Config,
    cloud: &Cloud,
    rec: &mut Recorder<'_>,
    a: &Action,
    now: Timestamp,
    ui: &Ui,
) -> Result<serde_json::Value> {
    let name = a.consumer.clone().unwrap_or_default();
    let consumer = cfg.consumers.get(&name).ok_or_else(|| anyhow!("no consumer `{name}` in the config"))?;
    let version = a.version.clone().unwrap_or_default();
    let build_id = a.build_id.clone().unwrap_or_default();
    let subject = format!("consumer:{name}");
    let method = match &consumer.rollout {
        Rollout::Notify { .. } => "notify",
        Rollout::LaunchTemplate => "launch-template",
        Rollout::RollingReplace { .. } => "rolling-replace",
        Rollout::InstanceRefresh { .. } => "instance-refresh",
    };
    rec.event(
        "rollout.intent",
        &subject,
        &reasons_text(a),
        json!({"image": a.image, "version": version, "method": method, "reasons": a.reasons}),
    )?;
    ui.status(format!("{name}: rolling out {}@{version} ({method})", a.image));
    let result = match &consumer.rollout {
        Rollout::Notify { sns_topic } => notify(cloud, rec, a, consumer, sns_topic.as_deref(), &version, now),
        _ => groups(cloud, rec, consumer, &build_id, &version),
    };
    match &result {
        Ok(data) => {
            rec.event(
                "rollout.outcome",
                &subject,
                "done",
                json!({"version": version, "method": method, "result": data}),
            )?;
            ui.line(format!("rolled out {}@{version} to {name} ({method})", a.image));
        }
        Err(e) => {
            rec.event(
                "rollout.outcome",
                &subject,
                "failed",
                json!({"version": version, "method": method, "error": format!("{e:#}")}),
            )?;
        }
    }
    result
}

fn notify(
    cloud: &Cloud,
    rec: &mut Recorder<'_>,
    a: &Action,
    consumer: &config::Consumer,
    topic: Option<&str>,
    version: &str,
    now: Timestamp,
) -> Result<serde_json::Value> {
    let subject = format!("consumer:{}", consumer.name);
    let recent = rec.cat.events(Some(&subject))?.into_iter().rev().find(|e| {
        e.kind == "rollout.notified"
            && e.data["version"] == version
            && e.time.parse::<Timestamp>().is_ok_and(|t| now.as_second() - t.as_second() < RENOTIFY_SECONDS)
    });
    if let Some(e) = recent {
        return Ok(json!({"notified": false, "already_at": e.time}));
    }
    let Some(topic) = topic else {
        // Nothing to send to: the audit record and the fleet report are the notice.
        return Ok(json!({"notified": false, "reason": "no sns_topic configured"}));
    };
    let message = format!(
        "{owner}: hosts of {consumer} run an old base image.\n\n{reasons}\n\nMove them to {image} {version} (SSM parameter …/{image}/latest in your account).\n",
        owner = consumer.owner.as_deref().unwrap_or(&consumer.name),
        consumer = consumer.name,
        reasons = a.reasons.iter().map(|r| format!("- {r}")).collect::<Vec<_>>().join("\n"),
        image = a.image,
    );
    let id = cloud
        .block_on(aws::rollout::notify(
            &cloud.aws,
            &cloud.platform,
            topic,
            &format!("[amictl] {}: move to {} {version}", consumer.name, a.image),
            &message,
        ))
        .with_context(|| format!("notifying {} through {topic}", consumer.name))?;
    rec.event(
        "rollout.notified",
        &subject,
        "owner told",
        json!({"version": version, "topic": topic, "message_id": id}),
    )?;
    Ok(json!({"notified": true, "topic": topic, "message_id": id}))
}

/// Launch template (and replacement) for each of the consumer's groups, in each region
/// the version is published to the consumer's account.
fn groups(
    cloud: &Cloud,
    rec: &mut Recorder<'_>,
    consumer: &config::Consumer,
    build_id: &str,
    version: &str,
) -> Result<serde_json::Value> {
    let rows = rec.cat.distributions(build_id)?;
    let targets: Vec<(String, String)> =
        rows.iter().filter(|d| d.account == consumer.account).map(|d| (d.region.clone(), d.image_id.clone())).collect();
    if targets.is_empty() {
        return Err(anyhow!("{} {version} is not published to account {}", consumer.image, consumer.account));
    }
    let polling = Polling { interval: cloud.timing.poll, timeout: cloud.timing.online };
    let mut done = Vec::new();
    for asg in &consumer.select.asgs {
        let mut found = false;
        for (region, image_id) in &targets {
            let t = Target {
                account: consumer.account.clone(),
                region: region.clone(),
                asg: asg.clone(),
                image_id: image_id.clone(),
            };
            let change = match cloud.block_on(aws::rollout::update_launch_template(&cloud.aws, &t)) {
                Ok(c) => c,
                Err(aws::AwsError::NotFound { .. }) => continue,
                Err(e) => return Err(e).with_context(|| format!("{asg} in {region}")),
            };
            found = true;
            rec.event(
                "rollout.launch-template",
                &format!("consumer:{}", consumer.name),
                if change.changed { "new default version with the new AMI" } else { "already on the new AMI" },
                json!({"asg": asg, "region": region, "change": change}),
            )?;
            let replaced = match &consumer.rollout {
                Rollout::RollingReplace { batch } => {
                    cloud.block_on(aws::rollout::rolling_replace(&cloud.aws, &t, *batch, polling)).map(|r| json!(r))
                }
                Rollout::InstanceRefresh { min_healthy_percent } => cloud
                    .block_on(aws::rollout::instance_refresh(&cloud.aws, &t, *min_healthy_percent, polling))
                    .map(|id| json!({"instance_refresh": id})),
                _ => Ok(json!(null)),
            };
            match replaced {
                Ok(r) => done.push(
                    json!({"asg": asg, "region": region, "image_id": image_id, "template": change, "replacement": r}),
                ),
                Err(e) => {
                    // New launches must not keep using a version whose rollout failed.
                    let restored = if change.changed {
                        cloud.block_on(aws::rollout::restore(&cloud.aws, &t, &change)).map_err(|r| r.to_string())
                    } else {
                        Ok(())
                    };
                    rec.event(
                        "rollout.stopped",
                        &format!("consumer:{}", consumer.name),
                        &e.to_string(),
                        json!({"asg": asg, "region": region, "restored_template_version": change.from_version, "restore": restored.err()}),
                    )?;
                    return Err(anyhow!(e)).with_context(|| format!("rollout of {asg} in {region} stopped"));
                }
            }
        }
        if !found {
            return Err(anyhow!(
                "auto scaling group {asg} not found in account {} ({})",
                consumer.account,
                targets.iter().map(|t| t.0.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(json!(done))
}
