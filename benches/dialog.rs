//! Dialog understanding: per-turn NLU latency and intent accuracy on the labelled set
//! (`benches/data/intents.tsv`, ASR-like caller utterances), plus the deterministic parsers.
//! Accuracy is printed once before the timings.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use carevoice::dialog::nlu::{ALL_INTENTS, KeywordNlu, Nlu, labelled_set};
use carevoice::dialog::parse;

const SET: &str = include_str!("data/intents.tsv");
/// Paraphrases the keyword rules were not written from: what the model is for.
const HELD_OUT: &str = include_str!("data/intents_heldout.tsv");

fn accuracy(nlu: &mut dyn Nlu, name: &str) {
    accuracy_on(nlu, name, "labelled set", SET);
    accuracy_on(nlu, name, "held-out paraphrases", HELD_OUT);
}

fn accuracy_on(nlu: &mut dyn Nlu, name: &str, set_name: &str, tsv: &str) {
    let set = labelled_set(tsv);
    let right = set
        .iter()
        .filter(|(label, text)| nlu.understand(text, ALL_INTENTS).label() == *label)
        .count();
    println!(
        "{name}: intent accuracy on the {set_name} {right}/{} = {:.1}%",
        set.len(),
        100.0 * right as f64 / set.len() as f64
    );
}

/// The local model (`--features llm`): accuracy of keyword + model on the whole set, and the
/// model's own latency per turn (prefix KV cache reused) on every utterance it is asked about.
/// Timed by hand: at hundreds of ms a turn, criterion's sampling would take many minutes.
#[cfg(feature = "llm")]
fn llm_figures() {
    use carevoice::config::Config;
    use carevoice::dialog::llm::{HybridNlu, LlmNlu};
    use carevoice::speech::locate;
    use std::time::Instant;
    let config = Config::default();
    let dir = config.models.resolved_dir();
    let model = locate("model", &config.dialog.understanding_model, &dir).unwrap();
    let tokenizer = locate("tokenizer", &config.dialog.understanding_tokenizer, &dir).unwrap();
    let t = Instant::now();
    let llm = LlmNlu::load(&model, &tokenizer).unwrap();
    println!(
        "llm: load + prefix {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let mut hybrid = HybridNlu::new(llm);
    accuracy(&mut hybrid, "keyword + llm (hybrid) NLU");
    // every 4th utterance of the labelled set and all the held-out ones: enough for latency
    // percentiles at a fraction of the run time
    let mut set: Vec<_> = labelled_set(SET).into_iter().step_by(4).collect();
    set.extend(labelled_set(HELD_OUT));
    let mut times = Vec::new();
    let mut right = 0;
    for (label, text) in &set {
        let t = Instant::now();
        let got = hybrid.llm().classify(text, ALL_INTENTS).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        // (the model alone has no labels for questions or crisis: those are keyword-only)
        if got == *label {
            right += 1;
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "llm alone: intent accuracy {right}/{} = {:.1}%; per turn p50 {:.0} ms, p95 {:.0} ms",
        set.len(),
        100.0 * right as f64 / set.len() as f64,
        times[times.len() / 2],
        times[times.len() * 95 / 100]
    );
}

fn bench(c: &mut Criterion) {
    let mut nlu = KeywordNlu;
    accuracy(&mut nlu, "keyword NLU");
    #[cfg(feature = "llm")]
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        llm_figures();
    }
    let set = labelled_set(SET);
    let mut i = 0;
    c.bench_function("nlu/keyword per turn", |b| {
        b.iter(|| {
            let (_, text) = set[i % set.len()];
            i += 1;
            black_box(nlu.understand(black_box(text), ALL_INTENTS))
        })
    });
    let today = jiff::civil::date(2026, 11, 23);
    c.bench_function("parse/date_of_birth spoken", |b| {
        b.iter(|| {
            parse::date_of_birth(
                black_box("um it's march third nineteen seventy-five"),
                today,
            )
        })
    });
    c.bench_function("parse/when relative", |b| {
        b.iter(|| parse::when(black_box("next tuesday afternoon at two thirty"), today))
    });
    c.bench_function("parse/person_name spelled", |b| {
        b.iter(|| parse::person_name(black_box("it's john smith s m i t h")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
