//! What names and values may be, so none becomes a path, an id or an API argument it
//! should not: each rule is stated once, with the message the loader gives.

/// Names of image lines, components, accounts and consumers: they become folder names
/// (`…/images/<name>/…`), SSM parameter paths, tags and STS session names.
pub(crate) fn name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !text.contains("..");
    if ok {
        Ok(())
    } else {
        Err("1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit, no `..`".into())
    }
}

/// The AWS regions amictl knows (commercial, GovCloud and China partitions). A region not
/// listed is an error: a typo here would publish nowhere.
pub(crate) const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// A region amictl can publish to.
pub(crate) fn region(text: &str) -> Result<(), String> {
    if REGIONS.contains(&text) { Ok(()) } else { Err("not an AWS region".into()) }
}

/// An EC2 instance type: `family.size` (`t3.medium`, `m7g.large`, `u-6tb1.metal`).
pub(crate) fn instance_type(text: &str) -> Result<(), String> {
    let ok = text.split_once('.').is_some_and(|(family, size)| {
        !family.is_empty()
            && !size.is_empty()
            && family.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && size.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if ok { Ok(()) } else { Err("not an instance type such as t3.medium".into()) }
}

/// A debootstrap suite or codename (`stable`, `bookworm`, `trixie-backports`).
pub(crate) fn suite(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '+'));
    if ok { Ok(()) } else { Err("not a Debian suite such as stable or bookworm".into()) }
}

/// An SSM parameter path: `/` separated, each part letters, digits, `-_.`.
pub(crate) fn parameter_path(text: &str) -> Result<(), String> {
    let ok = text.len() <= 1011
        && text.starts_with('/')
        && text[1..]
            .split('/')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if ok {
        Ok(())
    } else {
        Err("an SSM parameter path such as /platform/base-ami/host (letters, digits, - _ . between slashes)".into())
    }
}

/// An Image Builder pipeline: its ARN, or a name (1–128 letters, digits, `-`, `_`, `.`, spaces are not allowed).
pub(crate) fn pipeline(text: &str) -> Result<(), String> {
    let name_ok = |n: &str| {
        !n.is_empty() && n.len() <= 128 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let ok = match text.strip_prefix("arn:aws:imagebuilder:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(3, ':').collect();
            matches!(parts.as_slice(), [region, account, resource]
                if REGIONS.contains(region)
                    && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
                    && resource.strip_prefix("image-pipeline/").is_some_and(name_ok))
        }
        None => name_ok(text),
    };
    if ok {
        Ok(())
    } else {
        Err("not a pipeline ARN (arn:aws:imagebuilder:<region>:<account>:image-pipeline/<name>) or name".into())
    }
}

/// An environment variable's name.
pub(crate) fn env_var(text: &str) -> Result<(), String> {
    let ok = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err("an environment variable name such as SCAN_AGENT_KEY".into()) }
}

/// A component version: what people write (`1.2.0`, `2026.11`, `1.0.0-rc1+b2`).
pub(crate) fn version(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~'))
        && !text.contains("..");
    if ok { Ok(()) } else { Err("1 to 64 letters, digits, `.`, `-`, `_`, `+` or `~`".into()) }
}

/// An AMI owner for `ami:` parents: `self`, `amazon`, `aws-marketplace` or an account id.
pub(crate) fn ami_owner(text: &str) -> Result<(), String> {
    let ok = matches!(text, "self" | "amazon" | "aws-marketplace")
        || (text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()));
    if ok { Ok(()) } else { Err("an owner is self, amazon, aws-marketplace or a 12-digit account id".into()) }
}

/// An EC2 name pattern (`amzn2-ami-ecs-hvm-*-x86_64-ebs`): printable, no spaces.
pub(crate) fn name_pattern(text: &str) -> Result<(), String> {
    let ok = !text.is_empty() && text.len() <= 128 && text.chars().all(|c| c.is_ascii_graphic());
    if ok { Ok(()) } else { Err("1 to 128 printable characters, no spaces".into()) }
}

/// An EC2 resource id with its prefix (`subnet-0abc…`, `sg-0abc…`).
pub(crate) fn resource_id(prefix: &'static str) -> impl Fn(&str) -> Result<(), String> {
    move |text: &str| {
        let ok = text.strip_prefix(prefix).and_then(|h| h.strip_prefix('-')).is_some_and(|h| {
            (8..=17).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        });
        if ok { Ok(()) } else { Err(format!("not an id such as {prefix}-0123456789abcdef0")) }
    }
}

/// An IAM instance profile name.
pub(crate) fn instance_profile(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '-' | '_'));
    if ok { Ok(()) } else { Err("1 to 128 letters, digits or + = , . @ - _".into()) }
}

/// A systemd unit name (`auditd`, `amazon-ssm-agent`, `getty@tty1`): it is passed to
/// `systemctl` on the builder, so nothing a shell would read.
pub(crate) fn service(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 256
        && !text.starts_with('-')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-' | '\\'));
    if ok { Ok(()) } else { Err("a systemd unit name such as auditd (letters, digits, : _ . @ -)".into()) }
}

const DAY: i64 = 86_400;

