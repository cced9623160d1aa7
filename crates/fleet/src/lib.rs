//! # fleet — is every consumer host on the newest base image, and is it healthy?
//!
//! Pure: hosts (from a scan), releases (from the catalog) and the clock in, one
//! [`Assessment`] per host out. The rule is the organisation's: a host running version V
//! must move on within `sla` of the release of V's *successor* (the next newer version of
//! the same line), so a host two versions behind is judged by the first release it
//! missed. Nothing is guessed: an AMI amictl never made is `unmanaged`, and a consumer
//! whose account could not be read is reported as unknown, never as compliant.
//!
//! Day counts are whole days rounded down, so none overstates the time left or hides
//! lateness: a host 1 day and 6 seconds past its deadline is 1 day overdue, one 23 hours
//! past it is 0 days overdue (and overdue all the same), and one with 23 hours left has 0
//! days left. The exact deadline is always given beside the count.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
pub use provider::{Agent, Host};
use serde::{Deserialize, Serialize};

const DAY: i64 = 86_400;

/// An agent that is not Online is flagged only once its last ping is this old: a reboot or
/// a short network blip should not page anyone.
pub const AGENT_GRACE_SECONDS: i64 = 30 * 60;

/// One released version of an image line and every AMI that is it (regional copies,
/// consumers' own copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub image: String,
    pub version: String,
    pub released_at: Timestamp,
    pub amis: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemption {
    pub instance: String,
    pub until: Date,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// On the newest version of its line.
    Current,
    /// Behind, deadline not reached.
    WithinSla { deadline: String, days_left: i64 },
    /// Behind and past the deadline.
    Overdue { deadline: String, days_over: i64 },
    /// Behind, with a current exemption.
    Exempt { until: String, reason: String },
    /// Runs an AMI amictl did not make.
    Unmanaged,
}

impl Standing {
    pub fn label(&self) -> &'static str {
        match self {
            Standing::Current => "current",
            Standing::WithinSla { .. } => "within-sla",
            Standing::Overdue { .. } => "overdue",
            Standing::Exempt { .. } => "exempt",
            Standing::Unmanaged => "unmanaged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub host: Host,
    pub image: Option<String>,
    pub version: Option<String>,
    pub newest: Option<String>,
    /// Days since the release the host missed first.
    pub successor_age_days: Option<i64>,
    pub standing: Standing,
    /// Why the agent needs a look (`None` when healthy).
    pub agent_problem: Option<String>,
}

/// Maps AMI ids to (line, version) and knows each line's releases, newest last.
#[derive(Debug, Clone, Default)]
pub struct Releases {
    /// Looked up once per host: a hash map, not a tree (fleets are tens of thousands).
    by_ami: HashMap<String, (String, String)>,
    lines: BTreeMap<String, Vec<Release>>,
}

impl Releases {
    pub fn new(releases: Vec<Release>) -> Releases {
        let mut c = Releases::default();
        c.by_ami.reserve(releases.iter().map(|r| r.amis.len()).sum());
        for r in releases {
            for ami in &r.amis {
                c.by_ami.insert(ami.clone(), (r.image.clone(), r.version.clone()));
            }
            c.lines.entry(r.image.clone()).or_default().push(r);
        }
        for list in c.lines.values_mut() {
            list.sort_by(|a, b| a.released_at.cmp(&b.released_at).then_with(|| a.version.cmp(&b.version)));
        }
        c
    }

    pub fn version_of(&self, ami: &str) -> Option<&(String, String)> {
        self.by_ami.get(ami)
    }

    pub fn newest(&self, image: &str) -> Option<&Release> {
        self.lines.get(image).and_then(|l| l.last())
    }

