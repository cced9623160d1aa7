//! The Linux action modules. Each takes its resolved inputs (a list of objects, one per
//! operation) and returns its outputs in awstoe's shape: a list of objects.
//!
//! Paths are used as the process sees them: inside a `--root` sandbox the process is
//! chrooted, so every file module acts inside the image and nothing can reach the host.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::digest::{Algorithm, Hasher};
use crate::document::parse_mode;
use crate::engine::Observer;
use crate::objstore::{ObjectStore, parse_uri};
use crate::process::{self, Exit, Stream};
use crate::report::LogFolder;

/// Everything a module may touch while it runs.
pub struct ActionCtx<'a> {
    pub deadline: Option<Instant>,
    /// The step's `timeoutSeconds`, for messages.
    pub timeout_seconds: i64,
    pub log: &'a mut LogFolder,
    pub observer: &'a mut dyn Observer,
    /// Folder for this step's script and output log.
    pub step_dir: PathBuf,
    pub step_stem: String,
    /// `disableLogging`: nothing of the step's inputs or output reaches any log.
    pub secret: bool,
    /// Private folder for files that must not land in the log folder.
    pub scratch: PathBuf,
    pub object_store: Option<&'a dyn ObjectStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("reboot requested")]
    Reboot { rerun: bool },
}

type Outputs = Result<Vec<Map<String, Value>>, ActionError>;

fn fail<T>(m: impl Into<String>) -> Result<T, ActionError> {
    Err(ActionError::Failed(m.into()))
}

fn io_fail(what: &str, path: &Path, e: io::Error) -> ActionError {
    ActionError::Failed(format!("{what} {}: {e}", path.display()))
}

/// Runs one module. `inputs` are resolved: no `{{ }}` left.
pub fn execute(module: &str, inputs: &[Value], ctx: &mut ActionCtx<'_>) -> Outputs {
    let first = || inputs.first().cloned().unwrap_or(Value::Object(Map::new()));
    match module {
        "ExecuteBash" => execute_bash(&first(), ctx),
        "ExecuteBinary" => execute_binary(&first(), ctx),
        "UpdateOS" => update_os(&first(), ctx),
        "Reboot" => {
            let delay = int(&first(), "delaySeconds")?.unwrap_or(0);
            ctx.log.app(&format!("Reboot requested (delaySeconds {delay})"));
            std::thread::sleep(Duration::from_secs(delay));
            Ok(Vec::new())
        }
        "WebDownload" => web_download(inputs, ctx),
        "S3Download" => s3_download(inputs, ctx),
        "S3Upload" => s3_upload(inputs, ctx),
        _ => {
            let mut outputs = Vec::new();
            for item in inputs {
                if let Some(out) = file_operation(module, item, ctx)? {
                    outputs.push(out);
                }
            }
            Ok(outputs)
        }
    }
}

fn string(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn required(v: &Value, key: &str) -> Result<String, ActionError> {
    string(v, key).ok_or_else(|| ActionError::Failed(format!("input `{key}` is missing")))
}

fn boolean(v: &Value, key: &str, default: bool) -> Result<bool, ActionError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => fail(format!("input `{key}` must be true or false, got {other}")),
    }
}

fn int(v: &Value, key: &str) -> Result<Option<u64>, ActionError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_u64().map(Some).ok_or_else(|| ActionError::Failed(format!("input `{key}` must be ≥ 0")))
        }
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ActionError::Failed(format!("input `{key}` must be a whole number, got `{s}`"))),
        Some(other) => fail(format!("input `{key}` must be a whole number, got {other}")),
    }
}

fn string_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn output(key: &str, value: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.to_string(), Value::String(value));
    m
}

/// Trims one trailing newline, as awstoe does for `stdout`.
fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

// ---------------------------------------------------------------- processes

/// What one step may print to `console.log`; the rest is in its step log only (the console
/// says where), so a step printing gigabytes is written once.
const CONSOLE_PER_STEP: u64 = 1 << 20;

