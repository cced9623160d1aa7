//! The catalog on a real PostgreSQL (from the system's packages, on loopback): the same
//! history as on SQLite, hash for hash; copies both ways; the run lock and leadership as
//! advisory locks; a server that goes away mid-write.

use catalog::{Catalog, CatalogError, Leadership, Location, NewEvent, RunLock, ScanHost};
use pgtest::Postgres;

fn event<'a>(kind: &'a str, data: &'a serde_json::Value, opens: bool) -> NewEvent<'a> {
    NewEvent {
        time: "2026-12-02T10:00:00Z",
        actor: "alice@laptop (amictl 0.1.0)",
        kind,
        subject: "al2023-ecs@2026.12.02.1",
        reason: "age 91d ≥ max 90d; ALAS2023-2026-812 (critical) in openssl-libs",
        data,
        opens,
        closes: None,
    }
}

/// The same story, written through the catalog's API.
fn story(c: &mut Catalog) {
    let reason = serde_json::json!([{"kind": "age"}]);
    let build = catalog::NewBuild {
        build_id: "b-1",
        image: "al2023-ecs",
        version: "2026.12.02.1",
        reason: &reason,
        recipe_hash: "r",
        parent_id: "ami-0parent",
        parent_name: "al2023-ami-ecs-hvm-2023.0.20261201-x86_64",
        parent_created: "2026-12-01T00:00:00Z",
        started_at: "2026-12-02T10:00:00Z",
        log_dir: "/logs/b-1",
        components: &[catalog::ComponentUse { name: "ssm".into(), version: "1.0.0".into(), sha256: "ab".into() }],
        runner: "1",
    };
    c.insert_build(&build).unwrap();
    for s in [catalog::BuildState::Building, catalog::BuildState::Testing, catalog::BuildState::Available] {
        c.set_state("b-1", s, None, "2026-12-02T10:30:00Z").unwrap();
    }
    let tests = [provider::TestResult { name: "ssm-online".into(), passed: true, detail: "ok".into() }];
    c.record_outputs("b-1", &[], &[], &tests).unwrap();
    let data = serde_json::json!({"build_id": "b-1", "text": "é \"quoted\" ✓ \u{1F600}", "n": 1.5e300});
    let intent = c.append_event(&event("build.intent", &data, true)).unwrap();
    let closing = serde_json::json!({"intent": intent.seq, "result": "done"});
    c.append_event(&NewEvent { closes: Some(intent.seq), ..event("build.outcome", &closing, false) }).unwrap();
    c.append_event(&event("publish.intent", &data, true)).unwrap();
    let host = ScanHost {
        account: "archivematica".into(),
        region: "eu-west-2".into(),
        instance_id: "i-1".into(),
        image_id: "ami-1".into(),
        image: Some("al2023-ecs".into()),
        version: Some("2026.12.02.1".into()),
        standing: "current".into(),
        detail: "{}".into(),
    };
    c.record_scan("2026-12-02T11:00:00Z", "archivematica", Ok(&[host])).unwrap();
    c.record_scan("2026-12-02T11:00:00Z", "goobi", Err("AccessDenied")).unwrap();
    c.set_job("cycle", "2026-12-02T03:00:00Z", &serde_json::json!({"ok": true})).unwrap();
}

fn pg(server: &Postgres, db: &str) -> Location {
    Location::postgres(&server.create_db(db), None).unwrap()
}

