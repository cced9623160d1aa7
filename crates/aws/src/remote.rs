//! What runs on a builder or test instance, as shell scripts for `AWS-RunShellScript`.
//!
//! Components run under **AWSTOE** on the instance, the same executor EC2 Image Builder
//! uses, so a document behaves in the cloud exactly as its format specifies (amictl's own
//! engine is the local equivalent). amictl itself does not run there: Amazon Linux 2 has
//! glibc 2.26, and shipping a binary would need a bucket; awstoe is fetched from AWS's
//! regional bucket once per instance.
//!
//! Documents travel base64-encoded inside the command. Secret parameters never do: they
//! are read on the instance from a SecureString parameter that lives for one build, so
//! Run Command's history (which keeps command text) never holds a secret.

use base64::Engine;
use provider::Package;

/// Where amictl keeps documents, awstoe and logs on an instance.
pub const HOST_DIR: &str = "/var/lib/amictl";

/// Run Command rejects parameters beyond 64 KB (shared by all commands of a call); keep
/// well below so the script around the document fits.
const MAX_DOCUMENT: usize = 40 * 1024;

/// AWS's regional AWSTOE download.
pub fn awstoe_url(region: &str) -> String {
    format!("https://awstoe-{region}.s3.{region}.amazonaws.com/latest/linux/amd64/awstoe")
}

/// One component (or test) document to run on an instance.
#[derive(Debug, Clone)]
pub struct RemoteDocument {
    pub name: String,
    pub yaml: String,
    /// Plain parameters, passed to awstoe as given.
    pub parameters: Vec<(String, String)>,
    /// Secret parameters: (parameter, SecureString name holding its value).
    pub secrets: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScriptError {
    #[error(
        "document `{0}` is {1} bytes; Run Command carries at most {MAX_DOCUMENT} — split it or fetch it with an S3Download step"
    )]
    TooLarge(String, usize),
    #[error(
        "parameter `{1}` of `{0}` contains a comma or newline, which awstoe's --parameters cannot carry; pass it through a file or a secret"
    )]
    BadValue(String, String),
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A script that runs `phases` (e.g. `build,validate`) of one document with awstoe and
/// exits with awstoe's status — 194 included, which Run Command turns into a reboot and a
/// re-run, and awstoe resumes where it stopped.
pub fn run_document(build_id: &str, doc: &RemoteDocument, phases: &str, region: &str) -> Result<String, ScriptError> {
    if doc.yaml.len() > MAX_DOCUMENT {
        return Err(ScriptError::TooLarge(doc.name.clone(), doc.yaml.len()));
    }
    for (k, v) in &doc.parameters {
        if v.contains([',', '\n']) {
            return Err(ScriptError::BadValue(doc.name.clone(), k.clone()));
        }
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&doc.yaml);
    let dir = format!("{HOST_DIR}/{build_id}/{}", doc.name);
    let mut s = String::from("set -eu\numask 077\n");
    s += &format!("d={}\nmkdir -p \"$d/logs\"\n", quote(&dir));
    s += "base64 -d > \"$d/document.yml\" <<'AMICTL_DOCUMENT'\n";
    for chunk in encoded.as_bytes().chunks(76) {
        s += std::str::from_utf8(chunk).unwrap_or_default();
        s.push('\n');
    }
    s += "AMICTL_DOCUMENT\n";
    s += &format!(
        "t={HOST_DIR}/awstoe\nif [ ! -x \"$t\" ]; then\n  curl -fsSL --retry 3 -o \"$t.part\" {}\n  chmod 0755 \"$t.part\" && mv \"$t.part\" \"$t\"\nfi\n",
        quote(&awstoe_url(region))
    );
    s += "p=''\n";
    for (k, v) in &doc.parameters {
        s += &format!("p=\"${{p:+$p,}}\"{}\n", quote(&format!("{k}={v}")));
    }
    for (k, name) in &doc.secrets {
        s += &format!(
            "v=$(aws ssm get-parameter --region {} --with-decryption --name {} --query Parameter.Value --output text)\n",
            quote(region),
            quote(name)
        );
        s += &format!("p=\"${{p:+$p,}}\"{}\"$v\"\nunset v\n", quote(&format!("{k}=")));
    }
    s += &format!(
        "set +e\n\"$t\" run --documents \"$d/document.yml\" --phases {} --log-directory \"$d/logs\" ${{p:+--parameters \"$p\"}}\nrc=$?\nunset p\nexit $rc\n",
        quote(phases)
    );
    Ok(s)
}