fn run_logged(cmd: &mut Command, ctx: &mut ActionCtx<'_>) -> Result<(Exit, String, String), ActionError> {
    let log_path = ctx.step_dir.join(format!("{}.log", ctx.step_stem));
    let mut step_log = if ctx.secret {
        None
    } else {
        fs::create_dir_all(&ctx.step_dir).ok();
        // Appended: a loop's iterations and a step's retries all land in its one log.
        fs::OpenOptions::new().create(true).append(true).open(&log_path).ok()
    };
    let mut stderr_tail: Vec<u8> = Vec::new();
    let secret = ctx.secret;
    let log = &mut *ctx.log;
    let observer = &mut *ctx.observer;
    let mut redact = log.redactor();
    let mut dropped = 0u64;
    let mut stderr_cut = false;
    let mut write = |log: &mut crate::report::LogFolder, bytes: &[u8]| {
        if bytes.is_empty() {
            return;
        }
        // The budget is the step's, across a loop's iterations and retries.
        let room = log.console_room(&log_path, bytes.len() as u64, CONSOLE_PER_STEP) as usize;
        if room > 0 {
            log.console(&bytes[..room]);
        }
        dropped += (bytes.len() - room) as u64;
        if let Some(f) = step_log.as_mut() {
            let _ = f.write_all(bytes);
        }
        observer.output(bytes);
    };
    let finished = process::run(cmd, ctx.deadline, &mut |stream, bytes| {
        if stream == Stream::Stderr {
            stderr_tail.extend_from_slice(bytes);
            if stderr_tail.len() > 4096 {
                stderr_tail.drain(..stderr_tail.len() - 4096);
                stderr_cut = true;
            }
        }
        if !secret {
            let safe = redact.feed(bytes);
            write(log, &safe);
        }
    })
    .map_err(|e| ActionError::Failed(format!("cannot start {:?}: {e}", cmd.get_program())))?;
    if !secret {
        let rest = redact.finish();
        write(log, &rest);
    }
    if dropped > 0 {
        log.console(
            format!("\n[amictl: {dropped} more bytes of this step's output are only in {}]\n", log_path.display())
                .as_bytes(),
        );
    }
    if finished.stdout_total > finished.stdout.len() as u64 {
        log.app(&format!(
            "step output: {} bytes of stdout; its `stdout` output keeps the last {} (all of it is in {})",
            finished.stdout_total,
            finished.stdout.len(),
            log_path.display()
        ));
    }
    if finished.leftovers > 0 {
        log.app(&format!("ended {} process(es) the step left running", finished.leftovers));
    }
    let mut stdout = String::from_utf8_lossy(&finished.stdout).into_owned();
    // A tail cut mid-line may begin with a fragment of a secret: it starts at a line.
    if finished.stdout_total > finished.stdout.len() as u64 {
        crate::engine::keep_tail(&mut stdout, finished.stdout.len().saturating_sub(1));
    }
    let mut tail = String::from_utf8_lossy(&stderr_tail).into_owned();
    if stderr_cut {
        let n = tail.len().saturating_sub(1);
        crate::engine::keep_tail(&mut tail, n);
    }
    let tail = log.mask(&tail);
    let tail: Vec<&str> = tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
    Ok((finished.exit, stdout, if secret { String::new() } else { tail.join("\n") }))
}

fn exit_outcome(exit: Exit, stdout: String, stderr_tail: String, ctx: &ActionCtx<'_>) -> Outputs {
    let with_tail = |m: String| {
        if stderr_tail.is_empty() { m } else { format!("{m}; stderr: {stderr_tail}") }
    };
    match exit {
        Exit::Code(0) => Ok(vec![output("stdout", trim_newline(stdout))]),
        Exit::Code(194) => Err(ActionError::Reboot { rerun: true }),
        Exit::Code(c) => Err(ActionError::Failed(with_tail(format!("exit status {c}")))),
        Exit::Signal(s) => Err(ActionError::Failed(with_tail(format!("killed by signal {s}")))),
        Exit::TimedOut => Err(ActionError::TimedOut(format!(
            "timed out after {}s (timeoutSeconds); the step's processes were killed",
            ctx.timeout_seconds
        ))),
    }
}

/// Scripts above this size go through a file: one argv string may hold at most 128 KiB.
const MAX_INLINE_SCRIPT: usize = 100 * 1024;

/// Runs the commands as one bash script. Ordinary scripts are passed inline (`bash -c`):
/// the script is already in `detailedoutput.json`, and skipping a file create per step is
/// most of the engine's per-step overhead. Secret scripts go through a private file that
/// is deleted afterwards, so they never show in `ps`.
fn execute_bash(input: &Value, ctx: &mut ActionCtx<'_>) -> Outputs {
    let script = string_list(input, "commands").join("\n");
    if !ctx.secret && script.len() <= MAX_INLINE_SCRIPT {
        let (exit, stdout, tail) = run_logged(Command::new("bash").arg("-c").arg(&script), ctx)?;
        return exit_outcome(exit, stdout, tail, ctx);
    }
    let dir = if ctx.secret { ctx.scratch.clone() } else { ctx.step_dir.clone() };
    fs::create_dir_all(&dir).map_err(|e| io_fail("cannot create", &dir, e))?;
    let path = dir.join(format!("{}-{}.sh", ctx.step_stem, uuid::Uuid::new_v4()));
    write_private(&path, script.as_bytes())?;
    let result = run_logged(Command::new("bash").arg(&path), ctx);
    let _ = fs::remove_file(&path);
    let (exit, stdout, tail) = result?;
    exit_outcome(exit, stdout, tail, ctx)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ActionError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)
        .map_err(|e| io_fail("cannot write", path, e))?;
    f.write_all(bytes).map_err(|e| io_fail("cannot write", path, e))
}

