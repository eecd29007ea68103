//! Prometheus metrics, served as OpenMetrics text on the admin port's `/metrics`.
//!
//! Components register their own metrics on the registry while the server is assembled
//! (`Metrics::registry_mut`), before it is shared.

use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    profile: String,
    store_engine: String,
}

pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// A registry with the process-wide metrics: build info, start time and uptime.
    pub fn new(store_engine: &str) -> Metrics {
        let mut registry = Registry::default();
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "carevoice_build_info",
            "Build of the running server (value is always 1)",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                profile: if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
                .into(),
                store_engine: store_engine.into(),
            })
            .set(1);
        let start_time = Gauge::<f64, AtomicU64>::default();
        start_time.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        registry.register(
            "carevoice_start_time_seconds",
            "Unix time the server started",
            start_time,
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "carevoice_uptime_seconds",
            "Seconds since the server started",
            uptime.clone(),
        );
        Metrics {
            registry,
            started: Instant::now(),
            uptime,
        }
    }

    /// For components to register their metrics while the server is assembled.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_build_info_and_uptime() {
        let text = Metrics::new("sqlite").render();
        assert!(text.contains("carevoice_build_info{"), "{text}");
        assert!(text.contains("store_engine=\"sqlite\""), "{text}");
        assert!(text.contains("carevoice_uptime_seconds "), "{text}");
        assert!(text.contains("carevoice_start_time_seconds "), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
