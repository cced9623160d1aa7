//! Who may do what over HTTP. Changes (approve, deny, start a cycle) need the bearer token
//! (`Authorization: Bearer …`) or a dashboard session made by signing in with it; without
//! a configured token nothing can be changed over HTTP. Reads are open only when the
//! server listens on loopback and `[serve] open_reads` is left on; otherwise they need the
//! same. Sessions live in memory (a restart signs everyone out), end after
//! [`SESSION_TTL`], and their cookie is HttpOnly and SameSite=Strict, so another site
//! cannot post a form with it. Wrong tokens at sign-in are slowed down: after
//! [`FAILED_SIGN_INS`] in a minute, sign-in is refused for the rest of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest goes first).
const MAX_SESSIONS: usize = 1000;
/// Wrong tokens allowed per minute before sign-in pauses.
pub const FAILED_SIGN_INS: u32 = 10;

use axum::http::HeaderMap;

pub struct Auth {
    token: Option<String>,
    open_reads: bool,
    /// Session id → the name given at sign-in, and when.
    sessions: Mutex<HashMap<String, (String, Instant)>>,
    /// Wrong tokens at sign-in: since when, how many.
    failures: Mutex<(Instant, u32)>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody we know.
    Anonymous,
    /// The bearer token.
    Token,
    /// A dashboard session, with the name given at sign-in.
    Session(String),
}

