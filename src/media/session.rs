//! One call's RTP media: [`MediaSession`] is the sans-IO core (RTP in -> jitter buffer -> G.711
//! decode -> 16 kHz, or Opus decode straight to 16 kHz; 16 kHz -> 8 kHz -> G.711 encode, or
//! 16 kHz -> Opus encode -> RTP out, paced by 20 ms ticks) and
//! [`run`] the tokio task that drives it with a UDP socket and a [`super::MediaEdge`]'s channels.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::jitter::{JitterBuffer, Playout};
use super::opus::{MAX_PACKET, OpusCodec};
use super::resample::{Downsampler, Upsampler};
use super::rtcp::{self, ReportBlock, SenderInfo, SrtcpContext};
use super::rtp::{DtmfReceiver, RtpPacket, is_rtcp};
use super::sdp::{Codec, Direction, Negotiated};
use super::srtp::SrtpContext;
use super::{CallerSignal, Control, DtmfSource, EdgePeer, FRAME_8K, FRAME_16K, g711};

/// Largest jitter buffer depth, in 20 ms frames.
pub const MAX_JITTER_FRAMES: usize = 10;

/// Counters for one call (no audio, no digits: nothing PHI-bearing).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    pub rtp_in: u64,
    pub rtp_bad: u64,
    pub rtp_out: u64,
    pub dtmf_digits: u64,
    pub audio_dropped: u64,
    /// Digits we sent as RFC 4733 events.
    pub dtmf_sent: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// RTCP that failed SRTCP authentication or did not parse.
    pub rtcp_bad: u64,
    /// Opus packets libopus could not decode (concealed), and Opus set-up failures.
    pub codec_errors: u64,
}

/// How often we send an RTCP report (RFC 3550's 5 s minimum interval), and the first one.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);
pub const RTCP_FIRST: Duration = Duration::from_millis(2500);

