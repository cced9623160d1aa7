//! Image Builder components named by ARN, as recipes and `ExecuteDocument` name them.
//!
//! The engine stays free of AWS: it asks a [`Fetch`] for a component's document. The AWS
//! provider fetches with `GetComponent`; [`Cache`] keeps what was fetched on disk with its
//! resolved version and SHA-256 (a pinned version is immutable in Image Builder, so it is
//! fetched once; a version with `x` wildcards is asked again, and the cached copy is used —
//! said so — when the service cannot be reached); [`Prefetched`] serves documents fetched
//! before a run that cannot reach the network (inside a sandbox).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::document::Document;

/// A component ARN, checked against the pattern of `GetComponent`'s
/// `componentBuildVersionArn`: `arn:<partition>:imagebuilder:<region>:<account|aws>:component/<name>/<x.y.z>[/<build>]`,
/// where a version node may be `x` (only in trailing positions) and a build only follows a
/// full version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentArn {
    pub region: String,
    /// A 12-digit account, `aws` (AWS-managed) or `third-party`.
    pub owner: String,
    pub name: String,
    /// Major, minor, patch; `None` for `x`.
    pub version: [Option<u32>; 3],
    pub build: Option<u32>,
}

impl ComponentArn {
    pub fn parse(s: &str) -> Result<ComponentArn, String> {
        let bad = |why: &str| Err(format!("`{s}` is not an Image Builder component ARN: {why}"));
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "imagebuilder" {
            return bad("expected arn:aws:imagebuilder:<region>:<account>:component/<name>/<version>");
        }
        let region = parts[3];
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return bad("the region is empty or malformed");
        }
        let owner = parts[4];
        let owner_ok = (owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
            || owner == "aws"
            || owner == "third-party"
            || owner
                .strip_prefix("aws-")
                .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        if !owner_ok {
            return bad("the owner must be a 12-digit account id or `aws`");
        }
        let Some(path) = parts[5].strip_prefix("component/") else {
            return bad("the resource must be component/<name>/<version>");
        };
        let segs: Vec<&str> = path.split('/').collect();
        if !(2..=3).contains(&segs.len()) {
            return bad("the resource must be component/<name>/<version>[/<build>]");
        }
        let name = segs[0];
        if name.is_empty()
            || name.len() > 128
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return bad("the name is lower-case letters, digits, `-` and `_`");
        }
        let nodes: Vec<&str> = segs[1].split('.').collect();
        if nodes.len() != 3 {
            return bad("the version has three nodes, e.g. 1.0.2 or 1.x.x");
        }
        let mut version = [None; 3];
        let mut wild = false;
        for (i, n) in nodes.iter().enumerate() {
            if *n == "x" {
                wild = true;
            } else if wild {
                return bad("`x` is allowed only in trailing positions (1.x.x, not x.0.1)");
            } else {
                match n.parse::<u32>() {
                    Ok(v) if v <= 1_073_741_823 && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                        version[i] = Some(v)
                    }
                    _ => return bad("each version node is a number up to 1073741823, or x"),
                }
            }
        }
        let build = match segs.get(2) {
            None => None,
            Some(_) if wild => return bad("a build number follows only a full version (1.0.2/1)"),
            Some(b) => match b.parse::<u32>() {
                Ok(v) if b.bytes().all(|c| c.is_ascii_digit()) => Some(v),
                _ => return bad("the build is a number"),
            },
        };
        Ok(ComponentArn { region: region.into(), owner: owner.into(), name: name.into(), version, build })
    }

    /// A build version ARN (`…/1.0.2/1`): the only form that always names the same
    /// document. A version ARN (`…/1.0.2`, `…/1.x.x`) resolves to the newest matching build.
    pub fn pinned(&self) -> bool {
        self.build.is_some()
    }

    /// Whether `s` looks like an ARN (and should be read as one rather than as a path).
    pub fn looks_like(s: &str) -> bool {
        s.trim_start().starts_with("arn:")
    }
}

/// A component document as `GetComponent` returned it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fetched {
    /// The ARN that was asked for.
    pub requested: String,
    /// The build version ARN it resolved to.
    pub arn: String,
    pub name: String,
    /// The semantic version it resolved to (`1.0.2`).
    pub version: String,
    pub sha256: String,
    pub data: String,
    /// Set when this is a cached copy used because the service could not answer.
    #[serde(skip)]
    pub stale: Option<String>,
}

