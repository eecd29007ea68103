//! Telephony against real peers: sipp (UDP and TCP scenarios), baresip (a softphone that records
//! what it hears) and Kamailio (a proxy in front), all talking to a real `carevoice serve`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carevoice::config::{MediaConfig, SipConfig};
use carevoice::media::CallerEvent;
use carevoice::sip::transport::{AnsweredCall, CallHandler, SipHandle, SipServer, TransferError};

use support::carevoice::Server;
use support::sip::{
    Kamailio, KamailioRegistrar, PjsuaOptions, SippScenarioUas, SippUas, baresip_call,
    baresip_call_with, pjsua_call, sipp_uac,
};
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
    // RTCP both ways on RTP port + 1: baresip's reports parsed, ours sent every 5 s.
    assert!(ended[0]["rtcp_in"].as_u64().unwrap() >= 1, "{ended:?}");
    assert!(ended[0]["rtcp_out"].as_u64().unwrap() >= 1, "{ended:?}");
    assert_eq!(ended[0]["rtcp_bad"].as_u64(), Some(0), "{ended:?}");
}

/// A softphone that offers Opus only (baresip's opus module, 48 kHz stereo by default) gets an
/// Opus answer and hears the greeting; its Opus reaches us and decodes without an error.
#[test]
fn baresip_opus_only_hears_the_greeting() {
    let t = serve("", "");
    let dir = tempfile::tempdir().unwrap();
    let mono = dir.path().join("mic-mono.wav");
    speak_wav("Hello, this is a patient calling.", 48000, 8.0, &mono);
    // baresip's aufile wants the codec's channels: Opus is 48000/2.
    let mic = dir.path().join("mic.wav");
    run_ok(
        "sox",
        Command::new(program("sox"))
            .arg(&mono)
            .args(["-c", "2"])
            .arg(&mic),
    );
    let call = baresip_call_with(
        &format!("sip:clinic@{}", t.sip),
        &mic,
        10,
        false,
        "opus/48000/2",
        dir.path(),
    );
    assert!(
        !call.heard.is_empty(),
        "baresip recorded nothing:\n{}\n--- carevoice ---\n{}",
        call.output,
        t.log()
    );
    let answering = t.events("answering call");
    assert_eq!(answering[0]["codec"], "opus", "{answering:?}");
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
    assert!(ended[0]["rtp_in"].as_u64().unwrap() > 100, "{ended:?}");
    assert_eq!(ended[0]["rtp_bad"].as_u64(), Some(0), "{ended:?}");
    assert_eq!(ended[0]["codec_errors"].as_u64(), Some(0), "{ended:?}");
}

#[test]
fn baresip_over_tls_with_mandatory_srtp_hears_the_greeting() {
    let certs = tempfile::tempdir().unwrap();
    let (t, tls_port, _) = serve_tls("", certs.path());
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
    // baresip's SRTCP authenticated, decrypted and parsed; ours went out. (baresip also sends
    // a 16-byte RTCP APP "PING" to open NAT pinholes each time it starts the stream's RTCP —
    // at the answer and again when the media encryption comes up — and whether it goes out
    // before SRTP is keyed is a race, so zero to two arrive in the clear; SRTCP rightly drops
    // them.)
    assert!(ended[0]["rtcp_in"].as_u64().unwrap() >= 1, "{ended:?}");
    assert!(ended[0]["rtcp_out"].as_u64().unwrap() >= 1, "{ended:?}");
    assert!(ended[0]["rtcp_bad"].as_u64().unwrap() <= 2, "{ended:?}");
    let answering = t.events("answering call");
    assert_eq!(answering[0]["srtp"], true, "{answering:?}");
}

