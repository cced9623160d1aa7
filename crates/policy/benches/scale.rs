//! The pure decision code at organisation scale: 100 image lines × 50 accounts × 3
//! regions, 4 versions each (keep 3 and a new one), and 50,000 hosts across 500 consumers,
//! a third of them a version behind. Times what a run does with them when nothing is
//! fetched: every host judged (`fleet::assess`), each consumer summed up
//! (`fleet::summarize`), and the plan made (`policy::plan`). Reports the median wall and
//! CPU time of several runs. Run with `scripts/bench-scale`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use fleet::{Release, Releases};
use jiff::Timestamp;
use policy::{ConsumerLag, DesiredImage, Observed, ObservedVersion, PolicyView, VersionState};
use provider::{Agent, Distribution, Host, How, ParentRef, RolloutMethod, Target};

const DAY: i64 = 86_400;
const LINES: usize = 100;
const ACCOUNTS: usize = 50;
const REGIONS: [&str; 3] = ["eu-west-1", "eu-west-2", "us-east-1"];
const VERSIONS: usize = 4;
const CONSUMERS_PER_LINE: usize = 5;
const HOSTS: usize = 50_000;

fn t(day: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + day * DAY).unwrap()
}

fn ami(line: usize, version: usize, account: usize, region: usize) -> String {
    format!("ami-{line:03}{version}{account:03}{region}0000000")
}

#[derive(Clone)]
struct Estate {
    desired: Vec<DesiredImage>,
    versions: Vec<ObservedVersion>,
    releases: Vec<Release>,
    /// Each consumer's scanned hosts, as scans hold them.
    scans: BTreeMap<String, Vec<Host>>,
}

fn estate() -> Estate {
    let accounts: Vec<String> = (0..ACCOUNTS).map(|a| format!("account-{a:02}")).collect();
    let mut desired = Vec::new();
    let mut versions = Vec::new();
    let mut releases = Vec::new();
    for line in 0..LINES {
        let name = format!("line-{line:03}");
        let targets: BTreeSet<Target> =
            accounts.iter().flat_map(|a| REGIONS.iter().map(move |r| Target::new(a, *r))).collect();
        desired.push(DesiredImage {
            name: name.clone(),
            recipe_hash: "recipe".into(),
            components: [("agent".to_string(), "1.0".to_string())].into(),
            targets,
            pointers: true,
            resumes: false,
        });
        for v in 0..VERSIONS {
            let day = 20 * v as i64;
            let mut distributions = Vec::new();
            let mut amis = BTreeSet::new();
            for (a, account) in accounts.iter().enumerate() {
                for (r, region) in REGIONS.iter().enumerate() {
                    let id = ami(line, v, a, r);
                    amis.insert(id.clone());
                    distributions.push(Distribution {
                        target: Target::new(account, *region),
                        image_id: id,
                        how: How::Shared,
                        parameters: vec![format!("/base/{name}/latest")],
                    });
                }
            }
            let version = format!("2026.0{}.01.1", v + 1);
            versions.push(ObservedVersion {
                image: name.clone(),
                version: version.clone(),
                build_id: format!("{line}-{v}"),
                state: VersionState::Available,
                stage: String::new(),
                running: None,
                execution: String::new(),
                built_at: t(day),
                released_at: Some(t(day)),
                recipe_hash: "recipe".into(),
                parent_id: "ami-parent".into(),
                components: [("agent".to_string(), "1.0".to_string())].into(),
                distributions,
                source: None,
                deprecations: BTreeMap::new(),
                cleanup_blocked: None,
            });
            releases.push(Release { image: name.clone(), version, released_at: t(day), amis });
        }
    }
    let mut scans: BTreeMap<String, Vec<Host>> = BTreeMap::new();
    (0..HOSTS)
        .map(|n| {
            let line = n % LINES;
            let consumer = (n / LINES) % CONSUMERS_PER_LINE;
            let (account, region) = ((line * CONSUMERS_PER_LINE + consumer) % ACCOUNTS, n % REGIONS.len());
            // A third a version behind the newest.
            let version = if n % 3 == 0 { VERSIONS - 2 } else { VERSIONS - 1 };
            Host {
                consumer: format!("line-{line:03}-consumer-{consumer}").into(),
                account: format!("account-{account:02}").into(),
                region: REGIONS[region].into(),
                instance_id: format!("i-{n:017x}").into(),
                image_id: ami(line, version, account, region).into(),
                state: "running".into(),
                name: Some("container-host".into()),
                asg: Some(format!("line-{line:03}-consumer-{consumer}-hosts").into()),
                launch_template: None,
                agent: Some(Agent {
                    ping: "Online".into(),
                    version: "3.3.1142.0".into(),
                    last_ping: Some(t(61).to_string().into()),
                }),
                agent_checked: true,
                services: None,
            }
        })
        .for_each(|h| scans.entry(h.consumer.to_string()).or_default().push(h));
    Estate { desired, versions, releases, scans }
}

