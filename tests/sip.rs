//! Telephony against real peers: sipp (UDP and TCP scenarios), baresip (a softphone that records
//! what it hears) and Kamailio (a proxy in front), all talking to a real `carevoice serve`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::carevoice::Server;
use support::sip::{Kamailio, baresip_call, sipp_uac};
use support::{free_port_range, program, render_template, run_ok, speak_wav};

const GREETING: &str = "Thank you for calling the clinic. How can we help you today?";

struct Telephony {
    server: Server,
    sip: SocketAddr,
    greeting: PathBuf,
}

/// `carevoice serve` with SIP on a free port, a greeting spoken at 22.05 kHz (converted by the
/// server), JSON logs, and `extra` appended to [sip] / [media] settings.
fn serve(sip_extra: &str, media_extra: &str) -> Telephony {
    let port = free_port_range(1);
    let rtp = free_port_range(40);
    let dir = tempfile::tempdir().unwrap();
    let greeting = dir.path().join("greeting.wav");
    speak_wav(GREETING, 22050, 0.0, &greeting);
    let kept = std::env::temp_dir().join(format!("carevoice-greeting-{port}.wav"));
    std::fs::copy(&greeting, &kept).unwrap();
    let config = format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n[sip]\nenabled = true\nport = {port}\n{sip_extra}\n\n[media]\nrtp_port_min = {rtp}\nrtp_port_max = {}\ngreeting_wav = \"{}\"\n{media_extra}\n",
        rtp + 39,
        kept.display()
    );
    let server = Server::start(&config);
    Telephony {
        server,
        sip: SocketAddr::from(([127, 0, 0, 1], port)),
        greeting: kept,
    }
}

