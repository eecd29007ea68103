//! The store on both engines: the embedded SQLite file and a real PostgreSQL server.

mod support;

use carevoice::config::{DatabaseUrl, StoreConfig};
use carevoice::store::calls::{CallRecord, Channel};
use carevoice::store::console::{ConsoleUser, SessionRow};
use carevoice::store::escalations::EscalationRecord;
use carevoice::store::{Engine, Store};
use support::postgres::Postgres;

fn call(id: &str, started_ms: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        channel: Channel::Sip,
        caller_hash: format!("hash-{id}"),
        started_ms,
        ended_ms: None,
        outcome: None,
    }
}

/// The repository contract, run on whichever engine `store` is.
async fn exercise(store: &Store) {
    let applied = store.applied_migrations().await.unwrap();
    assert_eq!(applied.first(), Some(&1), "{applied:?}");
    assert!(applied.contains(&2), "audit migration applied: {applied:?}");
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
    store.ping().await.unwrap();

    let id = store.instance_id().await.unwrap();
    assert_eq!(
        store.instance_id().await.unwrap(),
        id,
        "instance id is stable"
    );
    store.meta_set("k", "v1").await.unwrap();
    store.meta_set("k", "v2").await.unwrap();
    assert_eq!(store.meta_get("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.meta_get("missing").await.unwrap(), None);

    store.insert_call(&call("a", 1_000)).await.unwrap();
    store.insert_call(&call("b", 2_000)).await.unwrap();
    assert!(
        store.insert_call(&call("a", 3_000)).await.is_err(),
        "duplicate id rejected"
    );
    assert!(store.finish_call("a", 1_500, "completed").await.unwrap());
    assert!(
        !store.finish_call("a", 1_600, "again").await.unwrap(),
        "an ended call stays ended"
    );
    assert!(!store.finish_call("nope", 1, "x").await.unwrap());
    let a = store.get_call("a").await.unwrap().unwrap();
    assert_eq!(a.ended_ms, Some(1_500));
    assert_eq!(a.outcome.as_deref(), Some("completed"));
    assert_eq!(store.get_call("zzz").await.unwrap(), None);
    let recent = store.recent_calls(10).await.unwrap();
    assert_eq!(
        recent.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );

    // Concurrent writers (many calls at once) all land.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.insert_call(&call(&format!("c{i}"), 10_000 + i)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.recent_calls(100).await.unwrap().len(), 42);

    console_accounts(store).await;
}

/// The console's tables (migration 0004) on this engine: unique names, the lockout counter, the
/// one-time TOTP step, sessions, and a callback done once.
async fn console_accounts(store: &Store) {
    let user = ConsoleUser {
        id: "u1".into(),
        name: "ann".into(),
        role: "front_desk".into(),
        password_hash: "$argon2id$...".into(),
        must_change: true,
        totp_sealed: None,
        totp_last_step: None,
        failed_logins: 0,
        locked_until_ms: None,
        disabled: false,
        created_ms: 1,
    };
    assert!(store.insert_console_user(&user).await.unwrap());
    let twin = ConsoleUser {
        id: "u2".into(),
        ..user.clone()
    };
    assert!(
        !store.insert_console_user(&twin).await.unwrap(),
        "names are unique"
    );
    for n in 1..=2 {
        let f = store.record_login_failure("u1", 3, 9_000).await.unwrap();
        assert!(!f.locked_now, "failure {n}");
    }
    assert!(
        store
            .record_login_failure("u1", 3, 9_000)
            .await
            .unwrap()
            .locked_now
    );
    let locked = store.console_user_by_name("ann").await.unwrap().unwrap();
    assert_eq!(
        (locked.locked_until_ms, locked.failed_logins),
        (Some(9_000), 0)
    );
    store.clear_login_failures("u1").await.unwrap();
    assert_eq!(
        store
            .console_user_by_id("u1")
            .await
            .unwrap()
            .unwrap()
            .locked_until_ms,
        None
    );

    store
        .set_console_totp("u1", Some("v1.k.sealed"), Some(100))
        .await
        .unwrap();
    assert!(
        !store.accept_totp_step("u1", 100).await.unwrap(),
        "a step is used once"
    );
    assert!(store.accept_totp_step("u1", 101).await.unwrap());
    assert!(
        !store.accept_totp_step("u1", 100).await.unwrap(),
        "no going back"
    );

    let session = SessionRow {
        id_hash: "h1".into(),
        user_id: "u1".into(),
        stage: "full".into(),
        created_ms: 10,
        last_seen_ms: 10,
        pending_totp: None,
    };
    store.insert_console_session(&session).await.unwrap();
    store.touch_console_session("h1", 20).await.unwrap();
    assert!(
        store
            .stale_console_sessions(20, 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let stale = store.stale_console_sessions(21, 0, 0).await.unwrap();
    assert_eq!(
        (stale[0].0.id_hash.as_str(), stale[0].1.as_str()),
        ("h1", "ann")
    );
    assert_eq!(
        store
            .console_session("h1")
            .await
            .unwrap()
            .unwrap()
            .last_seen_ms,
        20
    );
    store.end_console_session("h1", "ended:idle").await.unwrap();
    assert!(
        store
            .stale_console_sessions(1_000, 0, 0)
            .await
            .unwrap()
            .is_empty(),
        "ended once"
    );
    assert_eq!(
        store.console_session("h1").await.unwrap().unwrap().stage,
        "ended:idle"
    );
    assert_eq!(store.purge_ended_console_sessions(20).await.unwrap(), 0);
    assert_eq!(store.purge_ended_console_sessions(21).await.unwrap(), 1);
    store.insert_console_session(&session).await.unwrap();
    assert_eq!(store.delete_console_sessions_of("u1").await.unwrap(), 1);
    assert_eq!(store.console_session("h1").await.unwrap(), None);

    store
        .insert_escalation(&EscalationRecord {
            id: "e1".into(),
            call_id: "a".into(),
            created_ms: 5,
            reason: "human".into(),
            urgent: false,
            identity: "unverified".into(),
            outcome: "callback".into(),
            summary_sealed: None,
        })
        .await
        .unwrap();
    assert_eq!(store.open_escalations(10).await.unwrap().len(), 1);
    assert!(
        store
            .complete_callback("e1", 50, "ann", Some("v1.k.note"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete_callback("e1", 60, "ann", None)
            .await
            .unwrap(),
        "done once"
    );
    assert!(store.open_escalations(10).await.unwrap().is_empty());
    assert_eq!(
        store.escalation("e1").await.unwrap().unwrap().outcome,
        "called_back"
    );
    assert_eq!(
        store.recent_callback_results(5).await.unwrap(),
        vec![("e1".to_string(), 50, "ann".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::default(), dir.path())
        .await
        .unwrap();
    assert_eq!(store.engine(), Engine::Sqlite);
    assert!(dir.path().join("carevoice.db").exists());
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    exercise(&store).await;
    store.close().await;

    // Data survives a reopen.
    let store = Store::open(&StoreConfig::default(), dir.path())
        .await
        .unwrap();
    assert!(store.get_call("a").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_real_server() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = pg.create_database("carevoice");
    let config = StoreConfig {
        url: DatabaseUrl(url),
        ..StoreConfig::default()
    };
    let store = Store::open(&config, std::path::Path::new("/nonexistent"))
        .await
        .unwrap();
    assert_eq!(store.engine(), Engine::Postgres);
    exercise(&store).await;
    // The rows are really in PostgreSQL.
    assert_eq!(
        pg.psql("carevoice", "SELECT count(*) FROM calls").trim(),
        "42"
    );
    store.close().await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    let port = support::free_port();
    let config = StoreConfig {
        url: DatabaseUrl(format!("postgres://cv:sekret@127.0.0.1:{port}/x")),
        connect_timeout_secs: 2,
        ..StoreConfig::default()
    };
    let e = Store::open(&config, std::path::Path::new("/nonexistent"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "cannot connect to postgres://cv:***@127.0.0.1:{port}/x"
        )),
        "{e}"
    );
    assert!(!e.contains("sekret"), "password leaked: {e}");
}
