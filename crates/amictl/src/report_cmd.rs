//! `amictl report` (one self-contained HTML page, or JSON) and `amictl metrics` (Prometheus
//! text exposition), both from the catalog and each consumer's latest scan — no AWS calls,
//! so a report can be produced anywhere the state file is. Deadlines are re-judged against
//! `--now`, from the facts the scan recorded.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use catalog::{BuildState, Catalog};
use config::Config;
use fleet::{Assessment, Standing, Summary};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::cli::{Common, MetricsArgs, ReportArgs};
use crate::lifecycle::load_config;
use crate::{clock, exit};

#[derive(Debug, Serialize)]
struct ImageLine {
    image: String,
    newest: Option<String>,
    age_days: Option<i64>,
    due_in_days: Option<i64>,
    available: usize,
}

#[derive(Debug, Serialize)]
struct ConsumerView {
    consumer: String,
    account: String,
    image: String,
    owner: Option<String>,
    scanned_at: Option<String>,
    summary: Summary,
    hosts: Vec<Assessment>,
}

/// Running instances exposed to one finding at or above the rebuild threshold.
#[derive(Debug, Serialize)]
struct Exposure {
    advisory: String,
    severity: String,
    image: String,
    instances: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    generated: String,
    images: Vec<ImageLine>,
    consumers: Vec<ConsumerView>,
    exposure: Vec<Exposure>,
}

fn gather(cfg: &Config, cat: &Catalog, now: Timestamp) -> Result<Report> {
    let mut images = Vec::new();
    for name in cfg.images.keys() {
        let versions: Vec<catalog::Version> =
            cat.versions(Some(name))?.into_iter().filter(|v| v.state == BuildState::Available).collect();
        let newest = versions.last();
        let age = newest.and_then(|v| clock::days_between(v.finished_at.as_deref().unwrap_or(&v.started_at), now));
        images.push(ImageLine {
            image: name.clone(),
            newest: newest.map(|v| v.version.clone()),
            age_days: age,
            due_in_days: age.map(|a| cfg.policy.max_age_seconds / 86_400 - a),
            available: versions.len(),
        });
    }
    let index = fleet::Catalog::new(crate::fleet_cmd::releases(cat)?);
    let scans = cat.latest_scans()?;
    let mut consumers = Vec::new();
    for c in cfg.consumers.values() {
        let exemptions = crate::fleet_cmd::exemptions(c);
        let scan = scans.iter().find(|s| s.consumer == c.name);
        let (summary, hosts, at) = match scan {
            None => (
                Summary { consumer: c.name.clone(), unknown: Some("never scanned".into()), ..Summary::default() },
                Vec::new(),
                None,
            ),
            Some(catalog::Scan { at, unknown: Some(why), .. }) => (
                Summary { consumer: c.name.clone(), unknown: Some(why.clone()), ..Summary::default() },
                Vec::new(),
                Some(at.clone()),
            ),
            Some(catalog::Scan { at, unknown: None, hosts: rows, .. }) => {
                let hosts: Vec<Assessment> = rows
                    .iter()
                    .filter_map(|r| serde_json::from_str::<Assessment>(&r.detail).ok())
                    .map(|a| fleet::assess(a.host, &index, &exemptions, cfg.policy.rollout_sla_seconds, now))
                    .collect();
                (fleet::summarize(&c.name, &hosts), hosts, Some(at.clone()))
            }
        };
        consumers.push(ConsumerView {
            consumer: c.name.clone(),
            account: c.account.clone(),
            image: c.image.clone(),
            owner: c.owner.clone(),
            scanned_at: at,
            summary,
            hosts,
        });
    }
    let exposure = exposure(cfg, cat, &consumers)?;
    Ok(Report { generated: now.to_string(), images, consumers, exposure })
}

