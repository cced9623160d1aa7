//! # The latency model: AWS's clock on loopback
//!
//! Against moto every call returns at once: AMIs are `available`, instances `running` and
//! Run Command `Success` the moment they exist. With the model on ([`crate::Gap::model`],
//! `motogap --latency SCALE`) motogap rewrites moto's answers so that things take the time
//! they take on AWS, on a clock that runs `scale` times faster than the wall (60: one real
//! second is one modelled minute). moto still does the work; the model only says "not
//! yet": a `running` instance reads `pending`, an AMI `available` reads `pending`, an
//! invocation `Success` reads `InProgress`, and an instance that has not registered is
//! missing from `DescribeInstanceInformation`, until their modelled time has come.
//!
//! It also throttles: every call takes a token from its API family's bucket (per account
//! and region, refilled in modelled time) and an empty bucket answers as AWS does
//! (`RequestLimitExceeded` 503 for EC2, `ThrottlingException` for JSON services,
//! `Throttling` for Auto Scaling), so the SDK retries and the figures count it.
//!
//! And it keeps a **ledger**: every latency it imposed, with what it had to wait for (the
//! command after the instance's registration and previous command, the AMI after the
//! builder's last command, the test instance after the AMI, the copy after its source, an
//! Auto Scaling group's replacement after the previous one). The longest chain through the
//! ledger is the **critical path**: what a perfect orchestrator doing the same work would
//! take. [`Model::report`] gives both.
//!
//! ## Figures (modelled seconds) and where they come from
//!
//! `docs/latency-sources.md` has the quotes and addresses; in short:
//!
//! | what | figure | source |
//! |---|---|---|
//! | RunInstances → `running` | 17 s | measured: 16.4–17.8 s pending→running over six families (brevdev/ec2-coldboot-research); 4.9 s (C. Percival, "EC2 boot time benchmarking", 2021) |
//! | `running` → SSM Online | 40 s | boot 20–23 s (same two); the agent registers at start (amazon-ssm-agent `agent/health/healthcheck.go`); observed "30 s to several minutes" (DataDog/stratus-red-team#108). 40 s is an assumption in that range |
//! | Run Command | 2 s delivery + the document | delivery: assumption (one 5 s end-to-end observation); per step: `UpdateOS` or a package-manager update 60 s, a package install 15 s, a download 3 s (awstoe once per instance: the scripts fetch it only if missing), a service start 1 s, anything else 0.1 s — assumptions |
//! | CreateImage → `available` | 180 s + 10 s per GiB | assumption: AWS says "several minutes … up to 24 hours" (EC2 user guide, "Create an Amazon EBS-backed AMI") |
//! | CopyImage to another region | 600 s + 10 s per GiB | assumption: AWS publishes none for a best-effort copy; a time-based copy takes 15 min at least (EBS user guide, "Time-based copies") |
//! | CopyImage in the region (another account) | 180 s + 5 s per GiB | assumption |
//! | RebootInstances → SSM Online again | 40 s | AWS: "a few minutes" (EC2 user guide, "Reboot your instance"); assumption: OS back in 30 s, agent 10 s later |
//! | instance refresh step | 17 s launch + warmup | warmup: `Preferences.InstanceWarmup`, else 300 s (the console's and Terraform's health check grace period); checkpoint delay `Preferences.CheckpointDelay`, else 3600 s (Auto Scaling API reference) |
//! | EC2 request rates (bucket / per s) | Describe* 100/20, RunInstances 5/2, TerminateInstances 100/5, CopyImage 100/1, other mutating 50/5 | EC2 developer guide, "Request throttling for the Amazon EC2 API" |
//! | SSM | GetParameter(s) 40/40 shared, others 40/20 | Parameter Store's default 40 TPS (Service Quotas); the rest assumptions |
//! | Auto Scaling | one bucket 40/20 | AWS: "a single, shared API limit" (no figure); the size is an assumption |
//! | ECS | 50/20 | assumption |
//!
//! Not modelled: Auto Scaling lifecycle states (moto's `InService` is left alone; amictl
//! waits on SSM registration, which is modelled), ECS task draining (moto runs no tasks),
//! snapshot progress percentages, Image Builder (it has its own emulation), and variance:
//! every figure is a point value, so two runs of the same work take the same modelled time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// The figures, in modelled seconds.
#[derive(Debug, Clone)]
pub struct Figures {
    pub pending: f64,
    pub register: f64,
    pub delivery: f64,
    pub os_update: f64,
    pub install: f64,
    pub download: f64,
    pub service: f64,
    pub other_step: f64,
    pub image_base: f64,
    pub image_per_gib: f64,
    pub copy_region_base: f64,
    pub copy_region_per_gib: f64,
    pub copy_account_base: f64,
    pub copy_account_per_gib: f64,
    pub reboot: f64,
    pub warmup: f64,
    pub checkpoint_delay: f64,
}

