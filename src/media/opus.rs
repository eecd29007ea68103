//! Opus (RFC 6716, RTP payload RFC 7587) through the system libopus (`opus` crate, linked via
//! pkg-config; `scripts/setup` installs `libopus-dev`).
//!
//! Both directions run at 16 kHz mono, the rate of the speech layer: libopus decodes any Opus
//! stream (narrowband to fullband, mono or stereo) straight to 16 kHz mono and encodes 16 kHz
//! input as wideband, so no resampler sits on the Opus path. The RTP clock of Opus is always
//! 48 kHz whatever the audio bandwidth (RFC 7587 4.1): a 20 ms frame advances the timestamp by
//! [`RTP_FRAME`].
//!
//! Why the `opus` crate (0.3): a small safe wrapper, on crates.io since 2016 and widely used,
//! whose only dependency (`audiopus_sys`) links the distribution's libopus found by pkg-config
//! (security fixes come with the OS) and falls back to building its bundled libopus with cmake.
//! `opus` 0.4 moved to `opusic-sys`, which by default compiles its own libopus 1.5 from source
//! (a longer build, and not the system library the issue asks for); `audiopus` 0.3 has been a
//! release candidate since 2021; the pure-Rust ports are young for a codec carrying patients'
//! voices.

use opus::{Application, Bitrate, Channels, Decoder, Encoder};

use super::FRAME_16K;

/// RTP clock rate of Opus (RFC 7587 4.1).
pub const CLOCK_RATE: u32 = 48_000;
/// RTP timestamp units in one 20 ms frame.
pub const RTP_FRAME: u32 = CLOCK_RATE / 50;
/// Bits per second we send: wideband speech is clear at 24 kb/s (RFC 7587 3.1.1 suggests
/// 16-20 kb/s for wideband speech; a little more keeps synthetic voices clean for the caller).
pub const BITRATE: i32 = 24_000;
/// Largest Opus packet we produce or accept (RFC 6716 3.4: 1275 bytes per frame, up to 120 ms
/// of audio in one packet).
pub const MAX_PACKET: usize = 1500;
/// Largest decoded packet: 120 ms at 16 kHz.
const MAX_DECODED: usize = FRAME_16K * 6;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("Opus encoder: {0}")]
    Encoder(opus::Error),
    #[error("Opus decoder: {0}")]
    Decoder(opus::Error),
    #[error("Opus: empty RTP payload")]
    EmptyPacket,
    #[error("Opus: a frame is {expected} samples at 16 kHz, got {got}")]
    FrameSize { expected: usize, got: usize },
}

/// One call's Opus encoder and decoder (16 kHz mono PCM on our side).
pub struct OpusCodec {
    encoder: Encoder,
    decoder: Decoder,
    decoded: Vec<i16>,
}

impl std::fmt::Debug for OpusCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusCodec")
    }
}

impl OpusCodec {
    pub fn new() -> Result<OpusCodec, OpusError> {
        let mut encoder =
            Encoder::new(16_000, Channels::Mono, Application::Voip).map_err(OpusError::Encoder)?;
        encoder
            .set_bitrate(Bitrate::Bits(BITRATE))
            .map_err(OpusError::Encoder)?;
        let decoder = Decoder::new(16_000, Channels::Mono).map_err(OpusError::Decoder)?;
        Ok(OpusCodec {
            encoder,
            decoder,
            decoded: vec![0; MAX_DECODED],
        })
    }

    /// Encodes one 20 ms frame ([`FRAME_16K`] samples) into `out`; returns the packet length.
    pub fn encode(&mut self, frame: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        if frame.len() != FRAME_16K {
            return Err(OpusError::FrameSize {
                expected: FRAME_16K,
                got: frame.len(),
            });
        }
        self.encoder.encode(frame, out).map_err(OpusError::Encoder)
    }