/// From each line's cached feed: how many running hosts run a version missing each fix.
fn exposure(cfg: &Config, cat: &Catalog, consumers: &[ConsumerView]) -> Result<Vec<Exposure>> {
    let threshold = vuln::Severity::threshold(&cfg.policy.rebuild_on_severity).unwrap_or(vuln::Severity::Important);
    let mut running: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for a in consumers.iter().flat_map(|c| &c.hosts) {
        if let (Some(i), Some(v), "running") = (&a.image, &a.version, a.host.state.as_str()) {
            *running.entry((i.clone(), v.clone())).or_default() += 1;
        }
    }
    // Per line: its cached feed read and its versions listed once, however many versions run.
    let mut by_line: std::collections::BTreeMap<String, Vec<(String, usize)>> = Default::default();
    for ((image, version), hosts) in running {
        by_line.entry(image).or_default().push((version, hosts));
    }
    let mut counts: std::collections::BTreeMap<(String, String, String), usize> = Default::default();
    for (image, running) in by_line {
        let Some(feed) = cfg.images.get(&image).and_then(|i| i.advisories.as_ref()) else { continue };
        // Inspector findings are live, not cached; the report reads state only.
        let Some(loaded) = crate::advisories_cmd::load_cached(&cfg.cache_dir, feed) else { continue };
        let versions = cat.versions(Some(&image))?;
        for (version, hosts) in running {
            let Some(v) = versions.iter().find(|x| x.version == version) else { continue };
            let mut seen = std::collections::BTreeSet::new();
            for f in loaded.findings(&crate::advisories_cmd::installed(cat, &v.build_id)?) {
                if f.severity >= threshold && f.fixed.is_some() && seen.insert(f.advisory.clone()) {
                    *counts.entry((f.advisory, f.severity.to_string(), image.clone())).or_default() += hosts;
                }
            }
        }
    }
    let mut out: Vec<Exposure> = counts
        .into_iter()
        .map(|((advisory, severity, image), instances)| Exposure { advisory, severity, image, instances })
        .collect();
    out.sort_by(|a, b| b.instances.cmp(&a.instances).then_with(|| a.advisory.cmp(&b.advisory)));
    Ok(out)
}

