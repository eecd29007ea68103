//! EMR operation latency against a local sekmet-fhir (started here, seeded with the demo clinic):
//! p50/p95 of each operation, and the client's overhead over a raw HTTP GET of the same search.
//! Run: `cargo bench --bench emr` (needs the test peers from scripts/setup).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use carevoice::config::EmrConfig;
use carevoice::emr::fhir::{FhirEmr, TracingObserver};
use carevoice::emr::*;
use jiff::civil::date;
use jiff::tz::TimeZone;

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.95))
}

fn report(name: &str, samples: Vec<Duration>) -> f64 {
    let n = samples.len();
    let (p50, p95) = percentiles(samples);
    println!("{name:<34} n={n:<4} p50 {p50:>7.2} ms   p95 {p95:>7.2} ms");
    p50
}

fn main() {
    // `cargo test --all-targets` runs benches in test mode: keep that short.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = if quick { 3 } else { 60 };
    let server = support::fhir::FhirServer::sekmet(support::fhir::FhirAuth::None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = EmrConfig {
        base_url: server.base_url.clone(),
        timeout_ms: 10_000,
        ..EmrConfig::default()
    };
    let emr = FhirEmr::new(&config, Arc::new(TracingObserver)).unwrap();
    let first_day = jiff::Zoned::now().date().tomorrow().unwrap();
    rt.block_on(carevoice::emr::seed::seed(
        emr.client(),
        &TimeZone::UTC,
        first_day,
        10,
    ))
    .unwrap();
    let query = PatientQuery {
        family: "Smith".into(),
        birth_date: date(1975, 3, 3),
        phone: None,
    };
    let anna = match rt.block_on(emr.find_patients(&query)).unwrap().as_slice() {
        [p] => p.id.clone(),
        _ => panic!("seeded patient not found"),
    };
    println!("EMR operations against sekmet-fhir on loopback ({rounds} rounds)");

    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let mut samples = Vec::new();
    for _ in 0..rounds {
        samples.push(time(&mut || {
            rt.block_on(emr.find_patients(&query)).unwrap();
        }));
    }
    let client_p50 = report("find_patients", samples);

    let raw_url = format!(
        "{}/Patient?family=Smith&birthdate=1975-03-03&_count=20",
        server.base_url
    );
    let http = support::async_http();
    let mut samples = Vec::new();
    for _ in 0..rounds {
        samples.push(time(&mut || {
            rt.block_on(async {
                let r = http.get(&raw_url).send().await.unwrap();
                let _: serde_json::Value = r.json().await.unwrap();
            });
        }));
    }
    let raw_p50 = report("raw HTTP GET of the same search", samples);
    println!(
        "{:<34} {:+.2} ms at p50",
        "client overhead over raw HTTP",
        client_p50 - raw_p50
    );

    let now = jiff::Timestamp::now();
    let mut samples = Vec::new();
    for _ in 0..rounds {
        samples.push(time(&mut || {
            rt.block_on(emr.upcoming_appointments(&anna, now)).unwrap();
        }));
    }
    report("upcoming_appointments", samples);

    let slot_query = SlotQuery {
        practitioner: Some("patel".into()),
        limit: 5,
        ..SlotQuery::default()
    };
    let mut samples = Vec::new();
    for _ in 0..rounds {
        samples.push(time(&mut || {
            rt.block_on(emr.free_slots(&slot_query)).unwrap();
        }));
    }
    report("free_slots (practitioner, 5)", samples);

    let slots = rt
        .block_on(emr.free_slots(&SlotQuery {
            limit: rounds * 2,
            ..SlotQuery::default()
        }))
        .unwrap();
    let mut book = Vec::new();
    let mut cancel = Vec::new();
    for slot in slots.iter().take(rounds) {
        let mut booked = None;
        book.push(time(&mut || {
            booked = match rt.block_on(emr.book(&anna, &slot.id, None)).unwrap() {
                BookOutcome::Booked(a) => Some(a.id),
                BookOutcome::SlotTaken { .. } => None,
            };
        }));
        if let Some(id) = booked {
            cancel.push(time(&mut || {
                rt.block_on(emr.cancel(&id, "bench")).unwrap();
            }));
        }
    }
    report("book", book);
    report("cancel", cancel);
}