impl Fetched {
    pub fn new(requested: &str, arn: String, name: String, version: String, data: String) -> Fetched {
        let sha256 = crate::digest::sha256_hex(data.as_bytes());
        Fetched { requested: requested.into(), arn, name, version, sha256, data, stale: None }
    }

    /// The document, validated. Relative paths in it resolve against `dir`.
    pub fn document(
        &self,
        dir: PathBuf,
        strict: bool,
    ) -> Result<(Document, Vec<crate::Diagnostic>), Vec<crate::Diagnostic>> {
        Document::parse_with(&self.requested, dir, self.data.clone(), strict)
    }
}

/// Why a component could not be fetched: one sentence naming the ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub message: String,
    /// The service could not be reached or asked to slow down (a cached copy may serve);
    /// otherwise it answered (no such component, access denied) and its answer stands.
    pub transient: bool,
}

impl FetchError {
    /// An answer that stands.
    pub fn refused(message: impl Into<String>) -> FetchError {
        FetchError { message: message.into(), transient: false }
    }

    /// A failure to reach the service.
    pub fn transient(message: impl Into<String>) -> FetchError {
        FetchError { message: message.into(), transient: true }
    }
}

impl From<String> for FetchError {
    fn from(message: String) -> FetchError {
        FetchError::refused(message)
    }
}

/// Where component documents come from.
pub trait Fetch: Send + Sync {
    /// The document `arn` names.
    fn fetch(&self, arn: &str) -> Result<Fetched, FetchError>;
}

/// Components fetched before the run, served from memory.
#[derive(Debug, Clone, Default)]
pub struct Prefetched(pub BTreeMap<String, Fetched>);

impl Fetch for Prefetched {
    fn fetch(&self, arn: &str) -> Result<Fetched, FetchError> {
        self.0.get(arn).cloned().ok_or_else(|| {
            FetchError::refused(format!(
                "{arn} was not fetched before the run (only ARNs written literally in a document can be)"
            ))
        })
    }
}

/// Largest cached component (a component's `data` is at most 16,000 characters in Image
/// Builder; the headroom covers the JSON around it).
const CACHE_LIMIT: u64 = 1 << 20;

/// The on-disk cache of fetched components in front of an optional upstream.
pub struct Cache {
    dir: PathBuf,
    upstream: Option<Arc<dyn Fetch>>,
    /// Serve any cached copy without asking upstream (commands that only read and
    /// report: a moved wildcard version matters to `plan`, not to `images`).
    cached_first: bool,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>, upstream: Option<Arc<dyn Fetch>>) -> Cache {
        Cache { dir: dir.into(), upstream, cached_first: false }
    }

    /// [`Cache::new`], serving what is cached without asking upstream.
    pub fn cached_first(dir: impl Into<PathBuf>, upstream: Option<Arc<dyn Fetch>>) -> Cache {
        Cache { cached_first: true, ..Cache::new(dir, upstream) }
    }

    /// The default folder: `$AMICTL_COMPONENT_CACHE`, else `$XDG_CACHE_HOME/amictl/components`,
    /// else `~/.cache/amictl/components`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("AMICTL_COMPONENT_CACHE").filter(|d| !d.is_empty()) {
            return d.into();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("amictl").join("components")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, arn: &str) -> PathBuf {
        self.dir.join(format!("{}.json", crate::digest::sha256_hex(arn.as_bytes())))
    }

    /// Whether the folder is this user's alone (a shared or world-writable folder could
    /// hold planted entries, whose hashes would check out).
    fn private(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(&self.dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o022 == 0)
    }

    /// A cached entry, if it is there, readable and unaltered (its hash checks out).
    fn cached(&self, arn: &str) -> Option<Fetched> {
        if !self.private() {
            return None;
        }
        let text = crate::input::read_text(&self.entry(arn), CACHE_LIMIT).ok()?;
        let f: Fetched = serde_json::from_str(&text).ok()?;
        let sha = crate::digest::sha256_hex(f.data.as_bytes());
        (f.requested == arn && sha == f.sha256).then_some(f)
    }

    fn store(&self, f: &Fetched) -> std::io::Result<()> {
        if !self.dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        }
        if !self.private() {
            return Err(std::io::Error::other("the folder is not this user's alone (owner, or writable by others)"));
        }
        let path = self.entry(&f.requested);
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(f).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &path)
    }
}