/// The installed packages, `rpm -qa` with epochs, gzip+base64 so a full Amazon Linux
/// manifest fits in Run Command's 24,000-character output.
/// Removes what the build put on the builder (documents, awstoe, its logs — which may
/// quote a secret a step printed) before the image is made from it.
pub fn build_files_script() -> String {
    format!("rm -rf {HOST_DIR}\nsync\n")
}

pub fn manifest_script() -> String {
    "set -o pipefail\nrpm -qa --qf '%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n' | sort | gzip -9 | base64 -w0\n".into()
}

/// Decodes [`manifest_script`]'s output. Empty output is an empty manifest.
pub fn parse_manifest(stdout: &str) -> Result<Vec<Package>, String> {
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let gz = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("manifest: {e}"))?;
    // Run Command caps the output at 24,000 characters; deflate's ratio caps what that can
    // unpack to, and this caps it again for a builder that lies.
    const MANIFEST_LIMIT: u64 = 64 << 20;
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(flate2::read::GzDecoder::new(&gz[..]), MANIFEST_LIMIT + 1),
        &mut plain,
    )
    .map_err(|e| format!("manifest: {e}"))?;
    if plain.len() as u64 > MANIFEST_LIMIT {
        return Err(format!("manifest: unpacks to more than {MANIFEST_LIMIT} bytes"));
    }
    Ok(plain
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, version, arch, srpm) = (f.next()?, f.next()?, f.next()?, f.next().unwrap_or(""));
            let (source_name, source_version) = split_srpm(srpm).unwrap_or((name, version));
            Some(Package {
                name: name.into(),
                version: version.into(),
                arch: arch.into(),
                source_name: source_name.into(),
                source_version: source_version.into(),
            })
        })
        .collect())
}

/// `openssl-1.0.2k-24.amzn2.0.7.src.rpm` → (`openssl`, `1.0.2k-24.amzn2.0.7`).
fn split_srpm(srpm: &str) -> Option<(&str, &str)> {
    let base = srpm.strip_suffix(".src.rpm").or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let release = base.rfind('-')?;
    let version = base[..release].rfind('-')?;
    Some((&base[..version], &base[version + 1..]))
}

/// Every service is active, the SSM agent first. Fails naming the inactive ones.
pub fn services_script(services: &[String]) -> String {
    let mut list = vec!["amazon-ssm-agent".to_string()];
    list.extend(services.iter().filter(|s| *s != "amazon-ssm-agent").cloned());
    let names: Vec<String> = list.iter().map(|s| quote(s)).collect();
    format!(
        "bad=''\nfor s in {}; do\n  systemctl is-active --quiet \"$s\" || bad=\"$bad $s($(systemctl is-active \"$s\" 2>/dev/null))\"\ndone\nif [ -n \"$bad\" ]; then echo \"inactive:$bad\" >&2; exit 1; fi\necho \"active: {}\"\n",
        names.join(" "),
        list.join(" ")
    )
}

/// Before a reboot: remember this boot.
pub fn save_boot_id(build_id: &str) -> String {
    format!("mkdir -p {HOST_DIR} && cat /proc/sys/kernel/random/boot_id > {}\n", quote(&boot_file(build_id)))
}

/// The line a [`checks_script`] prints before each check's output: `AMICTL-CHECK <n> <status>`.
pub const CHECK_MARK: &str = "AMICTL-CHECK";

/// Exit status of a [`checks_script`] when a check failed (its markers say which).
pub const CHECKS_FAILED: i32 = 1;

