//! End of support of the operating systems parents are made of: a line built on an OS
//! past (or near) its end gets no more security fixes however often it is rebuilt, and
//! only its owner can move it to the successor.
//!
//! A small table, matched on the parent's name (`amzn2-ami-hvm-2.0.…`, AMI names AWS
//! publishes) or spec (`debootstrap:bookworm`). Each row says where its date comes from;
//! rows are added when a vendor publishes a date, never estimated.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

/// One operating system's end of support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// What it is, for people.
    pub os: &'static str,
    /// Parent names (or specs) starting with one of these are it.
    pub prefixes: &'static [&'static str],
    /// The last day of support (UTC).
    pub ends: Date,
    /// Where to move, when there is somewhere.
    pub successor: Option<&'static str>,
    /// Where the date is published.
    pub source: &'static str,
}

/// The table. Longer prefixes first where two could match.
pub const LIFECYCLES: &[Lifecycle] = &[
    Lifecycle {
        os: "Amazon Linux 2 (ECS-optimised)",
        prefixes: &["amzn2-ami-ecs-"],
        ends: jiff::civil::date(2026, 6, 30),
        successor: Some("ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"),
        source: "https://aws.amazon.com/amazon-linux-2/faqs/",
    },
    Lifecycle {
        os: "Amazon Linux 2",
        prefixes: &["amzn2-ami-", "amzn2-"],
        ends: jiff::civil::date(2026, 6, 30),
        successor: Some("ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"),
        source: "https://aws.amazon.com/amazon-linux-2/faqs/",
    },
    Lifecycle {
        os: "Amazon Linux AMI (2018.03, ECS-optimised)",
        // ECS-optimised names are `amzn-ami-2018.03.<date>-amazon-ecs-optimized`; the plain
        // ones `amzn-ami-hvm-2018.03…`, `amzn-ami-minimal-…`.
        prefixes: &["amzn-ami-2018.03."],
        ends: jiff::civil::date(2023, 12, 31),
        successor: Some("ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"),
        source: "https://aws.amazon.com/amazon-linux-ami/faqs/",
    },
    Lifecycle {
        os: "Amazon Linux AMI (2018.03)",
        prefixes: &["amzn-ami-"],
        ends: jiff::civil::date(2023, 12, 31),
        successor: Some("ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"),
        source: "https://aws.amazon.com/amazon-linux-ami/faqs/",
    },
    Lifecycle {
        os: "Amazon Linux 2023",
        prefixes: &["al2023-ami-"],
        ends: jiff::civil::date(2029, 6, 30),
        successor: None,
        source: "https://docs.aws.amazon.com/linux/al2023/ug/release-cadence.html",
    },
    Lifecycle {
        os: "Debian 11 (bullseye; LTS to 2026-08-31)",
        prefixes: &["debootstrap:bullseye", "debian-11-"],
        ends: jiff::civil::date(2024, 8, 14),
        successor: Some("Debian 13 (debootstrap:trixie, or AMIs named debian-13-*)"),
        source: "https://www.debian.org/releases/bullseye/",
    },
    Lifecycle {
        os: "Debian 12 (bookworm; LTS to 2028-06-30)",
        prefixes: &["debootstrap:bookworm", "debian-12-"],
        ends: jiff::civil::date(2026, 6, 10),
        successor: Some("Debian 13 (debootstrap:trixie, or AMIs named debian-13-*)"),
        source: "https://www.debian.org/releases/bookworm/",
    },
];

/// How close a line's parent is to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndOfSupport {
    /// The line.
    pub image: String,
    /// The parent it builds from (name).
    pub parent: String,
    /// Its operating system.
    pub os: String,
    /// Its last day of support.
    pub ends: String,
    /// Days from now to then; negative once past.
    pub days_left: i64,
    /// Where to move.
    pub successor: Option<String>,
    /// Where the date comes from.
    pub source: String,
}

