//! Advisory feeds: fetched, cached, and marked stale rather than silent.
//!
//! A feed is a URL or a file. For a `repomd.xml` URL the updateinfo is downloaded only when
//! repomd's checksum for it changed. Every good copy is cached under
//! `<cache>/advisories/<hash of location>/`; when a feed cannot be read (network, truncated
//! gzip, malformed XML/JSON) the previous good copy is used and the check is marked
//! **stale** with the reason — never reported as "no findings".

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use config::AdvisoryFeed;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vuln::{Finding, Package};

/// A loaded feed: what it says, and whether it is the current one.
pub struct Loaded {
    /// What the feed says.
    pub kind: Parsed,
    /// Why the latest copy could not be used (the data is then from the last good copy).
    pub stale: Option<String>,
    /// When each advisory key was first seen (the Debian tracker has no dates).
    first_seen: BTreeMap<String, String>,
}

/// A feed's parsed content.
pub enum Parsed {
    /// Amazon Linux updateinfo.
    Updateinfo(Vec<vuln::Advisory>),
    /// Debian Security Tracker records.
    Debian(Vec<vuln::DebianRecord>),
    /// No copy at all.
    Nothing,
}

#[derive(Default, Serialize, Deserialize)]
struct Meta {
    checksum: Option<String>,
    fetched_at: String,
    first_seen: BTreeMap<String, String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().into()
}

fn get(url: &str) -> Result<Vec<u8>, String> {
    let mut resp = agent().get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    resp.body_mut().with_config().limit(FEED_LIMIT).read_to_vec().map_err(|e| format!("GET {url}: {e}"))
}

/// The most a feed may be, downloaded or unpacked (a gzip bomb stops here too).
const FEED_LIMIT: u64 = toe::input::FEED_LIMIT;

fn gunzip_if(name: &str, bytes: Vec<u8>) -> Result<String, String> {
    if name.ends_with(".gz") || bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(FEED_LIMIT + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{name}: bad gzip ({e})"))?;
        if text.len() as u64 > FEED_LIMIT {
            return Err(format!("{name}: unpacks to more than the {FEED_LIMIT} bytes amictl reads from a feed"));
        }
        Ok(text)
    } else {
        String::from_utf8(bytes).map_err(|e| format!("{name}: not UTF-8 ({e})"))
    }
}

/// The feed's text now, and repomd's checksum when there is one. `cached` short-circuits
/// the download when the checksum is unchanged.
pub fn fetch(location: &str, cached: Option<(&str, &Path)>) -> Result<(String, Option<String>), String> {
    let remote = location.starts_with("http://") || location.starts_with("https://");
    if !remote {
        let bytes = toe::input::read(Path::new(location), FEED_LIMIT).map_err(|e| e.to_string())?;
        if location.ends_with("repomd.xml") {
            // A local repository mirror: follow repomd to its updateinfo, as for a URL.
            let repomd = String::from_utf8_lossy(&bytes).to_string();
            let r = vuln::parse_repomd(&repomd)
                .map_err(|e| format!("{location}: {e}"))?
                .ok_or_else(|| format!("{location}: no updateinfo in repomd.xml"))?;
            let base = Path::new(location).parent().and_then(Path::parent).unwrap_or(Path::new("."));
            let feed = base.join(r.href.trim_start_matches('/'));
            let bytes = toe::input::read(&feed, FEED_LIMIT).map_err(|e| e.to_string())?;
            return gunzip_if(&feed.display().to_string(), bytes).map(|t| (t, Some(r.checksum)));
        }
        return gunzip_if(location, bytes).map(|t| (t, None));
    }
    if location.ends_with("repomd.xml") {
        let repomd = String::from_utf8_lossy(&get(location)?).to_string();
        let r = vuln::parse_repomd(&repomd)
            .map_err(|e| format!("{location}: {e}"))?
            .ok_or_else(|| format!("{location}: no updateinfo in repomd.xml"))?;
        if let Some((sum, feed)) = cached
            && sum == r.checksum
            && let Ok(text) = std::fs::read_to_string(feed)
        {
            return Ok((text, Some(r.checksum)));
        }
        let base = location.trim_end_matches("repomd.xml").trim_end_matches('/').trim_end_matches("repodata");
        let url = format!("{}/{}", base.trim_end_matches('/'), r.href.trim_start_matches('/'));
        let text = gunzip_if(&url, get(&url)?)?;
        return Ok((text, Some(r.checksum)));
    }
    gunzip_if(location, get(location)?).map(|t| (t, None))
}

