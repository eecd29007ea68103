//! Telephony benches: parse + print a typical INVITE; the media path of 200 concurrent G.711
//! calls (RTP in, jitter buffer, decode, 8->16 kHz, 16->8 kHz, encode, RTP out) per 20 ms tick,
//! and of 200 Opus calls (RTP in, jitter buffer, Opus decode to 16 kHz, Opus encode, RTP out);
//! and, when sipp is installed, a sipp load of call setups (INVITE -> 100/180/200 -> ACK -> BYE)
//! against the real UDP server on loopback, reporting setups/s and setup time p50/p95.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use carevoice::config::{MediaConfig, SipConfig, SipTransport};
use carevoice::media::opus::{MAX_PACKET, OpusCodec};
use carevoice::media::rtp::RtpPacket;
use carevoice::media::sdp::{Codec, Direction, Negotiated};
use carevoice::media::session::MediaSession;
use carevoice::media::{FRAME_8K, FRAME_16K};
use carevoice::sip::message::{self, Framing};
use carevoice::sip::transport::SipServer;
use criterion::{Criterion, Throughput};

const INVITE: &str = "INVITE sip:clinic@192.0.2.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-524287-1---d8754z-;rport\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc123;received=192.0.2.1\r\n\
Record-Route: <sip:192.0.2.20;lr;ftag=as4e3f>\r\n\
Max-Forwards: 69\r\n\
Contact: <sip:+15551234567@192.0.2.1:5060;transport=udp>\r\n\
To: <sip:clinic@192.0.2.10>\r\n\
From: \"Pat Caller\" <sip:+15551234567@192.0.2.1>;tag=as4e3f\r\n\
Call-ID: 6b2c1e7a9f0d4c3b8a7e6d5c4b3a2910@192.0.2.1\r\n\
CSeq: 102 INVITE\r\n\
User-Agent: Trunk/1.0\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 242\r\n\
\r\n\
v=0\r\n\
o=root 1821 1821 IN IP4 192.0.2.1\r\n\
s=call\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 18432 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=maxptime:150\r\n";

fn parse_print(c: &mut Criterion) {
    assert!(message::parse(INVITE.as_bytes(), Framing::Datagram).is_ok());
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite", |b| {
        b.iter(|| message::parse(std::hint::black_box(INVITE.as_bytes()), Framing::Datagram))
    });
    let (msg, _) = message::parse(INVITE.as_bytes(), Framing::Datagram).unwrap();
    g.bench_function("print_invite", |b| b.iter(|| msg.to_bytes()));
    g.bench_function("parse_print_invite", |b| {
        b.iter(|| {
            message::parse(std::hint::black_box(INVITE.as_bytes()), Framing::Datagram)
                .map(|(m, _)| m.to_bytes())
        })
    });
    g.finish();
}

const CALLS: usize = 200;

/// One iteration = one 20 ms tick of `CALLS` calls of `codec`: each gets one RTP packet
/// (`payloads` in turn) and sends one.
fn tick_calls(c: &mut Criterion, name: &str, codec: Codec, pt: u8, payloads: &[Vec<u8>]) {
    let negotiated = Negotiated {
        proto: "RTP/AVP".into(),
        srtp: None,
        codec,
        payload_type: pt,
        dtmf_pt: Some(101),
        remote_addr: Some("127.0.0.1".parse().unwrap()),
        remote_port: 4000,
        direction: Direction::SendRecv,
        ptime: 20,
        rtcp_mux: false,
    };
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut sessions: Vec<MediaSession> = (0..CALLS)
        .map(|i| MediaSession::new(negotiated.clone(), i as u32 + 1))
        .collect();
    let play: Vec<i16> = (0..FRAME_16K)
        .map(|i| (6000.0 * (i as f64 * 0.2).sin() + ((i * 97) % 2000) as f64) as i16)
        .collect();
    let mut seq = 0u16;
    let mut packet = Vec::new();
    let t0 = Instant::now();
    let mut heard = Vec::with_capacity(FRAME_16K);
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Elements(CALLS as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let now = t0 + Duration::from_millis(20 * seq as u64);
            let payload = &payloads[seq as usize % payloads.len()];
            for (i, s) in sessions.iter_mut().enumerate() {
                RtpPacket {
                    marker: false,
                    payload_type: pt,
                    sequence: seq,
                    timestamp: seq as u32 * codec.frame_ticks(),
                    ssrc: 1000 + i as u32,
                    payload,
                }
                .write(&mut packet);
                s.on_datagram(&packet, from, now);
                heard.clear();
                std::hint::black_box(s.tick(Some(&play), &mut heard));
            }
        })
    });
    g.finish();
}