fn execute_binary(input: &Value, ctx: &mut ActionCtx<'_>) -> Outputs {
    let path = required(input, "path")?;
    let args = string_list(input, "arguments");
    let (exit, stdout, tail) = run_logged(Command::new(&path).args(&args), ctx)?;
    exit_outcome(exit, stdout, tail, ctx)
}

/// Finds an executable on `PATH` (or at `name` when it contains a `/`).
pub fn which(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| p.is_file() && fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path =
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).find(|p| executable(p))
}

fn update_os(input: &Value, ctx: &mut ActionCtx<'_>) -> Outputs {
    let include = string_list(input, "include");
    let exclude = string_list(input, "exclude");
    let quote = |items: &[String]| items.iter().map(|s| shell_quote(s)).collect::<Vec<_>>().join(" ");
    let wanted: Vec<String> = include.iter().filter(|p| !exclude.contains(p)).cloned().collect();
    let script = if let Some(pm) = ["dnf", "yum"].into_iter().find(|pm| which(pm).is_some()) {
        let excludes: String = exclude.iter().map(|e| format!(" --exclude={}", shell_quote(e))).collect();
        format!("{pm} -y update{excludes} {}", quote(&wanted))
    } else if which("apt-get").is_some() {
        let mut s =
            String::from("export DEBIAN_FRONTEND=noninteractive\nset -o pipefail\napt-get -q update || exit $?\n");
        if !exclude.is_empty() {
            s.push_str(&format!(
                "held=$(apt-mark showhold)\napt-mark hold {} >/dev/null || exit $?\n",
                quote(&exclude)
            ));
        }
        let opts = "-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
        if include.is_empty() {
            s.push_str(&format!("apt-get {opts} upgrade\n"));
        } else {
            s.push_str(&format!("apt-get {opts} install --only-upgrade {}\n", quote(&wanted)));
        }
        s.push_str("rc=$?\n");
        if !exclude.is_empty() {
            s.push_str(&format!(
                "for p in {}; do echo \"$held\" | grep -qx \"$p\" || apt-mark unhold \"$p\" >/dev/null; done\n",
                quote(&exclude)
            ));
        }
        s.push_str("exit $rc\n");
        s
    } else {
        return fail("UpdateOS found no package manager (dnf, yum or apt-get) on PATH");
    };
    ctx.log.app(&format!(
        "UpdateOS: {}",
        script.lines().find(|l| l.contains("update") || l.contains("upgrade")).unwrap_or("")
    ));
    let input = serde_json::json!({ "commands": [script] });
    execute_bash(&input, ctx).map(|_| Vec::new())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

// ---------------------------------------------------------------- downloads

fn web_download(items: &[Value], ctx: &mut ActionCtx<'_>) -> Outputs {
    let mut destinations = Vec::new();
    for item in items {
        let source = required(item, "source")?;
        let destination = required(item, "destination")?;
        let overwrite = boolean(item, "overwrite", true)?;
        let insecure = boolean(item, "ignoreCertificateErrors", false)?;
        let expected = match (string(item, "checksum"), string(item, "algorithm")) {
            (Some(c), Some(a)) => Some((
                c.trim().to_ascii_lowercase(),
                Algorithm::from_name(&a).ok_or_else(|| ActionError::Failed(format!("unknown algorithm {a}")))?,
            )),
            _ => None,
        };
        let target = if destination.ends_with('/') {
            let name = source
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("download");
            PathBuf::from(&destination).join(name)
        } else {
            PathBuf::from(&destination)
        };
        if target.exists() {
            if !overwrite {
                return fail(format!(
                    "File already exists and \"overwrite\" property for \"destination\" file is set to false: {}",
                    target.display()
                ));
            }
            if let Some((sum, alg)) = &expected
                && crate::digest::file_hex(*alg, &target).is_ok_and(|h| &h == sum)
            {
                ctx.log.app(&format!("WebDownload: {} already has the expected checksum; skipped", target.display()));
                destinations.push(target.display().to_string());
                continue;
            }
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_fail("cannot create", parent, e))?;
        }
        download_with_retries(&source, &target, expected.as_ref(), insecure, ctx)?;
        destinations.push(target.display().to_string());
    }
    Ok(vec![output("destination", destinations.join("\n"))])
}