    /// The release right after `version` of `image`.
    fn successor(&self, image: &str, version: &str) -> Option<&Release> {
        let list = self.lines.get(image)?;
        let i = list.iter().position(|r| r.version == version)?;
        list.get(i + 1)
    }
}

/// Judges one host. `sla_seconds` is the rollout SLA.
pub fn assess(
    host: Host,
    catalog: &Releases,
    exemptions: &[Exemption],
    sla_seconds: i64,
    now: Timestamp,
) -> Assessment {
    let agent_problem = agent_problem(&host, now);
    let Some((image, version)) = catalog.version_of(&host.image_id).cloned() else {
        return Assessment {
            host,
            image: None,
            version: None,
            newest: None,
            successor_age_days: None,
            standing: Standing::Unmanaged,
            agent_problem,
        };
    };
    let newest = catalog.newest(&image).map(|r| r.version.clone());
    let successor = catalog.successor(&image, &version);
    let (standing, age) = match successor {
        None => (Standing::Current, None),
        Some(next) => {
            let age = (now.as_second() - next.released_at.as_second()).div_euclid(DAY);
            let deadline = next.released_at.as_second().saturating_add(sla_seconds);
            let deadline_text = Timestamp::from_second(deadline).map(|t| t.to_string()).unwrap_or_default();
            // The date only when an exemption names the host: formatting it per host is
            // most of the judgement's time on a large fleet.
            let exempt = exemptions.iter().find(|e| e.instance == host.instance_id && Some(e.until) >= utc_date(now));
            let standing = match exempt {
                Some(e) => Standing::Exempt { until: e.until.to_string(), reason: e.reason.clone() },
                None if now.as_second() > deadline => Standing::Overdue {
                    deadline: deadline_text,
                    days_over: (now.as_second() - deadline).div_euclid(DAY),
                },
                None => Standing::WithinSla {
                    deadline: deadline_text,
                    days_left: (deadline - now.as_second()).div_euclid(DAY),
                },
            };
            (standing, Some(age))
        }
    };
    Assessment {
        host,
        image: Some(image),
        version: Some(version),
        newest,
        successor_age_days: age,
        standing,
        agent_problem,
    }
}

/// The UTC calendar date of `t`.
pub fn utc_date(t: Timestamp) -> Option<Date> {
    t.strftime("%Y-%m-%d").to_string().parse().ok()
}

fn agent_problem(host: &Host, now: Timestamp) -> Option<String> {
    if host.state != "running" || !host.agent_checked {
        return None;
    }
    let ssm = match &host.agent {
        None => Some("SSM agent not registered".to_string()),
        Some(a) if a.ping != "Online" => {
            let last = a.last_ping.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
            match last {
                Some(t) if now.as_second() - t.as_second() < AGENT_GRACE_SECONDS => None,
                Some(t) => Some(format!("SSM agent {} since {t}", a.ping)),
                None => Some(format!("SSM agent {}", a.ping)),
            }
        }
        Some(_) => None,
    };
    match (ssm, &host.services) {
        (Some(p), _) => Some(p),
        (None, Some(Err(why))) => Some(format!("agent check failed: {why}")),
        (None, _) => None,
    }
}

/// A consumer's totals, as reports and the planner use them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub consumer: String,
    pub total: usize,
    pub current: usize,
    pub within_sla: usize,
    pub overdue: usize,
    pub exempt: usize,
    pub unmanaged: usize,
    pub agents_unhealthy: usize,
    /// Versions behind hosts run, oldest first.
    pub behind_versions: Vec<String>,
    pub newest: Option<String>,
    /// The earliest deadline among hosts within the SLA.
    pub next_deadline: Option<String>,
    pub most_days_over: i64,
    pub oldest_successor_age_days: i64,
    /// Why the consumer could not be scanned; its numbers then mean nothing.
    pub unknown: Option<String>,
}

impl Summary {
    pub fn compliant(&self) -> bool {
        self.unknown.is_none() && self.overdue == 0
    }

    pub fn behind(&self) -> usize {
        self.within_sla + self.overdue
    }
}