/// What the RTCP receiver report says about the caller's stream (RFC 3550 A.1, A.3).
#[derive(Debug, Default, Clone, Copy)]
struct Reception {
    ssrc: Option<u32>,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Middle 32 bits of the last SR's NTP time and when it came.
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    fn on_rtp(&mut self, ssrc: u32, seq: u16) {
        if self.ssrc != Some(ssrc) {
            *self = Reception {
                ssrc: Some(ssrc),
                base_seq: seq,
                max_seq: seq,
                last_sr: self.last_sr,
                ..Reception::default()
            };
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
    }

    fn block(&mut self, jitter: u32, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let extended = self.cycles | u32::from(self.max_seq);
        let expected = extended.wrapping_sub(u32::from(self.base_seq)) + 1;
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((mid, at)) => (mid, (now.duration_since(at).as_secs_f64() * 65536.0) as u32),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: extended,
            jitter,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// NTP time (RFC 3550 4) of `wall`.
fn ntp(wall: std::time::SystemTime) -> u64 {
    let since = wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

pub struct MediaSession {
    media: Negotiated,
    remote: Option<SocketAddr>,
    jitter: JitterBuffer,
    dtmf: DtmfReceiver,
    up: Upsampler,
    down: Downsampler,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
    scratch8: Vec<i16>,
    packet: Vec<u8>,
    /// The encoded payload of the packet being built.
    payload: Vec<u8>,
    /// The Opus encoder and decoder, on Opus calls.
    opus: Option<OpusCodec>,
    /// SRTP contexts (receive, send) when SDES keys were agreed.
    srtp: Option<(SrtpContext, SrtpContext)>,
    /// SRTCP contexts (receive, send), same keys as SRTP.
    srtcp: Option<(SrtcpContext, SrtcpContext)>,
    reception: Reception,
    octets_out: u32,
    clear: Vec<u8>,
    /// Digits waiting to be sent (RFC 4733 event codes) and the one being sent.
    dtmf_queue: std::collections::VecDeque<u8>,
    dtmf_out: Option<DtmfOut>,
    pub stats: SessionStats,
}

/// A telephone-event being sent: its code, RTP timestamp (fixed for the event), ticks sent.
#[derive(Debug, Clone, Copy)]
struct DtmfOut {
    event: u8,
    timestamp: u32,
    ticks: u16,
}

/// Ticks (20 ms) of a sent digit before its end packets, and how often the end packet goes out.
const DTMF_TICKS: u16 = 5;
const DTMF_END_REPEATS: u16 = 3;
/// Silent ticks between two sent digits.
const DTMF_GAP_TICKS: u16 = 3;
const DTMF_VOLUME: u8 = 10;

fn opus_codec(media: &Negotiated, stats: &mut SessionStats) -> Option<OpusCodec> {
    if media.codec != Codec::Opus {
        return None;
    }
    match OpusCodec::new() {
        Ok(c) => Some(c),
        Err(e) => {
            // Not expected (fixed, valid parameters); the call then stays silent both ways.
            tracing::error!(error = %e, "cannot set up Opus");
            stats.codec_errors += 1;
            None
        }
    }
}

fn srtp_contexts(media: &Negotiated) -> Option<(SrtpContext, SrtpContext)> {
    media.srtp.as_ref().map(|k| {
        (
            SrtpContext::new(k.suite, &k.remote),
            SrtpContext::new(k.suite, &k.local),
        )
    })
}

fn srtcp_contexts(media: &Negotiated) -> Option<(SrtcpContext, SrtcpContext)> {
    media
        .srtp
        .as_ref()
        .map(|k| (SrtcpContext::new(&k.remote), SrtcpContext::new(&k.local)))
}

impl MediaSession {
    pub fn new(media: Negotiated, ssrc: u32) -> MediaSession {
        let remote = media
            .remote_addr
            .filter(|a| !a.is_unspecified())
            .map(|a| SocketAddr::new(a, media.remote_port));
        let mut stats = SessionStats::default();
        let opus = opus_codec(&media, &mut stats);
        let jitter = JitterBuffer::new(media.codec.clock_rate(), 20, MAX_JITTER_FRAMES);
        MediaSession {
            srtp: srtp_contexts(&media),
            srtcp: srtcp_contexts(&media),
            reception: Reception::default(),
            octets_out: 0,
            clear: Vec::with_capacity(256),
            media,
            remote,
            jitter,
            dtmf: DtmfReceiver::default(),
            up: Upsampler::default(),
            down: Downsampler::default(),
            ssrc,
            seq: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(7),
            marker: true,
            dtmf_queue: std::collections::VecDeque::new(),
            dtmf_out: None,
            scratch8: Vec::with_capacity(FRAME_8K),
            packet: Vec::with_capacity(12 + FRAME_8K),
            payload: vec![0; MAX_PACKET],
            opus,
            stats,
        }
    }

    /// Where RTP goes (the SDP address, or where the caller's RTP comes from).
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// A re-INVITE changed the media.
    pub fn update(&mut self, media: Negotiated) {
        if let Some(a) = media.remote_addr.filter(|a| !a.is_unspecified()) {
            self.remote = Some(SocketAddr::new(a, media.remote_port));
        }
        if media.direction != self.media.direction {
            self.marker = true;
        }
        if media.srtp != self.media.srtp {
            self.srtp = srtp_contexts(&media);
            self.srtcp = srtcp_contexts(&media);
        }
        if media.codec != self.media.codec {
            // A codec change (re-INVITE): fresh codec state and a jitter buffer at its clock.
            self.opus = opus_codec(&media, &mut self.stats);
            self.jitter = JitterBuffer::new(media.codec.clock_rate(), 20, MAX_JITTER_FRAMES);
            self.marker = true;
        }
        self.media = media;
    }

    /// Queues keypad digit `digit` for sending as RFC 4733 events. False when the call has no
    /// telephone-event payload type or `digit` is no keypad key.
    pub fn send_dtmf(&mut self, digit: char) -> bool {
        let Some(code) = b"0123456789*#ABCD"
            .iter()
            .position(|&b| b as char == digit.to_ascii_uppercase())
        else {
            return false;
        };
        if self.media.dtmf_pt.is_none() {
            return false;
        }
        self.dtmf_queue.push_back(code as u8);
        true
    }

    /// The telephone-event payload for this tick, if a digit is being sent (RFC 4733 2.5.1):
    /// same timestamp all along, growing duration, marker on the first packet, the end packet
    /// three times, then a short gap before the next digit.
    fn dtmf_tick(&mut self, ts: u32) -> Option<([u8; 4], bool, u32)> {
        if self.dtmf_out.is_none() {
            let event = self.dtmf_queue.pop_front()?;
            self.dtmf_out = Some(DtmfOut {
                event,
                timestamp: ts,
                ticks: 0,
            });
        }
        let out = self.dtmf_out.as_mut()?;
        out.ticks += 1;
        let (event, timestamp, ticks) = (out.event, out.timestamp, out.ticks);
        if ticks > DTMF_TICKS + DTMF_END_REPEATS {
            // Gap: audio (silence) again until the next digit may start.
            if ticks >= DTMF_TICKS + DTMF_END_REPEATS + DTMF_GAP_TICKS {
                self.dtmf_out = None;
            }
            return None;
        }
        let end = ticks > DTMF_TICKS;
        // Durations count the event's clock, which is the codec's (RFC 4733 2.1).
        let duration =
            (self.media.codec.frame_ticks() as u16).saturating_mul(ticks.min(DTMF_TICKS));
        let [d0, d1] = duration.to_be_bytes();
        let flags = if end { 0x80 } else { 0 } | DTMF_VOLUME;
        Some(([event, flags, d0, d1], ticks == 1, timestamp))
    }

    pub fn direction(&self) -> Direction {
        self.media.direction
    }

    /// One datagram from the RTP port. Returns a DTMF digit when a new event starts.
    pub fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Option<char> {
        if is_rtcp(bytes) {
            // rtcp-mux peers send RTCP to the RTP port.
            self.on_rtcp(bytes, now);
            return None;
        }
        let bytes = match self.srtp.as_mut() {
            Some((rx, _)) => {
                self.clear.clear();
                self.clear.extend_from_slice(bytes);
                match rx.unprotect(&mut self.clear) {
                    Ok(n) => &self.clear[..n],
                    Err(_) => {
                        self.stats.rtp_bad += 1;
                        return None;
                    }
                }
            }
            None => bytes,
        };
        let Ok(p) = RtpPacket::parse(bytes) else {
            self.stats.rtp_bad += 1;
            return None;
        };
        self.stats.rtp_in += 1;
        self.reception.on_rtp(p.ssrc, p.sequence);
        // Symmetric RTP: answer where the caller's media really comes from.
        self.remote = Some(from);
        if Some(p.payload_type) == self.media.dtmf_pt {
            let digit = self.dtmf.push(p.timestamp, p.payload);
            if digit.is_some() {
                self.stats.dtmf_digits += 1;
            }
            return digit;
        }
        if p.payload_type != self.media.payload_type {
            self.stats.rtp_bad += 1;
            return None;
        }
        self.jitter.push(
            p.ssrc,
            p.sequence,
            p.timestamp,
            p.payload_type,
            p.payload,
            now,
        );
        None
    }

    /// One 20 ms tick. `play` is the next 16 kHz frame for the caller (`None`: silence).
    /// Appends the caller's 16 kHz frame to `heard` (silence where nothing arrived) and returns
    /// the RTP packet to send, if we send in this direction.
    pub fn tick(&mut self, play: Option<&[i16]>, heard: &mut Vec<i16>) -> Option<&[u8]> {
        // Receive side.
        match (self.jitter.pop(), self.media.codec) {
            (Playout::Frame { payload, .. }, Codec::Pcmu | Codec::Pcma) => {
                self.scratch8.clear();
                let decode = match self.media.codec {
                    Codec::Pcma => g711::alaw_to_linear,
                    _ => g711::ulaw_to_linear,
                };
                self.scratch8
                    .extend(payload.iter().take(FRAME_8K).map(|&b| decode(b)));
                self.scratch8.resize(FRAME_8K, 0);
                self.up.process(&self.scratch8, heard);
            }
            (Playout::Frame { payload, .. }, Codec::Opus) => match self.opus.as_mut() {
                Some(opus) => {
                    if opus.decode(&payload, heard).is_err() {
                        self.stats.codec_errors += 1;
                        opus.conceal(heard);
                    }
                }
                None => heard.resize(heard.len() + FRAME_16K, 0),
            },
            (Playout::Missing, Codec::Pcmu | Codec::Pcma) => {
                self.scratch8.clear();
                self.scratch8.resize(FRAME_8K, 0);
                self.up.process(&self.scratch8, heard);
            }
            (Playout::Missing, Codec::Opus) => match self.opus.as_mut() {
                Some(opus) => opus.conceal(heard),
                None => heard.resize(heard.len() + FRAME_16K, 0),
            },
        }
        // Send side.
        let sending = matches!(
            self.media.direction,
            Direction::SendRecv | Direction::SendOnly
        );
        let ts = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(self.media.codec.frame_ticks());
        self.remote?;
        if !sending {
            self.marker = true;
            return None;
        }
        if let Some(pt) = self.media.dtmf_pt
            && let Some((event, marker, ev_ts)) = self.dtmf_tick(ts)
        {
            let packet = RtpPacket {
                marker,
                payload_type: pt,
                sequence: self.seq,
                timestamp: ev_ts,
                ssrc: self.ssrc,
                payload: &event,
            };
            packet.write(&mut self.packet);
            if let Some((_, tx)) = self.srtp.as_mut()
                && tx.protect(&mut self.packet).is_err()
            {
                return None;
            }
            self.seq = self.seq.wrapping_add(1);
            self.stats.rtp_out += 1;
            self.stats.dtmf_sent += u64::from(marker);
            return Some(&self.packet);
        }
        let silence = [0i16; FRAME_16K];
        let frame = play.unwrap_or(&silence);
        let len = match self.media.codec {
            Codec::Pcmu | Codec::Pcma => {
                self.scratch8.clear();
                self.down.process(frame, &mut self.scratch8);
                self.scratch8.resize(FRAME_8K, 0);
                let encode = match self.media.codec {
                    Codec::Pcma => g711::linear_to_alaw,
                    _ => g711::linear_to_ulaw,
                };
                for (o, &s) in self.payload.iter_mut().zip(self.scratch8.iter()) {
                    *o = encode(s);
                }
                FRAME_8K
            }
            Codec::Opus => {
                let encoded = match self.opus.as_mut() {
                    Some(opus) if frame.len() == FRAME_16K => opus.encode(frame, &mut self.payload),
                    Some(opus) => {
                        let mut padded = [0i16; FRAME_16K];
                        let n = frame.len().min(FRAME_16K);
                        padded[..n].copy_from_slice(&frame[..n]);
                        opus.encode(&padded, &mut self.payload)
                    }
                    None => return None,
                };
                match encoded {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(error = %e, "Opus encode failed");
                        self.stats.codec_errors += 1;
                        return None;
                    }
                }
            }
        };
        let packet = RtpPacket {
            marker: self.marker,
            payload_type: self.media.payload_type,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
            payload: &self.payload[..len],
        };
        packet.write(&mut self.packet);
        if let Some((_, tx)) = self.srtp.as_mut()
            && tx.protect(&mut self.packet).is_err()
        {
            return None;
        }
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.stats.rtp_out += 1;
        self.octets_out = self.octets_out.wrapping_add(len as u32);
        Some(&self.packet)
    }

    /// Where RTCP goes: the caller's RTP address with rtcp-mux, else its RTP port + 1 (RFC 3550
    /// 11).
    pub fn rtcp_remote(&self) -> Option<SocketAddr> {
        if self.media.rtcp_mux {
            return self.remote;
        }
        self.remote
            .map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1)))
    }

