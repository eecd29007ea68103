//! One smoke test per real test peer: it starts the real program on loopback and proves it answers.
//! Later tests build on these peers (`tests/support/`).

mod support;

use std::time::Duration;

use support::fhir::{FhirAuth, FhirServer};
use support::oidc::OidcServer;
use support::postgres::Postgres;
use support::sip::{Kamailio, SippUas, baresip_call, sipp_uac};
use support::{http, http_get};

#[test]
fn postgres_starts_and_answers_sql() {
    let pg = Postgres::start();
    pg.create_database("smoke");
    assert_eq!(pg.psql("smoke", "SELECT 40 + 2").trim(), "42");
    let version = pg.psql("smoke", "SHOW server_version");
    assert!(
        version.starts_with("15") || version.starts_with("1"),
        "{version}"
    );
}

#[test]
fn sekmet_fhir_with_smart_auth() {
    let fhir = FhirServer::sekmet(FhirAuth::Smart);
    let (status, body) = http_get(&format!("{}/metadata", fhir.base_url)).unwrap();
    assert_eq!(status, 200, "{body}");
    let cap: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    assert_eq!(cap["fhirVersion"], "4.0.1");

    // SMART is on: no token, no data.
    let (status, _) = http_get(&format!("{}/Patient", fhir.base_url)).unwrap();
    assert_eq!(status, 401);

    // A token for the registered client opens it.
    let token_url = fhir.token_url.clone().unwrap();
    let resp = http()
        .post(&token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=system%2F*.*",
            fhir.client_id, fhir.client_secret
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let token: serde_json::Value = resp.json().unwrap();
    let access = token["access_token"].as_str().unwrap();
    let resp = http()
        .get(format!("{}/Patient", fhir.base_url))
        .bearer_auth(access)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bundle: serde_json::Value = resp.json().unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");

    // A wrong secret is refused.
    let resp = http()
        .post(&token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=voice-agent&client_secret=wrong")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[test]
fn medplum_fhir_engine_creates_and_reads() {
    let fhir = FhirServer::medplum();
    let patient = serde_json::json!({
        "resourceType": "Patient",
        "name": [{"family": "Smoke", "given": ["Test"]}],
        "birthDate": "1975-03-03"
    });
    let resp = http()
        .post(format!("{}/Patient", fhir.base_url))
        .header("content-type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created: serde_json::Value = resp.json().unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let (status, body) = http_get(&format!("{}/Patient/{id}", fhir.base_url)).unwrap();
    assert_eq!(status, 200);
    let read: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(read["birthDate"], "1975-03-03");
    let (status, body) = http_get(&format!("{}/Patient?family=Smoke", fhir.base_url)).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(&id), "{body}");
}

#[test]
fn oidc_provider_issues_metadata_and_rejects_unauthenticated_clients() {
    let oidc = OidcServer::start("voice-agent", "http://127.0.0.1:1/fhir", 300);
    let (status, body) =
        http_get(&format!("{}/.well-known/openid-configuration", oidc.issuer)).unwrap();
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["token_endpoint"], oidc.token_url.as_str());
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "private_key_jwt"),
        "{body}"
    );
    let resp = http()
        .post(&oidc.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=voice-agent")
        .send()
        .unwrap();
    assert!(
        [400, 401].contains(&resp.status().as_u16()),
        "{}",
        resp.status()
    );
    let err: serde_json::Value = resp.json().unwrap();
    assert_eq!(err["error"], "invalid_client");
}

#[test]
fn sipp_calls_sipp_over_udp() {
    let uas = SippUas::start();
    let dir = tempfile::tempdir().unwrap();
    let run = sipp_uac(
        uas.addr(),
        "uac",
        "u1",
        3,
        10,
        Duration::from_secs(30),
        dir.path(),
    );
    assert!(
        run.success,
        "sipp uac failed:\n{}\nuas:\n{}",
        run.output,
        uas.log_tail()
    );
}

#[test]
fn kamailio_proxies_a_call() {
    let uas = SippUas::start();
    let proxy = Kamailio::start(uas.addr());
    let dir = tempfile::tempdir().unwrap();
    let run = sipp_uac(
        proxy.addr(),
        "uac",
        "u1",
        1,
        1,
        Duration::from_secs(30),
        dir.path(),
    );
    assert!(run.success, "call through kamailio failed:\n{}", run.output);
}

#[test]
fn baresip_plays_a_wav_and_records_the_echo() {
    let uas = SippUas::start();
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    support::speak_wav(
        "Hello, I would like to book an appointment.",
        8000,
        2.0,
        &wav,
    );
    let call = baresip_call(
        &format!("sip:echo@127.0.0.1:{}", uas.port),
        &wav,
        8,
        false,
        dir.path(),
    );
    assert!(
        !call.heard.is_empty(),
        "baresip recorded nothing:\n{}\nuas:\n{}",
        call.output,
        uas.log_tail()
    );
    let peak = call
        .heard
        .iter()
        .map(|p| support::wav_peak(p))
        .fold(0.0, f32::max);
    assert!(
        peak > 0.05,
        "the echoed speech is silent (peak {peak}):\n{}",
        call.output
    );
}

#[test]
fn chromium_renders_the_status_page() {
    let server = support::carevoice::Server::start("");
    let shot = server.dir.path().join("status.png");
    let page = support::browser::visit(&server.url("/"), &shot);
    assert_eq!(page.http, Some(200));
    assert_eq!(page.title, "carevoice");
    assert_eq!(page.status.as_deref(), Some("Server running"));
    assert!(page.text.contains("sqlite"), "{}", page.text);
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
}