/// One run's (wall, CPU, CPU judging the hosts, CPU planning) seconds and the actions
/// planned: judge, sum up, plan. The estate is given by value, as a run reads it.
fn run(e: Estate, policy: &PolicyView, now: Timestamp) -> (f64, f64, f64, f64, usize) {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let releases = Releases::new(e.releases);
    let by_consumer: BTreeMap<String, Vec<fleet::Assessment>> = e
        .scans
        .into_iter()
        .map(|(consumer, hosts)| {
            let judged = hosts.into_iter().map(|h| fleet::assess(h, &releases, &[], policy.rollout_sla_seconds, now));
            (consumer, judged.collect())
        })
        .collect();
    let judged = cpu_seconds() - cpu;
    let mut lagging = Vec::new();
    for (consumer, list) in &by_consumer {
        let s = fleet::summarize(consumer, list);
        let Some(newest) = s.newest.clone() else { continue };
        if s.behind() == 0 {
            continue;
        }
        let first = &list[0];
        lagging.push(ConsumerLag {
            consumer: consumer.to_string(),
            account: first.host.account.to_string(),
            image: first.image.clone().unwrap_or_default(),
            method: RolloutMethod::Notify { sns_topic: None },
            newest,
            behind: s.behind(),
            total: s.total,
            overdue: s.overdue,
            most_days_over: s.most_days_over,
            released_days_ago: s.oldest_successor_age_days,
            behind_versions: s.behind_versions.clone(),
            // As the engine's `lagging`: the groups of the hosts behind.
            groups: list
                .iter()
                .filter(|a| matches!(a.standing, fleet::Standing::WithinSla { .. } | fleet::Standing::Overdue { .. }))
                .filter_map(|a| a.host.asg.as_ref().map(|g| (a.host.region.as_str(), g.as_str())))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|(r, g)| (r.to_string(), g.to_string()))
                .collect(),
            loose: Vec::new(),
        });
    }
    let in_use = by_consumer
        .values()
        .flatten()
        .filter_map(|a| Some((a.image.as_deref()?, a.version.as_deref()?)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|(i, v)| (i.to_string(), v.to_string()))
        .collect();
    let parents = e
        .desired
        .iter()
        .map(|d| (d.name.clone(), ParentRef { id: "ami-parent".into(), name: "parent".into(), created: String::new() }))
        .collect();
    let observed = Observed { versions: e.versions, parents, lagging, in_use, ..Observed::default() };
    let planning = cpu_seconds();
    let plan = policy::plan(&e.desired, policy, &observed, now);
    let end = cpu_seconds();
    (wall.elapsed().as_secs_f64(), end - cpu, judged, end - planning, plan.actions.len())
}

/// This thread's CPU time, from the scheduler's account (nanoseconds on the CPU).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

fn main() {
    let runs: usize = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|v| v.parse().ok()).unwrap_or(7);
    let policy = PolicyView {
        max_age_seconds: 90 * DAY,
        rebuild_on_parent_update: true,
        keep_versions: 3,
        rebuild_on_severity: "important".into(),
        rollout_sla_seconds: 14 * DAY,
    };
    let e = estate();
    let (versions, distributions) = (e.versions.len(), e.versions.iter().map(|v| v.distributions.len()).sum::<usize>());
    let now = t(62);
    // Each run gets its own copy, made outside the timing.
    let mut results: Vec<_> = (0..runs).map(|_| run(e.clone(), &policy, now)).collect();
    let actions = results[0].4;
    results.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (wall, cpu, judged, planned, _) = results[results.len() / 2];
    println!(
        "plan + assess: {LINES} lines × {ACCOUNTS} accounts × {} regions ({versions} versions, {distributions} distributions), {HOSTS} hosts: \
         median of {runs} runs {:.1} ms CPU ({:.1} ms judging hosts, {:.1} ms planning; {:.1} ms wall), {actions} actions planned",
        REGIONS.len(),
        cpu * 1000.0,
        judged * 1000.0,
        planned * 1000.0,
        wall * 1000.0
    );
}