/// Parses a feed's text.
pub fn parse(feed: &AdvisoryFeed, text: &str) -> Result<Parsed, String> {
    match feed {
        AdvisoryFeed::Updateinfo { location } => {
            vuln::parse_updateinfo(text).map(Parsed::Updateinfo).map_err(|e| format!("{location}: {e}"))
        }
        AdvisoryFeed::DebianTracker { location, release } => vuln::parse_debian_tracker(text, release)
            .map(|(records, _skipped)| Parsed::Debian(records))
            .map_err(|e| format!("{location}: {e}")),
        AdvisoryFeed::Inspector => Err("Inspector findings are not a feed".into()),
    }
}

/// Where a feed's last good copy and its metadata are kept.
fn feed_cache(cache_dir: &Path, feed: &AdvisoryFeed) -> std::path::PathBuf {
    cache_dir.join("advisories").join(&config::hex(&Sha256::digest(feed.location().as_bytes()))[..16])
}

/// Loads a feed through the cache; `now` stamps first sightings.
pub fn load(cache_dir: &Path, feed: &AdvisoryFeed, now: Timestamp) -> Loaded {
    let dir = feed_cache(cache_dir, feed);
    let (feed_file, meta_file) = (dir.join("feed"), dir.join("meta.json"));
    let mut meta: Meta =
        std::fs::read_to_string(&meta_file).ok().and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default();
    let cached = meta.checksum.as_deref().map(|c| (c, feed_file.as_path()));
    let fresh = fetch(feed.location(), cached).and_then(|(text, checksum)| Ok((parse(feed, &text)?, text, checksum)));
    match fresh {
        Ok((parsed, text, checksum)) => {
            for k in keys(&parsed) {
                meta.first_seen.entry(k).or_insert_with(|| now.to_string());
            }
            meta.checksum = checksum;
            meta.fetched_at = now.to_string();
            // The cache is a convenience: failing to write it must not fail the check.
            let _ = std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(&feed_file, &text))
                .and_then(|_| std::fs::write(&meta_file, serde_json::to_string(&meta).unwrap_or_default()));
            Loaded { kind: parsed, stale: None, first_seen: meta.first_seen }
        }
        Err(reason) => {
            let previous = std::fs::read_to_string(&feed_file).ok().and_then(|t| parse(feed, &t).ok());
            let reason = match (&previous, meta.fetched_at.as_str()) {
                (Some(_), at) if !at.is_empty() => format!("{reason}; using the copy from {at}"),
                _ => format!("{reason}; no previous copy"),
            };
            Loaded { kind: previous.unwrap_or(Parsed::Nothing), stale: Some(reason), first_seen: meta.first_seen }
        }
    }
}

/// The last good copy only, no network (reports and metrics read state, not the world).
pub fn load_cached(cache_dir: &Path, feed: &AdvisoryFeed) -> Option<Loaded> {
    let dir = feed_cache(cache_dir, feed);
    let text = std::fs::read_to_string(dir.join("feed")).ok()?;
    let meta: Meta = std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or_default();
    Some(Loaded { kind: parse(feed, &text).ok()?, stale: None, first_seen: meta.first_seen })
}

fn keys(p: &Parsed) -> Vec<String> {
    match p {
        Parsed::Updateinfo(a) => a.iter().map(|x| x.id.clone()).collect(),
        Parsed::Debian(r) => r.iter().map(|x| format!("{}/{}", x.source, x.cve)).collect(),
        Parsed::Nothing => Vec::new(),
    }
}

impl Loaded {
    /// A feed read outside the cache (`advisories --manifest`).
    pub fn fresh(kind: Parsed) -> Loaded {
        Loaded { kind, stale: None, first_seen: BTreeMap::new() }
    }

    /// The fixes `installed` lacks.
    pub fn findings(&self, installed: &[Package]) -> Vec<Finding> {
        match &self.kind {
            Parsed::Updateinfo(a) => vuln::findings(a, installed),
            Parsed::Debian(r) => vuln::debian_findings(r, installed),
            Parsed::Nothing => Vec::new(),
        }
    }

