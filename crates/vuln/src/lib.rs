//! # vuln — which security fixes a base image is missing
//!
//! Three facts joined: what is installed (a package manifest, as the builders record it or
//! `rpm -qa`/`dpkg-query` print it), which advisories fix which package versions (Amazon
//! Linux `updateinfo.xml`, the Debian Security Tracker's JSON), and version order
//! ([`version`]). Pure: callers fetch and cache the feeds.
//!
//! Matching rules (see [`findings`]):
//! - names must be equal; architectures must be equal unless either side is `noarch`
//!   (an advisory lists one entry per architecture; the installed one decides);
//! - a finding is an installed version strictly older than the fixed one;
//! - **lines**: kernels (`kernel*`) and Amazon Linux Extras topics ship parallel version
//!   lines under the same package names; a fix applies only to the line it was built for,
//!   so it is matched only when installed and fixed share the first two version numbers
//!   (a kernel-5.15 fix does not flag kernel 4.14);
//! - Debian: the tracker is keyed by *source* package and release; `fixed_version "0"`
//!   means not affected, `open` without a fix is reported as unfixed (a rebuild cannot fix
//!   it, so it never triggers one).

pub mod extra;
pub mod version;

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use quick_xml::events::Event;
use serde::Serialize;

pub use provider::{Finding, Package, Severity};

use crate::version::{Evr, dpkg_cmp, rpm_evr_cmp};

/// A feed that could not be read, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} at line {line}, column {column}: {message}")]
pub struct FeedError {
    pub what: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
}

/// One fixed package of an advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixedPackage {
    pub name: String,
    pub arch: String,
    pub evr: String,
    #[serde(skip)]
    pub(crate) parsed: Evr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advisory {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// As the feed wrote it (`2018-02-07 18:49`).
    pub issued: String,
    pub updated: String,
    pub cves: Vec<String>,
    /// `amazon-linux-2`, `amazon-linux-2---golang1.19` …
    pub collection: String,
    pub packages: Vec<FixedPackage>,
}

impl Advisory {
    /// From an Amazon Linux Extras topic (or another collection with its own version line).
    fn on_a_line(&self) -> bool {
        self.collection.contains("---")
    }
}

