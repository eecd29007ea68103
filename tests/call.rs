//! The live call, end to end on the real stack: `carevoice serve` with the real speech models and
//! the default flow, a seeded FHIR server (sekmet-fhir), and baresip as the patient's phone. The
//! patient is a scripted WAV (espeak-ng speech at 8 kHz placed on a timeline with pauses long
//! enough for the agent to answer); baresip records what it hears, and the test transcribes that
//! recording with the real recognizer, then checks FHIR and the audit log.
//!
//! These calls take a minute each on a 2-core machine; they run one at a time.

mod support;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use support::clinic::LiveClinic;
use support::patient;
use support::phone::{Phone, speech_wav};
use support::sip::{Kamailio, sipp_uac};
use support::{free_port_range, render_template};

/// One call at a time: each uses both cores for recognition and synthesis.
static ONE_CALL: Mutex<()> = Mutex::new(());

/// What the patient heard, transcribed by the real recognizer (lower case). The recording is
/// cut at pauses into pieces of at most 20 s, so each fits one recognizer window.
fn transcribe(wav: &Path) -> String {
    use carevoice::speech::asr::{AsrOptions, Whisper, Window};
    use carevoice::speech::audio::{Audio, read_wav};
    let models = carevoice::config::cache_dir().join("models");
    let model = carevoice::speech::locate("test", "whisper-tiny.en-q8", &models).unwrap();
    let whisper = Whisper::load(&model, AsrOptions::default()).unwrap();
    // CAREVOICE_TEST_KEEP=DIR keeps the recording for a look after the test.
    if let Some(keep) = std::env::var_os("CAREVOICE_TEST_KEEP") {
        let name = wav.file_name().unwrap();
        let _ = std::fs::copy(wav, Path::new(&keep).join(name));
    }
    let audio = read_wav(wav).unwrap().resampled(16_000).unwrap();
    let mut state = whisper.state().unwrap();
    let mut text = String::new();
    for (start, end) in speech_pieces(&audio.samples, 16_000, 20.0) {
        let piece = Audio {
            rate: 16_000,
            samples: audio.samples[start..end].to_vec(),
        };
        // The full window: the test's ear is the reference, not the calls' fitted fast path
        // (which now and then drops a piece's tail there).
        let t = whisper
            .transcribe_window(&mut state, &piece, Window::Full)
            .unwrap();
        println!(
            "piece {:.1}-{:.1} s: {}",
            start as f32 / 16_000.0,
            end as f32 / 16_000.0,
            t.text.trim()
        );
        text.push_str(t.text.trim());
        text.push(' ');
    }
    text.to_lowercase()
}

/// Sample ranges of `samples` with speech, cut at pauses (≥ 700 ms under -40 dBFS), each at most
/// `max_secs` long; silence-only stretches are left out.
fn speech_pieces(samples: &[f32], rate: usize, max_secs: f32) -> Vec<(usize, usize)> {
    let frame = rate / 50;
    let loud: Vec<bool> = samples
        .chunks(frame)
        .map(|f| (f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32).sqrt() > 0.01)
        .collect();
    let max_frames = (max_secs * 50.0) as usize;
    let mut pieces = Vec::new();
    let mut start: Option<usize> = None;
    let mut quiet = 0;
    for (i, l) in loud.iter().enumerate() {
        match (start, *l) {
            (None, true) => {
                start = Some(i);
                quiet = 0;
            }
            (Some(s), _) => {
                quiet = if *l { 0 } else { quiet + 1 };
                let long = i - s >= max_frames;
                if quiet >= 35 || long {
                    pieces.push((s * frame, ((i + 1) * frame).min(samples.len())));
                    start = None;
                }
            }
            (None, false) => {}
        }
    }
    if let Some(s) = start {
        pieces.push((s * frame, samples.len()));
    }
    pieces
}

/// Each needle (alternatives split by `|`, for words whisper tiny spells more than one way) is
/// somewhere in what the caller heard.
fn heard_all(heard: &str, needles: &[&str], context: &str) {
    for n in needles {
        assert!(
            n.split('|').any(|alt| heard.contains(alt)),
            "the caller never heard {n:?}; heard:\n{heard}\n{context}"
        );
    }
}