#[test]
fn the_same_history_on_postgresql_hashes_as_on_sqlite_and_copies_both_ways() {
    let server = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Catalog::open(&dir.path().join("state.db")).unwrap();
    let mut shared = Catalog::open_at(&pg(&server, "story")).unwrap();
    story(&mut lite);
    story(&mut shared);
    assert_eq!(shared.events(None).unwrap(), lite.events(None).unwrap(), "every field and every hash");
    assert_eq!(shared.verify_chain().unwrap(), Ok(3));
    assert_eq!(shared.open_intents().unwrap().len(), 1);
    assert_eq!(shared.latest_scans().unwrap(), lite.latest_scans().unwrap());
    assert_eq!(shared.versions_in_use().unwrap(), lite.versions_in_use().unwrap());
    let (v_pg, v_lite) = (&shared.versions(None).unwrap()[0], &lite.versions(None).unwrap()[0]);
    assert_eq!(
        (v_pg.tests_passed, &v_pg.components, v_pg.state),
        (v_lite.tests_passed, &v_lite.components, v_lite.state)
    );
    assert!(shared.missing_safeguards().unwrap().is_empty(), "the append-only triggers are there");
    // As someone with the database's credentials would try it.
    let refused = server.try_sql("story", "UPDATE audit_events SET reason = 'x' WHERE seq = 1");
    assert!(refused.unwrap_err().contains("append-only"));

    // SQLite → PostgreSQL and back, each proven by re-hashing on arrival.
    let target = Catalog::open_at(&pg(&server, "copy")).unwrap();
    let copied = lite.copy_to(&target).unwrap();
    assert_eq!(copied.events, 3);
    assert_eq!(target.events(None).unwrap(), lite.events(None).unwrap());
    let back = Catalog::open(&dir.path().join("back.db")).unwrap();
    target.copy_to(&back).unwrap();
    assert_eq!(back.events(None).unwrap(), lite.events(None).unwrap());
    assert_eq!(back.latest_scans().unwrap(), lite.latest_scans().unwrap());
    // The copied history goes on where it left off: numbers continue, nothing collides.
    let mut target = target;
    assert_eq!(target.record_scan("t9", "goobi", Err("again")).unwrap(), 3);
    let err = lite.copy_to(&target).unwrap_err().to_string();
    assert!(err.contains("already holds a history"), "{err}");
    drop(shared);
}

#[test]
fn one_run_lock_and_one_leader_per_database_released_when_the_holder_goes() {
    let server = Postgres::start();
    let loc = pg(&server, "locks");
    Catalog::open_at(&loc).unwrap();
    let first = RunLock::acquire_at(&loc, false, "amictl apply", |_| {}, || false).unwrap();
    match RunLock::acquire_at(&loc, false, "amictl apply", |_| {}, || false) {
        Err(CatalogError::Locked { holder, path }) => {
            let note = holder.note.unwrap_or_default();
            assert!(note.contains("amictl apply pid"), "the refusal names the holder: {note}");
            assert!(!path.display().to_string().contains("password"));
        }
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    drop(first);
    let _again = RunLock::acquire_at(&loc, false, "amictl apply", |_| {}, || false).expect("free once dropped");

    // By name too: resolved by amictl itself (every address tried), not on a driver thread.
    let by_name = Location::postgres(&format!("postgres://amictl@localhost:{}/locks", server.port()), None).unwrap();
    assert!(
        matches!(
            RunLock::acquire_at(&by_name, false, "amictl apply", |_| {}, || false),
            Err(CatalogError::Locked { .. })
        ),
        "the same database, and the same lock, by name"
    );
    let mut leader = Leadership::try_take(&loc, "amictl serve").unwrap().expect("the first replica leads");
    assert!(Leadership::try_take(&loc, "amictl serve").unwrap().is_none(), "a second does not");
    assert!(leader.alive());
    assert!(Leadership::holder(&loc).unwrap_or_default().contains("amictl serve"));
    drop(leader);
    assert!(Leadership::try_take(&loc, "amictl serve").unwrap().is_some(), "the next one takes over");
}

#[test]
fn a_server_that_goes_away_fails_the_write_whole_and_the_next_call_reconnects() {
    let mut server = Postgres::start();
    let loc = pg(&server, "restart");
    let mut c = Catalog::open_at(&loc).unwrap();
    story(&mut c);
    let before = c.event_count().unwrap();
    let mut leader = Leadership::try_take(&loc, "amictl serve").unwrap().unwrap();
    server.stop();
    let data = serde_json::json!({});
    let err = c.append_event(&event("decision", &data, false)).unwrap_err().to_string();
    assert!(err.contains("postgres://amictl@127.0.0.1") && !err.is_empty(), "a clear error naming the state: {err}");
    assert!(!leader.alive(), "the leadership went with the connection");
    server.start_again();
    assert_eq!(c.event_count().unwrap(), before, "nothing half-written, and the catalog reconnected");
    c.append_event(&event("decision", &data, false)).unwrap();
    assert_eq!(c.verify_chain().unwrap(), Ok(before as usize + 1));
}
