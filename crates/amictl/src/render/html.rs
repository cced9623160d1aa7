//! The report as one self-contained HTML page for people (CI opens it in Chromium).

use std::fmt::Write as _;

use engine::views::{ConsumerView, Report};
use fleet::{Assessment, Standing};

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

/// The report as one self-contained page.
pub fn html(r: &Report) -> String {
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
    h.push_str("</table>");
    let failed: Vec<(&str, &String)> =
        r.images.iter().flat_map(|i| i.deprecation_failures.iter().map(move |f| (i.image.as_str(), f))).collect();
    if !failed.is_empty() {
        h.push_str("<h2>Deprecations that failed</h2><p class=\"bad\">Superseded AMIs the cloud refused to deprecate; the next apply retries.</p><table><tr><th>Image line</th><th>Version and AMI</th></tr>");
        for (image, f) in failed {
            let _ = write!(h, "<tr><td>{}</td><td class=\"bad\">{}</td></tr>", esc(image), esc(f));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Exposure to advisories</h2>");
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
pub(crate) mod tests {
    use engine::views::{Exposure, LineStatus};

    use super::*;

    pub fn sample() -> Report {
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
            launch_template: None,
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
            images: vec![LineStatus {
                image: "base".into(),
                newest: Some("v2".into()),
                age_days: Some(16),
                due_in_days: Some(74),
                available: 2,
                deprecation_failures: Vec::new(),
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
        assert!(!page.contains("Deprecations that failed"));
        let mut r = sample();
        r.images[0].deprecation_failures = vec!["v1: platform/eu-west-1/ami-1: AccessDenied".into()];
        assert!(html(&r).contains("Deprecations that failed") && html(&r).contains("AccessDenied"));
    }
}