/// The test instance's checks before its reboot, as one command: one delivery, one awstoe
/// fetch and one wait instead of one per check. It records the boot id first (so the
/// reboot check needs no command of its own), then runs each check in its own subshell,
/// its output in a file, and prints per check [`CHECK_MARK`], its index and exit status,
/// and its output's last bytes indented (so no output line reads as a marker; together
/// they stay within Run Command's 24,000 characters). Every check runs even after one
/// fails; the script exits 0 only when all passed, else [`CHECKS_FAILED`] — or 194 as
/// soon as a check asks for a reboot, which Run Command honours by rebooting and running
/// the script again.
pub fn checks_script(build_id: &str, checks: &[String]) -> String {
    let keep = (20_000 / checks.len().max(1)).clamp(200, 4_000);
    let dir = format!("{HOST_DIR}/{build_id}/checks");
    let mut s = String::from("umask 077\n");
    s += &format!(
        "{{ {}; }} || {{ echo 'cannot record the boot id' >&2; exit 2; }}\n",
        save_boot_id(build_id).trim_end()
    );
    s += &format!("o={}\nmkdir -p \"$o\"\nfailed=0\n", quote(&dir));
    for (n, check) in checks.iter().enumerate() {
        s += &format!("(\n{}\n) > \"$o/{n}.out\" 2>&1\nrc=$?\n", check.trim_end());
        s += &format!("echo \"{CHECK_MARK} {n} $rc\"\ntail -c {keep} \"$o/{n}.out\" | sed 's/^/  /'\necho\n");
        s += "if [ \"$rc\" -eq 194 ]; then exit 194; fi\nif [ \"$rc\" -ne 0 ]; then failed=1; fi\n";
    }
    s += &format!("if [ \"$failed\" -ne 0 ]; then exit {CHECKS_FAILED}; fi\n");
    s
}

/// How many of `checks`, in order, go in each [`checks_script`]: as many as keep a script
/// under Run Command's 64 KB parameter limit (a check alone always fits: each document is
/// at most [`MAX_DOCUMENT`] before encoding).
pub fn batches(checks: &[String]) -> Vec<usize> {
    const LIMIT: usize = 60 * 1024;
    let mut out = Vec::new();
    let (mut count, mut size) = (0, 0);
    for c in checks {
        let cost = c.len() + 256;
        if count > 0 && size + cost > LIMIT {
            out.push(count);
            (count, size) = (0, 0);
        }
        count += 1;
        size += cost;
    }
    if count > 0 {
        out.push(count);
    }
    out
}

/// Each check's exit status and output tail from a [`checks_script`]'s output, by index;
/// `None` for a check with no marker (the output was lost or the script stopped before it).
pub fn check_verdicts(stdout: &str, checks: usize) -> Vec<Option<(i32, String)>> {
    let mut out: Vec<Option<(i32, String)>> = vec![None; checks];
    let mut current = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix(CHECK_MARK).and_then(|r| r.strip_prefix(' ')) {
            let mut f = rest.split(' ');
            let n = f.next().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n < checks);
            let rc = f.next().and_then(|r| r.trim().parse::<i32>().ok());
            current = n.zip(rc).map(|(n, rc)| {
                out[n] = Some((rc, String::new()));
                n
            });
        } else if let (Some(n), Some(text)) = (current, line.strip_prefix("  "))
            && let Some((_, tail)) = &mut out[n]
        {
            tail.push_str(text);
            tail.push('\n');
        }
    }
    out
}

/// Exit status of [`rebooted_script`] while the instance has not rebooted yet.
pub const NOT_YET_REBOOTED: i32 = 3;

/// After a reboot: this is a new boot (else exit [`NOT_YET_REBOOTED`]) and the services
/// came back.
pub fn rebooted_script(build_id: &str, services: &[String]) -> String {
    format!(
        "if [ \"$(cat /proc/sys/kernel/random/boot_id)\" = \"$(cat {})\" ]; then echo 'not rebooted yet' >&2; exit {NOT_YET_REBOOTED}; fi\n{}",
        quote(&boot_file(build_id)),
        services_script(services)
    )
}