impl Fetch for Cache {
    fn fetch(&self, arn: &str) -> Result<Fetched, FetchError> {
        let parsed = ComponentArn::parse(arn)?;
        let cached = self.cached(arn);
        if (parsed.pinned() || self.cached_first)
            && let Some(f) = cached
        {
            return Ok(f);
        }
        let Some(upstream) = &self.upstream else {
            return cached.ok_or_else(|| {
                FetchError::refused(format!("{arn} is not in the component cache {}", self.dir.display()))
            });
        };
        match upstream.fetch(arn) {
            Ok(f) => {
                if let Err(e) = self.store(&f) {
                    tracing::warn!("cannot cache {arn} in {}: {e}", self.dir.display());
                }
                Ok(f)
            }
            Err(e) => match cached {
                Some(mut f) if e.transient => {
                    f.stale = Some(e.message);
                    Ok(f)
                }
                _ => Err(e),
            },
        }
    }
}

/// The component ARNs `doc`'s `ExecuteDocument` steps name literally, in order.
pub fn references(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    for step in doc.phases.iter().flat_map(|p| &p.steps) {
        if step.module.name != "ExecuteDocument" {
            continue;
        }
        for input in &step.inputs {
            if let Some(d) = input.get("document").and_then(serde_json::Value::as_str)
                && ComponentArn::looks_like(d)
                && !d.contains("{{")
                && !out.iter().any(|o| o == d.trim())
            {
                out.push(d.trim().to_string());
            }
        }
    }
    out
}

/// The most components documents may run by ARN, directly or through those they run.
pub const MAX_REFERENCES: usize = 64;

/// Walks the ARNs in `start` and those each fetched document runs in turn: each once, in
/// the order met, at most [`MAX_REFERENCES`]. `fetch` gives the document, or `None` to go
/// on without it (the caller has said why); a malformed ARN is passed over (the document's
/// own validation reports it); past the limit the walk ends with `too_many()`.
pub fn walk_references<E>(
    start: Vec<String>,
    mut fetch: impl FnMut(&str) -> Result<Option<Fetched>, E>,
    too_many: impl FnOnce() -> E,
) -> Result<Vec<(String, Fetched)>, E> {
    let mut todo: std::collections::VecDeque<String> = start.into();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    while let Some(arn) = todo.pop_front() {
        if ComponentArn::parse(&arn).is_err() || !seen.insert(arn.clone()) {
            continue;
        }
        if seen.len() > MAX_REFERENCES {
            return Err(too_many());
        }
        if let Some(f) = fetch(&arn)? {
            if let Ok((d, _)) = f.document(PathBuf::new(), false) {
                todo.extend(references(&d));
            }
            out.push((arn, f));
        }
    }
    Ok(out)
}

