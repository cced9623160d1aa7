//! EC2 Auto Scaling **instance refresh**, which moto does not have, modelled from the Auto
//! Scaling API reference (`StartInstanceRefresh`, `DescribeInstanceRefreshes`,
//! `CancelInstanceRefresh`, `RollbackInstanceRefresh`) and the user guide's "Instance
//! refresh" chapter, on top of moto's groups:
//!
//! - a start is refused with `InstanceRefreshInProgress` while the group has one pending or
//!   in progress; a `DesiredConfiguration.LaunchTemplate` is applied to the group at once
//!   (and the group's previous template remembered for a rollback);
//! - the instances to replace are those in the group at the start, less those whose
//!   template version already matches (`SkipMatching`) and scale-in protected ones when
//!   `ScaleInProtectedInstances` is `Ignore`; with `Wait` (AWS's default) protected ones
//!   hold the refresh `InProgress` ("Waiting for protected instances"), and the caller's
//!   wait runs out (AWS fails it after an hour);
//! - each `DescribeInstanceRefreshes` advances the refresh by one instance, replaced with
//!   `TerminateInstanceInAutoScalingGroup` without decrementing the desired capacity (so
//!   moto launches its successor from the group's template), and reports
//!   `PercentageComplete`; at each checkpoint below 100 it pauses for one describe
//!   ("Waiting for checkpoint"), then `Successful` when all are replaced;
//! - `CancelInstanceRefresh` makes a pending or running refresh `Cancelled`;
//!   `RollbackInstanceRefresh` puts the previous template back on the group and makes it
//!   `RollbackSuccessful` (instances already replaced are not replaced back), and is
//!   refused (`IrreversibleInstanceRefresh`) for a refresh without a desired
//!   configuration; either is `ActiveInstanceRefreshNotFound` once it has ended.
//!
//! With the latency model on ([`crate::latency`]), a replacement takes the launch and the
//! warm-up (`Preferences.InstanceWarmup`, else the model's 300 s) and a checkpoint waits
//! `Preferences.CheckpointDelay` (else 3600 s) of modelled time before the refresh moves
//! on; a describe in between reports the same progress.
//!
//! Not modelled: `MinHealthyPercentage` batching (one instance at a time is always within
//! it), health checks, `StandbyInstances`, automatic
//! rollback on failure (nothing fails here unless a fault is injected), and bake time.

use std::collections::BTreeMap;

/// One refresh.
struct Refresh {
    id: String,
    status: &'static str,
    reason: String,
    /// Instances still to replace, in order.
    pending: Vec<String>,
    /// Protected instances a `Wait` refresh waits on.
    waiting: Vec<String>,
    total: usize,
    replaced: usize,
    checkpoints: Vec<usize>,
    paused_at: Option<usize>,
    /// The group's template before a desired configuration replaced it: (id, version).
    previous: Option<(String, String)>,
    /// Modelled seconds: the next step is not before this; its warm-up and checkpoint delay.
    next_at: f64,
    warmup: Option<f64>,
    checkpoint_delay: Option<f64>,
}

/// Refreshes by (account, region, group): the latest per group.
#[derive(Default)]
pub(crate) struct Refreshes {
    by_group: BTreeMap<(String, String, String), Refresh>,
    next: u64,
}

/// What answering needs from moto, as the caller.
pub(crate) trait Upstream {
    /// An Auto Scaling query call: (status, body).
    fn autoscaling(&self, form: &str) -> Option<(u16, String)>;
    /// Runs after instances may have launched (so `resolve:ssm:` is pinned).
    fn launched(&self);
}

/// The query-protocol form value for `key`.
pub(crate) type Form<'a> = &'a dyn Fn(&str) -> Option<String>;

fn xml(op: &str, inner: &str) -> String {
    format!(
        "<{op}Response xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><{op}Result>{inner}</{op}Result><ResponseMetadata><RequestId>motogap</RequestId></ResponseMetadata></{op}Response>"
    )
}

fn error(code: &str, message: &str) -> (u16, String) {
    (
        400,
        format!(
            "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>motogap</RequestId></ErrorResponse>"
        ),
    )
}

fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))?;
    Some(&text[start..start + end])
}

/// One group's (template id, version) and its instances: (id, template version, protected).
type Group = (Option<(String, String)>, Vec<(String, String, bool)>);

