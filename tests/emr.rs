//! The EMR layer against real FHIR servers (sekmet-fhir with SMART backend-services auth, and
//! Medplum's FHIR engine), a real OAuth2 server (oidc-provider), and injected faults.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carevoice::config::{EmrAuth, EmrConfig, JwtAlgorithm};
use carevoice::emr::fhir::{EmrObserver, FhirAccess, FhirEmr};
use carevoice::emr::seed;
use carevoice::emr::*;
use carevoice::phi::PatientId;
use carevoice_fhir::FhirClient;
use jiff::civil::date;
use jiff::tz::TimeZone;
use support::fhir::{FhirAuth, FhirServer};

/// Collects FHIR accesses, as the audit layer will.
#[derive(Default)]
struct Recorder(Mutex<Vec<FhirAccess>>);

impl EmrObserver for Recorder {
    fn fhir_access(&self, access: FhirAccess) {
        self.0.lock().unwrap().push(access);
    }
}

fn emr_config(server: &FhirServer, smart: bool) -> EmrConfig {
    let mut config = EmrConfig {
        base_url: server.base_url.clone(),
        timeout_ms: 10_000,
        ..EmrConfig::default()
    };
    if smart {
        config.auth = EmrAuth::Smart;
        config.token_url = server.token_url.clone().unwrap();
        config.client_id = server.client_id.clone();
        config.private_key = server.client_key.as_ref().unwrap().private_pem.clone();
        config.jwt_alg = JwtAlgorithm::RS384;
        config.scope = "system/*.*".into();
    }
    config
}

fn query(family: &str, birth: jiff::civil::Date, phone: Option<&str>) -> PatientQuery {
    PatientQuery {
        family: family.into(),
        birth_date: birth,
        phone: phone.map(String::from),
    }
}

/// The one candidate a search found.
fn only(mut found: Vec<PatientRecord>) -> PatientRecord {
    assert_eq!(found.len(), 1, "expected one candidate");
    found.remove(0)
}

