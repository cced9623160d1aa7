//! Writes a state file holding a large fleet, for `scripts/bench-scale` to time `amictl
//! report --html` over: the reference organisation's two lines with three released
//! versions each (published to the platform and both consumer accounts in two regions),
//! and each of its six consumers' latest scan, `--hosts` hosts in all (default 50,000), a
//! third of them a version behind. Hosts are stored as a scan stores them (the judged
//! assessment as JSON), through the catalog's own writes.
//!
//! `cargo bench -p catalog --bench fleet_state -- --out STATE.db [--hosts N]`

use catalog::{BuildState, Catalog, NewBuild, Published, ScanHost};
use provider::{Agent, Distribution, Host, How, Target};

const LINES: [&str; 2] = ["weco-amzn2-hvm-x86_64-gp2", "weco-amzn2-ecs-optimised-hvm-x86_64"];
/// (consumer, account, line).
const CONSUMERS: [(&str, &str, usize); 6] = [
    ("archivematica", "workflow", 1),
    ("archivematica-bastion", "workflow", 0),
    ("goobi", "workflow", 1),
    ("goobi-bastion", "workflow", 0),
    ("digirati", "digirati", 1),
    ("digirati-bastion", "digirati", 0),
];
const ACCOUNTS: [&str; 3] = ["platform", "workflow", "digirati"];
const REGIONS: [&str; 2] = ["eu-west-1", "eu-west-2"];

/// The platform's AMI of a version in a region (consumers are shared it).
fn ami(line: usize, version: usize, region: usize) -> String {
    format!("ami-0{line}{version}{region}000000000000")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let Some(out) = arg("--out") else {
        eprintln!("usage: fleet_state --out STATE.db [--hosts N]");
        std::process::exit(2);
    };
    let hosts: usize = arg("--hosts").and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let _ = std::fs::remove_file(&out);
    let mut cat = Catalog::open(std::path::Path::new(&out)).expect("a new state file");
    for (l, line) in LINES.iter().enumerate() {
        for v in 0..3 {
            let build_id = format!("bench-{l}-{v}");
            let version = format!("2026.{:02}.01.1", 9 + v);
            let at = format!("2026-{:02}-01T10:00:00Z", 9 + v);
            cat.insert_build(&NewBuild {
                build_id: &build_id,
                image: line,
                version: &version,
                reason: &serde_json::json!([]),
                recipe_hash: "bench",
                parent_id: "ami-0parent",
                parent_name: "amzn2",
                parent_created: "2026-08-01T00:00:00Z",
                started_at: &at,
                log_dir: "/dev/null",
                components: &[],
                runner: "bench",
            })
            .unwrap();
            for state in [BuildState::Building, BuildState::Testing, BuildState::Available] {
                cat.set_state(&build_id, state, None, &at).unwrap();
            }
            for (a, account) in ACCOUNTS.iter().enumerate() {
                for (r, region) in REGIONS.iter().enumerate() {
                    let how = if a == 0 { How::Owner } else { How::Shared };
                    let image_id = ami(l, v, r);
                    let distribution =
                        Distribution { target: Target::new(*account, *region), image_id, how, parameters: Vec::new() };
                    cat.record_distribution(&build_id, &Published { distribution, at: at.clone() }).unwrap();
                }
            }
        }
    }
    let per = hosts / CONSUMERS.len();
    for (c, (consumer, account, line)) in CONSUMERS.iter().enumerate() {
        let count = if c == CONSUMERS.len() - 1 { hosts - per * (CONSUMERS.len() - 1) } else { per };
        let rows: Vec<ScanHost> = (0..count)
            .map(|n| {
                let region = n % REGIONS.len();
                let version = if n % 3 == 0 { 1 } else { 2 };
                let host = Host {
                    consumer: (*consumer).into(),
                    account: (*account).into(),
                    region: REGIONS[region].into(),
                    instance_id: format!("i-{c:02x}{n:015x}").into(),
                    image_id: ami(*line, version, region).into(),
                    state: "running".into(),
                    name: Some(format!("{consumer}-{n}").into()),
                    asg: Some(format!("{consumer}-container-hosts").into()),
                    launch_template: None,
                    agent: Some(Agent {
                        ping: "Online".into(),
                        version: "3.3.1142.0".into(),
                        last_ping: Some("2026-11-30T10:00:00Z".into()),
                    }),
                    agent_checked: true,
                    services: None,
                };
                let standing = if version == 2 { "current" } else { "within-sla" };
                let detail = serde_json::json!({
                    "host": host, "image": LINES[*line], "version": format!("2026.{:02}.01.1", 9 + version),
                    "newest": "2026.11.01.1", "successor_age_days": null,
                    "standing": {"state": if version == 2 { "current" } else { "within_sla" }, "deadline": "2026-11-15T10:00:00Z", "days_left": 0},
                    "agent_problem": null,
                });
                ScanHost {
                    account: host.account.to_string(),
                    region: host.region.to_string(),
                    instance_id: host.instance_id.to_string(),
                    image_id: host.image_id.to_string(),
                    image: Some(LINES[*line].into()),
                    version: Some(format!("2026.{:02}.01.1", 9 + version)),
                    standing: standing.into(),
                    detail: detail.to_string(),
                }
            })
            .collect();
        cat.record_scan("2026-11-30T12:00:00Z", consumer, Ok(&rows)).unwrap();
    }
    println!("fleet_state: {out}: {} lines × 3 versions, {} consumers, {hosts} hosts", LINES.len(), CONSUMERS.len());
}