fn group(up: &dyn Upstream, name: &str) -> Option<Group> {
    let (status, body) = up.autoscaling(&format!(
        "Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1={}",
        encode(name)
    ))?;
    if status != 200 {
        return None;
    }
    let g = tag(&body, "AutoScalingGroups")?;
    if !g.contains("<member>") {
        return None;
    }
    let instances_xml = tag(g, "Instances").unwrap_or_default();
    let outside = g.replacen(instances_xml, "", 1);
    let lt = tag(&outside, "LaunchTemplate").map(|t| {
        (tag(t, "LaunchTemplateId").unwrap_or_default().to_string(), tag(t, "Version").unwrap_or_default().to_string())
    });
    let instances = instances_xml
        .split("<member>")
        .skip(1)
        .filter_map(|m| {
            let id = tag(m, "InstanceId")?.to_string();
            let version = tag(m, "LaunchTemplate").and_then(|t| tag(t, "Version")).unwrap_or_default().to_string();
            Some((id, version, tag(m, "ProtectedFromScaleIn") == Some("true")))
        })
        .collect();
    Some((lt, instances))
}

pub(crate) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Refreshes {
    /// Answers one instance refresh call; `None` for any other operation.
    pub(crate) fn handle(
        &mut self,
        place: (&str, &str),
        op: &str,
        form: Form<'_>,
        up: &dyn Upstream,
        model: Option<&crate::latency::Model>,
    ) -> Option<(u16, String)> {
        let name = form("AutoScalingGroupName").unwrap_or_default();
        let key = (place.0.to_string(), place.1.to_string(), name.clone());
        match op {
            "autoscaling:StartInstanceRefresh" => Some(self.start(key, form, up)),
            "autoscaling:DescribeInstanceRefreshes" => {
                let mut members = String::new();
                if let Some(r) = self.by_group.get_mut(&key) {
                    advance(r, up, model, &name);
                    members = format!(
                        "<member><InstanceRefreshId>{}</InstanceRefreshId><AutoScalingGroupName>{name}</AutoScalingGroupName><Status>{}</Status><StatusReason>{}</StatusReason><PercentageComplete>{}</PercentageComplete><InstancesToUpdate>{}</InstancesToUpdate></member>",
                        r.id,
                        r.status,
                        r.reason,
                        (r.replaced * 100).checked_div(r.total).unwrap_or(100),
                        r.pending.len() + r.waiting.len(),
                    );
                }
                Some((
                    200,
                    xml("DescribeInstanceRefreshes", &format!("<InstanceRefreshes>{members}</InstanceRefreshes>")),
                ))
            }
            "autoscaling:CancelInstanceRefresh" | "autoscaling:RollbackInstanceRefresh" => {
                let Some(r) = self.by_group.get_mut(&key).filter(|r| matches!(r.status, "Pending" | "InProgress"))
                else {
                    return Some(error(
                        "ActiveInstanceRefreshNotFound",
                        "No in progress or pending Instance Refresh found",
                    ));
                };
                if op.ends_with("RollbackInstanceRefresh") {
                    // Without a desired configuration there is nothing to go back to.
                    let Some((id, version)) = r.previous.clone() else {
                        return Some(error(
                            "IrreversibleInstanceRefresh",
                            "The instance refresh cannot be rolled back: it has no desired configuration",
                        ));
                    };
                    up.autoscaling(&format!(
                        "Action=UpdateAutoScalingGroup&Version=2011-01-01&AutoScalingGroupName={}&LaunchTemplate.LaunchTemplateId={}&LaunchTemplate.Version={}",
                        encode(&name),
                        encode(&id),
                        encode(&version)
                    ));
                    r.status = "RollbackSuccessful";
                    r.reason = "rolled back on request".into();
                } else {
                    r.status = "Cancelled";
                    r.reason = "cancelled on request".into();
                }
                let op = op.trim_start_matches("autoscaling:");
                Some((200, xml(op, &format!("<InstanceRefreshId>{}</InstanceRefreshId>", r.id))))
            }
            _ => None,
        }
    }

    fn start(&mut self, key: (String, String, String), form: Form<'_>, up: &dyn Upstream) -> (u16, String) {
        if self.by_group.get(&key).is_some_and(|r| matches!(r.status, "Pending" | "InProgress")) {
            return error("InstanceRefreshInProgress", "An Instance Refresh is already in progress");
        }
        let Some((lt, instances)) = group(up, &key.2) else {
            return error("ValidationError", &format!("AutoScalingGroup name not found - {}", key.2));
        };
        let desired = form("DesiredConfiguration.LaunchTemplate.Version")
            .map(|v| (form("DesiredConfiguration.LaunchTemplate.LaunchTemplateId").unwrap_or_default(), v));
        let mut previous = None;
        if let Some((id, version)) = &desired {
            previous = lt.clone();
            up.autoscaling(&format!(
                "Action=UpdateAutoScalingGroup&Version=2011-01-01&AutoScalingGroupName={}&LaunchTemplate.LaunchTemplateId={}&LaunchTemplate.Version={}",
                encode(&key.2),
                encode(id),
                encode(version)
            ));
        }
        let target = desired.as_ref().or(lt.as_ref()).map(|(_, v)| v.clone()).unwrap_or_default();
        let skip = form("Preferences.SkipMatching").as_deref() == Some("true");
        let protected = form("Preferences.ScaleInProtectedInstances").unwrap_or_else(|| "Wait".into());
        let (mut pending, mut waiting) = (Vec::new(), Vec::new());
        for (id, version, is_protected) in instances {
            if skip && !target.is_empty() && version == target {
                continue;
            }
            match (is_protected, protected.as_str()) {
                (true, "Ignore") => {}
                (true, "Wait") => waiting.push(id),
                _ => pending.push(id),
            }
        }
        let checkpoints = (1..=10)
            .map_while(|n| form(&format!("Preferences.CheckpointPercentages.member.{n}")))
            .filter_map(|c| c.parse().ok())
            .collect();
        self.next += 1;
        let id = format!("{:08x}-0000-4000-8000-{:012x}", self.next, self.next);
        let total = pending.len() + waiting.len();
        let refresh = Refresh {
            id: id.clone(),
            status: "Pending",
            reason: String::new(),
            pending,
            waiting,
            total,
            replaced: 0,
            checkpoints,
            paused_at: None,
            previous,
            next_at: 0.0,
            warmup: form("Preferences.InstanceWarmup").and_then(|v| v.parse().ok()),
            checkpoint_delay: form("Preferences.CheckpointDelay").and_then(|v| v.parse().ok()),
        };
        self.by_group.insert(key, refresh);
        (200, xml("StartInstanceRefresh", &format!("<InstanceRefreshId>{id}</InstanceRefreshId>")))
    }
}