/// `serve` with SIP-TLS on a free port too, with a fresh self-signed certificate for 127.0.0.1
/// (returned: the CA a verifying client trusts).
fn serve_tls(media_extra: &str, dir: &Path) -> (Telephony, u16, PathBuf) {
    let (cert, key) = support::self_signed_cert(dir);
    let tls_port = free_port_range(1);
    let t = serve(
        &format!(
            "transports = [\"udp\", \"tls\"]\ntls_port = {tls_port}\ntls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
        media_extra,
    );
    (t, tls_port, cert)
}

/// The greeting is in what a pjsua2 call heard, and it got a 200.
fn assert_pjsua_heard_greeting(call: &support::sip::PjsuaCall, t: &Telephony) {
    let Some(heard) = &call.heard else {
        panic!(
            "pjsua recorded nothing:\n{}\n--- carevoice ---\n{}",
            call.output,
            t.log()
        );
    };
    let (heard_voiced, heard_peak) = voiced_seconds(heard);
    let (greeting_voiced, _) = voiced_seconds(&t.greeting);
    let ratio = heard_voiced / greeting_voiced;
    assert!(
        heard_peak > 0.05 && (0.6..=1.6).contains(&ratio),
        "heard {heard_voiced:.2}s (peak {heard_peak}), greeting {greeting_voiced:.2}s\n{}\n{}",
        call.output,
        t.log()
    );
    assert!(
        call.output.contains("STATE CONFIRMED 200"),
        "{}",
        call.output
    );
}

/// pjsua2 calls over SIP-TLS, verifying our certificate (chain and name) against the test CA,
/// with mandatory SDES-SRTP, and hears the greeting. The same call trusting another CA fails
/// the handshake and never reaches us.
#[test]
fn pjsua2_over_tls_verifying_our_certificate_hears_the_greeting() {
    let dir = tempfile::tempdir().unwrap();
    let (t, tls_port, ca) = serve_tls("", dir.path());
    let mic = dir.path().join("mic.wav");
    speak_wav("Hello, this is a patient calling.", 16000, 8.0, &mic);
    let uri = format!("sip:clinic@127.0.0.1:{tls_port};transport=tls");
    let options = PjsuaOptions {
        tls_ca: Some(&ca),
        srtp: true,
    };
    let call = pjsua_call(&uri, &mic, 8, options, dir.path());
    assert_pjsua_heard_greeting(&call, &t);
    let answering = t.events("answering call");
    assert_eq!(answering[0]["srtp"], true, "{answering:?}");
    let ended = t.wait_events("call media ended", 1);
    assert!(ended[0]["rtp_in"].as_u64().unwrap() > 100, "{ended:?}");
    assert_eq!(ended[0]["rtp_bad"].as_u64(), Some(0), "{ended:?}");
    // A client that trusts another CA refuses our certificate: no call.
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _) = support::self_signed_cert(other.path());
    let refused = pjsua_call(
        &uri,
        &mic,
        3,
        PjsuaOptions {
            tls_ca: Some(&wrong_ca),
            srtp: true,
        },
        other.path(),
    );
    assert!(
        refused.output.contains("PJSIP_TLS_ECERTVERIF") && refused.heard.is_none(),
        "{}",
        refused.output
    );
    assert_ne!(refused.code, Some(200), "{}", refused.output);
    assert_eq!(t.events("answering call").len(), 1, "{}", t.log());
}

