//! Reading `amictl.toml`: every problem with file, line, column and the offending key.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toe::diag::Sink;
use toe::yaml::Pos;
use toe::{Diagnostic, Document};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::rules;
use crate::schema::*;
use crate::{DEFAULT_STATE, hex, parse_duration, parse_millis, parse_size_mb};

mod serve;
mod state;

impl Config {
    /// Loads and validates. `Err` carries every error (and warnings); nothing is partial.
    pub fn load(path: &Path) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
        Config::load_with(path, false)
    }

    /// [`Config::load`]; with `strict`, unknown keys in documents are errors.
    pub fn load_with(path: &Path, strict: bool) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
        Config::load_opts(path, &LoadOptions { strict, components: None, lenient: false })
    }

    /// [`Config::load`] with every option.
    pub fn load_opts(path: &Path, opts: &LoadOptions<'_>) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
        let strict = opts.strict;
        let file = path.display().to_string();
        let mut sink = Sink::new(&file);
        let text = match toe::input::read_text(path, toe::input::CONFIG_LIMIT) {
            Ok(t) => t,
            Err(e) => {
                use toe::input::InputError;
                let (pos, code, hint) = match &e {
                    InputError::Missing(_) => {
                        (Pos { line: 0, column: 0 }, "missing-config", "pass --config PATH (default: ./amictl.toml)")
                    }
                    InputError::NotUtf8 { line, column, .. } => {
                        (Pos { line: *line, column: *column }, "not-utf8", "save the config as UTF-8")
                    }
                    InputError::TooLarge(..) => {
                        (Pos { line: 1, column: 1 }, "config-too-large", "split it: a config this large is an accident")
                    }
                    InputError::NotAFile(..) | InputError::Io(..) => {
                        (Pos { line: 0, column: 0 }, "unreadable-config", "--config must name a readable regular file")
                    }
                };
                sink.error(pos, code, e.to_string(), hint);
                return Err(sink.items);
            }
        };
        let dir = path
            .parent()
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut loader = Loader {
            text: &text,
            sink: &mut sink,
            dir: &dir,
            docs: Vec::new(),
            broken_components: BTreeSet::new(),
            parameter_spans: BTreeMap::new(),
            strict,
            source: opts.components,
            fetched: BTreeMap::new(),
            lenient: opts.lenient,
        };
        let config = loader.config(path);
        let docs = std::mem::take(&mut loader.docs);
        let mut all = sink.items;
        all.extend(docs);
        match config {
            Some(c) if !all.iter().any(|d| d.severity == toe::Severity::Error) => Ok((c, all)),
            _ => Err(all),
        }
    }
}

/// How to load a config.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// Unknown keys in documents are errors.
    pub strict: bool,
    /// Where components given by ARN (and documents run by ARN) are fetched from; without
    /// one, such a component is an error.
    pub components: Option<&'a dyn toe::component::Fetch>,
    /// A component that cannot be fetched is a warning and stands in empty: for commands
    /// that only read the state (`images`, `audit`, `iam-policy` …), never for deciding.
    pub lenient: bool,
}

const REGION_HINT: &str = "e.g. eu-west-1 (regions of the aws, aws-us-gov and aws-cn partitions)";

struct Loader<'a> {
    text: &'a str,
    sink: &'a mut Sink,
    dir: &'a Path,
    /// Diagnostics of referenced documents (they carry their own file names).
    docs: Vec<Diagnostic>,
    /// Components defined but not loadable (already reported; not "undefined" too).
    broken_components: BTreeSet<String>,
    /// Where each image line's `ssm_parameter` is written, for the collision check.
    parameter_spans: BTreeMap<String, Range<usize>>,
    /// Unknown keys in documents are errors.
    strict: bool,
    source: Option<&'a dyn toe::component::Fetch>,
    fetched: BTreeMap<String, toe::component::Fetched>,
    /// A component that cannot be fetched is a warning (commands that only read).
    lenient: bool,
}

type Table<'i> = DeTable<'i>;

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "table",
    }
}