/// `policy.max_age`: at least a day (0 would rebuild on every run), at most ten years.
pub(crate) const MAX_AGE: (i64, i64) = (DAY, 3650 * DAY);
/// `policy.rollout_sla`: at least an hour, at most a year.
pub(crate) const ROLLOUT_SLA: (i64, i64) = (3600, 365 * DAY);
/// `[aws] poll_interval`: 1 ms to 1 hour, in milliseconds.
pub(crate) const POLL_MS: (u64, u64) = (1, 3_600_000);
/// `[aws] ssm_timeout`: 1 second to 1 day, in milliseconds.
pub(crate) const SSM_TIMEOUT_MS: (u64, u64) = (1000, 86_400_000);
/// A local disk: 64 MiB to 16 TiB, in MiB.
pub(crate) const DISK_MB: (u64, u64) = (64, 16 * 1024 * 1024);

/// `seconds` as people write it back (`90d`, `12h`, `45s`).
pub(crate) fn human(seconds: i64) -> String {
    match seconds {
        s if s % DAY == 0 => format!("{}d", s / DAY),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An organisation ARN, as launch permissions and RAM take it.
pub(crate) fn organization_arn(text: &str) -> Result<(), String> {
    let ok = text.strip_prefix("arn:aws:organizations::").and_then(|r| r.split_once(":organization/o-")).is_some_and(
        |(account, id)| {
            account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && (10..=32).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        },
    );
    if ok {
        Ok(())
    } else {
        Err("not an organisation ARN such as arn:aws:organizations::111111111111:organization/o-abcd123456".into())
    }
}

/// An organisational unit ARN.
pub(crate) fn organizational_unit_arn(text: &str) -> Result<(), String> {
    let ok = text.strip_prefix("arn:aws:organizations::").and_then(|r| r.split_once(":ou/o-")).is_some_and(
        |(account, rest)| {
            account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && rest.split_once("/ou-").is_some_and(|(org, ou)| {
                    !org.is_empty()
                        && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                        && !ou.is_empty()
                        && ou.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                })
        },
    );
    if ok {
        Ok(())
    } else {
        Err("not an organisational unit ARN such as arn:aws:organizations::111111111111:ou/o-abcd123456/ou-ab12-cdef3456".into())
    }
}

/// A tag key the owner may set: EC2's limits, and not one of AWS's or amictl's own.
pub(crate) fn tag_key(text: &str) -> Result<(), String> {
    if text.is_empty() || text.chars().count() > 128 {
        Err("a tag key is 1 to 128 characters".into())
    } else if text.to_ascii_lowercase().starts_with("aws:") {
        Err("keys starting with aws: are reserved by AWS".into())
    } else if text.starts_with("amictl:") || text == "Name" {
        Err("amictl sets Name and the amictl: keys itself".into())
    } else {
        Ok(())
    }
}

/// `policy.approval_ttl`: at least an hour, at most 30 days.
pub(crate) const APPROVAL_TTL: (i64, i64) = (3600, 30 * DAY);
/// `serve.watch_interval`: a minute (feeds are not polled harder than that) to a day (the
/// watch is what makes "sooner" sooner than the next scheduled cycle).
pub(crate) const WATCH_INTERVAL: (i64, i64) = (60, DAY);

/// A cron expression for `serve.schedule` (what croner accepts: 5 fields, or 6 with
/// seconds first; `@daily` and friends).
pub(crate) fn cron(text: &str) -> Result<(), String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(text)
        .map(|_| ())
        .map_err(|e| format!("not a cron expression ({e})"))
}

/// An IANA time zone name jiff knows (`Europe/London`, `UTC`).
pub(crate) fn timezone(text: &str) -> Result<(), String> {
    jiff::tz::TimeZone::get(text).map(|_| ()).map_err(|_| "not a time zone in the IANA database".into())
}

/// `serve.listen`: `host:port` with an IP address (no name lookups at load).
pub(crate) fn listen(text: &str) -> Result<(), String> {
    text.parse::<std::net::SocketAddr>().map(|_| ()).map_err(|_| "an IP address and a port, e.g. 127.0.0.1:8421".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_a_folder_or_be_empty_are_refused() {
        for bad in ["", "a/b", "../../etc", "..", ".hidden", "a..b", "a b", "é", &"x".repeat(65)] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        for good in ["weco-amzn2-hvm-x86_64-gp2", "host", "goobi.bastion", "a1"] {
            assert!(name(good).is_ok(), "{good:?}");
        }
        assert!(suite("../../etc").is_err() && suite("stable").is_ok() && suite("trixie-backports").is_ok());
        assert!(region("").is_err() && region("eu-west-9").is_err() && region("eu-west-2").is_ok());
        assert!(instance_type("").is_err() && instance_type("t3").is_err() && instance_type("m7g.large").is_ok());
        assert!(parameter_path("/platform//x").is_err() && parameter_path("/platform/base-ami/host").is_ok());
        assert!(env_var("").is_err() && env_var("1X").is_err() && env_var("SCAN_KEY").is_ok());
        assert!(version("").is_err() && version("1 2").is_err() && version("1.2.0").is_ok());
        assert_eq!((human(90 * DAY), human(3600), human(45)), ("90d".into(), "1h".into(), "45s".into()));
    }
}
