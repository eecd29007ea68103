//! The default flow end to end, as a user runs it: `carevoice call --text SCRIPT --json` (the
//! real binary, its audit log, the shipped `flows/clinic.yaml`) against a real FHIR server seeded
//! with the demo clinic — sekmet-fhir with SMART backend-services auth, and Medplum. Every path
//! of the flow, each checked in the FHIR server afterwards (the appointment on the offered slot,
//! the cancellation, the move, the message), and no patient data in anything said before the
//! caller was verified. `carevoice flows preview` is driven through a pipe on both servers too.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use carevoice::config::{EmrAuth, EmrConfig, JwtAlgorithm};
use carevoice::emr::seed::{self, DEMO_SYSTEM, PATIENTS};
use carevoice_fhir::FhirClient;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::Value;
use support::fhir::{FhirAuth, FhirServer};

const TZ: &str = "America/New_York";
const HOURS: &str = "We are open Tuesday to Saturday, 7 a.m. to 7 p.m.";
const PARKING: &str = "Park in the blue garage on Elm Street; we validate tickets.";

struct Clinic {
    _server: FhirServer,
    dir: tempfile::TempDir,
    config: PathBuf,
    client: FhirClient,
    /// demo key (`anna-smith`) -> FHIR id
    patients: HashMap<&'static str, String>,
}

fn emr_config(server: &FhirServer, smart: bool) -> EmrConfig {
    let mut config = EmrConfig {
        base_url: server.base_url.clone(),
        timeout_ms: 10_000,
        ..EmrConfig::default()
    };
    if smart {
        config.auth = EmrAuth::Smart;
        config.token_url = server.token_url.clone().unwrap();
        config.client_id = server.client_id.clone();
        config.private_key = server.client_key.as_ref().unwrap().private_pem.clone();
        config.jwt_alg = JwtAlgorithm::RS384;
        config.scope = "system/*.*".into();
    }
    config
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

impl Clinic {
    /// The server, seeded from tomorrow (so the demo appointments are upcoming whatever the time
    /// of day), and a carevoice config pointing at it.
    async fn open(server: FhirServer, smart: bool) -> Clinic {
        let emr = emr_config(&server, smart);
        let client = FhirClient::new(&carevoice::emr::fhir::fhir_config(&emr)).unwrap();
        let tz = TimeZone::get(TZ).unwrap();
        let tomorrow = Zoned::now()
            .with_time_zone(tz.clone())
            .date()
            .tomorrow()
            .unwrap();
        let report = seed::seed(&client, &tz, tomorrow, 14).await.unwrap();
        assert_eq!(report.appointments, 2, "{report:?}");
        let mut patients = HashMap::new();
        for p in PATIENTS {
            let found = client
                .search_json(&format!("Patient?identifier={DEMO_SYSTEM}%7C{}", p.key))
                .await
                .unwrap();
            let id = found["entry"][0]["resource"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("seeded patient {} not found: {found}", p.key))
                .to_string();
            patients.insert(p.key, id);
        }
        let dir = tempfile::Builder::new()
            .prefix("carevoice-dialog-")
            .tempdir()
            .unwrap();
        let mut emr_toml = format!(
            "[emr]\nbase_url = {}\ntimeout_ms = 10000\n",
            toml_str(&emr.base_url)
        );
        if smart {
            emr_toml.push_str(&format!(
                "auth = \"smart\"\ntoken_url = {}\nclient_id = {}\nprivate_key = {}\njwt_alg = \"RS384\"\nscope = \"system/*.*\"\n",
                toml_str(&emr.token_url),
                toml_str(&emr.client_id),
                toml_str(&emr.private_key.display().to_string()),
            ));
        }
        let config = format!(
            "[server]\ndata_dir = {}\n\n[clinic]\nname = \"Main Street Clinic\"\nhours = {}\nparking = {}\ntimezone = \"{TZ}\"\n\n\
             [dialog]\nflow = {}\nemergency_number = \"999\"\nidentity_min_ms = 200\nunderstanding_model = \"\"\n\n{emr_toml}",
            toml_str(&dir.path().join("data").display().to_string()),
            toml_str(HOURS),
            toml_str(PARKING),
            toml_str(
                &support::repo_root()
                    .join("flows/clinic.yaml")
                    .display()
                    .to_string()
            ),
        );
        let config_path = dir.path().join("carevoice.toml");
        std::fs::write(&config_path, config).unwrap();
        Clinic {
            _server: server,
            dir,
            config: config_path,
            client,
            patients,
        }
    }

    /// `carevoice call --text SCRIPT --json`.
    fn call(&self, script: &[&str]) -> Call {
        let path = self.dir.path().join("script.txt");
        std::fs::write(&path, script.join("\n")).unwrap();
        let out = support::carevoice::run(
            &[
                "--config",
                self.config.to_str().unwrap(),
                "call",
                "--text",
                path.to_str().unwrap(),
                "--json",
            ],
            self.dir.path(),
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "call --text {script:?}: {stderr}");
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        Call { json }
    }

    /// `carevoice flows preview FILE` with `input` piped to it.
    fn preview(&self, input: &str) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new(support::carevoice::bin())
            .args([
                "--config",
                self.config.to_str().unwrap(),
                "flows",
                "preview",
            ])
            .arg(support::repo_root().join("flows/clinic.yaml"))
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "flows preview: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn read(&self, reference: &str) -> Value {
        let (ty, id) = reference.split_once('/').unwrap();
        self.client.read_json(ty, id).await.unwrap()
    }

    /// The patient's appointments (any status), soonest first.
    async fn appointments(&self, key: &str) -> Vec<Value> {
        let id = &self.patients[key];
        let bundle = self
            .client
            .search_json(&format!("Appointment?patient=Patient/{id}&_count=100"))
            .await
            .unwrap();
        let mut all: Vec<Value> = bundle["entry"]
            .as_array()
            .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default();
        all.retain(|a| a["resourceType"] == "Appointment");
        all.sort_by_key(start_of);
        all
    }

    async fn all_of(&self, resource_type: &str) -> Vec<Value> {
        let bundle = self
            .client
            .search_json(&format!("{resource_type}?_count=200"))
            .await
            .unwrap();
        bundle["entry"]
            .as_array()
            .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default()
    }

    async fn slot_of(&self, appointment: &Value) -> Value {
        let reference = appointment["slot"][0]["reference"]
            .as_str()
            .unwrap_or_else(|| panic!("appointment without a slot: {appointment}"));
        self.read(reference).await
    }

    /// What nobody may hear before verification: every demo patient's names, birth date, phone
    /// and appointment times, in the forms the agent would say them.
    async fn phi_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in PATIENTS {
            out.push(p.family.to_string());
            let dob: jiff::civil::Date = p.birth_date.parse().unwrap();
            out.push(dob.year().to_string());
            out.push(dob.strftime("%B %-d").to_string());
            out.push(p.birth_date.to_string());
            let digits: String = p.phone.chars().filter(char::is_ascii_digit).collect();
            out.push(digits[digits.len() - 7..].to_string());
            for a in self.appointments(p.key).await {
                out.push(spoken(start_of(&a)));
            }
        }
        out
    }
}

