//! Voice activity detection and endpointing, sans-IO: 16 kHz frames in (any length, typically
//! 20 ms), events out, times in ms of audio from the start of the stream.
//!
//! A `Classifier` scores fixed windows (Silero: 512 samples = 32 ms, through ONNX Runtime; the
//! energy fallback uses the same windows); the `Endpointer` state machine turns scores into
//! `SpeechStart`, `BargeIn` (speech lasting `barge_in_min_ms` while the agent is speaking, so
//! coughs and "mm-hmm" don't cut the agent off), `Pause` (a short silence inside a turn: the
//! call starts recognizing early, so the recognizer works while the endpointer still waits) and
//! `TurnEnd` (silence for `end_of_turn_ms`, which the dialog changes per step).

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::Tensor;

use super::onnx::{self, OnnxError};

/// Samples per classifier window at 16 kHz.
pub const WINDOW: usize = 512;
const WINDOW_MS: u64 = 32;
const CONTEXT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VadError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("silero VAD inference failed: {0}")]
    Inference(String),
}

/// What the endpointer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// The caller started speaking (at the first speech window).
    SpeechStart { at_ms: u64 },
    /// The caller has spoken long enough over the agent to stop the agent's prompt.
    BargeIn { at_ms: u64 },
    /// The caller has been silent for `pause_ms` in a turn that spans `start_ms` to `end_ms` so
    /// far. A `TurnEnd` with the same span follows unless the caller speaks again first.
    Pause { start_ms: u64, end_ms: u64 },
    /// The caller's turn ended: speech from `start_ms` to `end_ms`, then enough silence.
    TurnEnd { start_ms: u64, end_ms: u64 },
}

/// Endpointing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointParams {
    /// Silence that ends a turn.
    pub end_of_turn_ms: u64,
    /// Silence inside a turn that is reported as a `Pause` (when shorter than `end_of_turn_ms`).
    pub pause_ms: u64,
    /// Speech needed (while the agent speaks) for barge-in.
    pub barge_in_min_ms: u64,
    /// Speech needed before a start is reported (filters clicks).
    pub min_speech_ms: u64,
    /// Probability at or above which a window is speech; below `threshold - 0.15` is silence.
    pub threshold: f32,
}

impl Default for EndpointParams {
    fn default() -> Self {
        Self {
            end_of_turn_ms: 700,
            pause_ms: PAUSE_MS,
            barge_in_min_ms: 300,
            min_speech_ms: 96,
            threshold: 0.5,
        }
    }
}

/// Default `pause_ms`: 8 windows, just past the 250 ms of audio a call keeps after a turn's last
/// speech, so the audio recognized at the pause is the audio the turn ends with.
pub const PAUSE_MS: u64 = 256;

/// Scores one window of `WINDOW` samples: the probability that it is speech.
pub trait Classifier: Send {
    fn prob(&mut self, window: &[f32]) -> Result<f32, VadError>;
    /// Forgets the stream (between calls).
    fn reset(&mut self);
    fn name(&self) -> &'static str;
}

/// The endpointing state machine over window probabilities.
#[derive(Debug, Clone)]
pub struct Endpointer {
    params: EndpointParams,
    agent_speaking: bool,
    /// Audio time at the end of the last window.
    now_ms: u64,
    /// Start of the current (candidate) speech run.
    start_ms: Option<u64>,
    speech_ms: u64,
    started: bool,
    barged: bool,
    silence_ms: u64,
    last_speech_end_ms: u64,
}

impl Endpointer {
    pub fn new(params: EndpointParams) -> Endpointer {
        Endpointer {
            params,
            agent_speaking: false,
            now_ms: 0,
            start_ms: None,
            speech_ms: 0,
            started: false,
            barged: false,
            silence_ms: 0,
            last_speech_end_ms: 0,
        }
    }

    pub fn params(&self) -> EndpointParams {
        self.params
    }

    /// The dialog's per-step end-of-turn silence (longer for dates of birth and phone numbers).
    pub fn set_end_of_turn_ms(&mut self, ms: u64) {
        self.params.end_of_turn_ms = ms.clamp(100, 10_000);
    }

