//! Operational logging (`tracing`): pretty or JSON to stderr, filter from config or `RUST_LOG`.
//! What goes in here is never PHI: call ids, turn numbers, timings, states.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Log targets silenced (or held at warn) because they may print URLs with PHI in them.
pub const QUIET_TARGETS: &[&str] = &[
    "fhir_sdk=off",
    "reqwest=warn",
    "hyper=warn",
    "hyper_util=warn",
    "h2=warn",
];

/// Installs the global subscriber. Safe to call twice (the second call is a no-op).
pub fn init(config: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| EnvFilter::builder().parse(v).ok())
        .unwrap_or_else(|| {
            EnvFilter::builder()
                .parse(&config.level)
                .unwrap_or_else(|_| EnvFilter::new("info"))
        });
    // Libraries that log request URLs (which carry FHIR search parameters: names, birth dates)
    // are kept quiet whatever the configured level: no PHI in operational logs.
    let filter = QUIET_TARGETS.iter().fold(filter, |f, directive| {
        f.add_directive(directive.parse().expect("static directive"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
