//! The call harness: N concurrent scripted patients call `carevoice serve` (real models, the
//! default flow, a seeded local FHIR server) from baresip and book an appointment. Each patient
//! answers the question the agent waits on (a `waiting` event on the server's call feed,
//! `GET /calls/events` on the admin port, names the flow step), and says it again when asked
//! again, as a person would (tests/support/patient.rs).
//!
//! Reported per concurrency level:
//! - voice-to-voice latency heard on the wire: from the end of each caller line to the first
//!   reply audio, read from the caller's own recordings (what baresip sent and heard, on one
//!   timeline), p50/p95;
//! - the server's own per-stage latencies (its "turn" log lines) p50/p95: endpointing, ASR,
//!   NLU, EMR, TTS first audio, reply;
//! - how many calls completed, wall time, and the server's peak resident memory.
//!
//! `cargo bench --bench calls` (CALLS=1,2,4 by default: a comma list of concurrency levels).
//! Under `cargo test --all-targets` it runs one call (or CALLS) as a check that the harness works.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::clinic::LiveClinic;
use support::patient::{self, Line, WAITING};
use support::phone::{Phone, reply_latencies};

/// Seeded demo patients (src/emr/seed.rs) as a caller would say them: name, date of birth, and
/// the time they ask for (spread over the week, as real callers' are).
const PATIENTS: &[Patient] = &[
    (
        "My name is Anna Smith.",
        "March third, nineteen seventy five.",
        "Next Tuesday afternoon.",
    ),
    (
        "My name is John Doe.",
        "July fourteenth, nineteen eighty.",
        "Next Wednesday morning.",
    ),
    (
        "My name is Maria Garcia.",
        "November thirtieth, nineteen ninety two.",
        "Next Thursday afternoon.",
    ),
    (
        "My name is Robert Johnson.",
        "January twenty second, nineteen sixty five.",
        "Next Monday morning.",
    ),
    (
        "My name is Emily Nguyen.",
        "May ninth, two thousand one.",
        "Next Friday morning.",
    ),
];

