//! # motogap — what moto cannot do, on loopback, for tests and the demo
//!
//! moto emulates EC2, SSM and STS well enough to drive amictl's AWS provider, with gaps
//! (see the README's "Testing against moto"): it has no `ssm:DescribeInstanceInformation`
//! (no instance ever registers with SSM), never throttles, and maps every static key to
//! account 123456789012. `Gap` is a small HTTP proxy in front of a moto server that:
//!
//! - answers `DescribeInstanceInformation` as the SSM service would for instances whose
//!   agent is online (all of them, or none: [`Gap::set_ssm_online`]);
//! - maps a static access key to an account (`x-moto-account-id`), so the identity amictl
//!   runs as can be the reference organisation's platform account;
//! - injects faults per operation and region (throttling, 5xx, delays), so retries and
//!   partial failures are tested against the real SDK stack;
//! - counts every call by `service:Operation`, which is how the notes measure the number of
//!   AWS calls one build and distribution makes (`GET /motogap/calls`);
//! - emulates AMI deprecation, which moto answers with HTTP 500: `EnableImageDeprecation`
//!   and `DisableImageDeprecation` (EC2 API reference, 2016-11-15) record or clear a time
//!   per AMI id, and every `DescribeImages` response gains the `deprecationTime` of the
//!   images that have one, as EC2 returns it. Modelled: the time as given (EC2 rounds to
//!   the minute; this keeps the seconds) and `return` = true. Not modelled: whether the
//!   AMI exists or the caller owns it, EC2's refusal of past times, and hiding deprecated
//!   images from public listings. Refusals are tested with injected faults.
//!
//! - resolves `resolve:ssm:<parameter>` launch template images as EC2 does at launch (moto
//!   launches the literal string): after every call that can launch instances, and in
//!   every `DescribeInstances` answer, an instance whose image is such a reference gets the
//!   AMI the parameter names the first time motogap sees it, and keeps it when the
//!   parameter moves later, as a launched instance does. Not modelled: parameter versions
//!   and labels (`name:3`), which moto's GetParameter answers as it can;
//!
//! - leaves disabled AMIs out of `DescribeImages` unless `IncludeDisabled` is true, as EC2
//!   does (moto lists them);
//!
//! - copies an AMI another account shared with the caller (`CopyImage`, same region), which
//!   moto cannot see: the copy is registered in the caller's account with the source's name
//!   and architecture. Not modelled: snapshots (moto's RegisterImage makes none), encryption,
//!   and copies across regions;
//!
//! - emulates **instance refresh** ([`refresh`]: start, describe, cancel, rollback), which
//!   moto has not, by replacing a group's instances one describe at a time;
//!
//! - shares **SSM parameters with AWS RAM** ([`ram`]: moto's RAM refuses the resource type
//!   and its SSM cannot read another account's parameter by ARN);
//!
//! - emulates **EC2 Image Builder** ([`imagebuilder`]: pipelines, executions with the
//!   clientToken rule, output AMIs made in moto, packages, workflows, managed components).
//!
//! - models **AWS's latencies and request rates** when asked ([`latency`]: instances
//!   pending, SSM registration, Run Command, AMIs and copies in progress, throttling, all on
//!   a scaled clock), and keeps the critical path of what it made wait.
//!
//! It is deliberately dumb: one request per connection (`Connection: close`), bodies by
//! `Content-Length`. Everything else goes to moto untouched.

pub mod imagebuilder;
pub mod latency;
mod ram;
mod refresh;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// A `moto_server` on a free loopback port, killed on drop. The executable comes from
/// `AMICTL_MOTO_SERVER` (scripts/test installs moto[server] in a venv) or `moto_server` on
/// PATH. AMI validation is on, so launching a nonexistent AMI fails as on AWS.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
}

impl Moto {
    /// Starts the server and waits until it accepts connections. Panics with a message
    /// that says how to get moto: this is test-harness code.
    pub fn start() -> Moto {
        Moto::start_with_ami_validation(true)
    }