/// One step of a pending or running refresh (once its modelled time has come).
fn advance(r: &mut Refresh, up: &dyn Upstream, model: Option<&crate::latency::Model>, group: &str) {
    if model.is_some_and(|m| m.now() < r.next_at) {
        return;
    }
    match r.status {
        "Pending" => {
            r.status = "InProgress";
            return;
        }
        "InProgress" => {}
        _ => return,
    }
    let percent = (r.replaced * 100).checked_div(r.total).unwrap_or(100);
    if let Some(&c) = r.checkpoints.iter().find(|&&c| c < 100 && percent >= c && r.paused_at.is_none_or(|p| p < c)) {
        r.paused_at = Some(c);
        r.reason = format!("Waiting for checkpoint at {c}%");
        if let Some(m) = model {
            let delay = r.checkpoint_delay.unwrap_or(m.figures.checkpoint_delay);
            r.next_at = m.now() + delay;
            m.waited(group, "checkpoint", delay);
        }
        return;
    }
    if r.pending.is_empty() {
        if r.waiting.is_empty() {
            r.status = "Successful";
            r.reason = String::new();
        } else {
            r.reason = format!("Waiting for protected instances: {}", r.waiting.join(", "));
        }
        return;
    }
    let instance = r.pending.remove(0);
    up.autoscaling(&format!(
        "Action=TerminateInstanceInAutoScalingGroup&Version=2011-01-01&InstanceId={instance}&ShouldDecrementDesiredCapacity=false"
    ));
    up.launched();
    if let Some(m) = model {
        let step = m.figures.pending + r.warmup.unwrap_or(m.figures.warmup);
        r.next_at = m.now() + step;
        m.waited(group, "refresh-step", step);
    }
    r.replaced += 1;
    r.reason = format!("replaced {instance}");
}
