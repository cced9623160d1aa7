//! Every fixture in tests/fixtures (real feeds, manifests and version vectors; see
//! tests/fixtures/SOURCES.md) parsed and matched.

use std::io::Read;

use vuln::{
    Advisory, Package, Severity, debian_findings, findings, parse_debian_tracker, parse_repomd, parse_updateinfo,
};

fn gz(name: &str) -> String {
    let bytes = std::fs::read(format!("{}/tests/fixtures/alas/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    text
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn one(name: &str) -> Vec<Advisory> {
    parse_updateinfo(&gz(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_alas_fixture_parses_with_ids_severities_epochs_and_cves() {
    let a = one("vlu_updateinfo_1_item.xml.gz");
    assert_eq!((a.len(), a[0].id.as_str(), a[0].severity), (1, "ALAS2-2018-939", Severity::Critical));
    assert_eq!(a[0].packages.len(), 13);
    assert_eq!(a[0].cves.len(), 2);
    assert_eq!(a[0].issued, "2018-01-11 21:05");

    let a = one("vlu_updateinfo_2_items.xml.gz");
    assert_eq!(a.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["ALAS2-2018-942", "ALAS2-2018-949"]);
    assert_eq!(a[0].severity, Severity::Important);
    assert_eq!((a[0].packages.len(), a[1].packages.len()), (5, 17));
    assert!(a[0].packages.iter().all(|p| p.evr.starts_with("10:")), "qemu-kvm has epoch 10");
    assert!(a[1].packages.iter().all(|p| p.evr.starts_with("1:")), "openjdk has epoch 1");
    assert_eq!(a[0].cves, ["CVE-2017-5715"]);

    let a = one("vlu_updateinfo_AL2023.xml.gz");
    assert_eq!(
        (a[0].id.as_str(), a[0].severity),
        ("ALAS2023-2023-001", Severity::Important),
        "`Important` is case-insensitive"
    );
    assert_eq!(a[0].packages.len(), 61);

    let a = one("vlu_updateinfo_2_extras_golang1.19.xml.gz");
    assert_eq!(a[0].collection, "amazon-linux-2---golang1.19");
    assert_eq!(a[0].packages.len(), 11);

    let a = one("vdu_updateinfo_1.xml.gz");
    assert_eq!((a[0].id.as_str(), a[0].severity), ("ALAS-2011-1", Severity::Medium));
    assert!(a[0].cves.iter().all(|c| c.starts_with("CVE-")), "the redhat reference is not a CVE: {:?}", a[0].cves);

    let a = one("vdu_updateinfo_2_kernel-5.15.xml.gz");
    assert_eq!(a[0].packages.len(), 31);
    assert!(a[0].packages.iter().any(|p| p.name.starts_with("kernel-livepatch-5.15")));

    let a = one("vdu_updateinfo_2023_kernel-livepatch.xml.gz");
    assert_eq!(a[0].issued, "2023-04-13 17:56:00");
}

#[test]
fn repomd_names_the_updateinfo_and_its_checksum() {
    let r = parse_repomd(&fixture("alas/vlu_repomd_valid.xml")).unwrap().unwrap();
    assert!(r.href.contains("updateinfo"), "{r:?}");
    assert_eq!(r.checksum, "e6f569f8ed2246a6b06c0fef7cfd71560df02781327e31c38396ed358d591d48");
}

#[test]
fn truncated_and_malformed_feeds_are_errors_with_a_position() {
    let full = gz("vlu_updateinfo_2_items.xml.gz");
    let cut = &full[..full.len() / 2];
    let e = parse_updateinfo(cut).unwrap_err();
    assert!(e.line >= 1 && e.message.contains("truncated") || e.message.contains("end"), "{e}");
    let e = parse_updateinfo("<updates><update><id>X</id><pkglist><package name=\"a\" epoch=\"x\" version=\"1\" release=\"1\" arch=\"x86_64\"/></pkglist></update></updates>").unwrap_err();
    assert!(e.message.contains("epoch"), "{e}");
    let e = parse_updateinfo("<updates>\n<update><id>X</id></updat>").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(parse_debian_tracker("{\"a\": [1,", "buster").is_err());
}

#[test]
fn the_debian_tracker_excerpt_yields_fixed_unaffected_and_unfixed_records() {
    let (records, skipped) =
        parse_debian_tracker(&fixture("debian/vunnel_security_tracker_excerpt.json"), "buster").unwrap();
    assert!(!records.is_empty());
    assert!(!skipped.is_empty(), "the deliberately malformed entry is skipped, not fatal");
    let not_affected = records.iter().find(|r| r.cve == "CVE-2007-2383").unwrap();
    assert_eq!(not_affected.fixed_version.as_deref(), Some("0"));
    let fixed = records.iter().find(|r| r.cve == "CVE-2008-7220").unwrap();
    assert_eq!((fixed.fixed_version.as_deref(), fixed.severity), (Some("1.6.0.2-1"), Severity::Important));
    // An image with prototypejs 1.6.0-1 has the 2008 fix missing and is not affected by 2007.
    let installed = vec![Package {
        name: "libjs-prototype".into(),
        version: "1.6.0-1".into(),
        arch: "all".into(),
        source_name: "prototypejs".into(),
        source_version: "1.6.0-1".into(),
    }];
    let f = debian_findings(&records, &installed);
    assert_eq!(f.iter().map(|x| x.advisory.as_str()).collect::<Vec<_>>(), ["CVE-2008-7220"]);
    assert_eq!(f[0].fixed.as_deref(), Some("1.6.0.2-1"));
}

/// The real Amazon Linux 2 container manifest, as the builders record it.
fn al2_manifest() -> Vec<Package> {
    let pkgs: Vec<serde_json::Value> =
        serde_json::from_str(&fixture("manifests/trivy_amazonlinux2_packages.json")).unwrap();
    pkgs.iter()
        .map(|p| {
            let epoch = p["Epoch"].as_u64().unwrap_or(0);
            let evr = vuln::version::Evr::new(
                epoch,
                p["Version"].as_str().unwrap(),
                p["Release"].as_str().unwrap_or_default(),
            );
            let name = p["Name"].as_str().unwrap();
            Package {
                name: name.into(),
                version: evr.to_string(),
                arch: p["Arch"].as_str().unwrap_or("noarch").into(),
                source_name: p["SrcName"].as_str().unwrap_or(name).into(),
                source_version: evr.to_string(),
            }
        })
        .collect()
}

#[test]
fn the_real_al2_manifest_has_no_findings_in_feeds_for_packages_it_lacks() {
    let m = al2_manifest();
    assert_eq!(m.len(), 104);
    let openssl = m.iter().find(|p| p.name == "openssl-libs").unwrap();
    assert_eq!(openssl.version, "1:1.0.2k-16.amzn2.1.1");
    for f in [
        "vlu_updateinfo_1_item.xml.gz",
        "vlu_updateinfo_2_items.xml.gz",
        "vlu_updateinfo_AL2023.xml.gz",
        "vlu_updateinfo_2_extras_golang1.19.xml.gz",
        "vdu_updateinfo_2_kernel-5.15.xml.gz",
    ] {
        assert!(findings(&one(f), &m).is_empty(), "{f}: no package of it is installed in the container image");
    }
}

/// Advisories written for this test (ids say so) against packages the real manifest has.
const TEST_FEED: &str = r#"<?xml version="1.0" ?><updates>
<update type="security"><id>TEST-2019-1</id><title>openssl</title><issued date="2019-07-01 00:00" /><updated date="2019-07-02 00:00" /><severity>critical</severity>
 <references><reference id="CVE-2019-1559" type="cve" /></references>
 <pkglist><collection short="amazon-linux-2"><package arch="x86_64" epoch="1" name="openssl-libs" release="19.amzn2.0.1" version="1.0.2k" />
 <package arch="aarch64" epoch="1" name="openssl-libs" release="19.amzn2.0.1" version="1.0.2k" /></collection></pkglist></update>
<update type="security"><id>TEST-2019-2</id><title>curl, aarch64 only</title><issued date="2019-07-01 00:00" /><severity>important</severity>
 <pkglist><collection short="amazon-linux-2"><package arch="aarch64" name="curl" release="10.amzn2" version="7.61.1" /></collection></pkglist></update>
<update type="security"><id>TEST-2019-3</id><title>bash, older than installed</title><issued date="2019-07-01 00:00" /><severity>important</severity>
 <pkglist><collection short="amazon-linux-2"><package arch="x86_64" name="bash" release="20.amzn2" version="4.2.46" /></collection></pkglist></update>
<update type="security"><id>TEST-2019-4</id><title>kernel 5.15 line</title><issued date="2019-07-01 00:00" /><severity>important</severity>
 <pkglist><collection short="amazon-linux-2---kernel-5.15"><package arch="x86_64" name="kernel" release="20.123.amzn2" version="5.15.43" /></collection></pkglist></update>
<update type="security"><id>TEST-2019-5</id><title>kernel 4.14 line</title><issued date="2019-07-01 00:00" /><severity>medium</severity>
 <pkglist><collection short="amazon-linux-2"><package arch="x86_64" name="kernel" release="147.227.amzn2" version="4.14.252" /></collection></pkglist></update>
<update type="security"><id>TEST-2019-6</id><title>absent</title><issued date="2019-07-01 00:00" /><severity>critical</severity>
 <pkglist><collection short="amazon-linux-2"><package arch="x86_64" name="httpd" release="1.amzn2" version="2.4.39" /></collection></pkglist></update>
</updates>"#;

#[test]
fn matching_the_real_manifest_follows_version_arch_and_line_rules() {
    let mut m = al2_manifest();
    m.push(Package {
        name: "kernel".into(),
        version: "4.14.238-182.422.amzn2".into(),
        arch: "x86_64".into(),
        source_name: "kernel".into(),
        source_version: "4.14.238-182.422.amzn2".into(),
    });
    let feed = parse_updateinfo(TEST_FEED).unwrap();
    let f = findings(&feed, &m);
    let got: Vec<(&str, &str, &str)> =
        f.iter().map(|x| (x.advisory.as_str(), x.package.as_str(), x.fixed.as_deref().unwrap())).collect();
    assert_eq!(
        got,
        [
            ("TEST-2019-1", "openssl-libs.x86_64", "1:1.0.2k-19.amzn2.0.1"),
            ("TEST-2019-5", "kernel.x86_64", "4.14.252-147.227.amzn2"),
        ],
        "critical first; aarch64-only curl, the older bash, the 5.15 kernel line and absent httpd are not findings"
    );
    assert_eq!(f[0].installed, "1:1.0.2k-16.amzn2.1.1");
    assert_eq!(f[0].cves, ["CVE-2019-1559"]);
    assert_eq!(f[0].issued, "2019-07-02 00:00", "the update date counts");
}

#[test]
fn manifests_in_both_command_formats_are_detected() {
    let (kind, rpm) =
        vuln::parse_manifest("openssl-libs\t1\t1.0.2k\t16.amzn2.1.1\tx86_64\nbash\t0\t4.2.46\t30.amzn2\tx86_64\n")
            .unwrap();
    assert_eq!(kind, vuln::ManifestKind::Rpm);
    assert_eq!(rpm[0].version, "1:1.0.2k-16.amzn2.1.1");
    let (kind, deb) = vuln::parse_manifest("bsdutils\t1:2.33.1-0.1\tamd64\tutil-linux\t2.33.1-0.1\n").unwrap();
    assert_eq!(kind, vuln::ManifestKind::Dpkg);
    assert_eq!((deb[0].source_name.as_str(), deb[0].source_version.as_str()), ("util-linux", "2.33.1-0.1"));
    let e = vuln::parse_manifest("bash\t0\t4.2.46\t30.amzn2\tx86_64\nbroken\tx\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn the_alas_rss_dsa_list_and_vuln_list_fixtures_parse() {
    let one = vuln::extra::parse_alas_rss(&fixture("alas/vunnel_al2_alas_rss_1item.xml")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].id.as_str(), one[0].severity), ("ALAS-2018-939", Severity::Critical));
    assert_eq!(one[0].packages, ["kernel"]);
    assert_eq!(one[0].cves, ["CVE-2017-5715", "CVE-2017-5754"]);
    assert_eq!(one[0].published, "Thu, 11 Jan 2018 21:05:00 GMT");
    let many = vuln::extra::parse_alas_rss(&fixture("alas/vunnel_al2_alas_rss_97items.xml")).unwrap();
    assert_eq!(many.len(), 97);
    assert!(many.iter().all(|b| b.id.starts_with("ALAS-") && b.severity != Severity::Unknown), "{many:#?}");

    let dsa = vuln::extra::parse_dsa_list(&fixture("debian/vunnel_DSA_list_excerpt.txt")).unwrap();
    let libpng = dsa.iter().find(|d| d.id == "DSA-140").unwrap();
    assert_eq!(libpng.cves, ["CVE-2002-0660", "CVE-2002-0728"]);
    assert_eq!(libpng.fixes[1], ("woody".into(), "libpng3".into(), "1.2.1-1.1.woody.2".into()));
    let sope = dsa.last().unwrap();
    assert_eq!((sope.id.as_str(), sope.date.as_str()), ("DSA-5970-1", "31 Jul 2025"));
    assert!(vuln::extra::parse_dsa_list("    {CVE-1}\n").unwrap_err().message.contains("before the first DSA"));

    let a = vuln::extra::parse_vuln_list_advisory(&fixture("alas/vlu_ALAS2-2018-942.json")).unwrap();
    let from_xml = &one_of("vlu_updateinfo_2_items.xml.gz")[0];
    assert_eq!(a.id, from_xml.id);
    assert_eq!(a.severity, from_xml.severity);
    assert_eq!(
        a.packages.iter().map(|p| (&p.name, &p.evr)).collect::<Vec<_>>(),
        from_xml.packages.iter().map(|p| (&p.name, &p.evr)).collect::<Vec<_>>(),
        "the JSON and XML shapes of one advisory agree"
    );
}

fn one_of(name: &str) -> Vec<Advisory> {
    one(name)
}

#[test]
fn the_real_debian_buster_manifest_parses_with_sources_and_epochs() {
    let pkgs: Vec<serde_json::Value> =
        serde_json::from_str(&fixture("manifests/trivy_debian_buster_packages.json")).unwrap();
    let version = |epoch: Option<u64>, v: &str, r: Option<&str>| {
        let mut s = epoch.filter(|e| *e > 0).map(|e| format!("{e}:")).unwrap_or_default();
        s.push_str(v);
        if let Some(r) = r.filter(|r| !r.is_empty()) {
            s.push('-');
            s.push_str(r);
        }
        s
    };
    let installed: Vec<Package> = pkgs
        .iter()
        .map(|p| {
            let own = version(p["Epoch"].as_u64(), p["Version"].as_str().unwrap(), p["Release"].as_str());
            let src = version(
                p["SrcEpoch"].as_u64().or(p["Epoch"].as_u64()),
                p["SrcVersion"].as_str().unwrap_or(p["Version"].as_str().unwrap()),
                p["SrcRelease"].as_str().or(p["Release"].as_str()),
            );
            Package {
                name: p["Name"].as_str().unwrap().into(),
                version: own,
                arch: p["Arch"].as_str().unwrap_or("all").into(),
                source_name: p["SrcName"].as_str().or(p["Name"].as_str()).unwrap().into(),
                source_version: src,
            }
        })
        .collect();
    assert_eq!(installed.len(), 91);
    let bsdutils = installed.iter().find(|p| p.name == "bsdutils").unwrap();
    assert_eq!((bsdutils.source_name.as_str(), bsdutils.version.as_str()), ("util-linux", "1:2.33.1-0.1"));
    assert_eq!(vuln::version::dpkg_cmp(&bsdutils.version, "2.34-1"), std::cmp::Ordering::Greater, "the epoch wins");
    let (records, _) = parse_debian_tracker(&fixture("debian/vunnel_security_tracker_excerpt.json"), "buster").unwrap();
    assert!(debian_findings(&records, &installed).is_empty(), "the excerpt names none of this image's sources");
}