pub fn report(common: &Common, args: &ReportArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let now = clock::resolve(args.now.as_deref())?;
    let cat = Catalog::open(&cfg.state)?;
    let report = gather(&cfg, &cat, now)?;
    if let Some(path) = &args.html {
        std::fs::write(path, html(&report)).with_context(|| format!("cannot write {}", path.display()))?;
        if !common.json {
            eprintln!("wrote {}", path.display());
        }
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.html.is_none() {
        println!("{}", html(&report));
    }
    let compliant = report.consumers.iter().all(|c| c.summary.compliant());
    Ok(if compliant { exit::OK } else { exit::NONCOMPLIANT })
}

pub fn metrics(common: &Common, args: &MetricsArgs) -> Result<u8> {
    let cfg = load_config(common)?;
    let now = clock::resolve(args.now.as_deref())?;
    let cat = Catalog::open(&cfg.state)?;
    let report = gather(&cfg, &cat, now)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&json!(report))?);
    } else {
        print!("{}", prometheus(&report));
    }
    Ok(exit::OK)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prometheus(r: &Report) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    family(&mut o, "amictl_image_age_days", "Days since the newest available version of the image line was built.");
    for i in &r.images {
        if let Some(age) = i.age_days {
            let _ = writeln!(o, "amictl_image_age_days{{image=\"{}\"}} {age}", label(&i.image));
        }
    }
    family(&mut o, "amictl_image_rebuild_due_days", "Days until the image line reaches the maximum age.");
    for i in &r.images {
        if let Some(due) = i.due_in_days {
            let _ = writeln!(o, "amictl_image_rebuild_due_days{{image=\"{}\"}} {due}", label(&i.image));
        }
    }
    family(&mut o, "amictl_fleet_instances", "Consumer instances by standing against the rollout SLA.");
    for c in &r.consumers {
        let s = &c.summary;
        for (state, n) in [
            ("current", s.current),
            ("within_sla", s.within_sla),
            ("overdue", s.overdue),
            ("exempt", s.exempt),
            ("unmanaged", s.unmanaged),
        ] {
            let _ = writeln!(o, "amictl_fleet_instances{{consumer=\"{}\",state=\"{state}\"}} {n}", label(&c.consumer));
        }
    }
    family(
        &mut o,
        "amictl_consumer_days_to_deadline",
        "Days to the consumer's earliest rollout deadline; negative once passed.",
    );
    for c in &r.consumers {
        let days = c
            .hosts
            .iter()
            .filter_map(|a| match &a.standing {
                Standing::WithinSla { days_left, .. } => Some(*days_left),
                Standing::Overdue { days_over, .. } => Some(-days_over),
                _ => None,
            })
            .min();
        if let Some(d) = days {
            let _ = writeln!(o, "amictl_consumer_days_to_deadline{{consumer=\"{}\"}} {d}", label(&c.consumer));
        }
    }
    family(&mut o, "amictl_agents_unhealthy", "Running consumer instances whose SSM agent is not Online.");
    for c in &r.consumers {
        let _ = writeln!(
            o,
            "amictl_agents_unhealthy{{consumer=\"{}\"}} {}",
            label(&c.consumer),
            c.summary.agents_unhealthy
        );
    }
    family(
        &mut o,
        "amictl_instances_exposed",
        "Running instances on a version missing a fix at or above the rebuild threshold.",
    );
    for e in &r.exposure {
        let _ = writeln!(
            o,
            "amictl_instances_exposed{{advisory=\"{}\",severity=\"{}\",image=\"{}\"}} {}",
            label(&e.advisory),
            label(&e.severity),
            label(&e.image),
            e.instances
        );
    }
    family(&mut o, "amictl_consumer_unknown", "1 when the consumer's hosts could not be read (not compliant).");
    for c in &r.consumers {
        let _ = writeln!(
            o,
            "amictl_consumer_unknown{{consumer=\"{}\"}} {}",
            label(&c.consumer),
            u8::from(c.summary.unknown.is_some())
        );
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

fn html(r: &Report) -> String {
    let total: usize = r.consumers.iter().map(|c| c.summary.total).sum();
    let overdue: usize = r.consumers.iter().map(|c| c.summary.overdue).sum();
    let compliant = r.consumers.iter().filter(|c| c.summary.compliant()).count();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Base image compliance — {gen}</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1f24;padding:0 1rem}}
