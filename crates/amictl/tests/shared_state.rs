//! One history for a team, through the real binary against moto: the reference
//! organisation on PostgreSQL (a server from the system's packages on loopback), copied to
//! SQLite and back hash for hash; two `serve` replicas on one database, of which exactly
//! one acts and the other takes over when it is killed; PostgreSQL stopped mid-build; and
//! the audit anchors (signed checkpoints in a directory and S3 Object Lock objects in moto)
//! catching a deleted tail, a rewritten chain and a deleted database.

mod cloud;

use std::time::{Duration, Instant};

use cloud::*;
use pgtest::Postgres;
use serde_json::Value;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "pg-canary-4e1b9d77-never-logged";
const TOKEN: &str = "shared-state-token-8c2f1a";

/// Points the org at `url`, its password in a file (trust auth ignores it; it must
/// still never appear anywhere but that file).
fn on_postgres(org: &Org, url: &str) {
    std::fs::write(org.dir.path().join("pgpass"), format!("{PASSWORD}\n")).unwrap();
    let mut text = std::fs::read_to_string(&org.config).unwrap();
    text.push_str(&format!("\n[state]\nurl = \"{url}\"\npassword = {{ file = \"pgpass\" }}\n"));
    std::fs::write(&org.config, text).unwrap();
}

