//! Schema migrations, applied in order; `PRAGMA user_version` counts those applied.

pub(crate) const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE builds (
        build_id TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        recipe_hash TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        parent_name TEXT NOT NULL,
        parent_created TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        failure TEXT,
        log_dir TEXT NOT NULL,
        UNIQUE (image, version)
     );
     CREATE TABLE build_components (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL);
     CREATE TABLE packages (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, version TEXT NOT NULL, arch TEXT NOT NULL, source_name TEXT NOT NULL, source_version TEXT NOT NULL);
     CREATE INDEX packages_build ON packages (build_id);
     CREATE TABLE artifacts (build_id TEXT NOT NULL REFERENCES builds, kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL);
     CREATE TABLE test_results (build_id TEXT NOT NULL REFERENCES builds, name TEXT NOT NULL, passed INTEGER NOT NULL, detail TEXT NOT NULL);
     CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // v2: where each version was published. One row per (build, account, region); a
    // re-publish replaces it, so the row always says what was last verified.
    "CREATE TABLE distributions (
        build_id TEXT NOT NULL REFERENCES builds,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        image_id TEXT NOT NULL,
        how TEXT NOT NULL,
        parameters TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (build_id, account, region)
     );",
    // v3: fleet scans. A consumer's latest scan says what it runs; older scans are history.
    "CREATE TABLE scans (
        scan_id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        consumer TEXT NOT NULL,
        unknown TEXT
     );
     CREATE TABLE scan_hosts (
        scan_id INTEGER NOT NULL REFERENCES scans,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        image_id TEXT NOT NULL,
        image TEXT,
        version TEXT,
        standing TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX scan_hosts_scan ON scan_hosts (scan_id);",
    // v4: the deprecation of each AMI of a version (set once; a failed attempt keeps its
    // error until a retry sets it; `gone` when the AMI no longer exists), backfilled from
    // the `deprecate` events earlier versions recorded (the last successful one per AMI is
    // what EC2 holds); the run that started each build; notices sent to owners; and
    // intents still waiting for their outcome (an index of the audit chain, so the next
    // run can close them).
    "CREATE TABLE deprecations (
        build_id TEXT NOT NULL REFERENCES builds,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        image_id TEXT NOT NULL,
        at TEXT NOT NULL,
        error TEXT,
        gone INTEGER NOT NULL DEFAULT 0,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (build_id, account, region, image_id)
     );
     INSERT OR REPLACE INTO deprecations (build_id, account, region, image_id, at, error, gone, recorded_at)
        SELECT b.build_id, json_extract(e.data, '$.account'), json_extract(e.data, '$.region'),
               json_extract(e.data, '$.image_id'), json_extract(e.data, '$.at'), NULL, 0, e.time
        FROM audit_events e JOIN builds b ON e.subject = b.image || '@' || b.version
        WHERE e.kind = 'deprecate' AND json_extract(e.data, '$.error') IS NULL
          AND json_extract(e.data, '$.image_id') IS NOT NULL AND json_extract(e.data, '$.at') IS NOT NULL
        ORDER BY e.seq;
     ALTER TABLE builds ADD COLUMN runner TEXT;
     CREATE TABLE notices (
        consumer TEXT NOT NULL,
        image TEXT NOT NULL,
        version TEXT NOT NULL,
        topic TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at TEXT NOT NULL
     );
     CREATE INDEX notices_consumer ON notices (consumer, image, version);
     CREATE TABLE open_intents (seq INTEGER PRIMARY KEY REFERENCES audit_events);",
    // v5: the cloud execution a build started (an Image Builder image ARN), so the next run
    // follows it rather than starting another.
    "ALTER TABLE builds ADD COLUMN execution TEXT NOT NULL DEFAULT '';",
    // v6: why the last retirement of a version was refused (what still used its AMIs, and
    // when that was found), until it is retired.
    "ALTER TABLE builds ADD COLUMN cleanup TEXT;",
    // v7: what `serve` keeps. Actions held for a person (`policy.require_approval`), the
    // outbox of notifications (one row per notice and sink, so a retry never repeats a
    // delivered one), and when each scheduled job last ran.
    "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        action_key TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        reasons TEXT NOT NULL,
        detail TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT
     );
     CREATE INDEX approvals_key ON approvals (action_key);
     CREATE TABLE outbox (
        key TEXT NOT NULL,
        sink TEXT NOT NULL,
        event TEXT NOT NULL,
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        PRIMARY KEY (key, sink)
     );
     CREATE TABLE schedule (job TEXT PRIMARY KEY, last_run TEXT NOT NULL, data TEXT NOT NULL);",
];