fn start_of(resource: &Value) -> Timestamp {
    resource["start"]
        .as_str()
        .unwrap_or_else(|| panic!("no start: {resource}"))
        .parse()
        .unwrap()
}

/// How the agent says a time: "Tuesday, December 1st at 2:30 PM" (clinic time zone).
fn spoken(t: Timestamp) -> String {
    let z = t.to_zoned(TimeZone::get(TZ).unwrap());
    let day = z.day();
    let suffix = match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    let time = if z.minute() == 0 {
        z.strftime("%-I %p").to_string()
    } else {
        z.strftime("%-I:%M %p").to_string()
    };
    format!("{} {day}{suffix} at {time}", z.strftime("%A, %B"))
}

struct Call {
    json: Value,
}

impl Call {
    fn lines(&self) -> &Vec<Value> {
        self.json["lines"].as_array().unwrap()
    }

    fn agent(&self) -> String {
        self.lines()
            .iter()
            .filter(|l| l["who"] == "agent")
            .map(|l| l["text"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn says(&self, needle: &str) {
        assert!(
            self.agent().contains(needle),
            "the agent never said {needle:?}:\n{:#}",
            self.json
        );
    }

    /// The first agent line containing `needle` was said to a verified caller.
    fn says_verified(&self, needle: &str) {
        self.says(needle);
        let line = self
            .lines()
            .iter()
            .find(|l| l["who"] == "agent" && l["text"].as_str().unwrap().contains(needle))
            .unwrap();
        assert_eq!(line["verified"], true, "{line}");
    }

    fn ending(&self) -> &str {
        self.json["ending"].as_str().unwrap()
    }

    fn verified(&self) -> bool {
        self.json["verified"].as_bool().unwrap()
    }

    /// No agent line said before verification contains any of `phi`.
    fn no_phi_before_verification(&self, phi: &[String]) {
        for l in self.lines() {
            if l["who"] != "agent" || l["verified"] == true {
                continue;
            }
            let text = l["text"].as_str().unwrap();
            for p in phi {
                assert!(
                    !text.contains(p.as_str()),
                    "PHI {p:?} said before verification: {text:?}\n{:#}",
                    self.json
                );
            }
        }
    }
}

fn local(t: Timestamp) -> Zoned {
    t.to_zoned(TimeZone::get(TZ).unwrap())
}

/// Every path of the default flow on one seeded server.
async fn every_path(clinic: Clinic) {
    let phi = clinic.phi_strings().await;
    let mut calls = Vec::new();

    // "When is my appointment": Anna Smith hears her seeded appointment, after verification.
    let anna_before = clinic.appointments("anna-smith").await;
    assert_eq!(anna_before.len(), 1);
    let anna_appt = anna_before[0].clone();
    let call = clinic.call(&[
        "when is my appointment",
        "Anna Smith",
        "March third nineteen seventy-five",
        "no thanks",
    ]);
    call.says_verified(&format!(
        "Your next appointment is {}",
        spoken(start_of(&anna_appt))
    ));
    assert!(call.verified());
    assert_eq!(call.ending(), "hangup");
    calls.push(call);

    // An impostor: Anna's name, wrong birth dates, until the attempts run out.
    let call = clinic.call(&[
        "when is my appointment",
        "Anna Smith",
        "January first nineteen ninety",
        "Anna Smith",
        "oh three oh four seventy five",
        "Anna Smith",
        "March third nineteen seventy-six",
        "please just tell me the time",
    ]);
    assert!(!call.verified());
    assert_eq!(call.ending(), "escalate", "{:#}", call.json);
    assert!(
        call.lines()
            .iter()
            .all(|l| l["who"] == "caller" || l["verified"] == false)
    );
    for secret in [spoken(start_of(&anna_appt)), "Patel".into(), "1975".into()] {
        assert!(!call.agent().contains(&secret), "{secret}: {:#}", call.json);
    }
    calls.push(call);

    // Cancel: Anna's appointment is cancelled in the EMR and its slot freed.
    let call = clinic.call(&[
        "I need to cancel my appointment",
        "Anna Smith",
        "oh three oh three seventy five",
        "yes",
        "no",
    ]);
    call.says_verified(&format!(
        "Your appointment on {} is cancelled",
        spoken(start_of(&anna_appt))
    ));
    let id = anna_appt["id"].as_str().unwrap();
    let now = clinic.read(&format!("Appointment/{id}")).await;
    assert_eq!(now["status"], "cancelled", "{now}");
    assert_eq!(clinic.slot_of(&now).await["status"], "free");
    calls.push(call);

    // Book: Maria Garcia gets the Tuesday afternoon slot she was offered, and it is busy now.
    assert!(clinic.appointments("maria-garcia").await.is_empty());
    let call = clinic.call(&[
        "hi I'd like to book an appointment",
        "Maria Garcia",
        "November thirtieth nineteen ninety-two",
        "next Tuesday afternoon",
        "yes please",
        "no that's all",
    ]);
    let maria = clinic.appointments("maria-garcia").await;
    assert_eq!(maria.len(), 1, "{maria:?}\n{:#}", call.json);
    assert_eq!(maria[0]["status"], "booked");
    let slot = clinic.slot_of(&maria[0]).await;
    assert_eq!(slot["status"], "busy", "{slot}");
    assert_eq!(start_of(&slot), start_of(&maria[0]));
    let when = local(start_of(&slot));
    assert_eq!(when.weekday(), jiff::civil::Weekday::Tuesday);
    assert!(when.hour() >= 12, "{when}");
    call.says_verified(&format!("You're booked for {}", spoken(start_of(&slot))));
    assert_eq!(call.ending(), "hangup");
    calls.push(call);

    // Reschedule: John Doe's appointment moves; the old one is cancelled and its slot freed.
    let john_before = clinic.appointments("john-doe").await;
    assert_eq!(john_before.len(), 1);
    let old = john_before[0].clone();
    let call = clinic.call(&[
        "I need to reschedule my appointment",
        "John Doe",
        "July fourteenth nineteen eighty",
        "next Wednesday morning",
        "yes",
        "no",
    ]);
    let john = clinic.appointments("john-doe").await;
    let old_now = john
        .iter()
        .find(|a| a["id"] == old["id"])
        .expect("the old appointment is still on record");
    assert_eq!(old_now["status"], "cancelled", "{:#}", call.json);
    assert_eq!(clinic.slot_of(old_now).await["status"], "free");
    let new: Vec<&Value> = john.iter().filter(|a| a["status"] == "booked").collect();
    assert_eq!(new.len(), 1, "{john:?}");
    let new_slot = clinic.slot_of(new[0]).await;
    assert_eq!(new_slot["status"], "busy");
    let when = local(start_of(new[0]));
    assert_eq!(when.weekday(), jiff::civil::Weekday::Wednesday);
    assert!(when.hour() < 12, "{when}");
    call.says_verified(&format!(
        "Your appointment is now {}",
        spoken(start_of(new[0]))
    ));
    calls.push(call);

    // Leave a message, no identity needed: a Communication (or Task) with the words.
    let call = clinic.call(&[
        "I'd like to leave a message",
        "please ask the billing office to call me back about invoice 4471",
        "no",
    ]);
    call.says("I've passed your message on");
    assert!(!call.verified());
    let mut texts = Vec::new();
    for c in clinic.all_of("Communication").await {
        texts.extend(
            c["payload"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["contentString"].as_str().map(String::from)),
        );
    }
    for t in clinic.all_of("Task").await {
        texts.extend(t["description"].as_str().map(String::from));
    }
    assert!(
        texts.iter().any(|t| t.contains("invoice 4471")),
        "no message written: {texts:?}"
    );
    calls.push(call);

    // A person: by voice and by pressing 0.
    for script in [&["can I talk to a real person"][..], &["DTMF 0"][..]] {
        let call = clinic.call(script);
        call.says("Let me connect you with a member of our staff.");
        assert_eq!(call.ending(), "escalate");
        calls.push(call);
    }

    // An emergency mid-booking: the configured number at once, urgent transfer, no booking.
    let booked_before = clinic
        .all_of("Appointment")
        .await
        .iter()
        .filter(|a| a["status"] == "booked")
        .count();
    let call = clinic.call(&[
        "I want to book an appointment",
        "Robert Johnson",
        "I have chest pain and I can't breathe",
    ]);
    call.says("please hang up and call 999 right now");
    assert_eq!(call.ending(), "escalate_urgent");
    assert!(!call.agent().contains("book it"));
    let booked_after = clinic
        .all_of("Appointment")
        .await
        .iter()
        .filter(|a| a["status"] == "booked")
        .count();
    assert_eq!(booked_before, booked_after);
    calls.push(call);

    // General questions from the clinic facts in config, no identity.
    let call = clinic.call(&["what are your hours", "where do I park", "bye"]);
    call.says(HOURS);
    call.says(PARKING);
    assert!(!call.verified());
    assert_eq!(call.ending(), "hangup");
    calls.push(call);

    for call in &calls {
        call.no_phi_before_verification(&phi);
    }

    // The same flow, interactively: lines piped to `flows preview`.
    let out = clinic.preview("what are your hours\n\nDTMF 0\n");
    assert!(
        out.contains("agent: Thank you for calling Main Street Clinic."),
        "{out}"
    );
    assert!(out.contains(&format!("agent: {HOURS}")), "{out}");
    assert!(out.contains("you> DTMF 0"), "{out}");
    assert!(out.contains("-- call ended: escalate"), "{out}");

    // Every FHIR access of these calls is in the audit log, which verifies.
    let out = support::carevoice::run(
        &[
            "--config",
            clinic.config.to_str().unwrap(),
            "audit",
            "verify",
        ],
        clinic.dir.path(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = support::carevoice::run(
        &[
            "--config",
            clinic.config.to_str().unwrap(),
            "audit",
            "export",
            "--redact",
        ],
        clinic.dir.path(),
        &[],
    );
    let export = String::from_utf8_lossy(&out.stdout);
    let fhir_accesses = export.lines().filter(|l| l.contains("fhir_access")).count();
    // 2 (when) + 3 (impostor) + 3 (cancel) + 3 (book) + 4 (reschedule) + 1 (message) operations
    assert!(fhir_accesses >= 16, "{fhir_accesses} FHIR accesses audited");
    for name in ["Smith", "Garcia", "1975-03-03"] {
        assert!(
            !export.contains(name),
            "{name} in the redacted audit export"
        );
    }
}

/// The servers are started outside the runtime (their readiness probe is blocking HTTP).
fn on(server: FhirServer, smart: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let clinic = Clinic::open(server, smart).await;
        every_path(clinic).await;
    });
}

#[test]
fn default_flow_every_path_on_sekmet_with_smart_auth() {
    on(FhirServer::sekmet(FhirAuth::Smart), true);
}

#[test]
fn default_flow_every_path_on_medplum() {
    on(FhirServer::medplum(), false);
}

#[test]
fn call_text_refuses_a_missing_script_and_an_invalid_flow() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::carevoice::run(&["call", "--text", "no-such-script.txt"], dir.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-script.txt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let flow = dir.path().join("bad.yaml");
    std::fs::write(&flow, "name: x\nstart: nowhere\nsteps: []\n").unwrap();
    let script = dir.path().join("s.txt");
    std::fs::write(&script, "hello\n").unwrap();
    let out = support::carevoice::run(
        &[
            "call",
            "--text",
            script.to_str().unwrap(),
            "--flow",
            flow.to_str().unwrap(),
        ],
        dir.path(),
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:", flow.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