pub fn summarize(consumer: &str, assessments: &[Assessment]) -> Summary {
    let mut s = Summary { consumer: consumer.into(), ..Summary::default() };
    let mut behind = BTreeSet::new();
    for a in assessments {
        s.total += 1;
        if a.agent_problem.is_some() {
            s.agents_unhealthy += 1;
        }
        if s.newest.is_none() {
            s.newest = a.newest.clone();
        }
        match &a.standing {
            Standing::Current => s.current += 1,
            Standing::WithinSla { deadline, .. } => {
                s.within_sla += 1;
                if s.next_deadline.as_ref().is_none_or(|d| deadline < d) {
                    s.next_deadline = Some(deadline.clone());
                }
            }
            Standing::Overdue { days_over, .. } => {
                s.overdue += 1;
                s.most_days_over = s.most_days_over.max(*days_over);
            }
            Standing::Exempt { .. } => s.exempt += 1,
            Standing::Unmanaged => s.unmanaged += 1,
        }
        if matches!(a.standing, Standing::WithinSla { .. } | Standing::Overdue { .. }) {
            if let Some(v) = &a.version {
                behind.insert(v.clone());
            }
            s.oldest_successor_age_days = s.oldest_successor_age_days.max(a.successor_age_days.unwrap_or(0));
        }
    }
    s.behind_versions = behind.into_iter().collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(day: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + day * DAY).unwrap()
    }

    fn catalog() -> Releases {
        Releases::new(vec![
            Release {
                image: "ecs".into(),
                version: "v1".into(),
                released_at: t(0),
                amis: ["ami-1a".into(), "ami-1b".into()].into(),
            },
            Release { image: "ecs".into(), version: "v2".into(), released_at: t(30), amis: ["ami-2a".into()].into() },
            Release { image: "ecs".into(), version: "v3".into(), released_at: t(40), amis: ["ami-3a".into()].into() },
        ])
    }

    fn host(id: &str, ami: &str) -> Host {
        Host {
            consumer: "goobi".into(),
            account: "workflow".into(),
            region: "eu-west-1".into(),
            instance_id: id.into(),
            image_id: ami.into(),
            state: "running".into(),
            name: None,
            asg: Some("goobi-container-hosts".into()),
            launch_template: None,
            agent: Some(Agent { ping: "Online".into(), version: "3.3".into(), last_ping: None }),
            agent_checked: true,
            services: None,
        }
    }

    const SLA: i64 = 14 * DAY;

    #[test]
    fn a_host_is_judged_by_the_first_release_it_missed() {
        let c = catalog();
        // v1 hosts missed v2 (day 30): deadline day 44.
        let a = assess(host("i-1", "ami-1b"), &c, &[], SLA, t(42));
        assert_eq!(a.version.as_deref(), Some("v1"), "a regional copy maps to its version");
        assert!(matches!(a.standing, Standing::WithinSla { days_left: 2, .. }), "{:?}", a.standing);
        let a = assess(host("i-1", "ami-1a"), &c, &[], SLA, t(46));
        assert!(matches!(a.standing, Standing::Overdue { days_over: 2, .. }), "{:?}", a.standing);
        assert_eq!(a.successor_age_days, Some(16));
        // v2 hosts missed v3 (day 40): within the SLA on day 46.
        let a = assess(host("i-2", "ami-2a"), &c, &[], SLA, t(46));
        assert!(matches!(a.standing, Standing::WithinSla { days_left: 8, .. }));
        assert_eq!(assess(host("i-3", "ami-3a"), &c, &[], SLA, t(46)).standing, Standing::Current);
    }

    #[test]
    fn day_counts_round_down_and_never_overstate_time_left_or_lateness() {
        let c = catalog();
        // v1 hosts missed v2 (day 30): the deadline is day 44.
        let late = t(45) + jiff::SignedDuration::from_secs(6);
        let a = assess(host("i-1", "ami-1a"), &c, &[], SLA, late);
        assert!(matches!(a.standing, Standing::Overdue { days_over: 1, .. }), "1 day and 6 s late: {:?}", a.standing);
        let a = assess(host("i-1", "ami-1a"), &c, &[], SLA, t(44) + jiff::SignedDuration::from_hours(23));
        assert!(matches!(a.standing, Standing::Overdue { days_over: 0, .. }), "late the same day: {:?}", a.standing);
        let a = assess(host("i-1", "ami-1a"), &c, &[], SLA, t(44) - jiff::SignedDuration::from_hours(23));
        assert!(matches!(a.standing, Standing::WithinSla { days_left: 0, .. }), "23 h left: {:?}", a.standing);
        let a = assess(host("i-1", "ami-1a"), &c, &[], SLA, t(42) - jiff::SignedDuration::from_secs(6));
        assert!(matches!(a.standing, Standing::WithinSla { days_left: 2, .. }), "{:?}", a.standing);
    }

    #[test]
    fn unknown_amis_are_unmanaged_and_exemptions_expire() {
        let c = catalog();
        assert_eq!(assess(host("i-9", "ami-other"), &c, &[], SLA, t(46)).standing, Standing::Unmanaged);
        let until = utc_date(t(50)).unwrap();
        let ex = [Exemption { instance: "i-1".into(), until, reason: "vendor certification".into() }];
        assert!(matches!(assess(host("i-1", "ami-1a"), &c, &ex, SLA, t(46)).standing, Standing::Exempt { .. }));
        assert!(matches!(assess(host("i-1", "ami-1a"), &c, &ex, SLA, t(51)).standing, Standing::Overdue { .. }));
    }

    #[test]
    fn agents_not_online_are_flagged_on_running_hosts_only() {
        let c = catalog();
        let mut h = host("i-1", "ami-3a");
        h.agent = None;
        assert_eq!(assess(h.clone(), &c, &[], SLA, t(46)).agent_problem.as_deref(), Some("SSM agent not registered"));
        h.state = "stopped".into();
        assert_eq!(assess(h.clone(), &c, &[], SLA, t(46)).agent_problem, None);
        h.state = "running".into();
        h.agent = Some(Agent { ping: "ConnectionLost".into(), version: "3.3".into(), last_ping: None });
        assert_eq!(assess(h.clone(), &c, &[], SLA, t(46)).agent_problem.as_deref(), Some("SSM agent ConnectionLost"));
        // Lost for ten minutes: within the grace period. For two hours: flagged.
        h.agent = Some(Agent {
            ping: "ConnectionLost".into(),
            version: "3.3".into(),
            last_ping: Some((t(46) - jiff::SignedDuration::from_mins(10)).to_string().into()),
        });
        assert_eq!(assess(h.clone(), &c, &[], SLA, t(46)).agent_problem, None);
        h.agent = Some(Agent {
            ping: "ConnectionLost".into(),
            version: "3.3".into(),
            last_ping: Some((t(46) - jiff::SignedDuration::from_hours(2)).to_string().into()),
        });
        assert!(
            assess(h.clone(), &c, &[], SLA, t(46)).agent_problem.unwrap().starts_with("SSM agent ConnectionLost since")
        );
        // Online, but the agents' own check failed.
        h.agent = Some(Agent { ping: "Online".into(), version: "3.3".into(), last_ping: None });
        h.services = Some(Err("inactive: scan-agent(failed)".into()));
        assert_eq!(
            assess(h, &c, &[], SLA, t(46)).agent_problem.as_deref(),
            Some("agent check failed: inactive: scan-agent(failed)")
        );
    }

    #[test]
    fn a_summary_counts_states_and_the_earliest_deadline() {
        let c = catalog();
        let all: Vec<Assessment> = [("i-1", "ami-1a"), ("i-2", "ami-2a"), ("i-3", "ami-3a"), ("i-4", "ami-x")]
            .into_iter()
            .map(|(i, a)| assess(host(i, a), &c, &[], SLA, t(46)))
            .collect();
        let s = summarize("goobi", &all);
        assert_eq!((s.total, s.current, s.within_sla, s.overdue, s.unmanaged), (4, 1, 1, 1, 1));
        assert_eq!(s.behind_versions, ["v1", "v2"]);
        assert_eq!(s.newest.as_deref(), Some("v3"));
        assert_eq!(s.most_days_over, 2);
        assert!(!s.compliant());
        assert_eq!(s.behind(), 2);
    }
}
