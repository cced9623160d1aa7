//! The report as Prometheus text exposition.

use std::fmt::Write as _;

use engine::views::Report;
use fleet::Standing;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The report as Prometheus text exposition (gauges).
pub fn prometheus(r: &Report) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::html::tests::sample;

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
