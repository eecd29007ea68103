//! Runs every fuzz target over its seed corpus (`fuzz/corpus/TARGET/`), so CI exercises the
//! cargo-fuzz targets without a nightly toolchain. `fuzz/run.sh` fuzzes for real.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn run(target: &str, f: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let result = std::panic::catch_unwind(|| f(&bytes));
        assert!(result.is_ok(), "{target}: {} panics", path.display());
        // Every prefix too: truncation is the commonest corruption.
        for cut in 0..bytes.len() {
            let result = std::panic::catch_unwind(|| f(&bytes[..cut]));
            assert!(
                result.is_ok(),
                "{target}: {} cut at {cut} panics",
                path.display()
            );
        }
    }
}

#[test]
fn sip_message_corpus() {
    run("sip_message", carevoice::sip::fuzz::sip_message);
}

#[test]
fn sdp_corpus() {
    run("sdp", carevoice::sip::fuzz::sdp);
}

#[test]
fn rtp_corpus() {
    run("rtp", carevoice::sip::fuzz::rtp);
}

#[test]
fn jitter_corpus() {
    run("jitter", carevoice::sip::fuzz::jitter);
}
