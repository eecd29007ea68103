//! The speech engines on the real models (installed by `scripts/setup`): word error rate on human
//! speech with known transcripts, clean and degraded to 8 kHz μ-law + noise by sox; a TTS -> ASR
//! round trip over clinic sentences; the VAD on real speech; bad input and bad models.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use carevoice::config::SpeechConfig;
use carevoice::speech::asr::{AsrOptions, Whisper};
use carevoice::speech::audio::{self, Audio};
use carevoice::speech::text::normalize;
use carevoice::speech::vad::VadEvent;
use carevoice::speech::{Engines, locate};
use support::{program, run_ok};

const JFK: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";
const TWO_CITIES: &str = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the other way, in short, the period was so far like the present period, that some of its noisiest authorities insisted on its being received, for good or for evil, in the superlative degree of comparison only.";
const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

fn models_dir() -> PathBuf {
    carevoice::config::cache_dir().join("models")
}

/// A test file from the manifest (kind "testdata"); fails with the fix when missing.
fn testdata(name: &str) -> PathBuf {
    locate("test", name, &models_dir())
        .unwrap_or_else(|e| panic!("{e} (scripts/setup installs the test data)"))
}

/// The speech tests run one at a time: each engine already uses both cores, and whisper's
/// spin barriers slow down badly when the CPU is oversubscribed.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn engines() -> Arc<Engines> {
    static ENGINES: OnceLock<Arc<Engines>> = OnceLock::new();
    ENGINES
        .get_or_init(|| {
            let config = SpeechConfig {
                vocabulary: vec![
                    "Dr. Okafor".into(),
                    "Dr. Lindqvist".into(),
                    "appointment".into(),
                ],
                ..SpeechConfig::default()
            };
            Arc::new(
                Engines::load(&config, &models_dir(), None)
                    .unwrap_or_else(|e| panic!("{e} (scripts/setup installs the models)")),
            )
        })
        .clone()
}

