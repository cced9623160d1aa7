//! Consumers' hosts: found through a [`FleetSource`], judged against the rollout SLA, and
//! what the planner needs from that.

use std::collections::BTreeSet;

use catalog::{Catalog, ScanHost};
use config::Config;
use fleet::{Assessment, Summary};
use jiff::Timestamp;
use provider::{AgentCheck, FleetSource, HostQuery, Short};

use crate::EngineError;

/// One consumer's scan: its hosts judged, or why it could not be read.
#[derive(Debug, Clone)]
pub struct ConsumerScan {
    /// The consumer.
    pub consumer: config::Consumer,
    /// Its hosts, or why they could not be read.
    pub hosts: Result<Vec<Assessment>, String>,
}

impl ConsumerScan {
    /// Its totals.
    pub fn summary(&self) -> Summary {
        match &self.hosts {
            Ok(a) => fleet::summarize(&self.consumer.name, a),
            Err(e) => Summary { consumer: self.consumer.name.clone(), unknown: Some(e.clone()), ..Summary::default() },
        }
    }
}

/// A consumer's exemptions as the judgement reads them (dates were checked at load).
pub fn exemptions(c: &config::Consumer) -> Vec<fleet::Exemption> {
    c.exemptions
        .iter()
        .filter_map(|e| {
            Some(fleet::Exemption {
                instance: e.instance.clone(),
                until: e.until.parse().ok()?,
                reason: e.reason.clone(),
            })
        })
        .collect()
}

/// The regions a line's hosts can be in: where it is published, else the home region.
pub fn regions(cfg: &Config, image: &config::Image) -> Vec<String> {
    match &image.distribute {
        Some(d) if !d.regions.is_empty() => d.regions.clone(),
        _ => cfg.aws_region.iter().cloned().collect(),
    }
}

/// The agents' own check for a line: the services its components name.
pub fn agent_check(cfg: &Config, image: &config::Image) -> AgentCheck {
    let services: BTreeSet<String> = image
        .components
        .iter()
        .filter_map(|n| cfg.components.get(n))
        .flat_map(|c| c.services.iter().cloned())
        .collect();
    AgentCheck { services: services.into_iter().collect() }
}

/// Scans every consumer `wanted` selects and judges each host as of `now` against
/// `releases`. A consumer that cannot be read is unknown. `agents`: also run the agents'
/// own check on Online hosts.
pub fn scan(
    cfg: &Config,
    releases: Vec<fleet::Release>,
    source: &dyn FleetSource,
    agents: bool,
    now: Timestamp,
    wanted: impl Fn(&config::Consumer) -> bool,
) -> Vec<ConsumerScan> {
    let index = fleet::Releases::new(releases);
    let mut out = Vec::new();
    for c in cfg.consumers.values().filter(|c| wanted(c)) {
        let Some(image) = cfg.images.get(&c.image) else { continue };
        let regions = regions(cfg, image);
        let check = agent_check(cfg, image);
        let query = HostQuery {
            consumer: &c.name,
            account: &c.account,
            regions: &regions,
            selection: &c.select,
            agents: agents.then_some(&check),
        };
        let exemptions = exemptions(c);
        let hosts = source
            .hosts(&query)
            .map(|hosts| {
                hosts
                    .into_iter()
                    .map(|h| fleet::assess(h, &index, &exemptions, cfg.policy.rollout_sla_seconds, now))
                    .collect()
            })
            .map_err(|e| e.to_string());
        out.push(ConsumerScan { consumer: c.clone(), hosts });
    }
    out
}

/// The same hosts judged again against `releases` (after this run released versions).
pub fn rejudge(
    cfg: &Config,
    scans: &[ConsumerScan],
    releases: Vec<fleet::Release>,
    now: Timestamp,
) -> Vec<ConsumerScan> {
    let index = fleet::Releases::new(releases);
    scans
        .iter()
        .map(|s| ConsumerScan {
            consumer: s.consumer.clone(),
            hosts: s.hosts.clone().map(|hosts| {
                let exemptions = exemptions(&s.consumer);
                hosts
                    .into_iter()
                    .map(|a| fleet::assess(a.host, &index, &exemptions, cfg.policy.rollout_sla_seconds, now))
                    .collect()
            }),
        })
        .collect()
}

/// Stores scans as each consumer's latest.
pub fn record(cat: &mut Catalog, scans: &[ConsumerScan], at: Timestamp) -> Result<(), EngineError> {
    let at = at.to_string();
    for s in scans {
        match &s.hosts {
            Ok(list) => {
                let rows: Vec<ScanHost> = list.iter().map(row).collect();
                cat.record_scan(&at, &s.consumer.name, Ok(&rows))?
            }
            Err(e) => cat.record_scan(&at, &s.consumer.name, Err(e))?,
        };
    }
    Ok(())
}

fn row(a: &Assessment) -> ScanHost {
    ScanHost {
        account: a.host.account.to_string(),
        region: a.host.region.to_string(),
        instance_id: a.host.instance_id.to_string(),
        image_id: a.host.image_id.to_string(),
        image: a.image.clone(),
        version: a.version.clone(),
        standing: a.standing.label().to_string(),
        detail: serde_json::to_string(a).unwrap_or_default(),
    }
}

/// What the planner needs from scans: each consumer behind, with the groups to move —
/// only the auto scaling groups its `select.asgs` names (a rollout never touches a group
/// the config does not list); behind hosts elsewhere are `loose`.
pub fn lagging(scans: &[ConsumerScan]) -> Vec<policy::ConsumerLag> {
    scans
        .iter()
        .filter_map(|s| {
            let sum = s.summary();
            let hosts = s.hosts.as_ref().ok()?;
            let named = |g: &Short| s.consumer.select.asgs.iter().any(|n| n == g);
            let behind: Vec<&Assessment> = hosts
                .iter()
                .filter(|a| matches!(a.standing, fleet::Standing::WithinSla { .. } | fleet::Standing::Overdue { .. }))
                .collect();
            Some(policy::ConsumerLag {
                consumer: sum.consumer.clone(),
                account: s.consumer.account.clone(),
                image: s.consumer.image.clone(),
                method: s.consumer.rollout.clone(),
                newest: sum.newest.clone()?,
                behind: sum.behind(),
                total: sum.total,
                overdue: sum.overdue,
                most_days_over: sum.most_days_over,
                released_days_ago: sum.oldest_successor_age_days,
                behind_versions: sum.behind_versions.clone(),
                groups: behind
                    .iter()
                    .filter_map(|a| {
                        a.host.asg.as_ref().filter(|g| named(g)).map(|g| (a.host.region.to_string(), g.to_string()))
                    })
                    .collect(),
                loose: behind
                    .iter()
                    .filter(|a| !a.host.asg.as_ref().is_some_and(&named))
                    .map(|a| a.host.instance_id.to_string())
                    .collect(),
            })
        })
        .collect()
}

/// The `(image, version)` pairs the scans found running.
pub fn in_use(scans: &[ConsumerScan]) -> BTreeSet<(String, String)> {
    scans
        .iter()
        .filter_map(|s| s.hosts.as_ref().ok())
        .flatten()
        .filter_map(|a| Some((a.image.clone()?, a.version.clone()?)))
        .collect()
}