h1{{font-size:1.5rem;margin-bottom:.2rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}}
table{{border-collapse:collapse;width:100%;margin-top:.5rem}} th,td{{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #eaeef2}}
th{{background:#f6f8fa;font-weight:600}} td.n{{text-align:right;font-variant-numeric:tabular-nums}}
.ok{{color:#1a7f37;font-weight:600}} .bad{{color:#cf222e;font-weight:600}} .warn{{color:#9a6700;font-weight:600}}
.tiles{{display:flex;gap:1rem;margin:1rem 0}} .tile{{flex:1;background:#f6f8fa;border-radius:8px;padding:.8rem 1rem}}
.tile b{{display:block;font-size:1.6rem}} .muted{{color:#57606a}}
</style></head><body>
<h1>Base image compliance</h1><p class="muted">Generated {gen} by amictl. Rule: every instance on the newest base image within the rollout SLA of its release.</p>
<div class="tiles"><div class="tile"><b class="{cls}">{compliant} of {nc}</b>consumers compliant</div><div class="tile"><b>{total}</b>instances</div><div class="tile"><b class="{ocls}">{overdue}</b>overdue</div></div>
"#,
        gen = esc(day(&r.generated)),
        cls = if compliant == r.consumers.len() { "ok" } else { "bad" },
        nc = r.consumers.len(),
        ocls = if overdue == 0 { "ok" } else { "bad" },
    );
    h.push_str("<h2>Consumers</h2><table><tr><th>Consumer</th><th>Owner</th><th>Image line</th><th>Hosts</th><th>Current</th><th>Behind</th><th>Overdue</th><th>Exempt</th><th>Unmanaged</th><th>Agents</th><th>Status</th></tr>");
    for c in &r.consumers {
        let s = &c.summary;
        let status = match (&s.unknown, s.overdue, s.within_sla) {
            (Some(why), _, _) => {
                format!("<span class=\"bad\">unknown</span> <span class=\"muted\">{}</span>", esc(why))
            }
            (None, o, _) if o > 0 => format!("<span class=\"bad\">overdue by {} day(s)</span>", s.most_days_over),
            (None, 0, w) if w > 0 => {
                format!(
                    "<span class=\"warn\">behind — deadline {}</span>",
                    esc(day(s.next_deadline.as_deref().unwrap_or("")))
                )
            }
            _ => "<span class=\"ok\">compliant</span>".into(),
        };
        let agents = if s.agents_unhealthy == 0 {
            "<span class=\"ok\">ok</span>".to_string()
        } else {
            format!("<span class=\"bad\">{} unhealthy</span>", s.agents_unhealthy)
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{agents}</td><td>{status}</td></tr>",
            esc(&c.consumer),
            esc(c.owner.as_deref().unwrap_or("-")),
            esc(&c.image),
            s.total,
            s.current,
            s.within_sla,
            s.overdue,
            s.exempt,
            s.unmanaged
        );
    }
    h.push_str("</table>");
    let rows = |pred: &dyn Fn(&Assessment) -> bool| -> Vec<(&ConsumerView, &Assessment)> {
        r.consumers.iter().flat_map(|c| c.hosts.iter().map(move |a| (c, a))).filter(|(_, a)| pred(a)).collect()
    };
    h.push_str("<h2>Overdue instances</h2>");
    let over = rows(&|a| matches!(a.standing, Standing::Overdue { .. }));
    if over.is_empty() {
        h.push_str("<p class=\"ok\">None.</p>");
    } else {
        h.push_str("<table><tr><th>Consumer</th><th>Instance</th><th>Name / group</th><th>Region</th><th>Runs</th><th>Newest</th><th>Overdue</th></tr>");
        for (c, a) in over {
            let Standing::Overdue { days_over, .. } = &a.standing else { continue };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{days_over} day(s)</td></tr>",
                esc(&c.consumer),
                esc(&a.host.instance_id),
                esc(a.host.name.as_deref().or(a.host.asg.as_deref()).unwrap_or("-")),
                esc(&a.host.region),
                esc(a.version.as_deref().unwrap_or("-")),
                esc(a.newest.as_deref().unwrap_or("-"))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Upcoming deadlines</h2>");
    let mut soon = rows(&|a| matches!(a.standing, Standing::WithinSla { .. }));
    soon.sort_by_key(|(_, a)| match &a.standing {
        Standing::WithinSla { days_left, .. } => *days_left,
        _ => 0,
    });
    if soon.is_empty() {
        h.push_str("<p class=\"ok\">None: every host is current, exempt or already overdue.</p>");
    } else {
        h.push_str("<table><tr><th>Consumer</th><th>Instance</th><th>Runs</th><th>Newest</th><th>Deadline</th><th>Days left</th></tr>");
        for (c, a) in soon {
            let Standing::WithinSla { deadline, days_left } = &a.standing else { continue };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{days_left}</td></tr>",
                esc(&c.consumer),
                esc(&a.host.instance_id),
                esc(a.version.as_deref().unwrap_or("-")),
                esc(a.newest.as_deref().unwrap_or("-")),
                esc(day(deadline))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Image lines</h2><table><tr><th>Image line</th><th>Newest version</th><th>Age</th><th>Rebuild due in</th><th>Available versions</th></tr>");
    for i in &r.images {
        let due = match i.due_in_days {
            Some(d) if d <= 7 => format!("<span class=\"warn\">{d} day(s)</span>"),
            Some(d) => format!("{d} day(s)"),
            None => "-".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{due}</td><td class=n>{}</td></tr>",
            esc(&i.image),
            esc(i.newest.as_deref().unwrap_or("never built")),
            i.age_days.map(|a| format!("{a} day(s)")).unwrap_or_else(|| "-".into()),
            i.available
        );
    }
    h.push_str("</table><h2>Exposure to advisories</h2>");
    if r.exposure.is_empty() {
        h.push_str("<p class=\"ok\">No running instance is missing a fix at or above the threshold (from each line's last advisory check).</p>");
    } else {
        h.push_str("<table><tr><th>Advisory</th><th>Severity</th><th>Image line</th><th>Running instances</th></tr>");
        for e in &r.exposure {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"bad\">{}</td><td>{}</td><td class=n>{}</td></tr>",
                esc(&e.advisory),
                esc(&e.severity),
                esc(&e.image),
                e.instances
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Agent health</h2>");
    let sick = rows(&|a| a.agent_problem.is_some());
    if sick.is_empty() {
        h.push_str("<p class=\"ok\">Every running host's SSM agent reports Online.</p>");
    } else {
        h.push_str("<table><tr><th>Consumer</th><th>Instance</th><th>Name / group</th><th>Problem</th></tr>");
        for (c, a) in sick {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
                esc(&c.consumer),
                esc(&a.host.instance_id),
                esc(a.host.name.as_deref().or(a.host.asg.as_deref()).unwrap_or("-")),
                esc(a.agent_problem.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let host = fleet::Host {
            consumer: "goobi".into(),
            account: "workflow".into(),
            region: "eu-west-1".into(),
            instance_id: "i-0abc".into(),
            image_id: "ami-1".into(),
            state: "running".into(),
            name: Some("goobi <bastion>".into()),
            asg: None,
            agent: None,
            agent_checked: true,
            services: None,
        };
        let a = Assessment {
            host,
            image: Some("base".into()),
            version: Some("v1".into()),
            newest: Some("v2".into()),
            successor_age_days: Some(16),
            standing: Standing::Overdue { deadline: "2026-11-25T00:00:00Z".into(), days_over: 2 },
            agent_problem: Some("SSM agent not registered".into()),
        };
        let summary = fleet::summarize("goobi", std::slice::from_ref(&a));
        Report {
            generated: "2026-11-27T00:00:00Z".into(),
            images: vec![ImageLine {
                image: "base".into(),
                newest: Some("v2".into()),
                age_days: Some(16),
                due_in_days: Some(74),
                available: 2,
            }],
            consumers: vec![ConsumerView {
                consumer: "goobi".into(),
                account: "workflow".into(),
                image: "base".into(),
                owner: Some("goobi-team".into()),
                scanned_at: None,
                summary,
                hosts: vec![a],
            }],
            exposure: vec![Exposure {
                advisory: "ALAS2-2026-001".into(),
                severity: "critical".into(),
                image: "base".into(),
                instances: 3,
            }],
        }
    }

    #[test]
    fn the_page_names_overdue_hosts_and_escapes_what_it_shows() {
        let page = html(&sample());
        assert!(page.contains("0 of 1</b>consumers compliant"));
        assert!(page.contains("<td>i-0abc</td><td>goobi &lt;bastion&gt;</td>"), "{page}");
        assert!(page.contains("2 day(s)</td>"));
        assert!(page.contains("SSM agent not registered"));
        assert!(!page.contains("<bastion>"));
        assert!(page.contains("<td>ALAS2-2026-001</td><td class=\"bad\">critical</td>"), "{page}");
    }

    #[test]
    fn metrics_are_prometheus_text_with_a_negative_deadline_once_passed() {
        let text = prometheus(&sample());
        assert!(text.contains("# TYPE amictl_fleet_instances gauge"));
        assert!(text.contains("amictl_fleet_instances{consumer=\"goobi\",state=\"overdue\"} 1"));
        assert!(text.contains("amictl_consumer_days_to_deadline{consumer=\"goobi\"} -2"));
        assert!(text.contains("amictl_image_age_days{image=\"base\"} 16"));
        assert!(text.contains("amictl_agents_unhealthy{consumer=\"goobi\"} 1"));
        assert!(
            text.contains(
                "amictl_instances_exposed{advisory=\"ALAS2-2026-001\",severity=\"critical\",image=\"base\"} 3"
            )
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