/// Lowercase words, punctuation dropped, numbers/dates/times spelled out.
fn words(text: &str) -> Vec<String> {
    normalize(text, false)
        .to_lowercase()
        .replace(['-', '—', '–'], " ")
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate: word-level edit distance over the reference length.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = words(reference);
    let h = words(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

/// 8 kHz telephone audio: sox resamples, adds white noise, encodes μ-law; decoded back to PCM.
fn degrade(input: &Path, dir: &Path) -> PathBuf {
    let mulaw = dir.join(format!(
        "{}-8k-ulaw.wav",
        input.file_stem().unwrap().to_string_lossy()
    ));
    let pcm = dir.join(format!(
        "{}-8k.wav",
        input.file_stem().unwrap().to_string_lossy()
    ));
    let noise = dir.join("noise.wav");
    let secs = audio::read_wav(input).unwrap().duration_secs();
    run_ok(
        "sox noise",
        Command::new(program("sox"))
            .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(&noise)
            .args(["synth", &format!("{secs:.3}"), "whitenoise", "vol", "0.01"]),
    );
    let clean8k = dir.join("clean8k.wav");
    run_ok(
        "sox resample",
        Command::new(program("sox"))
            .arg(input)
            .args(["-r", "8000", "-c", "1", "-b", "16"])
            .arg(&clean8k),
    );
    run_ok(
        "sox mix + mu-law",
        Command::new(program("sox"))
            .arg("-m")
            .arg(&clean8k)
            .arg(&noise)
            .args(["-e", "u-law", "-r", "8000"])
            .arg(&mulaw),
    );
    run_ok(
        "sox mu-law decode",
        Command::new(program("sox"))
            .arg(&mulaw)
            .args(["-e", "signed-integer", "-b", "16"])
            .arg(&pcm),
    );
    pcm
}

#[test]
fn wer_on_human_speech_clean_and_telephone() {
    let _serial = serial();
    let e = engines();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("jfk-wav", JFK, 0.10, 0.20),
        ("two-cities-wav", TWO_CITIES, 0.15, 0.30),
        ("beckett-wav", BECKETT, 0.35, 0.50),
    ];
    let mut table =
        String::from("\n| file | WER clean | WER 8 kHz μ-law + noise |\n|---|---|---|\n");
    let mut failures = Vec::new();
    for (name, reference, clean_bound, phone_bound) in cases {
        let path = testdata(name);
        let clean = e
            .whisper
            .transcribe(&audio::read_wav(&path).unwrap())
            .unwrap();
        let phone_path = degrade(&path, dir.path());
        let phone_audio = audio::read_wav(&phone_path).unwrap();
        assert_eq!(phone_audio.rate, 8000);
        let phone = e.whisper.transcribe(&phone_audio).unwrap();
        let (wc, wp) = (wer(reference, &clean.text), wer(reference, &phone.text));
        table.push_str(&format!("| {name} | {wc:.3} | {wp:.3} |\n"));
        eprintln!("{name} clean: {}\n{name} phone: {}", clean.text, phone.text);
        if wc > clean_bound || wp > phone_bound {
            failures.push(format!(
                "{name}: WER clean {wc:.3} (bound {clean_bound}), phone {wp:.3} (bound {phone_bound})"
            ));
        }
        assert!(
            clean.confidence > 0.5,
            "{name}: confidence {}",
            clean.confidence
        );
        assert!(!clean.segments.is_empty());
        assert!(clean.segments.iter().all(|s| s.start_ms <= s.end_ms));
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}

const CLINIC: [&str; 32] = [
    "I would like to book an appointment with Dr. Okafor.",
    "My date of birth is 7/21/1984.",
    "Can I come in on Tuesday at 3:30 PM?",
    "Your appointment is on 03/04 at 10:15 AM.",
    "Please call us back at 555-123-4567.",
    "I need to cancel my appointment on Friday.",
    "Is Dr. Lindqvist available next Monday morning?",
    "My phone number is 555-867-5309.",
    "The clinic opens at 8 AM and closes at 5 PM.",
    "I was born on 12/02/1990.",
    "Can you move my appointment to Thursday at 2:45 PM?",
    "I have a fever and a sore throat.",
    "My name is Maria Gonzalez.",
    "I need a refill of my blood pressure medication.",
    "Please confirm my appointment for 11/15 at 9:00 AM.",
    "My insurance card number ends in 4 4 7 1.",
    "I would like to reschedule to next week.",
    "The address is 42 Maple Street.",
    "I am calling about my test results.",
    "Can I speak with a nurse please?",
    "My daughter is 7 years old.",
    "We will see you on 06/30 at 4:00 PM.",
    "I need a new patient appointment.",
    "The pharmacy number is 555-246-8100.",
    "Is there anything available before 10 AM?",
    "My last visit was on 1/9/2024.",
    "Please arrive 15 minutes early.",
    "Yes, that works for me.",
    "No, I cannot make it on Wednesday.",
    "I would like the earliest appointment with Dr. Okafor.",
    "My son has an ear infection.",
    "Thank you, goodbye.",
];

#[test]
fn tts_to_asr_round_trip_on_clinic_sentences() {
    let _serial = serial();
    let e = engines();
    let (mut errors, mut total) = (0.0, 0usize);
    let mut worst = Vec::new();
    for (i, sentence) in CLINIC.iter().enumerate() {
        // Alternate the call's rate: telephone 8 kHz and wideband 16 kHz.
        let rate = if i % 2 == 0 { 8000 } else { 16000 };
        let samples = e.tts.synthesize(sentence, rate).unwrap();
        assert!(samples.len() > rate as usize / 2, "{sentence}: too short");
        let t = e.whisper.transcribe(&Audio { rate, samples }).unwrap();
        let n = words(sentence).len();
        let w = wer(sentence, &t.text);
        errors += w * n as f64;
        total += n;
        if w > 0.0 {
            worst.push(format!("{w:.2} {sentence:?} -> {:?}", t.text));
        }
    }
    let overall = errors / total as f64;
    eprintln!(
        "round trip: {} sentences, {total} words, WER {overall:.3}\n{}",
        CLINIC.len(),
        worst.join("\n")
    );
    assert!(
        overall <= 0.15,
        "round-trip WER {overall:.3}:\n{}",
        worst.join("\n")
    );
}

#[test]
fn vad_finds_the_turns_in_real_speech() {
    let _serial = serial();
    let e = engines();
    let jfk = audio::read_wav(&testdata("jfk-wav"))
        .unwrap()
        .resampled(16000)
        .unwrap();
    let mut samples = vec![0.0f32; 16000];
    samples.extend_from_slice(&jfk.samples);
    samples.extend(std::iter::repeat_n(0.0, 32000));
    let mut vad = e.vad();
    assert_eq!(vad.classifier_name(), "silero");
    let mut events = Vec::new();
    for frame in samples.chunks(320) {
        events.extend(vad.push(frame).unwrap());
    }
    let starts = events
        .iter()
        .filter(|e| matches!(e, VadEvent::SpeechStart { .. }))
        .count();
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            VadEvent::TurnEnd { start_ms, end_ms } => Some((*start_ms, *end_ms)),
            _ => None,
        })
        .collect();
    assert!(starts >= 1 && starts == ends.len(), "{events:?}");
    // Speech begins after the 1 s of leading silence and the last turn ends before the padding.
    let first = ends.first().unwrap().0;
    assert!((1000..1800).contains(&first), "{events:?}");
    let last = ends.last().unwrap().1;
    let speech_end_ms = 1000 + jfk.samples.len() as u64 / 16;
    assert!(
        last <= speech_end_ms + 200 && last + 2500 > speech_end_ms,
        "{events:?}"
    );
    // A longer end-of-turn silence (a caller reciting digits) merges JFK's pauses into fewer turns.
    let mut patient = e.vad();
    patient.endpointer().set_end_of_turn_ms(3000);
    let mut merged = Vec::new();
    for frame in samples.chunks(320) {
        merged.extend(patient.push(frame).unwrap());
    }
    let merged_ends = merged
        .iter()
        .filter(|e| matches!(e, VadEvent::TurnEnd { .. }))
        .count();
    assert!(merged_ends <= ends.len(), "{merged:?}");
    // Silence alone is never speech.
    let mut quiet = e.vad();
    for _ in 0..100 {
        assert!(quiet.push(&[0.0; 320]).unwrap().is_empty());
    }
}

