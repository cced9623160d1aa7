//! `[state] url`/`password` (a shared PostgreSQL state) and `[audit.anchors]`.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Loader;
use crate::schema::{Anchors, ParamValue, StateDb};

/// S3 Object Lock retention, in days, unless the config says otherwise.
const DEFAULT_RETENTION_DAYS: u32 = 400;

impl Loader<'_> {
    pub(super) fn state_db(&mut self, t: &DeTable<'_>) -> Option<StateDb> {
        let password = Self::get(t, "password").and_then(|v| self.secret(v, "state.password"));
        let u = Self::get(t, "url")?;
        let url = self.secret(u, "state.url")?;
        if let ParamValue::Literal(text) = &url
            && !(text.starts_with("postgres://") || text.starts_with("postgresql://"))
        {
            self.err(
                u.span(),
                "bad-url",
                "`state.url` must be a postgres:// URL".into(),
                "e.g. url = \"postgres://amictl@db.internal:5432/amictl\", password = { env = \"AMICTL_STATE_PASSWORD\" }",
            );
            return None;
        }
        Some(StateDb { url, password })
    }

    pub(super) fn audit(&mut self, v: &Spanned<DeValue<'_>>) -> Anchors {
        let mut a = Anchors { retention_days: DEFAULT_RETENTION_DAYS, ..Anchors::default() };
        let Some(t) = self.table(v, "audit") else { return a };
        self.known(t, &["anchors"], "[audit]");
        let Some(v) = Self::get(t, "anchors") else { return a };
        let Some(t) = self.table(v, "audit.anchors") else { return a };
        self.known(t, &["dir", "s3", "retention_days", "signing_key", "public_key"], "[audit.anchors]");
        a.dir = Self::get(t, "dir").and_then(|v| self.string(v, "audit.anchors.dir")).map(|d| self.dir.join(d));
        if let Some(v) = Self::get(t, "s3")
            && let Some(text) = self.string(v, "audit.anchors.s3")
        {
            let bucket = text.strip_prefix("s3://").map(|r| r.split('/').next().unwrap_or_default());
            if bucket.is_some_and(|b| {
                (3..=63).contains(&b.len())
                    && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
            }) {
                a.s3 = Some(text);
            } else {
                self.err(
                    v.span(),
                    "bad-url",
                    "`audit.anchors.s3` must be s3://BUCKET[/PREFIX] with a valid bucket name".into(),
                    "e.g. s3 = \"s3://acme-amictl-anchors/platform\"",
                );
            }
        }
        if let Some(v) = Self::get(t, "retention_days") {
            match v.get_ref() {
                DeValue::Integer(i) if i.as_str().parse::<u32>().is_ok_and(|n| (1..=36_500).contains(&n)) => {
                    a.retention_days = i.as_str().parse().unwrap_or(DEFAULT_RETENTION_DAYS)
                }
                _ => self.err(
                    v.span(),
                    "wrong-type",
                    "`audit.anchors.retention_days` must be a whole number of days from 1 to 36500".into(),
                    "e.g. retention_days = 400",
                ),
            }
        }
        a.signing_key = Self::get(t, "signing_key").and_then(|v| self.secret(v, "audit.anchors.signing_key"));
        if matches!(a.signing_key, Some(ParamValue::Literal(_)))
            && let Some(v) = Self::get(t, "signing_key")
        {
            self.err(
                v.span(),
                "secret-in-config",
                "`audit.anchors.signing_key` must not be written in the config: the key is what keeps anchors honest"
                    .into(),
                "signing_key = { file = \"/etc/amictl/anchor.key\" } (make one with `amictl audit keygen FILE`)",
            );
            a.signing_key = None;
        }
        if let Some(v) = Self::get(t, "public_key")
            && let Some(text) = self.string(v, "audit.anchors.public_key")
        {
            if text.len() == 64 && text.bytes().all(|c| c.is_ascii_hexdigit()) {
                a.public_key = Some(text.to_ascii_lowercase());
            } else {
                self.err(
                    v.span(),
                    "bad-key",
                    "`audit.anchors.public_key` must be 64 hex digits (an Ed25519 public key)".into(),
                    "`amictl audit keygen FILE` prints it",
                );
            }
        }
        if a.dir.is_some() && a.signing_key.is_none() && a.public_key.is_none() {
            self.err(
                v.span(),
                "missing-key",
                "[audit.anchors] `dir` needs `signing_key` (and, on machines that only verify, `public_key`): unsigned checkpoints in a directory prove nothing".into(),
                "signing_key = { file = \"/etc/amictl/anchor.key\" }",
            );
        }
        a
    }
}
