//! Parse a full-size updateinfo (generated: 3,000 advisories × 15 packages, in the shape of
//! the real ALAS entries in tests/fixtures) and match a 1,500-package manifest against it.
//! Prints MB/s parsed and the match time, best of several runs. `scripts/bench-vuln`.

use std::time::{Duration, Instant};

use vuln::{Package, findings, parse_updateinfo};

fn feed(advisories: usize, per: usize) -> String {
    let mut s = String::from("<?xml version=\"1.0\" ?>\n<updates>");
    for a in 0..advisories {
        let severity = ["low", "medium", "important", "critical"][a % 4];
        s.push_str(&format!(
            "<update author=\"linux-security@amazon.com\" from=\"linux-security@amazon.com\" status=\"final\" type=\"security\" version=\"1.4\"><id>ALAS2-2024-{a:04}</id><title>Amazon Linux 2 - ALAS2-2024-{a:04}: {severity} priority package update for pkg{a}</title><issued date=\"2024-02-07 18:49\" /><updated date=\"2024-02-08 21:46\" /><severity>{severity}</severity><description>Package updates are available for Amazon Linux 2 that fix the following vulnerabilities:\nCVE-2024-{a:05}:\n\tA flaw was found in pkg{a}. An attacker could use this flaw to cause a denial of service or possibly execute arbitrary code with the privileges of the user running the affected service.\n</description><references><reference href=\"https://cve.mitre.org/cgi-bin/cvename.cgi?name=CVE-2024-{a:05}\" id=\"CVE-2024-{a:05}\" title=\"\" type=\"cve\" /></references><pkglist><collection short=\"amazon-linux-2\"><name>Amazon Linux 2</name>"
        ));
        for p in 0..per {
            let name = format!("pkg{}-sub{p}", a % 1500);
            let arch = if p % 3 == 0 { "noarch" } else { "x86_64" };
            s.push_str(&format!(
                "<package arch=\"{arch}\" epoch=\"{e}\" name=\"{name}\" release=\"{r}.amzn2.0.{a}\" version=\"1.{p}.{a}\"><filename>Packages/{name}-1.{p}.{a}-{r}.amzn2.0.{a}.{arch}.rpm</filename></package>",
                e = a % 3,
                r = p + 1
            ));
        }
        s.push_str("</collection></pkglist></update>");
    }
    s.push_str("</updates>\n");
    s
}

fn manifest(n: usize) -> Vec<Package> {
    (0..n)
        .map(|i| Package {
            name: format!("pkg{i}-sub{}", i % 15),
            version: format!("1:1.{}.0-1.amzn2", i % 15),
            arch: "x86_64".into(),
            source_name: format!("pkg{i}"),
            source_version: format!("1:1.{}.0-1.amzn2", i % 15),
        })
        .collect()
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        let r = f();
        best = best.min(start.elapsed());
        out = Some(r);
    }
    (best, out.unwrap())
}

fn main() {
    let xml = feed(3000, 15);
    let (parse, advisories) = best(5, || parse_updateinfo(&xml).unwrap());
    assert_eq!(advisories.len(), 3000);
    let installed = manifest(1500);
    let (matching, found) = best(20, || findings(&advisories, &installed));
    let mb = xml.len() as f64 / 1e6;
    println!(
        "parse: {mb:.1} MB, {} advisories × 15 packages in {:.1} ms = {:.0} MB/s; match 1,500 packages: {:.2} ms, {} findings",
        advisories.len(),
        parse.as_secs_f64() * 1e3,
        mb / parse.as_secs_f64(),
        matching.as_secs_f64() * 1e3,
        found.len()
    );
}