fn download_with_retries(
    url: &str,
    target: &Path,
    expected: Option<&(String, Algorithm)>,
    insecure: bool,
    ctx: &mut ActionCtx<'_>,
) -> Result<(), ActionError> {
    const TRIES: u32 = 5;
    let mut last = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            let backoff = Duration::from_millis(250 << attempt);
            if ctx.deadline.is_some_and(|d| Instant::now() + backoff >= d) {
                break;
            }
            std::thread::sleep(backoff);
        }
        match download_once(url, target, expected, insecure, ctx.deadline) {
            Ok(()) => {
                ctx.log.app(&format!("WebDownload: {url} -> {}", target.display()));
                return Ok(());
            }
            Err((message, retry)) => {
                ctx.log.app(&format!("WebDownload: try {} of {TRIES} for {url} failed: {message}", attempt + 1));
                last = message;
                if !retry {
                    break;
                }
            }
        }
    }
    fail(format!("WebDownload {url}: {last}"))
}

/// One GET. `Err((message, worth_retrying))`.
fn download_once(
    url: &str,
    target: &Path,
    expected: Option<&(String, Algorithm)>,
    insecure: bool,
    deadline: Option<Instant>,
) -> Result<(), (String, bool)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err((format!("`{url}` is not an http(s) URL"), false));
    }
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(3600));
    let tls = ureq::tls::TlsConfig::builder().disable_verification(insecure).build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| (e.to_string(), true))?;
    let status = response.status().as_u16();
    if status != 200 {
        let retry = status >= 500 || status == 429 || status == 408;
        return Err((format!("HTTP status {status}"), retry));
    }
    let tmp =
        target.with_file_name(format!(".{}.part", target.file_name().and_then(|n| n.to_str()).unwrap_or("download")));
    let result = (|| -> Result<(), (String, bool)> {
        let mut file = File::create(&tmp).map_err(|e| (format!("cannot write {}: {e}", tmp.display()), false))?;
        let mut hasher = expected.map(|(_, a)| Hasher::new(*a));
        let mut reader = response.body_mut().as_reader();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|e| (format!("download interrupted: {e}"), true))?;
            if n == 0 {
                break;
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
            file.write_all(&buf[..n]).map_err(|e| (format!("cannot write {}: {e}", tmp.display()), false))?;
        }
        file.sync_all().map_err(|e| (e.to_string(), false))?;
        if let (Some(h), Some((sum, alg))) = (hasher, expected) {
            let got = h.hex();
            if &got != sum {
                return Err((format!("{alg:?} checksum mismatch: expected {sum}, got {got}"), false));
            }
        }
        fs::rename(&tmp, target).map_err(|e| (format!("cannot move into {}: {e}", target.display()), false))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn store<'a>(ctx: &ActionCtx<'a>, module: &str) -> Result<&'a dyn ObjectStore, ActionError> {
    ctx.object_store.ok_or_else(|| {
        ActionError::Failed(format!("{module} needs an object store: pass --object-store DIR to serve s3:// from a folder, or run on the AWS provider"))
    })
}

fn s3_download(items: &[Value], ctx: &mut ActionCtx<'_>) -> Outputs {
    let store = store(ctx, "S3Download")?;
    for item in items {
        let source = required(item, "source")?;
        let destination = PathBuf::from(required(item, "destination")?);
        let overwrite = boolean(item, "overwrite", true)?;
        let owner = string(item, "expectedBucketOwner");
        let Some((bucket, key)) = parse_uri(&source) else {
            return fail(format!("`{source}` is not an s3://bucket/key URI"));
        };
        let check = |dest: &Path| -> Result<(), ActionError> {
            match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => {
                    fail(format!("destination folder {} does not exist", p.display()))
                }
                _ if dest.exists() && !overwrite => fail(format!(
                    "File already exists and \"overwrite\" property for \"destination\" file is set to false: {}",
                    dest.display()
                )),
                _ => Ok(()),
            }
        };
        if let Some(prefix) = key.strip_suffix('*') {
            if !destination.is_dir() {
                return fail(format!("destination folder {} does not exist", destination.display()));
            }
            let keys =
                store.list(bucket, prefix, owner.as_deref(), 1000).map_err(|e| ActionError::Failed(e.to_string()))?;
            for k in keys {
                let dest = destination.join(k.strip_prefix(prefix).unwrap_or(&k));
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).map_err(|e| io_fail("cannot create", p, e))?;
                }
                check(&dest)?;
                store.get(bucket, &k, owner.as_deref(), &dest).map_err(|e| ActionError::Failed(e.to_string()))?;
            }
        } else {
            check(&destination)?;
            store.get(bucket, key, owner.as_deref(), &destination).map_err(|e| ActionError::Failed(e.to_string()))?;
        }
        ctx.log.app(&format!("S3Download: {source} -> {}", destination.display()));
    }
    Ok(Vec::new())
}