/// pjsua2 (TLS, verifying Kamailio's certificate, SRTP) -> Kamailio -> carevoice (UDP): the
/// caller hears the greeting through the proxy, SDES keys carried end to end.
#[test]
fn pjsua2_tls_through_kamailio_hears_the_greeting() {
    let t = serve("", "");
    let kamailio = Kamailio::start(t.sip);
    let dir = tempfile::tempdir().unwrap();
    let mic = dir.path().join("mic.wav");
    speak_wav("Hello, this is a patient calling.", 16000, 8.0, &mic);
    let call = pjsua_call(
        &format!("sip:clinic@127.0.0.1:{};transport=tls", kamailio.tls_port),
        &mic,
        8,
        PjsuaOptions {
            tls_ca: Some(&kamailio.cert),
            srtp: true,
        },
        dir.path(),
    );
    assert_pjsua_heard_greeting(&call, &t);
    let answering = t.events("answering call");
    assert_eq!(answering[0]["srtp"], true, "{answering:?}");
    let ended = t.wait_events("call media ended", 1);
    assert_eq!(ended[0]["rtp_bad"].as_u64(), Some(0), "{ended:?}");
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

/// A call handler standing in for the call pipeline: once a call is confirmed it asks for a
/// blind transfer to `target` and reports what `CallControl::transfer` answered.
struct TransferringHandler {
    target: String,
    after: Duration,
    results: std::sync::mpsc::Sender<Result<(), TransferError>>,
}

impl CallHandler for TransferringHandler {
    fn handle(&self, call: AnsweredCall) {
        let (target, after, results) = (self.target.clone(), self.after, self.results.clone());
        tokio::spawn(async move {
            let AnsweredCall {
                mut edge,
                confirmed,
                control,
                ..
            } = call;
            if confirmed.await.is_err() {
                return;
            }
            tokio::time::sleep(after).await;
            let _ = results.send(control.transfer(&target).await);
            while let Some(ev) = edge.recv().await {
                if ev == CallerEvent::Ended {
                    break;
                }
            }
        });
    }
}

/// carevoice's SIP server in this process with `handler` for answered calls.
struct InProcess {
    sip: SocketAddr,
    handle: SipHandle,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcess {
    fn start(handler: Arc<dyn CallHandler>) -> InProcess {
        Self::start_with_grace(handler, Duration::ZERO).0
    }

    /// Also returns the server task, which ends when the drain after `stop` is over.
    fn start_with_grace(
        handler: Arc<dyn CallHandler>,
        grace: Duration,
    ) -> (InProcess, tokio::task::JoinHandle<()>) {
        let port = free_port_range(1);
        let rtp = free_port_range(40);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sip = SipConfig {
            enabled: true,
            port,
            ..SipConfig::default()
        };
        let media = MediaConfig {
            rtp_port_min: rtp,
            rtp_port_max: rtp + 39,
            ..MediaConfig::default()
        };
        let mut server = rt.block_on(SipServer::bind(sip, media)).unwrap();
        server.set_handler(handler);
        let handle = server.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.run(
            async {
                let _ = stopped.await;
            },
            grace,
        ));
        (
            InProcess {
                sip: SocketAddr::from(([127, 0, 0, 1], port)),
                handle,
                rt,
                stop: Some(stop),
            },
            task,
        )
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    }
}

#[test]
fn refer_transfers_a_baresip_caller_to_a_sipp_staff_phone() {
    let dir = tempfile::tempdir().unwrap();
    let staff_sf = scenario("uas_staff.xml", dir.path(), &[]);
    let mut staff =
        SippScenarioUas::start(Path::new(&staff_sf), Duration::from_secs(40), dir.path());
    let (results, got) = std::sync::mpsc::channel();
    let server = InProcess::start(Arc::new(TransferringHandler {
        target: format!("sip:staff@127.0.0.1:{}", staff.port),
        after: Duration::from_secs(1),
        results,
    }));
    let mic = dir.path().join("mic.wav");
    speak_wav("Hello, I would like to talk to someone.", 8000, 8.0, &mic);
    // baresip is the transferee: it takes the REFER, calls the staff phone and NOTIFYs us.
    let call = baresip_call(
        &format!("sip:clinic@{}", server.sip),
        &mic,
        12,
        false,
        dir.path(),
    );
    let result = got.recv_timeout(Duration::from_secs(5));
    let staff_ok = staff.wait(Duration::from_secs(30));
    assert_eq!(
        result,
        Ok(Ok(())),
        "transfer failed\n--- baresip ---\n{}\n--- staff ---\n{}",
        call.output,
        staff.log_tail()
    );
    assert_eq!(
        staff_ok,
        Some(true),
        "the staff phone did not complete the transferred call\n{}\n--- baresip ---\n{}",
        staff.log_tail(),
        call.output
    );
}

/// A sipp caller whose UA answers REFER with 405: the transfer reports `Refused(405)` and the
/// call goes on (the caller hangs up later).
#[test]
fn refer_refused_by_the_caller_reports_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (results, got) = std::sync::mpsc::channel();
    let server = InProcess::start(Arc::new(TransferringHandler {
        target: "sip:staff@127.0.0.1:9".into(),
        after: Duration::from_millis(300),
        results,
    }));
    let sf = scenario("uac_refuses_refer.xml", dir.path(), &[]);
    for transport in ["u1", "t1"] {
        let run = sipp_uac(
            server.sip,
            &sf,
            transport,
            1,
            1,
            Duration::from_secs(20),
            dir.path(),
        );
        assert!(run.success, "sipp ({transport}) failed:\n{}", run.output);
        assert_eq!(
            got.recv_timeout(Duration::from_secs(5)),
            Ok(Err(TransferError::Refused(405)))
        );
    }
}

/// carevoice REGISTERs with Kamailio (digest with `algorithm`, qop=auth), then a sipp caller
/// dials the address of record through Kamailio and carevoice answers (and hangs up along the
/// Record-Route set). A second carevoice with a wrong password is refused and says so.
fn registers_with_kamailio_and_gets_calls(algorithm: &str) {
    let kamailio = KamailioRegistrar::start("clinic", "pa55-w0rd", algorithm);
    let t = serve(
        &format!(
            "registrar = \"sip:127.0.0.1:{}\"\nregister_user = \"clinic\"\nregister_password = \"pa55-w0rd\"\nregister_expires = 60",
            kamailio.port
        ),
        "hangup_after_greeting_secs = 1",
    );
    let registered = t.wait_events("registered", 1);
    assert_eq!(
        registered.len(),
        1,
        "{}\n--- kamailio ---\n{}",
        t.log(),
        kamailio.log()
    );
    assert_eq!(registered[0]["expires"], 60);
    // The first REGISTER was challenged and the answer used the algorithm asked for. (Kamailio
    // logs "REGISTERED" after sending the 200, so its log may lag carevoice's by a moment.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !kamailio.log().contains("REGISTERED sip:clinic@127.0.0.1")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let klog = kamailio.log();
    assert!(klog.contains("REGISTER challenged"), "{klog}");
    assert!(
        klog.contains(&format!("algorithm={algorithm}")) && klog.contains("qop=auth"),
        "{klog}"
    );
    assert!(klog.contains("REGISTERED sip:clinic@127.0.0.1"), "{klog}");
    let dir = tempfile::tempdir().unwrap();
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
    assert!(
        run.success,
        "sipp via Kamailio failed:\n{}\n--- carevoice ---\n{}\n--- kamailio ---\n{}",
        run.output,
        t.log(),
        kamailio.log()
    );
    assert!(
        kamailio
            .log()
            .contains("ROUTED INVITE to sip:clinic@127.0.0.1:")
    );
    let ended = t.wait_events("call ended", 1);
    assert_eq!(ended[0]["reason"], "LocalBye");

    let wrong = serve(
        &format!(
            "registrar = \"sip:127.0.0.1:{}\"\nregister_user = \"clinic\"\nregister_password = \"wrong\"",
            kamailio.port
        ),
        "",
    );
    let failed = wrong.wait_events("registration failed", 1);
    assert_eq!(failed.len(), 1, "{}", wrong.log());
    assert_eq!(failed[0]["code"], 401, "{failed:?}");
    assert!(wrong.events("registered").is_empty());
    // The password never reaches the logs.
    assert!(!wrong.log().contains("wrong\""), "{}", wrong.log());
}

