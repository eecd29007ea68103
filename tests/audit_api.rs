//! The audit API as other modules use it, on SQLite and a real PostgreSQL: every kind of event
//! becomes a record, concurrent appends get unique gap-free sequence numbers, checkpoints are
//! written every N records and at shutdown, and `Crypto` seals other tables' PHI columns bound to
//! their row.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use carevoice::audit::{
    self, AdminChange, AuditError, AuditEvent, AuditLog, Auth, AuthAction, Binding, BreakGlass,
    CallTurn, Confidential, ConfigChange, ConfigTarget, Crypto, Export, FhirAccess, KeyError,
    KeyRotation, MasterKeys, Prune, Purpose, StaffView, TurnAction,
};
use carevoice::config::{AuditConfig, DatabaseUrl, StoreConfig};
use carevoice::store::{Store, now_ms};
use sqlx::Row;
use support::postgres::Postgres;

fn one_of_each() -> Vec<AuditEvent> {
    vec![
        AuditEvent::CallTurn(CallTurn {
            call_id: "call-1".into(),
            turn: 1,
            started_ms: now_ms(),
            ended_ms: now_ms() + 900,
            identity: "verified".into(),
            intent: Some("book".into()),
            actions: vec![TurnAction {
                op: "create".into(),
                resource_type: "Appointment".into(),
                resource_id: Some(Confidential::new("appt-77")),
                outcome: "ok".into(),
            }],
            latency_ms: BTreeMap::from([("asr".into(), 90), ("total".into(), 610)]),
            patient: Some(Confidential::new("pat-secret-1")),
            transcript: Some(Confidential::new("my date of birth is 1975-03-03")),
            reply: Some(Confidential::new("Booked for Tuesday")),
        }),
        AuditEvent::FhirAccess(FhirAccess {
            actor: "agent".into(),
            call_id: Some("call-1".into()),
            op: "read".into(),
            resource_type: "Patient".into(),
            outcome: "ok".into(),
            status: Some(200),
            resource_id: Some(Confidential::new("pat-secret-1")),
            patient: Some(Confidential::new("pat-secret-1")),
        }),
        AuditEvent::StaffView(StaffView {
            actor: "alice".into(),
            what: "escalation".into(),
            call_id: Some("call-1".into()),
            patient: Some(Confidential::new("pat-secret-1")),
        }),
        AuditEvent::AdminChange(AdminChange {
            actor: "admin".into(),
            target: "user:bob".into(),
            change: "role front-desk -> admin".into(),
        }),
        AuditEvent::Auth(Auth {
            actor: "bob".into(),
            action: AuthAction::LoginFailed,
            source: Some("10.0.0.5".into()),
            reason: Some("bad totp".into()),
        }),
        AuditEvent::Auth(Auth {
            actor: "bob".into(),
            action: AuthAction::Login,
            source: Some("10.0.0.5".into()),
            reason: None,
        }),
        AuditEvent::Auth(Auth {
            actor: "bob".into(),
            action: AuthAction::Logout,
            source: None,
            reason: Some("idle timeout".into()),
        }),
        AuditEvent::BreakGlass(BreakGlass {
            actor: "carol".into(),
            expires_ms: now_ms() + 3_600_000,
            reason: Confidential::new("ER needs pat-secret-1's appointments"),
            patient: Some(Confidential::new("pat-secret-1")),
        }),
        AuditEvent::ConfigChange(ConfigChange {
            actor: "admin".into(),
            target: ConfigTarget::Flow,
            name: "intake.yaml".into(),
            version: Some("7".into()),
            sha256: Some("ab".repeat(32)),
        }),
        AuditEvent::KeyRotation(KeyRotation {
            actor: "cli:root".into(),
            old_master: "mk-a".into(),
            new_master: "mk-b".into(),
            data_keys: 2,
            signing_keys: 1,
        }),
        AuditEvent::Export(Export {
            actor: "cli:root".into(),
            format: "fhir".into(),
            from_seq: 1,
            to_seq: 10,
            records: 10,
            decrypted: true,
        }),
        AuditEvent::Prune(Prune {
            actor: "cli:root".into(),
            pruned_through: 0,
            records_deleted: 0,
            data_keys_destroyed: vec![],
        }),
    ]
}