impl Telephony {
    fn log(&self) -> String {
        std::fs::read_to_string(self.server.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// JSON log lines whose message is `message`.
    fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// Waits until `n` log lines with `message` are there.
    fn wait_events(&self, message: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ev = self.events(message);
            if ev.len() >= n || Instant::now() > deadline {
                return ev;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Telephony {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.greeting);
    }
}

/// A scenario from tests/peers/sipp with its placeholders filled, written into `dir`.
fn scenario(name: &str, dir: &Path, vars: &[(&str, String)]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, render_template(&format!("sipp/{name}"), vars)).unwrap();
    path.display().to_string()
}

/// The caller's audio for sipp's rtp_stream: speech as 8 kHz μ-law WAV.
fn caller_wav(dir: &Path) {
    let pcm = dir.join("caller-pcm.wav");
    speak_wav("I would like to book an appointment.", 8000, 0.5, &pcm);
    run_ok(
        "sox",
        Command::new(program("sox"))
            .arg(&pcm)
            .args(["-e", "u-law"])
            .arg(dir.join("caller.wav")),
    );
}

fn assert_sipp(run: &support::sip::SippRun, t: &Telephony) {
    assert!(
        run.success,
        "sipp failed:\n{}\n--- carevoice log ---\n{}",
        run.output,
        t.log()
    );
}

fn streamed_call(transport: &str) {
    let t = serve("", "");
    let dir = tempfile::tempdir().unwrap();
    caller_wav(dir.path());
    let sf = scenario(
        "uac_wav.xml",
        dir.path(),
        &[("CALL_MS", "3000".to_string())],
    );
    let run = sipp_uac(
        t.sip,
        &sf,
        transport,
        1,
        1,
        Duration::from_secs(20),
        dir.path(),
    );
    assert_sipp(&run, &t);
    let ended = t.wait_events("call media ended", 1);
    assert_eq!(ended.len(), 1, "{}", t.log());
    let rtp_in = ended[0]["rtp_in"].as_u64().unwrap();
    let rtp_out = ended[0]["rtp_out"].as_u64().unwrap();
    // About 3 s of 20 ms packets each way.
    assert!(rtp_in >= 100, "rtp_in {rtp_in}");
    assert!(rtp_out >= 100, "rtp_out {rtp_out}");
    assert_eq!(ended[0]["rtp_bad"].as_u64(), Some(0));
    let calls = t.events("call ended");
    assert_eq!(calls[0]["reason"], "RemoteBye");
}

#[test]
fn sipp_udp_call_streams_audio_both_ways_and_hangs_up() {
    streamed_call("u1");
}

#[test]
fn sipp_tcp_call_streams_audio_both_ways_and_hangs_up() {
    streamed_call("t1");
}

#[test]
fn sipp_cancel_before_answer_gets_487() {
    let t = serve("answer_after_ms = 3000", "");
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario("uac_cancel.xml", dir.path(), &[]);
    for transport in ["u1", "t1"] {
        let run = sipp_uac(
            t.sip,
            &sf,
            transport,
            1,
            1,
            Duration::from_secs(15),
            dir.path(),
        );
        assert_sipp(&run, &t);
    }
    let ended = t.wait_events("call ended", 2);
    assert!(
        ended.iter().all(|e| e["reason"] == "Cancelled"),
        "{ended:?}"
    );
    // Cancelled calls never got media.
    assert!(t.events("call media ended").is_empty());
}

#[test]
fn sipp_carevoice_hangs_up_after_the_greeting() {
    let t = serve("", "hangup_after_greeting_secs = 1");
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario("uac_bye_from_us.xml", dir.path(), &[]);
    for transport in ["u1", "t1"] {
        let run = sipp_uac(
            t.sip,
            &sf,
            transport,
            1,
            1,
            Duration::from_secs(30),
            dir.path(),
        );
        assert_sipp(&run, &t);
    }
    let ended = t.wait_events("call ended", 2);
    assert!(ended.iter().all(|e| e["reason"] == "LocalBye"), "{ended:?}");
    // The greeting (about 3-4 s) was sent before the BYE.
    for media in t.wait_events("call media ended", 2) {
        assert!(media["rtp_out"].as_u64().unwrap() >= 100, "{media}");
    }
}

#[test]
fn sipp_reinvite_hold_and_unhold() {
    let t = serve("", "");
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario("uac_hold.xml", dir.path(), &[]);
    let run = sipp_uac(t.sip, &sf, "u1", 1, 1, Duration::from_secs(20), dir.path());
    assert_sipp(&run, &t);
    let changes = t.wait_events("media changed", 2);
    let dirs: Vec<_> = changes.iter().map(|c| c["direction"].clone()).collect();
    assert_eq!(dirs, vec!["recvonly", "sendrecv"]);
}

#[test]
fn sipp_rfc4733_digits_from_debian_pcaps_arrive() {
    let t = serve("", "");
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario("uac_dtmf.xml", dir.path(), &[]);
    let run = sipp_uac(t.sip, &sf, "u1", 1, 1, Duration::from_secs(20), dir.path());
    assert_sipp(&run, &t);
    let media = t.wait_events("call media ended", 1);
    // Three pcaps, three digits (their values are PHI-grade and never logged; the unit tests
    // check the digit mapping).
    assert_eq!(media[0]["dtmf_digits"].as_u64(), Some(3), "{}", t.log());
    let flow = t.wait_events("greeting flow done", 1);
    assert_eq!(flow[0]["dtmf_digits"].as_u64(), Some(3));
}

fn udp_exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Option<String> {
    sock.send_to(bytes, to).unwrap();
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).to_string()),
        Err(_) => None,
    }
}