fn s3_upload(items: &[Value], ctx: &mut ActionCtx<'_>) -> Outputs {
    let store = store(ctx, "S3Upload")?;
    for item in items {
        let source = required(item, "source")?;
        let destination = required(item, "destination")?;
        let recurse = boolean(item, "recurse", false)?;
        let owner = string(item, "expectedBucketOwner");
        let Some((bucket, prefix)) = parse_uri(&destination) else {
            return fail(format!("`{destination}` is not an s3://bucket/prefix URI"));
        };
        let src = PathBuf::from(&source);
        let files: Vec<(PathBuf, String)> = if source.ends_with('*') || src.is_dir() {
            let dir = if source.ends_with('*') {
                src.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                src.clone()
            };
            if src.is_dir() && !recurse {
                return fail(format!("{source} is a folder; set `recurse: true` to upload it"));
            }
            walk_files(&dir, recurse)
                .map_err(|e| io_fail("cannot list", &dir, e))?
                .into_iter()
                .map(|f| {
                    let rel = f.strip_prefix(&dir).unwrap_or(&f).to_string_lossy().into_owned();
                    (f, join_key(prefix, &rel))
                })
                .collect()
        } else {
            let name = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let key =
                if prefix.is_empty() || prefix.ends_with('/') { format!("{prefix}{name}") } else { prefix.to_string() };
            vec![(src.clone(), key)]
        };
        for (file, key) in files {
            store
                .put(bucket, &key, owner.as_deref(), &file)
                .map_err(|e| ActionError::Failed(format!("{}: {e}", file.display())))?;
        }
        ctx.log.app(&format!("S3Upload: {source} -> {destination}"));
    }
    Ok(Vec::new())
}

fn join_key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() { rel.to_string() } else { format!("{}/{rel}", prefix.trim_end_matches('/')) }
}