/// How far ahead an end is worth saying.
pub const WARN_DAYS: i64 = 90;

/// The lifecycle a parent name (or spec) belongs to.
pub fn lifecycle(parent: &str) -> Option<&'static Lifecycle> {
    LIFECYCLES.iter().find(|l| l.prefixes.iter().any(|p| parent.starts_with(p)))
}

/// The successor for the parent's architecture: the table names x86_64 parameters.
fn for_arch(successor: &str, parent: &str) -> String {
    if !(parent.contains("arm64") || parent.contains("aarch64")) {
        return successor.to_string();
    }
    if successor.contains("ecs/optimized-ami/amazon-linux-2023/recommended") {
        return successor.replace("amazon-linux-2023/recommended", "amazon-linux-2023/arm64/recommended");
    }
    successor.replace("x86_64", "arm64")
}

/// The line's end of support when it is past or within [`WARN_DAYS`] of `now`.
pub fn check(image: &str, parent: &str, now: Timestamp) -> Option<EndOfSupport> {
    let l = lifecycle(parent)?;
    let today: Date = now.strftime("%Y-%m-%d").to_string().parse().ok()?;
    // `Date::until` counts in days by default.
    let days_left = i64::from(today.until(l.ends).ok()?.get_days());
    (days_left <= WARN_DAYS).then(|| EndOfSupport {
        image: image.into(),
        parent: parent.into(),
        os: l.os.into(),
        ends: l.ends.to_string(),
        days_left,
        successor: l.successor.map(|s| for_arch(s, parent)),
        source: l.source.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parents_near_or_past_their_end_are_named_with_their_successor() {
        let ecs = check("ecs", "amzn2-ami-ecs-hvm-2.0.20260924-x86_64-ebs", at("2026-12-02T00:00:00Z")).unwrap();
        assert_eq!((ecs.os.as_str(), ecs.days_left), ("Amazon Linux 2 (ECS-optimised)", -155));
        assert!(ecs.successor.unwrap().contains("amazon-linux-2023"));
        let plain = check("b", "amzn2-ami-hvm-2.0.20260930.0-x86_64-gp2", at("2026-04-01T00:00:00Z")).unwrap();
        assert_eq!(plain.days_left, 90, "within 90 days is said");
        assert!(
            check("b", "amzn2-ami-hvm-2.0.2026", at("2026-04-01T00:00:00Z") - jiff::SignedDuration::from_hours(24))
                .is_none()
        );
        assert!(check("n", "al2023-ami-2023.9.20261120.0-kernel-6.1-x86_64", at("2026-12-02T00:00:00Z")).is_none());
        assert_eq!(check("d", "debootstrap:bookworm", at("2026-12-02T00:00:00Z")).unwrap().ends, "2026-06-10");
        assert!(check("d", "debootstrap:stable", at("2026-12-02T00:00:00Z")).is_none(), "`stable` moves on");
        assert!(check("x", "ubuntu-noble", at("2026-12-02T00:00:00Z")).is_none(), "unknown: nothing guessed");
        let arm = check("a", "amzn2-ami-hvm-2.0.20260930.0-arm64-gp2", at("2026-12-02T00:00:00Z")).unwrap();
        assert_eq!(
            arm.successor.as_deref(),
            Some("ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
        );
        let arm_ecs = check("e", "amzn2-ami-ecs-hvm-2.0.20260924-arm64-ebs", at("2026-12-02T00:00:00Z")).unwrap();
        assert_eq!(
            arm_ecs.successor.as_deref(),
            Some("ssm:/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id")
        );
        let al1_ecs = check("e", "amzn-ami-2018.03.20231218-amazon-ecs-optimized", at("2026-12-02T00:00:00Z")).unwrap();
        assert!(al1_ecs.successor.unwrap().contains("ecs/optimized-ami"));
        assert!(check("d", "debootstrap:oldoldstable", at("2026-12-02T00:00:00Z")).is_none(), "aliases move on");
    }
}
