//! Call media: SDP, RTP, jitter buffer, G.711, Opus, resampling, WAV files, DTMF, and a call's
//! media edge.
//!
//! # The media edge
//!
//! Each answered call gets a [`MediaEdge`], the only thing the call pipeline (speech recognition,
//! dialog, synthesis) needs to know about telephony. All channels are bounded tokio channels:
//!
//! Two lanes come from the caller:
//! - the **data lane**, [`MediaEdge::audio`]: frames of 20 ms of 16 kHz mono PCM ([`FRAME_16K`]
//!   samples, one per 20 ms, concealed with silence where packets were lost). If the consumer
//!   falls behind, frames are dropped (counted in the session's stats), never buffered without
//!   bound: a late frame is worth nothing to a live call.
//! - the **control lane**, [`MediaEdge::signals`]: [`CallerSignal::Dtmf`] keypad digits (RFC 4733
//!   or SIP INFO) and a final [`CallerSignal::Ended`] when the call is over (after it both lanes
//!   close). Never dropped: the sender waits for room, and a consumer polls this lane first, so a
//!   saturated audio lane cannot cost a digit or the hang-up.
//!
//! [`MediaEdge::recv`] merges both (signals first) for consumers that want one stream.
//! - [`MediaEdge::play`] takes 16 kHz mono PCM frames of any length for the caller. The sender
//!   is bounded: `send().await` waits while the queue is full, which paces a producer that is
//!   faster than real time. The RTP side takes 20 ms per 20 ms tick.
//! - [`MediaEdge::flush`] ("flush playback now", for barge-in) drops everything queued for the
//!   caller; playback stops at the next 20 ms tick.
//! - [`MediaEdge::hangup`] ends the call from our side (BYE).
//!
//! Keypad digits can be PHI (a date of birth): they are never logged, only counted.

pub mod audio;
pub mod g711;
pub mod jitter;
pub mod leg;
pub mod opus;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod srtp;

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

/// Samples in one 20 ms frame at 16 kHz.
pub const FRAME_16K: usize = 320;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_8K: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("SDP line {line}: {message}")]
    Sdp { line: usize, message: String },
    #[error("RTP: {0}")]
    Rtp(String),
    #[error("{path}: cannot read WAV: {message}")]
    Wav { path: PathBuf, message: String },
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    #[error("media.rtp_port_min..rtp_port_max: no free RTP port between {min} and {max}")]
    NoPort { min: u16, max: u16 },
    #[error("SRTP: {0}")]
    Srtp(String),
    #[error("RTP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    Rfc4733,
    SipInfo,
}

/// What the caller's control lane carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerSignal {
    Dtmf {
        digit: char,
        source: DtmfSource,
    },
    /// The call is over (either side hung up); nothing follows.
    Ended,
}

/// What the caller sends us, both lanes merged (see [`MediaEdge::recv`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CallerEvent {
    /// 20 ms of 16 kHz mono PCM.
    Audio(Vec<i16>),
    Dtmf {
        digit: char,
        source: DtmfSource,
    },
    /// The call is over (either side hung up); nothing follows.
    Ended,
}

/// Commands to the RTP side that are not audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Drop everything queued for playback.
    Flush,
    /// End the call from our side.
    Hangup,
    /// Send a keypad digit as an RFC 4733 telephone-event (when the call negotiated one).
    Dtmf(char),
}

/// The pipeline's handle on one call's media. See the module docs.
pub struct MediaEdge {
    /// The data lane: 20 ms frames of the caller's audio.
    pub audio: mpsc::Receiver<Vec<i16>>,
    /// The control lane: keypad digits and the end of the call.
    pub signals: mpsc::Receiver<CallerSignal>,
    pub play: mpsc::Sender<Vec<i16>>,
    control: mpsc::Sender<Control>,
}

impl MediaEdge {
    /// The next thing the caller sent, the control lane first; `None` once the call is over and
    /// both lanes are drained.
    pub async fn recv(&mut self) -> Option<CallerEvent> {
        tokio::select! {
            biased;
            Some(signal) = self.signals.recv() => Some(match signal {
                CallerSignal::Dtmf { digit, source } => CallerEvent::Dtmf { digit, source },
                CallerSignal::Ended => CallerEvent::Ended,
            }),
            Some(frame) = self.audio.recv() => Some(CallerEvent::Audio(frame)),
            else => None,
        }
    }

    /// Stops playback at once (barge-in).
    pub async fn flush(&self) {
        let _ = self.control.send(Control::Flush).await;
    }

    /// Sends keypad digit `digit` (`0`-`9`, `*`, `#`, `A`-`D`) to the caller as an RFC 4733
    /// telephone-event (100 ms), in place of audio. Ignored when the call has no telephone-event.
    pub async fn send_dtmf(&self, digit: char) {
        let _ = self.control.send(Control::Dtmf(digit)).await;
    }

    /// Ends the call (we send BYE).
    pub async fn hangup(&self) {
        let _ = self.control.send(Control::Hangup).await;
    }
}

/// The RTP side of the channels a [`MediaEdge`] talks to.
pub struct EdgePeer {
    /// The data lane: send with `try_send` and count what does not fit.
    pub audio: mpsc::Sender<Vec<i16>>,
    /// The control lane: send with `send().await` (never dropped).
    pub signals: mpsc::Sender<CallerSignal>,
    pub play: mpsc::Receiver<Vec<i16>>,
    pub control: mpsc::Receiver<Control>,
}

/// Depth of the control lane (digits and the end; the consumer polls it first).
const SIGNALS_DEPTH: usize = 32;

/// A connected edge and its peer: `audio_depth` and `play_depth` bound each direction's audio
/// (in messages; a 20 ms frame is one message).
pub fn edge(audio_depth: usize, play_depth: usize) -> (MediaEdge, EdgePeer) {
    let (audio_tx, audio_rx) = mpsc::channel(audio_depth);
    let (sig_tx, sig_rx) = mpsc::channel(SIGNALS_DEPTH);
    let (play_tx, play_rx) = mpsc::channel(play_depth);
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    (
        MediaEdge {
            audio: audio_rx,
            signals: sig_rx,
            play: play_tx,
            control: ctl_tx,
        },
        EdgePeer {
            audio: audio_tx,
            signals: sig_tx,
            play: play_rx,
            control: ctl_rx,
        },
    )
}

/// Reads a WAV file (PCM 8/16/24/32-bit or float, any rate, mono or stereo) as 16 kHz mono.
pub fn load_wav_16k(path: &Path) -> Result<Vec<i16>, MediaError> {
    let audio = audio::read_wav(path)?;
    if audio.samples.is_empty() {
        return Err(MediaError::Wav {
            path: path.to_path_buf(),
            message: "no samples".into(),
        });
    }
    let audio = audio.resampled(16000)?;
    Ok(audio.samples.iter().map(|&s| audio::to_i16(s)).collect())
}