fn walk_files(dir: &Path, recurse: bool) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if recurse {
                out.extend(walk_files(&path, true)?);
            }
        } else {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------- IMDS

/// Reads an instance-metadata path with IMDSv2. The endpoint honours the SDK's
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
pub fn imds_get(path: &str) -> Result<String, String> {
    let base = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|_| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let path = if path.starts_with("/latest/") {
        path.to_string()
    } else {
        format!("/latest/meta-data/{}", path.trim_start_matches('/'))
    };
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
    let token = agent
        .put(&format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "300")
        .send_empty()
        .map_err(|e| format!("instance metadata is unreachable ({e}); aws:imds references work only on EC2"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    agent
        .get(&format!("{base}{path}"))
        .header("X-aws-ec2-metadata-token", &token)
        .call()
        .map_err(|e| format!("instance metadata {path}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- files

/// The most ReadFile and SetFileEncoding read: their content becomes a step output that is
/// kept in memory and chained.
const READ_FILE_LIMIT: u64 = 64 << 20;

fn file_operation(
    module: &str,
    item: &Value,
    ctx: &mut ActionCtx<'_>,
) -> Result<Option<Map<String, Value>>, ActionError> {
    match module {
        "CreateFile" => create_file(item).map(|_| None),
        "AppendFile" => {
            let path = PathBuf::from(required(item, "path")?);
            if !path.is_file() {
                return fail(format!("{} does not exist", path.display()));
            }
            let bytes =
                encode(&string(item, "content").unwrap_or_default(), &string(item, "encoding").unwrap_or_default())?;
            OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(&bytes))
                .map_err(|e| io_fail("cannot append to", &path, e))?;
            Ok(None)
        }
        "CreateFolder" => {
            let path = PathBuf::from(required(item, "path")?);
            if path.exists() && !boolean(item, "overwrite", true)? {
                return fail(format!("{} already exists and overwrite is false", path.display()));
            }
            fs::create_dir_all(&path).map_err(|e| io_fail("cannot create", &path, e))?;
            if let Some(mode) = string(item, "permissions") {
                set_mode(&path, &mode)?;
            }
            set_owner(&path, string(item, "owner").as_deref(), string(item, "group").as_deref())?;
            Ok(None)
        }
        "CreateSymlink" => {
            let path = absolute(&required(item, "path")?);
            let target = required(item, "target")?;
            let target_path = if Path::new(&target).is_absolute() {
                PathBuf::from(&target)
            } else {
                path.parent().unwrap_or(Path::new("/")).join(&target)
            };
            if !target_path.exists() {
                return fail(format!("symlink target {target} does not exist"));
            }
            if let Ok(meta) = fs::symlink_metadata(&path) {
                if !meta.file_type().is_symlink() {
                    return fail(format!("{} exists and is not a symlink", path.display()));
                }
                if !boolean(item, "force", false)? {
                    return fail(format!("symlink {} exists and force is false", path.display()));
                }
                fs::remove_file(&path).map_err(|e| io_fail("cannot replace", &path, e))?;
            }
            if let Some(p) = path.parent() {
                fs::create_dir_all(p).map_err(|e| io_fail("cannot create", p, e))?;
            }
            symlink(&target, &path).map_err(|e| io_fail("cannot create symlink", &path, e))?;
            Ok(None)
        }
        "DeleteFile" => {
            let pattern = required(item, "path")?;
            let matches = expand(&pattern)?;
            if matches.is_empty() && !pattern.contains('*') {
                return fail(format!("{pattern} does not exist"));
            }
            for m in matches {
                if m.is_dir() {
                    return fail(format!("{} is a folder; use DeleteFolder", m.display()));
                }
                fs::remove_file(&m).map_err(|e| io_fail("cannot delete", &m, e))?;
            }
            Ok(None)
        }
        "DeleteFolder" => {
            let path = PathBuf::from(required(item, "path")?);
            if !path.is_dir() {
                return fail(format!("folder {} does not exist", path.display()));
            }
            let result = if boolean(item, "force", false)? { fs::remove_dir_all(&path) } else { fs::remove_dir(&path) };
            result.map_err(|e| {
                if e.kind() == io::ErrorKind::DirectoryNotEmpty {
                    ActionError::Failed(format!(
                        "folder {} is not empty; set `force: true` to delete its contents",
                        path.display()
                    ))
                } else {
                    io_fail("cannot delete", &path, e)
                }
            })?;
            Ok(None)
        }
        "CopyFile" | "MoveFile" | "CopyFolder" | "MoveFolder" => transfer(module, item).map(|_| None),
        "ListFiles" => {
            let dir = PathBuf::from(required(item, "path")?);
            if !dir.is_dir() {
                return fail(format!("folder {} does not exist", dir.display()));
            }
            let pattern = string(item, "fileNamePattern");
            let files =
                walk_files(&dir, boolean(item, "recursive", false)?).map_err(|e| io_fail("cannot list", &dir, e))?;
            let files: Vec<String> = files
                .into_iter()
                .filter(|f| {
                    pattern
                        .as_deref()
                        .is_none_or(|p| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| wildcard(p, n)))
                })
                .map(|f| f.display().to_string())
                .collect();
            Ok(Some(output("files", files.join(","))))
        }
        "ReadFile" => {
            let path = PathBuf::from(required(item, "path")?);
            let bytes = crate::input::read(&path, READ_FILE_LIMIT).map_err(|e| ActionError::Failed(e.to_string()))?;
            let content = decode(&bytes, &string(item, "encoding").unwrap_or_default())?;
            if boolean(item, "printFileContent", false)? && !ctx.secret {
                ctx.log.console(content.as_bytes());
                ctx.log.console(b"\n");
            }
            Ok(Some(output("content", content)))
        }
        "SetFileEncoding" => {
            let path = PathBuf::from(required(item, "path")?);
            let bytes = crate::input::read(&path, READ_FILE_LIMIT).map_err(|e| ActionError::Failed(e.to_string()))?;
            let text = decode_any(&bytes);
            let out = encode(&text, &string(item, "encoding").unwrap_or_default())?;
            fs::write(&path, out).map_err(|e| io_fail("cannot write", &path, e))?;
            Ok(None)
        }
        "SetFileOwner" | "SetFolderOwner" => {
            let path = PathBuf::from(required(item, "path")?);
            if !path.exists() {
                return fail(format!("{} does not exist", path.display()));
            }
            let owner = required(item, "owner")?;
            let group = string(item, "group");
            let targets = if module == "SetFolderOwner" && boolean(item, "recursive", true)? {
                walk_all(&path)?
            } else {
                vec![path]
            };
            for t in targets {
                set_owner(&t, Some(&owner), group.as_deref())?;
            }
            Ok(None)
        }
        "SetFilePermissions" | "SetFolderPermissions" => {
            let path = PathBuf::from(required(item, "path")?);
            if !path.exists() {
                return fail(format!("{} does not exist", path.display()));
            }
            let mode = required(item, "permissions")?;
            let targets = if module == "SetFolderPermissions" && boolean(item, "recursive", true)? {
                walk_all(&path)?
            } else {
                vec![path]
            };
            for t in targets {
                set_mode(&t, &mode)?;
            }
            Ok(None)
        }
        other => fail(format!("module {other} is not supported on Linux")),
    }
}

fn absolute(p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() { path } else { std::env::current_dir().unwrap_or_default().join(path) }
}

fn create_file(item: &Value) -> Result<(), ActionError> {
    let path = PathBuf::from(required(item, "path")?);
    if path.exists() && !boolean(item, "overwrite", true)? {
        return fail(format!("{} already exists and overwrite is false", path.display()));
    }
    if let Some(p) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(p).map_err(|e| io_fail("cannot create", p, e))?;
    }
    let bytes = encode(&string(item, "content").unwrap_or_default(), &string(item, "encoding").unwrap_or_default())?;
    fs::write(&path, bytes).map_err(|e| io_fail("cannot write", &path, e))?;
    if let Some(mode) = string(item, "permissions") {
        set_mode(&path, &mode)?;
    }
    set_owner(&path, string(item, "owner").as_deref(), string(item, "group").as_deref())
}

/// An explicit mode is applied exactly (not masked by the umask).
fn set_mode(path: &Path, mode: &str) -> Result<(), ActionError> {
    let bits = parse_mode(mode).ok_or_else(|| ActionError::Failed(format!("`{mode}` is not an octal permission")))?;
    fs::set_permissions(path, fs::Permissions::from_mode(bits))
        .map_err(|e| io_fail("cannot set permissions on", path, e))
}

fn set_owner(path: &Path, owner: Option<&str>, group: Option<&str>) -> Result<(), ActionError> {
    if owner.is_none() && group.is_none() {
        return Ok(());
    }
    let (uid, primary) = match owner {
        Some(o) => {
            let (u, g) = lookup_user(o).ok_or_else(|| ActionError::Failed(format!("user `{o}` does not exist")))?;
            (Some(u), Some(g))
        }
        None => (None, None),
    };
    let gid = match group {
        Some(g) => Some(lookup_group(g).ok_or_else(|| ActionError::Failed(format!("group `{g}` does not exist")))?),
        None => primary,
    };
    std::os::unix::fs::chown(path, uid, gid).map_err(|e| io_fail("cannot change owner of", path, e))
}

/// Looks a user up in this root's `/etc/passwd` (inside a sandbox, the image's).
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && (f[0] == name || f[2] == name))
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn lookup_group(name: &str) -> Option<u32> {
    let text = fs::read_to_string("/etc/group").ok()?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && (f[0] == name || f[2] == name)).then(|| f[2].parse().ok()).flatten()
        })
        .or_else(|| name.parse().ok())
}

