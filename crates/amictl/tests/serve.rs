//! `amictl serve` through the real binary, against moto for the reference organisation:
//! cycles on its own, builds held for approval and carried out once approved (API and
//! CLI), every API response checked against the OpenAPI document, kill -9 mid-cycle
//! resumed by the next server, and a modelled week told by the audit chain.

mod cloud;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud::*;
use serde_json::{Value, json};

const TOKEN: &str = "serve-test-token-5b1f0c27a9";

fn with_serve(org: &Org, policy: &str, serve: &str) {
    std::fs::write(org.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    org.edit("[policy]\n", &format!("[policy]\n{policy}"));
    let mut text = std::fs::read_to_string(&org.config).unwrap();
    text.push_str(&format!("\n[serve]\ntoken = {{ file = \"token\" }}\n{serve}"));
    std::fs::write(&org.config, text).unwrap();
}

fn kinds(org: &Org) -> Vec<(String, String, String)> {
    org.catalog().events(None).unwrap().into_iter().map(|e| (e.kind, e.subject, e.reason)).collect()
}

/// The document's schema for `method path` answering `status`, with its `$ref`s resolvable.
fn schema_for(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let op = &doc["paths"][path][method]["responses"][status.to_string()]["content"];
    let schema = op.as_object().and_then(|c| c.values().next()).map(|c| c["schema"].clone());
    let mut schema = schema.unwrap_or_else(|| panic!("{method} {path} {status} is not documented"));
    schema["components"] = doc["components"].clone();
    schema
}

fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let schema = schema_for(doc, method, path, status);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {path} → {status} does not match the OpenAPI document: {errors:?}\n{body:#}");
}

#[test]
fn serve_holds_builds_for_approval_runs_them_once_approved_and_answers_as_its_openapi_says() {
    let org = Org::new();
    with_serve(&org, "require_approval = [\"build\"]\napproval_ttl = \"2d\"\n", "watch_interval = \"1h\"\n");
    let serve = Serving::start(&org);
    // The start-up cycle plans both lines' first builds and holds them.
    let pending = serve.until("/api/approvals", "both builds held", |v| v.as_array().is_some_and(|a| a.len() == 2));
    let plan =
        serve.until("/api/plan", "the held cycle's report", |v| v["held"].as_array().is_some_and(|h| h.len() == 2));
    assert!(plan["actions"].as_array().unwrap().iter().all(|a| a["held"].is_string() && a["ok"] == true), "{plan:#}");
    let bastion = pending.as_array().unwrap().iter().find(|a| a["subject"] == BASTION).unwrap().clone();
    let ecs = pending.as_array().unwrap().iter().find(|a| a["subject"] == ECS).unwrap().clone();
    assert_eq!(bastion["reasons"], "never built");

    // Changes need the token.
    let id = bastion["id"].as_str().unwrap();
    let (code, _) = serve.post(&format!("/api/approvals/{id}/approve"), None, json!({}));
    assert_eq!(code, 401);
    let (code, _) = serve.post(&format!("/api/approvals/{id}/approve"), Some("wrong-token-000000000"), json!({}));
    assert_eq!(code, 401);
    let (code, approved) = serve.post(&format!("/api/approvals/{id}/approve"), Some(TOKEN), json!({"by": "alice"}));
    assert_eq!(code, 200, "{approved:#}");
    assert_eq!(
        (approved["status"].as_str(), approved["decided_by"].as_str()),
        (Some("approved"), Some("alice (API token)"))
    );
    // A second decision on the same request is refused.
    let (code, again) = serve.post(&format!("/api/approvals/{id}/deny"), Some(TOKEN), json!({}));
    assert_eq!(code, 409, "{again:#}");

    // The approval starts a cycle, which builds the bastion line and only that.
    let images = serve.until("/api/images", "the approved line built", |v| {
        v.as_array().is_some_and(|a| a.iter().any(|l| l["image"] == BASTION && l["newest"].is_string()))
    });
    serve.until("/api/status", "the approval's cycle ended", |v| {
        v["last_cycle"]["trigger"] == "approval" && v["running"].is_null()
    });
    let ecs_line = images.as_array().unwrap().iter().find(|l| l["image"] == ECS).unwrap();
    assert!(ecs_line["newest"].is_null(), "the unapproved line is not built: {images:#}");
    let chain = kinds(&org);
    let at = |kind: &str, subject: &str| {
        chain
            .iter()
            .position(|(k, s, _)| k == kind && (s == subject || s.starts_with(&format!("{subject}@"))))
            .unwrap_or_else(|| panic!("no {kind} {subject}: {chain:#?}"))
    };
    assert!(at("approval.requested", BASTION) < at("approval.approved", BASTION));
    assert!(at("approval.approved", BASTION) < at("build.intent", BASTION));
    assert!(at("build.intent", BASTION) < at("approval.used", BASTION));
    assert!(chain.iter().any(|(k, _, r)| k == "approval.approved" && r == "approved by alice (API token)"));
    assert!(!chain.iter().any(|(k, s, _)| k == "build.intent" && s.starts_with(ECS)));

    // Every read answers as the OpenAPI document says.
    let (code, doc) = serve.get("/openapi.json");
    assert_eq!(code, 200);
    for path in [
        "/health",
        "/ready",
        "/api/status",
        "/api/plan",
        "/api/images",
        "/api/fleet",
        "/api/consumers",
        "/api/advisories",
        "/api/approvals",
    ] {
        let (code, body) = serve.get(path);
        assert_eq!(code, 200, "{path}: {body:#}");
        check(&doc, "get", path, code, &body);
    }
    let (code, body) = serve.get(&format!("/api/images/{BASTION}/versions"));
    check(&doc, "get", "/api/images/{image}/versions", code, &body);
    assert_eq!(body[0]["state"], "available");
    let (code, body) = serve.get("/api/images/nope/versions");
    assert_eq!(code, 404);
    check(&doc, "get", "/api/images/{image}/versions", code, &body);
    let (code, page) = serve.get("/api/audit?limit=3");
    check(&doc, "get", "/api/audit", code, &page);
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let next = page["next_after"].as_i64().unwrap();
    let (_, rest) = serve.get(&format!("/api/audit?after={next}&limit=1000"));
    assert_eq!(rest["events"][0]["seq"].as_i64(), Some(next + 1), "pages follow each other");
    let (code, all) = serve.get("/api/approvals?status=all");
    check(&doc, "get", "/api/approvals", code, &all);
    let (code, body) = serve.post("/api/cycles", None, json!({}));
    assert_eq!(code, 401);
    check(&doc, "post", "/api/cycles", code, &body);
    let (_, metrics) = serve.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains("amictl_serve_cycles_total 2"), "{metrics}");
    assert!(metrics.contains("amictl_serve_approvals_pending 1"), "{metrics}");

    // The other build is approved from a terminal; a cycle is asked for over the API and
    // the server is killed -9 once the build has started.
    let ecs_id = ecs["id"].as_str().unwrap();
    let out = org.command(&["approve", ecs_id, "--as", "bob"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = org.command(&["deny", ecs_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "deciding twice is refused: {}", String::from_utf8_lossy(&out.stderr));
    org.edit(
        "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"50ms\"\n",
        "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"400ms\"\n",
    );
    let (code, body) = serve.post("/api/cycles", Some(TOKEN), json!({}));
    assert_eq!(code, 202);
    check(&doc, "post", "/api/cycles", code, &body);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !kinds(&org).iter().any(|(k, s, _)| k == "build.intent" && s.starts_with(ECS)) {
        assert!(Instant::now() < deadline, "the approved build never started: {}", serve.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut serve = serve;
    let pid = serve.child.id();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    serve.child.wait().unwrap();
    // Its cycle died with it (PR_SET_PDEATHSIG): no apply of this config is left running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while applies_of(&org) > 0 {
        assert!(Instant::now() < deadline, "a cycle outlived its server");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(serve);

    // A new server resumes: the dead run's intents are closed, its build cleaned up, and
    // the still-approved build carried out.
    let serve = Serving::start(&org);
    serve.until("/api/status", "the resumed cycle", |v| {
        v["last_cycle"]["trigger"] == "resume" && v["running"].is_null()
    });
    serve.until("/api/images", "the resumed build", |v| {
        v.as_array().is_some_and(|a| a.iter().any(|l| l["image"] == ECS && l["newest"].is_string()))
    });
    let chain = kinds(&org);
    assert!(chain.iter().any(|(k, s, _)| k == "build.outcome" && s.starts_with(ECS)), "{chain:#?}");
    assert!(chain.iter().any(|(k, _, _)| k == "recover.intent"), "the killed build is recovered: {chain:#?}");
    assert!(chain.iter().any(|(k, s, r)| k == "approval.used" && s == ECS && r.contains("bob")), "{chain:#?}");
    assert!(org.catalog().open_intents().unwrap().is_empty());
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    assert_eq!(rt.block_on(live_build_instances(&aws)), Vec::<(String, String)>::new(), "nothing orphaned");
    let out = org.command(&["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A webhook receiver on loopback: every body POSTed to it.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/secret-path-9d2e", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                sink.lock().unwrap().push(v);
            }
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, got)
}

#[test]
fn a_modelled_week_a_critical_fix_on_day_2_is_rebuilt_within_the_watch_interval_and_escalated_on_time() {
    // A consumer account launches the platform's shared copy (moto checks AMI ownership).
    let org = Org::with_moto(motogap::Moto::start_with_ami_validation(false));
    let (hook, got) = receiver();
    with_serve(
        &org,
        "",
        "schedule = \"0 3 * * *\"\nwatch_interval = \"1h\"\n[serve.webhooks.ops]\nurl = { env = \"AMICTL_TEST_HOOK\" }\n",
    );
    org.edit("rollout_sla = \"14d\"", "rollout_sla = \"5d\"");
    let line = format!("[images.{BASTION}]\n");
    org.edit(&line, &format!("{line}advisories = {{ inspector = true }}\n"));
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let (topic_arn, _sqs, _queue) = owners_queue(&rt, &aws);
    assert!(topic_arn.ends_with(":amictl-rollouts"));
    // Day 0 is the start of this hour: the first cycle builds both lines.
    let day0 = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() / 3600 * 3600).unwrap();
    let at = |days: i64, hours: i64| day0.saturating_add(jiff::SignedDuration::from_hours(days * 24 + hours)).unwrap();
    let serve = |from: jiff::Timestamp, until: jiff::Timestamp| {
        let out = org
            .command(&["serve", "--from", &from.to_string(), "--until", &until.to_string()])
            .env("AMICTL_TEST_HOOK", &hook)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let log = serve(day0, at(2, 0));
    assert!(!log.contains("secret-path-9d2e"), "the webhook URL is a secret: {log}");
    // goobi's bastion runs the first version.
    let v1 = published_ami(&org, BASTION, "workflow");
    rt.block_on(seed_bastion(&aws, "workflow", "goobi-bastion", &v1));
    // Day 2, 00:20: Inspector reports a critical, fixable finding on it.
    let published = at(2, 0).saturating_add(jiff::SignedDuration::from_mins(20)).unwrap();
    let finding = json!({
        "findingArn": "arn:aws:inspector2:eu-west-1:222222222222:finding/0002",
        "awsAccountId": "222222222222", "type": "PACKAGE_VULNERABILITY", "status": "ACTIVE",
        "description": "glibc: a flaw", "title": "CVE-2027-0002 - glibc",
        "remediation": {"recommendation": {"text": "Update glibc"}},
        "severity": "CRITICAL", "firstObservedAt": published.as_second(), "lastObservedAt": published.as_second(), "fixAvailable": "YES",
        "resources": [{"id": "i-0123456789abcdef0", "type": "AWS_EC2_INSTANCE", "details": {"awsEc2Instance": {"imageId": v1}}}],
        "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2027-0002", "source": "ALAS",
            "vulnerablePackages": [{"name": "glibc", "version": "2.26", "epoch": 0, "release": "60.amzn2",
                                    "arch": "X86_64", "fixedInVersion": "0:2.26-61.amzn2"}]}
    });
    let seed = json!({"account_id": "222222222222", "region": "eu-west-1", "results": [[finding]]});
    ureq::post(&format!("{}/moto-api/static/inspector2/findings-results", org.moto.url()))
        .header("content-type", "application/json")
        .send(seed.to_string())
        .unwrap();
    serve(at(2, 0), at(7, 6));

    let events = org.catalog().events(None).unwrap();
    let find = |pred: &dyn Fn(&catalog::AuditEvent) -> bool, what: &str| {
        events.iter().find(|e| pred(e)).unwrap_or_else(|| {
            panic!(
                "{what} is not in the chain: {:#?}",
                events.iter().map(|e| (&e.time, &e.kind, &e.subject, &e.reason)).collect::<Vec<_>>()
            )
        })
    };
    let t = |e: &catalog::AuditEvent| e.time.parse::<jiff::Timestamp>().unwrap();
    let matched = find(&|e| e.kind == "watch.matched" && e.subject == BASTION, "the watch's match");
    assert!(
        t(matched) > published && t(matched).as_second() - published.as_second() <= 3600,
        "seen within one watch interval: {}",
        matched.time
    );
    let decided =
        find(&|e| e.seq > matched.seq && e.kind == "decision" && e.subject == BASTION, "the rebuild decision");
    eprintln!(
        "modelled: fix published {published}, watch matched {} ({} s later), rebuild decided {}",
        matched.time,
        t(matched).as_second() - published.as_second(),
        decided.time
    );
    assert_eq!(decided.data["reasons"][0]["kind"], "advisories", "{:#}", decided.data);
    assert_eq!(decided.data["reasons"][0]["advisories"], json!(["CVE-2027-0002"]));
    let built =
        find(&|e| e.seq > decided.seq && e.kind == "build.outcome" && e.data["result"] == "done", "the rebuild");
    let released = find(
        &|e| e.seq > built.seq && e.kind == "notice.queued" && e.data["event"] == "version.released",
        "the release notice",
    );
    let notified = find(
        &|e| e.seq > built.seq && e.kind == "rollout.notified" && e.subject == "consumer:goobi-bastion",
        "goobi told to move",
    );
    let soon = find(
        &|e| e.kind == "notice.queued" && e.data["event"] == "deadline.soon" && e.subject == "consumer:goobi-bastion",
        "the 3-day warning",
    );
    let passed = find(
        &|e| e.kind == "notice.queued" && e.data["event"] == "deadline.passed" && e.subject == "consumer:goobi-bastion",
        "the escalation",
    );
    assert!(matched.seq < decided.seq && decided.seq < built.seq && built.seq < released.seq.min(notified.seq));
    assert!(released.seq < soon.seq && soon.seq < passed.seq);
    // The release is at day 2 (+ the cycle's minutes): the warning falls on day 2 + SLA − 3,
    // the escalation once the SLA has passed, each within one watch interval.
    let release = t(built);
    let sla = jiff::SignedDuration::from_hours(5 * 24);
    let warn_at = release.saturating_add(sla - jiff::SignedDuration::from_hours(72)).unwrap();
    assert!(
        t(soon) >= warn_at && t(soon).as_second() - warn_at.as_second() <= 3600,
        "warned at {} (due {warn_at})",
        soon.time
    );
    let deadline = release.saturating_add(sla).unwrap();
    assert!(
        t(passed) >= deadline && t(passed).as_second() - deadline.as_second() <= 3600,
        "escalated at {} (deadline {deadline})",
        passed.time
    );
    // The webhook got each, Slack-shaped, and no secret.
    let bodies = got.lock().unwrap().clone();
    for event in ["version.released", "deadline.soon", "deadline.passed"] {
        let b =
            bodies.iter().find(|b| b["event"] == event).unwrap_or_else(|| panic!("no {event} delivered: {bodies:#?}"));
        assert!(b["text"].as_str().unwrap().starts_with("amictl: "), "{b:#}");
        assert_eq!(b["blocks"][0]["type"], "section");
    }
    assert!(!serde_json::to_string(&bodies).unwrap().contains(SECRET));
}

#[test]
fn sigterm_stops_the_server_and_its_running_cycle_cleans_up_what_it_made() {
    let org = Org::new();
    with_serve(&org, "", "");
    org.edit(
        "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"50ms\"\n",
        "[aws]\nregion = \"eu-west-1\"\npoll_interval = \"400ms\"\n",
    );
    let mut serve = Serving::start(&org);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !kinds(&org).iter().any(|(k, _, _)| k == "build.intent") {
        assert!(Instant::now() < deadline, "the start-up cycle never built: {}", serve.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(serve.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = serve.child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{}", serve.log());
    assert!(serve.log().contains("stopping the running cycle"), "{}", serve.log());
    // The cycle recorded its own end: interrupted, after cleaning up; nothing is open or left.
    let chain = kinds(&org);
    assert!(chain.iter().any(|(k, _, r)| k.ends_with(".outcome") && r == "interrupted by the operator"), "{chain:#?}");
    assert!(org.catalog().open_intents().unwrap().is_empty(), "{chain:#?}");
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    assert_eq!(rt.block_on(live_build_instances(&aws)), Vec::<(String, String)>::new(), "nothing orphaned");
}
