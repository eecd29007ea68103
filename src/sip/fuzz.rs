//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the seed-corpus test
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never panic, and checks an invariant
//! where there is one.

use std::time::{Duration, Instant};

use super::message::{self, Framing};
use crate::media::jitter::JitterBuffer;
use crate::media::rtp::{RtpPacket, TelephoneEvent, parse_rtcp};
use crate::media::sdp::{self, Sdp};

/// SIP parser: whatever parses prints to bytes that parse to the same message.
pub fn sip_message(data: &[u8]) {
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok((msg, used)) = message::parse(data, framing) {
            assert!(used <= data.len());
            let printed = msg.to_bytes();
            let (again, _) = message::parse(&printed, Framing::Stream)
                .unwrap_or_else(|e| panic!("printed message does not parse: {e}"));
            assert_eq!(again.start, msg.start);
            assert_eq!(again.body, msg.body);
            let _ = msg.check_request();
            let _ = (msg.top_via(), msg.from(), msg.to(), msg.cseq());
        }
    }
    let _ = message::parse_head_only(data);
}

/// SDP parser and offer/answer.
pub fn sdp(data: &[u8]) {
    if let Ok(offer) = Sdp::parse(data)
        && let Some(n) = sdp::negotiate(&offer)
    {
        let answer = sdp::answer(&n, std::net::SocketAddr::from(([127, 0, 0, 1], 4000)), 1, 1);
        assert!(
            Sdp::parse(answer.as_bytes()).is_ok(),
            "our answer must parse"
        );
    }
}

/// RTP, RTCP and telephone-event parsers, and the Opus decoder on the payload.
pub fn rtp(data: &[u8]) {
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = Vec::new();
        p.write(&mut out);
        let again = RtpPacket::parse(&out).unwrap_or_else(|e| panic!("written packet: {e}"));
        assert_eq!(again.payload, p.payload);
        let _ = TelephoneEvent::parse(p.payload);
        opus_payload(p.payload);
    }
    let _ = parse_rtcp(data);
    rtcp(data);
}

/// An RTP payload taken as Opus: an error or exactly one 20 ms frame, never a panic.
fn opus_payload(payload: &[u8]) {
    use crate::media::{FRAME_16K, opus::OpusCodec};
    thread_local! {
        static CODEC: std::cell::RefCell<Option<OpusCodec>> =
            std::cell::RefCell::new(OpusCodec::new().ok());
    }
    CODEC.with(|c| {
        if let Some(codec) = c.borrow_mut().as_mut() {
            let mut out = Vec::new();
            match codec.decode(payload, &mut out) {
                Ok(()) => assert_eq!(out.len(), FRAME_16K),
                Err(_) => assert!(out.is_empty()),
            }
        }
    });
}

/// RTCP compound parsing (reports rebuild to the same report) and SRTCP unprotect on hostile bytes.
fn rtcp(data: &[u8]) {
    use crate::media::rtcp::{self, Packet, SrtcpContext};
    if let Ok(packets) = rtcp::parse(data) {
        for p in packets {
            if let Packet::Report(r) = p
                && r.blocks.len() <= 31
            {
                let again = rtcp::parse(&rtcp::build(&r, "fuzz"))
                    .unwrap_or_else(|e| panic!("built report: {e}"));
                assert_eq!(again[0], Packet::Report(r));
            }
        }
    }
    let key = crate::media::srtp::MasterKey::from_key_params(
        "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
    );
    if let Ok(key) = key {
        let mut ctx = SrtcpContext::new(&key);
        let mut buf = data.to_vec();
        let _ = ctx.unprotect(&mut buf);
    }
}

/// Jitter buffer driven by a byte script: each 8-byte record is one packet
/// (ssrc byte, seq u16, ts u16 scaled, arrival step, pops).
pub fn jitter(data: &[u8]) {
    let mut jb = JitterBuffer::new(8000, 20, 10);
    let t0 = Instant::now();
    let mut now = t0;
    for rec in data.chunks_exact(8) {
        let ssrc = rec[0] as u32 % 3;
        let seq = u16::from_be_bytes([rec[1], rec[2]]);
        let ts = u16::from_be_bytes([rec[3], rec[4]]) as u32 * 160;
        now += Duration::from_millis(rec[5] as u64);
        jb.push(ssrc, seq, ts, 0, &rec[6..], now);
        for _ in 0..rec[7] % 4 {
            let _ = jb.pop();
        }
        assert!(jb.len() <= crate::media::jitter::MAX_QUEUED);
    }
    let s = jb.stats;
    // Every frame played came from a distinct packet received.
    assert!(s.played + s.late + s.duplicate <= s.received);
}
