//! Dialog understanding: per-turn NLU latency and intent accuracy on the labelled set
//! (`benches/data/intents.tsv`, ASR-like caller utterances), plus the deterministic parsers.
//! Accuracy is printed once before the timings.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use carevoice::dialog::nlu::{ALL_INTENTS, KeywordNlu, Nlu, labelled_set};
use carevoice::dialog::parse;

const SET: &str = include_str!("data/intents.tsv");

fn accuracy(nlu: &mut dyn Nlu, name: &str) {
    let set = labelled_set(SET);
    let right = set
        .iter()
        .filter(|(label, text)| nlu.understand(text, ALL_INTENTS).label() == *label)
        .count();
    println!(
        "{name}: intent accuracy {right}/{} = {:.1}%",
        set.len(),
        100.0 * right as f64 / set.len() as f64
    );
}

fn bench(c: &mut Criterion) {
    let mut nlu = KeywordNlu;
    accuracy(&mut nlu, "keyword NLU");
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