impl Default for Figures {
    fn default() -> Figures {
        Figures {
            pending: 17.0,
            register: 40.0,
            delivery: 2.0,
            os_update: 60.0,
            install: 15.0,
            download: 3.0,
            service: 1.0,
            other_step: 0.1,
            image_base: 180.0,
            image_per_gib: 10.0,
            copy_region_base: 600.0,
            copy_region_per_gib: 10.0,
            copy_account_base: 180.0,
            copy_account_per_gib: 5.0,
            reboot: 40.0,
            warmup: 300.0,
            checkpoint_delay: 3600.0,
        }
    }
}

/// A token bucket's (capacity, refill per modelled second).
fn rate(service: &str, op: &str) -> Option<(&'static str, f64, f64)> {
    Some(match service {
        "ec2" => match op {
            "RunInstances" => ("ec2:RunInstances", 5.0, 2.0),
            "TerminateInstances" => ("ec2:TerminateInstances", 100.0, 5.0),
            "CopyImage" => ("ec2:CopyImage", 100.0, 1.0),
            o if o.starts_with("Describe") || o.starts_with("Get") => ("ec2:non-mutating", 100.0, 20.0),
            _ => ("ec2:mutating", 50.0, 5.0),
        },
        "ssm" => match op {
            "GetParameter" | "GetParameters" | "GetParametersByPath" => ("ssm:GetParameter*", 40.0, 40.0),
            _ => ("ssm:other", 40.0, 20.0),
        },
        "autoscaling" => ("autoscaling", 40.0, 20.0),
        "ecs" => ("ecs", 50.0, 20.0),
        _ => return None,
    })
}

/// One latency the model imposed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    pub kind: &'static str,
    pub id: String,
    /// Modelled seconds since the model started.
    pub start: f64,
    pub ready: f64,
    /// Ledger indices it had to wait for.
    pub after: Vec<usize>,
}