fn pg_catalog(url: &str) -> catalog::Catalog {
    catalog::Catalog::open_at(&catalog::Location::postgres(url, None).unwrap()).unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// No file under the org's directory but the password file holds the password.
fn password_only_in_its_file(org: &Org) {
    let hits = files_containing(org.dir.path(), PASSWORD.as_bytes());
    assert_eq!(hits, [org.dir.path().join("pgpass")], "the state's password leaked into {hits:?}");
}

#[test]
fn the_reference_organisation_on_postgresql_exports_what_sqlite_holds_and_copies_both_ways() {
    let server = Postgres::start();
    let org = Org::new();
    let plain = std::fs::read_to_string(&org.config).unwrap();
    let url = server.create_db("story");
    on_postgres(&org, &url);

    let started = Instant::now();
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    eprintln!("apply of the reference organisation on PostgreSQL: {:.1?}", started.elapsed());
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let shared = pg_catalog(&url);
    assert_eq!(shared.versions(None).unwrap().len(), 2, "both lines built, recorded in PostgreSQL");
    assert!(!org.dir.path().join(".amictl/state.db").exists(), "and nothing in a SQLite file");
    let verify = org.command(&["audit", "verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("database ok: PostgreSQL postgres://amictl@127.0.0.1"), "{}", text(&verify));
    let export_pg = org.command(&["audit", "export", "--jsonl"]).output().unwrap();
    assert!(export_pg.status.success());

    // PostgreSQL → SQLite: the same bytes, every hash re-computed on arrival.
    let copy = org.dir.path().join("copy.db");
    let out = org.command(&["--json", "state", "copy", "--to", copy.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copied: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(copied["copied"]["events"].as_u64(), Some(shared.event_count().unwrap() as u64));
    let lite_config = org.dir.path().join("lite.toml");
    std::fs::write(&lite_config, format!("{plain}\n[state]\npath = \"copy.db\"\n")).unwrap();
    let export_lite = org.command_with(&lite_config, &["audit", "export", "--jsonl"]).output().unwrap();
    assert!(!export_pg.stdout.is_empty());
    assert_eq!(export_lite.stdout, export_pg.stdout, "audit export agrees across backends, byte for byte");
    let verify = org.command_with(&lite_config, &["audit", "verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // SQLite → PostgreSQL, and a copy never goes into a state that holds a history.
    let back = server.create_db("back");
    let out = org.command_with(&lite_config, &["state", "copy", "--to", &back]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(pg_catalog(&back).events(None).unwrap(), shared.events(None).unwrap());
    let again = org.command_with(&lite_config, &["state", "copy", "--to", &back]).output().unwrap();
    assert_ne!(again.status.code(), Some(0));
    assert!(text(&again).contains("already holds a history"), "{}", text(&again));

    // The copy carries on as the state: a second apply on it has nothing to build.
    let (code, out, stderr) = org.run(&["--json", "plan"]);
    assert_eq!(code, 0, "nothing to do on the shared state: {stderr}\n{out:#}");
    password_only_in_its_file(&org);
    for said in [text(&export_pg), copied.to_string(), text(&verify)] {
        assert!(!said.contains(PASSWORD));
    }
}

#[test]
fn two_replicas_on_one_database_exactly_one_acts_and_the_other_takes_over_when_it_is_killed() {
    let server = Postgres::start();
    let org = Org::new();
    let url = server.create_db("team");
    on_postgres(&org, &url);
    std::fs::write(org.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let mut config = std::fs::read_to_string(&org.config).unwrap();
    // Never due during the test: each replica's first start runs a cycle at once, so
    // both fall due at the same moment.
    config.push_str("\n[serve]\ntoken = { file = \"token\" }\nschedule = \"0 3 1 1 *\"\n");
    std::fs::write(&org.config, config).unwrap();
    org.slow_run_command();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    org.gap.reset_calls();
    let mut replicas = [Serving::start(&org), Serving::start(&org)];

    // One leads and runs the cycle; the other serves the API and never starts one.
    let deadline = Instant::now() + Duration::from_secs(180);
    let leader = loop {
        let leading: Vec<bool> = replicas.iter().map(|r| r.get("/api/status").1["leading"] == true).collect();
        assert!(leading.iter().filter(|l| **l).count() <= 1, "two replicas lead at once");
        assert!(applies_of(&org) <= 1, "two cycles run at once");
        let tester = rt.block_on(live_build_instances(&aws)).iter().any(|(_, role)| role == "tester");
        if let (Some(i), true) = (leading.iter().position(|l| *l), tester) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no cycle reached a test instance:\n{}\n{}",
            replicas[0].log(),
            replicas[1].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let follower = 1 - leader;
    let starts = |cat: &catalog::Catalog| cat.events(None).unwrap().iter().filter(|e| e.kind == "apply.start").count();
    assert_eq!(starts(&pg_catalog(&url)), 1, "exactly one replica's cycle began");
    assert_eq!(replicas[follower].get("/api/status").1["running"], Value::Null, "the follower runs nothing");

    // kill -9 of the acting replica: its cycle dies with it; the other takes over.
    let _ = replicas[leader].child.kill();
    let _ = replicas[leader].child.wait();
    let killed = Instant::now();
    replicas[follower].until("/api/status", "the follower takes over", |s| s["leading"] == true);
    let takeover = killed.elapsed();
    eprintln!("takeover after kill -9 of the leader: {takeover:.1?}");
    assert!(takeover < Duration::from_secs(15), "within one lock timeout (2 s poll) and a margin: {takeover:?}");
    org.gap.clear_faults();
    let status = replicas[follower].until("/api/status", "the resumed cycle finishes", |s| {
        s["running"].is_null() && s["last_cycle"]["ok"] == true
    });
    assert_eq!(status["last_cycle"]["trigger"], "resume", "{status:#}\n{}", replicas[follower].log());

    // It finished or cleaned up what the killed cycle began: nothing left running, no AMI
    // twice, a chain that verifies.
    assert!(rt.block_on(live_build_instances(&aws)).is_empty(), "no build instance left running");
    for region in REGIONS {
        for (name, ids) in rt.block_on(own_images(&aws, region)) {
            assert_eq!(ids.len(), 1, "{name} exists {} times in {region}", ids.len());
        }
    }
    // moto's call log: every AMI made, built or copied, is either released (each line's AMI
    // and its copy into the other region) or deregistered (the killed cycle's, with the copy
    // it may have started beside its tests).
    let calls = org.gap.calls();
    let n = |op: &str| calls.get(op).copied().unwrap_or(0);
    assert!((2..=4).contains(&n("ec2:CopyImage")), "one copy per line, and the killed cycle's: {calls:#?}");
    assert_eq!(n("ec2:CreateImage") + n("ec2:CopyImage"), n("ec2:DeregisterImage") + 4, "{calls:#?}");
    assert_eq!(
        n("ec2:RunInstances"),
        n("ec2:TerminateInstances"),
        "every instance launched was terminated: {calls:#?}"
    );
    let cat = pg_catalog(&url);
    assert_eq!(starts(&cat), 2, "the killed cycle and the one that resumed it");
    assert!(cat.open_intents().unwrap().is_empty(), "every intent has its outcome");
    let verify = org.command(&["audit", "verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    password_only_in_its_file(&org);
    assert!(!replicas[follower].log().contains(PASSWORD));
}

#[test]
fn postgresql_stopped_mid_build_is_a_clear_error_and_the_next_apply_carries_on() {
    let mut server = Postgres::start();
    let org = Org::new();
    let url = server.create_db("outage");
    on_postgres(&org, &url);
    org.slow_run_command();
    let rt = runtime();
    let aws = rt.block_on(org.aws());
    let child = org
        .command(&["build", BASTION])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !rt.block_on(live_build_instances(&aws)).iter().any(|(_, role)| role == "tester") {
        assert!(start.elapsed() < Duration::from_secs(120), "no test instance appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let out = child.wait_with_output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "a failed run: {said}");
    assert!(said.contains("state database postgres://amictl@127.0.0.1"), "the error names the state: {said}");
    assert!(!said.contains("panicked") && !said.contains(PASSWORD), "{said}");

    server.start_again();
    org.gap.clear_faults();
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "the next apply carries on once PostgreSQL is back: {stderr}\n{out:#}");
    assert!(rt.block_on(live_build_instances(&aws)).is_empty(), "nothing left running");
    for region in REGIONS {
        for (name, ids) in rt.block_on(own_images(&aws, region)) {
            assert_eq!(ids.len(), 1, "{name} exists {} times in {region}", ids.len());
        }
    }
    let cat = pg_catalog(&url);
    assert!(cat.open_intents().unwrap().is_empty());
    assert_eq!(cat.verify_chain().unwrap().map(|n| n > 0), Ok(true), "a whole chain: no half-written record");
    let verify = org.command(&["audit", "verify"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

/// The chain's hash of one event, as amictl computes it (length-prefixed fields).
fn event_hash(seq: i64, fields: [&str; 7]) -> String {
    let mut h = Sha256::new();
    let seq = seq.to_string();
    for f in std::iter::once(seq.as_str()).chain(fields) {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An attacker with the database file: changes event `seq`'s reason and re-hashes every
/// later event so the chain verifies again.
fn rewrite_from(db: &std::path::Path, seq: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;").unwrap();
    let rows: Vec<(i64, [String; 8])> = {
        let mut stmt = conn
            .prepare("SELECT seq, time, actor, kind, subject, reason, data, prev_hash, hash FROM audit_events WHERE seq >= ?1 ORDER BY seq")
            .unwrap();
        stmt.query_map([seq], |r| {
            Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?]))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let mut prev = rows[0].1[6].clone();
    for (s, [time, actor, kind, subject, reason, data, _, _]) in rows {
        let reason = if s == seq { "nothing to see here".to_string() } else { reason };
        let hash = event_hash(s, [&time, &actor, &kind, &subject, &reason, &data, &prev]);
        conn.execute(
            "UPDATE audit_events SET reason = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1",
            rusqlite::params![s, reason, prev, hash],
        )
        .unwrap();
        prev = hash;
    }
}

fn restore(db: &std::path::Path, backup: &std::path::Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(backup, db).unwrap();
}

/// Creates an S3 bucket with Object Lock in moto (an HTTP PUT; moto takes any signature).
fn object_lock_bucket(org: &Org, bucket: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(org.moto.addr).unwrap();
    let body =
        "<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nhost: {}\r\nx-amz-bucket-object-lock-enabled: true\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        org.moto.addr,
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn anchors_in_a_directory_and_under_s3_object_lock_catch_a_deleted_tail_a_rewritten_chain_and_a_lost_database() {
    let org = Org::new();
    object_lock_bucket(&org, "amictl-anchors");
    let key = org.dir.path().join("anchor.key");
    let out = org.command(&["audit", "keygen", key.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(public.len(), 64);
    let seed = std::fs::read_to_string(&key).unwrap().trim().to_string();
    let mut config = std::fs::read_to_string(&org.config).unwrap();
    config.push_str(
        "\n[audit.anchors]\ndir = \"anchors\"\ns3 = \"s3://amictl-anchors/platform\"\nsigning_key = { file = \"anchor.key\" }\n",
    );
    std::fs::write(&org.config, config).unwrap();

    // Every apply anchors its head: once after the build, once after a second run.
    let (code, out, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}\n{out:#}");
    let first = org.catalog().event_count().unwrap();
    let (code, _, stderr) = org.run(&["--json", "apply"]);
    assert_eq!(code, 0, "{stderr}");
    let head = org.catalog().event_count().unwrap();
    assert!(head > first, "the second run recorded events");
    let verify = org.command(&["audit", "verify"]).output().unwrap();
    let said = text(&verify);
    assert_eq!(verify.status.code(), Some(0), "{said}");
    assert!(said.contains("anchors dir:") && said.contains("anchors s3://amictl-anchors/platform: intact"), "{said}");
    assert!(said.contains("(2 checkpoint(s) listed)"), "{said}");
    let db = org.dir.path().join(".amictl/state.db");
    let backup = org.dir.path().join("backup.db");
    assert!(org.command(&["state", "backup", backup.to_str().unwrap()]).status().unwrap().success());

    // 1. The last events deleted.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP TRIGGER audit_no_delete;").unwrap();
        conn.execute("DELETE FROM open_intents WHERE seq > ?1", [head - 2]).unwrap();
        conn.execute("DELETE FROM audit_events WHERE seq > ?1", [head - 2]).unwrap();
    }
    for anchors in [None, Some("s3://amictl-anchors/platform")] {
        let mut args = vec!["audit", "verify"];
        args.extend(anchors.map(|a| ["--anchors", a]).into_iter().flatten());
        let out = org.command(&args).output().unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains("audit chain ok"), "the chain alone cannot tell: {said}");
        assert!(said.contains(&format!("TAIL DELETED: the chain ends at event {}", head - 2)), "{said}");
        assert!(said.contains(&format!("last good checkpoint: event {first} ")), "names the last good one: {said}");
    }

    // 2. An event changed and every later one re-hashed.
    restore(&db, &backup);
    rewrite_from(&db, 3);
    let out = org.command(&["--json", "audit", "verify"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(report["chain"]["ok"], true, "re-hashed, the chain verifies: {report:#}");
    for j in report["anchors"].as_array().unwrap() {
        assert_eq!(j["verdict"]["status"], "rewritten", "{j:#}");
        assert!(j["last_good"].is_null(), "no checkpoint agrees with a chain rewritten from event 3: {j:#}");
    }

    // 3. The database deleted, and everything beside it: the anchors remember.
    for f in std::fs::read_dir(org.dir.path().join(".amictl")).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("state.") {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    let (code, _, stderr) = org.run(&["plan"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("holds checkpoints of a history") && stderr.contains("Restore the state from a backup"),
        "{stderr}"
    );
    assert!(!db.exists(), "no new, empty history was started");
    let out = org.command(&["audit", "verify", "--anchors", "s3://amictl-anchors/platform"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("HISTORY MISSING"), "{}", text(&out));

    // Restored from the backup, it is whole again; the key never left its file.
    restore(&db, &backup);
    let out = org.command(&["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(files_containing(org.dir.path(), seed.as_bytes()), [key], "the signing key is only in its file");
    assert!(std::fs::read_dir(org.dir.path().join("anchors")).unwrap().flatten().count() >= 1);
    assert!(public.chars().all(|c| c.is_ascii_hexdigit()));
}