    /// Without AMI validation any id launches — the only way for a consumer account to
    /// launch a shared AMI, since moto does not emulate cross-account AMI visibility.
    pub fn start_with_ami_validation(validate: bool) -> Moto {
        let server = std::env::var("AMICTL_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        // A port no other server of this process holds: the kernel may hand a released
        // ephemeral port out again, and a second moto that cannot bind it would leave this
        // test talking to another test's server (until that one stops: "connection refused").
        let port = loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("no free port on 127.0.0.1 for moto");
            if ports_in_use().insert(port) {
                break port;
            }
        };
        let mut command = Command::new(&server);
        // moto treats any value, "false" included, as "on".
        if validate {
            command.env("MOTO_ENABLE_AMI_VALIDATION", "true");
        } else {
            command.env_remove("MOTO_ENABLE_AMI_VALIDATION");
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("MOTO_ACCOUNT_ID")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {server} ({e}); set AMICTL_MOTO_SERVER or run scripts/test, which installs moto[server]")
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        let mut moto = Moto { child, addr };
        while TcpStream::connect(addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "moto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Someone else's server answered on the port and ours exited, unable to bind it:
        // start again on another.
        if let Ok(Some(_)) = moto.child.try_wait() {
            drop(moto);
            return Moto::start_with_ami_validation(validate);
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        ports_in_use().remove(&self.addr.port());
    }
}

/// Ports held by this process's moto servers.
fn ports_in_use() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u16>> {
    static PORTS: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `service:Operation`, e.g. `ec2:CopyImage`, `ssm:PutParameter`.
    pub op: String,
    /// Only in this region; `None` for every region.
    pub region: Option<String>,
    /// How many calls it affects; `None` for all of them.
    pub times: Option<u32>,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `RequestLimitExceeded` (EC2) or `ThrottlingException` (JSON services).
    Throttle,
    /// HTTP 500 `InternalError`.
    ServerError,
    /// HTTP 403, as a call the policy does not allow is answered: `UnauthorizedOperation`
    /// for EC2, `AccessDenied`(`Exception`) for the others.
    Denied,
    /// Holds the request this long, then forwards it.
    Delay(Duration),
}

#[derive(Default)]
struct Inner {
    upstream: Option<SocketAddr>,
    calls: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Vec<Fault>>,
    keys: Mutex<BTreeMap<String, String>>,
    offline: AtomicBool,
    /// AMI id → deprecation time (ISO 8601, as the request gave it).
    deprecations: Mutex<BTreeMap<String, String>>,
    /// Instance id → the AMI its `resolve:ssm:` image named when it was launched.
    resolved: Mutex<BTreeMap<String, String>>,
    /// RAM shares of SSM parameters.
    shares: Mutex<ram::Shares>,
    /// Access key → account, as moto's STS said.
    callers: Mutex<BTreeMap<String, String>>,
    /// Instance refreshes.
    refreshes: Mutex<refresh::Refreshes>,
    image_builder: imagebuilder::ImageBuilder,
    /// The latency model, when on.
    model: std::sync::OnceLock<latency::Model>,
}

/// A running proxy; it serves until the process exits.
#[derive(Clone)]
pub struct Gap {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Gap {
    /// Listens on `127.0.0.1:port` (0 picks one) in front of the moto server at `upstream`.
    pub fn start(upstream: SocketAddr, port: u16) -> io::Result<Gap> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner { upstream: Some(upstream), ..Inner::default() });
        let shared = inner.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let inner = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(&inner, conn);
                });
            }
        });
        Ok(Gap { addr, inner })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests signed with `access_key` go to `account` (moto's `x-moto-account-id`).
    pub fn map_key(&self, access_key: &str, account: &str) {
        lock(&self.inner.keys).insert(access_key.into(), account.into());
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Whether SSM reports instances Online (true at start).
    pub fn set_ssm_online(&self, online: bool) {
        self.inner.offline.store(!online, Ordering::SeqCst);
    }

    /// Calls seen so far by `service:Operation`, including those a fault answered.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.calls).clone()
    }

    pub fn reset_calls(&self) {
        lock(&self.inner.calls).clear();
    }

    /// One JSON-protocol call straight to moto as `account` (e.g. `organizations`,
    /// `AWSOrganizationsV20161128.CreateOrganization`), for a test to set up what amictl has
    /// no client for: (status, body).
    pub fn call(&self, account: &str, service: &str, target: &str, body: &str) -> io::Result<(u16, String)> {
        let upstream = self.inner.upstream.ok_or_else(|| io::Error::other("no upstream"))?;
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=motogap/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let headers = [("x-amz-target", target), ("content-type", "application/x-amz-json-1.1")];
        post(upstream, &auth, Some(account), &headers, body.as_bytes())
    }

    /// Turns the latency model on, `scale` modelled seconds to the real one (once; later
    /// calls change nothing).
    pub fn model(&self, scale: f64) -> &latency::Model {
        self.inner.model.get_or_init(|| latency::Model::new(scale))
    }

    /// The Image Builder emulation, to set what executions do.
    pub fn image_builder(&self) -> &imagebuilder::ImageBuilder {
        &self.inner.image_builder
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The request path, without the query.
    fn path(&self) -> &str {
        let target = self.head[0].split_whitespace().nth(1).unwrap_or("/");
        target.split_once('?').map_or(target, |(p, _)| p)
    }

    /// The query string.
    fn query(&self) -> &str {
        let target = self.head[0].split_whitespace().nth(1).unwrap_or("/");
        target.split_once('?').map_or("", |(_, q)| q)
    }

    /// (access key, region, service) from the SigV4 credential scope.
    fn scope(&self) -> (String, String, String) {
        let auth = self.header("authorization").unwrap_or_default();
        let cred = auth.split("Credential=").nth(1).unwrap_or_default();
        let cred = cred.split([',', ' ']).next().unwrap_or_default();
        let mut parts = cred.split('/');
        let key = parts.next().unwrap_or_default().to_string();
        let _date = parts.next();
        let region = parts.next().unwrap_or_default().to_string();
        let service = parts.next().unwrap_or_default().to_string();
        (key, region, service)
    }

    fn operation(&self) -> String {
        if let Some(target) = self.header("x-amz-target") {
            return target.rsplit('.').next().unwrap_or(target).to_string();
        }
        // restJson1 services name the operation in the path: `PUT /StartImagePipelineExecution`.
        match self.scope().2.as_str() {
            "imagebuilder" => return self.path().trim_start_matches('/').to_string(),
            "ram" => return ram::operation(self.path()),
            _ => {}
        }
        let body = String::from_utf8_lossy(&self.body);
        let query = self.head[0].split_whitespace().nth(1).and_then(|p| p.split_once('?')).map(|(_, q)| q);
        body.split('&')
            .chain(query.into_iter().flat_map(|q| q.split('&')))
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("unknown")
            .to_string()
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut req = Request { head, body: Vec::new() };
    let len = req.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    req.body.resize(len, 0);
    reader.read_exact(&mut req.body)?;
    Ok(Some(req))
}

fn serve(inner: &Inner, conn: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some(req) = read_request(&mut reader)? else { return Ok(()) };
    let mut out = conn;
    if req.head[0].starts_with("GET /motogap/calls") {
        let body = serde_json::to_vec(&*lock(&inner.calls)).unwrap_or_default();
        return out.write_all(&response(200, "application/json", &body));
    }
    if req.head[0].starts_with("GET /motogap/model") {
        let since = req.query().split('&').find_map(|kv| kv.strip_prefix("since=")).and_then(|v| v.parse().ok());
        let body = match inner.model.get() {
            Some(m) => m.report(since.unwrap_or(0.0)).to_string(),
            None => "{\"error\":\"the latency model is off (motogap --latency SCALE)\"}".into(),
        };
        return out.write_all(&response(
            if inner.model.get().is_some() { 200 } else { 404 },
            "application/json",
            body.as_bytes(),
        ));
    }
    let (key, region, service) = req.scope();
    let op = format!("{service}:{}", req.operation());
    *lock(&inner.calls).entry(op.clone()).or_default() += 1;

    let fault = {
        let mut faults = lock(&inner.faults);
        let hit = faults
            .iter_mut()
            .find(|f| f.op == op && f.region.as_deref().is_none_or(|r| r == region) && f.times.is_none_or(|t| t > 0));
        hit.map(|f| {
            if let Some(t) = &mut f.times {
                *t -= 1;
            }
            f.kind
        })
    };
    let json = req.header("x-amz-target").is_some();
    let rest_json = service == "imagebuilder";
    match fault {
        Some(FaultKind::Throttle) if rest_json => {
            return out.write_all(&rest_error(429, "TooManyRequestsException", "Rate exceeded (injected by motogap)"));
        }
        Some(FaultKind::ServerError) if rest_json => {
            return out.write_all(&rest_error(500, "ServiceException", "injected by motogap"));
        }
        Some(FaultKind::Denied) if rest_json => {
            return out.write_all(&rest_error(403, "ForbiddenException", "not authorized (injected by motogap)"));
        }
        Some(FaultKind::Throttle) if json => {
            let body = br#"{"__type":"ThrottlingException","message":"Rate exceeded (injected by motogap)"}"#;
            return out.write_all(&response(400, "application/x-amz-json-1.1", body));
        }
        Some(FaultKind::Throttle) => {
            let body = ec2_error("RequestLimitExceeded", "Request limit exceeded (injected by motogap).");
            return out.write_all(&response(503, "text/xml", body.as_bytes()));
        }
        Some(FaultKind::ServerError) if json => {
            let body = br#"{"__type":"InternalServerError","message":"injected by motogap"}"#;
            return out.write_all(&response(500, "application/x-amz-json-1.1", body));
        }
        Some(FaultKind::ServerError) => {
            let body = ec2_error("InternalError", "An internal error has occurred (injected by motogap).");
            return out.write_all(&response(500, "text/xml", body.as_bytes()));
        }
        Some(FaultKind::Denied) if json => {
            let body = br#"{"__type":"AccessDeniedException","message":"not authorized (injected by motogap)"}"#;
            return out.write_all(&response(403, "application/x-amz-json-1.1", body));
        }
        // EC2 speaks its own error format and says UnauthorizedOperation (EC2 API reference,
        // "Error codes"); the other query services say AccessDenied in ErrorResponse.
        Some(FaultKind::Denied) if service == "ec2" => {
            let body = ec2_error(
                "UnauthorizedOperation",
                &format!("You are not authorized to perform this operation: {op} (injected by motogap)."),
            );
            return out.write_all(&response(403, "text/xml", body.as_bytes()));
        }
        Some(FaultKind::Denied) => {
            let body = format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: {op} (injected by motogap)</Message></Error><RequestId>motogap</RequestId></ErrorResponse>"
            );
            return out.write_all(&response(403, "text/xml", body.as_bytes()));
        }
        Some(FaultKind::Delay(d)) => std::thread::sleep(d),
        None => {}
    }
    let model = inner.model.get();
    let account = lock(&inner.keys).get(&key).cloned();
    let upstream = inner.upstream.ok_or_else(|| io::Error::other("no upstream"))?;
    if let Some(m) = model {
        let caller = caller_account(inner, upstream, &req, account.as_deref()).unwrap_or(key.clone());
        if !m.admit(&caller, &region, &service, &req.operation()) {
            return out.write_all(&throttled(&service, json, rest_json));
        }
    }
    if op == "ssm:DescribeInstanceInformation" {
        let online = !inner.offline.load(Ordering::SeqCst);
        let body = instance_information(&req.body, &|id| online && model.is_none_or(|m| m.online(id)));
        return out.write_all(&response(200, "application/x-amz-json-1.1", &body));
    }
    if let Some(answer) = deprecation(inner, &op, &req.body) {
        return out.write_all(&answer);
    }
    if rest_json {
        let account = account.as_deref().unwrap_or("123456789012");
        let a = inner.image_builder.handle(upstream, account, &region, &req.operation(), req.query(), &req.body);
        let body = serde_json::to_vec(&a.body).unwrap_or_default();
        return out.write_all(&match a.error {
            Some(e) => rest_error_body(a.status, e, &body),
            None => response(200, "application/json", &body),
        });
    }
    if (service == "ram" || op == "ssm:GetParameter")
        && let Some(answer) = shared_parameters(inner, upstream, &req, &op, account.as_deref())?
    {
        return out.write_all(&answer);
    }
    if op.contains("InstanceRefresh") && service == "autoscaling" {
        let caller = caller_account(inner, upstream, &req, account.as_deref()).unwrap_or_default();
        let up = Caller { inner, upstream, req: &req, account: account.as_deref() };
        let form = |k: &str| form_value(&req.body, k);
        let answer = lock(&inner.refreshes).handle((&caller, &region), &op, &form, &up, model);
        if let Some((status, body)) = answer {
            return out.write_all(&response(status, "text/xml", body.as_bytes()));
        }
    }
    let asked = Instant::now();
    let mut answer = forward(upstream, &req, account.as_deref())?;
    if let Some(m) = model {
        m.upstream(asked.elapsed().as_secs_f64());
    }
    if op == "ec2:CopyImage"
        && String::from_utf8_lossy(&answer).contains("InvalidAMIID.NotFound")
        && let Some(copied) = copy_shared(inner, upstream, &req, account.as_deref())
    {
        answer = copied;
    }
    if op == "ec2:DescribeImages" {
        if form_value(&req.body, "IncludeDisabled").as_deref() != Some("true") {
            answer = rewrite_body(answer, without_disabled);
        }
        answer = with_deprecation_times(&lock(&inner.deprecations), answer);
    }
    if op == "ec2:DescribeInstances" {
        answer = rewrite_body(answer, |body| resolve_launched(inner, upstream, &req, account.as_deref(), body));
    } else if LAUNCHES.contains(&op.as_str()) && answer.starts_with(b"HTTP/1.1 200") {
        // Pin what the launches just made resolve to, before the parameter can move.
        let list = b"Action=DescribeInstances&Version=2016-11-15";
        let form = [("content-type", "application/x-www-form-urlencoded")];
        if let Ok((_, body)) = call_as(upstream, &req, account.as_deref(), "ec2", &form, list) {
            let body = resolve_launched(inner, upstream, &req, account.as_deref(), body);
            if let Some(m) = model {
                m.launched(&body);
            }
        }
    }
    if let Some(m) = model
        && answer.starts_with(b"HTTP/1.1 200")
    {
        answer = modelled(m, upstream, &req, account.as_deref(), &op, &region, answer);
    }
    out.write_all(&answer)
}

/// An answer as the latency model has it: what is not ready yet reads so, and what was
/// started is timed.
fn modelled(
    m: &latency::Model,
    upstream: SocketAddr,
    req: &Request,
    account: Option<&str>,
    op: &str,
    region: &str,
    answer: Vec<u8>,
) -> Vec<u8> {
    let text = String::from_utf8_lossy(&answer).into_owned();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let form = |k: &str| form_value(&req.body, k);
    let numbered = |prefix: &str| (1..).map_while(|n| form(&format!("{prefix}.{n}"))).collect::<Vec<_>>();
    match op {
        "ec2:DescribeInstances" => rewrite_body(answer, |b| m.instance_states(b)),
        "ec2:DescribeImages" => rewrite_body(answer, |b| m.image_states(b)),
        "ec2:RebootInstances" => {
            m.rebooted(&numbered("InstanceId"));
            answer
        }
        "ec2:CreateImage" | "ec2:CopyImage" => {
            let Some(id) = body.split("<imageId>").nth(1).and_then(|t| t.split("</imageId>").next()) else {
                return answer;
            };
            let gib = image_size(upstream, req, account, id);
            if op == "ec2:CreateImage" {
                m.imaged(id, &form("InstanceId").unwrap_or_default(), gib);
            } else {
                let source_region = form("SourceRegion").unwrap_or_default();
                m.copied(id, &form("SourceImageId").unwrap_or_default(), source_region != region, gib);
            }
            answer
        }
        "ssm:SendCommand" => {
            let asked: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let got: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let strings = |v: &serde_json::Value| -> Vec<String> {
                v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
            };
            let id = got["Command"]["CommandId"].as_str().unwrap_or_default();
            m.command(id, &strings(&asked["InstanceIds"]), &strings(&asked["Parameters"]["commands"]));
            answer
        }
        "ssm:GetCommandInvocation" | "ssm:ListCommandInvocations" => rewrite_body(answer, |b| {
            let mut v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
            let running = |inv: &mut serde_json::Value| {
                let id = inv["CommandId"].as_str().unwrap_or_default().to_string();
                if !m.command_done(&id) {
                    inv["Status"] = "InProgress".into();
                    inv["StatusDetails"] = "InProgress".into();
                    for k in ["StandardOutputContent", "StandardErrorContent"] {
                        if inv.get(k).is_some() {
                            inv[k] = "".into();
                        }
                    }
                    inv["ResponseCode"] = (-1).into();
                }
            };
            if op == "ssm:GetCommandInvocation" {
                running(&mut v);
            } else if let Some(list) = v["CommandInvocations"].as_array_mut() {
                list.iter_mut().for_each(running);
            }
            v.to_string()
        }),
        _ => answer,
    }
}

/// An AMI's size in GiB, from its block device mappings as moto reports them (8 when none).
fn image_size(upstream: SocketAddr, req: &Request, account: Option<&str>, image: &str) -> f64 {
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = format!("Action=DescribeImages&Version=2016-11-15&ImageId.1={image}");
    let sizes: f64 = call_as(upstream, req, account, "ec2", &form, body.as_bytes())
        .map(|(_, text)| {
            text.split("<volumeSize>").skip(1).filter_map(|t| t.split('<').next()?.parse::<f64>().ok()).sum()
        })
        .unwrap_or(0.0);
    if sizes > 0.0 { sizes } else { 8.0 }
}

/// A throttling answer in the service's own protocol.
fn throttled(service: &str, json: bool, rest_json: bool) -> Vec<u8> {
    if rest_json {
        return rest_error(429, "TooManyRequestsException", "Rate exceeded (motogap latency model)");
    }
    if json {
        let body = br#"{"__type":"ThrottlingException","message":"Rate exceeded (motogap latency model)"}"#;
        return response(400, "application/x-amz-json-1.1", body);
    }
    if service == "ec2" {
        let body = ec2_error("RequestLimitExceeded", "Request limit exceeded (motogap latency model).");
        return response(503, "text/xml", body.as_bytes());
    }
    let body = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded (motogap latency model)</Message></Error><RequestId>motogap</RequestId></ErrorResponse>";
    response(400, "text/xml", body.as_bytes())
}

/// moto, as the caller of one request.
struct Caller<'a> {
    inner: &'a Inner,
    upstream: SocketAddr,
    req: &'a Request,
    account: Option<&'a str>,
}