#[test]
fn registers_with_kamailio_md5_and_receives_calls() {
    registers_with_kamailio_and_gets_calls("MD5");
}

#[test]
fn registers_with_kamailio_sha256_and_receives_calls() {
    registers_with_kamailio_and_gets_calls("SHA-256");
}

#[test]
fn allow_list_refuses_unknown_sources_with_403() {
    let dir = tempfile::tempdir().unwrap();
    caller_wav(dir.path());
    let sf = scenario("uac_wav.xml", dir.path(), &[("CALL_MS", "500".into())]);
    // The trunk lives elsewhere: sipp on loopback is refused.
    let closed = serve("allow_from = [\"10.1.2.0/24\", \"2001:db8::/32\"]", "");
    let run = sipp_uac(
        closed.sip,
        &sf,
        "u1",
        1,
        1,
        Duration::from_secs(10),
        dir.path(),
    );
    assert!(!run.success, "{}", run.output);
    assert!(run.output.contains("403"), "{}", run.output);
    let refused = closed.wait_events("SIP request from a source not in sip.allow_from: 403", 1);
    // The INVITE (and sipp's ACK for the 403) were refused.
    assert!(!refused.is_empty(), "{}", closed.log());
    assert!(closed.events("answering call").is_empty());
    // Loopback listed: the same call goes through.
    let open = serve("allow_from = [\"10.1.2.0/24\", \"127.0.0.1\"]", "");
    let run = sipp_uac(
        open.sip,
        &sf,
        "u1",
        1,
        1,
        Duration::from_secs(20),
        dir.path(),
    );
    assert_sipp(&run, &open);
    assert!(
        open.events("SIP request from a source not in sip.allow_from: 403")
            .is_empty()
    );
}

/// A callback: carevoice calls sipp's UAS (which echoes RTP), plays a tone, hears it echoed
/// back through the real RTP path, and hangs up with BYE.
#[test]
fn dials_out_to_a_sipp_uas_and_hears_the_echo() {
    let uas = SippUas::start();
    let (results, _got) = std::sync::mpsc::channel();
    let server = InProcess::start(Arc::new(TransferringHandler {
        target: "sip:unused@127.0.0.1:9".into(),
        after: Duration::from_secs(3600),
        results,
    }));
    let handle = server.handle.clone();
    let heard = server.rt.block_on(async move {
        let call = tokio::time::timeout(
            Duration::from_secs(10),
            handle.dial(&format!("sip:service@127.0.0.1:{}", uas.port)),
        )
        .await
        .expect("answered in time")
        .expect("call answered");
        call.confirmed.await.expect("confirmed");
        let mut edge = call.edge;
        // 1 s of a 440 Hz tone at 16 kHz.
        let tone: Vec<i16> = (0..16000)
            .map(|i| {
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 16000.0).sin() * 8000.0) as i16
            })
            .collect();
        let play = edge.play.clone();
        tokio::spawn(async move {
            for f in tone.chunks(320) {
                if play.send(f.to_vec()).await.is_err() {
                    break;
                }
            }
        });
        let mut loud_frames = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, edge.recv()).await {
            if let CallerEvent::Audio(pcm) = ev {
                let rms = (pcm.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / pcm.len() as f64)
                    .sqrt();
                if rms > 1000.0 {
                    loud_frames += 1;
                }
            }
        }
        edge.hangup().await;
        let mut ended = false;
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), edge.recv()).await {
            if ev == CallerEvent::Ended {
                ended = true;
                break;
            }
        }
        (loud_frames, ended)
    });
    // About 50 frames of tone went out; most come back through sipp's echo.
    assert!(
        heard.0 >= 30,
        "heard {} loud frames\n{}",
        heard.0,
        uas.log_tail()
    );
    assert!(heard.1, "no end after our BYE");
}

