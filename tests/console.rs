//! The front-desk console end to end: a real `carevoice serve` (console on, HTTPS with its
//! self-signed certificate, SQLite, speech off) driven by headless Chromium. Escalations, calls and
//! their audited turns are written through the store and audit APIs as the call pipeline writes
//! them. Screenshots of every page go to `target/console-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use carevoice::audit::keys::{Binding, Purpose};
use carevoice::audit::{Audit, AuditEvent, CallTurn, Confidential};
use carevoice::config::Config;
use carevoice::store::Store;
use carevoice::store::calls::{CallRecord, Channel};
use carevoice::store::escalations::EscalationRecord;
use support::browser::Driver;
use support::carevoice::{self as cv, Server};
use support::free_port;

/// PHI the test writes; no error page may ever show it.
const SUMMARY: &str = "Anna Smith (born 1975-03-03) wants to move her knee follow-up to next week.";
const SAID: &str = "my date of birth is March third nineteen seventy-five";
const REPLY: &str = "Thank you Anna, you are booked for Tuesday at 2 pm.";

// ---- RFC 6238, written out here so the test does not trust the code under test ----

fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in text.trim().bytes().filter(|c| *c != b'=') {
        let v = alphabet
            .iter()
            .position(|a| *a == c)
            .expect("base32 letter") as u64;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

fn totp(secret: &[u8], step: u64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let o = (d[19] & 0xf) as usize;
    let n = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]) % 1_000_000;
    format!("{n:06}")
}

fn now_step() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