/// The agent said each of `said` (phrases; alternatives split by `|`), by its own audited
/// replies, and the caller heard it: each sentence of the agent's with a phrase of `heard` is in
/// the transcription of the caller's recording, and so are most of the agent's words overall.
/// (The ear is whisper tiny on telephone audio: it misspells names and numbers, so a sentence
/// counts as heard when most of its words are.)
fn said_and_heard(talk: &Conversation, said: &[&str], heard: &[&str], context: &str) {
    for n in said.iter().chain(heard) {
        assert!(
            n.split('|').any(|alt| talk.said.contains(alt)),
            "the agent never said {n:?}; it said:\n{}\n{context}",
            talk.said
        );
    }
    let heard_words = words(&talk.heard);
    let recall = |text: &str| {
        let said = words(text);
        let missed: Vec<_> = said.difference(&heard_words).cloned().collect();
        (1.0 - missed.len() as f64 / said.len().max(1) as f64, missed)
    };
    for n in heard {
        for sentence in talk
            .said
            .split(['.', '?', '!'])
            .filter(|s| n.split('|').any(|alt| s.contains(alt)))
        {
            let (r, missed) = recall(sentence);
            assert!(
                r >= MIN_RECALL,
                "the caller did not hear {sentence:?} (missed {missed:?}):\n{}\n{context}",
                talk.heard
            );
        }
    }
    let (r, missed) = recall(&talk.said);
    println!(
        "the caller heard {:.0}% of the agent's words; missed {missed:?}",
        r * 100.0
    );
    assert!(
        r >= MIN_RECALL,
        "the caller heard only {:.0}% of the agent's words (missed {missed:?}):\n{}\nthe agent said:\n{}\n{context}",
        r * 100.0,
        talk.heard,
        talk.said
    );
}

/// The share of the agent's words the caller must hear (whisper tiny on G.711 hears about 90%).
const MIN_RECALL: f64 = 0.7;

/// Distinct words of three or more letters, lower case.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect()
}

/// A scenario from tests/peers/sipp with its placeholders filled, written into `dir`.
fn scenario(name: &str, dir: &Path, vars: &[(&str, String)]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, render_template(&format!("sipp/{name}"), vars)).unwrap();
    path.display().to_string()
}

/// What a converse() call left: what the patient heard (transcribed) and the server's id of the
/// call (its log lines carry it).
struct Conversation {
    heard: String,
    call: String,
    /// What the agent said on the call (its audited replies, lower case).
    said: String,
}

/// Dials the clinic and answers the agent's questions with `lines` ((flow steps, text) pairs,
/// see [`patient::answer`]). Other calls may run at the same time: the server's log lines are
/// told apart by call id.
fn converse(
    clinic: &LiveClinic,
    lines: &[(&'static str, &'static str)],
    dir: &Path,
) -> Conversation {
    converse_beside(clinic, &Route::Direct, lines, dir, || {})
}

/// How the patient's phone reaches the clinic.
enum Route {
    /// Straight to carevoice over UDP, RTP in the clear.
    Direct,
    /// Over TLS to this Kamailio (which relays to carevoice over UDP), with mandatory SRTP.
    KamailioTlsSrtp(u16),
}

/// [`converse`] over `route`, calling `meanwhile` once the patient has heard the greeting (to
/// start other calls beside it).
fn converse_beside(
    clinic: &LiveClinic,
    route: &Route,
    lines: &[(&'static str, &'static str)],
    dir: &Path,
    meanwhile: impl FnOnce(),
) -> Conversation {
    let lines = patient::script(lines);
    let wavs = patient::voice(&lines, dir);
    let (uri, srtp) = match route {
        Route::Direct => (format!("sip:clinic@127.0.0.1:{}", clinic.sip_port), false),
        Route::KamailioTlsSrtp(port) => {
            (format!("sip:clinic@127.0.0.1:{port};transport=tls"), true)
        }
    };
    let mut phone = Phone::dial(&uri, srtp, dir);
    let first = clinic.wait_feed(patient::WAITING, None, 1, Duration::from_secs(90));
    assert!(
        !first.is_empty(),
        "no greeting\n--- baresip ---\n{}\n--- carevoice ---\n{}",
        phone.log(),
        clinic.log()
    );
    let call = first[0]["call"].as_str().unwrap().to_string();
    meanwhile();
    match patient::answer(
        clinic,
        &call,
        &mut phone,
        &lines,
        &wavs,
        Duration::from_secs(90),
    ) {
        Ok(spoken) => println!("patient: {spoken:?}"),
        Err((_, why)) => panic!(
            "{why}\n--- baresip ---\n{}\n{}",
            phone.log(),
            clinic.context()
        ),
    }
    // The agent ends the call (goodbye, or a transfer).
    let ended = clinic.wait_feed("finished", Some(&call), 1, Duration::from_secs(90));
    let (heard, log) = phone.finish();
    assert!(
        !ended.is_empty() && !heard.is_empty(),
        "the call did not end, or nothing was recorded:\n{log}\n--- carevoice ---\n{}",
        clinic.log()
    );
    Conversation {
        heard: transcribe(&heard[0]),
        said: said_on(clinic, &call),
        call,
    }
}