#[test]
fn asr_handles_bad_and_odd_input() {
    let _serial = serial();
    let e = engines();
    // Empty and silent: no text, no-speech probability 1.
    for samples in [Vec::new(), vec![0.0; 16000 * 2]] {
        let t = e
            .whisper
            .transcribe(&Audio {
                rate: 16000,
                samples,
            })
            .unwrap();
        assert_eq!(t.text, "");
        assert_eq!(t.no_speech_prob, 1.0);
    }
    // Clipped speech still transcribes.
    let jfk = audio::read_wav(&testdata("jfk-wav")).unwrap();
    let clipped: Vec<f32> = jfk
        .samples
        .iter()
        .map(|s| (s * 8.0).clamp(-0.5, 0.5))
        .collect();
    let t = e
        .whisper
        .transcribe(&Audio {
            rate: jfk.rate,
            samples: clipped,
        })
        .unwrap();
    assert!(wer(JFK, &t.text) < 0.35, "{}", t.text);
    // Too long: a clear error naming the limit key, not a 1-hour decode.
    let hour = Audio {
        rate: 8000,
        samples: vec![0.01; 8000 * 3600],
    };
    let err = e.whisper.transcribe(&hour).unwrap_err().to_string();
    assert!(
        err.contains("speech.asr_max_secs") && err.contains("3600.0 s"),
        "{err}"
    );
}