fn media_path(c: &mut Criterion) {
    let g711: Vec<u8> = (0..FRAME_8K).map(|i| (i * 7) as u8).collect();
    tick_calls(c, "tick_200_g711_calls", Codec::Pcmu, 0, &[g711]);
    // Opus: a second of speech-like sound (a gliding tone with a buzz), encoded once, sent in turn.
    let mut enc = OpusCodec::new().unwrap();
    let mut buf = [0u8; MAX_PACKET];
    let opus: Vec<Vec<u8>> = (0..50)
        .map(|f| {
            let frame: Vec<i16> = (0..FRAME_16K)
                .map(|i| {
                    let t = (f * FRAME_16K + i) as f64 / 16000.0;
                    (7000.0 * (2.0 * std::f64::consts::PI * (200.0 + 300.0 * t) * t).sin()
                        + 1500.0 * (2.0 * std::f64::consts::PI * 120.0 * t).sin().signum())
                        as i16
                })
                .collect();
            let n = enc.encode(&frame, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect();
    tick_calls(c, "tick_200_opus_calls", Codec::Opus, 111, &opus);
}

/// sipp's built-in UAC against the in-process UDP server: `calls` setups at `rate` per second.
fn sipp_load(calls: u32, rate: u32) {
    let sipp = ["/usr/bin/sipp", "/usr/local/bin/sipp"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(sipp) = sipp else {
        eprintln!("sipp not installed: skipping the call-setup load");
        return;
    };
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sip = SipConfig {
        enabled: true,
        port,
        transports: vec![SipTransport::Udp],
        max_calls: 10000,
        ..SipConfig::default()
    };
    let media = MediaConfig {
        rtp_port_min: 30000,
        rtp_port_max: 39999,
        ..MediaConfig::default()
    };
    let server = rt.block_on(SipServer::bind(sip, media)).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = rt.spawn(server.run(
        async {
            let _ = stop_rx.await;
        },
        Duration::ZERO,
    ));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(sipp)
        .args(["-sn", "uac", "-i", "127.0.0.1", "-p", "0"])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "2000",
        ])
        .args([
            "-nostdin",
            "-timeout",
            "120s",
            "-trace_rtt",
            "-rtt_freq",
            "1",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    let _ = rt.block_on(handle);
    let text = String::from_utf8_lossy(&out.stdout);
    let successful = text
        .lines()
        .find(|l| l.trim_start().starts_with("Successful call"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut rtts: Vec<f64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_rtt.csv"))
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| l.split(';').nth(1).and_then(|v| v.trim().parse().ok()))
                .collect::<Vec<f64>>()
        })
        .collect();
    rtts.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "sipp load: {successful}/{calls} calls ok at offered {rate}/s in {:.1}s = {:.0} setups/s; setup time (INVITE -> 200) p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms ({} samples); sipp exit {}",
        elapsed.as_secs_f64(),
        successful as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.95),
        rtts.last().copied().unwrap_or(f64::NAN),
        rtts.len(),
        out.status
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    parse_print(&mut c);
    media_path(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        let calls = std::env::var("SIPP_CALLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5000);
        let rate = std::env::var("SIPP_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        sipp_load(calls, rate);
    }
}