/// Parses an `updateinfo.xml` (uncompressed). Every `<update>` becomes an [`Advisory`];
/// a malformed document is an error naming the line and column.
pub fn parse_updateinfo(xml: &str) -> Result<Vec<Advisory>, FeedError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut cur: Option<Advisory> = None;
    let mut field: Option<&'static str> = None;
    let mut depth = 0usize;
    let mut root = false;
    let err = |reader: &quick_xml::Reader<&[u8]>, message: String| {
        let (line, column) = position(xml, reader.buffer_position() as usize);
        FeedError { what: "updateinfo".into(), line, column, message }
    };
    loop {
        let event = reader.read_event().map_err(|e| err(&reader, e.to_string()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if !empty {
                    depth += 1;
                }
                let attr = |name: &[u8]| -> Result<String, FeedError> {
                    for a in e.attributes() {
                        let a = a.map_err(|x| err(&reader, x.to_string()))?;
                        if a.key.as_ref() == name {
                            return a.unescape_value().map(|v| v.to_string()).map_err(|x| err(&reader, x.to_string()));
                        }
                    }
                    Ok(String::new())
                };
                if depth <= 1 && !root {
                    // The first element is the document's: an HTML error page or any other
                    // XML is not an empty feed.
                    if e.name().as_ref() != b"updates" {
                        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        return Err(err(&reader, format!("the document is <{name}>, not an updateinfo <updates>")));
                    }
                    root = true;
                }
                match e.name().as_ref() {
                    b"update" => {
                        cur = Some(Advisory {
                            id: String::new(),
                            title: String::new(),
                            severity: Severity::Unknown,
                            issued: String::new(),
                            updated: String::new(),
                            cves: Vec::new(),
                            collection: String::new(),
                            packages: Vec::new(),
                        })
                    }
                    b"id" if !empty => field = Some("id"),
                    b"title" if !empty => field = Some("title"),
                    b"severity" if !empty => field = Some("severity"),
                    b"issued" => {
                        if let Some(a) = cur.as_mut() {
                            a.issued = attr(b"date")?;
                        }
                    }
                    b"updated" => {
                        if let Some(a) = cur.as_mut() {
                            a.updated = attr(b"date")?;
                        }
                    }
                    b"reference" => {
                        if attr(b"type")? == "cve"
                            && let Some(a) = cur.as_mut()
                        {
                            a.cves.push(attr(b"id")?);
                        }
                    }
                    b"collection" => {
                        if let Some(a) = cur.as_mut() {
                            a.collection = attr(b"short")?;
                        }
                    }
                    b"package" => {
                        let (name, arch) = (attr(b"name")?, attr(b"arch")?);
                        let epoch = attr(b"epoch")?;
                        let epoch: u64 = if epoch.is_empty() {
                            0
                        } else {
                            epoch
                                .parse()
                                .map_err(|_| err(&reader, format!("package {name}: epoch `{epoch}` is not a number")))?
                        };
                        let (version, release) = (attr(b"version")?, attr(b"release")?);
                        if name.is_empty() || version.is_empty() {
                            return Err(err(&reader, "a <package> without name or version".into()));
                        }
                        let parsed = Evr::new(epoch, &version, &release);
                        if let Some(a) = cur.as_mut() {
                            a.packages.push(FixedPackage { name, arch, evr: parsed.to_string(), parsed });
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let (Some(f), Some(a)) = (field, cur.as_mut()) {
                    let text = t.unescape().map_err(|e| err(&reader, e.to_string()))?.trim().to_string();
                    match f {
                        "id" => a.id = text,
                        "title" => a.title = text,
                        _ => a.severity = Severity::parse(&text),
                    }
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                field = None;
                if e.name().as_ref() == b"update"
                    && let Some(a) = cur.take()
                {
                    if a.id.is_empty() {
                        return Err(err(&reader, "an <update> without an <id>".into()));
                    }
                    out.push(a);
                }
            }
            Event::Eof => {
                if depth != 0 || cur.is_some() {
                    return Err(err(&reader, "the document ends inside an element (truncated?)".into()));
                }
                if !root {
                    return Err(err(&reader, "no <updates> element: empty, or not an updateinfo document".into()));
                }
                return Ok(out);
            }
            _ => {}
        }
    }
}

/// Where `repomd.xml` says the updateinfo is, with its checksum (for skipping a download
/// when nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateinfoRef {
    pub href: String,
    pub checksum: String,
}

pub fn parse_repomd(xml: &str) -> Result<Option<UpdateinfoRef>, FeedError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut in_updateinfo = false;
    let mut in_checksum = false;
    let mut found = UpdateinfoRef { href: String::new(), checksum: String::new() };
    loop {
        let event = reader.read_event().map_err(|e| {
            let (line, column) = position(xml, reader.buffer_position() as usize);
            FeedError { what: "repomd".into(), line, column, message: e.to_string() }
        })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let get = |name: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .map(|a| String::from_utf8_lossy(&a.value).to_string())
                };
                match e.name().as_ref() {
                    b"data" => in_updateinfo = get(b"type").as_deref() == Some("updateinfo"),
                    b"checksum" if in_updateinfo => in_checksum = true,
                    b"location" if in_updateinfo => found.href = get(b"href").unwrap_or_default(),
                    _ => {}
                }
            }
            Event::Text(t) if in_checksum => {
                found.checksum = String::from_utf8_lossy(&t).trim().to_string();
            }
            Event::End(e) => {
                in_checksum = false;
                if e.name().as_ref() == b"data" && in_updateinfo {
                    return Ok(Some(found));
                }
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// One tracker verdict: a CVE in a source package for one Debian release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebianRecord {
    pub source: String,
    pub cve: String,
    pub release: String,
    /// `resolved`, `open`, `undetermined`.
    pub status: String,
    /// `None` for open issues; `Some("0")` means the release was never affected.
    pub fixed_version: Option<String>,
    pub severity: Severity,
}

/// Parses the tracker JSON (`{source: {cve: {releases: {release: {status, fixed_version,
/// urgency}}}}}`) for one release. Entries of the wrong shape are skipped and named in
/// the second list, so one bad entry does not hide a feed.
pub fn parse_debian_tracker(json: &str, release: &str) -> Result<(Vec<DebianRecord>, Vec<String>), FeedError> {
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| FeedError {
        what: "debian tracker".into(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let Some(sources) = doc.as_object() else {
        return Err(FeedError {
            what: "debian tracker".into(),
            line: 1,
            column: 1,
            message: "not a JSON object".into(),
        });
    };
    if sources.is_empty() {
        return Err(FeedError {
            what: "debian tracker".into(),
            line: 1,
            column: 1,
            message: "no source packages: an empty object is not the tracker's data".into(),
        });
    }
    for (source, cves) in sources {
        let Some(cves) = cves.as_object() else {
            skipped.push(source.clone());
            continue;
        };
        for (cve, entry) in cves {
            let Some(rel) = entry["releases"].as_object().and_then(|r| r.get(release)) else {
                if !entry["releases"].is_object() {
                    skipped.push(format!("{source}/{cve}"));
                }
                continue;
            };
            out.push(DebianRecord {
                source: source.clone(),
                cve: cve.clone(),
                release: release.into(),
                status: rel["status"].as_str().unwrap_or_default().into(),
                fixed_version: rel["fixed_version"].as_str().map(str::to_string),
                severity: Severity::parse(rel["urgency"].as_str().unwrap_or_default()),
            });
        }
    }
    Ok((out, skipped))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    Rpm,
    Dpkg,
}

/// Reads a manifest in either format the builders record and the commands print:
/// rpm `NAME\tEPOCHNUM\tVERSION\tRELEASE\tARCH` or dpkg
/// `Package\tVersion\tArchitecture\tsource:Package\tsource:Version`. The kind is detected
/// from the first line (five fields whose second is a number: rpm).
pub fn parse_manifest(text: &str) -> Result<(ManifestKind, Vec<Package>), FeedError> {
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l)).collect();
    let Some((_, first)) = lines.first() else { return Ok((ManifestKind::Rpm, Vec::new())) };
    let f: Vec<&str> = first.split('\t').collect();
    let kind = if f.len() == 5 && f[1].chars().all(|c| c.is_ascii_digit()) && !f[1].is_empty() {
        ManifestKind::Rpm
    } else {
        ManifestKind::Dpkg
    };
    let mut out = Vec::new();
    for (n, line) in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = |m: &str| FeedError { what: "manifest".into(), line: n, column: 1, message: m.into() };
        match kind {
            ManifestKind::Rpm => {
                let [name, epoch, version, release, arch] = f[..] else {
                    return Err(bad("expected NAME, EPOCHNUM, VERSION, RELEASE, ARCH separated by tabs"));
                };
                let epoch: u64 = epoch.parse().map_err(|_| bad("EPOCHNUM is not a number"))?;
                let evr = Evr::new(epoch, version, release).to_string();
                out.push(Package {
                    name: name.into(),
                    version: evr.clone(),
                    arch: arch.into(),
                    source_name: name.into(),
                    source_version: evr,
                });
            }
            ManifestKind::Dpkg => {
                if f.len() < 3 {
                    return Err(bad("expected Package, Version, Architecture[, source:Package, source:Version]"));
                }
                let source = f.get(3).filter(|s| !s.is_empty()).unwrap_or(&f[0]);
                let source_version = f.get(4).filter(|s| !s.is_empty()).unwrap_or(&f[1]);
                out.push(Package {
                    name: f[0].into(),
                    version: f[1].into(),
                    arch: f[2].into(),
                    source_name: source.to_string(),
                    source_version: source_version.to_string(),
                });
            }
        }
    }
    Ok((kind, out))
}

