//! Foundation benches: config loading (start-up and reload cost) and the store's write path
//! (one call record per call, SQLite WAL).

use std::path::Path;

use carevoice::config::{Config, StoreConfig};
use carevoice::store::Store;
use carevoice::store::calls::{CallRecord, Channel};
use criterion::{Criterion, criterion_group, criterion_main};

fn config_load(c: &mut Criterion) {
    let text = "[admin]\nport = 9100\n[log]\nformat = \"json\"\nlevel = \"info,carevoice=debug\"\n";
    let env = vec![(
        "CAREVOICE_STORE__MAX_CONNECTIONS".to_string(),
        "16".to_string(),
    )];
    c.bench_function("config_load_validate", |b| {
        b.iter(|| Config::from_toml(text, Path::new("bench.toml"), env.clone()).unwrap())
    });
}

fn store_insert(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::open(&StoreConfig::default(), dir.path()))
        .unwrap();
    let mut n = 0u64;
    c.bench_function("store_insert_call_sqlite", |b| {
        b.iter(|| {
            n += 1;
            let call = CallRecord {
                id: format!("bench-{n}"),
                channel: Channel::Sip,
                caller_hash: "h".into(),
                started_ms: n as i64,
                ended_ms: None,
                outcome: None,
            };
            rt.block_on(store.insert_call(&call)).unwrap();
        })
    });
}

criterion_group!(benches, config_load, store_insert);
criterion_main!(benches);