/// The agent's replies on `call`, from the audit log (the records are written a moment after
/// each turn, so this waits for the call's last turn to be there).
fn said_on(clinic: &LiveClinic, call: &str) -> String {
    let logged = clinic.call_events(call, "turn").len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let turns: Vec<_> = clinic
            .audit_turns()
            .into_iter()
            .filter(|t| t["body"]["call_id"] == call)
            .collect();
        if turns.len() >= logged || std::time::Instant::now() > deadline {
            return turns
                .iter()
                .filter_map(|t| t["transcript"]["reply"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_patient_books_an_appointment_by_phone() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let clinic = LiveClinic::start("", "");
    let dir = tempfile::tempdir().unwrap();
    let anna = clinic.patient_id("Smith", "Anna");
    let before = clinic.booked_for(&anna);
    // Meanwhile: calls that send no audio at all, and an offer with broken SDP.
    let sip = std::net::SocketAddr::from(([127, 0, 0, 1], clinic.sip_port));
    let hostile_dir = tempfile::tempdir().unwrap();
    let no_audio = scenario(
        "uac_no_audio.xml",
        hostile_dir.path(),
        &[("CALL_MS", "15000".into())],
    );
    let bad_sdp = scenario("uac_bad_sdp.xml", hostile_dir.path(), &[]);
    let hostile_path = hostile_dir.path().to_path_buf();
    let mut hostile = None;
    // The patient's phone talks TLS to the clinic's SIP proxy, with SRTP media end to end.
    let kamailio = Kamailio::start(sip);
    let talk = converse_beside(
        &clinic,
        &Route::KamailioTlsSrtp(kamailio.tls_port),
        &[
            ("how_can_i_help", "I would like to book an appointment."),
            ("ask_name", "My name is Anna Smith."),
            ("ask_dob", "March third, nineteen seventy five."),
            ("book_when|book_when_again", "Next Tuesday afternoon."),
            ("book_confirm", "Yes, please."),
            ("anything_else", "No, that's all. Thank you."),
        ],
        dir.path(),
        || {
            hostile = Some(std::thread::spawn(move || {
                let bad = sipp_uac(
                    sip,
                    &bad_sdp,
                    "u1",
                    1,
                    1,
                    Duration::from_secs(20),
                    &hostile_path,
                );
                let silent = sipp_uac(
                    sip,
                    &no_audio,
                    "u1",
                    2,
                    1,
                    Duration::from_secs(60),
                    &hostile_path,
                );
                (bad, silent)
            }))
        },
    );
    let context = clinic.context();
    let (bad, silent) = hostile.take().unwrap().join().unwrap();
    assert!(bad.success, "broken SDP: {}\n{context}", bad.output);
    assert!(silent.success, "silent calls: {}\n{context}", silent.output);
    said_and_heard(
        &talk,
        &[
            "how can i help",
            "first and last name",
            "date of birth",
            "i have tuesday",
            "shall i book it",
            "anything else",
            "goodbye",
        ],
        // The greeting and the read-back of the booking.
        &["thank you for calling", "booked for tuesday"],
        &context,
    );
    // Exactly one new appointment for Anna Smith, on a Tuesday afternoon (clinic time).
    let after = clinic.booked_for(&anna);
    let new: Vec<_> = after
        .iter()
        .filter(|(id, _)| !before.iter().any(|(b, _)| b == id))
        .collect();
    assert_eq!(new.len(), 1, "new appointments: {new:?}\n{context}");
    let start: jiff::Timestamp = new[0].1.parse().unwrap();
    let local = start.to_zoned(jiff::tz::TimeZone::get("America/New_York").unwrap());
    assert_eq!(local.weekday(), jiff::civil::Weekday::Tuesday, "{local}");
    assert!(local.hour() >= 12, "{local}");
    // One audit record per turn: the greeting and every caller turn.
    let turns = clinic.call_events(&talk.call, "turn");
    assert!(turns.len() >= 7, "{} turns logged\n{context}", turns.len());
    let audited = clinic
        .audit_turns()
        .into_iter()
        .filter(|t| t["body"]["call_id"] == talk.call.as_str())
        .count();
    assert_eq!(audited, turns.len(), "audit call_turn records\n{context}");
    let ended = clinic.feed_of("finished", Some(&talk.call));
    assert_eq!(ended[0]["outcome"], "completed", "{context}");
    // (The SIP layer logs the answer before the call's span exists; the sipp calls beside it
    // are plain RTP.)
    let answering = clinic.events("answering call");
    assert!(
        answering.iter().any(|a| a["srtp"] == true),
        "no SRTP call answered: {answering:?}\n{context}"
    );
    // Per-stage latency on /metrics.
    let (_, metrics) = support::http_get(&clinic.server.url("/metrics")).unwrap();
    for stage in ["endpointing", "asr", "emr", "tts_first_audio", "reply"] {
        assert!(
            metrics.contains(&format!(
                "carevoice_call_stage_seconds_count{{stage=\"{stage}\"}}"
            )),
            "no {stage} histogram:\n{metrics}"
        );
    }
    for (name, value) in [
        ("carevoice_calls_active", "0"),
        ("carevoice_calls_ended_total{outcome=\"completed\"}", "1"),
    ] {
        assert!(
            metrics.lines().any(|l| l == format!("{name} {value}")),
            "{name} is not {value}:\n{metrics}"
        );
    }
}

#[test]
fn a_patient_hears_their_next_appointment_then_cancels_it() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let clinic = LiveClinic::start("", "");
    let dir = tempfile::tempdir().unwrap();
    let john = clinic.patient_id("Doe", "John");
    let before = clinic.booked_for(&john);
    assert_eq!(before.len(), 1, "the seed books one visit for John Doe");
    let talk = converse(
        &clinic,
        &[
            ("how_can_i_help", "I want to cancel my appointment."),
            ("ask_name", "My name is John Doe."),
            ("ask_dob", "July fourteenth, nineteen eighty."),
            ("cancel_confirm", "Yes, cancel it."),
            ("anything_else", "No, that's all."),
        ],
        dir.path(),
    );
    let context = clinic.context();
    said_and_heard(
        &talk,
        &["sarah chen", "shall i cancel it", "goodbye"],
        &[
            "thank you for calling",
            "your next appointment is",
            "is cancelled",
        ],
        &context,
    );
    assert!(clinic.booked_for(&john).is_empty(), "{context}");
    let appt = clinic.fhir_get(&format!("Appointment/{}", before[0].0));
    assert_eq!(appt["status"], "cancelled", "{appt}");
}

#[test]
fn a_patient_reschedules_then_leaves_a_message() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let clinic = LiveClinic::start("", "");
    let dir = tempfile::tempdir().unwrap();
    let anna = clinic.patient_id("Smith", "Anna");
    let before = clinic.booked_for(&anna);
    assert_eq!(before.len(), 1, "the seed books one visit for Anna Smith");
    let talk = converse(
        &clinic,
        &[
            ("how_can_i_help", "I need to reschedule my appointment."),
            ("ask_name", "My name is Anna Smith."),
            ("ask_dob", "March third, nineteen seventy five."),
            ("reschedule_when|reschedule_none", "Next Thursday morning."),
            ("reschedule_confirm", "Yes, please."),
            ("anything_else", "I would like to leave a message."),
            (
                "message_ask",
                "Please ask the doctor to call me about my prescription.",
            ),
            ("anything_else", "No, that's all. Thank you."),
        ],
        dir.path(),
    );
    let context = clinic.context();
    said_and_heard(
        &talk,
        &[
            "your next appointment is",
            "when would you like to move it",
            "what message would you like",
            "goodbye",
        ],
        &["thank you for calling", "all set", "passed your message on"],
        &context,
    );
    // Still exactly one booked visit, now on a Thursday morning (clinic time); the old one is
    // no longer booked.
    let after = clinic.booked_for(&anna);
    assert_eq!(after.len(), 1, "{after:?}\n{context}");
    assert_ne!(after[0].1, before[0].1, "the visit did not move\n{context}");
    let start: jiff::Timestamp = after[0].1.parse().unwrap();
    let local = start.to_zoned(jiff::tz::TimeZone::get("America/New_York").unwrap());
    assert_eq!(
        local.weekday(),
        jiff::civil::Weekday::Thursday,
        "{local}\n{context}"
    );
    assert!(local.hour() < 12, "{local}\n{context}");
    if after[0].0 != before[0].0 {
        let old = clinic.fhir_get(&format!("Appointment/{}", before[0].0));
        assert_eq!(old["status"], "cancelled", "{old}\n{context}");
    }
    // The message reached the EMR for staff, about Anna.
    let messages = clinic.fhir_get("Communication?_count=100");
    let about_anna = messages["entry"].as_array().into_iter().flatten().any(|e| {
        e["resource"]["subject"]["reference"] == format!("Patient/{anna}").as_str()
            && e["resource"]["payload"]
                .to_string()
                .to_lowercase()
                .contains("prescription")
    });
    assert!(
        about_anna,
        "no message about the prescription: {messages}\n{context}"
    );
}

#[test]
fn an_impostor_hears_no_phi_and_is_escalated() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let clinic = LiveClinic::start("", "");
    let dir = tempfile::tempdir().unwrap();
    let talk = converse(
        &clinic,
        &[
            ("how_can_i_help", "When is my next appointment?"),
            ("ask_name", "My name is Anna Smith."),
            ("ask_dob", "January first, nineteen ninety."),
            ("ask_name", "My name is Anna Smith."),
            ("ask_dob", "February second, nineteen ninety one."),
            ("ask_name", "My name is Anna Smith."),
            ("ask_dob", "December fifth, nineteen eighty."),
        ],
        dir.path(),
    );
    let context = clinic.context();
    // (The call's own "they will call you back" is checked by its outcome below.)
    said_and_heard(
        &talk,
        &["let's try once more"],
        &["couldn't confirm"],
        &context,
    );
    // Neither said (the audited replies) nor heard. (The greeting itself offers to "tell you
    // about your next appointment".)
    for phi in [
        "your next appointment is",
        "patel",
        "march",
        "1975",
        "booked for",
    ] {
        assert!(
            !talk.heard.contains(phi) && !talk.said.contains(phi),
            "the impostor heard {phi:?}:\n{}\nthe agent said:\n{}",
            talk.heard,
            talk.said
        );
    }
    let ended = clinic.feed_of("finished", Some(&talk.call));
    assert_eq!(ended[0]["outcome"], "callback", "{context}");
}