#[test]
fn bad_wav_files_are_clear_errors() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let jfk = testdata("jfk-wav");
    // Wrong format: μ-law WAV, and a text file.
    let ulaw = dir.path().join("ulaw.wav");
    run_ok(
        "sox",
        Command::new(program("sox"))
            .arg(&jfk)
            .args(["-r", "8000", "-e", "u-law"])
            .arg(&ulaw),
    );
    let err = audio::read_wav(&ulaw).unwrap_err().to_string();
    assert!(err.contains("ulaw.wav"), "{err}");
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "hello").unwrap();
    assert!(
        audio::read_wav(&text)
            .unwrap_err()
            .to_string()
            .contains("notes.wav")
    );
    // Truncated.
    let bytes = std::fs::read(&jfk).unwrap();
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = audio::read_wav(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut.wav") && err.contains("truncated"),
        "{err}"
    );
    // Stereo at 44.1 kHz reads as mono and transcribes.
    let stereo = dir.path().join("stereo.wav");
    run_ok(
        "sox",
        Command::new(program("sox"))
            .arg(&jfk)
            .args(["-r", "44100", "-c", "2"])
            .arg(&stereo),
    );
    let a = audio::read_wav(&stereo).unwrap();
    assert_eq!(a.rate, 44100);
    let t = engines().whisper.transcribe(&a).unwrap();
    assert!(wer(JFK, &t.text) < 0.15, "{}", t.text);
}

#[test]
fn corrupt_or_missing_models_name_the_file_and_the_fix() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A damaged copy of the real model (second half gone).
    let real = locate("speech.asr_model", "whisper-tiny.en-q8", &models_dir()).unwrap();
    let bytes = std::fs::read(&real).unwrap();
    let damaged = dir.path().join("ggml-tiny.en-q8_0.bin");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let err = Whisper::load(&damaged, AsrOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ggml-tiny.en-q8_0.bin") && err.contains("cannot load"),
        "{err}"
    );
    // Through the manifest: the hash check refuses it and names the install command.
    let err = locate("speech.asr_model", "whisper-tiny.en-q8", dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("speech.asr_model")
            && err.contains("carevoice models install whisper-tiny.en-q8"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = Engines::load(&SpeechConfig::default(), empty.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("carevoice models install"), "{err}");
}

#[test]
fn tts_streams_sentences_and_caches_prompts() {
    let _serial = serial();
    let e = engines();
    let mut chunks = 0;
    let total = e
        .tts
        .stream(
            "Hello. This is the clinic. How can I help you today?",
            8000,
            |c| {
                assert!(!c.is_empty());
                chunks += 1;
            },
        )
        .unwrap();
    assert_eq!(chunks, 3);
    assert!(total > 8000, "{total}");
    let a = e.tts.cached("One moment please.", 8000).unwrap();
    let b = e.tts.cached("One moment please.", 8000).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(e.tts.synthesize("", 8000).unwrap().is_empty());
}

/// What a call does with a reply: synthesis on a blocking thread, 20 ms frames over a channel to
/// the async side, stopped early when the caller barges in (the receiver goes away).
#[test]
fn tts_frames_stream_from_a_blocking_task_and_stop_on_barge_in() {
    let _serial = serial();
    let e = engines();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let text =
        "Thank you for calling. Your appointment is on 03/04 at 10:15 AM. Is there anything else?";
    // Whole reply: every frame is 20 ms at 16 kHz, and together they are as long as the reply
    // from `synthesize` (the last frame padded with silence).
    let whole = e.tts.synthesize(text, 16000).unwrap();
    let (frames, sent) = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<f32>>(8);
        let tts = e.tts.clone();
        let task = tokio::task::spawn_blocking(move || {
            tts.stream_frames(text, 16000, 20, |f| match tx.blocking_send(f.to_vec()) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(_) => std::ops::ControlFlow::Break(()),
            })
        });
        let mut frames = Vec::new();
        while let Some(f) = rx.recv().await {
            frames.push(f);
        }
        (frames, task.await.unwrap().unwrap())
    });
    assert_eq!(frames.len(), sent);
    assert!(frames.iter().all(|f| f.len() == 320));
    // Piper's duration noise makes each synthesis a little different in length: compare within 10%.
    let streamed = frames.len() * 320;
    assert!(
        streamed.abs_diff(whole.len()) * 10 < whole.len(),
        "{streamed} samples streamed, {} synthesized whole",
        whole.len()
    );
    let flat = frames.concat();
    assert!(flat.iter().any(|s| s.abs() > 0.05), "the frames are silent");
    // Barge-in after 5 frames: the receiver drops, the sender stops within the sentence it is in,
    // and the later sentences are never synthesized.
    let (got, sent) = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<f32>>(1);
        let tts = e.tts.clone();
        let task = tokio::task::spawn_blocking(move || {
            tts.stream_frames(text, 16000, 20, |f| match tx.blocking_send(f.to_vec()) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(_) => std::ops::ControlFlow::Break(()),
            })
        });
        let mut got = 0;
        while rx.recv().await.is_some() {
            got += 1;
            if got == 5 {
                break;
            }
        }
        drop(rx);
        (got, task.await.unwrap().unwrap())
    });
    assert_eq!(got, 5);
    let first_sentence = e.tts.synthesize("Thank you for calling.", 16000).unwrap();
    assert!(
        sent <= first_sentence.len().div_ceil(320) + 1,
        "{sent} frames sent after barge-in"
    );
    // Prompts prepared at start-up come from the cache at the call's rate.
    e.tts.prepare(&["Please hold.", "Goodbye."], 16000).unwrap();
    let a = e.tts.cached("Please hold.", 16000).unwrap();
    assert!(Arc::ptr_eq(
        &a,
        &e.tts.cached("Please hold.", 16000).unwrap()
    ));
    assert!(a.len() > 16000 / 4);
}

