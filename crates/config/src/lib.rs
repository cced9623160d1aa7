//! # config — `amictl.toml`
//!
//! The declarative input of amictl: image lines (parent, components, tests, builder),
//! the components they install (unchanged AWSTOE documents), and the policy (max age,
//! rollout SLA, how many versions to keep). [`Config::load`] checks the file *and* every
//! document it references, and reports every problem with file, line, column and the
//! offending key — unknown keys included — before anything runs.
//!
//! Each image gets a *recipe hash* over everything that defines what a build produces
//! (parent spec, component documents and versions, parameter specs, test documents), so
//! the planner can say "recipe changed" precisely. Parameter *specs* are hashed, not values
//! from the environment, so a secret or a per-run URL never forces a rebuild.
//!
//! [`schema`] holds the types; the loader reads and checks the file.

pub mod hygiene;
mod loader;
pub use loader::LoadOptions;
mod rules;
pub mod schema;

pub use schema::*;

/// Where the state lives when `[state] path` is not given, relative to the config.
pub const DEFAULT_STATE: &str = ".amictl/state.db";
pub(crate) const DAY: i64 = 86_400;

/// `"200ms"` or any [`parse_duration`] value, in milliseconds.
pub fn parse_millis(s: &str) -> Option<u64> {
    match s.trim().strip_suffix("ms") {
        Some(n) => n.parse().ok(),
        None => parse_duration(s).and_then(|secs| u64::try_from(secs).ok()?.checked_mul(1000)),
    }
}

