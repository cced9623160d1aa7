//! `[serve]`: schedule, watch, listener, token, webhooks.

use toml::Spanned;
use toml::de::DeValue;

use super::{Loader, kind};
use crate::rules;
use crate::schema::{NOTICE_EVENTS, ParamValue, Serve, Webhook};

impl Loader<'_> {
    pub(super) fn serve(&mut self, v: &Spanned<DeValue<'_>>) -> Serve {
        let mut s = Serve::default();
        let Some(t) = self.table(v, "serve") else { return s };
        self.known(
            t,
            &["listen", "schedule", "timezone", "watch_interval", "token", "open_reads", "webhooks"],
            "[serve]",
        );
        if let Some(v) = Self::get(t, "listen")
            && let Some(text) = self.string(v, "serve.listen")
            && self.rule(
                v.span(),
                "bad-listen",
                "serve.listen",
                &text,
                rules::listen,
                "e.g. listen = \"127.0.0.1:8421\"",
            )
        {
            s.listen = text;
        }
        if let Some(v) = Self::get(t, "schedule")
            && let Some(text) = self.string(v, "serve.schedule")
            && self.rule(
                v.span(),
                "bad-cron",
                "serve.schedule",
                &text,
                rules::cron,
                "e.g. \"0 3 * * MON\" (03:00 every Monday)",
            )
        {
            s.schedule = Some(text);
        }
        if let Some(v) = Self::get(t, "timezone")
            && let Some(text) = self.string(v, "serve.timezone")
            && self.rule(
                v.span(),
                "bad-timezone",
                "serve.timezone",
                &text,
                rules::timezone,
                "e.g. \"Europe/London\" or \"UTC\"",
            )
        {
            s.timezone = text;
        }
        if let Some(d) =
            Self::get(t, "watch_interval").and_then(|v| self.bounded(v, "serve.watch_interval", rules::WATCH_INTERVAL))
        {
            s.watch_interval_seconds = d;
        }
        if let Some(b) = Self::get(t, "open_reads").and_then(|v| self.boolean(v, "serve.open_reads")) {
            s.open_reads = b;
        }
        if let Some(v) = Self::get(t, "token") {
            s.token = self.secret(v, "serve.token");
        }
        if let Some(v) = Self::get(t, "webhooks")
            && let Some(hooks) = self.table(v, "serve.webhooks")
        {
            for (k, v) in hooks.iter() {
                let name = k.get_ref().to_string();
                self.name(k.span(), "webhook", &name);
                if let Some(h) = self.webhook(&name, v) {
                    s.webhooks.insert(name, h);
                }
            }
        }
        s
    }

    fn webhook(&mut self, name: &str, v: &Spanned<DeValue<'_>>) -> Option<Webhook> {
        let what = format!("serve.webhooks.{name}");
        let t = self.table(v, &what)?;
        self.known(t, &["url", "events"], &format!("[{what}]"));
        let events = match Self::get(t, "events") {
            None => NOTICE_EVENTS.iter().map(|e| e.to_string()).collect(),
            Some(v) => {
                let mut events = Vec::new();
                for (e, span) in self.strings(v, &format!("{what}.events")) {
                    if NOTICE_EVENTS.contains(&e.as_str()) {
                        events.push(e);
                    } else {
                        self.err(
                            span,
                            "bad-event",
                            format!("`{what}.events` names `{e}`, which amictl does not send"),
                            &format!("any of {}", NOTICE_EVENTS.join(", ")),
                        );
                    }
                }
                events
            }
        };
        let Some(u) = Self::get(t, "url") else {
            self.err(v.span(), "missing-key", format!("[{what}] needs `url`"), "url = { env = \"SLACK_WEBHOOK_URL\" }");
            return None;
        };
        let url = self.secret(u, &format!("{what}.url"))?;
        if let ParamValue::Literal(text) = &url
            && !(text.starts_with("https://") || text.starts_with("http://"))
        {
            self.err(
                u.span(),
                "bad-url",
                format!("`{what}.url` must be an http(s) URL"),
                "a webhook URL is often a secret: url = { env = \"SLACK_WEBHOOK_URL\" }",
            );
            return None;
        }
        Some(Webhook { name: name.to_string(), url, events })
    }

    /// A value that may be a secret: a literal, `{ env = "X" }` or `{ file = "p" }` (both
    /// secret: never printed).
    pub(super) fn secret(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<ParamValue> {
        match v.get_ref() {
            DeValue::String(s) => Some(ParamValue::Literal(s.to_string())),
            DeValue::Table(t) => {
                self.known(t, &["env", "file"], &format!("`{what}`"));
                match (Self::get(t, "env"), Self::get(t, "file")) {
                    (Some(e), None) => self.string(e, "env").and_then(|var| {
                        self.rule(
                            e.span(),
                            "bad-env",
                            &format!("{what}.env"),
                            &var,
                            rules::env_var,
                            "e.g. { env = \"AMICTL_TOKEN\" }",
                        )
                        .then_some(ParamValue::Env { var, secret: true })
                    }),
                    (None, Some(f)) => {
                        self.string(f, "file").map(|p| ParamValue::File { path: self.dir.join(p), secret: true })
                    }
                    _ => {
                        self.err(
                            v.span(),
                            "bad-secret",
                            format!("`{what}` needs exactly one of `env` and `file`"),
                            "e.g. { env = \"AMICTL_TOKEN\" }",
                        );
                        None
                    }
                }
            }
            other => {
                self.err(
                    v.span(),
                    "wrong-type",
                    format!("`{what}` must be a string or {{ env | file }}, found {}", kind(other)),
                    "e.g. { file = \"/etc/amictl/token\" }",
                );
                None
            }
        }
    }
}