fn now_ms() -> i64 {
    carevoice::store::now_ms()
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- the server and the clinic's data ----

struct Console {
    server: Server,
    port: u16,
}

impl Console {
    fn start(extra: &str) -> Console {
        let port = free_port();
        let server = Server::start(&format!(
            "[log]\nformat = \"json\"\n\n[console]\nenabled = true\nport = {port}\n{extra}\n"
        ));
        let console = Console { server, port };
        console.wait_ready();
        console
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "console port never opened");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn restart(self) -> Console {
        let port = self.port;
        let console = Console {
            server: self.server.restart(),
            port,
        };
        console.wait_ready();
        console
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let config = self.server.config_path();
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        cv::run(&all, self.server.dir.path(), &[])
    }

    /// `users add`, returning the one-time password it printed.
    fn add_user(&self, name: &str, role: &str) -> String {
        let out = self.cli(&["users", "add", "--role", role, name]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "users add: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("one-time password: "))
            .expect("one-time password printed")
            .trim()
            .to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.server.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn audit_export(&self) -> Vec<Value> {
        let out = self.cli(&["audit", "export", "--format", "jsonl"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The store and audit log as the call pipeline uses them, opened by the test beside the server.
struct Clinic {
    rt: tokio::runtime::Runtime,
    store: Store,
    audit: Audit,
}

impl Clinic {
    fn open(console: &Console) -> Clinic {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let path = console.server.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_toml(&text, &path, Vec::<(String, String)>::new()).unwrap();
        let (store, audit) = rt.block_on(async {
            let store = Store::open(&config.store, &config.server.data_dir)
                .await
                .unwrap();
            let audit = Audit::open(&store, &config, false).await.unwrap();
            (store, audit)
        });
        Clinic { rt, store, audit }
    }

    fn escalation(
        &self,
        reason: &str,
        urgent: bool,
        summary: Option<&str>,
        outcome: &str,
        age_ms: i64,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let call_id = self.call(age_ms + 60_000);
        let created_ms = now_ms() - age_ms;
        self.rt.block_on(async {
            let summary_sealed = match summary {
                Some(text) => Some(
                    self.audit
                        .crypto
                        .seal(
                            Purpose::Phi,
                            created_ms,
                            &Binding::new("escalations", &id, "summary"),
                            text.as_bytes(),
                        )
                        .await
                        .unwrap(),
                ),
                None => None,
            };
            self.store
                .insert_escalation(&EscalationRecord {
                    id: id.clone(),
                    call_id,
                    created_ms,
                    reason: reason.into(),
                    urgent,
                    identity: if summary.is_some() {
                        "verified"
                    } else {
                        "unverified"
                    }
                    .into(),
                    outcome: outcome.into(),
                    summary_sealed,
                })
                .await
                .unwrap();
        });
        id
    }

    /// A finished call with two audited turns.
    fn call(&self, age_ms: i64) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let started_ms = now_ms() - age_ms;
        self.rt.block_on(async {
            self.store
                .insert_call(&CallRecord {
                    id: id.clone(),
                    channel: Channel::Sip,
                    caller_hash: "hash".into(),
                    started_ms,
                    ended_ms: Some(started_ms + 95_000),
                    outcome: Some("booked".into()),
                })
                .await
                .unwrap();
            for (turn, said, reply) in [
                (
                    1,
                    "I'd like to move my appointment",
                    "Sure. What is your full name?",
                ),
                (2, SAID, REPLY),
            ] {
                self.audit
                    .log
                    .append(AuditEvent::CallTurn(CallTurn {
                        call_id: id.clone(),
                        turn,
                        started_ms,
                        ended_ms: started_ms + 1000,
                        identity: if turn == 2 { "verified" } else { "unverified" }.into(),
                        intent: Some("reschedule".into()),
                        transcript: Some(Confidential::new(said)),
                        reply: Some(Confidential::new(reply)),
                        ..CallTurn::default()
                    }))
                    .await
                    .unwrap();
            }
        });
        id
    }
}

impl Drop for Clinic {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.audit.log.shutdown());
    }
}

// ---- browser steps ----

fn shot(b: &mut Driver, name: &str) {
    let path = shots().join(format!("{name}.png"));
    b.cmd(json!({"op": "screenshot", "path": path}));
}

fn page_text(b: &mut Driver) -> (String, String) {
    let p = b.cmd(json!({"op": "page"}));
    (
        p["url"].as_str().unwrap().to_string(),
        p["text"].as_str().unwrap().to_string(),
    )
}

fn assert_no_phi(text: &str, what: &str) {
    for secret in [SUMMARY, SAID, REPLY, "Anna Smith", "1975"] {
        assert!(
            !text.contains(secret),
            "{what} shows PHI ({secret:?}):\n{text}"
        );
    }
}

fn password_step(b: &mut Driver, console: &Console, name: &str, password: &str) -> Value {
    b.cmd(json!({"op": "goto", "url": console.url("/login")}));
    b.cmd(json!({"op": "fill", "selector": "#name", "value": name}));
    b.cmd(json!({"op": "fill", "selector": "#password", "value": password}));
    b.cmd(json!({"op": "submit", "selector": "button[type=submit]"}))
}

/// First sign-in: one-time password, TOTP enrollment, new password. Returns the TOTP seed and the
/// step its enrollment code used.
fn first_sign_in(
    b: &mut Driver,
    console: &Console,
    name: &str,
    one_time: &str,
    new_password: &str,
    shots_too: bool,
) -> (Vec<u8>, u64) {
    if shots_too {
        b.cmd(json!({"op": "goto", "url": console.url("/login")}));
        shot(b, "01-login");
    }
    let r = password_step(b, console, name, one_time);
    assert!(r["url"].as_str().unwrap().ends_with("/mfa/enroll"), "{r}");
    let half_signed_in = cookie_value(b).expect("a session after the password")["value"].clone();
    let secret = b.cmd(json!({"op": "text", "selector": "#totp-secret"}))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        b.cmd(json!({"op": "count", "selector": ".qr svg"}))["count"],
        1,
        "QR code shown"
    );
    if shots_too {
        shot(b, "02-enroll");
    }
    let seed = base32_decode(&secret);
    let step = now_step();
    b.cmd(json!({"op": "fill", "selector": "#code", "value": totp(&seed, step)}));
    let r = b.cmd(json!({"op": "submit", "selector": "button[type=submit]"}));
    assert!(r["url"].as_str().unwrap().ends_with("/password"), "{r}");
    let after_mfa = cookie_value(b).expect("a session after the code")["value"].clone();
    assert_ne!(
        half_signed_in, after_mfa,
        "the session id changes after the second factor"
    );
    if shots_too {
        shot(b, "03-password");
    }
    b.cmd(json!({"op": "fill", "selector": "#new_password", "value": new_password}));
    b.cmd(json!({"op": "fill", "selector": "#confirm", "value": new_password}));
    let r = b.cmd(json!({"op": "submit", "selector": "button[type=submit]"}));
    assert_eq!(r["status"], 200, "{r}: {}", page_text(b).1);
    (seed, step)
}

fn cookie_value(b: &mut Driver) -> Option<Value> {
    let cookies = b.cmd(json!({"op": "cookies"}));
    cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-carevoice_session")
        .cloned()
}

#[test]
fn front_desk_signs_in_works_the_queue_and_every_phi_view_is_audited() {
    let console = Console::start("");
    // The self-signed certificate's fingerprint is logged, and it is the one on disk.
    let log = console.log();
    let logged = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|l| l["sha256"].as_str().map(str::to_string))
        .expect("fingerprint in the log");
    let pem = std::fs::read_to_string(console.server.dir.path().join("data/console-tls/cert.pem"))
        .unwrap();
    let der = {
        use base64::Engine;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    assert_eq!(logged, carevoice::console::tls::fingerprint(&der));

    let one_time = console.add_user("ann", "front_desk");
    let clinic = Clinic::open(&console);
    let verified = clinic.escalation("human", false, Some(SUMMARY), "callback", 3 * 3_600_000);
    let unverified = clinic.escalation("identity_failed", false, None, "pending", 5 * 60_000);
    let urgent = clinic.escalation("emergency", true, None, "callback", 30_000);
    let history_call = clinic.call(10 * 60_000);

    let mut b = Driver::launch();
    // Security headers on the sign-in page.
    let r = b.cmd(json!({"op": "request", "method": "GET", "url": console.url("/login")}));
    assert_eq!(r["status"], 200);
    let (seed, enrolled_step) = first_sign_in(
        &mut b,
        &console,
        "ann",
        &one_time,
        "front desk coffee mornings",
        true,
    );
    assert!(page_text(&mut b).0.ends_with("/queue"));

    // Sign out; the enrollment code cannot be used again (it is still inside its time window);
    // a fresh one works.
    let r = b.cmd(json!({"op": "submit", "selector": "header form button"}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=signed_out"),
        "{r}"
    );
    assert!(page_text(&mut b).1.contains("You have signed out."));
    let r = password_step(&mut b, &console, "ann", "front desk coffee mornings");
    assert!(r["url"].as_str().unwrap().ends_with("/mfa"), "{r}");
    shot(&mut b, "14-mfa");
    b.cmd(json!({"op": "fill", "selector": "#code", "value": totp(&seed, enrolled_step)}));
    let r = b.cmd(json!({"op": "submit", "selector": "button[type=submit]"}));
    assert_eq!(r["status"], 401, "{r}");
    let error = b.cmd(json!({"op": "text", "selector": "#error"}))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("already used"), "{error}");
    shot(&mut b, "15-replayed-code");
    b.cmd(json!({"op": "fill", "selector": "#code", "value": totp(&seed, now_step().max(enrolled_step + 1))}));
    let r = b.cmd(json!({"op": "submit", "selector": "button[type=submit]"}));
    assert!(r["url"].as_str().unwrap().ends_with("/queue"), "{r}");

    let (url, text) = page_text(&mut b);
    assert!(url.ends_with("/queue"), "{url}");
    assert!(
        text.contains("Escalation queue") && text.contains("ann"),
        "{text}"
    );
    // The cookie: __Host-, Secure, HttpOnly, SameSite=Strict.
    let cookie = cookie_value(&mut b).expect("session cookie");
    assert_eq!(cookie["secure"], true);
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");

    // The queue: urgent first, then the oldest; no PHI in the table.
    let rows = b.cmd(json!({"op": "count", "selector": "#queue-table tbody tr"}))["count"].clone();
    assert_eq!(rows, 3);
    let first = b.cmd(json!({"op": "text", "selector": "#queue-table tbody tr"}))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first.contains("Urgent") && first.contains("Emergency"),
        "{first}"
    );
    assert_no_phi(&page_text(&mut b).1, "the queue");
    shot(&mut b, "04-queue");

    // A new escalation shows up on the open page within a second, without a reload.
    b.cmd(json!({"op": "mark"}));
    std::thread::sleep(Duration::from_millis(1500)); // the live stream is connected
    let fresh = clinic.escalation("human", false, Some(SUMMARY), "pending", 0);
    let t0 = Instant::now();
    let seen = b.cmd(json!({"op": "wait", "selector": format!("#esc-{fresh}"), "timeout": 3000}));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "new row took {took:?} ({seen})"
    );
    assert_eq!(
        b.cmd(json!({"op": "marked"}))["value"],
        "still here",
        "no reload"
    );
    shot(&mut b, "05-queue-live");

    // The verified caller's summary, decrypted on view; the unverified one has none.
    let r = b.cmd(json!({"op": "goto", "url": console.url(&format!("/escalations/{verified}"))}));
    assert_eq!(r["status"], 200);
    let summary = b.cmd(json!({"op": "text", "selector": "#summary"}))["text"].clone();
    assert_eq!(summary, SUMMARY);
    shot(&mut b, "06-escalation");
    b.cmd(json!({"op": "goto", "url": console.url(&format!("/escalations/{unverified}"))}));
    let (_, text) = page_text(&mut b);
    assert!(text.contains("not verified"), "{text}");
    assert_no_phi(&text, "an unverified escalation");

    // Callbacks: the three-hour-old one is overdue; marking it done takes it off the list.
    b.cmd(json!({"op": "goto", "url": console.url("/callbacks")}));
    assert_eq!(
        b.cmd(
            json!({"op": "has_class", "selector": format!("#cb-{verified}"), "class": "overdue"})
        )["value"],
        true
    );
    assert_eq!(
        b.cmd(json!({"op": "has_class", "selector": format!("#cb-{urgent}"), "class": "overdue"}))
            ["value"],
        false
    );
    shot(&mut b, "07-callbacks");
    b.cmd(json!({"op": "fill", "selector": format!("#note-{verified}"), "value": "Reached her, moved to Tuesday"}));
    let r = b.cmd(json!({"op": "submit", "selector": format!("#cb-{verified} button")}));
    assert!(
        r["url"].as_str().unwrap().contains("/callbacks?done=1"),
        "{r}"
    );
    assert_eq!(
        b.cmd(json!({"op": "count", "selector": format!("#cb-{verified}")}))["count"],
        0
    );
    assert!(page_text(&mut b).1.contains("Callback marked done."));
    shot(&mut b, "08-callback-done");

    // Call history and one call's transcript.
    b.cmd(json!({"op": "goto", "url": console.url("/calls")}));
    assert!(
        b.cmd(json!({"op": "count", "selector": format!("#call-{history_call}")}))["count"] == 1
    );
    shot(&mut b, "09-calls");
    b.cmd(json!({"op": "goto", "url": console.url(&format!("/calls/{history_call}"))}));
    let transcript = b.cmd(json!({"op": "text", "selector": "#transcript"}))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        transcript.contains(SAID) && transcript.contains(REPLY),
        "{transcript}"
    );
    shot(&mut b, "10-call");

    // Not for the front desk: the accounts page.
    let r = b.cmd(json!({"op": "goto", "url": console.url("/admin/users")}));
    assert_eq!(r["status"], 403);
    assert!(page_text(&mut b).1.contains("Not allowed"));
    shot(&mut b, "11-forbidden");

    // Unknown route; malformed and oversized forms; no PHI on any error page.
    let r = b.cmd(json!({"op": "goto", "url": console.url("/callbacks?done=%ZZ&done=1&done")}));
    assert_eq!(r["status"], 200, "a garbled query is ignored: {r}");
    let r = b.cmd(json!({"op": "goto", "url": console.url("/no/such/page")}));
    assert_eq!(r["status"], 404);
    let (_, text) = page_text(&mut b);
    assert!(text.contains("Page not found"), "{text}");
    assert_no_phi(&text, "the 404 page");
    shot(&mut b, "12-not-found");
    let origin = console.url("");
    let form = json!({"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"});
    let r = b.cmd(json!({"op": "request", "url": console.url(&format!("/callbacks/{urgent}/done")), "headers": form, "body": "nonsense=%ZZ"}));
    assert_eq!(r["status"], 400, "{r}");
    assert_no_phi(r["text"].as_str().unwrap(), "the 400 page");
    let big = format!("note={}", "x".repeat(64 * 1024));
    let r = b.cmd(json!({"op": "request", "url": console.url(&format!("/callbacks/{urgent}/done")), "headers": form, "body": big}));
    assert_eq!(r["status"], 413, "{r}");
    assert_no_phi(r["text"].as_str().unwrap(), "the 413 page");
    let r = b.cmd(json!({"op": "request", "url": console.url("/login"), "headers": form, "body": format!("name=ann&password={}", "p".repeat(300))}));
    assert_eq!(r["status"], 401, "{r}");

    // A POST from another origin (the admin port: same site, other origin) is refused, and the
    // callback stays open.
    b.cmd(json!({"op": "goto", "url": console.server.url("/")}));
    let r = b.cmd(json!({"op": "cross_origin_post", "url": console.url(&format!("/callbacks/{urgent}/done")), "fields": {"note": "forged"}}));
    assert_eq!(r["status"], 403, "{r}");
    assert!(page_text(&mut b).1.contains("Request refused"));
    shot(&mut b, "13-cross-origin");
    b.cmd(json!({"op": "goto", "url": console.url("/callbacks")}));
    assert_eq!(
        b.cmd(json!({"op": "count", "selector": format!("#cb-{urgent}")}))["count"],
        1
    );

    // A forged cookie gets the sign-in page, not the queue (the real one is put back after).
    let real = cookie_value(&mut b).expect("session cookie");
    b.cmd(json!({"op": "set_cookie", "name": "__Host-carevoice_session", "value": "A".repeat(43), "url": console.url("/")}));
    let r = b.cmd(json!({"op": "goto", "url": console.url("/queue")}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=ended"),
        "{r}"
    );
    assert_no_phi(&page_text(&mut b).1, "the sign-in page");
    b.cmd(json!({"op": "set_cookie", "name": "__Host-carevoice_session", "value": "not a token", "url": console.url("/")}));
    let r = b.cmd(json!({"op": "goto", "url": console.url("/calls")}));
    assert!(r["url"].as_str().unwrap().contains("/login"), "{r}");
    b.cmd(json!({"op": "set_cookie", "name": "__Host-carevoice_session", "value": real["value"], "url": console.url("/")}));
    let r = b.cmd(json!({"op": "goto", "url": console.url("/queue")}));
    assert!(
        r["url"].as_str().unwrap().ends_with("/queue"),
        "{r}: real {real}, now {}",
        b.cmd(json!({"op": "cookies"}))
    );

    // Disabled while signed in: the next request is refused.
    let out = console.cli(&["users", "disable", "ann"]);
    assert!(out.status.success());
    let r = b.cmd(json!({"op": "goto", "url": console.url("/calls")}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=disabled"),
        "{r}"
    );
    assert!(page_text(&mut b).1.contains("disabled"));
    shot(&mut b, "16-disabled");

    // The audit log: each PHI view, sign-in, failure and sign-out.
    drop(clinic);
    let records = console.audit_export();
    let views: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "staff_view")
        .collect();
    assert!(
        views
            .iter()
            .any(|v| v["body"]["actor"] == "ann" && v["body"]["what"] == "escalation_summary"),
        "{views:?}"
    );
    assert!(
        views.iter().any(|v| v["body"]["actor"] == "ann"
            && v["body"]["what"] == "transcript"
            && v["body"]["call_id"] == history_call.as_str()),
        "{views:?}"
    );
    let auth: Vec<String> = records
        .iter()
        .filter(|r| r["kind"] == "auth" && r["body"]["actor"] == "ann")
        .map(|r| {
            format!(
                "{} {}",
                r["body"]["action"].as_str().unwrap(),
                r["body"]["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    for expected in [
        "mfa_enrolled ",
        "password_changed ",
        "login ",
        "logout user",
        "login_failed replayed code",
        "logout disabled",
    ] {
        assert!(
            auth.iter().any(|a| a == expected),
            "{expected:?} not in {auth:?}"
        );
    }
    let errors = b.cmd(json!({"op": "console_errors"}));
    let csp: Vec<&Value> = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.as_str().unwrap_or("").contains("Content Security Policy"))
        .collect();
    assert!(csp.is_empty(), "CSP violations: {csp:?}");
}

#[test]
fn lockout_survives_a_restart_and_idle_sessions_end() {
    let console = Console::start("idle_timeout_secs = 4\nlockout_failures = 3\n");
    let admin_pw = console.add_user("boss", "admin");
    let carl_pw = console.add_user("carl", "front_desk");
    let mut b = Driver::launch();

    // An admin lands on the accounts page; an idle session ends although the page stays open.
    first_sign_in(
        &mut b,
        &console,
        "boss",
        &admin_pw,
        "the admins long password",
        false,
    );
    let (url, text) = page_text(&mut b);
    assert!(url.ends_with("/admin/users"), "{url}");
    assert!(text.contains("carl") && text.contains("boss"), "{text}");
    shot(&mut b, "20-accounts");
    // The queue is not an admin's page either.
    let r = b.cmd(json!({"op": "goto", "url": console.url("/queue")}));
    assert_eq!(r["status"], 403);
    b.cmd(json!({"op": "goto", "url": console.url("/admin/users")}));
    std::thread::sleep(Duration::from_secs(5));
    let r = b.cmd(json!({"op": "goto", "url": console.url("/admin/users")}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=idle"),
        "{r}"
    );
    let notice = b.cmd(json!({"op": "text", "selector": "#notice"}))["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        notice.contains("signed out after 4 seconds without activity"),
        "{notice}"
    );
    shot(&mut b, "21-idle-logoff");

    // The live queue does not keep a session alive: with the queue open and its stream running,
    // the session still ends, and the page says so.
    let dora_pw = console.add_user("dora", "front_desk");
    first_sign_in(
        &mut b,
        &console,
        "dora",
        &dora_pw,
        "quiet mornings at the desk",
        false,
    );
    assert!(page_text(&mut b).0.ends_with("/queue"));
    let seen = b.cmd(json!({"op": "wait", "selector": "#live-signed-out", "timeout": 9000}));
    assert!(
        seen["ms"].as_u64().unwrap() >= 2500,
        "signed out too early: {seen}"
    );
    shot(&mut b, "23-live-signed-out");
    let r = b.cmd(json!({"op": "follow", "selector": "#sign-in-again"}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=idle"),
        "{r}"
    );
    // The ended session still says why on the next page load.
    let r = b.cmd(json!({"op": "goto", "url": console.url("/queue")}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=idle"),
        "{r}"
    );
    let records = console.audit_export();
    assert!(
        records.iter().any(|r| r["kind"] == "auth"
            && r["body"]["actor"] == "dora"
            && r["body"]["action"] == "logout"
            && r["body"]["reason"] == "idle"),
        "idle logoff audited"
    );

    // Wrong passwords until the account locks.
    for attempt in 1..=3 {
        let r = password_step(&mut b, &console, "carl", "not the password");
        let error = b.cmd(json!({"op": "text", "selector": "#error"}))["text"]
            .as_str()
            .unwrap()
            .to_string();
        if attempt < 3 {
            assert_eq!(r["status"], 401);
            assert!(error.contains("Wrong user name or password"), "{error}");
        } else {
            assert!(error.contains("locked"), "{error}");
        }
    }
    shot(&mut b, "22-locked");
    let r = password_step(&mut b, &console, "carl", &carl_pw);
    assert_eq!(
        r["status"], 403,
        "the right password does not open a locked account: {r}"
    );

    let (_, metrics) = support::http_get(&console.server.url("/metrics")).expect("metrics");
    assert!(
        metrics.contains("carevoice_console_sign_in_attempts_total{result=\"locked\"}"),
        "{metrics}"
    );

    // Still locked after a restart: the lock is in the store.
    let console = console.restart();
    let r = password_step(&mut b, &console, "carl", &carl_pw);
    assert_eq!(r["status"], 403, "{r}");
    assert!(
        b.cmd(json!({"op": "text", "selector": "#error"}))["text"]
            .as_str()
            .unwrap()
            .contains("locked")
    );

    // The lockout is audited; an administrator's `users enable` clears it.
    let records = console.audit_export();
    assert!(records.iter().any(|r| r["kind"] == "auth"
        && r["body"]["actor"] == "carl"
        && r["body"]["action"] == "lockout"));
    assert!(console.cli(&["users", "enable", "carl"]).status.success());
    let r = password_step(&mut b, &console, "carl", &carl_pw);
    assert!(r["url"].as_str().unwrap().ends_with("/mfa/enroll"), "{r}");
    // reset-mfa: the next sign-in enrolls a new authenticator.
    assert!(
        console
            .cli(&["users", "reset-mfa", "boss"])
            .status
            .success()
    );
    b.cmd(json!({"op": "clear_cookies"}));
    let r = password_step(&mut b, &console, "boss", "the admins long password");
    assert!(r["url"].as_str().unwrap().ends_with("/mfa/enroll"), "{r}");
    // Without JavaScript every step still works: plain forms and server-rendered pages.
    drop(b);
    let mut plain = Driver::launch_with(false);
    let erin_pw = console.add_user("erin", "front_desk");
    first_sign_in(
        &mut plain,
        &console,
        "erin",
        &erin_pw,
        "no scripts on this machine",
        false,
    );
    let (url, text) = page_text(&mut plain);
    assert!(url.ends_with("/queue"), "{url}");
    assert!(text.contains("No one is waiting"), "{text}");
    shot(&mut plain, "24-queue-without-js");
    let r = plain.cmd(json!({"op": "submit", "selector": "header form button"}));
    assert!(
        r["url"].as_str().unwrap().contains("/login?why=signed_out"),
        "{r}"
    );

    let list = String::from_utf8_lossy(&console.cli(&["users", "list"]).stdout).to_string();
    assert!(
        list.contains("carl") && list.contains("front_desk") && list.contains("boss"),
        "{list}"
    );
}

#[test]
fn plain_http_only_on_loopback_without_hsts() {
    let console = Console::start("plain_http = true\nsign_in_per_minute = 5\n");
    let url = format!("http://127.0.0.1:{}/login", console.port);
    let response = reqwest::blocking::get(&url).unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert!(h.get("strict-transport-security").is_none());
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let log = console.log();
    assert!(log.contains("console on plain HTTP"), "{log}");
    // One address gets `console.sign_in_per_minute` attempts (here 5), then 429.
    let client = reqwest::blocking::Client::new();
    let origin = format!("http://127.0.0.1:{}", console.port);
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            client
                .post(&url)
                .header("origin", &origin)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=nobody&password=guess")
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Without an Origin header a POST is refused outright.
    let bare = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=x&password=y")
        .send()
        .unwrap();
    assert_eq!(bare.status(), 403);
    // Not on another address: the config check names the key.
    let out = console.cli(&["config", "check"]);
    assert!(out.status.success());
    let bad = cv::run(
        &["config", "check"],
        console.server.dir.path(),
        &[
            ("CAREVOICE_CONSOLE__PLAIN_HTTP", "true"),
            ("CAREVOICE_CONSOLE__BIND", "0.0.0.0"),
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("console.plain_http"), "{err}");
}