#[test]
fn a_caller_interrupts_the_greeting_and_is_answered() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let clinic = LiveClinic::start("", "");
    let dir = tempfile::tempdir().unwrap();
    let line = speech_wav(
        "I would like to book an appointment, please.",
        &dir.path().join("line"),
    );
    let mut phone = Phone::dial(
        &format!("sip:clinic@127.0.0.1:{}", clinic.sip_port),
        false,
        dir.path(),
    );
    // Talk over the greeting (about fourteen seconds long) four seconds into it.
    let answered = clinic.wait_feed("answered", None, 1, Duration::from_secs(30));
    assert!(!answered.is_empty(), "{}", clinic.log());
    std::thread::sleep(Duration::from_secs(4));
    phone.play(&line);
    let waiting = clinic.wait_feed("waiting", None, 1, Duration::from_secs(90));
    assert!(!waiting.is_empty(), "{}", clinic.log());
    std::thread::sleep(Duration::from_secs(1));
    let (sent, heard) = phone.recordings().expect("recordings");
    let (files, _) = phone.finish();
    let text = transcribe(&files[0]);
    let context = format!("heard: {text}\n--- carevoice ---\n{}", clinic.log());
    assert!(text.contains("first and last name"), "{context}");
    assert!(
        !text.contains("take a message"),
        "the greeting played on: {context}"
    );
    // From the recordings: the agent's audio stops soon after the caller starts talking.
    let said = support::phone::loud_frames(&sent);
    let got = support::phone::loud_frames(&heard);
    let onset = said.iter().position(|l| *l).expect("the caller spoke");
    let quiet_from = (onset..got.len())
        .find(|&i| got[i..(i + 15).min(got.len())].iter().all(|l| !*l))
        .expect("the agent stopped");
    let stop_ms = (quiet_from - onset) * 20;
    println!("barge-in: playback stopped {stop_ms} ms after the caller started");
    assert!(
        stop_ms <= 800,
        "playback went on {stop_ms} ms into the caller's speech\n{context}"
    );
    assert_eq!(
        clinic.events("barge-in: playback stopped").len(),
        1,
        "{context}"
    );
}