type Patient = (&'static str, &'static str, &'static str);

/// The voice-to-voice p95 a level must stay under to count as held (the 1.5 s).
const HELD_P95_MS: u64 = 1500;

/// What one call gave.
struct CallResult {
    call: Option<String>,
    lines_spoken: usize,
    repeats: usize,
    finished: bool,
    latencies_ms: Vec<u64>,
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let default = if benching { "1,2,4" } else { "1" };
    let levels: Vec<usize> = std::env::var("CALLS")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    println!(
        "machine: {} cores; server: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        support::carevoice::bin().display()
    );
    let dial = Mutex::new(());
    // The largest level whose calls all finished with voice-to-voice p95 under HELD_P95_MS.
    let mut held = 0;
    for &n in &levels {
        // A fresh server and FHIR server per level: the schedule's open slots and the server's
        // peak memory are then those of this level alone.
        let clinic = LiveClinic::start("max_calls = 64", "");
        let started = Instant::now();
        let results: Vec<CallResult> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..n)
                .map(|i| {
                    let (clinic, dial) = (&clinic, &dial);
                    s.spawn(move || one_call(clinic, dial, PATIENTS[i % PATIENTS.len()]))
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let wall = started.elapsed().as_secs_f64();
        let mut heard: Vec<u64> = results
            .iter()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect();
        let finished = results.iter().filter(|r| r.finished).count();
        let lines: usize = results.iter().map(|r| r.lines_spoken).sum();
        let repeats: usize = results.iter().map(|r| r.repeats).sum();
        println!(
            "calls={n} finished={finished} lines={lines} repeated={repeats} replies heard={} \
             voice-to-voice p50={} ms p95={} ms max={} ms wall={wall:.0} s",
            heard.len(),
            percentile(&mut heard, 0.50),
            percentile(&mut heard, 0.95),
            heard.iter().max().copied().unwrap_or(0),
        );
        let p95 = percentile(&mut heard, 0.95);
        if finished == n && p95 < HELD_P95_MS {
            held = held.max(n);
        }
        let ids: BTreeSet<&str> = results.iter().filter_map(|r| r.call.as_deref()).collect();
        for (stage, mut ms) in server_stages(&clinic, &ids) {
            println!(
                "  server {stage:<16} p50={:>5} ms p95={:>5} ms n={}",
                percentile(&mut ms, 0.50),
                percentile(&mut ms, 0.95),
                ms.len()
            );
        }
        if let Some(kib) = peak_rss_kib(clinic.server.child.pid()) {
            println!("  server peak RSS {} MiB", kib / 1024);
        }
        if !benching {
            // The check: the call went through and every line got a reply.
            assert!(
                finished == n && !heard.is_empty() && lines == n * script(PATIENTS[0]).len(),
                "the harness's call did not complete\n{}",
                clinic.context()
            );
        }
    }
    println!(
        "largest level held (all calls finished, voice-to-voice p95 < {HELD_P95_MS} ms): {held}"
    );
}

fn script((name, dob, when): Patient) -> Vec<Line> {
    patient::script(&[
        ("how_can_i_help", "I would like to book an appointment."),
        ("ask_name", name),
        ("ask_dob", dob),
        ("book_when|book_when_again", when),
        ("book_confirm", "Yes, please."),
        ("anything_else", "No, that's all. Thank you."),
    ])
}

/// One patient books. Dialling and telling which server call is ours happen under `dial`, so
/// concurrent callers start a moment apart (as real calls do) and each knows its call id.
fn one_call(clinic: &LiveClinic, dial: &Mutex<()>, patient: Patient) -> CallResult {
    let dir = tempfile::tempdir().unwrap();
    let lines = script(patient);
    let wavs = patient::voice(&lines, dir.path());
    let mut result = CallResult {
        call: None,
        lines_spoken: 0,
        repeats: 0,
        finished: false,
        latencies_ms: Vec::new(),
    };
    let (mut phone, call) = {
        let _one = dial.lock().unwrap_or_else(|e| e.into_inner());
        let known = call_ids(clinic);
        let phone = Phone::dial(
            &format!("sip:clinic@127.0.0.1:{}", clinic.sip_port),
            false,
            dir.path(),
        );
        (phone, wait_new_call(clinic, &known))
    };
    let Some(call) = call else {
        eprintln!("no greeting:\n{}", phone.log());
        return result;
    };
    let spoken = patient::answer(
        clinic,
        &call,
        &mut phone,
        &lines,
        &wavs,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|(spoken, why)| {
        eprintln!("call {call}: {why}");
        // What the agent heard and said on it (the callers are synthetic: no PHI).
        for t in clinic.audit_turns() {
            if t["body"]["call_id"] == call.as_str() {
                eprintln!("  turn {}: {}", t["body"]["turn"], t["transcript"]);
            }
        }
        spoken
    });
    result.lines_spoken = spoken.lines;
    result.repeats = spoken.repeats;
    result.finished = !clinic
        .wait_feed("finished", Some(&call), 1, Duration::from_secs(120))
        .is_empty();
    result.latencies_ms = phone
        .recordings()
        .map(|(sent, heard)| reply_latencies(&sent, &heard))
        .unwrap_or_default();
    phone.finish();
    result.call = Some(call);
    result
}

fn call_ids(clinic: &LiveClinic) -> BTreeSet<String> {
    clinic
        .feed_of(WAITING, None)
        .iter()
        .filter_map(|e| e["call"].as_str().map(str::to_string))
        .collect()
}

fn wait_new_call(clinic: &LiveClinic, known: &BTreeSet<String>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Some(new) = call_ids(clinic).into_iter().find(|c| !known.contains(c)) {
            return Some(new);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Per stage, the latencies the server logged on the turns of `calls`.
fn server_stages(clinic: &LiveClinic, calls: &BTreeSet<&str>) -> BTreeMap<String, Vec<u64>> {
    let mut stages: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for turn in clinic.events("turn") {
        if !turn["span"]["call"]
            .as_str()
            .is_some_and(|c| calls.contains(c))
        {
            continue;
        }
        // `latency_ms` is logged as the Debug form of a map of stage to ms, which is JSON.
        let Some(map) = turn["latency_ms"]
            .as_str()
            .and_then(|s| serde_json::from_str::<BTreeMap<String, u64>>(s).ok())
        else {
            continue;
        };
        for (stage, ms) in map {
            stages.entry(stage).or_default().push(ms);
        }
    }
    stages
}

fn percentile(values: &mut [u64], p: f64) -> u64 {
    values.sort_unstable();
    values
        .get(((values.len() as f64 * p).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0)
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