/// `90d`, `14d`, `12h`, `30m`, `45s`, `2w` → seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(crate) fn parse_size_mb(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "M" | "MB" | "MiB" => Some(n),
        "G" | "GB" | "GiB" => n.checked_mul(1024),
        _ => None,
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A platform, a consumer account and a line with one component (in a temporary
    /// directory that holds the component's document): the config's head.
    fn two_accounts_and_a_line() -> (tempfile::TempDir, &'static str) {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "c.yml",
            &DOC.replace("  - Key:\n      type: string\n", "  - Key:\n      type: string\n      default: k\n"),
        );
        let head = "[accounts.platform]\nid = \"111111111111\"\n[accounts.workflow]\nid = \"222222222222\"\nrole = \"arn:aws:iam::222222222222:role/x\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1\"\n[images.host]\nparent = \"debootstrap:stable\"\ncomponents = [\"c\"]\n";
        (d, head)
    }

    const DOC: &str = "schemaVersion: 1.0\nparameters:\n  - Key:\n      type: string\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: ['true']\n";

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Some(90 * DAY));
        assert_eq!(parse_duration("2w"), Some(14 * DAY));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("90"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("5y"), None);
        assert_eq!(parse_millis("250ms"), Some(250));
        assert_eq!(parse_millis("10s"), Some(10_000));
        assert_eq!(parse_millis("fast"), None);
    }

    #[test]
    fn builders_and_parents_must_match_and_aws_settings_are_checked() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "c.yml", DOC);
        let cfg = write(
            d.path(),
            "amictl.toml",
            "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"soon\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1.0\"\nparameters = { Key = \"k\" }\nservices = [\"auditd\"]\n[images.a]\nparent = \"ssm:/aws/service/x\"\ncomponents = [\"c\"]\n[images.b]\nparent = \"debootstrap:stable\"\ncomponents = [\"c\"]\nbuilder = { kind = \"ec2\" }\n",
        );
        let errs = Config::load(&cfg).unwrap_err();
        let lines: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.code)).collect();
        assert!(lines.contains(&(3, "bad-duration")), "{errs:#?}");
        assert!(lines.contains(&(10, "builder-parent-mismatch")), "{errs:#?}");
        assert!(lines.contains(&(15, "builder-parent-mismatch")), "{errs:#?}");
        let fixed = "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"250ms\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1.0\"\nparameters = { Key = \"k\" }\nservices = [\"auditd\"]\n[images.a]\nparent = \"ssm:/aws/service/x\"\ncomponents = [\"c\"]\nbuilder = { kind = \"ec2\" }\n[images.ecs]\nparent = \"ami:amazon,591542846629/amzn2-ami-ecs-hvm-*-x86_64-ebs\"\ncomponents = [\"c\"]\nbuilder = { kind = \"ec2\" }\n";
        let std::result::Result::Ok((c, _)) = Config::load(&write(d.path(), "ok.toml", fixed)) else {
            panic!("{fixed}")
        };
        assert_eq!(c.aws_poll_ms, 250);
        assert_eq!(
            c.images["ecs"].parent,
            ParentSpec::AmiName {
                owners: vec!["amazon".into(), "591542846629".into()],
                pattern: "amzn2-ami-ecs-hvm-*-x86_64-ebs".into()
            }
        );
        assert_eq!(c.images["ecs"].parent.to_string(), "ami:amazon,591542846629/amzn2-ami-ecs-hvm-*-x86_64-ebs");
        assert_eq!(c.components["c"].services, ["auditd"]);
    }

    #[test]
    fn a_valid_config_loads_with_a_stable_recipe_hash() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "c.yml", DOC);
        let cfg = write(
            d.path(),
            "amictl.toml",
            "[policy]\nmax_age = \"30d\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1.0\"\nparameters = { Key = { env = \"KEY\", secret = true } }\n[images.host]\nparent = \"debootstrap:stable\"\ncomponents = [\"c\"]\n",
        );
        let (c, _) = Config::load(&cfg).unwrap();
        assert_eq!(c.policy.max_age_seconds, 30 * DAY);
        assert_eq!(c.policy.keep_versions, 3);
        let hash = c.images["host"].recipe_hash.clone();
        // SAFETY: single-threaded test; the value must not change the hash.
        unsafe { std::env::set_var("KEY", "whatever") };
        assert_eq!(Config::load(&cfg).unwrap().0.images["host"].recipe_hash, hash);
        std::fs::write(d.path().join("c.yml"), DOC.replace("['true']", "['false']")).unwrap();
        assert_ne!(
            Config::load(&cfg).unwrap().0.images["host"].recipe_hash,
            hash,
            "a document change changes the recipe"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "c.yml", DOC);
        let cfg = write(
            d.path(),
            "amictl.toml",
            "[policy]\nmax_age = \"90 days\"\ncolour = \"blue\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1.0\"\n[components.gone]\nfile = \"missing.yml\"\nversion = \"1\"\n[images.host]\nparent = \"ami:x\"\ncomponents = [\"c\", \"nope\"]\n",
        );
        let errs = Config::load(&cfg).unwrap_err();
        let find = |code: &str| errs.iter().find(|e| e.code == code).unwrap_or_else(|| panic!("no {code}: {errs:#?}"));
        assert_eq!(find("bad-duration").line, 2);
        assert_eq!(find("unknown-key").line, 3);
        assert!(find("unknown-key").message.contains("colour"));
        assert_eq!(find("missing-parameter").line, 4);
        assert_eq!(find("missing-file").line, 8);
        assert_eq!(find("bad-parent").line, 11);
        assert_eq!(find("unknown-component").line, 12);
        assert_eq!(find("unknown-component").column, 20);
    }

    #[test]
    fn accounts_consumers_and_distribution_are_checked() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "c.yml",
            &DOC.replace("  - Key:\n      type: string\n", "  - Key:\n      type: string\n      default: k\n"),
        );
        let cfg = write(
            d.path(),
            "amictl.toml",
            "[accounts.platform]\nid = \"111111111111\"\n[accounts.workflow]\nid = \"2222\"\nrole = \"arn:aws:iam::333333333333:role/x\"\n[components.c]\nfile = \"c.yml\"\nversion = \"1\"\n[images.host]\nparent = \"debootstrap:stable\"\ncomponents = [\"c\"]\ndistribute = { accounts = [\"workflow\", \"nobody\"], regions = [\"eu-west-1\"], ssm_parameter = \"platform/x\" }\n[consumers.goobi]\naccount = \"workflow\"\nimage = \"hots\"\nrolout = \"notify\"\n",
        );
        let errs = Config::load(&cfg).unwrap_err();
        let codes: Vec<(&str, usize)> = errs.iter().map(|e| (e.code, e.line)).collect();
        for expected in [
            ("bad-account-id", 4),
            ("bad-role", 5),
            ("unknown-reference", 12),
            ("bad-parameter-name", 12),
            ("unknown-reference", 15),
            ("unknown-key", 16),
        ] {
            assert!(codes.contains(&expected), "{expected:?} not in {codes:?}");
        }
    }

    #[test]
    fn rollout_preferences_are_read_and_keys_of_another_method_refused() {
        let (d, head) = two_accounts_and_a_line();
        let consumer = |rollout: &str| {
            format!(
                "{head}[consumers.goobi]\naccount = \"workflow\"\nimage = \"host\"\nselect = {{ asgs = [\"g\"] }}\nrollout = {rollout}\n"
            )
        };
        let cfg = write(
            d.path(),
            "ok.toml",
            &consumer(
                "{ kind = \"instance-refresh\", scale_in_protected = \"wait\", standby = \"terminate\", checkpoints = [20, 100], checkpoint_delay = \"10m\" }",
            ),
        );
        let (c, _) = Config::load(&cfg).unwrap();
        assert_eq!(
            c.consumers["goobi"].rollout,
            provider::RolloutMethod::InstanceRefresh {
                min_healthy_percent: 90,
                scale_in_protected: provider::RefreshProtected::Wait,
                standby: provider::RefreshStandby::Terminate,
                checkpoints: vec![20, 100],
                checkpoint_delay_seconds: Some(600),
            }
        );
        let cfg = write(
            d.path(),
            "rr.toml",
            &consumer("{ kind = \"rolling-replace\", protected = \"replace\", drain_timeout = \"5m\" }"),
        );
        let (c, _) = Config::load(&cfg).unwrap();
        assert_eq!(
            c.consumers["goobi"].rollout,
            provider::RolloutMethod::RollingReplace {
                batch: 1,
                protected: provider::Protected::Replace,
                drain_timeout_seconds: 300
            }
        );
        for (rollout, code, needle) in [
            (
                "{ kind = \"rolling-replace\", checkpoints = [100] }",
                "unknown-key",
                "does not apply to kind = \"rolling-replace\"",
            ),
            ("{ kind = \"instance-refresh\", checkpoints = [50, 20, 100] }", "bad-rollout", "must ascend"),
            ("{ kind = \"instance-refresh\", checkpoints = [20, 50] }", "bad-rollout", "must end at 100"),
            ("{ kind = \"instance-refresh\", standby = \"drop\" }", "bad-rollout", "is not one of"),
            ("{ kind = \"rolling-replace\", protected = \"ignore\" }", "bad-rollout", "\"skip\", \"replace\""),
        ] {
            let cfg = write(d.path(), "bad.toml", &consumer(rollout));
            let errs = Config::load(&cfg).unwrap_err();
            let hit = errs.iter().find(|e| e.code == code && e.line == 16 && e.message.contains(needle));
            assert!(hit.is_some(), "{rollout}: {errs:#?}");
        }
    }

    #[test]
    fn sharing_by_organisation_ram_and_tags_is_read_and_bad_values_are_refused_at_their_key() {
        let (d, head) = two_accounts_and_a_line();
        let org = "arn:aws:organizations::111111111111:organization/o-abcd123456";
        let ou = "arn:aws:organizations::111111111111:ou/o-abcd123456/ou-ab12-cdef3456";
        let distribute = |rest: &str| {
            format!("{head}distribute = {{ accounts = [\"workflow\"], regions = [\"eu-west-1\"]{rest} }}\n")
        };
        let cfg = write(
            d.path(),
            "ok.toml",
            &distribute(&format!(
                ", ssm_parameter = \"/p/host\", share_parameter = true, copy = true, organizations = [\"{org}\"], organizational_units = [\"{ou}\"], tags = {{ CostCentre = \"42\" }}"
            )),
        );
        let (c, _) = Config::load(&cfg).unwrap();
        let got = c.images["host"].distribute.clone().unwrap();
        assert_eq!((got.organizations, got.organizational_units), (vec![org.to_string()], vec![ou.to_string()]));
        assert!(got.share_parameter && got.copy);
        assert_eq!(got.tags, [("CostCentre".to_string(), "42".to_string())]);
        for (rest, code, needle) in [
            (", share_parameter = true", "missing-field", "needs distribute.ssm_parameter"),
            (", organizations = [\"o-abcd123456\"]", "bad-arn", "not an organisation ARN"),
            (&format!(", organizational_units = [\"{org}\"]"), "bad-arn", "not an organisational unit ARN"),
            (", tags = { \"aws:cost\" = \"x\" }", "bad-tag", "reserved by AWS"),
            (", tags = { Name = \"x\" }", "bad-tag", "amictl sets Name"),
        ] {
            let cfg = write(d.path(), "bad.toml", &distribute(rest));
            let errs = Config::load(&cfg).unwrap_err();
            let hit = errs.iter().find(|e| e.code == code && e.line == 12 && e.message.contains(needle));
            assert!(hit.is_some(), "{rest}: {errs:#?}");
        }
        // A pipeline's distribution configuration shares and tags what it makes.
        let pipeline = "[accounts.platform]\nid = \"111111111111\"\n[accounts.workflow]\nid = \"222222222222\"\nrole = \"arn:aws:iam::222222222222:role/x\"\n[images.host]\nbuilder = { kind = \"imagebuilder\", pipeline = \"host\" }\ndistribute = { accounts = [\"workflow\"], regions = [\"eu-west-1\"], tags = { CostCentre = \"42\" } }\n";
        let cfg = write(d.path(), "ib.toml", pipeline);
        let errs = Config::load(&cfg).unwrap_err();
        assert!(
            errs.iter().any(|e| e.code == "recipe-owned" && e.line == 8 && e.message.contains("distribute.tags")),
            "{errs:#?}"
        );
    }

    #[test]
    fn document_errors_are_reported_in_the_document() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "c.yml", "schemaVersion: 3\nphases: []\n");
        let cfg = write(
            d.path(),
            "amictl.toml",
            "[components.c]\nfile = \"c.yml\"\nversion = \"1\"\n[images.host]\nparent = \"debootstrap:stable\"\ncomponents = [\"c\"]\n",
        );
        let errs = Config::load(&cfg).unwrap_err();
        assert!(errs.iter().any(|e| e.file.ends_with("c.yml") && e.code == "bad-schema-version"), "{errs:#?}");
    }

    #[test]
    fn toml_syntax_errors_have_positions() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(d.path(), "amictl.toml", "[images.host]\nparent = \"debootstrap:stable\n");
        let errs = Config::load(&cfg).unwrap_err();
        assert_eq!(errs[0].code, "toml-syntax");
        assert_eq!(errs[0].line, 2);
    }
}
