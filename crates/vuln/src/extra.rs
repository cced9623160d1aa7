//! The other shapes advisories come in: the ALAS RSS bulletin feed (the earliest signal of
//! a new advisory; updateinfo follows), Debian's `data/DSA/list`, and one advisory as
//! aquasecurity's vuln-list JSON. Used to name and date advisories; matching needs the
//! fixed versions that only updateinfo and the tracker carry.

use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use crate::version::Evr;
use crate::{Advisory, FeedError, FixedPackage, Severity, position};

/// One ALAS bulletin from the RSS feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bulletin {
    /// As the website numbers it (`ALAS-2018-939` for AL2's ALAS2-2018-939).
    pub id: String,
    pub severity: Severity,
    pub packages: Vec<String>,
    pub cves: Vec<String>,
    /// RFC 2822, as published.
    pub published: String,
}

/// `<item><title>ALAS-2018-939 (critical): kernel</title><description>CVE-…, CVE-…</description>…`
pub fn parse_alas_rss(xml: &str) -> Result<Vec<Bulletin>, FeedError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut field = None;
    let mut item: Option<(String, String, String)> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            let (line, column) = position(xml, reader.buffer_position() as usize);
            FeedError { what: "ALAS RSS".into(), line, column, message: e.to_string() }
        })?;
        match event {
            Event::Start(e) => match e.name().as_ref() {
                b"item" => item = Some(Default::default()),
                b"title" => field = Some(0),
                b"description" => field = Some(1),
                b"pubDate" => field = Some(2),
                _ => field = None,
            },
            Event::Text(t) => {
                if let (Some(f), Some(i)) = (field, item.as_mut()) {
                    let text = t.unescape().map(|s| s.trim().to_string()).unwrap_or_default();
                    match f {
                        0 => i.0 = text,
                        1 => i.1 = text,
                        _ => i.2 = text,
                    }
                }
            }
            Event::End(e) => {
                field = None;
                if e.name().as_ref() == b"item"
                    && let Some((title, description, published)) = item.take()
                {
                    let (head, packages) = title.split_once(": ").unwrap_or((title.as_str(), ""));
                    let (id, severity) = head.split_once(" (").unwrap_or((head, ""));
                    out.push(Bulletin {
                        id: id.trim().to_string(),
                        severity: Severity::parse(severity.trim_end_matches(')')),
                        packages: packages.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
                        cves: description
                            .split(|c: char| c == ',' || c.is_whitespace())
                            .filter(|c| c.starts_with("CVE-"))
                            .map(str::to_string)
                            .collect(),
                        published,
                    });
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// One entry of Debian's `data/DSA/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dsa {
    pub id: String,
    /// `01 Aug 2002`.
    pub date: String,
    pub package: String,
    pub description: String,
    pub cves: Vec<String>,
    /// (release, binary/source package, fixed version).
    pub fixes: Vec<(String, String, String)>,
}

/// Parses the DSA list; a line that fits no known shape is an error naming it.
pub fn parse_dsa_list(text: &str) -> Result<Vec<Dsa>, FeedError> {
    let mut out: Vec<Dsa> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |m: &str| FeedError { what: "DSA list".into(), line: n + 1, column: 1, message: m.into() };
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let (date, rest) = rest.split_once("] ").ok_or_else(|| bad("expected `[DD Mon YYYY] DSA-…`"))?;
            let (id, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let (package, description) = rest.split_once(" - ").unwrap_or((rest, ""));
            out.push(Dsa {
                id: id.into(),
                date: date.into(),
                package: package.into(),
                description: description.into(),
                cves: Vec::new(),
                fixes: Vec::new(),
            });
            continue;
        }
        let current = out.last_mut().ok_or_else(|| bad("an indented line before the first DSA"))?;
        if let Some(cves) = t.strip_prefix('{').and_then(|c| c.strip_suffix('}')) {
            current.cves.extend(cves.split_whitespace().map(str::to_string));
        } else if let Some(rest) = t.strip_prefix('[') {
            let (release, rest) =
                rest.split_once("] - ").ok_or_else(|| bad("expected `[release] - package version`"))?;
            let mut words = rest.split_whitespace();
            let package = words.next().ok_or_else(|| bad("a fix without a package"))?;
            let version = words.next().unwrap_or_default();
            current.fixes.push((release.into(), package.into(), version.into()));
        } else if !t.starts_with("NOTE:") {
            return Err(bad(&format!("unexpected line `{t}`")));
        }
    }
    Ok(out)
}

/// One advisory in aquasecurity's vuln-list JSON shape, as an [`Advisory`].
pub fn parse_vuln_list_advisory(json: &str) -> Result<Advisory, FeedError> {
    #[derive(Deserialize)]
    struct Date {
        date: String,
    }
    #[derive(Deserialize)]
    struct Reference {
        id: String,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        #[serde(default)]
        epoch: String,
        version: String,
        release: String,
        arch: String,
    }
    #[derive(Deserialize)]
    struct Doc {
        id: String,
        title: String,
        issued: Date,
        updated: Option<Date>,
        severity: String,
        #[serde(default)]
        packages: Vec<Package>,
        #[serde(default)]
        references: Vec<Reference>,
    }
    let d: Doc = serde_json::from_str(json).map_err(|e| FeedError {
        what: "vuln-list advisory".into(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut packages = Vec::new();
    for p in d.packages {
        let epoch = if p.epoch.is_empty() { 0 } else { p.epoch.parse().unwrap_or(0) };
        let parsed = Evr::new(epoch, &p.version, &p.release);
        packages.push(FixedPackage { name: p.name, arch: p.arch, evr: parsed.to_string(), parsed });
    }
    Ok(Advisory {
        id: d.id,
        title: d.title,
        severity: Severity::parse(&d.severity),
        issued: d.issued.date,
        updated: d.updated.map(|u| u.date).unwrap_or_default(),
        cves: d.references.into_iter().filter(|r| r.kind == "cve").map(|r| r.id).collect(),
        collection: String::new(),
        packages,
    })
}