#[test]
fn serve_refuses_to_start_on_an_invalid_flow() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("broken.yaml");
    std::fs::write(
        &flow,
        "name: broken\nstart: greet\nidentify: greet\nsteps:\n  - id: greet\n    say: \"Hello\"\n    next: nowhere\n",
    )
    .unwrap();
    let config = dir.path().join("carevoice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[admin]\nport = {}\n[sip]\nenabled = true\nport = {}\n\
             [speech]\nenabled = true\n[emr]\nbase_url = \"http://127.0.0.1:9/fhir\"\n\
             [dialog]\nflow = \"{}\"\n",
            dir.path().join("data").display(),
            support::free_port(),
            free_port_range(1),
            flow.display()
        ),
    )
    .unwrap();
    let out = support::carevoice::run(
        &["--config", config.to_str().unwrap(), "serve"],
        dir.path(),
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("broken.yaml:7:") && err.contains("nowhere"),
        "the error names the file, line and the unknown step: {err}"
    );
}

#[test]
fn pressing_zero_transfers_the_caller_to_the_front_desk() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let staff_sf = scenario("uas_staff.xml", dir.path(), &[]);
    let mut staff = support::sip::SippScenarioUas::start(
        Path::new(&staff_sf),
        Duration::from_secs(600),
        dir.path(),
    );
    let clinic = LiveClinic::start(
        "",
        &format!("transfer_uri = \"sip:frontdesk@127.0.0.1:{}\"", staff.port),
    );
    let mut phone = Phone::dial(
        &format!("sip:clinic@127.0.0.1:{}", clinic.sip_port),
        false,
        dir.path(),
    );
    let first = clinic.wait_feed("waiting", None, 1, Duration::from_secs(90));
    assert!(!first.is_empty(), "{}", clinic.log());
    phone.press('0');
    let staff_ok = staff.wait(Duration::from_secs(120));
    let ended = clinic.wait_feed("finished", None, 1, Duration::from_secs(60));
    let (files, log) = phone.finish();
    let context = format!(
        "--- baresip ---\n{log}\n--- staff ---\n{}\n--- carevoice ---\n{}",
        staff.log_tail(),
        clinic.log()
    );
    assert_eq!(
        staff_ok,
        Some(true),
        "the staff phone did not get the call\n{context}"
    );
    assert!(!ended.is_empty(), "the call did not finish\n{context}");
    assert_eq!(ended[0]["outcome"], "transferred", "{context}");
    let heard = transcribe(&files[0]);
    heard_all(
        &heard,
        // whisper tiny may hear "a member" as "the member".
        &["connect you with", "member of our staff"],
        &context,
    );
}

