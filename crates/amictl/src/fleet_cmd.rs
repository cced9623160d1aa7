//! `amictl fleet`, and the fleet scan `plan`/`apply` observe: which version every consumer
//! host runs, how it stands against the rollout SLA, and whether its agent is healthy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use catalog::{BuildState, Catalog, ScanHost};
use config::Config;
use fleet::{Assessment, Summary};
use jiff::Timestamp;
use serde_json::json;

use crate::cli::{Common, FleetArgs};
use crate::cloud::Cloud;
use crate::lifecycle::load_config;
use crate::{UsageError, clock, exit};

/// One consumer's scan: its hosts judged, or why it could not be read.
pub struct ConsumerScan {
    pub consumer: config::Consumer,
    pub hosts: Result<Vec<Assessment>, String>,
}

impl ConsumerScan {
    pub fn summary(&self) -> Summary {
        match &self.hosts {
            Ok(a) => fleet::summarize(&self.consumer.name, a),
            Err(e) => Summary { consumer: self.consumer.name.clone(), unknown: Some(e.clone()), ..Summary::default() },
        }
    }
}

/// Every released version with every AMI that is it: the build's own, regional copies,
/// consumers' copies. Released = first published (or finished, if never published).
pub fn releases(cat: &Catalog) -> Result<Vec<fleet::Release>> {
    let mut out = Vec::new();
    for v in cat.versions(None)? {
        if !matches!(v.state, BuildState::Available | BuildState::Retired) {
            continue;
        }
        let rows = cat.distributions(&v.build_id)?;
        let mut amis: BTreeSet<String> = rows.iter().map(|d| d.image_id.clone()).collect();
        for a in cat.artifacts(&v.build_id)? {
            if a.kind == "ami"
                && let Some(id) = a.path.rsplit(':').next()
            {
                amis.insert(id.to_string());
            }
        }
        let first = rows.iter().map(|d| d.at.as_str()).min().map(str::to_string);
        let at = first.or(v.finished_at.clone()).unwrap_or(v.started_at.clone());
        out.push(fleet::Release {
            image: v.image.clone(),
            version: v.version.clone(),
            released_at: at.parse().unwrap_or(Timestamp::UNIX_EPOCH),
            amis,
        });
    }
    Ok(out)
}

/// Where hosts come from: the consumers' accounts, or saved `describe-instances` output
/// per account (offline audits).
pub enum Source<'a> {
    /// `agents`: also run the agents' own check (their services active) on Online hosts.
    Live {
        cloud: &'a Cloud,
        agents: bool,
    },
    Inventory(&'a BTreeMap<String, (PathBuf, String)>),
}

/// Scans every consumer in every region its image line is published to, judges each host
/// and records the scan. A consumer that cannot be read is recorded as unknown.
pub fn scan(cfg: &Config, cloud: &Cloud, cat: &mut Catalog, now: Timestamp) -> Result<Vec<ConsumerScan>> {
    scan_from(cfg, Source::Live { cloud, agents: false }, cat, now)
}