    /// Whether the agent is playing audio now (barge-in is only reported then).
    pub fn set_agent_speaking(&mut self, speaking: bool) {
        self.agent_speaking = speaking;
        if speaking {
            self.barged = false;
        }
    }

    /// Audio time at the end of the last window fed.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Speech in the current run so far (0 when the caller is silent between runs).
    pub fn speech_ms(&self) -> u64 {
        if self.silence_ms == 0 {
            self.speech_ms
        } else {
            0
        }
    }

    /// Whether the caller is in a turn (after `SpeechStart`, before `TurnEnd`).
    pub fn in_turn(&self) -> bool {
        self.started
    }

    /// Ends the caller's turn now, before the end-of-turn silence, when the caller is still
    /// silent after the speech that ended at `speech_end_ms` (the `Pause` the dialog judged a
    /// whole answer). Returns the turn's span as `TurnEnd` would, or `None` when the caller has
    /// spoken again since (the turn goes on) or no turn is open.
    pub fn end_turn_now(&mut self, speech_end_ms: u64) -> Option<(u64, u64)> {
        if !self.started || self.silence_ms == 0 || self.last_speech_end_ms != speech_end_ms {
            return None;
        }
        let span = (self.start_ms.unwrap_or(0), self.last_speech_end_ms);
        self.start_ms = None;
        self.started = false;
        self.speech_ms = 0;
        self.silence_ms = 0;
        Some(span)
    }

    /// Feeds the probability of the next `window_ms` of audio.
    pub fn feed(&mut self, prob: f32, window_ms: u64, out: &mut Vec<VadEvent>) {
        let window_start = self.now_ms;
        self.now_ms += window_ms;
        let speech = prob >= self.params.threshold;
        let silence = prob < self.params.threshold - 0.15;
        if speech {
            if self.start_ms.is_none() {
                self.start_ms = Some(window_start);
                self.speech_ms = 0;
            }
            self.speech_ms += window_ms;
            self.silence_ms = 0;
            self.last_speech_end_ms = self.now_ms;
            let start = self.start_ms.unwrap_or(window_start);
            if !self.started && self.speech_ms >= self.params.min_speech_ms {
                self.started = true;
                out.push(VadEvent::SpeechStart { at_ms: start });
            }
            if self.started
                && self.agent_speaking
                && !self.barged
                && self.speech_ms >= self.params.barge_in_min_ms
            {
                self.barged = true;
                out.push(VadEvent::BargeIn { at_ms: self.now_ms });
            }
        } else if self.start_ms.is_some() {
            let was_silent_ms = self.silence_ms;
            if silence {
                self.silence_ms += window_ms;
            }
            if self.started
                && was_silent_ms < self.params.pause_ms
                && self.silence_ms >= self.params.pause_ms
                && self.params.pause_ms < self.params.end_of_turn_ms
            {
                out.push(VadEvent::Pause {
                    start_ms: self.start_ms.unwrap_or(0),
                    end_ms: self.last_speech_end_ms,
                });
            }
            if !self.started && self.silence_ms >= self.params.min_speech_ms {
                // A click or a cough too short to count: forget it.
                self.start_ms = None;
                self.speech_ms = 0;
                self.silence_ms = 0;
            } else if self.started && self.silence_ms >= self.params.end_of_turn_ms {
                out.push(VadEvent::TurnEnd {
                    start_ms: self.start_ms.unwrap_or(0),
                    end_ms: self.last_speech_end_ms,
                });
                self.start_ms = None;
                self.started = false;
                self.speech_ms = 0;
                self.silence_ms = 0;
            }
        }
    }
}

/// Silero VAD: one shared ONNX session, a recurrent state per stream.
pub struct Silero {
    session: Arc<Mutex<Session>>,
    state: Vec<f32>,
    context: Vec<f32>,
    input: Vec<f32>,
}

