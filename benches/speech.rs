//! Speech engine speed on the real models (installed by `scripts/setup` / `carevoice models
//! install`): ASR latency for 1/3/8 s utterances (whisper tiny.en) and for 2/5 s turns with the
//! fitted vs the full encoder window, TTS time to first audio and real-time factor, VAD cost per
//! 20 ms frame, and the process RSS with all three engines loaded (printed once).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use carevoice::config::SpeechConfig;
use carevoice::speech::asr::Window;
use carevoice::speech::audio::{self, Audio};
use carevoice::speech::{Engines, locate};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn speech(c: &mut Criterion) {
    let dir = carevoice::config::cache_dir().join("models");
    let mut config = SpeechConfig::default();
    if let Ok(model) = std::env::var("CAREVOICE_BENCH_ASR_MODEL") {
        config.asr_model = model;
    }
    let engines = Engines::load(&config, &dir, None)
        .unwrap_or_else(|e| panic!("{e} (run `carevoice models install --all`)"));
    let speech_path = locate("bench", "two-cities-wav", &dir).expect("test data installed");
    let speech = audio::read_wav(&speech_path)
        .unwrap()
        .resampled(16000)
        .unwrap();

    // Warm every engine once, then report the RSS with all three loaded.
    let _ = engines.whisper.transcribe(&Audio {
        rate: 16000,
        samples: speech.samples[..48000].to_vec(),
    });
    let _ = engines.tts.synthesize("Warming up.", 8000);
    let mut vad = engines.vad();
    let _ = vad.push(&speech.samples[..16000]);
    eprintln!(
        "RSS with whisper + piper + silero loaded and warmed: {:.0} MiB",
        rss_mib()
    );

    let mut asr = c.benchmark_group("asr");
    asr.sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let mut state = engines.whisper.state().unwrap();
    for secs in [1usize, 3, 8] {
        let clip = Audio {
            rate: 16000,
            samples: speech.samples[16000..16000 * (1 + secs)].to_vec(),
        };
        asr.bench_function(format!("transcribe_{secs}s"), |b| {
            b.iter(|| engines.whisper.transcribe_with(&mut state, &clip).unwrap())
        });
    }
    // The fitted encoder window against whisper's full 30 s one, for typical turns.
    for secs in [2usize, 5] {
        let clip = Audio {
            rate: 16000,
            samples: speech.samples[16000..16000 * (1 + secs)].to_vec(),
        };
        for (name, window) in [("fitted", Window::Fitted), ("full", Window::Full)] {
            asr.bench_function(format!("window_{name}_{secs}s"), |b| {
                b.iter(|| {
                    engines
                        .whisper
                        .transcribe_window(&mut state, &clip, window)
                        .unwrap()
                })
            });
        }
    }
    asr.finish();

    let mut tts = c.benchmark_group("tts");
    tts.sample_size(10)
        .measurement_time(Duration::from_secs(15));
    let prompt =
        "Your appointment is on Tuesday at 3:30 PM. Is there anything else I can help you with?";
    tts.bench_function("first_audio_8k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut first = None;
                engines
                    .tts
                    .stream(prompt, 8000, |_| {
                        first.get_or_insert_with(|| start.elapsed());
                    })
                    .unwrap();
                total += first.unwrap_or_default();
            }
            total
        })
    });
    let sentence = "Please call us back at 555-123-4567 if you need to change your appointment.";
    let mut rtf = Vec::new();
    tts.bench_function("sentence_8k", |b| {
        b.iter(|| {
            let start = Instant::now();
            let pcm = engines.tts.synthesize(sentence, 8000).unwrap();
            rtf.push(start.elapsed().as_secs_f64() / (pcm.len() as f64 / 8000.0));
        })
    });
    tts.finish();
    rtf.sort_by(f64::total_cmp);
    if !rtf.is_empty() {
        eprintln!(
            "TTS real-time factor (median of {}): {:.3}",
            rtf.len(),
            rtf[rtf.len() / 2]
        );
    }

    let mut v = c.benchmark_group("vad");
    let frames: Vec<&[f32]> = speech.samples.chunks_exact(320).collect();
    let mut i = 0;
    v.bench_function("silero_per_20ms_frame", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            vad.push(frames[i]).unwrap()
        })
    });
    v.finish();
}

criterion_group!(benches, speech);
criterion_main!(benches);
