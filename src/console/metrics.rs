//! Console metrics on the admin port's registry: sign-in attempts by result (rate-limited sources
//! and lockouts included) and open live-update streams. Counts only: no names, no addresses.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct ConsoleMetrics {
    sign_ins: Family<ResultLabel, Counter>,
    live_streams: Gauge,
}

impl ConsoleMetrics {
    pub fn new(registry: Option<&mut Registry>) -> ConsoleMetrics {
        let m = ConsoleMetrics::default();
        if let Some(r) = registry {
            r.register(
                "carevoice_console_sign_in_attempts",
                "Console sign-in steps by result: ok, failed, locked, rate_limited",
                m.sign_ins.clone(),
            );
            r.register(
                "carevoice_console_live_streams",
                "Open live queue streams (server-sent events)",
                m.live_streams.clone(),
            );
        }
        m
    }

    /// One sign-in step (password or code) came out as `result`.
    pub fn sign_in(&self, result: &'static str) {
        self.sign_ins.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts an open stream until the guard drops.
    pub fn stream_opened(&self) -> StreamGuard {
        self.live_streams.inc();
        StreamGuard(self.live_streams.clone())
    }
}

pub struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