fn boot_file(build_id: &str) -> String {
    format!("{HOST_DIR}/{build_id}.boot-id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> RemoteDocument {
        RemoteDocument {
            name: "scan-agent".into(),
            yaml: "name: scan\nschemaVersion: 1.0\nphases: []\n".into(),
            parameters: vec![("ArtifactUrl".into(), "https://example.invalid/a b's".into())],
            secrets: vec![("ActivationKey".into(), "/amictl/build/b1/scan-agent/ActivationKey".into())],
        }
    }

    #[test]
    fn a_document_script_carries_the_document_and_parameters_but_no_secret_value() {
        let s = run_document("b1", &doc(), "build,validate", "eu-west-1").unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(doc().yaml);
        assert!(s.contains(&encoded), "{s}");
        assert!(s.contains(r"'ArtifactUrl=https://example.invalid/a b'\''s'"), "{s}");
        assert!(s.contains("--with-decryption --name '/amictl/build/b1/scan-agent/ActivationKey'"), "{s}");
        assert!(s.contains("--phases 'build,validate'"));
        assert!(s.contains("awstoe-eu-west-1.s3.eu-west-1.amazonaws.com"));
        assert!(s.ends_with("exit $rc\n"));
    }

    #[test]
    fn the_script_is_valid_shell_and_decodes_the_document() {
        let s = run_document("b1", &doc(), "build", "eu-west-1").unwrap();
        let out = std::process::Command::new("bash").args(["-n", "-c", &s]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn oversized_documents_and_unpassable_values_are_refused() {
        let mut big = doc();
        big.yaml = "x".repeat(MAX_DOCUMENT + 1);
        assert!(matches!(run_document("b", &big, "build", "r"), Err(ScriptError::TooLarge(..))));
        let mut comma = doc();
        comma.parameters = vec![("A".into(), "x,y".into())];
        assert_eq!(
            run_document("b", &comma, "build", "r").unwrap_err(),
            ScriptError::BadValue("scan-agent".into(), "A".into())
        );
    }

    #[test]
    fn a_manifest_round_trips_through_gzip_and_base64() {
        use std::io::Write;
        let text = "bash\t4.2.46-34.amzn2\tx86_64\tbash-4.2.46-34.amzn2.src.rpm\nopenssl-libs\t1:1.0.2k-24.amzn2.0.7\tx86_64\topenssl-1.0.2k-24.amzn2.0.7.src.rpm\ngpg-pubkey\t6d3a7a0b-5b7df1d4\t(none)\t(none)\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let pkgs = parse_manifest(&encoded).unwrap();
        assert_eq!(pkgs.len(), 3);
        assert_eq!(pkgs[1].name, "openssl-libs");
        assert_eq!(pkgs[1].version, "1:1.0.2k-24.amzn2.0.7");
        assert_eq!((pkgs[1].source_name.as_str(), pkgs[1].source_version.as_str()), ("openssl", "1.0.2k-24.amzn2.0.7"));
        assert_eq!(pkgs[2].source_name, "gpg-pubkey");
        assert!(parse_manifest("").unwrap().is_empty());
        assert!(parse_manifest("not base64!").is_err());
    }

    #[test]
    fn service_and_reboot_checks_run_in_a_shell() {
        let s = rebooted_script("b1", &["auditd".into()]);
        assert!(s.contains("'amazon-ssm-agent' 'auditd'"));
        assert!(s.contains(&format!("exit {NOT_YET_REBOOTED}")));
        let out = std::process::Command::new("bash").args(["-n", "-c", &s]).output().unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn a_checks_script_runs_every_check_and_reports_each() {
        let checks = vec!["echo active: all".to_string(), "echo broken >&2; exit 5".to_string(), "true".to_string()];
        let s = checks_script("b1", &checks);
        let out = std::process::Command::new("bash").args(["-n", "-c", &s]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Run it for real, in a scratch directory instead of the instance's.
        let dir = tempfile::tempdir().unwrap();
        let here = s.replace(HOST_DIR, &dir.path().display().to_string());
        let ran = std::process::Command::new("bash").args(["-c", &here]).output().unwrap();
        assert_eq!(ran.status.code(), Some(CHECKS_FAILED));
        let stdout = String::from_utf8_lossy(&ran.stdout);
        let v = check_verdicts(&stdout, 3);
        assert_eq!(v[0], Some((0, "active: all\n".into())), "{stdout}");
        assert_eq!(v[1], Some((5, "broken\n".into())));
        assert_eq!(v[2].as_ref().map(|v| v.0), Some(0), "a failure does not stop the checks after it");
        assert!(dir.path().join("b1.boot-id").exists(), "the boot id is recorded");
        // A check that prints a marker-like line cannot forge a verdict.
        let forged = check_verdicts("AMICTL-CHECK 0 1\n  AMICTL-CHECK 0 0\n", 1);
        assert_eq!(forged[0], Some((1, "AMICTL-CHECK 0 0\n".into())));
        assert_eq!(check_verdicts("", 2), vec![None, None]);
        assert_eq!(check_verdicts("AMICTL-CHECK 7 0\n", 1), vec![None], "an index out of range is ignored");
        // Large documents are split over several commands, in order, none over the limit.
        let big: Vec<String> = (0..4).map(|_| "x".repeat(25 * 1024)).collect();
        assert_eq!(batches(&big), vec![2, 2]);
        assert_eq!(batches(&checks), vec![3]);
        assert!(batches(&[]).is_empty());
    }
}
