//! A live clinic for end-to-end calls: a FHIR server (sekmet-fhir) seeded with the demo clinic,
//! and `carevoice serve` with SIP, the speech models and the default flow.

use std::time::Duration;

use super::carevoice::Server;
use super::fhir::{FhirAuth, FhirServer};
use super::free_port_range;

/// A FHIR server seeded with the demo clinic and a carevoice with speech and SIP on.
pub struct LiveClinic {
    pub fhir: FhirServer,
    pub server: Server,
    pub sip_port: u16,
}

impl LiveClinic {
    pub fn start(sip_extra: &str, call_extra: &str) -> LiveClinic {
        let fhir = FhirServer::sekmet(FhirAuth::None);
        let dir = tempfile::tempdir().unwrap();
        let env = [("CAREVOICE_EMR__BASE_URL", fhir.base_url.as_str())];
        let out = super::carevoice::run(&["emr", "seed", "--days", "14"], dir.path(), &env);
        assert!(
            out.status.success(),
            "seed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sip_port = free_port_range(1);
        let rtp = free_port_range(100);
        let flow = super::repo_root().join("flows/clinic.yaml");
        // The EMR timeout is longer than the default 2 s: on the 2-core test machine the Python
        // FHIR server shares the CPU with the recognizer and synthesizer of every call, and one
        // CI run saw an identity check give up (and the call go to the callback path).
        let config = format!(
            "[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
             [sip]\nenabled = true\nport = {sip_port}\n{sip_extra}\n\n\
             [media]\nrtp_port_min = {rtp}\nrtp_port_max = {}\n\n\
             [speech]\nenabled = true\n\n\
             [emr]\nbase_url = \"{}\"\ntimeout_ms = 6000\n\n\
             [dialog]\nflow = \"{}\"\n\n\
             [call]\n{call_extra}\n",
            rtp + 99,
            fhir.base_url,
            flow.display()
        );
        let server = Server::start(&config);
        LiveClinic {
            fhir,
            server,
            sip_port,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.server.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Every `call_turn` record of the audit log, decrypted (the test's callers are synthetic):
    /// what the agent heard and said on each turn.
    pub fn audit_turns(&self) -> Vec<serde_json::Value> {
        let config = self.server.dir.path().join("carevoice.toml");
        let out = super::carevoice::run(
            &["--config", config.to_str().unwrap(), "audit", "export"],
            self.server.dir.path(),
            &[],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "call_turn")
            .collect()
    }

    /// The audit's turns as "heard: ... / said: ..." lines, for a failing test's message.
    pub fn audit_dialog(&self) -> String {
        self.audit_turns()
            .iter()
            .map(|t| format!("turn {}: {}", t["body"]["turn"], t["transcript"]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The audit's dialog and the server's log, for a failing assertion's message.
    pub fn context(&self) -> String {
        format!(
            "--- audit ---\n{}\n--- carevoice ---\n{}",
            self.audit_dialog(),
            self.log()
        )
    }

    /// The server's call feed (`GET /calls/events` on the admin port): `answered`, `waiting`
    /// (with the flow step) and `finished` (with the outcome) of every call, in order. The test
    /// hook the server exposes on purpose, instead of its log text.
    pub fn feed(&self) -> Vec<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/calls/events", self.server.admin_port);
        let Some((200, body)) = super::http_get(&url) else {
            return Vec::new();
        };
        body.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect()
    }

    /// Feed events of `kind`, of call `call` when given.
    pub fn feed_of(&self, kind: &str, call: Option<&str>) -> Vec<serde_json::Value> {
        self.feed()
            .into_iter()
            .filter(|e| e["kind"] == kind && call.is_none_or(|c| e["call"] == c))
            .collect()
    }

    /// Waits until the feed has `n` events of `kind` (of `call` when given).
    pub fn wait_feed(
        &self,
        kind: &str,
        call: Option<&str>,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        wait_for(n, timeout, || self.feed_of(kind, call))
    }

    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        // Only lines that mention `message` are parsed: the harness polls this for every call.
        self.log()
            .lines()
            .filter(|l| l.contains(message))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// Log lines with `message` of one call (by the server's call id).
    pub fn call_events(&self, call: &str, message: &str) -> Vec<serde_json::Value> {
        self.events(message)
            .into_iter()
            .filter(|v| v["span"]["call"] == call)
            .collect()
    }

    pub fn patient_id(&self, family: &str, given: &str) -> String {
        let found = self.fhir_get(&format!("Patient?family={family}&given={given}"));
        found["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{given} {family} is not seeded: {found}"))
            .to_string()
    }

    /// (id, start) of the patient's booked appointments.
    pub fn booked_for(&self, patient: &str) -> Vec<(String, String)> {
        let found = self.fhir_get(&format!(
            "Appointment?patient=Patient/{patient}&status=booked&_count=100"
        ));
        found["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["resource"]["id"].as_str().unwrap_or_default().to_string(),
                            e["resource"]["start"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn fhir_get(&self, path: &str) -> serde_json::Value {
        super::http()
            .get(format!("{}/{path}", self.fhir.base_url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

/// Polls `read` every 50 ms until it holds `n` items or `timeout` passes; returns the last read.
fn wait_for<T>(n: usize, timeout: Duration, read: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got = read();
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