impl Loader<'_> {
    fn pos(&self, span: Range<usize>) -> Pos {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Pos { line, column }
    }

    fn err(&mut self, span: Range<usize>, code: &'static str, message: String, hint: &str) {
        let pos = self.pos(span);
        self.sink.error(pos, code, message, hint);
    }

    fn warn(&mut self, span: Range<usize>, code: &'static str, message: String, hint: &str) {
        let pos = self.pos(span);
        self.sink.warning(pos, code, message, hint);
    }

    /// Checks `value` of `key` against `rule`; the error names the key, the value and the rule.
    fn rule(
        &mut self,
        span: Range<usize>,
        code: &'static str,
        key: &str,
        value: &str,
        rule: impl Fn(&str) -> Result<(), String>,
        hint: &str,
    ) -> bool {
        match rule(value) {
            Ok(()) => true,
            Err(why) => {
                self.err(span, code, format!("`{key}` = {value:?}: {why}"), hint);
                false
            }
        }
    }

    /// A name that becomes a folder, an SSM path or a tag (see [`rules::name`]).
    fn name(&mut self, span: Range<usize>, what: &str, name: &str) {
        if let Err(why) = rules::name(name) {
            self.err(
                span,
                "bad-name",
                format!("{what} name {name:?} is not allowed: it must be {why}"),
                "names become folder names, SSM parameter paths and tags",
            );
        }
    }

    /// A duration within `(min, max)` seconds.
    fn bounded(&mut self, v: &Spanned<DeValue<'_>>, key: &str, (min, max): (i64, i64)) -> Option<i64> {
        let d = self.duration(v, key)?;
        if (min..=max).contains(&d) {
            Some(d)
        } else {
            let text = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                _ => String::new(),
            };
            self.err(
                v.span(),
                "out-of-range",
                format!(
                    "`{key}` = {text:?} is out of range: it must be from {} to {}",
                    rules::human(min),
                    rules::human(max)
                ),
                "README, \"Limits and hostile input\", lists each bound and why",
            );
            None
        }
    }

    fn known(&mut self, table: &Table<'_>, keys: &[&str], what: &str) {
        for (k, _) in table.iter() {
            if !keys.contains(&k.get_ref().as_ref()) {
                let hint = format!("{what} keys are: {}", keys.join(", "));
                self.err(k.span(), "unknown-key", format!("unknown key `{}` in {what}", k.get_ref()), &hint);
            }
        }
    }

    fn get<'t, 'i>(table: &'t Table<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
    }

    fn table<'t, 'i>(&mut self, v: &'t Spanned<DeValue<'i>>, what: &str) -> Option<&'t Table<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.err(
                    v.span(),
                    "wrong-type",
                    format!("`{what}` must be a table, found {}", kind(other)),
                    "write it as [section] or { key = value }",
                );
                None
            }
        }
    }

    fn string(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(
                    v.span(),
                    "wrong-type",
                    format!("`{what}` must be a string, found {}", kind(other)),
                    "quote the value",
                );
                None
            }
        }
    }

    /// A duration (`"200ms"`, `"10s"`, `"15m"`) under `key`, in milliseconds, within `bounds`.
    fn millis(&mut self, t: &Table<'_>, key: &str, (min, max): (u64, u64), hint: &str) -> Option<u64> {
        let v = Self::get(t, key)?;
        let text = self.string(v, key)?;
        match parse_millis(&text) {
            Some(ms) if (min..=max).contains(&ms) => Some(ms),
            Some(_) => {
                let human = |ms: u64| if ms < 1000 { format!("{ms}ms") } else { rules::human((ms / 1000) as i64) };
                self.err(
                    v.span(),
                    "out-of-range",
                    format!("`aws.{key}` = {text:?} is out of range: it must be from {} to {}", human(min), human(max)),
                    hint,
                );
                None
            }
            None => {
                self.err(v.span(), "bad-duration", format!("`aws.{key}` = {text:?} is not a duration"), hint);
                None
            }
        }
    }

    fn boolean(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    v.span(),
                    "wrong-type",
                    format!("`{what}` must be true or false, found {}", kind(other)),
                    "write true or false",
                );
                None
            }
        }
    }

    fn strings(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Vec<(String, Range<usize>)> {
        match v.get_ref() {
            DeValue::Array(items) => items.iter().filter_map(|i| self.string(i, what).map(|s| (s, i.span()))).collect(),
            other => {
                self.err(
                    v.span(),
                    "wrong-type",
                    format!("`{what}` must be an array of strings, found {}", kind(other)),
                    "e.g. [\"a\", \"b\"]",
                );
                Vec::new()
            }
        }
    }

    fn duration(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<i64> {
        let text = self.string(v, what)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.err(
                    v.span(),
                    "bad-duration",
                    format!("`{what}` = \"{text}\" is not a duration"),
                    "write a number and a unit: 90d, 14d, 12h, 2w",
                );
                None
            }
        }
    }

    /// toml says only "duplicate key": name it, and the table when a whole one repeats.
    fn duplicate(&self, span: Range<usize>) -> (String, String) {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or_default().trim();
        if line.starts_with('[') {
            return (format!("table `{line}` is defined twice"), "merge the two tables into one".into());
        }
        let key: String =
            self.text[start..].chars().take_while(|c| !matches!(c, ' ' | '\t' | '=' | ']' | '\n' | '.')).collect();
        (format!("duplicate key `{}`", key.trim_matches('"')), "set each key once per table".into())
    }

    fn config(&mut self, path: &Path) -> Option<Config> {
        let root = match DeTable::parse(self.text) {
            Ok(t) => t,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let (message, hint) = if e.message().contains("duplicate key") {
                    self.duplicate(span.clone())
                } else {
                    (format!("invalid TOML: {}", e.message()), "fix the TOML syntax at this position".to_string())
                };
                self.err(span, "toml-syntax", message, &hint);
                return None;
            }
        };
        let root = root.get_ref();
        self.known(
            root,
            &["state", "policy", "aws", "accounts", "components", "images", "consumers", "serve", "audit"],
            "the config",
        );
        let mut state = self.dir.join(DEFAULT_STATE);
        let mut work_dir: Option<PathBuf> = None;
        let mut state_db = None;
        if let Some(v) = Self::get(root, "state")
            && let Some(t) = self.table(v, "state")
        {
            self.known(t, &["path", "work_dir", "url", "password"], "[state]");
            state_db = self.state_db(t);
            if let Some(v) = Self::get(t, "path")
                && let Some(p) = self.string(v, "state.path")
            {
                state = self.dir.join(p);
                if std::fs::metadata(&state).is_ok_and(|m| !m.is_file()) {
                    self.regular_file(&state, v.span(), "state.path");
                }
            }
            work_dir =
                Self::get(t, "work_dir").and_then(|p| self.string(p, "state.work_dir")).map(|p| self.dir.join(p));
        }
        let work_dir = work_dir
            .unwrap_or_else(|| state.parent().map(Path::to_path_buf).unwrap_or_else(|| self.dir.join(".amictl")));
        let policy = Self::get(root, "policy").map(|v| self.policy(v)).unwrap_or_default();
        let mut aws_region = None;
        let mut aws_poll_ms = 10_000;
        let mut aws_ssm_timeout_ms = 15 * 60 * 1000;
        if let Some(v) = Self::get(root, "aws")
            && let Some(t) = self.table(v, "aws")
        {
            self.known(t, &["region", "poll_interval", "ssm_timeout"], "[aws]");
            if let Some(r) = Self::get(t, "region")
                && let Some(region) = self.string(r, "aws.region")
            {
                self.rule(r.span(), "bad-region", "aws.region", &region, rules::region, REGION_HINT);
                aws_region = Some(region);
            }
            aws_poll_ms =
                self.millis(t, "poll_interval", rules::POLL_MS, "e.g. \"10s\" or \"200ms\"").unwrap_or(aws_poll_ms);
            aws_ssm_timeout_ms =
                self.millis(t, "ssm_timeout", rules::SSM_TIMEOUT_MS, "e.g. \"15m\"").unwrap_or(aws_ssm_timeout_ms);
        }
        let mut accounts = BTreeMap::new();
        if let Some(v) = Self::get(root, "accounts")
            && let Some(t) = self.table(v, "accounts")
        {
            let mut ids: BTreeMap<String, String> = BTreeMap::new();
            // In file order, so the error is at the second of two.
            let mut entries: Vec<_> = t.iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (k, v) in entries {
                self.name(k.span(), "account", k.get_ref());
                if let Some(a) = self.account(k.get_ref(), v) {
                    if let Some(first) = ids.get(&a.id) {
                        let span = self.table_key_span(v, "id");
                        self.err(
                            span,
                            "duplicate-account-id",
                            format!("accounts `{first}` and `{}` have the same id {}", a.name, a.id),
                            "one [accounts.<name>] per AWS account",
                        );
                    } else {
                        ids.insert(a.id.clone(), a.name.clone());
                    }
                    if a.role.is_none()
                        && let Some(first) = accounts.values().find(|p: &&Account| p.role.is_none())
                    {
                        self.err(
                            k.span(),
                            "two-platforms",
                            format!("accounts `{}` and `{}` both have no `role`: which is the platform?", first.name, a.name),
                            "the platform account has no role (amictl runs with its credentials); give every consumer account its role",
                        );
                    }
                    accounts.insert(a.name.clone(), a);
                }
            }
        }
        let mut components = BTreeMap::new();
        if let Some(v) = Self::get(root, "components")
            && let Some(t) = self.table(v, "components")
        {
            for (k, v) in t.iter() {
                self.name(k.span(), "component", k.get_ref());
                match self.component(k.get_ref(), v) {
                    Some(c) => {
                        components.insert(c.name.clone(), c);
                    }
                    None => {
                        self.broken_components.insert(k.get_ref().to_string());
                    }
                }
            }
        }
        let mut images = BTreeMap::new();
        match Self::get(root, "images") {
            None => self.err(
                0..0,
                "missing-field",
                "the config defines no [images.<name>]".into(),
                "add at least one image line",
            ),
            Some(v) => {
                if let Some(t) = self.table(v, "images") {
                    for (k, v) in t.iter() {
                        self.name(k.span(), "image", k.get_ref());
                        if let Some(i) = self.image(k.get_ref(), k.span(), v, &components, &accounts) {
                            images.insert(i.name.clone(), i);
                        }
                    }
                }
            }
        }
        let mut consumers = BTreeMap::new();
        if let Some(v) = Self::get(root, "consumers")
            && let Some(t) = self.table(v, "consumers")
        {
            for (k, v) in t.iter() {
                self.name(k.span(), "consumer", k.get_ref());
                if let Some(c) = self.consumer(k.get_ref(), v, &accounts, &images) {
                    consumers.insert(c.name.clone(), c);
                }
            }
        }
        self.parameter_collisions(&images, &accounts);
        let serve = Self::get(root, "serve").map(|v| self.serve(v)).unwrap_or_default();
        let anchors = Self::get(root, "audit").map(|v| self.audit(v)).unwrap_or_default();
        let cache_dir = std::env::var_os("AMICTL_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("amictl")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/amictl")))
            .unwrap_or_else(|| work_dir.join("cache"));
        Some(Config {
            file: path.to_path_buf(),
            dir: self.dir.to_path_buf(),
            state,
            state_db,
            anchors,
            work_dir,
            cache_dir,
            policy,
            aws_region,
            aws_poll_ms,
            aws_ssm_timeout_ms,
            accounts,
            components,
            images,
            consumers,
            serve,
            fetched: std::mem::take(&mut self.fetched),
        })
    }

    fn policy(&mut self, v: &Spanned<DeValue<'_>>) -> Policy {
        let mut p = Policy::default();
        let Some(t) = self.table(v, "policy") else { return p };
        self.known(
            t,
            &[
                "max_age",
                "rebuild_on_parent_update",
                "rebuild_on_severity",
                "rollout_sla",
                "keep_versions",
                "require_approval",
                "approval_ttl",
            ],
            "[policy]",
        );
        if let Some(v) = Self::get(t, "require_approval") {
            for (kind, span) in self.strings(v, "policy.require_approval") {
                if !["build", "rollout", "retire"].contains(&kind.as_str()) {
                    self.err(
                        span,
                        "bad-approval",
                        format!("`policy.require_approval` names `{kind}`, which is not an action that can be held"),
                        "any of \"build\", \"rollout\", \"retire\"",
                    );
                } else if !p.require_approval.contains(&kind) {
                    p.require_approval.push(kind);
                }
            }
        }
        if let Some(d) =
            Self::get(t, "approval_ttl").and_then(|v| self.bounded(v, "policy.approval_ttl", rules::APPROVAL_TTL))
        {
            p.approval_ttl_seconds = d;
        }
        if let Some(d) = Self::get(t, "max_age").and_then(|v| self.bounded(v, "policy.max_age", rules::MAX_AGE)) {
            p.max_age_seconds = d;
        }
        if let Some(d) =
            Self::get(t, "rollout_sla").and_then(|v| self.bounded(v, "policy.rollout_sla", rules::ROLLOUT_SLA))
        {
            p.rollout_sla_seconds = d;
        }
        if let Some(b) =
            Self::get(t, "rebuild_on_parent_update").and_then(|v| self.boolean(v, "policy.rebuild_on_parent_update"))
        {
            p.rebuild_on_parent_update = b;
        }
        if let Some(v) = Self::get(t, "rebuild_on_severity")
            && let Some(s) = self.string(v, "policy.rebuild_on_severity")
        {
            if ["low", "medium", "important", "critical"].contains(&s.to_ascii_lowercase().as_str()) {
                p.rebuild_on_severity = s.to_ascii_lowercase();
            } else {
                self.err(
                    v.span(),
                    "bad-severity",
                    format!("unknown severity `{s}`"),
                    "use low, medium, important or critical",
                );
            }
        }
        if let Some(v) = Self::get(t, "keep_versions") {
            match v.get_ref() {
                DeValue::Integer(i) if i.as_str().parse::<usize>().is_ok_and(|n| n >= 1) => {
                    p.keep_versions = i.as_str().parse().unwrap_or(3)
                }
                _ => self.err(
                    v.span(),
                    "wrong-type",
                    "`policy.keep_versions` must be a whole number ≥ 1".into(),
                    "e.g. keep_versions = 3",
                ),
            }
        }
        p
    }

    fn account(&mut self, name: &str, v: &Spanned<DeValue<'_>>) -> Option<Account> {
        let t = self.table(v, &format!("accounts.{name}"))?;
        self.known(t, &["id", "role", "external_id"], &format!("[accounts.{name}]"));
        let Some(idv) = Self::get(t, "id") else {
            self.err(
                v.span(),
                "missing-field",
                format!("account `{name}` needs `id`"),
                "the 12-digit AWS account id, quoted",
            );
            return None;
        };
        let id = self.string(idv, "id")?;
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            self.err(
                idv.span(),
                "bad-account-id",
                format!("account `{name}`: `{id}` is not a 12-digit account id"),
                "e.g. id = \"111111111111\"",
            );
        }
        let role = Self::get(t, "role").and_then(|r| {
            let arn = self.string(r, "role")?;
            let ok = arn
                .strip_prefix("arn:aws:iam::")
                .and_then(|rest| rest.split_once(":role/"))
                .is_some_and(|(acct, role)| acct == id && !role.is_empty());
            if !ok {
                self.err(
                    r.span(),
                    "bad-role",
                    format!("account `{name}`: `{arn}` is not a role ARN in account {id}"),
                    "arn:aws:iam::<account id>:role/<name>",
                );
            }
            Some(arn)
        });
        let external_id = Self::get(t, "external_id").and_then(|e| self.string(e, "external_id"));
        Some(Account { name: name.to_string(), id, role, external_id })
    }

    fn consumer(
        &mut self,
        name: &str,
        v: &Spanned<DeValue<'_>>,
        accounts: &BTreeMap<String, Account>,
        images: &BTreeMap<String, Image>,
    ) -> Option<Consumer> {
        let t = self.table(v, &format!("consumers.{name}"))?;
        self.known(
            t,
            &["account", "image", "select", "rollout", "owner", "exemptions"],
            &format!("[consumers.{name}]"),
        );
        let reference = |key: &str, known: Vec<String>, this: &mut Self| -> Option<String> {
            let Some(r) = Self::get(t, key) else {
                this.err(
                    v.span(),
                    "missing-field",
                    format!("consumer `{name}` needs `{key}`"),
                    "see the README's config section",
                );
                return None;
            };
            let value = this.string(r, key)?;
            if !known.contains(&value) {
                this.err(
                    r.span(),
                    "unknown-reference",
                    format!("consumer `{name}`: no {key} `{value}`"),
                    &format!("defined: {}", known.join(", ")),
                );
            }
            Some(value)
        };
        let account = reference("account", accounts.keys().cloned().collect(), self);
        let image = reference("image", images.keys().cloned().collect(), self);
        let owner = Self::get(t, "owner").and_then(|o| self.string(o, "owner"));
        let mut select = Selection::default();
        match Self::get(t, "select") {
            None => self.err(
                v.span(),
                "missing-field",
                format!("consumer `{name}` needs `select`"),
                "e.g. select = { tags = { Service = \"goobi\" } } or { asgs = [\"goobi-container-hosts\"] }",
            ),
            Some(sv) => {
                if let Some(st) = self.table(sv, "select") {
                    self.known(st, &["tags", "asgs", "launch_templates"], "select");
                    if let Some(tv) = Self::get(st, "tags")
                        && let Some(tt) = self.table(tv, "select.tags")
                    {
                        for (k, v) in tt.iter() {
                            if let Some(value) = self.string(v, "tag value") {
                                select.tags.push((k.get_ref().to_string(), value));
                            }
                        }
                    }
                    if let Some(a) = Self::get(st, "asgs") {
                        select.asgs = self.strings(a, "select.asgs").into_iter().map(|(s, _)| s).collect();
                    }
                    if let Some(l) = Self::get(st, "launch_templates") {
                        select.launch_templates =
                            self.strings(l, "select.launch_templates").into_iter().map(|(s, _)| s).collect();
                    }
                    if select.tags.is_empty() && select.asgs.is_empty() && select.launch_templates.is_empty() {
                        self.err(
                            sv.span(),
                            "empty-select",
                            format!("consumer `{name}`: `select` finds nothing"),
                            "give tags, asgs or launch_templates",
                        );
                    }
                }
            }
        }
        let rollout =
            Self::get(t, "rollout").map(|r| self.rollout(name, r)).unwrap_or(RolloutMethod::Notify { sns_topic: None });
        if rollout.moves_groups() && select.asgs.is_empty() {
            let span = Self::get(t, "rollout").map(|r| r.span()).unwrap_or(v.span());
            self.err(
                span,
                "rollout-needs-asg",
                format!(
                    "consumer `{name}`: this rollout replaces auto scaling group instances, but `select` names no asgs"
                ),
                "add select.asgs, or use rollout = { kind = \"notify\" }",
            );
        }
        let mut exemptions = Vec::new();
        if let Some(ev) = Self::get(t, "exemptions") {
            match ev.get_ref() {
                DeValue::Array(items) => {
                    for item in items {
                        let Some(et) = self.table(item, "exemption") else { continue };
                        self.known(et, &["instance", "until", "reason"], "exemption");
                        let instance = Self::get(et, "instance").and_then(|x| self.string(x, "instance"));
                        let until = Self::get(et, "until").and_then(|x| self.string(x, "until"));
                        let reason = Self::get(et, "reason").and_then(|x| self.string(x, "reason"));
                        let date_ok = until.as_deref().is_some_and(|u| u.parse::<jiff::civil::Date>().is_ok());
                        match (instance, until, reason) {
                            (Some(instance), Some(until), Some(reason)) if date_ok && !reason.trim().is_empty() => {
                                exemptions.push(Exemption { instance, until, reason })
                            }
                            _ => self.err(item.span(), "bad-exemption", format!("consumer `{name}`: an exemption needs `instance`, `until` (YYYY-MM-DD) and a `reason`"), "e.g. { instance = \"i-0abc…\", until = \"2027-01-31\", reason = \"vendor certification\" }"),
                        }
                    }
                }
                _ => self.err(
                    ev.span(),
                    "wrong-type",
                    "`exemptions` must be an array of tables".into(),
                    "exemptions = [{ instance = …, until = …, reason = … }]",
                ),
            }
        }
        Some(Consumer { name: name.to_string(), account: account?, image: image?, owner, select, rollout, exemptions })
    }

    fn advisories(&mut self, image: &str, v: &Spanned<DeValue<'_>>) -> Option<AdvisoryFeed> {
        let t = self.table(v, "advisories")?;
        self.known(t, &["updateinfo", "debian_tracker", "release", "inspector"], "advisories");
        if let Some(i) = Self::get(t, "inspector")
            && self.boolean(i, "inspector") == Some(true)
        {
            if Self::get(t, "updateinfo").is_some() || Self::get(t, "debian_tracker").is_some() {
                self.err(
                    v.span(),
                    "bad-advisories",
                    format!("image `{image}`: give one source"),
                    "inspector = true, or a feed",
                );
            }
            return Some(AdvisoryFeed::Inspector);
        }
        let place = |this: &mut Self, key: &str| -> Option<String> {
            let v = Self::get(t, key)?;
            let s = this.string(v, key)?;
            if s.starts_with("http://") || s.starts_with("https://") {
                return Some(s);
            }
            if s.contains("://") {
                this.err(
                    v.span(),
                    "bad-feed",
                    format!("`advisories.{key}` = {s:?}: only http(s) URLs or files"),
                    "e.g. https://…/repodata/repomd.xml",
                );
                return None;
            }
            let path = this.dir.join(&s);
            this.regular_file(&path, v.span(), &format!("image `{image}`: advisories.{key}"));
            Some(path.display().to_string())
        };
        match (place(self, "updateinfo"), place(self, "debian_tracker")) {
            (Some(location), None) => Some(AdvisoryFeed::Updateinfo { location }),
            (None, Some(location)) => match Self::get(t, "release").and_then(|r| self.string(r, "release")) {
                Some(release) => Some(AdvisoryFeed::DebianTracker { location, release }),
                None => {
                    self.err(
                        v.span(),
                        "missing-field",
                        format!("image `{image}`: a Debian tracker feed needs `release`"),
                        "e.g. release = \"bookworm\"",
                    );
                    None
                }
            },
            _ => {
                self.err(
                    v.span(),
                    "bad-advisories",
                    format!("image `{image}`: give exactly one of `updateinfo` or `debian_tracker`"),
                    "advisories = { updateinfo = \"https://…/repodata/repomd.xml\" }",
                );
                None
            }
        }
    }

    fn rollout(&mut self, name: &str, v: &Spanned<DeValue<'_>>) -> RolloutMethod {
        use provider::{Protected, RefreshProtected, RefreshStandby};
        let fallback = RolloutMethod::Notify { sns_topic: None };
        let Some(t) = self.table(v, "rollout") else { return fallback };
        const KEYS: [(&str, &[&str]); 5] = [
            ("notify", &["sns_topic"]),
            ("pinned", &["sns_topic"]),
            ("launch-template", &[]),
            ("rolling-replace", &["batch", "protected", "drain_timeout"]),
            (
                "instance-refresh",
                &["min_healthy_percent", "scale_in_protected", "standby", "checkpoints", "checkpoint_delay"],
            ),
        ];
        let all: Vec<&str> = std::iter::once("kind").chain(KEYS.iter().flat_map(|(_, k)| k.iter().copied())).collect();
        self.known(t, &all, "rollout");
        let kind = Self::get(t, "kind").and_then(|k| self.string(k, "rollout.kind"));
        // A key of another method is a mistake worth naming: it would silently do nothing.
        if let Some(allowed) = KEYS.iter().find(|(k, _)| Some(*k) == kind.as_deref()).map(|(_, keys)| *keys) {
            for (k, _) in t.iter() {
                let key = k.get_ref().as_ref();
                if key != "kind" && all.contains(&key) && !allowed.contains(&key) {
                    self.err(
                        k.span(),
                        "unknown-key",
                        format!("`rollout.{key}` does not apply to kind = {:?}", kind.as_deref().unwrap_or_default()),
                        &format!("{} keys are: kind, {}", kind.as_deref().unwrap_or_default(), allowed.join(", ")),
                    );
                }
            }
        }
        let number = |this: &mut Self, key: &str, default: u64, max: u64| -> u64 {
            match Self::get(t, key) {
                None => default,
                Some(n) => match n.get_ref() {
                    DeValue::Integer(i) if i.as_str().parse::<u64>().is_ok_and(|x| (1..=max).contains(&x)) => {
                        i.as_str().parse().unwrap_or(default)
                    }
                    _ => {
                        this.err(
                            n.span(),
                            "wrong-type",
                            format!("`rollout.{key}` must be a whole number from 1 to {max}"),
                            "",
                        );
                        default
                    }
                },
            }
        };
        // One of a few words, each naming a value.
        fn choice<T: Copy + Default>(this: &mut Loader<'_>, t: &Table<'_>, key: &str, options: &[(&str, T)]) -> T {
            let Some(v) = Loader::get(t, key) else { return T::default() };
            let Some(text) = this.string(v, &format!("rollout.{key}")) else { return T::default() };
            match options.iter().find(|(word, _)| *word == text) {
                Some((_, value)) => *value,
                None => {
                    let words: Vec<String> = options.iter().map(|(w, _)| format!("\"{w}\"")).collect();
                    this.err(
                        v.span(),
                        "bad-rollout",
                        format!("`rollout.{key}` = {text:?} is not one of {}", words.join(", ")),
                        "README, \"Rolling out\", says what each does",
                    );
                    T::default()
                }
            }
        }
        match kind.as_deref() {
            Some("notify") => {
                RolloutMethod::Notify { sns_topic: Self::get(t, "sns_topic").and_then(|s| self.string(s, "sns_topic")) }
            }
            Some("pinned") => {
                RolloutMethod::Pinned { sns_topic: Self::get(t, "sns_topic").and_then(|s| self.string(s, "sns_topic")) }
            }
            Some("launch-template") => RolloutMethod::LaunchTemplate,
            Some("rolling-replace") => RolloutMethod::RollingReplace {
                batch: number(self, "batch", 1, 1000) as usize,
                protected: choice(self, t, "protected", &[("skip", Protected::Skip), ("replace", Protected::Replace)]),
                drain_timeout_seconds: Self::get(t, "drain_timeout")
                    .and_then(|d| self.bounded(d, "rollout.drain_timeout", (1, 48 * 3600)))
                    .map_or(provider::DEFAULT_DRAIN_SECONDS, |s| s as u64),
            },
            Some("instance-refresh") => RolloutMethod::InstanceRefresh {
                min_healthy_percent: number(self, "min_healthy_percent", 90, 100) as u8,
                scale_in_protected: choice(
                    self,
                    t,
                    "scale_in_protected",
                    &[
                        ("refresh", RefreshProtected::Refresh),
                        ("ignore", RefreshProtected::Ignore),
                        ("wait", RefreshProtected::Wait),
                    ],
                ),
                standby: choice(
                    self,
                    t,
                    "standby",
                    &[
                        ("terminate", RefreshStandby::Terminate),
                        ("ignore", RefreshStandby::Ignore),
                        ("wait", RefreshStandby::Wait),
                    ],
                ),
                checkpoints: self.checkpoints(t),
                // AWS allows up to two days between checkpoints.
                checkpoint_delay_seconds: Self::get(t, "checkpoint_delay")
                    .and_then(|d| self.bounded(d, "rollout.checkpoint_delay", (0, 172_800)))
                    .map(|s| s as u32),
            },
            other => {
                self.err(
                    v.span(),
                    "bad-rollout",
                    format!("consumer `{name}`: unknown rollout kind {:?}", other.unwrap_or_default()),
                    "kind = \"notify\", \"pinned\", \"launch-template\", \"rolling-replace\" or \"instance-refresh\"",
                );
                fallback
            }
        }
    }

    /// `checkpoints = [20, 50, 100]`: ascending percentages ending at 100, so the refresh
    /// replaces every host (one that stops short would report success with hosts behind).
    fn checkpoints(&mut self, t: &Table<'_>) -> Vec<u8> {
        let Some(v) = Self::get(t, "checkpoints") else { return Vec::new() };
        let hint = "ascending whole percentages ending at 100, e.g. [20, 50, 100]";
        let DeValue::Array(items) = v.get_ref() else {
            self.err(v.span(), "wrong-type", "`rollout.checkpoints` must be a list of percentages".to_string(), hint);
            return Vec::new();
        };
        let mut out: Vec<u8> = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Integer(i)
                    if i.as_str()
                        .parse::<u8>()
                        .is_ok_and(|p| (1..=100).contains(&p) && out.last().is_none_or(|l| *l < p)) =>
                {
                    out.push(i.as_str().parse().unwrap_or(100));
                }
                _ => {
                    self.err(
                        item.span(),
                        "bad-rollout",
                        "`rollout.checkpoints` must ascend from 1 to 100".to_string(),
                        hint,
                    );
                    return Vec::new();
                }
            }
        }
        if out.last() != Some(&100) {
            self.err(v.span(), "bad-rollout", "`rollout.checkpoints` must end at 100".to_string(), hint);
            return Vec::new();
        }
        out
    }

    fn distribution(
        &mut self,
        image: &str,
        v: &Spanned<DeValue<'_>>,
        accounts: &BTreeMap<String, Account>,
    ) -> Option<Distribution> {
        let t = self.table(v, "distribute")?;
        self.known(
            t,
            &[
                "accounts",
                "regions",
                "ssm_parameter",
                "copy",
                "organizations",
                "organizational_units",
                "share_parameter",
                "tags",
            ],
            "distribute",
        );
        let mut d = Distribution::default();
        if let Some(a) = Self::get(t, "accounts") {
            for (name, span) in self.strings(a, "distribute.accounts") {
                if d.accounts.contains(&name) {
                    self.err(
                        span,
                        "duplicate-name",
                        format!("account {name} is listed twice"),
                        "list each account once",
                    );
                    continue;
                }
                if !accounts.contains_key(&name) {
                    self.err(
                        span,
                        "unknown-reference",
                        format!("distribute: no account `{name}`"),
                        "define it under [accounts.<name>]",
                    );
                }
                d.accounts.push(name);
            }
        }
        if let Some(r) = Self::get(t, "regions") {
            for (region, span) in self.strings(r, "distribute.regions") {
                if !self.rule(span.clone(), "bad-region", "distribute.regions", &region, rules::region, REGION_HINT) {
                    continue;
                }
                if d.regions.contains(&region) {
                    self.err(
                        span,
                        "duplicate-region",
                        format!("region {region} is listed twice"),
                        "list each region once",
                    );
                    continue;
                }
                d.regions.push(region);
            }
        }
        if let Some(pv) = Self::get(t, "ssm_parameter")
            && let Some(p) = self.string(pv, "ssm_parameter")
        {
            self.rule(
                pv.span(),
                "bad-parameter-name",
                "distribute.ssm_parameter",
                &p,
                rules::parameter_path,
                "e.g. \"/platform/base-ami/host\"",
            );
            self.parameter_spans.insert(image.to_string(), pv.span());
            d.ssm_parameter = Some(p);
        }
        d.copy = Self::get(t, "copy").and_then(|c| self.boolean(c, "copy")).unwrap_or(false);
        type Rule = fn(&str) -> Result<(), String>;
        let arns: [(&str, Rule); 2] =
            [("organizations", rules::organization_arn), ("organizational_units", rules::organizational_unit_arn)];
        for (key, rule) in arns {
            let Some(list) = Self::get(t, key) else { continue };
            let what = format!("distribute.{key}");
            for (arn, span) in self.strings(list, &what) {
                if self.rule(span, "bad-arn", &what, &arn, rule, "copy it from the Organizations console") {
                    if key == "organizations" { d.organizations.push(arn) } else { d.organizational_units.push(arn) }
                }
            }
        }
        if let Some(sv) = Self::get(t, "share_parameter") {
            d.share_parameter = self.boolean(sv, "share_parameter").unwrap_or(false);
            if d.share_parameter && d.ssm_parameter.is_none() {
                self.err(
                    sv.span(),
                    "missing-field",
                    "distribute.share_parameter needs distribute.ssm_parameter: it shares that parameter".into(),
                    "add ssm_parameter = \"/platform/base-ami/<line>\"",
                );
            }
        }
        if let Some(tv) = Self::get(t, "tags")
            && let Some(tt) = self.table(tv, "distribute.tags")
        {
            for (k, v) in tt.iter() {
                let key = k.get_ref().to_string();
                let span = k.span();
                if !self.rule(span.clone(), "bad-tag", "distribute.tags", &key, rules::tag_key, "e.g. CostCentre") {
                    continue;
                }
                let Some(value) = self.string(v, "tag value") else { continue };
                if value.chars().count() > 256 {
                    self.err(
                        v.span(),
                        "bad-tag",
                        format!("tag {key}: a value is at most 256 characters"),
                        "shorten it",
                    );
                    continue;
                }
                d.tags.push((key, value));
            }
            if d.tags.len() > 40 {
                self.err(
                    tv.span(),
                    "bad-tag",
                    format!("{} tags: EC2 allows 50 per resource and amictl sets 5", d.tags.len()),
                    "keep at most 40",
                );
            }
        }
        Some(d)
    }

    fn component(&mut self, name: &str, v: &Spanned<DeValue<'_>>) -> Option<Component> {
        let t = self.table(v, &format!("components.{name}"))?;
        self.known(
            t,
            &["file", "arn", "version", "parameters", "services", "snapshot_cleanup"],
            &format!("[components.{name}]"),
        );
        let snapshot_cleanup: Vec<String> = Self::get(t, "snapshot_cleanup")
            .map(|v| self.strings(v, "snapshot_cleanup"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(cmd, span)| {
                if cmd.trim().is_empty() || cmd.len() > 4096 || cmd.contains('\0') {
                    self.err(
                        span,
                        "bad-cleanup",
                        format!("components.{name}.snapshot_cleanup: a command is 1 to 4096 characters"),
                        "e.g. snapshot_cleanup = [\"rm -f /var/lib/scan-agent/agent-id\"]",
                    );
                    return None;
                }
                Some(cmd)
            })
            .collect();
        if let Some(v) = Self::get(t, "snapshot_cleanup").filter(|_| !snapshot_cleanup.is_empty()) {
            // Checked now, not on a builder instance after every component has run.
            let steps: Vec<(String, String)> =
                snapshot_cleanup.iter().enumerate().map(|(j, c)| (format!("Step{}", j + 1), c.clone())).collect();
            if let Err(diags) =
                Document::parse(crate::hygiene::NAME, self.dir.to_path_buf(), crate::hygiene::render(&steps))
            {
                let why: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
                self.err(
                    v.span(),
                    "bad-cleanup",
                    format!("components.{name}.snapshot_cleanup: {}", why.join("; ")),
                    "each command is run by bash as written; `{{ … }}` is an AWSTOE variable",
                );
            }
        }
        let services = Self::get(t, "services").map(|v| self.strings(v, "services")).unwrap_or_default();
        for (s, span) in &services {
            self.rule(
                span.clone(),
                "bad-service",
                &format!("components.{name}.services"),
                s,
                rules::service,
                "e.g. services = [\"auditd\"]",
            );
        }
        let services = services.into_iter().map(|(s, _)| s).collect();
        let version = match Self::get(t, "version") {
            Some(vv) => {
                let version = self.string(vv, "version")?;
                self.rule(
                    vv.span(),
                    "bad-version",
                    &format!("components.{name}.version"),
                    &version,
                    rules::version,
                    "e.g. version = \"1.0.0\"",
                );
                Some(version)
            }
            None => None,
        };
        let mut parameters = Vec::new();
        if let Some(pv) = Self::get(t, "parameters")
            && let Some(pt) = self.table(pv, "parameters")
        {
            for (k, v) in pt.iter() {
                if let Some(p) = self.param(name, k.get_ref(), v) {
                    parameters.push((k.get_ref().to_string(), p));
                }
            }
        }
        let (file, arn, document, resolved) = match (Self::get(t, "file"), Self::get(t, "arn")) {
            (Some(_), Some(a)) => {
                self.err(
                    a.span(),
                    "file-and-arn",
                    format!("component `{name}` has both `file` and `arn`"),
                    "keep one: `file` for a document in the repository, `arn` for one in Image Builder",
                );
                return None;
            }
            (Some(f), None) => {
                let file_value = self.string(f, "file")?;
                let file = self.dir.join(&file_value);
                let document = self.document(&file, f.span(), &format!("component `{name}`"))?;
                (file, None, document, None)
            }
            (None, Some(a)) => {
                let written = self.string(a, "arn")?;
                let (fetched, document) = self.fetch_component(name, &written, a.span())?;
                if !document.source.is_empty() && version.as_deref().is_some_and(|v| v != fetched.version) {
                    let span = Self::get(t, "version").map_or(a.span(), |v| v.span());
                    self.err(
                        span,
                        "version-mismatch",
                        format!(
                            "component `{name}`: version = \"{}\" but {written} is version {}",
                            version.as_deref().unwrap_or_default(),
                            fetched.version
                        ),
                        "leave `version` out: a component given by ARN has the version Image Builder resolves",
                    );
                    return None;
                }
                (PathBuf::from(&written), Some(fetched.arn.clone()), document, Some(fetched.version))
            }
            (None, None) => {
                self.err(
                    v.span(),
                    "missing-field",
                    format!("component `{name}` needs `file` or `arn`"),
                    "file = the path of its AWSTOE document (relative to the config), or arn = its Image Builder component ARN",
                );
                return None;
            }
        };
        let version = match (version, resolved) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => {
                self.err(
                    v.span(),
                    "missing-field",
                    format!("component `{name}` needs `version`"),
                    "e.g. version = \"1.0.0\"",
                );
                return None;
            }
        };
        let nested = self.fetch_references(name, &document, v.span());
        let unavailable = arn.is_some() && document.source.is_empty();
        for (p, _) in parameters.iter().filter(|_| !unavailable) {
            if !document.parameters.iter().any(|d| &d.name == p) {
                let span = Self::get(t, "parameters").map(|s| s.span()).unwrap_or(0..0);
                self.err(
                    span,
                    "unknown-parameter",
                    format!("component `{name}`: its document declares no parameter `{p}`"),
                    "check the document's `parameters:`",
                );
            }
        }
        for d in document.parameters.iter().filter(|_| !unavailable) {
            if d.default.is_none() && !parameters.iter().any(|(p, _)| p == &d.name) {
                self.err(
                    v.span(),
                    "missing-parameter",
                    format!("component `{name}`: parameter `{}` has no default and no value here", d.name),
                    "set it under parameters = { … }",
                );
            }
        }
        let sha256 = hex(&Sha256::digest(document.source.as_bytes()));
        Some(Component {
            name: name.to_string(),
            file,
            arn,
            nested,
            snapshot_cleanup,
            version,
            parameters,
            document,
            sha256,
            services,
        })
    }

    fn param(&mut self, component: &str, name: &str, v: &Spanned<DeValue<'_>>) -> Option<ParamValue> {
        match v.get_ref() {
            DeValue::String(s) => Some(ParamValue::Literal(s.to_string())),
            DeValue::Table(t) => {
                self.known(t, &["env", "file", "secret"], &format!("parameter {name}"));
                let secret = Self::get(t, "secret").and_then(|s| self.boolean(s, "secret")).unwrap_or(false);
                match (Self::get(t, "env"), Self::get(t, "file")) {
                    (Some(e), None) => self.string(e, "env").map(|var| {
                        self.rule(
                            e.span(),
                            "bad-env",
                            &format!("components.{component}.parameters.{name}.env"),
                            &var,
                            rules::env_var,
                            "e.g. { env = \"SCAN_AGENT_KEY\" }",
                        );
                        ParamValue::Env { var, secret }
                    }),
                    (None, Some(f)) => self.string(f, "file").map(|p| {
                        let path = self.dir.join(p);
                        self.regular_file(&path, f.span(), &format!("component `{component}`: parameter {name}"));
                        ParamValue::File { path, secret }
                    }),
                    _ => {
                        self.err(
                            v.span(),
                            "bad-parameter",
                            format!("parameter `{name}` needs exactly one of `env` and `file`"),
                            "e.g. { env = \"SCAN_AGENT_KEY\", secret = true }",
                        );
                        None
                    }
                }
            }
            other => {
                self.err(
                    v.span(),
                    "wrong-type",
                    format!("parameter `{name}` must be a string or {{ env | file }}, found {}", kind(other)),
                    "e.g. Name = \"value\"",
                );
                None
            }
        }
    }

    fn import(&mut self, image: &str, v: &Spanned<DeValue<'_>>) -> Option<ImportSpec> {
        let t = self.table(v, "import")?;
        self.known(t, &["name", "owner"], "import");
        let hint = "e.g. import = { name = \"weco-amzn2-hvm-x86_64-gp2*\", owner = \"self\" }";
        let Some(nv) = Self::get(t, "name") else {
            self.err(
                v.span(),
                "missing-field",
                format!("images.{image}.import needs `name` (an AMI name pattern)"),
                hint,
            );
            return None;
        };
        let name = self.string(nv, "name")?;
        if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) || name == "*" {
            self.err(
                nv.span(),
                "bad-import-name",
                format!("images.{image}.import.name: `{name}` must be 1 to 128 characters and not match every AMI"),
                hint,
            );
            return None;
        }
        let owner = match Self::get(t, "owner") {
            None => "self".to_string(),
            Some(ov) => {
                let owner = self.string(ov, "owner")?;
                if owner != "self" && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit())) {
                    self.err(
                        ov.span(),
                        "bad-import-owner",
                        format!("images.{image}.import.owner: `{owner}` is neither `self` nor a 12-digit account id"),
                        hint,
                    );
                    return None;
                }
                owner
            }
        };
        Some(ImportSpec { name, owner })
    }

    /// The component `written` names, fetched (or from the cache) and validated.
    fn fetch_component(
        &mut self,
        name: &str,
        written: &str,
        span: Range<usize>,
    ) -> Option<(toe::component::Fetched, Document)> {
        let hint = "e.g. arn = \"arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/1.x.x\"";
        if let Err(e) = toe::component::ComponentArn::parse(written) {
            self.err(span, "bad-component-arn", format!("components.{name}.arn: {e}"), hint);
            return None;
        }
        let Some(fetched) = self.fetch(written, span.clone(), &format!("component `{name}`")) else {
            // A command that only reads the state goes on without the document.
            return self.lenient.then(|| {
                let stand_in = toe::component::Fetched::new(
                    written,
                    written.into(),
                    name.into(),
                    "unavailable".into(),
                    String::new(),
                );
                let doc = Document {
                    file: written.into(),
                    dir: self.dir.to_path_buf(),
                    source: String::new(),
                    name: name.into(),
                    description: "not fetched".into(),
                    parameters: Vec::new(),
                    constants: Vec::new(),
                    phases: Vec::new(),
                };
                (stand_in, doc)
            });
        };
        match fetched.document(self.dir.to_path_buf(), self.strict) {
            Ok((d, warnings)) => {
                self.docs.extend(warnings);
                Some((fetched, d))
            }
            Err(diags) => {
                self.docs.extend(diags);
                None
            }
        }
    }

    /// One ARN through the source, remembered in `fetched`; problems reported at `span`.
    fn fetch(&mut self, arn: &str, span: Range<usize>, what: &str) -> Option<toe::component::Fetched> {
        if let Some(f) = self.fetched.get(arn) {
            return Some(f.clone());
        }
        let Some(source) = self.source else {
            self.err(
                span,
                "component-not-fetched",
                format!("{what}: {arn} cannot be fetched here"),
                "this command reads no components from Image Builder; run `amictl validate`",
            );
            return None;
        };
        match source.fetch(arn) {
            Ok(f) => {
                if let Some(why) = &f.stale {
                    self.warn(
                        span,
                        "component-from-cache",
                        format!("{what}: using the cached {arn} (version {}): {why}", f.version),
                        "a newer version may exist; the next run that reaches Image Builder will see it",
                    );
                }
                self.fetched.insert(arn.to_string(), f.clone());
                Some(f)
            }
            Err(e) if self.lenient => {
                self.warn(
                    span,
                    "component-unavailable",
                    format!("{what}: {}", e.message),
                    "this command only reads the state; plan, apply and validate need the document",
                );
                None
            }
            Err(e) => {
                self.err(
                    span,
                    "component-fetch-failed",
                    format!("{what}: {}", e.message),
                    "check the ARN and that the credentials may call imagebuilder:GetComponent in its region",
                );
                None
            }
        }
    }

    /// Fetches what `doc` runs by ARN through `ExecuteDocument` (and what those run);
    /// returns each as `<arn> sha256=<hash>`, in the order met.
    fn fetch_references(&mut self, name: &str, doc: &Document, span: Range<usize>) -> Vec<String> {
        if self.source.is_none() {
            return Vec::new(); // nothing fetches here; a run without the document says so
        }
        let walked = toe::component::walk_references(
            toe::component::references(doc),
            |arn| Ok(self.fetch(arn, span.clone(), &format!("component `{name}` runs {arn} (ExecuteDocument)"))),
            || (),
        );
        match walked {
            Ok(list) => list.into_iter().map(|(arn, f)| format!("{arn} sha256={}", f.sha256)).collect(),
            Err(()) => {
                self.err(
                    span,
                    "too-many-components",
                    format!(
                        "component `{name}` runs more than {} components by ARN (ExecuteDocument)",
                        toe::component::MAX_REFERENCES
                    ),
                    "nest fewer documents",
                );
                Vec::new()
            }
        }
    }

    fn document(&mut self, file: &Path, span: Range<usize>, what: &str) -> Option<Document> {
        if !self.regular_file(file, span, what) {
            return None;
        }
        match Document::load_with(file, self.strict) {
            Ok((d, warnings)) => {
                self.docs.extend(warnings);
                Some(d)
            }
            Err(diags) => {
                self.docs.extend(diags);
                None
            }
        }
    }

    /// Whether `file` is a regular file; if not, says so at `span` (missing, or what it is).
    fn regular_file(&mut self, file: &Path, span: Range<usize>, what: &str) -> bool {
        match toe::input::regular_file(file) {
            Ok(_) => true,
            Err(e) => {
                let code = if matches!(e, toe::input::InputError::Missing(_)) { "missing-file" } else { "not-a-file" };
                self.err(span, code, format!("{what}: {e}"), "paths are relative to the config file's folder");
                false
            }
        }
    }

    /// The span of `key` in table `v`, or of `v` itself.
    fn table_key_span(&self, v: &Spanned<DeValue<'_>>, key: &str) -> Range<usize> {
        match v.get_ref() {
            DeValue::Table(t) => Self::get(t, key).map(|k| k.span()).unwrap_or(v.span()),
            _ => v.span(),
        }
    }

    /// Two image lines writing one SSM parameter in one account and region would overwrite
    /// each other's release: an error at the second.
    fn parameter_collisions(&mut self, images: &BTreeMap<String, Image>, accounts: &BTreeMap<String, Account>) {
        let platform = accounts.values().find(|a| a.role.is_none()).map_or("platform", |a| a.name.as_str());
        let mut seen: Vec<(&str, &str, BTreeSet<provider::Target>)> = Vec::new();
        // In file order, so the error is at the second of two.
        let mut lines: Vec<&Image> = images.values().collect();
        lines.sort_by_key(|i| self.parameter_spans.get(&i.name).map_or(usize::MAX, |s| s.start));
        for image in lines {
            let Some(d) = &image.distribute else { continue };
            let Some(parameter) = d.ssm_parameter.as_deref() else { continue };
            let targets = d.targets(platform);
            if let Some((other, _, shared)) = seen.iter().find(|(_, p, t)| *p == parameter && !t.is_disjoint(&targets))
            {
                let both = shared.intersection(&targets).next().map(ToString::to_string).unwrap_or_default();
                let span = self.parameter_spans.get(&image.name).cloned().unwrap_or(0..0);
                self.err(
                    span,
                    "duplicate-parameter",
                    format!("images `{other}` and `{}` both write ssm_parameter {parameter} (in {both})", image.name),
                    "give each image line its own parameter",
                );
            }
            seen.push((&image.name, parameter, targets));
        }
    }

    fn image(
        &mut self,
        name: &str,
        name_span: Range<usize>,
        v: &Spanned<DeValue<'_>>,
        components: &BTreeMap<String, Component>,
        accounts: &BTreeMap<String, Account>,
    ) -> Option<Image> {
        let t = self.table(v, &format!("images.{name}"))?;
        self.known(
            t,
            &[
                "description",
                "parent",
                "components",
                "tests",
                "builder",
                "distribute",
                "advisories",
                "import",
                "snapshot_cleanup",
            ],
            &format!("[images.{name}]"),
        );
        let description = Self::get(t, "description").and_then(|d| self.string(d, "description")).unwrap_or_default();
        let image_builder = Self::get(t, "builder")
            .and_then(|b| match b.get_ref() {
                DeValue::Table(bt) => Self::get(bt, "kind"),
                _ => None,
            })
            .is_some_and(|k| matches!(k.get_ref(), DeValue::String(s) if s == "imagebuilder"));
        let parent = match Self::get(t, "parent") {
            // An Image Builder line may leave its parent to the pipeline's recipe.
            None if image_builder => Some(ParentSpec::Recipe),
            None => {
                self.err(
                    name_span.clone(),
                    "missing-field",
                    format!("image `{name}` needs `parent`"),
                    "e.g. parent = \"debootstrap:stable\" or \"tarball:al2-rootfs.tar\"",
                );
                None
            }
            Some(p) => {
                let text = self.string(p, "parent");
                match text.as_deref().and_then(|t| t.split_once(':')) {
                    Some(("debootstrap", suite)) if !suite.is_empty() => {
                        self.rule(
                            p.span(),
                            "bad-parent",
                            &format!("images.{name}.parent"),
                            suite,
                            rules::suite,
                            "e.g. parent = \"debootstrap:stable\"",
                        );
                        Some(ParentSpec::Debootstrap { suite: suite.to_string() })
                    }
                    Some(("ssm", param)) if param.starts_with('/') => {
                        self.rule(
                            p.span(),
                            "bad-parent",
                            &format!("images.{name}.parent"),
                            param,
                            rules::parameter_path,
                            "e.g. parent = \"ssm:/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2\"",
                        );
                        Some(ParentSpec::SsmParameter { name: param.to_string() })
                    }
                    Some(("ami", spec))
                        if spec.split_once('/').is_some_and(|(o, p)| !o.is_empty() && !p.is_empty()) =>
                    {
                        let (owners, pattern) = spec.split_once('/').unwrap_or_default();
                        let key = format!("images.{name}.parent");
                        let hint = "e.g. parent = \"ami:amazon/amzn2-ami-ecs-hvm-*-x86_64-ebs\"";
                        for owner in owners.split(',') {
                            self.rule(p.span(), "bad-parent", &key, owner, rules::ami_owner, hint);
                        }
                        self.rule(p.span(), "bad-parent", &key, pattern, rules::name_pattern, hint);
                        Some(ParentSpec::AmiName {
                            owners: owners.split(',').map(str::to_string).collect(),
                            pattern: pattern.to_string(),
                        })
                    }
                    Some(("tarball", path)) if !path.is_empty() => {
                        let path = self.dir.join(path);
                        self.regular_file(&path, p.span(), &format!("image `{name}`: parent tarball"));
                        Some(ParentSpec::Tarball { path })
                    }
                    _ => {
                        if text.is_some() {
                            self.err(
                                p.span(),
                                "bad-parent",
                                format!("image `{name}`: unsupported parent"),
                                "use debootstrap:<suite>, tarball:<path>, ssm:/aws/service/… or ami:<owners>/<name pattern>",
                            );
                        }
                        None
                    }
                }
            }
        };
        let mut names = Vec::new();
        if let Some(c) = Self::get(t, "components") {
            for (c, span) in self.strings(c, "components") {
                if self.broken_components.contains(&c) {
                    // Its own errors are reported where it is defined.
                } else if !components.contains_key(&c) {
                    let hint =
                        format!("defined components: {}", components.keys().cloned().collect::<Vec<_>>().join(", "));
                    self.err(
                        span,
                        "unknown-component",
                        format!("image `{name}` uses undefined component `{c}`"),
                        &hint,
                    );
                } else if names.contains(&c) {
                    self.err(
                        span,
                        "duplicate-name",
                        format!("component `{c}` is listed twice"),
                        "list each component once",
                    );
                } else {
                    names.push(c);
                }
            }
        }
        let mut tests = Vec::new();
        if let Some(tv) = Self::get(t, "tests") {
            let mut seen = BTreeSet::new();
            for (file, span) in self.strings(tv, "tests") {
                if !seen.insert(file.clone()) {
                    self.err(span, "duplicate-name", format!("test {file} is listed twice"), "list each test once");
                    continue;
                }
                let path = self.dir.join(&file);
                if let Some(document) = self.document(&path, span, &format!("image `{name}` test")) {
                    let sha256 = hex(&Sha256::digest(document.source.as_bytes()));
                    tests.push(TestDocument { file: path, document, sha256 });
                }
            }
        }
        let builder = match Self::get(t, "builder") {
            None => Builder::Local { disk_size_mb: None },
            Some(b) => {
                let bt = self.table(b, "builder")?;
                self.known(
                    bt,
                    &[
                        "kind",
                        "disk_size",
                        "instance_type",
                        "subnet",
                        "security_groups",
                        "instance_profile",
                        "pipeline",
                    ],
                    "builder",
                );
                let kind = Self::get(bt, "kind").and_then(|k| self.string(k, "builder.kind"));
                match kind.as_deref() {
                    Some("local") => {
                        let disk = Self::get(bt, "disk_size").and_then(|d| {
                            let s = self.string(d, "disk_size")?;
                            let mb = parse_size_mb(&s);
                            let (min, max) = rules::DISK_MB;
                            match mb {
                                None => self.err(
                                    d.span(),
                                    "bad-size",
                                    format!("`disk_size` = \"{s}\" is not a size"),
                                    "e.g. \"2G\" or \"1536M\"",
                                ),
                                Some(n) if !(min..=max).contains(&n) => self.err(
                                    d.span(),
                                    "out-of-range",
                                    format!(
                                        "`disk_size` = \"{s}\" is out of range: it must be from {min}M to {}G",
                                        max / 1024
                                    ),
                                    "e.g. \"2G\"",
                                ),
                                Some(_) => return mb,
                            }
                            None
                        });
                        Builder::Local { disk_size_mb: disk }
                    }
                    Some("ec2") => Builder::Ec2 {
                        instance_type: Self::get(bt, "instance_type")
                            .and_then(|v| {
                                let it = self.string(v, "instance_type")?;
                                self.rule(
                                    v.span(),
                                    "bad-instance-type",
                                    "builder.instance_type",
                                    &it,
                                    rules::instance_type,
                                    "e.g. instance_type = \"t3.medium\"",
                                );
                                Some(it)
                            })
                            .unwrap_or_else(|| "t3.medium".into()),
                        subnet: Self::get(bt, "subnet").and_then(|v| {
                            let s = self.string(v, "subnet")?;
                            self.rule(
                                v.span(),
                                "bad-id",
                                "builder.subnet",
                                &s,
                                rules::resource_id("subnet"),
                                "the subnet's id",
                            );
                            Some(s)
                        }),
                        security_groups: Self::get(bt, "security_groups")
                            .map(|v| {
                                let groups = self.strings(v, "security_groups");
                                for (g, span) in &groups {
                                    self.rule(
                                        span.clone(),
                                        "bad-id",
                                        "builder.security_groups",
                                        g,
                                        rules::resource_id("sg"),
                                        "security group ids",
                                    );
                                }
                                groups.into_iter().map(|(s, _)| s).collect()
                            })
                            .unwrap_or_default(),
                        instance_profile: Self::get(bt, "instance_profile").and_then(|v| {
                            let s = self.string(v, "instance_profile")?;
                            self.rule(
                                v.span(),
                                "bad-name",
                                "builder.instance_profile",
                                &s,
                                rules::instance_profile,
                                "the profile's name",
                            );
                            Some(s)
                        }),
                    },
                    Some("imagebuilder") => match Self::get(bt, "pipeline") {
                        Some(p) => {
                            let pipeline = self.string(p, "pipeline").unwrap_or_default();
                            self.rule(
                                p.span(),
                                "bad-pipeline",
                                "builder.pipeline",
                                &pipeline,
                                rules::pipeline,
                                "an ARN (arn:aws:imagebuilder:eu-west-1:111111111111:image-pipeline/weco-amzn2) or a name",
                            );
                            Builder::ImageBuilder { pipeline }
                        }
                        None => {
                            self.err(
                                b.span(),
                                "missing-field",
                                format!("image `{name}`: the imagebuilder builder needs `pipeline`"),
                                "builder = { kind = \"imagebuilder\", pipeline = \"weco-amzn2-hvm-x86_64-gp2\" }",
                            );
                            Builder::ImageBuilder { pipeline: String::new() }
                        }
                    },
                    other => {
                        self.err(
                            b.span(),
                            "bad-builder",
                            format!("image `{name}`: unknown builder kind {:?}", other.unwrap_or_default()),
                            "kind = \"local\", \"ec2\" or \"imagebuilder\"",
                        );
                        Builder::Local { disk_size_mb: None }
                    }
                }
            }
        };
        if matches!(builder, Builder::Local { .. })
            && tests.is_empty()
            && !names.iter().any(|c| components[c].document.phases.iter().any(|p| p.name == "test"))
        {
            self.warn(
                name_span.clone(),
                "untested",
                format!("image `{name}`: nothing tests it (no `tests`, no component with a test phase)"),
                "add tests = [\"tests/….yml\"]: amictl ships what passed its tests, and this line has none",
            );
        }
        let distribute = Self::get(t, "distribute").and_then(|d| self.distribution(name, d, accounts));
        let advisories = Self::get(t, "advisories").and_then(|a| self.advisories(name, a));
        let import = Self::get(t, "import").and_then(|i| self.import(name, i));
        let snapshot_cleanup =
            Self::get(t, "snapshot_cleanup").and_then(|v| self.boolean(v, "snapshot_cleanup")).unwrap_or(true);
        let parent = parent?;
        let ami_parent = parent.is_ami();
        if let Builder::ImageBuilder { .. } = builder {
            // The recipe holds the components and tests, and the parent unless one is given
            // here (then it is what "parent moved" is judged against).
            if !ami_parent && parent != ParentSpec::Recipe {
                let span = Self::get(t, "parent").map(|v| v.span()).unwrap_or(name_span);
                self.err(
                    span,
                    "builder-parent-mismatch",
                    format!("image `{name}`: an Image Builder line's parent is an AMI, not {parent}"),
                    "leave `parent` out (the recipe's is used), or give the recipe's: ssm:/… or ami:…",
                );
                return None;
            }
            // The pipeline's distribution configuration shares and tags what it makes.
            if let Some(DeValue::Table(dt)) = Self::get(t, "distribute").map(|d| d.get_ref()) {
                for key in ["organizations", "organizational_units", "share_parameter", "tags", "copy"] {
                    if let Some(v) = Self::get(dt, key) {
                        self.err(
                            v.span(),
                            "recipe-owned",
                            format!("image `{name}`: an Image Builder line's `distribute.{key}` is its distribution configuration's"),
                            "remove it; set launchPermission, targetAccountIds or amiTags in the pipeline's distribution configuration",
                        );
                    }
                }
            }
            for key in ["components", "tests", "snapshot_cleanup"] {
                if let Some(v) = Self::get(t, key) {
                    let what = if key == "snapshot_cleanup" { "snapshot cleanup is" } else { &format!("{key} are") };
                    self.err(
                        v.span(),
                        "recipe-owned",
                        format!("image `{name}`: an Image Builder line's {what} its recipe's"),
                        &format!("remove `{key}`; change the pipeline's recipe instead"),
                    );
                }
            }
        } else if ami_parent != matches!(builder, Builder::Ec2 { .. }) {
            let span =
                Self::get(t, "builder").or_else(|| Self::get(t, "parent")).map(|v| v.span()).unwrap_or(name_span);
            let (message, hint) = if ami_parent {
                (
                    format!("image `{name}`: an AMI parent ({parent}) needs the EC2 builder"),
                    "add builder = { kind = \"ec2\" }",
                )
            } else {
                (
                    format!("image `{name}`: the EC2 builder needs an AMI parent, not {parent}"),
                    "use parent = \"ssm:/aws/service/ami-amazon-linux-latest/…\", or builder = { kind = \"local\" }",
                )
            };
            self.err(span, "builder-parent-mismatch", message, hint);
            return None;
        }
        let mut h = Sha256::new();
        h.update(format!("parent={parent}\n"));
        for c in &names {
            let comp = &components[c];
            h.update(format!("component={c}@{} sha256={}\n", comp.version, comp.sha256));
            for n in &comp.nested {
                h.update(format!("runs {n}\n"));
            }
            for cmd in &comp.snapshot_cleanup {
                h.update(format!("cleanup {cmd}\n"));
            }
            let mut params: Vec<String> = comp.parameters.iter().map(|(k, v)| format!("{k}={}", v.spec())).collect();
            params.sort();
            h.update(params.join("\n"));
        }
        for t in &tests {
            h.update(format!("test sha256={}\n", t.sha256));
        }
        h.update(format!("builder={builder:?}\n"));
        if !snapshot_cleanup {
            h.update("snapshot_cleanup=false\n");
        }
        Some(Image {
            name: name.to_string(),
            description,
            parent,
            components: names,
            tests,
            builder,
            distribute,
            advisories,
            import,
            snapshot_cleanup,
            recipe_hash: hex(&h.finalize())[..16].to_string(),
        })
    }
}