#[test]
fn a_caller_whose_phone_cannot_transfer_is_bridged_to_the_front_desk() {
    let _one = ONE_CALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let staff_sf = scenario("uas_staff_talks.xml", dir.path(), &[]);
    let mut staff = support::sip::SippScenarioUas::start(
        Path::new(&staff_sf),
        Duration::from_secs(600),
        dir.path(),
    );
    let clinic = LiveClinic::start(
        "",
        &format!("transfer_uri = \"sip:frontdesk@127.0.0.1:{}\"", staff.port),
    );
    // The caller presses 0 after the greeting, answers the REFER with 405 and talks.
    let caller_sf = scenario("uac_refuses_refer_bridged.xml", dir.path(), &[]);
    let caller = sipp_uac(
        std::net::SocketAddr::from(([127, 0, 0, 1], clinic.sip_port)),
        &caller_sf,
        "u1",
        1,
        1,
        Duration::from_secs(150),
        dir.path(),
    );
    let staff_ok = staff.wait(Duration::from_secs(30));
    let ended = clinic.wait_feed("finished", None, 1, Duration::from_secs(30));
    let context = format!(
        "--- caller ---\n{}\n--- staff ---\n{}\n--- carevoice ---\n{}",
        caller.output,
        staff.log_tail(),
        clinic.log()
    );
    assert!(caller.success, "the caller's scenario failed\n{context}");
    assert_eq!(
        staff_ok,
        Some(true),
        "the staff phone's scenario failed\n{context}"
    );
    // Audio went both ways through the bridge; staff ended it and the caller got the BYE.
    let bridge = clinic.events("bridge ended");
    assert_eq!(bridge.len(), 1, "{context}");
    assert_eq!(bridge[0]["end"], "StaffHungUp", "{context}");
    for way in ["to_staff", "to_caller"] {
        assert!(
            bridge[0][way].as_u64().unwrap_or(0) > 50,
            "{way}: {}\n{context}",
            bridge[0]
        );
    }
    assert_eq!(ended[0]["outcome"], "transferred", "{context}");
}