async fn exercise(store: Store, engine: &str) {
    let crypto = Crypto::with_masters(&store, MasterKeys::generate().unwrap())
        .await
        .unwrap();
    let config = AuditConfig {
        checkpoint_every_records: 4,
        ..AuditConfig::default()
    };
    let log = AuditLog::start(store.clone(), crypto.clone(), &config);
    let events = one_of_each();
    let mut seqs = Vec::new();
    for e in &events {
        seqs.push(log.append(e.clone()).await.unwrap());
    }
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());

    // Many concurrent appenders: unique, gap-free sequence numbers.
    let mut tasks = Vec::new();
    for t in 0..40 {
        let log = log.clone();
        let e = events[t % events.len()].clone();
        tasks.push(tokio::spawn(async move { log.append(e).await.unwrap() }));
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        assert!(got.insert(t.await.unwrap()));
    }
    let n = events.len() as i64 + 40;
    assert_eq!(got, (events.len() as i64 + 1..=n).collect());

    // Submit now, learn the sequence number (durability) later: in order.
    let mut receipts = Vec::new();
    for e in events.iter().take(5) {
        receipts.push(log.submit(e.clone()).await.unwrap());
    }
    let mut seqs = Vec::new();
    for r in receipts {
        seqs.push(r.committed().await.unwrap());
    }
    assert_eq!(seqs, (n + 1..=n + 5).collect::<Vec<_>>());
    let n = n + 5;

    // Shutdown leaves a signed checkpoint at the head (written now, or already by the batch).
    log.shutdown().await.unwrap();
    let last_cp: i64 = sqlx::query("SELECT MAX(seq) AS seq FROM audit_checkpoints")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("seq");
    assert_eq!(last_cp, n, "{engine}");
    assert!(matches!(
        log.append(events[0].clone()).await,
        Err(AuditError::Closed)
    ));

    let outcome = audit::verify::verify(&store, &crypto, None, None)
        .await
        .unwrap();
    assert_eq!(outcome.problem, None, "{engine}");
    assert_eq!(outcome.report.records, n as u64);
    assert!(
        outcome.report.checkpoints >= 3,
        "{engine}: {:?}",
        outcome.report
    );

    // Every kind is there, PHI sealed in the database and readable through export.
    let raw: Vec<(String, String)> = sqlx::query("SELECT kind, body FROM audit_log ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("kind"), r.get("body")))
        .collect();
    let kinds: BTreeSet<&str> = raw.iter().map(|(k, _)| k.as_str()).collect();
    let expected: BTreeSet<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, expected);
    assert_eq!(expected.len(), 10);
    for (_, body) in &raw {
        assert!(
            !body.contains("pat-secret") && !body.contains("1975-03-03"),
            "{body}"
        );
    }
    let mut out = Vec::new();
    audit::export::export(
        &store,
        &crypto,
        1,
        events.len() as i64,
        audit::export::Format::Jsonl,
        false,
        &mut out,
    )
    .await
    .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), events.len());
    assert_eq!(
        lines[0]["transcript"]["transcript"],
        "my date of birth is 1975-03-03"
    );
    assert_eq!(lines[0]["body"]["latency_ms"]["asr"], 90);
    assert_eq!(lines[0]["phi"]["action_resource_ids"][0], "appt-77");
    assert_eq!(lines[4]["body"]["action"], "login_failed");
    assert_eq!(
        lines[7]["phi"]["reason"],
        "ER needs pat-secret-1's appointments"
    );

    // Other tables' PHI columns: sealed, bound to table/row/column.
    let here = Binding::new("messages", "m-1", "body");
    let sealed = crypto
        .seal(Purpose::Phi, now_ms(), &here, b"please call me back")
        .await
        .unwrap();
    assert!(sealed.starts_with("v1.phi-") && !sealed.contains("call me"));
    assert_eq!(
        crypto.open_sealed(&here, &sealed).await.unwrap().as_slice(),
        b"please call me back"
    );
    for other in [
        Binding::new("messages", "m-2", "body"),
        Binding::new("messages", "m-1", "subject"),
        Binding::new("escalations", "m-1", "body"),
    ] {
        assert!(
            matches!(
                crypto.open_sealed(&other, &sealed).await,
                Err(KeyError::Open { .. })
            ),
            "{other}"
        );
    }
    // A fresh process with the same master key reads it; another master key does not.
    let same = Crypto::with_masters(
        &store,
        MasterKeys::parse(&crypto.masters().to_file_text(), "copy").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        same.open_sealed(&here, &sealed).await.unwrap().as_slice(),
        b"please call me back"
    );
    assert!(matches!(
        Crypto::with_masters(&store, MasterKeys::generate().unwrap()).await,
        Err(KeyError::UnknownMaster { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::default(), dir.path())
        .await
        .unwrap();
    exercise(store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_on_postgres() {
    let pg = Postgres::start();
    let url = pg.create_database("api");
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        url: DatabaseUrl(url),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, dir.path()).await.unwrap();
    exercise(store, "postgres").await;
}
