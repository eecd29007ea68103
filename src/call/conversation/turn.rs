//! One caller turn's record as the conversation core keeps it, and how a call ends.

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::Timestamp;

use crate::call::metrics::Stage;
use crate::phi::PatientId;

/// How the call ended, for the calls table and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    CallerHungUp,
    Completed,
    Transferred,
    Callback,
    NotConfirmed,
    TooLong,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::CallerHungUp => "caller_hung_up",
            Outcome::Completed => "completed",
            Outcome::Transferred => "transferred",
            Outcome::Callback => "callback",
            Outcome::NotConfirmed => "not_confirmed",
            Outcome::TooLong => "too_long",
        }
    }
}

/// An EMR operation of a turn: which, and whether it worked (no PHI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnAction {
    pub op: &'static str,
    pub ok: bool,
}

/// A finished turn, for the ordered audit writer and the stage metrics. `transcript` and
/// `reply` are PHI-bearing: the writer seals them.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRecord {
    pub number: u32,
    pub started: Timestamp,
    pub ended: Timestamp,
    pub transcript: Option<String>,
    pub reply: Vec<String>,
    pub actions: Vec<TurnAction>,
    /// Per-stage milliseconds, keyed by [`Stage::as_str`].
    pub latency_ms: BTreeMap<String, u64>,
    /// The verified patient when the turn ended.
    pub patient: Option<PatientId>,
}

/// One caller turn (or the greeting, turn 0), from the end of the caller's speech to the end of
/// the reply.
pub(super) struct Turn {
    pub number: u32,
    /// When the caller stopped speaking; `None` for the greeting and re-prompts.
    pub speech_end: Option<Instant>,
    pub started: Timestamp,
    pub transcript: Option<String>,
    pub reply: Vec<String>,
    /// The first segment of the reply, and when its first frame played.
    pub first_segment: Option<u64>,
    pub decided: Option<Instant>,
    pub first_audio: Option<Instant>,
    pub latency_ms: BTreeMap<String, u64>,
    pub actions: Vec<TurnAction>,
}

impl Turn {
    pub fn new(number: u32, speech_end: Option<Instant>, started: Timestamp) -> Turn {
        Turn {
            number,
            speech_end,
            started,
            transcript: None,
            reply: Vec::new(),
            first_segment: None,
            decided: None,
            first_audio: None,
            latency_ms: BTreeMap::new(),
            actions: Vec::new(),
        }
    }

    pub fn add_ms(&mut self, stage: Stage, ms: u64) {
        *self.latency_ms.entry(stage.as_str().into()).or_default() += ms;
    }

    /// The record: the reply and first-audio latencies computed from the turn's instants.
    pub fn finish(self, ended: Timestamp, patient: Option<PatientId>) -> TurnRecord {
        let mut latency = self.latency_ms;
        if let (Some(end), Some(first)) = (self.speech_end, self.first_audio) {
            let total = first.saturating_duration_since(end).as_millis() as u64;
            latency.insert(Stage::Reply.as_str().into(), total);
        }
        if let (Some(decided), Some(first)) = (self.decided, self.first_audio) {
            latency.insert(
                Stage::TtsFirstAudio.as_str().into(),
                first.saturating_duration_since(decided).as_millis() as u64,
            );
        }
        TurnRecord {
            number: self.number,
            started: self.started,
            ended,
            transcript: self.transcript,
            reply: self.reply,
            actions: self.actions,
            latency_ms: latency,
            patient,
        }
    }
}