/// The loaded Silero model, shared by all streams.
#[derive(Clone)]
pub struct SileroModel {
    session: Arc<Mutex<Session>>,
}

impl SileroModel {
    pub fn load(onnxruntime: &Path, model: &Path) -> Result<SileroModel, VadError> {
        let session = onnx::session(onnxruntime, model, 1)?;
        Ok(SileroModel {
            session: Arc::new(Mutex::new(session)),
        })
    }

    pub fn stream(&self) -> Silero {
        Silero {
            session: self.session.clone(),
            state: vec![0.0; 2 * 128],
            context: vec![0.0; CONTEXT],
            input: Vec::with_capacity(CONTEXT + WINDOW),
        }
    }
}

impl Classifier for Silero {
    fn prob(&mut self, window: &[f32]) -> Result<f32, VadError> {
        crate::inference::assert_off_runtime("silero VAD");
        let err = |e: ort::Error| VadError::Inference(e.to_string());
        self.input.clear();
        self.input.extend_from_slice(&self.context);
        self.input.extend_from_slice(window);
        let input =
            Tensor::from_array(([1usize, CONTEXT + WINDOW], self.input.clone())).map_err(err)?;
        let state = Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(err)?;
        let sr = Tensor::from_array(((), vec![16_000i64])).map_err(err)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(err)?;
        let (_, prob) = outputs["output"].try_extract_tensor::<f32>().map_err(err)?;
        let p = prob.first().copied().unwrap_or(0.0);
        let (_, new_state) = outputs["stateN"].try_extract_tensor::<f32>().map_err(err)?;
        if new_state.len() == self.state.len() {
            self.state.copy_from_slice(new_state);
        }
        self.context
            .copy_from_slice(&window[window.len() - CONTEXT..]);
        Ok(p)
    }

    fn reset(&mut self) {
        self.state.iter_mut().for_each(|s| *s = 0.0);
        self.context.iter_mut().for_each(|s| *s = 0.0);
    }

    fn name(&self) -> &'static str {
        "silero"
    }
}

/// Energy VAD, the fallback when the Silero model is missing: window level against a tracked
/// noise floor.
#[derive(Debug, Clone)]
pub struct Energy {
    floor_db: f32,
}

impl Default for Energy {
    fn default() -> Self {
        Energy { floor_db: -60.0 }
    }
}

impl Classifier for Energy {
    fn prob(&mut self, window: &[f32]) -> Result<f32, VadError> {
        let mean = window.iter().map(|s| s * s).sum::<f32>() / window.len().max(1) as f32;
        let db = 10.0 * (mean + 1e-10).log10();
        // The floor drops at once to quieter windows and creeps up slowly in loud ones.
        if db < self.floor_db {
            self.floor_db = db;
        } else {
            self.floor_db += 0.05 * (db - self.floor_db).min(3.0);
        }
        let above = db - self.floor_db.max(-70.0);
        Ok(if db < -50.0 {
            0.0
        } else {
            ((above - 6.0) / 12.0).clamp(0.0, 1.0)
        })
    }

    fn reset(&mut self) {
        self.floor_db = -60.0;
    }

    fn name(&self) -> &'static str {
        "energy"
    }
}

/// One stream's classifier over fixed windows: frames in (any length), one speech probability
/// per [`WINDOW`] (32 ms) out. The model half of [`Vad`]: a live call runs it on a thread of its
/// own (model inference stays off the async runtime) and feeds the probabilities to an
/// [`Endpointer`] in the call's conversation core.
pub struct VoiceScorer {
    classifier: Box<dyn Classifier>,
    pending: Vec<f32>,
}

impl VoiceScorer {
    pub fn new(classifier: Box<dyn Classifier>) -> VoiceScorer {
        VoiceScorer {
            classifier,
            pending: Vec::with_capacity(WINDOW * 2),
        }
    }