#[test]
fn cli_transcribe_and_say_round_trip() {
    let _serial = serial();
    use support::carevoice::run;
    let dir = tempfile::tempdir().unwrap();
    let jfk = testdata("jfk-wav");
    let out = run(&["transcribe", jfk.to_str().unwrap()], dir.path(), &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wer(JFK, &text) < 0.1, "{text}");
    let wav = dir.path().join("out.wav");
    let out = run(
        &[
            "say",
            "Your appointment is on Tuesday at 3:30 PM.",
            "-o",
            wav.to_str().unwrap(),
            "--rate",
            "8000",
        ],
        dir.path(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spoken = audio::read_wav(&wav).unwrap();
    assert_eq!(spoken.rate, 8000);
    let out = run(&["transcribe", wav.to_str().unwrap()], dir.path(), &[]);
    let heard = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        wer("Your appointment is on Tuesday at 3:30 PM.", &heard) <= 0.2,
        "{heard}"
    );
    // Bad input: a clear error naming the file, no panic.
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"RIFF").unwrap();
    let out = run(&["transcribe", bad.to_str().unwrap()], dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("bad.wav") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn serve_with_speech_and_a_missing_model_names_the_install_command() {
    let _serial = serial();
    use support::carevoice::run;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("carevoice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[admin]\nport = {}\n[models]\ndir = \"{}\"\n[speech]\nenabled = true\n",
            dir.path().join("data").display(),
            support::free_port(),
            dir.path().join("no-models").display()
        ),
    )
    .unwrap();
    let out = run(
        &["--config", config.to_str().unwrap(), "serve"],
        dir.path(),
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("carevoice models install onnxruntime"),
        "{err}"
    );
}

#[test]
fn serve_loads_the_engines_and_reports_the_vad_fallback() {
    let _serial = serial();
    let server = support::carevoice::Server::start(&format!(
        "[models]\ndir = \"{}\"\n[speech]\nenabled = true\nvad_model = \"/nonexistent/silero_vad.onnx\"\n",
        models_dir().display()
    ));
    let (status, body) = support::http_get(&server.url("/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("carevoice_vad_fallback 1"), "{body}");
    assert!(body.contains("carevoice_asr_queue_depth 0"), "{body}");
    let log = server.child.log_tail();
    assert!(log.contains("FALLING BACK to the energy VAD"), "{log}");
}

/// The converter (its real output is pinned by sha256 in the manifest and transcribed by the tests
/// above) refuses input that is not a CTranslate2 Whisper model, naming the file.
#[test]
fn converter_refuses_a_non_ct2_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.bin");
    std::fs::write(&input, [6u8, 0, 0, 0, 4, 0, b'a', b'b', b'c', 0]).unwrap();
    let out = Command::new("python3")
        .arg(support::repo_root().join("models/whisper_ct2_to_ggml.py"))
        .arg(&input)
        .arg(dir.path().join("out.bin"))
        .arg("mel.npz")
        .arg("vocab.tiktoken")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("model.bin") && err.contains("not WhisperSpec"),
        "{err}"
    );
}