/// Fetches every ARN `docs` run, and those the fetched documents run in turn, so a run
/// that cannot reach the service has them.
pub fn prefetch(docs: &[&Document], source: &dyn Fetch) -> Result<Prefetched, FetchError> {
    let start = docs.iter().flat_map(|d| references(d)).collect();
    let walked = walk_references(
        start,
        |arn| source.fetch(arn).map(Some),
        || FetchError::refused(format!("documents reference more than {MAX_REFERENCES} components by ARN")),
    )?;
    Ok(Prefetched(walked.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn arns_follow_get_components_pattern() {
        let a = ComponentArn::parse("arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/1.0.2/1").unwrap();
        assert_eq!((a.owner.as_str(), a.name.as_str(), a.build), ("aws", "update-linux", Some(1)));
        assert!(a.pinned());
        let v = ComponentArn::parse("arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/1.0.2").unwrap();
        assert!(!v.pinned(), "a version ARN resolves to its newest build, which may change");
        let w = ComponentArn::parse("arn:aws:imagebuilder:eu-west-1:123456789012:component/agent/1.x.x").unwrap();
        assert_eq!(w.version, [Some(1), None, None]);
        assert!(!w.pinned());
        for bad in [
            "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux",
            "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/x.0.1",
            "arn:aws:imagebuilder:eu-west-1:aws:component/update-linux/1.x.x/1",
            "arn:aws:imagebuilder:eu-west-1:12345:component/a/1.0.0",
            "arn:aws:imagebuilder:eu-west-1:aws:image-recipe/a/1.0.0",
            "arn:aws:imagebuilder:eu-west-1:aws:component/A/1.0.0",
            "arn:aws:imagebuilder:eu-west-1:aws:component/a/1.0.0/1/2",
            "arn:aws:s3:::bucket/key",
            "update-linux",
        ] {
            assert!(ComponentArn::parse(bad).is_err(), "{bad}");
        }
    }

    struct Counting {
        calls: Mutex<u32>,
        fail: bool,
    }

    impl Fetch for Counting {
        fn fetch(&self, arn: &str) -> Result<Fetched, FetchError> {
            *self.calls.lock().unwrap() += 1;
            if self.fail {
                return Err(FetchError::transient(format!("{arn}: unreachable")));
            }
            let data = format!(
                "name: c\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: ['echo {}']\n",
                self.calls.lock().unwrap()
            );
            Ok(Fetched::new(arn, format!("{arn}/1"), "c".into(), "1.0.0".into(), data))
        }
    }

    #[test]
    fn pinned_versions_are_fetched_once_wildcards_each_time_and_stale_copies_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let up = Arc::new(Counting { calls: Mutex::new(0), fail: false });
        let cache = Cache::new(dir.path(), Some(up.clone()));
        let pinned = "arn:aws:imagebuilder:eu-west-1:aws:component/c/1.0.0/1";
        let wild = "arn:aws:imagebuilder:eu-west-1:aws:component/c/x.x.x";
        cache.fetch(pinned).unwrap();
        cache.fetch(pinned).unwrap();
        assert_eq!(*up.calls.lock().unwrap(), 1);
        cache.fetch(wild).unwrap();
        cache.fetch(wild).unwrap();
        assert_eq!(*up.calls.lock().unwrap(), 3);

        let offline = Cache::new(dir.path(), Some(Arc::new(Counting { calls: Mutex::new(0), fail: true })));
        let f = offline.fetch(wild).unwrap();
        assert!(f.stale.as_deref().unwrap().contains("unreachable"));
        // An answer (no such component, access denied) is not papered over with the cache.
        struct Refusing;
        impl Fetch for Refusing {
            fn fetch(&self, arn: &str) -> Result<Fetched, FetchError> {
                Err(FetchError::refused(format!("{arn}: access denied")))
            }
        }
        assert!(Cache::new(dir.path(), Some(Arc::new(Refusing))).fetch(wild).is_err());
        assert!(offline.fetch("arn:aws:imagebuilder:eu-west-1:aws:component/other/x.x.x").is_err());
        let reading = Cache::cached_first(dir.path(), Some(up.clone()));
        assert!(reading.fetch(wild).unwrap().stale.is_none());
        assert_eq!(*up.calls.lock().unwrap(), 3, "a reading command does not ask again");

        // A folder others may write is not trusted.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Cache::new(dir.path(), None).fetch(pinned).is_err());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // A tampered entry is not trusted.
        let entry = cache.entry(pinned);
        let text = std::fs::read_to_string(&entry).unwrap().replace("echo 1", "echo evil");
        std::fs::write(&entry, text).unwrap();
        assert!(Cache::new(dir.path(), None).fetch(pinned).is_err());
    }

    #[test]
    fn prefetch_follows_references_of_fetched_documents() {
        struct Nested;
        impl Fetch for Nested {
            fn fetch(&self, arn: &str) -> Result<Fetched, FetchError> {
                let data = if arn.ends_with("outer/1.0.0") {
                    "name: o\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Inner\n        action: ExecuteDocument\n        inputs:\n          document: arn:aws:imagebuilder:eu-west-1:aws:component/inner/1.0.0\n".to_string()
                } else {
                    "name: i\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: S\n        action: ExecuteBash\n        inputs:\n          commands: ['true']\n".to_string()
                };
                Ok(Fetched::new(arn, arn.into(), "n".into(), "1.0.0".into(), data))
            }
        }
        let top = "name: t\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Outer\n        action: ExecuteDocument\n        inputs:\n          document: arn:aws:imagebuilder:eu-west-1:aws:component/outer/1.0.0\n";
        let (doc, _) = Document::parse("t.yml", PathBuf::new(), top.into()).unwrap();
        let got = prefetch(&[&doc], &Nested).unwrap();
        let keys: Vec<&str> = got.0.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "arn:aws:imagebuilder:eu-west-1:aws:component/inner/1.0.0",
                "arn:aws:imagebuilder:eu-west-1:aws:component/outer/1.0.0"
            ]
        );
        assert!(got.fetch("arn:aws:imagebuilder:eu-west-1:aws:component/none/1.0.0").is_err());
    }
}