fn options(call_id: Option<&str>, content_length: &str, branch: &str) -> String {
    let call_id = call_id
        .map(|c| format!("Call-ID: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "OPTIONS sip:clinic@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch={branch}\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:clinic@127.0.0.1>\r\n{call_id}CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

#[test]
fn hostile_messages_get_400_or_are_dropped_and_the_server_keeps_serving() {
    let t = serve("", "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let ok = udp_exchange(
        &sock,
        t.sip,
        options(Some("a1"), "0", "z9hG4bKok").as_bytes(),
    )
    .unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    let missing = udp_exchange(&sock, t.sip, options(None, "0", "z9hG4bKm").as_bytes()).unwrap();
    assert!(
        missing.starts_with("SIP/2.0 400 Bad Request (malformed SIP message: missing Call-ID)"),
        "{missing}"
    );
    let bad_len = udp_exchange(
        &sock,
        t.sip,
        options(Some("a2"), "500", "z9hG4bKl").as_bytes(),
    )
    .unwrap();
    assert!(bad_len.starts_with("SIP/2.0 400 "), "{bad_len}");
    assert!(bad_len.contains("Content-Length 500"), "{bad_len}");
    let nan = udp_exchange(
        &sock,
        t.sip,
        options(Some("a3"), "-1", "z9hG4bKn").as_bytes(),
    )
    .unwrap();
    assert!(nan.starts_with("SIP/2.0 400 "), "{nan}");
    // Garbage and binary noise: dropped, no answer.
    assert_eq!(
        udp_exchange(&sock, t.sip, b"\x16\x03\x01garbage\x00\xff"),
        None
    );
    assert_eq!(udp_exchange(&sock, t.sip, b"hello world\r\n\r\n"), None);
    // 100 KB header over TCP: the connection is dropped.
    let mut tcp = TcpStream::connect(t.sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let huge = format!(
        "OPTIONS sip:clinic@127.0.0.1 SIP/2.0\r\nX-Junk: {}\r\n",
        "x".repeat(100 * 1024)
    );
    let _ = tcp.write_all(huge.as_bytes());
    let mut rest = Vec::new();
    let read = tcp.read_to_end(&mut rest);
    assert!(
        read.is_ok() || rest.is_empty(),
        "connection should be closed: {read:?}"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    // Missing Call-ID over TCP: 400 on the same connection.
    let mut tcp = TcpStream::connect(t.sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(
        options(None, "0", "z9hG4bKt")
            .replace("UDP", "TCP")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = tcp.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400 "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Still serving: a full call works.
    let dir = tempfile::tempdir().unwrap();
    caller_wav(dir.path());
    let sf = scenario("uac_wav.xml", dir.path(), &[("CALL_MS", "1000".into())]);
    let run = sipp_uac(t.sip, &sf, "u1", 1, 1, Duration::from_secs(20), dir.path());
    assert_sipp(&run, &t);
    let ok = udp_exchange(
        &sock,
        t.sip,
        options(Some("a4"), "0", "z9hG4bKok2").as_bytes(),
    )
    .unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
}

#[test]
fn busy_server_answers_503_with_retry_after() {
    let t = serve("max_calls = 1\nretry_after_secs = 7", "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let invite = |call: &str, branch: &str| {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
        format!(
            "INVITE sip:clinic@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch={branch}\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:clinic@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:p@127.0.0.1:9>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    let first = udp_exchange(&sock, t.sip, invite("b1", "z9hG4bKb1").as_bytes()).unwrap();
    assert!(first.starts_with("SIP/2.0 100 "), "{first}");
    let second = udp_exchange(&sock, t.sip, invite("b2", "z9hG4bKb2").as_bytes()).unwrap();
    let second = if second.starts_with("SIP/2.0 503") {
        second
    } else {
        // 180/200 of the first call may come first.
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            let s = String::from_utf8_lossy(&buf[..n]).to_string();
            if s.contains("Call-ID: b2") {
                break s;
            }
        }
    };
    assert!(second.starts_with("SIP/2.0 503 "), "{second}");
    assert!(second.contains("Retry-After: 7\r\n"), "{second}");
}

/// (seconds of audio with speech-level energy, peak) of a WAV file.
fn voiced_seconds(path: &Path) -> (f64, f64) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Int => r
            .samples::<i32>()
            .map(|s| s.unwrap() as f64 / (1u64 << (spec.bits_per_sample - 1)) as f64)
            .collect(),
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap() as f64).collect(),
    };
    let window = (spec.sample_rate / 50) as usize * spec.channels as usize;
    let voiced = samples
        .chunks(window)
        .filter(|w| (w.iter().map(|s| s * s).sum::<f64>() / w.len() as f64).sqrt() > 0.01)
        .count();
    let peak = samples.iter().fold(0f64, |m, s| m.max(s.abs()));
    (voiced as f64 * 0.02, peak)
}

#[test]
fn baresip_hears_the_greeting() {
    let t = serve("", "");
    let dir = tempfile::tempdir().unwrap();
    let mic = dir.path().join("mic.wav");
    speak_wav("Hello, this is a patient calling.", 8000, 8.0, &mic);
    let call = baresip_call(
        &format!("sip:clinic@{}", t.sip),
        &mic,
        10,
        false,
        dir.path(),
    );
    assert!(
        !call.heard.is_empty(),
        "baresip recorded nothing:\n{}\n--- carevoice ---\n{}",
        call.output,
        t.log()
    );
    let (heard_voiced, heard_peak) = voiced_seconds(&call.heard[0]);
    let (greeting_voiced, _) = voiced_seconds(&t.greeting);
    assert!(heard_peak > 0.05, "peak {heard_peak}");
    let ratio = heard_voiced / greeting_voiced;
    assert!(
        (0.6..=1.6).contains(&ratio),
        "heard {heard_voiced:.2}s of speech, greeting has {greeting_voiced:.2}s\n{}",
        call.output
    );
    let ended = t.wait_events("call media ended", 1);
    assert!(ended[0]["rtp_in"].as_u64().unwrap() > 100, "{ended:?}");
}

#[test]
fn baresip_over_tls_with_mandatory_srtp_hears_the_greeting() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed_cert(certs.path());
    let tls_port = free_port_range(1);
    let t = serve(
        &format!(
            "transports = [\"udp\", \"tls\"]\ntls_port = {tls_port}\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let mic = dir.path().join("mic.wav");
    speak_wav("Hello, this is a patient calling.", 8000, 8.0, &mic);
    let call = baresip_call(
        &format!("sip:clinic@127.0.0.1:{tls_port};transport=tls"),
        &mic,
        10,
        true,
        dir.path(),
    );
    assert!(
        !call.heard.is_empty(),
        "baresip recorded nothing:\n{}\n--- carevoice ---\n{}",
        call.output,
        t.log()
    );
    let (heard_voiced, heard_peak) = voiced_seconds(&call.heard[0]);
    let (greeting_voiced, _) = voiced_seconds(&t.greeting);
    let ratio = heard_voiced / greeting_voiced;
    assert!(
        heard_peak > 0.05 && (0.6..=1.6).contains(&ratio),
        "heard {heard_voiced:.2}s (peak {heard_peak}), greeting {greeting_voiced:.2}s\n{}\n{}",
        call.output,
        t.log()
    );
    let ended = t.wait_events("call media ended", 1);
    // baresip's SRTP packets authenticated and decrypted: none rejected.
    assert!(ended[0]["rtp_in"].as_u64().unwrap() > 100, "{ended:?}");
    assert_eq!(ended[0]["rtp_bad"].as_u64(), Some(0), "{ended:?}");
    let answering = t.events("answering call");
    assert_eq!(answering[0]["srtp"], true, "{answering:?}");
}

#[test]
fn calls_through_kamailio() {
    let t = serve("", "hangup_after_greeting_secs = 1");
    let kamailio = Kamailio::start(t.sip);
    let dir = tempfile::tempdir().unwrap();
    // carevoice hangs up: its BYE must follow the Record-Route set through the proxy.
    let sf = scenario("uac_bye_from_us.xml", dir.path(), &[]);
    let run = sipp_uac(
        kamailio.addr(),
        &sf,
        "u1",
        1,
        1,
        Duration::from_secs(30),
        dir.path(),
    );
    assert_sipp(&run, &t);
    let ended = t.wait_events("call ended", 1);
    assert_eq!(ended[0]["reason"], "LocalBye");
}