impl refresh::Upstream for Caller<'_> {
    fn autoscaling(&self, form: &str) -> Option<(u16, String)> {
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        call_as(self.upstream, self.req, self.account, "autoscaling", &headers, form.as_bytes()).ok()
    }

    fn launched(&self) {
        let list = b"Action=DescribeInstances&Version=2016-11-15";
        let form = [("content-type", "application/x-www-form-urlencoded")];
        if let Ok((_, body)) = call_as(self.upstream, self.req, self.account, "ec2", &form, list) {
            resolve_launched(self.inner, self.upstream, self.req, self.account, body);
        }
    }
}

/// Calls after which moto may have launched instances from a launch template.
const LAUNCHES: [&str; 5] = [
    "autoscaling:CreateAutoScalingGroup",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "ec2:RunInstances",
];

/// The DescribeInstances body with every `<imageId>resolve:ssm:…</imageId>` replaced by the
/// AMI its instance launched with (resolved now for an instance not seen before).
fn resolve_launched(inner: &Inner, upstream: SocketAddr, req: &Request, account: Option<&str>, body: String) -> String {
    const OPEN: &str = "<imageId>resolve:ssm:";
    if !body.contains(OPEN) {
        return body;
    }
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find("</imageId>") else { break };
        let parameter = &after[..end];
        let tail = &after[end + "</imageId>".len()..];
        // moto writes an instance's id before its image id.
        let instance = out
            .rfind("<instanceId>")
            .and_then(|i| out[i + "<instanceId>".len()..].split("</instanceId>").next())
            .unwrap_or_default()
            .to_string();
        if instance.is_empty() {
            out.push_str(&format!("{OPEN}{parameter}</imageId>"));
            rest = tail;
            continue;
        }
        let known = lock(&inner.resolved).get(&instance).cloned();
        let ami = known.or_else(|| {
            let ami = get_parameter(inner, upstream, req, account, parameter)?;
            lock(&inner.resolved).insert(instance.clone(), ami.clone());
            Some(ami)
        });
        match ami {
            Some(ami) => out.push_str(&format!("<imageId>{ami}</imageId>")),
            None => out.push_str(&format!("{OPEN}{parameter}</imageId>")),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// RAM calls about SSM parameters, and reads of a parameter shared from another account
/// (see [`ram`]); `None` when moto answers as it is.
fn shared_parameters(
    inner: &Inner,
    upstream: SocketAddr,
    req: &Request,
    op: &str,
    account: Option<&str>,
) -> io::Result<Option<Vec<u8>>> {
    let json = |status: u16, v: serde_json::Value| {
        let body = v.to_string();
        let mut r = response(status, "application/json", body.as_bytes());
        if status != 200
            && let Some(kind) = v["__type"].as_str()
        {
            r = rest_error_body(status, kind, body.as_bytes());
        }
        r
    };
    let caller = || caller_account(inner, upstream, req, account).unwrap_or_default();
    match op {
        "ram:CreateResourceShare" => {
            let Some((body, parameters, principals)) = ram::Shares::split_create(&req.body) else { return Ok(None) };
            let answer = forward_body(upstream, req, account, &body)?;
            if answer.starts_with(b"HTTP/1.1 200") {
                let text = String::from_utf8_lossy(&answer);
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                lock(&inner.shares).created(&caller(), body, parameters, principals);
            }
            Ok(Some(answer))
        }
        "ram:AssociateResourceShare" => {
            let (status, v) = lock(&inner.shares).associate(&caller(), &req.body);
            Ok(Some(json(status, v)))
        }
        "ram:GetResourceShareAssociations" => {
            let answer = forward(upstream, req, account)?;
            let owner = caller();
            Ok(Some(rewrite_body(answer, |b| lock(&inner.shares).associations(&owner, &req.body, b))))
        }
        "ssm:GetParameter" => {
            let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let name = v["Name"].as_str().unwrap_or_default();
            if !name.starts_with("arn:") {
                return Ok(None);
            }
            match lock(&inner.shares).reader(&caller(), name) {
                Ok(None) => Ok(None),
                Ok(Some(owner)) => forward(upstream, req, Some(&owner)).map(Some),
                Err(()) => {
                    let body = serde_json::json!({"__type": "ParameterNotFound", "message": format!("{name} is not shared with this account (motogap)")});
                    Ok(Some(response(400, "application/x-amz-json-1.1", body.to_string().as_bytes())))
                }
            }
        }
        _ => Ok(None),
    }
}

/// `CopyImage` of an AMI another account shared with the caller, in the same region, which
/// moto cannot see: the copy is registered in the caller's account with the source's name
/// and architecture (moto's RegisterImage makes no snapshots, so the copy has none).
fn copy_shared(inner: &Inner, upstream: SocketAddr, req: &Request, account: Option<&str>) -> Option<Vec<u8>> {
    let source = form_value(&req.body, "SourceImageId")?;
    let name = form_value(&req.body, "Name")?;
    let description = form_value(&req.body, "Description").unwrap_or_default();
    let caller = caller_account(inner, upstream, req, account)?;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let owners: std::collections::BTreeSet<String> = lock(&inner.keys).values().cloned().collect();
    let owner = owners.into_iter().filter(|o| *o != caller).find(|owner| {
        let body =
            format!("Action=DescribeImageAttribute&Version=2016-11-15&ImageId={source}&Attribute=launchPermission");
        call_as(upstream, req, Some(owner), "ec2", &form, body.as_bytes())
            .is_ok_and(|(status, text)| status == 200 && text.contains(&format!("<userId>{caller}</userId>")))
    })?;
    let body = format!("Action=DescribeImages&Version=2016-11-15&ImageId.1={source}");
    let (_, text) = call_as(upstream, req, Some(&owner), "ec2", &form, body.as_bytes()).ok()?;
    let arch = text.split("<architecture>").nth(1).and_then(|t| t.split('<').next()).unwrap_or("x86_64").to_string();
    let enc = refresh::encode;
    let body = format!(
        "Action=RegisterImage&Version=2016-11-15&Name={}&Description={}&Architecture={arch}",
        enc(&name),
        enc(&description)
    );
    let (status, text) = call_as(upstream, req, account, "ec2", &form, body.as_bytes()).ok()?;
    let id = text.split("<imageId>").nth(1)?.split("</imageId>").next()?.to_string();
    (status == 200).then(|| {
        let body = format!(
            "<CopyImageResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>motogap</requestId><imageId>{id}</imageId></CopyImageResponse>"
        );
        response(200, "text/xml", body.as_bytes())
    })
}

/// The caller's account: mapped from its key, or as moto's STS names it (for assumed roles).
fn caller_account(inner: &Inner, upstream: SocketAddr, req: &Request, account: Option<&str>) -> Option<String> {
    if let Some(a) = account {
        return Some(a.to_string());
    }
    let key = req.scope().0;
    if let Some(a) = lock(&inner.callers).get(&key) {
        return Some(a.clone());
    }
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, text) =
        call_as(upstream, req, None, "sts", &form, b"Action=GetCallerIdentity&Version=2011-06-15").ok()?;
    let a = text.split("<Account>").nth(1)?.split("</Account>").next()?.to_string();
    if status == 200 {
        lock(&inner.callers).insert(key, a.clone());
    }
    Some(a)
}

fn get_parameter(
    inner: &Inner,
    upstream: SocketAddr,
    req: &Request,
    account: Option<&str>,
    name: &str,
) -> Option<String> {
    // A parameter shared by ARN is read in its owner's account (see [`ram`]).
    let owner = match lock(&inner.shares).reader(&caller_account(inner, upstream, req, account)?, name) {
        Ok(owner) => owner,
        Err(()) => return None,
    };
    let account = owner.as_deref().or(account);
    let body = serde_json::json!({ "Name": name }).to_string();
    let headers = [("x-amz-target", "AmazonSSM.GetParameter"), ("content-type", "application/x-amz-json-1.1")];
    let (status, text) = call_as(upstream, req, account, "ssm", &headers, body.as_bytes()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    (status == 200).then(|| v["Parameter"]["Value"].as_str().map(str::to_string)).flatten()
}

/// One request to moto as the caller of `req` (its credentials, so its account), for
/// another service: (status, body).
fn call_as(
    upstream: SocketAddr,
    req: &Request,
    account: Option<&str>,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String)> {
    let (_, region, from) = req.scope();
    let auth = req
        .header("authorization")
        .unwrap_or_default()
        .replace(&format!("/{region}/{from}/aws4_request"), &format!("/{region}/{service}/aws4_request"));
    let mut extra: Vec<(&str, &str)> = headers.to_vec();
    if let Some(token) = req.header("x-amz-security-token") {
        extra.push(("x-amz-security-token", token));
    }
    post(upstream, &auth, account, &extra, body)
}

/// A POST to moto with these credentials (moto reads the account from the access key, or
/// from `x-moto-account-id`): (status, body).
pub(crate) fn post(
    upstream: SocketAddr,
    authorization: &str,
    account: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String)> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\nContent-Length: {}\r\nAuthorization: {authorization}\r\n",
        body.len()
    );
    if let Some(account) = account {
        head.push_str(&format!("x-moto-account-id: {account}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(body)?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// A query-protocol form value, percent-decoded.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let raw = text.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}=")))?;
    let bytes = raw.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match u8::from_str_radix(&String::from_utf8_lossy(hex), 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Answers EnableImageDeprecation / DisableImageDeprecation, which moto lacks.
fn deprecation(inner: &Inner, op: &str, body: &[u8]) -> Option<Vec<u8>> {
    let (action, enable) = match op {
        "ec2:EnableImageDeprecation" => ("EnableImageDeprecation", true),
        "ec2:DisableImageDeprecation" => ("DisableImageDeprecation", false),
        _ => return None,
    };
    let Some(image) = form_value(body, "ImageId") else {
        let body = ec2_error("MissingParameter", "The request must contain the parameter ImageId");
        return Some(response(400, "text/xml", body.as_bytes()));
    };
    let mut map = lock(&inner.deprecations);
    if enable {
        let Some(at) = form_value(body, "DeprecateAt") else {
            let body = ec2_error("MissingParameter", "The request must contain the parameter DeprecateAt");
            return Some(response(400, "text/xml", body.as_bytes()));
        };
        map.insert(image, at);
    } else {
        map.remove(&image);
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>motogap</requestId><return>true</return></{action}Response>"
    );
    Some(response(200, "text/xml", xml.as_bytes()))
}

/// A DescribeImages body without its disabled images, which EC2 lists only when
/// `IncludeDisabled` is true (moto lists them always).
fn without_disabled(body: String) -> String {
    let (Some(start), Some(end)) = (body.find("<imagesSet>"), body.rfind("</imagesSet>")) else { return body };
    let inner = &body[start + "<imagesSet>".len()..end];
    let mut kept = String::new();
    let (mut depth, mut from, mut i) = (0usize, 0usize, 0usize);
    while i < inner.len() {
        if inner[i..].starts_with("<item>") {
            if depth == 0 {
                from = i;
            }
            depth += 1;
            i += "<item>".len();
        } else if inner[i..].starts_with("</item>") {
            depth = depth.saturating_sub(1);
            i += "</item>".len();
            if depth == 0 {
                let item = &inner[from..i];
                if !item.contains("<imageState>disabled</imageState>") {
                    kept.push_str(item);
                }
            }
        } else {
            i += inner[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    format!("{}<imagesSet>{kept}{}", &body[..start], &body[end..])
}

/// Adds `<deprecationTime>` after the `<imageId>` of every deprecated image in a
/// DescribeImages response.
fn with_deprecation_times(times: &BTreeMap<String, String>, answer: Vec<u8>) -> Vec<u8> {
    if times.is_empty() {
        return answer;
    }
    rewrite_body(answer, |mut body| {
        for (image, at) in times {
            let tag = format!("<imageId>{image}</imageId>");
            body = body.replace(&tag, &format!("{tag}<deprecationTime>{at}</deprecationTime>"));
        }
        body
    })
}

/// A response with its body rewritten (and its length fixed). A chunked response is left alone.
fn rewrite_body(answer: Vec<u8>, f: impl FnOnce(String) -> String) -> Vec<u8> {
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { return answer };
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return answer;
    }
    let body = f(String::from_utf8_lossy(&answer[split + 4..]).to_string());
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.split(':').next().is_some_and(|n| n.trim().eq_ignore_ascii_case("content-length")) {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// [`forward`] with another body (its length fixed).
fn forward_body(upstream: SocketAddr, req: &Request, account: Option<&str>, body: &[u8]) -> io::Result<Vec<u8>> {
    let head = req
        .head
        .iter()
        .map(|l| {
            if l.split(':').next().is_some_and(|n| n.trim().eq_ignore_ascii_case("content-length")) {
                format!("Content-Length: {}", body.len())
            } else {
                l.clone()
            }
        })
        .collect();
    forward(upstream, &Request { head, body: body.to_vec() }, account)
}

fn forward(upstream: SocketAddr, req: &Request, account: Option<&str>) -> io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = String::new();
    for line in &req.head {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n");
    if let Some(account) = account {
        head.push_str(&format!("x-moto-account-id: {account}\r\n"));
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw)?;
    // Tell the client this connection ends here.
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.split(':').next().is_some_and(|n| n.trim().eq_ignore_ascii_case("connection")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&raw[split + 4..]);
    Ok(bytes)
}

fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: motogap\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A restJson1 error: the status, `x-amzn-ErrorType`, and `{"message"}`.
fn rest_error(status: u16, error: &str, message: &str) -> Vec<u8> {
    rest_error_body(status, error, serde_json::json!({ "message": message }).to_string().as_bytes())
}

fn rest_error_body(status: u16, error: &str, body: &[u8]) -> Vec<u8> {
    let mut out = response(status, "application/json", body);
    let at = out.windows(2).position(|w| w == b"\r\n").map_or(0, |p| p + 2);
    out.splice(at..at, format!("x-amzn-ErrorType: {error}\r\n").into_bytes());
    out
}

fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>motogap</RequestID></Response>"
    )
}

/// The instances a DescribeInstanceInformation request names that are `online`, reported Online.
fn instance_information(body: &[u8], online: &dyn Fn(&str) -> bool) -> Vec<u8> {
    let req: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut ids = Vec::new();
    for list in ["Filters", "InstanceInformationFilterList"] {
        for f in req[list].as_array().into_iter().flatten() {
            let key = f["Key"].as_str().or(f["key"].as_str()).unwrap_or_default();
            if key == "InstanceIds" || key == "InstanceIds".to_lowercase() {
                let values = f["Values"].as_array().or(f["valueSet"].as_array());
                ids.extend(values.into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)));
            }
        }
    }
    let list: Vec<serde_json::Value> = ids
        .iter()
        .filter(|id| online(id))
        .map(|id| {
            serde_json::json!({
                    "InstanceId": id, "PingStatus": "Online", "PlatformType": "Linux",
                "PlatformName": "Amazon Linux", "ResourceType": "EC2Instance", "AgentVersion": "3.3.1142.0"
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "InstanceInformationList": list })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_information_reports_the_requested_instances_online_or_none() {
        let body = br#"{"Filters":[{"Key":"InstanceIds","Values":["i-1","i-2"]}]}"#;
        let v: serde_json::Value = serde_json::from_slice(&instance_information(body, &|_| true)).unwrap();
        let ids: Vec<&str> = v["InstanceInformationList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["InstanceId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["i-1", "i-2"]);
        let v: serde_json::Value = serde_json::from_slice(&instance_information(body, &|_| false)).unwrap();
        assert!(v["InstanceInformationList"].as_array().unwrap().is_empty());
    }

    #[test]
    fn disabled_images_are_left_out_of_describe_images_with_their_nested_items_kept() {
        let body = "<DescribeImagesResponse><imagesSet><item><imageId>ami-1</imageId><imageState>available</imageState><tagSet><item><key>a</key></item></tagSet></item><item><imageId>ami-2</imageId><imageState>disabled</imageState><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName></item></blockDeviceMapping></item></imagesSet></DescribeImagesResponse>";
        let out = without_disabled(body.to_string());
        assert!(out.contains("<imageId>ami-1</imageId>") && out.contains("<key>a</key>"), "{out}");
        assert!(!out.contains("ami-2") && !out.contains("/dev/xvda"), "{out}");
        assert!(out.ends_with("</imagesSet></DescribeImagesResponse>"), "{out}");
    }

    #[test]
    fn deprecation_is_recorded_and_shown_in_describe_images() {
        let inner = Inner::default();
        let body =
            b"Action=EnableImageDeprecation&Version=2016-11-15&ImageId=ami-1&DeprecateAt=2026-12-15T09%3A00%3A00Z";
        let answer = deprecation(&inner, "ec2:EnableImageDeprecation", body).unwrap();
        assert!(String::from_utf8_lossy(&answer).contains("<return>true</return>"));
        assert_eq!(lock(&inner.deprecations).get("ami-1").map(String::as_str), Some("2026-12-15T09:00:00Z"));
        let xml = "<DescribeImagesResponse><imagesSet><item><imageId>ami-1</imageId></item><item><imageId>ami-2</imageId></item></imagesSet></DescribeImagesResponse>";
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{xml}", xml.len()).into_bytes();
        let out = String::from_utf8(with_deprecation_times(&lock(&inner.deprecations), raw)).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(body.contains("<imageId>ami-1</imageId><deprecationTime>2026-12-15T09:00:00Z</deprecationTime>"));
        assert!(!body.contains("<imageId>ami-2</imageId><deprecationTime>"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let off = b"Action=DisableImageDeprecation&ImageId=ami-1";
        deprecation(&inner, "ec2:DisableImageDeprecation", off).unwrap();
        assert!(lock(&inner.deprecations).is_empty());
    }

    #[test]
    fn a_rest_json_error_is_a_well_formed_response_with_its_type() {
        let raw = String::from_utf8(rest_error(403, "ForbiddenException", "no")).unwrap();
        assert!(raw.starts_with("HTTP/1.1 403 Forbidden\r\nx-amzn-ErrorType: ForbiddenException\r\n"), "{raw}");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{raw}");
    }

    #[test]
    fn the_operation_comes_from_the_target_header_or_the_query_body() {
        let json = Request {
            head: vec![
                "POST / HTTP/1.1".into(),
                "X-Amz-Target: AmazonSSM.GetParameter".into(),
                "Authorization: AWS4-HMAC-SHA256 Credential=testing/20261127/eu-west-2/ssm/aws4_request, SignedHeaders=x".into(),
            ],
            body: b"{}".to_vec(),
        };
        assert_eq!(json.operation(), "GetParameter");
        assert_eq!(json.scope(), ("testing".into(), "eu-west-2".into(), "ssm".into()));
        let query =
            Request { head: vec!["POST / HTTP/1.1".into()], body: b"Action=CopyImage&Version=2016-11-15".to_vec() };
        assert_eq!(query.operation(), "CopyImage");
    }
}