/// Every operation, on whichever server `config` points at.
async fn exercise(config: EmrConfig) {
    let recorder = Arc::new(Recorder::default());
    let emr = FhirEmr::new(&config, recorder.clone()).unwrap();
    let first_day = jiff::Zoned::now()
        .with_time_zone(TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap();
    let report = seed::seed(emr.client(), &TimeZone::UTC, first_day, 7)
        .await
        .unwrap();
    assert!(!report.already_seeded);
    assert_eq!(report.practitioners, 3);
    assert_eq!(report.appointments, 2);
    let again = seed::seed(emr.client(), &TimeZone::UTC, first_day, 7)
        .await
        .unwrap();
    assert!(again.already_seeded, "a second seed writes nothing");

    // Find the candidates: one record, wrong birth date, wrong family name, two records with one
    // name and birth date (the identity gate verifies neither), narrowed by phone.
    let anna = only(
        emr.find_patients(&query("Smith", date(1975, 3, 3), None))
            .await
            .unwrap(),
    );
    assert!(anna.given.matches(|g| g == "Anna"));
    assert!(
        emr.find_patients(&query("Smith", date(1975, 3, 4), None))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        emr.find_patients(&query("Smyth", date(1975, 3, 3), None))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        emr.find_patients(&query("Brown", date(1970, 6, 15), None))
            .await
            .unwrap()
            .len(),
        2
    );
    only(
        emr.find_patients(&query("Brown", date(1970, 6, 15), Some("555-010-6002")))
            .await
            .unwrap(),
    );

    // Her upcoming appointment, with the practitioner's name.
    let now = jiff::Timestamp::now();
    let upcoming = emr.upcoming_appointments(&anna.id, now).await.unwrap();
    assert_eq!(upcoming.len(), 1, "{upcoming:?}");
    let existing = &upcoming[0];
    assert_eq!(existing.status, AppointmentStatus::Booked);
    assert_eq!(
        existing.practitioner_name.expose_for_storage().as_deref(),
        Some("Dr. Priya Patel")
    );

    // Free slots of Dr. Patel, soonest first, the booked one not among them.
    let slots = emr
        .free_slots(&SlotQuery {
            practitioner: Some("patel".into()),
            limit: 5,
            ..SlotQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(slots.len(), 5);
    assert!(slots.windows(2).all(|w| w[0].start <= w[1].start));
    assert!(
        slots
            .iter()
            .all(|s| s.practitioner_name.as_deref() == Some("Dr. Priya Patel"))
    );
    assert!(slots.iter().all(|s| Some(&s.id) != existing.slot.as_ref()));
    let window = emr
        .free_slots(&SlotQuery {
            practitioner: Some("Chen".into()),
            from: Some(slots[2].start),
            to: Some(slots[2].start + jiff::SignedDuration::from_hours(24)),
            limit: 50,
            ..SlotQuery::default()
        })
        .await
        .unwrap();
    assert!(!window.is_empty());
    assert!(window.iter().all(|s| s.start >= slots[2].start));

    // Book; the slot is then taken for anyone else, who is offered the next one.
    let booked = match emr
        .book(&anna.id, &slots[0].id, Some("cough"))
        .await
        .unwrap()
    {
        BookOutcome::Booked(a) => a,
        other => panic!("booking failed: {other:?}"),
    };
    assert_eq!(booked.slot.as_ref(), Some(&slots[0].id));
    let slot_now = emr
        .client()
        .read_json("Slot", &slots[0].id.0)
        .await
        .unwrap();
    assert_eq!(slot_now["status"], "busy");
    let maria = only(
        emr.find_patients(&query("Garcia", date(1992, 11, 30), None))
            .await
            .unwrap(),
    );
    match emr.book(&maria.id, &slots[0].id, None).await.unwrap() {
        BookOutcome::SlotTaken { next } => {
            let next = next.expect("another slot is offered");
            assert_ne!(next.id, slots[0].id);
            assert!(next.start >= slots[0].start);
        }
        other => panic!("double booking: {other:?}"),
    }

    // Cancel: status cancelled with the reason, slot free again.
    emr.cancel(&booked.id, "feeling better").await.unwrap();
    let cancelled = emr
        .client()
        .read_json("Appointment", &booked.id.0)
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelationReason"]["text"], "feeling better");
    let slot_now = emr
        .client()
        .read_json("Slot", &slots[0].id.0)
        .await
        .unwrap();
    assert_eq!(slot_now["status"], "free");

    // Reschedule the existing appointment to another slot.
    match emr
        .reschedule(&anna.id, &existing.id, &slots[1].id)
        .await
        .unwrap()
    {
        RescheduleOutcome::Moved(a) => assert_eq!(a.slot.as_ref(), Some(&slots[1].id)),
        other => panic!("reschedule: {other:?}"),
    }
    let old = emr
        .client()
        .read_json("Appointment", &existing.id.0)
        .await
        .unwrap();
    assert_eq!(old["status"], "cancelled");
    let upcoming = emr.upcoming_appointments(&anna.id, now).await.unwrap();
    assert_eq!(upcoming.len(), 1);
    assert_eq!(upcoming[0].slot.as_ref(), Some(&slots[1].id));

    // Rescheduling onto a taken slot changes nothing.
    match emr
        .reschedule(&anna.id, &upcoming[0].id, &slots[1].id)
        .await
        .unwrap()
    {
        RescheduleOutcome::SlotTaken { .. } => {}
        other => panic!("{other:?}"),
    }

    // A message for staff.
    let message = emr
        .leave_message(
            Some(&anna.id),
            "Please call me about my results.",
            MessageUrgency::Routine,
        )
        .await
        .unwrap();
    assert!(
        message.starts_with("Communication/") || message.starts_with("Task/"),
        "{message}"
    );

    // Race: two callers book one slot at once; exactly one wins, the other is offered another.
    let emr = Arc::new(emr);
    let contested = slots[3].id.clone();
    let (a, b) = tokio::join!(
        {
            let emr = emr.clone();
            let (id, slot) = (anna.id.clone(), contested.clone());
            async move { emr.book(&id, &slot, None).await }
        },
        {
            let emr = emr.clone();
            let (id, slot) = (maria.id.clone(), contested.clone());
            async move { emr.book(&id, &slot, None).await }
        }
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, BookOutcome::Booked(_)))
        .count();
    assert_eq!(won, 1, "exactly one booking wins: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, BookOutcome::SlotTaken { next: Some(_) }))
    );

    // Every FHIR access was reported, with ids and outcomes but no content.
    let accesses = recorder.0.lock().unwrap();
    assert!(
        accesses.iter().any(|a| a.operation == "create"
            && a.resource_type == "Appointment"
            && a.outcome == "ok")
    );
    assert!(
        accesses
            .iter()
            .any(|a| a.resource_type == "Patient" && a.operation == "search")
    );
    let dump = format!("{accesses:?}");
    // The full date, not "1975": a random UUID can hold those four digits.
    assert!(
        !dump.contains("Smith") && !dump.contains("1975-03-03"),
        "{dump}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_sekmet_with_smart_auth() {
    let server = tokio::task::spawn_blocking(|| FhirServer::sekmet(FhirAuth::Smart))
        .await
        .unwrap();
    exercise(emr_config(&server, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_medplum() {
    let server = tokio::task::spawn_blocking(FhirServer::medplum)
        .await
        .unwrap();
    exercise(emr_config(&server, false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_wrong_key_is_rejected_and_no_token_without_auth() {
    let server = tokio::task::spawn_blocking(|| FhirServer::sekmet(FhirAuth::Smart))
        .await
        .unwrap();
    // No auth configured: the server's 401 surfaces as an auth error.
    let plain = FhirEmr::new(&emr_config(&server, false), Arc::new(Recorder::default())).unwrap();
    let e = plain
        .find_patients(&query("Smith", date(1975, 3, 3), None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, EmrError::Auth(_) | EmrError::Server { status: 401, .. }),
        "{e}"
    );
    // A key the server does not know.
    let dir = tempfile::tempdir().unwrap();
    let other = support::rsa_key_pair(dir.path(), "intruder");
    let mut config = emr_config(&server, true);
    config.private_key = other.private_pem;
    let emr = FhirEmr::new(&config, Arc::new(Recorder::default())).unwrap();
    let e = emr
        .find_patients(&query("Smith", date(1975, 3, 3), None))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, EmrError::Auth(_)), "{text}");
    assert!(text.contains("401"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_issues_tokens_cached_and_refreshed() {
    let oidc = tokio::task::spawn_blocking(|| {
        support::oidc::OidcServer::start("voice-agent", "http://127.0.0.1:9/fhir", 2)
    })
    .await
    .unwrap();
    let http = support::async_http();
    let tokens = carevoice_fhir::auth::TokenSource::new(
        carevoice_fhir::Auth::Smart(carevoice_fhir::SmartConfig {
            token_url: oidc.token_url.clone(),
            client_id: "voice-agent".into(),
            private_key: oidc.client_key.private_pem.clone(),
            alg: carevoice_fhir::JwtAlg::Rs384,
            kid: None,
            scope: "system/Patient.rs system/Appointment.cruds".into(),
        }),
        http,
    )
    .unwrap();
    let first = tokens.header(false).await.unwrap().unwrap();
    let raw = first
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    assert_eq!(raw.split('.').count(), 3, "a JWT access token");
    assert!(
        first.is_sensitive(),
        "the header is marked sensitive (never logged)"
    );
    let cached = tokens.header(false).await.unwrap().unwrap();
    assert_eq!(cached, first, "cached while fresh");
    // The token lives 2 s and is refreshed at half-life.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refreshed = tokens.header(false).await.unwrap().unwrap();
    assert_ne!(refreshed, first, "refreshed near expiry");
    let forced = tokens.header(true).await.unwrap().unwrap();
    assert_ne!(forced, refreshed, "a 401 forces a new one");

    // Another client's key is refused by the real server.
    let dir = tempfile::tempdir().unwrap();
    let other = support::rsa_key_pair(dir.path(), "intruder");
    let bad = carevoice_fhir::auth::TokenSource::new(
        carevoice_fhir::Auth::Smart(carevoice_fhir::SmartConfig {
            token_url: oidc.token_url.clone(),
            client_id: "voice-agent".into(),
            private_key: other.private_pem,
            alg: carevoice_fhir::JwtAlg::Rs384,
            kid: None,
            scope: "system/Patient.rs".into(),
        }),
        support::async_http(),
    )
    .unwrap();
    let e = bad.header(false).await.unwrap_err().to_string();
    assert!(e.contains("invalid_client"), "{e}");
}

/// A one-connection-at-a-time HTTP server answering every request with `response`, or never
/// answering when `response` is None.
fn canned_server(response: Option<String>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    listener.set_nonblocking(false).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_millis(500)))
                        .ok();
                    let mut buf = [0u8; 8192];
                    let _ = stream.read(&mut buf);
                    match &response {
                        Some(r) => {
                            let _ = stream.write_all(r.as_bytes());
                        }
                        None => held.push(stream),
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (base, handle)
}

fn http_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn fault_config(base_url: String) -> EmrConfig {
    EmrConfig {
        base_url,
        timeout_ms: 500,
        read_retries: 1,
        breaker_failures: 3,
        breaker_cooldown_secs: 30,
        ..EmrConfig::default()
    }
}

#[tokio::test]
async fn faults_become_typed_errors_and_open_the_breaker() {
    let q = query("Smith", date(1975, 3, 3), None);

    // Server down.
    let port = support::free_port();
    let emr = FhirEmr::new(
        &fault_config(format!("http://127.0.0.1:{port}/fhir")),
        Arc::new(Recorder::default()),
    )
    .unwrap();
    for _ in 0..3 {
        let e = emr.find_patients(&q).await.unwrap_err();
        assert!(matches!(e, EmrError::Transport(_)), "{e}");
    }
    // Three failures: the breaker is open and answers at once.
    let started = std::time::Instant::now();
    assert!(matches!(
        emr.find_patients(&q).await.unwrap_err(),
        EmrError::CircuitOpen
    ));
    assert!(started.elapsed() < Duration::from_millis(50));

    // Slow: accepts and never answers -> timeout, within the configured time.
    let (base, _h) = canned_server(None);
    let emr = FhirEmr::new(&fault_config(base), Arc::new(Recorder::default())).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        emr.find_patients(&q).await.unwrap_err(),
        EmrError::Timeout
    ));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // 500 with an OperationOutcome.
    let (base, _h) = canned_server(Some(http_response(
        "500 Internal Server Error",
        r#"{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"database on fire"}]}"#,
    )));
    let emr = FhirEmr::new(&fault_config(base), Arc::new(Recorder::default())).unwrap();
    match emr.find_patients(&q).await.unwrap_err() {
        EmrError::Server { status: 500, .. } => {}
        other => panic!("{other}"),
    }

    // Malformed JSON.
    let (base, _h) = canned_server(Some(http_response(
        "200 OK",
        r#"{"resourceType": "Bundle", "entry": [ {"#,
    )));
    let emr = FhirEmr::new(&fault_config(base), Arc::new(Recorder::default())).unwrap();
    assert!(matches!(
        emr.find_patients(&q).await.unwrap_err(),
        EmrError::Malformed(_)
    ));

    // Not a Bundle at all.
    let (base, _h) = canned_server(Some(http_response(
        "200 OK",
        r#"{"resourceType": "Patient"}"#,
    )));
    let emr = FhirEmr::new(&fault_config(base), Arc::new(Recorder::default())).unwrap();
    assert!(matches!(
        emr.find_patients(&q).await.unwrap_err(),
        EmrError::Malformed(_)
    ));

    // A Bundle with unknown extensions, unknown elements and missing optional fields reads fine.
    let bundle = r#"{"resourceType":"Bundle","type":"searchset","meta":{"extension":[{"url":"urn:x","valueBoolean":true}]},
      "entry":[{"fullUrl":"urn:a","resource":{"resourceType":"Patient","id":"p1","unknownThing":[1,2],
        "extension":[{"url":"http://vendor.example/fhir/ext","valueCodeableConcept":{"text":"x"}}],
        "name":[{"family":"Smith","given":["Anna"]}],"birthDate":"1975-03-03"}},
       {"resource":{"resourceType":"Patient","id":"p2"}},
       {"search":{"mode":"outcome"},"resource":{"resourceType":"OperationOutcome","issue":[]}}]}"#;
    let (base, _h) = canned_server(Some(http_response("200 OK", bundle)));
    let emr = FhirEmr::new(&fault_config(base), Arc::new(Recorder::default())).unwrap();
    // The entry without a name or birth date is no candidate.
    assert_eq!(
        only(emr.find_patients(&q).await.unwrap()).id,
        PatientId::new("p1")
    );
}

#[test]
fn emr_check_and_seed_commands() {
    let server = FhirServer::sekmet(FhirAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let env = [("CAREVOICE_EMR__BASE_URL", server.base_url.as_str())];
    let out = support::carevoice::run(&["emr", "check"], dir.path(), &env);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("CapabilityStatement: FHIR 4.0.1"), "{text}");
    assert!(text.contains("authentication: ok"), "{text}");
    assert!(text.contains("find free slots"), "{text}");

    let out = support::carevoice::run(
        &["emr", "seed", "--tz", "America/New_York", "--days", "3"],
        dir.path(),
        &env,
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("demo clinic written: 3 practitioners"),
        "{text}"
    );
    let out = support::carevoice::run(&["emr", "seed"], dir.path(), &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already present"));

    // Unreachable server: one clear line, non-zero.
    let port = support::free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/fhir");
    let out = support::carevoice::run(
        &["emr", "check"],
        dir.path(),
        &[("CAREVOICE_EMR__BASE_URL", &url)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: reading the CapabilityStatement"),
        "{err}"
    );
    let _ = FhirClient::new;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_accesses_land_in_the_audit_chain() {
    let server = tokio::task::spawn_blocking(FhirServer::medplum)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = carevoice::config::Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    let store = carevoice::store::Store::open(&config.store, dir.path())
        .await
        .unwrap();
    let audit = carevoice::audit::Audit::open(&store, &config, true)
        .await
        .unwrap();
    let emr = FhirEmr::new(&emr_config(&server, false), Arc::new(audit.log.clone())).unwrap();
    seed::seed(emr.client(), &TimeZone::UTC, date(2030, 1, 7), 1)
        .await
        .unwrap();
    let anna = only(
        emr.find_patients(&query("Smith", date(1975, 3, 3), None))
            .await
            .unwrap(),
    );
    let slots = emr
        .free_slots(&SlotQuery {
            limit: 1,
            ..SlotQuery::default()
        })
        .await
        .unwrap();
    emr.book(&anna.id, &slots[0].id, None).await.unwrap();
    // The hook queues; give the writer a moment, then flush with the shutdown checkpoint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    audit.log.shutdown().await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, body FROM audit_log ORDER BY seq")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let fhir: Vec<&String> = rows
        .iter()
        .filter(|(k, _)| k == "fhir_access")
        .map(|(_, b)| b)
        .collect();
    assert!(fhir.len() >= 3, "{rows:?}");
    assert!(
        fhir.iter()
            .any(|b| b.contains("\"Patient\"") && b.contains("search")),
        "{fhir:?}"
    );
    assert!(
        fhir.iter()
            .any(|b| b.contains("\"Appointment\"") && b.contains("create")),
        "{fhir:?}"
    );
    // Ids are sealed: the patient's id is not in the clear text of any record.
    assert!(
        rows.iter().all(|(_, b)| !b.contains(anna.id.as_str())),
        "{rows:?}"
    );
    let outcome = carevoice::audit::verify::verify(&store, &audit.crypto, None, None)
        .await
        .unwrap();
    assert_eq!(outcome.problem, None);
}