/// The first two numbers of a version: its "line" (`5.15` of `5.15.43`).
fn line_of(version: &str) -> Vec<&str> {
    version.split(['.', '-', '_']).filter(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty()).take(2).collect()
}

/// Amazon Linux: every advisory fix newer than what is installed (rules in the crate docs).
pub fn findings(advisories: &[Advisory], installed: &[Package]) -> Vec<Finding> {
    // Package versions are parsed once, not once per advisory that names them.
    let mut by_name: HashMap<&str, Vec<(&Package, Evr)>> = HashMap::with_capacity(installed.len());
    for p in installed {
        if let Some(evr) = Evr::parse(&p.version) {
            by_name.entry(p.name.as_str()).or_default().push((p, evr));
        }
    }
    let mut out = Vec::new();
    for a in advisories {
        installed_hits(a, &by_name, &mut out);
    }
    out.sort_by(|x, y| (y.severity, &x.advisory, &x.package).cmp(&(x.severity, &y.advisory, &y.package)));
    out
}

fn installed_hits(a: &Advisory, by_name: &HashMap<&str, Vec<(&Package, Evr)>>, out: &mut Vec<Finding>) {
    let first = out.len();
    let separate = a.on_a_line();
    for fix in &a.packages {
        let Some(candidates) = by_name.get(fix.name.as_str()) else { continue };
        for (inst, have) in candidates {
            let arch_ok = fix.arch == inst.arch || fix.arch == "noarch" || inst.arch == "noarch";
            if !arch_ok {
                continue;
            }
            if (separate || fix.name.starts_with("kernel")) && line_of(&have.version) != line_of(&fix.parsed.version) {
                continue;
            }
            if rpm_evr_cmp(have, &fix.parsed) != Ordering::Less {
                continue;
            }
            // One finding per installed package and advisory (the advisory lists each arch).
            let package = format!("{}.{}", inst.name, inst.arch);
            if out[first..].iter().any(|f| f.package == package) {
                continue;
            }
            out.push(Finding {
                advisory: a.id.clone(),
                severity: a.severity,
                cves: a.cves.clone(),
                package,
                installed: inst.version.clone(),
                fixed: Some(fix.evr.clone()),
                issued: if a.updated.is_empty() { a.issued.clone() } else { a.updated.clone() },
            });
        }
    }
}

/// Debian: tracker verdicts for the installed source packages.
pub fn debian_findings(records: &[DebianRecord], installed: &[Package]) -> Vec<Finding> {
    let mut sources: BTreeMap<&str, &Package> = BTreeMap::new();
    for p in installed {
        sources.entry(p.source_name.as_str()).or_insert(p);
    }
    let mut out = Vec::new();
    for r in records {
        let Some(inst) = sources.get(r.source.as_str()) else { continue };
        let fixed = match (r.status.as_str(), r.fixed_version.as_deref()) {
            (_, Some("0")) => continue,
            ("resolved", Some(v)) if dpkg_cmp(&inst.source_version, v) == Ordering::Less => Some(v.to_string()),
            ("open", None) | ("undetermined", None) => None,
            _ => continue,
        };
        out.push(Finding {
            advisory: r.cve.clone(),
            severity: r.severity,
            cves: vec![r.cve.clone()],
            package: r.source.clone(),
            installed: inst.source_version.clone(),
            fixed,
            issued: String::new(),
        });
    }
    out.sort_by(|x, y| (y.severity, &x.advisory).cmp(&(x.severity, &y.advisory)));
    out
}