    /// RTCP shares the RTP port (RFC 5761).
    pub fn rtcp_mux(&self) -> bool {
        self.media.rtcp_mux
    }

    /// One incoming RTCP datagram (SRTCP when the call is SRTP): remembers the caller's last SR
    /// for our report blocks. Never touches the audio path.
    pub fn on_rtcp(&mut self, bytes: &[u8], now: Instant) {
        let plain = match self.srtcp.as_mut() {
            Some((rx, _)) => {
                self.clear.clear();
                self.clear.extend_from_slice(bytes);
                match rx.unprotect(&mut self.clear) {
                    Ok(n) => &self.clear[..n],
                    Err(e) => {
                        tracing::debug!(error = %e, len = bytes.len(), "RTCP dropped");
                        self.stats.rtcp_bad += 1;
                        return;
                    }
                }
            }
            None => bytes,
        };
        let packets = match rtcp::parse(plain) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, len = bytes.len(), "RTCP dropped");
                self.stats.rtcp_bad += 1;
                return;
            }
        };
        self.stats.rtcp_in += 1;
        for p in packets {
            if let rtcp::Packet::Report(r) = p
                && let Some(s) = r.sender
            {
                self.reception.last_sr = Some(((s.ntp >> 16) as u32, now));
            }
        }
    }

    /// The compound report to send now: SR once we have sent RTP, else RR; a report block about
    /// the caller's stream once it has sent RTP. SRTCP-protected on SRTP calls.
    pub fn rtcp_report(&mut self, now: Instant, wall: std::time::SystemTime) -> Option<Vec<u8>> {
        let sender = (self.stats.rtp_out > 0).then(|| SenderInfo {
            ntp: ntp(wall),
            rtp_ts: self.timestamp,
            packets: self.stats.rtp_out as u32,
            octets: self.octets_out,
        });
        let jitter = self.jitter.jitter();
        let report = rtcp::Report {
            ssrc: self.ssrc,
            sender,
            blocks: self.reception.block(jitter, now).into_iter().collect(),
        };
        let mut bytes = rtcp::build(&report, &format!("carevoice-{:08x}", self.ssrc));
        if let Some((_, tx)) = self.srtcp.as_mut() {
            tx.protect(&mut bytes).ok()?;
        }
        self.stats.rtcp_out += 1;
        Some(bytes)
    }
}