/// RFC 4733 digits we send go through a real RTP peer: sipp answers with telephone-event and
/// echoes our RTP, and our own receiver decodes the echoed events back into the same digits.
#[test]
fn sent_rfc4733_digits_come_back_through_sipp_echo() {
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario("uas_dtmf_echo.xml", dir.path(), &[]);
    let mut phone = SippScenarioUas::start_with(
        Path::new(&sf),
        Duration::from_secs(30),
        dir.path(),
        &["-rtp_echo"],
    );
    let (results, _got) = std::sync::mpsc::channel();
    let server = InProcess::start(Arc::new(TransferringHandler {
        target: "sip:unused@127.0.0.1:9".into(),
        after: Duration::from_secs(3600),
        results,
    }));
    let handle = server.handle.clone();
    let target = format!("sip:desk@127.0.0.1:{}", phone.port);
    let digits = server.rt.block_on(async move {
        let call = tokio::time::timeout(Duration::from_secs(10), handle.dial(&target))
            .await
            .expect("answered in time")
            .expect("call answered");
        let mut edge = call.edge;
        for d in ['4', '2', '#'] {
            edge.send_dtmf(d).await;
        }
        let mut digits = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, edge.recv()).await {
            if let CallerEvent::Dtmf { digit, source } = ev {
                assert_eq!(source, carevoice::media::DtmfSource::Rfc4733);
                digits.push(digit);
            }
        }
        edge.hangup().await;
        digits
    });
    assert_eq!(digits, vec!['4', '2', '#'], "{}", phone.log_tail());
    assert_eq!(
        phone.wait(Duration::from_secs(10)),
        Some(true),
        "{}",
        phone.log_tail()
    );
}

/// With `sip.auth_user` set, an unknown caller is challenged (401); sipp answers the digest
/// challenge and the call goes through, a wrong password does not.
#[test]
fn digest_challenge_for_callers_sipp_authenticates() {
    let t = serve(
        "auth_user = \"trunk\"\nauth_password = \"s3cret-pw\"\nauth_realm = \"clinic\"",
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let good = scenario(
        "uac_digest.xml",
        dir.path(),
        &[("USER", "trunk".into()), ("PASSWORD", "s3cret-pw".into())],
    );
    for transport in ["u1", "t1"] {
        let run = sipp_uac(
            t.sip,
            &good,
            transport,
            1,
            1,
            Duration::from_secs(20),
            dir.path(),
        );
        assert_sipp(&run, &t);
    }
    assert_eq!(t.wait_events("call ended", 2).len(), 2, "{}", t.log());
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = scenario(
        "uac_digest.xml",
        bad_dir.path(),
        &[("USER", "trunk".into()), ("PASSWORD", "guess".into())],
    );
    let run = sipp_uac(
        t.sip,
        &bad,
        "u1",
        1,
        1,
        Duration::from_secs(10),
        bad_dir.path(),
    );
    assert!(!run.success, "{}", run.output);
    let failed = t.wait_events(
        "SIP call with wrong digest credentials: challenged again",
        1,
    );
    assert!(!failed.is_empty(), "{}", t.log());
    assert_eq!(t.events("answering call").len(), 2);
    assert!(!t.log().contains("s3cret-pw"));
}

/// Keeps each call until the caller hangs up; counts the calls that ended.
struct HoldingHandler {
    ended: std::sync::mpsc::Sender<()>,
}

impl CallHandler for HoldingHandler {
    fn handle(&self, call: AnsweredCall) {
        let ended = self.ended.clone();
        tokio::spawn(async move {
            let mut edge = call.edge;
            while let Some(ev) = edge.recv().await {
                if ev == CallerEvent::Ended {
                    break;
                }
            }
            let _ = ended.send(());
        });
    }
}

fn raw_invite(call: &str, branch: &str) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:clinic@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch={branch}\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:clinic@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:p@127.0.0.1:9>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Shutdown while a sipp call is up: the call goes on to the caller's own BYE, a new INVITE
/// meanwhile gets 503 with Retry-After, OPTIONS is still answered, and the server stops once
/// the call has ended (well before the grace period is over).
#[test]
fn shutdown_drains_the_call_in_progress_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    caller_wav(dir.path());
    let (ended, ended_rx) = std::sync::mpsc::channel();
    let (mut server, task) =
        InProcess::start_with_grace(Arc::new(HoldingHandler { ended }), Duration::from_secs(30));
    let sf = scenario(
        "uac_wav.xml",
        dir.path(),
        &[("CALL_MS", "5000".to_string())],
    );
    let target = server.sip;
    let work = dir.path().to_path_buf();
    let caller = std::thread::spawn(move || {
        sipp_uac(target, &sf, "u1", 1, 1, Duration::from_secs(30), &work)
    });
    std::thread::sleep(Duration::from_millis(2000));
    let _ = server.stop.take().unwrap().send(());
    std::thread::sleep(Duration::from_millis(200));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let refused = udp_exchange(
        &sock,
        target,
        raw_invite("drain1", "z9hG4bKdrain1").as_bytes(),
    )
    .expect("no answer to an INVITE during the drain");
    assert!(refused.starts_with("SIP/2.0 503 "), "{refused}");
    assert!(refused.contains("Retry-After: "), "{refused}");
    let pong = udp_exchange(
        &sock,
        target,
        options(Some("drain2"), "0", "z9hG4bKdrain2").as_bytes(),
    )
    .expect("no answer to OPTIONS during the drain");
    assert!(pong.starts_with("SIP/2.0 200 "), "{pong}");
    assert!(
        !task.is_finished(),
        "the server stopped with a call in progress"
    );
    let run = caller.join().unwrap();
    assert!(
        run.success,
        "the call did not survive the drain:\n{}",
        run.output
    );
    assert!(ended_rx.recv_timeout(Duration::from_secs(5)).is_ok());
    let started = Instant::now();
    while !task.is_finished() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        task.is_finished(),
        "the server kept running after its last call ended"
    );
}