pub fn scan_from(cfg: &Config, source: Source<'_>, cat: &mut Catalog, now: Timestamp) -> Result<Vec<ConsumerScan>> {
    let index = fleet::Catalog::new(releases(cat)?);
    let at = Timestamp::now().to_string();
    let mut out = Vec::new();
    for c in cfg.consumers.values() {
        let image = &cfg.images[&c.image];
        let exemptions = exemptions(c);
        let found = match &source {
            Source::Live { cloud, agents } => live_hosts(cfg, cloud, c, image, *agents),
            Source::Inventory(files) => match files.get(&c.account) {
                None => Err(format!("no --inventory for account {}", c.account)),
                Some((path, text)) => fleet::inventory_hosts(text, &c.name, &c.account, &c.select.tags, &c.select.asgs)
                    .map_err(|e| format!("{}: {e}", path.display())),
            },
        };
        let hosts = match found {
            Err(e) => Err(e),
            Ok(hosts) => Ok(hosts
                .into_iter()
                .map(|h| fleet::assess(h, &index, &exemptions, cfg.policy.rollout_sla_seconds, now))
                .collect::<Vec<_>>()),
        };
        let rows: Result<Vec<ScanHost>, &str> = match &hosts {
            Ok(list) => Ok(list.iter().map(scan_row).collect()),
            Err(e) => Err(e.as_str()),
        };
        match &rows {
            Ok(r) => cat.record_scan(&at, &c.name, Ok(r))?,
            Err(e) => cat.record_scan(&at, &c.name, Err(e))?,
        };
        out.push(ConsumerScan { consumer: c.clone(), hosts });
    }
    Ok(out)
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

/// One consumer's hosts in every region its line is published to.
fn live_hosts(
    cfg: &Config,
    cloud: &Cloud,
    c: &config::Consumer,
    image: &config::Image,
    agents: bool,
) -> Result<Vec<fleet::Host>, String> {
    let regions = match &image.distribute {
        Some(d) if !d.regions.is_empty() => d.regions.clone(),
        _ => vec![cloud.region.clone()],
    };
    // The agents' own check: the services the line's components name (config `services`).
    let services: BTreeSet<String> =
        image.components.iter().flat_map(|n| cfg.components[n].services.iter().cloned()).collect();
    let script = aws::remote::services_script(&services.into_iter().collect::<Vec<_>>());
    let mut hosts = Vec::new();
    for region in regions {
        let sel = aws::fleet::Selector {
            consumer: c.name.clone(),
            account: c.account.clone(),
            region: region.clone(),
            tags: c.select.tags.clone(),
            asgs: c.select.asgs.clone(),
            launch_templates: c.select.launch_templates.clone(),
        };
        let mut found = cloud.block_on(aws::fleet::scan(&cloud.aws, &sel)).map_err(|e| e.to_string())?;
        let online: Vec<String> = found
            .iter()
            .filter(|h| h.state == "running" && h.agent.as_ref().is_some_and(|a| a.ping == "Online"))
            .map(|h| h.instance_id.clone())
            .collect();
        if agents && !online.is_empty() {
            let polling = aws::builder::Polling { interval: cloud.timing.poll, timeout: Duration::from_secs(300) };
            let results = cloud
                .block_on(async {
                    let ssm = cloud.aws.ssm(&c.account, &region).await?;
                    aws::fleet::check_services(&ssm, &c.account, &region, &online, &script, polling).await
                })
                .map_err(|e| e.to_string())?;
            for (id, r) in results {
                if let Some(h) = found.iter_mut().find(|h| h.instance_id == id) {
                    h.services = Some(r);
                }
            }
        }
        hosts.extend(found);
    }
    Ok(hosts)
}

fn scan_row(a: &Assessment) -> ScanHost {
    ScanHost {
        account: a.host.account.clone(),
        region: a.host.region.clone(),
        instance_id: a.host.instance_id.clone(),
        image_id: a.host.image_id.clone(),
        image: a.image.clone(),
        version: a.version.clone(),
        standing: a.standing.label().to_string(),
        detail: serde_json::to_string(a).unwrap_or_default(),
    }
}

/// What the planner needs from a scan.
pub fn lagging(scans: &[ConsumerScan]) -> Vec<policy::ConsumerLag> {
    scans
        .iter()
        .filter_map(|s| {
            let sum = s.summary();
            Some(policy::ConsumerLag {
                consumer: sum.consumer.clone(),
                image: s.consumer.image.clone(),
                newest: sum.newest.clone()?,
                behind: sum.behind(),
                total: sum.total,
                overdue: sum.overdue,
                most_days_over: sum.most_days_over,
                released_days_ago: sum.oldest_successor_age_days,
                behind_versions: sum.behind_versions.clone(),
            })
        })
        .collect()
}

pub fn fleet(common: &Common, args: &FleetArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    if cfg.consumers.is_empty() {
        return Err(UsageError(format!("{} defines no [consumers.*]", cfg.file.display())).into());
    }
    let now = clock::resolve(args.now.as_deref())?;
    let mut inventories = BTreeMap::new();
    for spec in &args.inventory {
        let (account, file) = spec.split_once('=').ok_or_else(|| {
            UsageError(format!("--inventory {spec}: expected ACCOUNT=FILE (saved `aws ec2 describe-instances` output)"))
        })?;
        if !cfg.accounts.contains_key(account) {
            return Err(UsageError(format!("--inventory {spec}: no account `{account}` in the config")).into());
        }
        let path = PathBuf::from(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| UsageError(format!("--inventory {spec}: cannot read {}: {e}", path.display())))?;
        // Bad JSON is an input error: say where, change nothing.
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            return Err(UsageError(format!("{}: line {}, column {}: {e}", path.display(), e.line(), e.column())).into());
        }
        inventories.insert(account.to_string(), (path, text));
    }
    let mut cat = Catalog::open(&cfg.state)?;
    let scans = if inventories.is_empty() {
        let cloud = Cloud::new(&cfg)?;
        scan_from(&cfg, Source::Live { cloud: &cloud, agents: true }, &mut cat, now)?
    } else {
        scan_from(&cfg, Source::Inventory(&inventories), &mut cat, now)?
    };
    let summaries: Vec<Summary> = scans.iter().map(ConsumerScan::summary).collect();
    let compliant = summaries.iter().all(Summary::compliant);
    if common.json {
        let consumers: Vec<serde_json::Value> = scans
            .iter()
            .zip(&summaries)
            .map(|(s, sum)| {
                json!({
                    "consumer": s.consumer.name, "account": s.consumer.account, "image": s.consumer.image,
                    "owner": s.consumer.owner, "summary": sum,
                    "hosts": s.hosts.as_ref().map(|h| json!(h)).unwrap_or(json!(null)),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"now": now.to_string(), "compliant": compliant, "consumers": consumers})
            )?
        );
    } else {
        print_table(&scans, &summaries);
    }
    Ok(if compliant { exit::OK } else { exit::NONCOMPLIANT })
}

