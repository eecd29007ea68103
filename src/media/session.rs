//! One call's RTP media: [`MediaSession`] is the sans-IO core (RTP in -> jitter buffer -> G.711
//! decode -> 16 kHz; 16 kHz -> 8 kHz -> G.711 encode -> RTP out, paced by 20 ms ticks) and
//! [`run`] the tokio task that drives it with a UDP socket and a [`super::MediaEdge`]'s channels.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::jitter::{JitterBuffer, Playout};
use super::resample::{Downsampler, Upsampler};
use super::rtp::{DtmfReceiver, RtpPacket, is_rtcp};
use super::sdp::{Codec, Direction, Negotiated};
use super::srtp::SrtpContext;
use super::{CallerEvent, Control, DtmfSource, EdgePeer, FRAME_8K, FRAME_16K, g711};

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
    /// SRTP contexts (receive, send) when SDES keys were agreed.
    srtp: Option<(SrtpContext, SrtpContext)>,
    clear: Vec<u8>,
    pub stats: SessionStats,
}

fn srtp_contexts(media: &Negotiated) -> Option<(SrtpContext, SrtpContext)> {
    media.srtp.as_ref().map(|k| {
        (
            SrtpContext::new(k.suite, &k.remote),
            SrtpContext::new(k.suite, &k.local),
        )
    })
}

impl MediaSession {
    pub fn new(media: Negotiated, ssrc: u32) -> MediaSession {
        let remote = media
            .remote_addr
            .filter(|a| !a.is_unspecified())
            .map(|a| SocketAddr::new(a, media.remote_port));
        MediaSession {
            srtp: srtp_contexts(&media),
            clear: Vec::with_capacity(256),
            media,
            remote,
            jitter: JitterBuffer::new(8000, 20, MAX_JITTER_FRAMES),
            dtmf: DtmfReceiver::default(),
            up: Upsampler::default(),
            down: Downsampler::default(),
            ssrc,
            seq: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(7),
            marker: true,
            scratch8: Vec::with_capacity(FRAME_8K),
            packet: Vec::with_capacity(12 + FRAME_8K),
            stats: SessionStats::default(),
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
        }
        self.media = media;
    }

    pub fn direction(&self) -> Direction {
        self.media.direction
    }

    /// One datagram from the RTP port. Returns a DTMF digit when a new event starts.
    pub fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Option<char> {
        if is_rtcp(bytes) {
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
        match self.jitter.pop() {
            Playout::Frame { payload, .. } => {
                self.scratch8.clear();
                let decode = match self.media.codec {
                    Codec::Pcmu => g711::ulaw_to_linear,
                    Codec::Pcma => g711::alaw_to_linear,
                };
                self.scratch8
                    .extend(payload.iter().take(FRAME_8K).map(|&b| decode(b)));
                self.scratch8.resize(FRAME_8K, 0);
                self.up.process(&self.scratch8, heard);
            }
            Playout::Missing => {
                self.scratch8.clear();
                self.scratch8.resize(FRAME_8K, 0);
                self.up.process(&self.scratch8, heard);
            }
        }
        // Send side.
        let sending = matches!(
            self.media.direction,
            Direction::SendRecv | Direction::SendOnly
        );
        let ts = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(FRAME_8K as u32);
        self.remote?;
        if !sending {
            self.marker = true;
            return None;
        }
        self.scratch8.clear();
        match play {
            Some(frame) => self.down.process(frame, &mut self.scratch8),
            None => {
                let silence = [0i16; FRAME_16K];
                self.down.process(&silence, &mut self.scratch8)
            }
        }
        self.scratch8.resize(FRAME_8K, 0);
        let encode = match self.media.codec {
            Codec::Pcmu => g711::linear_to_ulaw,
            Codec::Pcma => g711::linear_to_alaw,
        };
        let mut payload = [0u8; FRAME_8K];
        for (o, &s) in payload.iter_mut().zip(self.scratch8.iter()) {
            *o = encode(s);
        }
        let packet = RtpPacket {
            marker: self.marker,
            payload_type: self.media.payload_type,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
            payload: &payload,
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
        Some(&self.packet)
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
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if let Some(digit) = session.on_datagram(&buf[..n], from, Instant::now()) {
                    let _ = peer.events.try_send(CallerEvent::Dtmf { digit, source: DtmfSource::Rfc4733 });
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
                if peer.events.try_send(CallerEvent::Audio(heard.clone())).is_err() {
                    session.stats.audio_dropped += 1;
                }
            }
            ctl = peer.control.recv() => match ctl {
                Some(Control::Flush) => {
                    pending.clear();
                    while peer.play.try_recv().is_ok() {}
                }
                Some(Control::Hangup) => hangup(),
                None => {}
            },
            u = updates.recv() => match u {
                Some(SessionUpdate::Media(m)) => session.update(m),
                Some(SessionUpdate::InfoDtmf(digit)) => {
                    let _ = peer.events.try_send(CallerEvent::Dtmf { digit, source: DtmfSource::SipInfo });
                }
                Some(SessionUpdate::End) | None => break,
            },
        }
    }
    let _ =
        tokio::time::timeout(Duration::from_secs(1), peer.events.send(CallerEvent::Ended)).await;
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
        for i in 0..10u16 {
            RtpPacket {
                marker: i == 0,
                payload_type: 0,
                sequence: i,
                timestamp: i as u32 * 160,
                ssrc: 5,
                payload: &[0x80; 160],
            }
            .write(&mut buf);
            caller.send_to(&buf, ours_addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
            match tokio::time::timeout(Duration::from_secs(1), edge.events.recv()).await {
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
            match edge.events.recv().await {
                Some(CallerEvent::Ended) => break,
                Some(_) => continue,
                None => panic!("no Ended event"),
            }
        }
    }
}