/// A call still up when the grace period is over is ended with our BYE.
#[test]
fn shutdown_grace_over_ends_the_call_with_bye() {
    let (ended, ended_rx) = std::sync::mpsc::channel();
    let (mut server, task) =
        InProcess::start_with_grace(Arc::new(HoldingHandler { ended }), Duration::from_secs(1));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    // Via/Contact point at this socket so the BYE comes here.
    let port = sock.local_addr().unwrap().port();
    let invite =
        raw_invite("grace1", "z9hG4bKgrace1").replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    sock.send_to(invite.as_bytes(), server.sip).unwrap();
    let mut buf = vec![0u8; 65536];
    let ok = loop {
        let (n, _) = sock.recv_from(&mut buf).expect("no 200 OK");
        let s = String::from_utf8_lossy(&buf[..n]).to_string();
        if s.starts_with("SIP/2.0 200 ") {
            break s;
        }
    };
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .trim()
        .trim_start_matches("To:")
        .trim()
        .to_string();
    let ack = format!(
        "ACK sip:clinic@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKgack\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: {to}\r\nCall-ID: grace1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), server.sip).unwrap();
    let _ = server.stop.take().unwrap().send(());
    let started = Instant::now();
    sock.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let bye = loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("no BYE after the grace period");
        let s = String::from_utf8_lossy(&buf[..n]).to_string();
        if s.starts_with("BYE ") {
            break s;
        }
    };
    let waited = started.elapsed();
    assert!(bye.contains("Call-ID: grace1"), "{bye}");
    assert!(
        waited >= Duration::from_millis(900),
        "BYE before the grace period was over ({waited:?})"
    );
    assert!(ended_rx.recv_timeout(Duration::from_secs(3)).is_ok());
    let started = Instant::now();
    while !task.is_finished() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        task.is_finished(),
        "the server kept running after the grace period"
    );
}

/// What RFC 4475 expects of a UAS for each of its section 3 messages: the first status code
/// it may answer over UDP and over TCP (any of those listed); an empty list means the message
/// must be dropped without an answer (responses nobody asked for, and a message a stream has
/// to wait for the rest of). Where the RFC allows a liberal or a strict answer both are listed.
const TORTURE: &[(&str, &[u16], &[u16])] = &[
    // 3.1.1 valid messages: a normal answer (100 for INVITE: we ring, 405/501 for methods a
    // clinic's line does not implement).
    // Its To has a tag: a request inside a dialog we do not know, so 481 (RFC 3261 12.2.2).
    ("wsinv", &[481], &[481]),
    ("intmeth", &[501], &[501]),
    ("esc01", &[100], &[100]),
    ("escnull", &[405], &[405]),
    ("esc02", &[501], &[501]),
    ("lwsdisp", &[200], &[200]),
    ("longreq", &[100], &[100]),
    // One datagram, two messages: only the REGISTER counts. On TCP it is two messages.
    ("dblreq", &[405], &[405]),
    ("semiuri", &[200], &[200]),
    ("transports", &[200], &[200]),
    ("mpart01", &[405], &[405]),
    ("unreason", &[], &[]),
    ("noreason", &[], &[]),
    // 3.1.2 invalid messages.
    ("badinv01", &[400], &[400]),
    // A stream cannot know the message is short: it waits (3.1.2.2).
    ("clerr", &[400], &[]),
    ("ncl", &[400], &[400]),
    ("scalar02", &[400], &[400]),
    ("scalarlg", &[], &[]),
    ("quotbal", &[400], &[400]),
    ("ltgtruri", &[400], &[400]),
    ("lwsruri", &[400], &[400]),
    ("lwsstart", &[400], &[400]),
    ("trws", &[400], &[400]),
    ("escruri", &[400, 100], &[400, 100]),
    ("baddate", &[400, 100], &[400, 100]),
    ("regbadct", &[400, 405], &[400, 405]),
    ("badaspec", &[400, 200], &[400, 200]),
    // The archive's baddn ends without the blank line after the headers: a datagram is
    // complete, so it gets its 400; a stream waits for the rest.
    ("baddn", &[400], &[]),
    ("badvers", &[505], &[505]),
    ("mismatch01", &[400], &[400]),
    ("mismatch02", &[400, 501], &[400, 501]),
    ("bigcode", &[], &[]),
    // 3.2 transaction layer.
    ("badbranch", &[200], &[200]),
    // 3.3 application layer.
    ("insuf", &[400], &[400]),
    ("unkscm", &[416], &[416]),
    ("novelsc", &[416], &[416]),
    ("unksm2", &[405, 400], &[405, 400]),
    ("bext01", &[420], &[420]),
    ("invut", &[415], &[415]),
    ("regaut01", &[405], &[405]),
    ("multi01", &[400], &[400]),
    ("mcl01", &[400], &[400]),
    ("bcast", &[], &[]),
    ("zeromf", &[200], &[200]),
    ("cparam01", &[405], &[405]),
    ("cparam02", &[405], &[405]),
    ("regescrt", &[405], &[405]),
    ("sdp01", &[406], &[406]),
    // 3.4: no branch, no From tag. Over TCP a missing Content-Length is an error (RFC 3261
    // 18.3: it MUST be there on a stream).
    ("inv2543", &[100], &[400]),
];