#[derive(Default)]
struct State {
    /// Instance → (launched, online, offline until, its ledger chain's last node).
    instances: HashMap<String, Instance>,
    /// Command id → when it completes.
    commands: HashMap<String, f64>,
    /// AMI id → (ready, ledger node).
    images: HashMap<String, (f64, usize)>,
    buckets: HashMap<(String, String, &'static str), (f64, f64)>,
    throttled: BTreeMap<String, u64>,
    /// Auto Scaling group → the nodes of its last launch (the next one waits for them).
    groups: HashMap<String, Vec<usize>>,
    nodes: Vec<Node>,
    /// Real seconds spent waiting for moto, and calls.
    upstream: (f64, u64),
}

struct Instance {
    launched: f64,
    online: f64,
    down_until: f64,
    tail: usize,
    /// It has fetched awstoe: a script's `if [ ! -x awstoe ]; then curl …` is free after.
    awstoe: bool,
}

/// The model: a clock, the figures, and what it has seen.
pub struct Model {
    scale: f64,
    started: Instant,
    wall: f64,
    pub figures: Figures,
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Model {
    pub fn new(scale: f64) -> Model {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Model {
            scale: scale.max(1.0),
            started: Instant::now(),
            wall,
            figures: Figures::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// Modelled seconds since the model started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * self.scale
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Takes a token for one call; false when the family's bucket is empty (throttled).
    pub(crate) fn admit(&self, account: &str, region: &str, service: &str, op: &str) -> bool {
        let Some((family, capacity, refill)) = rate(service, op) else { return true };
        let now = self.now();
        let mut s = lock(&self.state);
        let bucket = s.buckets.entry((account.to_string(), region.to_string(), family)).or_insert((capacity, now));
        bucket.0 = (bucket.0 + (now - bucket.1) * refill).min(capacity);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            return true;
        }
        *s.throttled.entry(format!("{service}:{op}")).or_default() += 1;
        false
    }

    /// Time spent in moto for one call (real seconds), for the report.
    pub(crate) fn upstream(&self, seconds: f64) {
        let mut s = lock(&self.state);
        s.upstream.0 += seconds;
        s.upstream.1 += 1;
    }

    fn push(s: &mut State, kind: &'static str, id: &str, start: f64, ready: f64, after: Vec<usize>) -> usize {
        s.nodes.push(Node { kind, id: id.to_string(), start, ready, after });
        s.nodes.len() - 1
    }

    /// Instances in a DescribeInstances answer given after a call that can launch: those
    /// not seen before are launching now (after the AMI they launch from, and after the
    /// previous launch of their Auto Scaling group).
    pub(crate) fn launched(&self, describe: &str) {
        let now = self.now();
        let f = &self.figures;
        let mut s = lock(&self.state);
        let mut by_group: HashMap<String, Vec<usize>> = HashMap::new();
        for item in instance_items(describe) {
            let Some(id) = between(item, "<instanceId>", "</instanceId>") else { continue };
            if s.instances.contains_key(id)
                || !item.contains("<name>running</name>") && !item.contains("<name>pending</name>")
            {
                continue;
            }
            let mut after = Vec::new();
            if let Some(image) = between(item, "<imageId>", "</imageId>")
                && let Some(&(_, node)) = s.images.get(image)
            {
                after.push(node);
            }
            let group = asg_of(item);
            if let Some(g) = &group {
                after.extend(s.groups.get(g).cloned().unwrap_or_default());
            }
            let online = now + f.pending + f.register;
            let node = Model::push(&mut s, "instance", id, now, online, after);
            s.instances
                .insert(id.to_string(), Instance { launched: now, online, down_until: 0.0, tail: node, awstoe: false });
            if let Some(g) = group {
                by_group.entry(g).or_default().push(node);
            }
        }
        for (g, nodes) in by_group {
            s.groups.insert(g, nodes);
        }
    }

    /// A DescribeInstances body with instances still starting shown `pending`.
    pub(crate) fn instance_states(&self, body: String) -> String {
        let now = self.now();
        let s = lock(&self.state);
        let starting: Vec<&str> = s
            .instances
            .iter()
            .filter(|(_, i)| now < i.launched + self.figures.pending)
            .map(|(id, _)| id.as_str())
            .collect();
        if starting.is_empty() {
            return body;
        }
        let running = "<instanceState><code>16</code><name>running</name></instanceState>";
        let pending = "<instanceState><code>0</code><name>pending</name></instanceState>";
        let mut out = String::with_capacity(body.len());
        let mut rest = body.as_str();
        while let Some(at) = rest.find("<instanceId>") {
            let next = rest[at + 1..].find("<instanceId>").map_or(rest.len(), |n| at + 1 + n);
            let segment = &rest[..next];
            let id = between(&segment[at..], "<instanceId>", "</instanceId>").unwrap_or_default();
            if starting.contains(&id) {
                out.push_str(&segment.replacen(running, pending, 1));
            } else {
                out.push_str(segment);
            }
            rest = &rest[next..];
        }
        out.push_str(rest);
        out
    }

    /// Whether SSM reports the instance Online now. An instance the model never saw
    /// launch was running before it.
    pub(crate) fn online(&self, instance: &str) -> bool {
        let now = self.now();
        lock(&self.state).instances.get(instance).is_none_or(|i| now >= i.online && now >= i.down_until)
    }

    pub(crate) fn rebooted(&self, instances: &[String]) {
        let now = self.now();
        let mut s = lock(&self.state);
        for id in instances {
            let Some(tail) = s.instances.get(id).map(|i| i.tail) else { continue };
            let ready = now + self.figures.reboot;
            let node = Model::push(&mut s, "reboot", id, now, ready, vec![tail]);
            if let Some(i) = s.instances.get_mut(id) {
                i.down_until = ready;
                i.tail = node;
            }
        }
    }

    /// A command sent to instances; its duration comes from what it runs.
    pub(crate) fn command(&self, command_id: &str, instances: &[String], commands: &[String]) {
        let now = self.now();
        let mut s = lock(&self.state);
        // One duration per command (its invocations are read together): the slowest
        // instance's, which is one that still has to fetch awstoe if any has.
        let cached = instances.iter().all(|id| s.instances.get(id).is_some_and(|i| i.awstoe));
        let mut fetched = cached;
        let seconds =
            self.figures.delivery + commands.iter().map(|c| self.script_seconds(c, &mut fetched)).sum::<f64>();
        s.commands.insert(command_id.to_string(), now + seconds);
        for id in instances {
            let Some(tail) = s.instances.get(id).map(|i| i.tail) else { continue };
            let node = Model::push(&mut s, "command", command_id, now, now + seconds, vec![tail]);
            if let Some(i) = s.instances.get_mut(id) {
                i.tail = node;
                i.awstoe |= fetched;
            }
        }
    }

    /// Whether a command has finished (one the model never saw has).
    pub(crate) fn command_done(&self, command_id: &str) -> bool {
        let now = self.now();
        lock(&self.state).commands.get(command_id).is_none_or(|&done| now >= done)
    }

    /// An AMI made from an instance, `gib` big.
    pub(crate) fn imaged(&self, image: &str, instance: &str, gib: f64) {
        let now = self.now();
        let ready = now + self.figures.image_base + self.figures.image_per_gib * gib;
        let mut s = lock(&self.state);
        let after = s.instances.get(instance).map(|i| vec![i.tail]).unwrap_or_default();
        let node = Model::push(&mut s, "image", image, now, ready, after);
        s.images.insert(image.to_string(), (ready, node));
    }

    /// A copy of `source`, to another region or (in the region) to another account.
    pub(crate) fn copied(&self, image: &str, source: &str, cross_region: bool, gib: f64) {
        let now = self.now();
        let f = &self.figures;
        let took = if cross_region {
            f.copy_region_base + f.copy_region_per_gib * gib
        } else {
            f.copy_account_base + f.copy_account_per_gib * gib
        };
        let mut s = lock(&self.state);
        let after = s.images.get(source).map(|&(_, n)| vec![n]).unwrap_or_default();
        let node = Model::push(
            &mut s,
            if cross_region { "copy-region" } else { "copy-account" },
            image,
            now,
            now + took,
            after,
        );
        s.images.insert(image.to_string(), (now + took, node));
    }

    /// A DescribeImages body with AMIs still being made shown `pending`.
    pub(crate) fn image_states(&self, body: String) -> String {
        let now = self.now();
        let s = lock(&self.state);
        let mut out = body;
        for (id, &(ready, _)) in &s.images {
            if now >= ready {
                continue;
            }
            let tag = format!("<imageId>{id}</imageId><imageState>available</imageState>");
            out = out.replace(&tag, &format!("<imageId>{id}</imageId><imageState>pending</imageState>"));
        }
        out
    }

    /// One step of an instance refresh or its checkpoint wait, chained per group.
    pub(crate) fn waited(&self, chain: &str, kind: &'static str, seconds: f64) {
        let now = self.now();
        let mut s = lock(&self.state);
        let key = format!("refresh:{chain}");
        let after = s.groups.get(&key).cloned().unwrap_or_default();
        let node = Model::push(&mut s, kind, chain, now, now + seconds, after);
        s.groups.insert(key, vec![node]);
    }

    /// Modelled seconds one run of this script takes: its awstoe documents (base64 in a
    /// heredoc) and its own lines, step by step. Fetching awstoe costs a download only
    /// while `awstoe` (the instance has it) is false, and sets it.
    fn script_seconds(&self, script: &str, awstoe: &mut bool) -> f64 {
        let f = &self.figures;
        let mut text = String::new();
        let mut lines = script.lines();
        while let Some(line) = lines.next() {
            if line.contains("<<'AMICTL_DOCUMENT'") {
                let encoded: String = lines.by_ref().take_while(|l| *l != "AMICTL_DOCUMENT").collect();
                if let Ok(doc) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
                    text.push_str(&String::from_utf8_lossy(&doc));
                    text.push('\n');
                }
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
        text.lines()
            .map(|l| {
                let l = l.trim();
                if l.contains("UpdateOS")
                    || [
                        "yum update",
                        "yum -y update",
                        "dnf upgrade",
                        "dnf -y upgrade",
                        "apt-get upgrade",
                        "apt-get -y upgrade",
                    ]
                    .iter()
                    .any(|k| l.contains(k))
                {
                    f.os_update
                } else if [
                    "yum install",
                    "yum -y install",
                    "dnf install",
                    "dnf -y install",
                    "apt-get install",
                    "rpm -i",
                    "rpm -U",
                ]
                .iter()
                .any(|k| l.contains(k))
                {
                    f.install
                } else if l.contains("awstoe") && (l.starts_with("curl ") || l.contains(" curl ")) {
                    if std::mem::replace(awstoe, true) { 0.0 } else { f.download }
                } else if l.contains("WebDownload")
                    || l.contains("S3Download")
                    || l.starts_with("curl ")
                    || l.contains(" curl ")
                    || l.starts_with("wget ")
                {
                    f.download
                } else if l.contains("systemctl") && (l.contains("start") || l.contains("enable --now")) {
                    f.service
                } else if l.starts_with("action:") {
                    f.other_step
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// What the model saw since `since` (modelled seconds): the clock, the throttling, the
    /// time spent in moto, and the critical path through what started since then.
    pub fn report(&self, since: f64) -> serde_json::Value {
        let s = lock(&self.state);
        let mut dist: Vec<f64> = vec![0.0; s.nodes.len()];
        let mut via: Vec<Option<usize>> = vec![None; s.nodes.len()];
        for (i, n) in s.nodes.iter().enumerate() {
            if n.start < since {
                continue;
            }
            let best = n
                .after
                .iter()
                .filter(|&&j| j < i && s.nodes[j].start >= since)
                .max_by(|&&a, &&b| dist[a].total_cmp(&dist[b]));
            dist[i] = (n.ready - n.start) + best.map_or(0.0, |&j| dist[j]);
            via[i] = best.copied();
        }
        let end =
            (0..s.nodes.len()).filter(|&i| s.nodes[i].start >= since).max_by(|&a, &b| dist[a].total_cmp(&dist[b]));
        let mut path = Vec::new();
        let mut at = end;
        while let Some(i) = at {
            let n = &s.nodes[i];
            path.push(serde_json::json!({"kind": n.kind, "id": n.id, "seconds": n.ready - n.start}));
            at = via[i];
        }
        path.reverse();
        // How long each step started after what it waited for was ready: the orchestrator's
        // own time (polling, calls, serial work), by (what it waited for → what it started).
        let mut gaps: BTreeMap<String, (f64, u64)> = BTreeMap::new();
        for n in s.nodes.iter().filter(|n| n.start >= since) {
            let deps = n.after.iter().map(|&j| &s.nodes[j]).filter(|d| d.start >= since);
            let Some(dep) = deps.max_by(|a, b| a.ready.total_cmp(&b.ready)) else {
                continue;
            };
            let g = gaps.entry(format!("{} → {}", dep.kind, n.kind)).or_default();
            g.0 += (n.start - dep.ready).max(0.0);
            g.1 += 1;
        }
        let gaps: BTreeMap<String, serde_json::Value> = gaps
            .into_iter()
            .map(|(k, (total, count))| (k, serde_json::json!({"seconds": total, "count": count})))
            .collect();
        let nodes: Vec<&Node> = s.nodes.iter().filter(|n| n.start >= since).collect();
        serde_json::json!({
            "scale": self.scale,
            "now": self.now(),
            "wall_start": self.wall,
            "critical_path": end.map_or(0.0, |i| dist[i]),
            "path": path,
            "throttled": s.throttled,
            "upstream_seconds": s.upstream.0,
            "upstream_calls": s.upstream.1,
            "gaps": gaps,
            "ledger": nodes,
        })
    }
}

/// `<item>`s of a DescribeInstances answer's instance sets, roughly: the text from each
/// `<instanceId>` to the next.
fn instance_items(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("<instanceId>") {
        let next = rest[at + 1..].find("<instanceId>").map_or(rest.len(), |n| at + 1 + n);
        out.push(&rest[at..next]);
        rest = &rest[next..];
    }
    out
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)?;
    Some(&text[start..start + end])
}

/// The Auto Scaling group an instance item's tags name.
fn asg_of(item: &str) -> Option<String> {
    let at = item.find("<key>aws:autoscaling:groupName</key>")?;
    between(&item[at..], "<value>", "</value>").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(id: &str, image: &str, state: &str, group: Option<&str>) -> String {
        let (code, name) = if state == "running" { (16, "running") } else { (0, "pending") };
        let tags = group.map_or(String::new(), |g| {
            format!("<tagSet><item><key>aws:autoscaling:groupName</key><value>{g}</value></item></tagSet>")
        });
        format!(
            "<item><instanceId>{id}</instanceId><imageId>{image}</imageId><instanceState><code>{code}</code><name>{name}</name></instanceState>{tags}</item>"
        )
    }

    #[test]
    fn a_new_instance_reads_pending_then_running_and_registers_later() {
        let m = Model::new(1.0);
        let body = format!(
            "<instancesSet>{}{}</instancesSet>",
            describe("i-1", "ami-1", "running", None),
            describe("i-0", "ami-1", "running", None)
        );
        m.launched(&describe("i-1", "ami-1", "running", None));
        let out = m.instance_states(body);
        assert!(
            out.contains(
                "<instanceId>i-1</instanceId><imageId>ami-1</imageId><instanceState><code>0</code><name>pending</name>"
            ),
            "{out}"
        );
        assert!(
            out.contains("<instanceId>i-0</instanceId><imageId>ami-1</imageId><instanceState><code>16</code>"),
            "{out}"
        );
        assert!(!m.online("i-1"), "registered before it booted");
        assert!(m.online("i-0"), "an instance never seen launching ran before the model");
    }

    #[test]
    fn the_critical_path_follows_instance_commands_image_and_the_longer_of_test_and_copy() {
        let m = Model::new(1.0);
        let f = m.figures.clone();
        m.launched(&describe("i-b", "ami-parent", "running", None));
        m.command("c-1", &["i-b".into()], &["yum -y install audit".into(), "systemctl enable --now auditd".into()]);
        m.imaged("ami-new", "i-b", 8.0);
        m.launched(&describe("i-t", "ami-new", "running", None));
        m.copied("ami-copy", "ami-new", true, 8.0);
        m.copied("ami-unrelated", "ami-other", true, 8.0);
        let r = m.report(0.0);
        let expect = (f.pending + f.register)
            + (f.delivery + f.install + f.service)
            + (f.image_base + 8.0 * f.image_per_gib)
            + (f.copy_region_base + 8.0 * f.copy_region_per_gib);
        let got = r["critical_path"].as_f64().unwrap();
        assert!((got - expect).abs() < 1.0, "{got} vs {expect}");
        let kinds: Vec<&str> = r["path"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["instance", "command", "image", "copy-region"]);
        // Each step started before what it waited for was ready (no real time passed): no
        // time of the orchestrator's own, counted once per step.
        assert_eq!(r["gaps"]["instance → command"], serde_json::json!({"seconds": 0.0, "count": 1}));
        assert_eq!(r["gaps"]["image → copy-region"]["count"], 1);
    }

    #[test]
    fn replacements_in_one_group_wait_for_the_previous_launch() {
        let m = Model::new(1.0);
        m.launched(&describe("i-1", "ami-1", "running", Some("hosts")));
        m.launched(&format!(
            "{}{}",
            describe("i-1", "ami-1", "running", Some("hosts")),
            describe("i-2", "ami-1", "running", Some("hosts"))
        ));
        let f = &m.figures;
        let got = m.report(0.0)["critical_path"].as_f64().unwrap();
        assert!((got - 2.0 * (f.pending + f.register)).abs() < 1.0, "{got}");
    }

    #[test]
    fn a_bucket_throttles_beyond_its_capacity_and_refills_in_modelled_time() {
        let m = Model::new(1.0);
        let admitted = (0..10).filter(|_| m.admit("1", "eu-west-1", "ec2", "RunInstances")).count();
        assert_eq!(admitted, 5, "RunInstances bursts to 5");
        assert!(m.admit("2", "eu-west-1", "ec2", "RunInstances"), "buckets are per account");
        assert!(m.admit("1", "eu-west-1", "sts", "AssumeRole"), "unmodelled services are not throttled");
        assert_eq!(m.report(0.0)["throttled"]["ec2:RunInstances"], 5);
    }

    #[test]
    fn a_document_in_the_command_is_read_step_by_step() {
        let m = Model::new(1.0);
        let doc = "phases:\n  - name: build\n    steps:\n      - name: Install\n        action: ExecuteBash\n        inputs:\n          commands:\n            - yum -y install audit\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(doc);
        let script = format!("set -eu\nbase64 -d > d <<'AMICTL_DOCUMENT'\n{encoded}\nAMICTL_DOCUMENT\n");
        let f = &m.figures;
        let got = m.script_seconds(&script, &mut true);
        assert!((got - (f.install + f.other_step)).abs() < 1e-9, "{got}");
    }

    #[test]
    fn awstoe_is_fetched_once_per_instance() {
        let m = Model::new(1.0);
        let fetch = "t=/var/lib/amictl/awstoe\nif [ ! -x \"$t\" ]; then\n  curl -fsSL --retry 3 -o \"$t.part\" 'https://awstoe-eu-west-1.s3.eu-west-1.amazonaws.com/latest/linux/amd64/awstoe'\nfi\n";
        let f = &m.figures;
        let mut has = false;
        assert!((m.script_seconds(fetch, &mut has) - f.download).abs() < 1e-9);
        assert!(has);
        assert_eq!(m.script_seconds(&format!("{fetch}{fetch}"), &mut has), 0.0, "the second fetch finds it");
        // Another instance (the test instance, made from an image without it) fetches again.
        assert!((m.script_seconds(&format!("{fetch}{fetch}"), &mut false) - f.download).abs() < 1e-9);
    }
}