    pub fn classifier_name(&self) -> &'static str {
        self.classifier.name()
    }

    /// Feeds 16 kHz samples; appends the probability of each window they complete to `probs`.
    pub fn push(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> Result<(), VadError> {
        self.pending.extend_from_slice(frame);
        let mut offset = 0;
        while self.pending.len() - offset >= WINDOW {
            let window = &self.pending[offset..offset + WINDOW];
            probs.push(self.classifier.prob(window)?);
            offset += WINDOW;
        }
        self.pending.drain(..offset);
        Ok(())
    }

    pub fn reset(&mut self) {
        self.classifier.reset();
        self.pending.clear();
    }
}

/// Audio time of one classifier window.
pub const WINDOW_DURATION_MS: u64 = WINDOW_MS;

/// One stream's VAD: frames in, events out ([`VoiceScorer`] + [`Endpointer`] in one).
pub struct Vad {
    scorer: VoiceScorer,
    endpointer: Endpointer,
    probs: Vec<f32>,
}

impl Vad {
    pub fn new(classifier: Box<dyn Classifier>, params: EndpointParams) -> Vad {
        Vad {
            scorer: VoiceScorer::new(classifier),
            endpointer: Endpointer::new(params),
            probs: Vec::with_capacity(4),
        }
    }

    pub fn classifier_name(&self) -> &'static str {
        self.scorer.classifier_name()
    }

    pub fn endpointer(&mut self) -> &mut Endpointer {
        &mut self.endpointer
    }

    /// Feeds 16 kHz samples; returns the events they complete.
    pub fn push(&mut self, frame: &[f32]) -> Result<Vec<VadEvent>, VadError> {
        let mut events = Vec::new();
        self.probs.clear();
        self.scorer.push(frame, &mut self.probs)?;
        for p in &self.probs {
            self.endpointer.feed(*p, WINDOW_MS, &mut events);
        }
        Ok(events)
    }

    /// Starts over for a new stream.
    pub fn reset(&mut self) {
        self.scorer.reset();
        self.endpointer = Endpointer::new(self.endpointer.params());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(probs: &[f32], params: EndpointParams, agent: bool) -> Vec<VadEvent> {
        let mut e = Endpointer::new(params);
        e.set_agent_speaking(agent);
        let mut out = Vec::new();
        for &p in probs {
            e.feed(p, 32, &mut out);
        }
        out
    }

    fn probs(spec: &[(f32, usize)]) -> Vec<f32> {
        spec.iter()
            .flat_map(|&(p, n)| std::iter::repeat_n(p, n))
            .collect()
    }

    #[test]
    fn a_turn_starts_and_ends_after_the_silence() {
        let p = probs(&[(0.0, 10), (0.9, 20), (0.0, 30)]);
        let ev = run(&p, EndpointParams::default(), false);
        assert_eq!(
            ev,
            vec![
                VadEvent::SpeechStart { at_ms: 320 },
                VadEvent::Pause {
                    start_ms: 320,
                    end_ms: 960
                },
                VadEvent::TurnEnd {
                    start_ms: 320,
                    end_ms: 960
                }
            ]
        );
    }

    #[test]
    fn a_pause_inside_a_turn_is_reported_once_per_silence() {
        // Speech, a 400 ms pause, more speech, then the end: two pauses, one turn.
        let p = probs(&[(0.9, 10), (0.0, 12), (0.9, 10), (0.0, 30)]);
        let ev = run(&p, EndpointParams::default(), false);
        let pauses: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                VadEvent::Pause { start_ms, end_ms } => Some((*start_ms, *end_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(pauses, vec![(0, 320), (0, 1024)]);
        assert_eq!(
            ev.last(),
            Some(&VadEvent::TurnEnd {
                start_ms: 0,
                end_ms: 1024
            })
        );
        // No pause when the turn ends sooner than the pause would come.
        let quick = EndpointParams {
            end_of_turn_ms: 200,
            ..Default::default()
        };
        assert!(
            !run(&p, quick, false)
                .iter()
                .any(|e| matches!(e, VadEvent::Pause { .. }))
        );
    }

    #[test]
    fn a_turn_ends_at_a_pause_only_while_the_caller_stays_silent() {
        let mut e = Endpointer::new(EndpointParams::default());
        let mut out = Vec::new();
        let feed = |e: &mut Endpointer, spec: &[(f32, usize)], out: &mut Vec<VadEvent>| {
            for &x in &probs(spec) {
                e.feed(x, 32, out);
            }
        };
        // Nothing open: nothing to end.
        assert_eq!(e.end_turn_now(0), None);
        feed(&mut e, &[(0.9, 10), (0.0, 9)], &mut out);
        let pause = out.iter().find_map(|ev| match ev {
            VadEvent::Pause { start_ms, end_ms } => Some((*start_ms, *end_ms)),
            _ => None,
        });
        assert_eq!(pause, Some((0, 320)));
        // The caller spoke again after the pause: the turn goes on.
        feed(&mut e, &[(0.9, 5), (0.0, 2)], &mut out);
        assert_eq!(e.end_turn_now(320), None);
        // Silent since the last speech: the turn ends now, and not again at the full silence.
        assert_eq!(e.end_turn_now(768), Some((0, 768)));
        out.clear();
        feed(&mut e, &[(0.0, 40)], &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn end_of_turn_silence_is_per_step() {
        // 600 ms pause: ends the turn at 500 ms, not at 1500 ms.
        let p = probs(&[(0.9, 10), (0.0, 19), (0.9, 10), (0.0, 60)]);
        let short = EndpointParams {
            end_of_turn_ms: 500,
            ..Default::default()
        };
        let ends = |ev: &[VadEvent]| {
            ev.iter()
                .filter(|e| matches!(e, VadEvent::TurnEnd { .. }))
                .count()
        };
        assert_eq!(ends(&run(&p, short, false)), 2);
        let mut long = Endpointer::new(EndpointParams::default());
        long.set_end_of_turn_ms(1500);
        let mut out = Vec::new();
        for &x in &p {
            long.feed(x, 32, &mut out);
        }
        assert_eq!(ends(&out), 1);
    }

    #[test]
    fn barge_in_needs_the_minimum_speech() {
        // A 160 ms cough while the agent speaks: a speech start but no barge-in.
        let cough = probs(&[(0.9, 5), (0.0, 30)]);
        let ev = run(&cough, EndpointParams::default(), true);
        assert!(!ev.iter().any(|e| matches!(e, VadEvent::BargeIn { .. })));
        // 640 ms of speech: barge-in once, at 300 ms of speech (10 windows = 320 ms).
        let talk = probs(&[(0.9, 20), (0.0, 30)]);
        let ev = run(&talk, EndpointParams::default(), true);
        let barge: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, VadEvent::BargeIn { .. }))
            .collect();
        assert_eq!(barge, vec![&VadEvent::BargeIn { at_ms: 320 }]);
        // Not while the agent is silent.
        let ev = run(&talk, EndpointParams::default(), false);
        assert!(!ev.iter().any(|e| matches!(e, VadEvent::BargeIn { .. })));
    }

    #[test]
    fn a_click_is_not_speech() {
        let p = probs(&[(0.9, 1), (0.0, 40)]);
        assert!(run(&p, EndpointParams::default(), false).is_empty());
    }

    #[test]
    fn energy_vad_finds_a_tone_in_silence() {
        let mut vad = Vad::new(Box::<Energy>::default(), EndpointParams::default());
        let mut events = Vec::new();
        let quiet = vec![0.0005f32; 320];
        let tone: Vec<f32> = (0..320).map(|i| (i as f32 * 0.2).sin() * 0.3).collect();
        for _ in 0..25 {
            events.extend(vad.push(&quiet).unwrap());
        }
        for _ in 0..50 {
            events.extend(vad.push(&tone).unwrap());
        }
        for _ in 0..60 {
            events.extend(vad.push(&quiet).unwrap());
        }
        assert!(
            matches!(events.first(), Some(VadEvent::SpeechStart { .. })),
            "{events:?}"
        );
        assert!(
            matches!(events.last(), Some(VadEvent::TurnEnd { .. })),
            "{events:?}"
        );
    }
}