    /// Decodes one packet to 16 kHz mono and appends exactly one 20 ms frame to `out`: a packet
    /// longer than 20 ms is cut, a shorter one padded with silence (we answer `a=ptime:20`). A
    /// packet libopus rejects is an error and appends nothing.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<(), OpusError> {
        if packet.is_empty() {
            // An empty payload would be taken as a lost packet; it is a broken one.
            return Err(OpusError::EmptyPacket);
        }
        let n = self
            .decoder
            .decode(packet, &mut self.decoded, false)
            .map_err(OpusError::Decoder)?;
        let n = n.min(FRAME_16K);
        out.extend_from_slice(&self.decoded[..n]);
        out.resize(out.len() + (FRAME_16K - n), 0);
        Ok(())
    }

    /// Appends 20 ms of concealment for a lost packet (libopus packet-loss concealment: it
    /// continues the last sound and fades out; silence before the first packet).
    pub fn conceal(&mut self, out: &mut Vec<i16>) {
        let n = self
            .decoder
            .decode(&[], &mut self.decoded[..FRAME_16K], false)
            .unwrap_or(0)
            .min(FRAME_16K);
        out.extend_from_slice(&self.decoded[..n]);
        out.resize(out.len() + (FRAME_16K - n), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, frames: usize) -> Vec<i16> {
        (0..FRAME_16K * frames)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16
            })
            .collect()
    }

    /// Correlation of `a` with `b` shifted by `lag` samples, normalised to -1..1.
    fn correlation(a: &[i16], b: &[i16], lag: usize) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b[lag..].iter()) {
            let (x, y) = (*x as f64, *y as f64);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa.sqrt() * bb.sqrt()).max(1.0)
    }

    #[test]
    fn round_trip_keeps_the_signal() {
        let mut enc = OpusCodec::new().unwrap();
        let mut dec = OpusCodec::new().unwrap();
        // A 440 Hz + 1.2 kHz voice-band signal, 1 s.
        let a = tone(440.0, 50);
        let b = tone(1200.0, 50);
        let input: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x / 2 + y / 2).collect();
        let mut output = Vec::new();
        let mut packet = [0u8; MAX_PACKET];
        let mut bytes = 0;
        for frame in input.chunks(FRAME_16K) {
            let n = enc.encode(frame, &mut packet).unwrap();
            assert!(n > 2 && n < 200, "{n} bytes for 20 ms");
            bytes += n;
            dec.decode(&packet[..n], &mut output).unwrap();
        }
        assert_eq!(output.len(), input.len());
        // About 24 kb/s.
        assert!((2000..4000).contains(&bytes), "{bytes} bytes in 1 s");
        // The codec delays the signal a few ms: find the lag, then the shape must match.
        let best = (0..160)
            .map(|lag| correlation(&input[..FRAME_16K * 40], &output, lag))
            .fold(f64::MIN, f64::max);
        assert!(best > 0.9, "correlation {best}");
    }

    #[test]
    fn loss_is_concealed_and_bad_input_is_an_error() {
        let mut enc = OpusCodec::new().unwrap();
        let mut dec = OpusCodec::new().unwrap();
        let mut packet = [0u8; MAX_PACKET];
        let mut out = Vec::new();
        // Concealment before anything arrived: one silent frame.
        dec.conceal(&mut out);
        assert_eq!(out, vec![0; FRAME_16K]);
        for frame in tone(300.0, 5).chunks(FRAME_16K) {
            let n = enc.encode(frame, &mut packet).unwrap();
            dec.decode(&packet[..n], &mut out).unwrap();
        }
        out.clear();
        dec.conceal(&mut out);
        assert_eq!(out.len(), FRAME_16K);
        assert!(
            out.iter().any(|&s| s.unsigned_abs() > 1000),
            "PLC is silent"
        );
        // Wrong frame size, empty and broken packets: errors, no panic, nothing appended.
        assert!(matches!(
            enc.encode(&[0; 100], &mut packet),
            Err(OpusError::FrameSize { got: 100, .. })
        ));
        out.clear();
        assert!(dec.decode(&[], &mut out).is_err());
        // TOC code 3 (arbitrary frame count) with a frame count of 0 is invalid.
        assert!(dec.decode(&[0x03, 0x00], &mut out).is_err());
        assert!(out.is_empty());
        // Any bytes: an error or one frame, never a panic.
        for len in 1..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let before = out.len();
            if dec.decode(&junk, &mut out).is_ok() {
                assert_eq!(out.len(), before + FRAME_16K);
            }
        }
    }

    #[test]
    fn decodes_a_48k_stereo_stream_to_16k_mono() {
        // What a fullband stereo peer (a softphone, baresip's default) sends.
        let mut enc = Encoder::new(48_000, Channels::Stereo, Application::Audio).unwrap();
        let mut dec = OpusCodec::new().unwrap();
        let mono: Vec<i16> = (0..960 * 10)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 48000.0).sin()) as i16
            })
            .collect();
        let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
        let mut packet = [0u8; MAX_PACKET];
        let mut out = Vec::new();
        for frame in stereo.chunks(960 * 2) {
            let n = enc.encode(frame, &mut packet).unwrap();
            dec.decode(&packet[..n], &mut out).unwrap();
        }
        assert_eq!(out.len(), FRAME_16K * 10);
        let rms = (out[FRAME_16K * 2..]
            .iter()
            .map(|&s| (s as f64).powi(2))
            .sum::<f64>()
            / (FRAME_16K * 8) as f64)
            .sqrt();
        assert!(rms > 4000.0, "rms {rms}");
    }
}