/// Updates from the signalling side to a running session.
#[derive(Debug, Clone)]
pub enum SessionUpdate {
    Media(Negotiated),
    /// A digit that came by SIP INFO, passed on to the edge.
    InfoDtmf(char),
    /// The call ended in signalling: stop.
    End,
}

/// Drives one call's media until the call ends. `hangup` is told when the pipeline asks to hang up.
pub async fn run(
    socket: UdpSocket,
    media: Negotiated,
    mut peer: EdgePeer,
    mut updates: mpsc::Receiver<SessionUpdate>,
    hangup: impl Fn() + Send + 'static,
) -> SessionStats {
    let ssrc = u32::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .unwrap_or([1, 2, 3, 4]),
    );
    let mut session = MediaSession::new(media, ssrc);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = vec![0u8; 2048];
    let mut pending: Vec<i16> = Vec::new();
    let mut heard = Vec::with_capacity(FRAME_16K);
    let mut play_open = true;
    // RTCP on the RTP port + 1 (ports are even, so it is ours to take); none if taken.
    let rtcp_socket = match socket.local_addr() {
        Ok(a) => UdpSocket::bind(SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
            .await
            .ok(),
        Err(_) => None,
    };
    let mut rtcp_buf = vec![0u8; 2048];
    let mut rtcp_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + RTCP_FIRST, RTCP_INTERVAL);
    loop {
        tokio::select! {
            r = async {
                match &rtcp_socket {
                    Some(s) => s.recv_from(&mut rtcp_buf).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((n, _)) = r {
                    session.on_rtcp(&rtcp_buf[..n], Instant::now());
                }
            }
            _ = rtcp_timer.tick() => {
                let out = if session.rtcp_mux() { Some(&socket) } else { rtcp_socket.as_ref() };
                if let (Some(s), Some(to)) = (out, session.rtcp_remote())
                    && let Some(report) = session.rtcp_report(Instant::now(), std::time::SystemTime::now())
                {
                    let _ = s.send_to(&report, to).await;
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if let Some(digit) = session.on_datagram(&buf[..n], from, Instant::now()) {
                    let _ = peer.signals.send(CallerSignal::Dtmf { digit, source: DtmfSource::Rfc4733 }).await;
                }
            }
            _ = ticker.tick() => {
                while play_open && pending.len() < FRAME_16K {
                    match peer.play.try_recv() {
                        Ok(frame) => pending.extend_from_slice(&frame),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => play_open = false,
                    }
                }
                let frame: Option<Vec<i16>> = if pending.is_empty() {
                    None
                } else {
                    let n = pending.len().min(FRAME_16K);
                    let mut f: Vec<i16> = pending.drain(..n).collect();
                    f.resize(FRAME_16K, 0);
                    Some(f)
                };
                heard.clear();
                let to = session.remote();
                if let (Some(packet), Some(to)) = (session.tick(frame.as_deref(), &mut heard), to) {
                    let _ = socket.send_to(packet, to).await;
                }
                if peer.audio.try_send(heard.clone()).is_err() {
                    session.stats.audio_dropped += 1;
                }
            }
            ctl = peer.control.recv() => match ctl {
                Some(Control::Flush) => {
                    pending.clear();
                    while peer.play.try_recv().is_ok() {}
                }
                Some(Control::Hangup) => hangup(),
                Some(Control::Dtmf(digit)) => {
                    session.send_dtmf(digit);
                }
                None => {}
            },
            u = updates.recv() => match u {
                Some(SessionUpdate::Media(m)) => session.update(m),
                Some(SessionUpdate::InfoDtmf(digit)) => {
                    let _ = peer.signals.send(CallerSignal::Dtmf { digit, source: DtmfSource::SipInfo }).await;
                }
                Some(SessionUpdate::End) | None => break,
            },
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        peer.signals.send(CallerSignal::Ended),
    )
    .await;
    session.stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::Codec;

    fn negotiated(direction: Direction) -> Negotiated {
        Negotiated {
            proto: "RTP/AVP".into(),
            srtp: None,
            codec: Codec::Pcmu,
            payload_type: 0,
            dtmf_pt: Some(101),
            remote_addr: Some("127.0.0.1".parse().unwrap()),
            remote_port: 4000,
            direction,
            ptime: 20,
            rtcp_mux: false,
        }
    }

    #[test]
    fn loopback_audio_timestamps_marker_and_dtmf() {
        let mut a = MediaSession::new(negotiated(Direction::SendRecv), 1);
        let mut b = MediaSession::new(negotiated(Direction::SendRecv), 2);
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let t0 = Instant::now();
        let tone: Vec<i16> = (0..FRAME_16K)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 16000.0).sin()) as i16
            })
            .collect();
        let mut heard_b = Vec::new();
        let mut stamps = Vec::new();
        for i in 0..20u64 {
            let mut heard_a = Vec::new();
            let packet = a.tick(Some(&tone), &mut heard_a).unwrap().to_vec();
            let p = RtpPacket::parse(&packet).unwrap();
            stamps.push((p.marker, p.timestamp, p.sequence));
            b.on_datagram(&packet, from, t0 + Duration::from_millis(20 * i));
            let mut h = Vec::new();
            b.tick(None, &mut h);
            assert_eq!(h.len(), FRAME_16K);
            heard_b.extend(h);
        }
        assert!(stamps[0].0 && stamps[1..].iter().all(|s| !s.0));
        for w in stamps.windows(2) {
            assert_eq!(w[1].1.wrapping_sub(w[0].1), 160);
            assert_eq!(w[1].2.wrapping_sub(w[0].2), 1);
        }
        let energy: f64 = heard_b[FRAME_16K * 5..]
            .iter()
            .map(|&s| (s as f64).powi(2))
            .sum::<f64>()
            / (heard_b.len() - FRAME_16K * 5) as f64;
        assert!(energy.sqrt() > 3000.0, "rms {}", energy.sqrt());
        // A telephone-event packet yields its digit once.
        let ev = RtpPacket {
            marker: true,
            payload_type: 101,
            sequence: 9,
            timestamp: 555,
            ssrc: 1,
            payload: &[7, 10, 0, 160],
        };
        let mut buf = Vec::new();
        ev.write(&mut buf);
        assert_eq!(b.on_datagram(&buf, from, t0), Some('7'));
        assert_eq!(b.on_datagram(&buf, from, t0), None);
        assert_eq!(b.stats.dtmf_digits, 1);
        assert_eq!(b.on_datagram(b"junk", from, t0), None);
        assert_eq!(b.stats.rtp_bad, 1);
    }

    /// Two Opus sessions: 48 kHz RTP timestamps, the peer's dynamic payload type, the tone
    /// comes through at 16 kHz, and a lost packet is concealed (not silence).
    #[test]
    fn opus_loopback_with_loss() {
        let opus = |direction| Negotiated {
            codec: Codec::Opus,
            payload_type: 111,
            dtmf_pt: None,
            ..negotiated(direction)
        };
        let mut a = MediaSession::new(opus(Direction::SendRecv), 1);
        let mut b = MediaSession::new(opus(Direction::SendRecv), 2);
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let t0 = Instant::now();
        let tone: Vec<i16> = (0..FRAME_16K)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 16000.0).sin()) as i16
            })
            .collect();
        let mut heard_b = Vec::new();
        let mut stamps = Vec::new();
        for i in 0..30u64 {
            let mut heard_a = Vec::new();
            let packet = a.tick(Some(&tone), &mut heard_a).unwrap().to_vec();
            assert_eq!(heard_a.len(), FRAME_16K);
            let p = RtpPacket::parse(&packet).unwrap();
            assert_eq!(p.payload_type, 111);
            assert!(p.payload.len() < 200, "{} bytes", p.payload.len());
            stamps.push((p.marker, p.timestamp));
            if i != 20 {
                b.on_datagram(&packet, from, t0 + Duration::from_millis(20 * i));
            }
            let mut h = Vec::new();
            b.tick(None, &mut h);
            assert_eq!(h.len(), FRAME_16K);
            heard_b.push(h);
        }
        assert!(stamps[0].0 && stamps[1..].iter().all(|s| !s.0));
        for w in stamps.windows(2) {
            assert_eq!(w[1].1.wrapping_sub(w[0].1), 960);
        }
        let rms = |f: &[i16]| {
            (f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / f.len() as f64).sqrt()
        };
        let loud = heard_b.iter().filter(|f| rms(f) > 3000.0).count();
        assert!(loud >= 20, "{loud} loud frames of 30");
        assert_eq!(
            (b.stats.rtp_in, b.stats.rtp_bad, b.stats.codec_errors),
            (29, 0, 0)
        );
        // Garbage with the Opus payload type is counted and concealed, never a panic.
        let junk = RtpPacket {
            marker: false,
            payload_type: 111,
            sequence: 999,
            timestamp: 0,
            ssrc: 1,
            payload: &[0x03, 0x00],
        };
        let mut buf = Vec::new();
        junk.write(&mut buf);
        let mut c = MediaSession::new(opus(Direction::SendRecv), 3);
        c.on_datagram(&buf, from, t0);
        let mut h = Vec::new();
        for _ in 0..5 {
            c.tick(None, &mut h);
        }
        assert_eq!(h.len(), FRAME_16K * 5);
        assert_eq!(c.stats.codec_errors, 1);
        // A re-INVITE to PCMU switches the encoder: 160-byte payloads, 8 kHz timestamps.
        a.update(negotiated(Direction::SendRecv));
        let mut h = Vec::new();
        let p1 = a.tick(None, &mut h).unwrap().to_vec();
        let p2 = a.tick(None, &mut h).unwrap().to_vec();
        let (p1, p2) = (
            RtpPacket::parse(&p1).unwrap(),
            RtpPacket::parse(&p2).unwrap(),
        );
        assert_eq!((p1.payload_type, p1.payload.len()), (0, 160));
        assert!(p1.marker);
        assert_eq!(p2.timestamp.wrapping_sub(p1.timestamp), 160);
    }

    #[test]
    fn on_hold_we_do_not_send_and_resume_with_marker() {
        let mut s = MediaSession::new(negotiated(Direction::SendRecv), 3);
        let mut h = Vec::new();
        assert!(s.tick(None, &mut h).is_some());
        s.update(negotiated(Direction::RecvOnly));
        assert!(s.tick(None, &mut h).is_none());
        s.update(negotiated(Direction::SendRecv));
        let p = s.tick(None, &mut h).unwrap().to_vec();
        let p = RtpPacket::parse(&p).unwrap();
        assert!(p.marker);
    }

    /// `n` packets of a loud PCMU signal from `caller` to `to`, paced at 20 ms.
    async fn send_loud_pcmu(caller: &UdpSocket, to: SocketAddr, n: u16, buf: &mut Vec<u8>) {
        for i in 0..n {
            RtpPacket {
                marker: i == 0,
                payload_type: 0,
                sequence: i,
                timestamp: i as u32 * 160,
                ssrc: 5,
                payload: &[0x80; 160],
            }
            .write(buf);
            caller.send_to(buf, to).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn digits_and_the_end_are_never_dropped_when_the_audio_lane_is_full() {
        use crate::media::{CallerSignal, edge};
        let ours = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut media = negotiated(Direction::SendRecv);
        media.remote_port = caller.local_addr().unwrap().port();
        let ours_addr = ours.local_addr().unwrap();
        // Two frames of room, and nobody reads the audio: the lane is saturated at once.
        let (mut edge, peer) = edge(2, 5);
        let (updates_tx, updates_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(ours, media, peer, updates_rx, || {}));
        let mut buf = Vec::new();
        send_loud_pcmu(&caller, ours_addr, 25, &mut buf).await;
        for (n, digit) in [(9u8, '9'), (1, '1'), (5, '5')] {
            for end in [false, true] {
                RtpPacket {
                    marker: !end,
                    payload_type: 101,
                    sequence: 100 + n as u16 * 2 + end as u16,
                    timestamp: 4000 + n as u32 * 1000,
                    ssrc: 5,
                    payload: &[n, if end { 0x8a } else { 10 }, 3, 32],
                }
                .write(&mut buf);
                caller.send_to(&buf, ours_addr).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            let got = tokio::time::timeout(Duration::from_secs(1), edge.signals.recv()).await;
            assert!(
                matches!(got, Ok(Some(CallerSignal::Dtmf { digit: d, .. })) if d == digit),
                "{got:?}"
            );
        }
        updates_tx.send(SessionUpdate::End).await.unwrap();
        let stats = task.await.unwrap();
        assert!(
            stats.audio_dropped > 10,
            "{} frames dropped",
            stats.audio_dropped
        );
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), edge.signals.recv()).await,
            Ok(Some(CallerSignal::Ended))
        );
    }

    #[tokio::test]
    async fn media_edge_over_loopback_udp() {
        use crate::media::{CallerEvent, edge};
        let ours = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut media = negotiated(Direction::SendRecv);
        media.remote_port = caller.local_addr().unwrap().port();
        let ours_addr = ours.local_addr().unwrap();
        let (mut edge, peer) = edge(50, 5);
        let (updates_tx, updates_rx) = mpsc::channel(4);
        let hung_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = hung_up.clone();
        let task = tokio::spawn(run(ours, media, peer, updates_rx, move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        }));
        // The caller sends 10 packets of a loud signal and a DTMF event.
        let mut buf = Vec::new();
        send_loud_pcmu(&caller, ours_addr, 10, &mut buf).await;
        RtpPacket {
            marker: true,
            payload_type: 101,
            sequence: 10,
            timestamp: 2000,
            ssrc: 5,
            payload: &[9, 10, 0, 160],
        }
        .write(&mut buf);
        caller.send_to(&buf, ours_addr).await.unwrap();
        let mut loud = 0;
        let mut digit = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while (loud < 5 || digit.is_none()) && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), edge.recv()).await {
                Ok(Some(CallerEvent::Audio(f))) => {
                    assert_eq!(f.len(), FRAME_16K);
                    if f.iter().any(|s| s.unsigned_abs() > 10000) {
                        loud += 1;
                    }
                }
                Ok(Some(CallerEvent::Dtmf { digit: d, source })) => {
                    assert_eq!(source, DtmfSource::Rfc4733);
                    digit = Some(d);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(loud >= 5, "{loud} loud frames");
        assert_eq!(digit, Some('9'));
        // We play a loud frame: the caller gets it as PCMU at 20 ms pacing, marker first.
        edge.play.send(vec![12000i16; FRAME_16K * 3]).await.unwrap();
        let mut rbuf = [0u8; 2048];
        let mut got_loud = false;
        for _ in 0..20 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(1), caller.recv_from(&mut rbuf))
                .await
                .unwrap()
                .unwrap();
            let p = RtpPacket::parse(&rbuf[..n]).unwrap();
            if p.payload
                .iter()
                .any(|&b| g711::ulaw_to_linear(b).unsigned_abs() > 5000)
            {
                got_loud = true;
                break;
            }
        }
        assert!(got_loud);
        // Barge-in: a long queue is dropped at once.
        for _ in 0..5 {
            edge.play.send(vec![12000i16; FRAME_16K]).await.unwrap();
        }
        edge.flush().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(5), caller.recv_from(&mut rbuf)).await
        {
        }
        for _ in 0..5 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(1), caller.recv_from(&mut rbuf))
                .await
                .unwrap()
                .unwrap();
            let p = RtpPacket::parse(&rbuf[..n]).unwrap();
            assert!(
                p.payload
                    .iter()
                    .all(|&b| g711::ulaw_to_linear(b).unsigned_abs() < 200),
                "audio after flush"
            );
        }
        edge.hangup().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(hung_up.load(std::sync::atomic::Ordering::SeqCst));
        updates_tx.send(SessionUpdate::End).await.unwrap();
        let stats = task.await.unwrap();
        assert_eq!(stats.dtmf_digits, 1);
        loop {
            match edge.recv().await {
                Some(CallerEvent::Ended) => break,
                Some(_) => continue,
                None => panic!("no Ended event"),
            }
        }
    }

    #[test]
    fn sent_digits_follow_rfc4733_and_decode_on_the_other_side() {
        let mut a = MediaSession::new(negotiated(Direction::SendRecv), 1);
        let mut b = MediaSession::new(negotiated(Direction::SendRecv), 2);
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let t0 = Instant::now();
        assert!(!a.send_dtmf('x'));
        assert!(a.send_dtmf('5') && a.send_dtmf('#'));
        let mut got = Vec::new();
        let mut packets = Vec::new();
        for _ in 0..30 {
            let mut heard = Vec::new();
            let packet = a.tick(None, &mut heard).unwrap().to_vec();
            let p = RtpPacket::parse(&packet).unwrap();
            packets.push((
                p.payload_type,
                p.marker,
                p.timestamp,
                p.sequence,
                p.payload.to_vec(),
            ));
            if let Some(d) = b.on_datagram(&packet, from, t0) {
                got.push(d);
            }
        }
        assert_eq!(got, vec!['5', '#']);
        assert_eq!(a.stats.dtmf_sent, 2);
        // First digit: 5 growing packets then 3 end packets, one timestamp, marker first only.
        let first: Vec<_> = packets[..8].iter().collect();
        assert!(first.iter().all(|p| p.0 == 101 && p.2 == packets[0].2));
        assert!(first[0].1 && first[1..].iter().all(|p| !p.1));
        let durations: Vec<u16> = first
            .iter()
            .map(|p| u16::from_be_bytes([p.4[2], p.4[3]]))
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800, 800]);
        assert!(first[..5].iter().all(|p| p.4[1] & 0x80 == 0));
        assert!(first[5..].iter().all(|p| p.4[1] & 0x80 != 0 && p.4[0] == 5));
        // Sequence numbers keep counting; audio (PT 0) fills the gap before '#'.
        for w in packets.windows(2) {
            assert_eq!(w[1].3.wrapping_sub(w[0].3), 1);
        }
        assert_eq!(packets[8].0, 0);
        let second = packets
            .iter()
            .position(|p| p.0 == 101 && p.4[0] == 11)
            .unwrap();
        assert!(second > 8 && packets[second].1);
        assert_eq!(
            packets[second].2.wrapping_sub(packets[0].2),
            160 * second as u32
        );
        // Without telephone-event nothing is queued.
        let mut plain = negotiated(Direction::SendRecv);
        plain.dtmf_pt = None;
        assert!(!MediaSession::new(plain, 3).send_dtmf('1'));
    }

    /// An SRTP call's reports go out as SRTCP the other side authenticates and decrypts; they
    /// count what was sent and received, and the caller's SR lands in our next report block.
    #[test]
    fn rtcp_reports_between_two_srtp_sessions() {
        use crate::media::sdp::SrtpKeys;
        use crate::media::srtp::{MasterKey, Suite};
        let (ka, kb) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
        let keys = |remote: &MasterKey, local: &MasterKey| SrtpKeys {
            tag: 1,
            suite: Suite::AesCm128HmacSha1_80,
            remote: remote.clone(),
            local: local.clone(),
        };
        let mut ma = negotiated(Direction::SendRecv);
        ma.srtp = Some(keys(&kb, &ka));
        let mut mb = negotiated(Direction::SendRecv);
        mb.srtp = Some(keys(&ka, &kb));
        let mut a = MediaSession::new(ma, 0xaaaa);
        let mut b = MediaSession::new(mb, 0xbbbb);
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        // Before any RTP: an RR without report blocks.
        let rr = a.rtcp_report(now, wall).unwrap();
        assert_ne!(rr[8..12], [0, 0, 0, 0], "SRTCP left the body in clear");
        b.on_rtcp(&rr, now);
        assert_eq!((b.stats.rtcp_in, b.stats.rtcp_bad), (1, 0));
        let mut heard = Vec::new();
        // b sends 10 packets to a (number 4 lost on the way).
        for i in 0..10 {
            let p = b.tick(None, &mut heard).unwrap().to_vec();
            if i != 4 {
                a.on_datagram(&p, from, now);
            }
        }
        let sr_b = b.rtcp_report(now, wall).unwrap();
        a.on_rtcp(&sr_b, now);
        assert_eq!((a.stats.rtcp_in, a.stats.rtcp_bad), (1, 0));
        // a's next report: SR once a sent, with a block about b's stream.
        a.tick(None, &mut heard).unwrap();
        let later = now + Duration::from_secs(1);
        let mut report = a.rtcp_report(later, wall).unwrap();
        let mut rx = SrtcpContext::new(&ka);
        let n = rx.unprotect(&mut report).unwrap();
        let packets = rtcp::parse(&report[..n]).unwrap();
        let rtcp::Packet::Report(r) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(r.ssrc, 0xaaaa);
        let s = r.sender.unwrap();
        assert_eq!((s.packets, s.octets), (1, 160));
        assert_eq!(r.blocks.len(), 1);
        let blk = r.blocks[0];
        assert_eq!(blk.ssrc, 0xbbbb);
        assert_eq!(blk.cumulative_lost, 1);
        assert_eq!(blk.fraction_lost, 25); // 1 of 10, in 1/256
        assert_eq!(blk.last_sr, {
            let rtcp::Packet::Report(rb) = &{
                let mut c = sr_b.clone();
                let mut rx = SrtcpContext::new(&kb);
                let n = rx.unprotect(&mut c).unwrap();
                rtcp::parse(&c[..n]).unwrap()
            }[0] else {
                panic!()
            };
            (rb.sender.unwrap().ntp >> 16) as u32
        });
        assert!(
            (65000..66100).contains(&blk.delay_since_last_sr),
            "{}",
            blk.delay_since_last_sr
        );
        // Tampered SRTCP is counted as bad and changes nothing.
        let mut bad = a.rtcp_report(later, wall).unwrap();
        bad[10] ^= 1;
        b.on_rtcp(&bad, later);
        assert_eq!((b.stats.rtcp_in, b.stats.rtcp_bad), (1, 1));
    }

    /// The media task sends RTCP to the caller's RTP port + 1 from our RTP port + 1, and counts
    /// the caller's RTCP arriving there.
    #[tokio::test]
    async fn media_task_sends_rtcp_on_the_next_port() {
        use crate::media::edge;
        // Two even/odd pairs: ours and the caller's.
        async fn pair() -> (UdpSocket, UdpSocket) {
            loop {
                let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = probe.local_addr().unwrap().port() & !1;
                drop(probe);
                if let (Ok(a), Ok(b)) = (
                    UdpSocket::bind(("127.0.0.1", port)).await,
                    UdpSocket::bind(("127.0.0.1", port + 1)).await,
                ) {
                    return (a, b);
                }
            }
        }
        let (ours, ours_rtcp) = pair().await;
        let ours_addr = ours.local_addr().unwrap();
        drop(ours_rtcp); // the task binds it
        let (caller, caller_rtcp) = pair().await;
        let mut media = negotiated(Direction::SendRecv);
        media.remote_port = caller.local_addr().unwrap().port();
        let (_edge, peer) = edge(50, 5);
        let (updates_tx, updates_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(ours, media, peer, updates_rx, || {}));
        let mut buf = Vec::new();
        for i in 0..20u16 {
            RtpPacket {
                marker: i == 0,
                payload_type: 0,
                sequence: 100 + i,
                timestamp: i as u32 * 160,
                ssrc: 77,
                payload: &[0xff; 160],
            }
            .write(&mut buf);
            caller.send_to(&buf, ours_addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Our RTP's SSRC, from what reaches the caller.
        let mut rbuf = [0u8; 2048];
        let (n, _) = caller.recv_from(&mut rbuf).await.unwrap();
        let our_ssrc = RtpPacket::parse(&rbuf[..n]).unwrap().ssrc;
        // The caller's SR to our RTP port + 1.
        let sr = rtcp::build(
            &rtcp::Report {
                ssrc: 77,
                sender: Some(SenderInfo {
                    ntp: ntp(std::time::SystemTime::now()),
                    rtp_ts: 3200,
                    packets: 20,
                    octets: 3200,
                }),
                blocks: vec![],
            },
            "caller",
        );
        let to = SocketAddr::new(ours_addr.ip(), ours_addr.port() + 1);
        caller_rtcp.send_to(&sr, to).await.unwrap();
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(6), caller_rtcp.recv_from(&mut rbuf))
                .await
                .expect("no RTCP within 6 s")
                .unwrap();
        assert_eq!(from, to);
        let packets = rtcp::parse(&rbuf[..n]).unwrap();
        let rtcp::Packet::Report(r) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(r.ssrc, our_ssrc);
        assert!(r.sender.unwrap().packets > 0);
        assert_eq!(r.blocks[0].ssrc, 77);
        assert_eq!(r.blocks[0].highest_seq, 119);
        assert_eq!(r.blocks[0].cumulative_lost, 0);
        assert_ne!(r.blocks[0].last_sr, 0, "our report ignores the caller's SR");
        assert!(matches!(&packets[1], rtcp::Packet::Sdes(c) if c[0].0 == our_ssrc));
        updates_tx.send(SessionUpdate::End).await.unwrap();
        let stats = task.await.unwrap();
        assert_eq!((stats.rtcp_in, stats.rtcp_bad), (1, 0));
        assert!(stats.rtcp_out >= 1);
    }

    /// With rtcp-mux, RTCP goes to the RTP address and RTCP arriving on the RTP port is taken
    /// as RTCP (not counted as bad RTP, not played).
    #[test]
    fn rtcp_mux_uses_the_rtp_port() {
        let mut m = negotiated(Direction::SendRecv);
        m.rtcp_mux = true;
        let mut a = MediaSession::new(m, 1);
        assert_eq!(a.rtcp_remote(), Some("127.0.0.1:4000".parse().unwrap()));
        let b = MediaSession::new(negotiated(Direction::SendRecv), 2);
        assert_eq!(b.rtcp_remote(), Some("127.0.0.1:4001".parse().unwrap()));
        let rr = rtcp::build(
            &rtcp::Report {
                ssrc: 9,
                sender: None,
                blocks: vec![],
            },
            "peer",
        );
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(a.on_datagram(&rr, from, Instant::now()), None);
        assert_eq!(
            (a.stats.rtcp_in, a.stats.rtp_in, a.stats.rtp_bad),
            (1, 0, 0)
        );
    }
}