    /// When a finding's fix was published: the advisory's date, or when amictl first saw it.
    pub fn published(&self, f: &Finding) -> Timestamp {
        let from_feed = f.issued.replace(' ', "T");
        // Inspector: RFC 3339; ALAS: `2019-07-02 00:00` or with seconds (UTC).
        let parsed = [f.issued.clone(), format!("{from_feed}Z"), format!("{from_feed}:00Z")]
            .iter()
            .find_map(|s| s.parse::<Timestamp>().ok());
        parsed
            .or_else(|| {
                let key = format!("{}/{}", f.package, f.advisory);
                self.first_seen.get(&key).or_else(|| self.first_seen.get(&f.advisory)).and_then(|t| t.parse().ok())
            })
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `routes` on loopback and counts requests per path.
    fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut s = stream.unwrap();
                let mut buf = [0u8; 4096];
                let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or_default().to_string();
                log.lock().unwrap().push(path.clone());
                let body = routes.iter().find(|(p, _)| *p == path).map(|(_, b)| b.clone());
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"nope".to_vec()),
                };
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(&body);
            }
        });
        (format!("http://{addr}"), seen)
    }

    #[test]
    fn an_unchanged_repomd_checksum_skips_the_updateinfo_download() {
        use std::io::Write;
        let xml = "<updates><update><id>ALAS2-2026-002</id><severity>important</severity></update></updates>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(xml.as_bytes()).unwrap();
        let repomd = "<repomd><data type=\"updateinfo\"><checksum type=\"sha256\">abc123</checksum><location href=\"repodata/updateinfo.xml.gz\"/></data></repomd>";
        let (url, seen) = serve(vec![
            ("/2/core/latest/x86_64/mirror/repodata/repomd.xml", repomd.as_bytes().to_vec()),
            ("/2/core/latest/x86_64/mirror/repodata/updateinfo.xml.gz", gz.finish().unwrap()),
        ]);
        let feed =
            AdvisoryFeed::Updateinfo { location: format!("{url}/2/core/latest/x86_64/mirror/repodata/repomd.xml") };
        let cache = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            let loaded = load(cache.path(), &feed, Timestamp::now());
            assert!(loaded.stale.is_none(), "{:?}", loaded.stale);
            assert!(matches!(&loaded.kind, Parsed::Updateinfo(a) if a[0].id == "ALAS2-2026-002"));
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.iter().filter(|p| p.ends_with("repomd.xml")).count(), 2);
        assert_eq!(seen.iter().filter(|p| p.ends_with("updateinfo.xml.gz")).count(), 1, "{seen:?}");
    }

    #[test]
    fn a_broken_feed_falls_back_to_the_last_good_copy_and_says_it_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let feed_path = dir.path().join("updateinfo.xml");
        let good = "<updates><update><id>ALAS2-2026-001</id><issued date=\"2026-11-01 00:00\"/><severity>critical</severity><pkglist><collection short=\"amazon-linux-2\"><package name=\"openssl-libs\" epoch=\"1\" version=\"1.0.2k\" release=\"26.amzn2\" arch=\"x86_64\"/></collection></pkglist></update></updates>";
        std::fs::write(&feed_path, good).unwrap();
        let feed = AdvisoryFeed::Updateinfo { location: feed_path.display().to_string() };
        let cache = dir.path().join("cache");
        let first = load(&cache, &feed, Timestamp::now());
        assert!(first.stale.is_none());
        std::fs::write(&feed_path, &good[..good.len() / 2]).unwrap();
        let second = load(&cache, &feed, Timestamp::now());
        let reason = second.stale.clone().unwrap();
        assert!(reason.contains("line 1") && reason.contains("using the copy from"), "{reason}");
        let installed = vec![Package {
            name: "openssl-libs".into(),
            version: "1:1.0.2k-24.amzn2".into(),
            arch: "x86_64".into(),
            source_name: "openssl".into(),
            source_version: "1:1.0.2k-24.amzn2".into(),
        }];
        let f = second.findings(&installed);
        assert_eq!(f.len(), 1, "the last good copy still answers");
        assert_eq!(second.published(&f[0]).to_string(), "2026-11-01T00:00:00Z");
        std::fs::remove_dir_all(&cache).unwrap();
        let none = load(&cache, &feed, Timestamp::now());
        assert!(none.stale.as_deref().unwrap().contains("no previous copy"));
        assert!(none.findings(&installed).is_empty());
    }
}