/// These share branch, sent-by and method with another message (cparam01, escnull, unkscm):
/// by RFC 3261 17.2.3 each pair is one transaction, so a server that saw the first answers the
/// second as its retransmission. They go to a second server; the test checks that no two
/// messages sent to one server share a transaction.
const SECOND_SERVER: &[&str] = &["cparam02", "regescrt", "novelsc"];

fn torture_fixture(name: &str) -> Vec<u8> {
    std::fs::read(support::repo_root().join(format!("tests/fixtures/rfc4475/{name}.sip"))).unwrap()
}

/// The answers (status line and whole text) to `bytes` sent once from a fresh UDP socket or a
/// fresh TCP connection: everything that came within `wait`.
fn torture_send(to: SocketAddr, bytes: &[u8], tcp: bool, wait: Duration) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    let parse = |mut data: &[u8], out: &mut Vec<(u16, String)>| {
        use carevoice::sip::message::{Framing, parse};
        while !data.is_empty() {
            let used = match parse(data, Framing::Stream) {
                Ok((_, used)) => used,
                // An answer copies the request's Via even where that is malformed: frame it
                // by its blank line (such answers have no body).
                Err(_) => match data.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => end + 4,
                    None => break,
                },
            };
            let text = String::from_utf8_lossy(&data[..used]).to_string();
            let code = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            out.push((code, text));
            data = &data[used..];
        }
    };
    if tcp {
        let mut s = TcpStream::connect(to).unwrap();
        s.write_all(bytes).unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(_) if !data.is_empty() => break,
                Err(_) => {}
            }
        }
        parse(&data, &mut out);
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(bytes, to).unwrap();
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            match s.recv_from(&mut buf) {
                Ok((n, _)) => parse(&buf[..n], &mut out),
                Err(_) if !out.is_empty() => break,
                Err(_) => {}
            }
        }
    }
    out
}

/// The RFC 4475 torture messages, byte for byte, to a real `carevoice serve` over UDP and TCP:
/// each gets the answer the RFC expects (or is dropped where it says so), each answer belongs
/// to its own message, and the servers keep answering OPTIONS afterwards.
///
/// Two servers instead of one per message: every message has its own Call-ID (so its own
/// dialog), calls only ring (no media), and no two messages sent to one server share a
/// transaction (checked below), so nothing one message leaves behind can touch another.
#[test]
fn rfc4475_torture_messages_get_the_answers_the_rfc_expects() {
    use carevoice::sip::message::parse_head_only;
    use carevoice::sip::txn::TxKey;
    use carevoice::sip::uas::Transport;
    let servers = [
        serve("answer_after_ms = 60000\nmax_calls = 1000", ""),
        serve("answer_after_ms = 60000\nmax_calls = 1000", ""),
    ];
    let started = Instant::now();
    let mut keys: [Vec<TxKey>; 2] = [Vec::new(), Vec::new()];
    let mut failures = Vec::new();
    let mut handled = [0usize; 2];
    for (name, udp, tcp) in TORTURE {
        let bytes = torture_fixture(name);
        let server = usize::from(SECOND_SERVER.contains(name));
        let head = parse_head_only(&bytes);
        if let Some(key) = head
            .as_ref()
            .filter(|m| m.method().is_some())
            .and_then(|m| TxKey::of(m, Transport::Udp))
        {
            assert!(!keys[server].contains(&key), "{name} shares a transaction");
            keys[server].push(key);
        }
        let call_id = head.as_ref().and_then(|m| m.call_id().map(str::to_string));
        for (t, (expected, tcp)) in [(*udp, false), (*tcp, true)].into_iter().enumerate() {
            let wait = Duration::from_millis(if expected.is_empty() { 400 } else { 2000 });
            let got = torture_send(servers[server].sip, &bytes, tcp, wait);
            let first = got.first().map(|(c, _)| *c);
            let mut ok = match first {
                None => expected.is_empty(),
                Some(code) => expected.contains(&code),
            };
            // Every answer is to this message, not to an earlier one.
            if call_id.is_some() {
                let sent = String::from_utf8_lossy(&bytes);
                ok &= got.iter().all(|(_, text)| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("Call-ID: "))
                        .is_some_and(|c| sent.contains(&format!("{c}\r\n")))
                });
            }
            let text = got.first().map(|(_, t)| t.as_str()).unwrap_or_default();
            ok &= match *name {
                "bext01" => {
                    text.contains("Unsupported: nothingSupportsThis, nothingSupportsThisEither\r\n")
                }
                "invut" | "sdp01" => text.contains("Accept: application/sdp\r\n"),
                _ => true,
            };
            if ok {
                handled[t] += 1;
            } else {
                failures.push(format!(
                    "{name} over {}: expected {expected:?}, got {:?}",
                    if tcp { "TCP" } else { "UDP" },
                    got.iter().map(|(c, _)| *c).collect::<Vec<_>>()
                ));
            }
        }
    }
    eprintln!(
        "RFC 4475: {}/{} handled as expected over UDP, {}/{} over TCP",
        handled[0],
        TORTURE.len(),
        handled[1],
        TORTURE.len()
    );
    // Both servers are alive and answer.
    for t in &servers {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let ok = udp_exchange(
            &sock,
            t.sip,
            options(Some("alive"), "0", "z9hG4bKalive").as_bytes(),
        )
        .unwrap_or_default();
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}\n{}", t.log());
        let tcp = options(Some("alive-tcp"), "0", "z9hG4bKalivet").replace("UDP", "TCP");
        let got = torture_send(t.sip, tcp.as_bytes(), true, Duration::from_secs(2));
        assert_eq!(got.first().map(|(c, _)| *c), Some(200), "{}", t.log());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
}