fn print_table(scans: &[ConsumerScan], summaries: &[Summary]) {
    let mut rows = vec![
        ["CONSUMER", "IMAGE", "HOSTS", "CURRENT", "WITHIN", "OVERDUE", "EXEMPT", "UNMANAGED", "AGENTS", "STATUS"]
            .map(String::from),
    ];
    for (s, sum) in scans.iter().zip(summaries) {
        let status = match (&sum.unknown, sum.overdue, sum.within_sla) {
            (Some(e), _, _) => format!("UNKNOWN ({})", e.chars().take(60).collect::<String>()),
            (None, o, _) if o > 0 => format!("OVERDUE by {}d", sum.most_days_over),
            (None, 0, w) if w > 0 => {
                format!("behind; deadline {}", sum.next_deadline.as_deref().unwrap_or("?").get(..10).unwrap_or("?"))
            }
            _ => "compliant".into(),
        };
        let agents =
            if sum.agents_unhealthy == 0 { "ok".to_string() } else { format!("{} unhealthy", sum.agents_unhealthy) };
        rows.push([
            s.consumer.name.clone(),
            s.consumer.image.clone(),
            sum.total.to_string(),
            sum.current.to_string(),
            sum.within_sla.to_string(),
            sum.overdue.to_string(),
            sum.exempt.to_string(),
            sum.unmanaged.to_string(),
            agents,
            status,
        ]);
    }
    let total = |f: fn(&Summary) -> usize| summaries.iter().map(f).sum::<usize>().to_string();
    rows.push([
        "TOTAL".into(),
        String::new(),
        total(|s| s.total),
        total(|s| s.current),
        total(|s| s.within_sla),
        total(|s| s.overdue),
        total(|s| s.exempt),
        total(|s| s.unmanaged),
        total(|s| s.agents_unhealthy),
        format!("{} of {} consumers compliant", summaries.iter().filter(|s| s.compliant()).count(), summaries.len()),
    ]);
    let widths: Vec<usize> = (0..10).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for s in scans {
        for a in s.hosts.iter().flatten() {
            let flagged = !matches!(a.standing, fleet::Standing::Current) || a.agent_problem.is_some();
            if flagged {
                println!(
                    "  {} {} {} {} on {} ({}){}",
                    s.consumer.name,
                    a.host.region,
                    a.host.instance_id,
                    a.host.name.as_deref().or(a.host.asg.as_deref()).unwrap_or("-"),
                    a.version.as_deref().unwrap_or(&a.host.image_id),
                    standing_text(&a.standing),
                    a.agent_problem.as_deref().map(|p| format!("; {p}")).unwrap_or_default()
                );
            }
        }
    }
}

fn standing_text(s: &fleet::Standing) -> String {
    match s {
        fleet::Standing::Current => "current".into(),
        fleet::Standing::WithinSla { days_left, .. } => format!("behind, {days_left} day(s) left"),
        fleet::Standing::Overdue { days_over, .. } => format!("OVERDUE by {days_over} day(s)"),
        fleet::Standing::Exempt { until, reason } => format!("exempt until {until}: {reason}"),
        fleet::Standing::Unmanaged => "unmanaged AMI".into(),
    }
}