fn walk_all(path: &Path) -> Result<Vec<PathBuf>, ActionError> {
    let mut out = vec![path.to_path_buf()];
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| io_fail("cannot list", path, e))? {
            let p = entry.map_err(|e| io_fail("cannot list", path, e))?.path();
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                out.extend(walk_all(&p)?);
            } else {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// `*` and `?` matching for one file name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Expands a wildcard in the last path segment (the only place AWSTOE allows one).
fn expand(pattern: &str) -> Result<Vec<PathBuf>, ActionError> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !name.contains('*') {
        return Ok(if fs::symlink_metadata(path).is_ok() { vec![path.to_path_buf()] } else { Vec::new() });
    }
    if path.parent().is_some_and(|p| p.to_string_lossy().contains('*')) {
        return fail(format!("`{pattern}`: `*` is allowed only after the last `/`"));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io_fail("cannot list", dir, e))?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name, n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Copy*/Move*: a destination ending in `/` means "into this folder"; otherwise its last
/// segment is the new name. A wildcard source needs a folder destination.
fn transfer(module: &str, item: &Value) -> Result<(), ActionError> {
    let source = required(item, "source")?;
    let destination = required(item, "destination")?;
    let overwrite = boolean(item, "overwrite", true)?;
    let folders = module.ends_with("Folder");
    let moving = module.starts_with("Move");
    let into = destination.ends_with('/');
    if source.contains('*') && !into {
        return fail(format!("source `{source}` has a wildcard, so the destination must be a folder ending in `/`"));
    }
    let sources = expand(&source)?;
    if sources.is_empty() {
        return fail(format!("{source} does not exist"));
    }
    for src in sources {
        if folders != src.is_dir() {
            let want = if folders { "a folder" } else { "a file" };
            return fail(format!("{} is not {want}", src.display()));
        }
        let target = if into {
            Path::new(&destination).join(src.file_name().unwrap_or_default())
        } else {
            PathBuf::from(&destination)
        };
        if target.exists() && !overwrite {
            return fail(format!("{} already exists and overwrite is false", target.display()));
        }
        if let Some(p) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(p).map_err(|e| io_fail("cannot create", p, e))?;
        }
        if moving {
            if target.is_dir() && folders {
                fs::remove_dir_all(&target).map_err(|e| io_fail("cannot replace", &target, e))?;
            }
            if fs::rename(&src, &target).is_err() {
                copy_tree(&src, &target)?;
                let removed = if folders { fs::remove_dir_all(&src) } else { fs::remove_file(&src) };
                removed.map_err(|e| io_fail("cannot remove", &src, e))?;
            }
        } else {
            copy_tree(&src, &target)?;
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), ActionError> {
    let meta = fs::symlink_metadata(src).map_err(|e| io_fail("cannot read", src, e))?;
    if meta.file_type().is_symlink() {
        let link = fs::read_link(src).map_err(|e| io_fail("cannot read", src, e))?;
        let _ = fs::remove_file(dst);
        return symlink(link, dst).map_err(|e| io_fail("cannot create", dst, e));
    }
    if meta.is_dir() {
        fs::create_dir_all(dst).map_err(|e| io_fail("cannot create", dst, e))?;
        fs::set_permissions(dst, meta.permissions()).map_err(|e| io_fail("cannot set permissions on", dst, e))?;
        for entry in fs::read_dir(src).map_err(|e| io_fail("cannot list", src, e))? {
            let entry = entry.map_err(|e| io_fail("cannot list", src, e))?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        return Ok(());
    }
    fs::copy(src, dst).map(|_| ()).map_err(|e| io_fail("cannot copy to", dst, e))
}

// ---------------------------------------------------------------- encodings

fn encode(text: &str, encoding: &str) -> Result<Vec<u8>, ActionError> {
    let e = encoding.to_ascii_lowercase().replace('-', "");
    Ok(match e.as_str() {
        "" | "utf8" => text.as_bytes().to_vec(),
        "utf16" | "utf16le" => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        "utf16be" => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        "utf32" | "utf32le" => text.chars().flat_map(|c| (c as u32).to_le_bytes()).collect(),
        "utf32be" => text.chars().flat_map(|c| (c as u32).to_be_bytes()).collect(),
        _ => return fail(format!("unknown encoding `{encoding}`")),
    })
}

fn decode(bytes: &[u8], encoding: &str) -> Result<String, ActionError> {
    let e = encoding.to_ascii_lowercase().replace('-', "");
    let bad = || ActionError::Failed(format!("the file is not valid {encoding} text"));
    let units16 = |be: bool| {
        bytes
            .chunks_exact(2)
            .map(move |c| if be { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
    };
    let chars32 = |be: bool| {
        bytes
            .chunks_exact(4)
            .map(move |c| {
                let v = if be {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                };
                char::from_u32(v)
            })
            .collect::<Option<String>>()
    };
    match e.as_str() {
        "" | "utf8" => {
            String::from_utf8(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes).to_vec()).map_err(|_| bad())
        }
        "utf16" | "utf16le" => String::from_utf16(&units16(false).collect::<Vec<_>>()).map_err(|_| bad()),
        "utf16be" => String::from_utf16(&units16(true).collect::<Vec<_>>()).map_err(|_| bad()),
        "utf32" | "utf32le" => chars32(false).ok_or_else(bad),
        "utf32be" => chars32(true).ok_or_else(bad),
        _ => fail(format!("unknown encoding `{encoding}`")),
    }
}

/// Best-effort decode for SetFileEncoding: BOMs first, then UTF-8.
fn decode_any(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(b"\xff\xfe") {
        return decode(rest, "utf16le").unwrap_or_default();
    }
    if let Some(rest) = bytes.strip_prefix(b"\xfe\xff") {
        return decode(rest, "utf16be").unwrap_or_default();
    }
    String::from_utf8_lossy(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_within_one_name() {
        assert!(wildcard("*.txt", "a.txt"));
        assert!(wildcard("a?c*", "abcdef"));
        assert!(!wildcard("*.txt", "a.txt.bak"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn encodings_round_trip() {
        for e in ["utf8", "utf-16", "utf16-BE", "utf32", "utf-32-BE"] {
            let bytes = encode("héllo ✓", e).unwrap();
            assert_eq!(decode(&bytes, e).unwrap(), "héllo ✓", "{e}");
        }
    }

    #[test]
    fn stdout_loses_one_trailing_newline() {
        assert_eq!(trim_newline("hi\n".into()), "hi");
        assert_eq!(trim_newline("hi\r\n".into()), "hi");
        assert_eq!(trim_newline("hi\n\n".into()), "hi\n");
    }
}