/// An INVITE from `sock` with top Via `via` (none of the callers' requests carry more).
fn caller_invite(sock: &UdpSocket, via: &str, call: &str) -> String {
    let port = sock.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        port + 1
    );
    format!(
        "INVITE sip:clinic@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:p@127.0.0.1>;tag=t-{call}\r\nTo: <sip:clinic@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:p@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Two RFC 2543 callers (no branch) and two RFC 3261 callers that reuse one branch from
/// different sent-by addresses call at once: each gets its own 100/180/200 only, ACKs and
/// hangs up its own call.
#[test]
fn concurrent_callers_without_cookie_or_sharing_a_branch_get_only_their_own_responses() {
    let t = serve("", "");
    let sip = t.sip;
    let callers: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let port = sock.local_addr().unwrap().port();
                let via = if i < 2 {
                    // RFC 2543: the top Via is the whole transaction id.
                    "SIP/2.0/UDP 127.0.0.1".to_string()
                } else {
                    format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKshared")
                };
                let call = format!("concurrent-{i}");
                let invite = caller_invite(&sock, &via, &call);
                sock.send_to(invite.as_bytes(), sip).unwrap();
                let mut buf = vec![0u8; 65536];
                let mut codes = Vec::new();
                let ok = loop {
                    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
                    let r = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(r.contains(&format!("Call-ID: {call}\r\n")), "caller {i} got:\n{r}");
                    let code: u16 = r[8..11].parse().unwrap();
                    codes.push(code);
                    if code >= 200 {
                        break r;
                    }
                    if code == 100 && codes.len() == 1 {
                        // Retransmit once: the answer must be ours again.
                        sock.send_to(invite.as_bytes(), sip).unwrap();
                    }
                };
                assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
                let to = ok
                    .lines()
                    .find(|l| l.starts_with("To: "))
                    .unwrap()
                    .trim_start_matches("To: ")
                    .to_string();
                let tail = format!(
                    "From: <sip:p@127.0.0.1>;tag=t-{call}\r\nTo: {to}\r\nCall-ID: {call}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                let ack = format!(
                    "ACK sip:carevoice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKack{i}\r\nCSeq: 1 ACK\r\n{tail}"
                );
                sock.send_to(ack.as_bytes(), sip).unwrap();
                let bye = format!(
                    "BYE sip:carevoice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbye{i}\r\nCSeq: 2 BYE\r\n{tail}"
                );
                sock.send_to(bye.as_bytes(), sip).unwrap();
                loop {
                    let (n, _) = sock.recv_from(&mut buf).expect("the BYE's answer");
                    let r = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(r.contains(&format!("Call-ID: {call}\r\n")), "caller {i} got:\n{r}");
                    if r.contains(" BYE\r\n") {
                        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
                        break;
                    }
                }
                codes
            })
        })
        .collect();
    for (i, c) in callers.into_iter().enumerate() {
        let codes = c
            .join()
            .unwrap_or_else(|_| panic!("caller {i}\n{}", t.log()));
        assert_eq!(codes.last(), Some(&200), "caller {i}: {codes:?}");
    }
    assert_eq!(t.wait_events("call ended", 4).len(), 4, "{}", t.log());
}