pub const COOKIE: &str = "amictl_session";

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(token: Option<String>, open_reads: bool) -> Auth {
        Auth { token, open_reads, sessions: Mutex::new(HashMap::new()), failures: Mutex::new((Instant::now(), 0)) }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn token_ok(&self, given: &str) -> bool {
        self.token.as_deref().is_some_and(|t| same(t.as_bytes(), given.as_bytes()))
    }

    pub fn caller(&self, headers: &HeaderMap) -> Caller {
        if let Some(bearer) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            && self.token_ok(bearer.trim())
        {
            return Caller::Token;
        }
        if let Some(id) = session_cookie(headers) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match sessions.get(&id) {
                Some((name, since)) if since.elapsed() < SESSION_TTL => return Caller::Session(name.clone()),
                Some(_) => {
                    sessions.remove(&id);
                }
                None => {}
            }
        }
        Caller::Anonymous
    }

    /// Open reads only for requests addressed to loopback by name: a page elsewhere that
    /// rebinds its own DNS name to 127.0.0.1 sends its own name as `Host`, and is refused.
    pub fn may_read_from(&self, caller: &Caller, headers: &HeaderMap) -> bool {
        *caller != Caller::Anonymous || (self.open_reads && loopback_host(headers))
    }

    /// Whether `caller` may change anything. A browser session must also come from one of
    /// this server's own pages: SameSite keeps other sites' forms out, not other ports of
    /// the same host, so a cross-origin `Origin` or `Sec-Fetch-Site` is refused too.
    pub fn may_change_from(&self, caller: &Caller, headers: &HeaderMap) -> bool {
        self.token.is_some()
            && match caller {
                Caller::Anonymous => false,
                Caller::Token => true,
                Caller::Session(_) => same_origin(headers),
            }
    }

    /// Whether a page should offer changes to `caller` (the request itself is checked again).
    pub fn may_change(&self, caller: &Caller) -> bool {
        self.token.is_some() && *caller != Caller::Anonymous
    }

    /// A new session for `name` when `token` is right; `Err(true)` while sign-in pauses
    /// after too many wrong tokens (the token is then not even compared).
    pub fn sign_in(&self, token: &str, name: &str) -> Result<String, bool> {
        {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if f.0.elapsed() >= Duration::from_secs(60) {
                *f = (Instant::now(), 0);
            }
            if f.1 >= FAILED_SIGN_INS {
                return Err(true);
            }
            if !self.token_ok(token) {
                f.1 += 1;
                return Err(false);
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (_, since)| since.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, (_, since))| *since).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), (name.to_string(), Instant::now()));
        Ok(id)
    }

    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = header(headers, "host") else { return false };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = header(headers, "sec-fetch-site") {
        return site == "same-origin";
    }
    match (header(headers, "origin"), header(headers, "host")) {
        (Some(origin), Some(host)) => origin == format!("http://{host}") || origin == format!("https://{host}"),
        (Some(_), None) => false,
        // No Origin: not a cross-origin browser request (browsers send it on POST).
        (None, _) => true,
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_or_a_session_made_with_it_may_change_anything() {
        let auth = Auth::new(Some("s3cret-token-0123456789".into()), true);
        let mut h = HeaderMap::new();
        assert_eq!(auth.caller(&h), Caller::Anonymous);
        let mut local = HeaderMap::new();
        local.insert("host", "127.0.0.1:8421".parse().unwrap());
        assert!(auth.may_read_from(&Caller::Anonymous, &local) && !auth.may_change_from(&Caller::Anonymous, &local));
        let mut rebound = HeaderMap::new();
        rebound.insert("host", "evil.example:8421".parse().unwrap());
        assert!(!auth.may_read_from(&Caller::Anonymous, &rebound), "DNS rebinding is refused");
        h.insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(auth.caller(&h), Caller::Anonymous);
        h.insert("authorization", "Bearer s3cret-token-0123456789".parse().unwrap());
        assert_eq!(auth.caller(&h), Caller::Token);
        assert_eq!(auth.sign_in("nope", "mallory"), Err(false));
        let id = auth.sign_in("s3cret-token-0123456789", "alice").unwrap();
        let mut c = HeaderMap::new();
        c.insert("cookie", format!("other=1; {COOKIE}={id}").parse().unwrap());
        assert_eq!(auth.caller(&c), Caller::Session("alice".into()));
        let alice = Caller::Session("alice".into());
        c.insert("host", "127.0.0.1:8421".parse().unwrap());
        c.insert("origin", "http://127.0.0.1:8421".parse().unwrap());
        assert!(auth.may_change_from(&alice, &c));
        c.insert("origin", "http://localhost:3000".parse().unwrap());
        assert!(!auth.may_change_from(&alice, &c), "another port's page cannot post with the cookie");
        c.insert("sec-fetch-site", "same-site".parse().unwrap());
        assert!(!auth.may_change_from(&alice, &c));
        auth.sign_out(&c);
        assert_eq!(auth.caller(&c), Caller::Anonymous);
        // Without a token configured nothing changes over HTTP, and closed reads need one.
        let none = Auth::new(None, false);
        assert!(!none.may_change_from(&Caller::Token, &local) && !none.may_read_from(&Caller::Anonymous, &local));
    }

    #[test]
    fn guessing_pauses_sign_in_and_an_old_session_has_ended() {
        let auth = Auth::new(Some("s3cret-token-0123456789".into()), true);
        for _ in 0..FAILED_SIGN_INS {
            assert_eq!(auth.sign_in("guess", "mallory"), Err(false));
        }
        assert_eq!(auth.sign_in("s3cret-token-0123456789", "alice"), Err(true), "even the right token waits");
        *auth.failures.lock().unwrap() = (Instant::now() - Duration::from_secs(61), FAILED_SIGN_INS);
        let id = auth.sign_in("s3cret-token-0123456789", "alice").expect("a minute later");
        let mut c = HeaderMap::new();
        c.insert("cookie", format!("{COOKIE}={id}").parse().unwrap());
        assert_eq!(auth.caller(&c), Caller::Session("alice".into()));
        auth.sessions.lock().unwrap().get_mut(&id).unwrap().1 = Instant::now() - SESSION_TTL;
        assert_eq!(auth.caller(&c), Caller::Anonymous, "the session ended");
        assert!(auth.sessions.lock().unwrap().is_empty(), "and is gone");
    }
}
