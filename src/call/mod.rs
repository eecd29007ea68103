//! One live call: media in -> VAD/endpointing -> ASR -> dialog -> TTS -> media out, with the EMR
//! actions, escalation and the audit record of every turn.
//!
//! Each call is one task (the loop in [`run`]) that owns the dialog [`Engine`] and the VAD, plus
//! helper tasks joined by bounded channels: the [`Speaker`] (synthesis and playback), one
//! recognizer job per finished turn (the shared [`AsrService`](crate::speech::asr::AsrService)
//! queue), and one task per EMR action. The loop never blocks on any of them; their results come
//! back as [`Internal`] messages, so barge-in, keypad digits and the caller hanging up are handled
//! at once whatever else is in flight.
//!
//! Timing, measured per turn and exported on `/metrics` (see [`metrics::Stage`]): the caller's
//! speech ends (audio time, converted to the wall clock), endpointing waits for the step's
//! end-of-turn silence, the recognizer runs, the engine decides, EMR actions run, the first reply
//! frame leaves for the caller. Nothing PHI-bearing is logged: spans carry the call id, the turn
//! number and timings only.

mod bridge;
pub mod metrics;
pub mod recording;
pub mod speaker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::mpsc;

use self::metrics::{CallMetrics, Stage};
use self::recording::CallerAudio;
use self::speaker::{Speaker, SpeakerEvent, Utterance};
use crate::audit::{self, AuditEvent, CallTurn, Confidential};
use crate::config::CallConfig;
use crate::dialog::Dialog;
use crate::dialog::call::run_action;
use crate::dialog::engine::{Action, EmrReply, Ending, Engine, Input, Output};
use crate::emr::Emr;
use crate::media::{CallerEvent, MediaEdge};
use crate::sip::transport::{AnsweredCall, CallControl, CallHandler};
use crate::speech::Engines;
use crate::speech::audio::Audio;
use crate::speech::vad::{Vad, VadEvent};
use crate::store::Store;
use crate::store::calls::{CallRecord, Channel};
use crate::store::escalations::EscalationRecord;

/// Audio kept before a turn's detected start and after its end, so the recognizer hears the
/// whole first and last word.
const PRE_ROLL_MS: u64 = 250;
const POST_ROLL_MS: u64 = 250;
/// Caller audio kept for cutting out turns (longer turns are cut to their last seconds).
const CALLER_AUDIO_SECS: u32 = 60;
/// How long a call waits for the caller's ACK before giving up on it.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a transfer may take (the staff phone ringing included) before the caller is told
/// that the front desk will call back.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(45);
/// How long we wait for the SIP side to report the end after we hung up.
const HANGUP_WAIT: Duration = Duration::from_secs(5);

/// Said when an EMR action is slow.
pub const ONE_MOMENT: &str = "One moment, please.";
/// Said when a transfer is not possible.
pub const CALLBACK: &str = "I can't connect you to the front desk right now. They will call you back as soon as possible. Goodbye.";
/// Said when the call has gone on too long.
pub const TOO_LONG: &str = "I'm sorry, we have run out of time on this call. Please call again if you need more help. Goodbye.";

/// What every call shares: engines, EMR, flow, config, store, audit, metrics.
pub struct CallServices {
    pub engines: Arc<Engines>,
    pub emr: Arc<dyn Emr>,
    /// Flows (hot-reloaded), clinic facts, dialog settings and understanding.
    pub dialog: Arc<Dialog>,
    pub call: CallConfig,
    pub store: Store,
    pub audit: audit::Audit,
    pub metrics: CallMetrics,
    /// Salt for the calling-number hash (the installation's id).
    pub instance: String,
    /// Places the call to staff when a caller's phone refuses a transfer (the server then
    /// bridges the two legs itself).
    pub dialer: Option<crate::sip::transport::SipHandle>,
}

impl CallServices {
    /// A dialog engine for one call, on the current flow.
    pub fn engine(&self, calling_number: Option<String>) -> Engine {
        self.dialog.engine(calling_number)
    }

    /// Synthesizes the fixed prompts (greeting, "one moment", fallbacks) into the cache, so that
    /// the greeting starts as soon as a call is answered.
    pub fn warm_up(&self) {
        let mut prompts: Vec<String> = self.engine(None).start(Timestamp::now()).say;
        prompts.extend([ONE_MOMENT, CALLBACK, TOO_LONG].map(String::from));
        for p in prompts {
            if let Err(e) = self.engines.tts.cached(&p, 16_000) {
                tracing::warn!(error = %e, "a fixed prompt could not be pre-synthesized");
            }
        }
    }

    fn caller_hash(&self, number: Option<&str>) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"carevoice-caller\0");
        h.update(self.instance.as_bytes());
        h.update(b"\0");
        h.update(number.unwrap_or("").as_bytes());
        hex::encode(h.finalize())
    }
}

/// The [`CallHandler`] that runs the live pipeline on every answered call.
pub struct LivePipeline {
    services: Arc<CallServices>,
}

impl LivePipeline {
    pub fn new(services: Arc<CallServices>) -> LivePipeline {
        LivePipeline { services }
    }
}

impl CallHandler for LivePipeline {
    fn handle(&self, call: AnsweredCall) {
        tokio::spawn(run(self.services.clone(), call));
    }
}

/// Results of a call's helper tasks.
enum Internal {
    Heard {
        /// The span of caller speech recognized (VAD ms): which `Hearing` this is.
        span: (u64, u64),
        result: AsrResult,
        asr_ms: u64,
    },
    Emr {
        reply: EmrReply,
        emr_ms: u64,
        op: &'static str,
    },
    /// The running EMR action has taken `one_moment_ms`.
    Slow,
}

type AsrResult = Result<crate::speech::asr::Transcript, crate::speech::asr::AsrError>;

/// A recognizer job on the caller's speech: started at a pause inside a turn (speculatively, so
/// recognition overlaps the end-of-turn silence) or when the turn ends.
struct Hearing {
    span: (u64, u64),
    /// The turn it answers; `None` while the turn may still go on.
    turn: Option<u32>,
    /// The transcript, when it came back before the turn ended: (result, recognizer ms).
    result: Option<(AsrResult, u64)>,
    /// Aborting it drops the recognizer's future, which cancels the decode.
    task: tokio::task::JoinHandle<()>,
}

/// One caller turn (or the greeting, turn 0), from the end of the caller's speech to the end of
/// the reply.
struct Turn {
    number: u32,
    /// When the caller stopped speaking (wall clock); `None` for the greeting.
    speech_end: Option<Instant>,
    started: Timestamp,
    transcript: Option<String>,
    reply: Vec<String>,
    /// The first segment of the reply, and when its first frame played.
    first_segment: Option<u64>,
    decided: Option<Instant>,
    first_audio: Option<Instant>,
    latency_ms: BTreeMap<String, u64>,
    actions: Vec<audit::TurnAction>,
}

impl Turn {
    fn new(number: u32, speech_end: Option<Instant>) -> Turn {
        Turn {
            number,
            speech_end,
            started: Timestamp::now(),
            transcript: None,
            reply: Vec::new(),
            first_segment: None,
            decided: None,
            first_audio: None,
            latency_ms: BTreeMap::new(),
            actions: Vec::new(),
        }
    }

    fn add_ms(&mut self, stage: Stage, ms: u64) {
        *self.latency_ms.entry(stage.as_str().into()).or_default() += ms;
    }
}

/// How the call ended, for the calls table and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    CallerHungUp,
    Completed,
    Transferred,
    Callback,
    NotConfirmed,
    TooLong,
}

impl Outcome {
    fn as_str(self) -> &'static str {
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

struct Live {
    services: Arc<CallServices>,
    call_id: String,
    engine: Engine,
    vad: Vad,
    audio: CallerAudio,
    speaker: Speaker,
    edge: MediaEdge,
    control: CallControl,
    internal: mpsc::Sender<Internal>,
    /// The last segment queued and not yet played out; `None` when the agent is silent.
    speaking: Option<u64>,
    action: Option<tokio::task::JoinHandle<()>>,
    /// Recognizer jobs in flight: any claimed by turns (in order), then at most one speculative.
    hearings: Vec<Hearing>,
    ending: Option<Ending>,
    turn: Option<Turn>,
    turns: u32,
    no_input_at: Option<tokio::time::Instant>,
    /// What the caller said on the last turns, for a verified caller's escalation summary.
    recent: Vec<String>,
    outcome: Option<Outcome>,
}

impl Drop for Live {
    /// A call that ends stops its recognizer jobs (no transcript is wanted any more).
    fn drop(&mut self) {
        for h in &self.hearings {
            h.task.abort();
        }
    }
}

/// Runs one call until it ends.
pub async fn run(services: Arc<CallServices>, call: AnsweredCall) {
    let call_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("call", call = %call_id, sip_call = call.id);
    tracing::Instrument::instrument(run_inner(services, call, call_id), span).await
}

async fn run_inner(services: Arc<CallServices>, call: AnsweredCall, call_id: String) {
    let AnsweredCall {
        caller,
        edge,
        confirmed,
        control,
        ..
    } = call;
    let started_ms = Timestamp::now().as_millisecond();
    let record = CallRecord {
        id: call_id.clone(),
        channel: Channel::Sip,
        caller_hash: services.caller_hash(caller.as_deref()),
        started_ms,
        ended_ms: None,
        outcome: None,
    };
    if let Err(e) = services.store.insert_call(&record).await {
        tracing::error!(error = %e, "call record not stored");
    }
    services.metrics.call_started();
    let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await {
        Ok(Ok(())) => converse(services.clone(), call_id.clone(), caller, edge, control).await,
        _ => Outcome::NotConfirmed,
    };
    services.metrics.call_ended(outcome.as_str());
    if let Err(e) = services
        .store
        .finish_call(
            &call_id,
            Timestamp::now().as_millisecond(),
            outcome.as_str(),
        )
        .await
    {
        tracing::error!(error = %e, "call record not finished");
    }
    tracing::info!(outcome = outcome.as_str(), "call finished");
}

async fn converse(
    services: Arc<CallServices>,
    call_id: String,
    caller: Option<String>,
    edge: MediaEdge,
    control: CallControl,
) -> Outcome {
    let (internal_tx, mut internal_rx) = mpsc::channel::<Internal>(16);
    let (speaker_tx, mut speaker_rx) = mpsc::channel::<SpeakerEvent>(16);
    let speaker = Speaker::start(services.engines.tts.clone(), edge.play.clone(), speaker_tx);
    let mut live = Live {
        engine: services.engine(caller),
        vad: services.engines.vad(),
        audio: CallerAudio::new(CALLER_AUDIO_SECS),
        speaker,
        edge,
        control,
        internal: internal_tx,
        speaking: None,
        action: None,
        hearings: Vec::new(),
        ending: None,
        turn: None,
        turns: 0,
        no_input_at: None,
        recent: Vec::new(),
        outcome: None,
        call_id,
        services: services.clone(),
    };
    let greeting = live.engine.start(Timestamp::now());
    live.turn = Some(Turn::new(0, None));
    live.apply(greeting, true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(services.call.max_call_secs);
    let mut too_long = false;
    loop {
        let no_input = live.no_input_at;
        tokio::select! {
            event = live.edge.events.recv() => match event {
                Some(CallerEvent::Audio(frame)) => live.on_audio(&frame).await,
                Some(CallerEvent::Dtmf { digit, .. }) => live.on_dtmf(digit).await,
                Some(CallerEvent::Ended) | None => {
                    live.finish_turn().await;
                    live.speaker.interrupt();
                    if let Some(a) = live.action.take() {
                        a.abort();
                    }
                    return live.outcome.unwrap_or(Outcome::CallerHungUp);
                }
            },
            Some(event) = speaker_rx.recv() => live.on_speaker(event).await,
            Some(msg) = internal_rx.recv() => live.on_internal(msg).await,
            _ = async {
                match no_input {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                live.no_input_at = None;
                live.begin_turn(None);
                let out = live.engine.handle(Input::Silence, Timestamp::now());
                live.apply(out, false).await;
            }
            _ = tokio::time::sleep_until(deadline), if !too_long => {
                too_long = true;
                live.interrupt().await;
                live.outcome = Some(Outcome::TooLong);
                live.ending = Some(Ending::HangUp);
                live.say_fixed(TOO_LONG).await;
            }
        }
    }
}

impl Live {
    /// Starts a new caller turn (the previous one, if any, is written to the audit log first).
    fn begin_turn(&mut self, speech_end: Option<Instant>) {
        if let Some(t) = self.turn.take() {
            self.write_turn(t);
        }
        self.turns += 1;
        self.services.metrics.turn();
        self.turn = Some(Turn::new(self.turns, speech_end));
    }

    async fn finish_turn(&mut self) {
        if let Some(t) = self.turn.take() {
            self.write_turn(t);
        }
    }

    /// The turn's audit record (transcript and reply sealed) and its stage metrics.
    fn write_turn(&self, t: Turn) {
        let mut latency = t.latency_ms;
        if let (Some(end), Some(first)) = (t.speech_end, t.first_audio) {
            let total = first.saturating_duration_since(end).as_millis() as u64;
            latency.insert(Stage::Reply.as_str().into(), total);
        }
        if let (Some(decided), Some(first)) = (t.decided, t.first_audio) {
            latency.insert(
                Stage::TtsFirstAudio.as_str().into(),
                first.saturating_duration_since(decided).as_millis() as u64,
            );
        }
        for (stage, ms) in &latency {
            let stage = match stage.as_str() {
                "endpointing" => Stage::Endpointing,
                "asr" => Stage::Asr,
                "nlu" => Stage::Nlu,
                "emr" => Stage::Emr,
                "tts_first_audio" => Stage::TtsFirstAudio,
                "reply" => Stage::Reply,
                _ => continue,
            };
            self.services.metrics.observe(stage, *ms);
        }
        tracing::info!(
            turn = t.number,
            latency_ms = ?latency,
            "turn"
        );
        let verified = self.engine.verified();
        let event = AuditEvent::CallTurn(CallTurn {
            call_id: self.call_id.clone(),
            turn: t.number,
            started_ms: t.started.as_millisecond(),
            ended_ms: Timestamp::now().as_millisecond(),
            identity: if verified.is_some() {
                "verified"
            } else {
                "unverified"
            }
            .into(),
            intent: None,
            actions: t.actions,
            latency_ms: latency,
            patient: verified.map(|v| Confidential::from_patient(v.patient())),
            transcript: t.transcript.map(Confidential::new),
            reply: (!t.reply.is_empty()).then(|| Confidential::new(t.reply.join(" "))),
        });
        let log = self.services.audit.log.clone();
        tokio::spawn(async move {
            if let Err(e) = log.submit(event).await {
                tracing::error!(error = %e, "audit: call turn not recorded");
            }
        });
    }

    async fn on_audio(&mut self, frame: &[i16]) {
        let samples: Vec<f32> = frame.iter().map(|s| *s as f32 / 32768.0).collect();
        self.audio.push(&samples);
        let events = match self.vad.push(&samples) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "VAD failed on a frame");
                return;
            }
        };
        for event in events {
            match event {
                VadEvent::SpeechStart { .. } => {
                    // The caller is talking: no re-prompt while they do.
                    self.no_input_at = None;
                }
                VadEvent::BargeIn { .. } => {
                    if self.speaking.is_some() && self.ending.is_none() {
                        self.services.metrics.barge_in();
                        tracing::info!("barge-in: playback stopped");
                        self.interrupt().await;
                    }
                }
                VadEvent::Pause { start_ms, end_ms } => self.on_pause(start_ms, end_ms),
                VadEvent::TurnEnd { start_ms, end_ms } => self.on_turn_end(start_ms, end_ms).await,
            }
        }
    }

    /// The caller paused inside a turn: recognize what they said so far now, so that if the
    /// pause becomes the end of the turn the transcript is ready sooner. If they go on, the job
    /// is cancelled by the next pause or the turn's end.
    fn on_pause(&mut self, start_ms: u64, end_ms: u64) {
        if self.speaking.is_some() || self.ending.is_some() {
            return;
        }
        self.cancel_speculative();
        // Speculation only uses a recognizer nobody waits for: under load a speculative job
        // would queue ahead of other calls' finished turns, and one the caller's next words make
        // stale still costs its whole encoder pass.
        if !self.services.engines.asr.idle() {
            return;
        }
        let task = self.recognize((start_ms, end_ms));
        self.hearings.push(Hearing {
            span: (start_ms, end_ms),
            turn: None,
            result: None,
            task,
        });
    }

    /// The caller finished a turn: use the recognition started at its last pause when it covers
    /// the same speech, or send the turn to the recognizer now.
    async fn on_turn_end(&mut self, start_ms: u64, end_ms: u64) {
        if self.speaking.is_some() || self.ending.is_some() {
            // Talk-over too short to be barge-in ("mm-hmm", a cough): not a turn.
            self.cancel_speculative();
            return;
        }
        let now_ms = self.audio.now_ms();
        let silence_ms = now_ms.saturating_sub(end_ms);
        let speech_end = Instant::now()
            .checked_sub(Duration::from_millis(silence_ms))
            .unwrap_or_else(Instant::now);
        self.begin_turn(Some(speech_end));
        if let Some(t) = self.turn.as_mut() {
            t.add_ms(Stage::Endpointing, silence_ms);
        }
        self.no_input_at = None;
        let turn = self.turns;
        let span = (start_ms, end_ms);
        match self
            .hearings
            .iter()
            .position(|h| h.turn.is_none() && h.span == span)
        {
            Some(i) => {
                self.hearings[i].turn = Some(turn);
                if let Some((result, asr_ms)) = self.hearings[i].result.take() {
                    self.hearings.remove(i);
                    self.on_heard(turn, result, asr_ms).await;
                }
            }
            None => {
                self.cancel_speculative();
                let task = self.recognize(span);
                self.hearings.push(Hearing {
                    span,
                    turn: Some(turn),
                    result: None,
                    task,
                });
            }
        }
    }

    /// Cancels the speculative recognition, if any (the caller went on speaking).
    fn cancel_speculative(&mut self) {
        self.hearings.retain(|h| {
            if h.turn.is_none() {
                h.task.abort();
            }
            h.turn.is_some()
        });
    }

    /// Cuts the caller's speech in `span` (with some audio either side) out and sends it to the
    /// recognizer; the transcript comes back as `Internal::Heard`.
    fn recognize(&self, span: (u64, u64)) -> tokio::task::JoinHandle<()> {
        let now_ms = self.audio.now_ms();
        let samples = self.audio.slice(
            span.0.saturating_sub(PRE_ROLL_MS),
            (span.1 + POST_ROLL_MS).min(now_ms),
        );
        let asr = self.services.engines.asr.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = asr
                .transcribe(Audio {
                    rate: 16_000,
                    samples,
                })
                .await;
            let asr_ms = started.elapsed().as_millis() as u64;
            let _ = tx
                .send(Internal::Heard {
                    span,
                    result,
                    asr_ms,
                })
                .await;
        })
    }

    /// The recognizer's transcript of turn `turn`: on to the dialog.
    async fn on_heard(&mut self, turn: u32, result: AsrResult, asr_ms: u64) {
        if let Some(t) = self.turn.as_mut().filter(|t| t.number == turn) {
            t.add_ms(Stage::Asr, asr_ms);
        }
        let text = match result {
            Ok(t) => t.text.trim().to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "recognizer failed on a turn");
                String::new()
            }
        };
        // The length only: what was said is PHI.
        tracing::info!(turn, chars = text.len(), asr_ms, "heard");
        if self.ending.is_some() {
            return;
        }
        if text.is_empty() || is_noise(&text) {
            // Nothing usable was said: keep listening.
            self.arm_no_input();
            return;
        }
        self.recent.push(text.clone());
        if self.recent.len() > 3 {
            self.recent.remove(0);
        }
        if let Some(t) = self.turn.as_mut().filter(|t| t.number == turn) {
            t.transcript = Some(text.clone());
        }
        let started = Instant::now();
        let out = self.engine.handle(Input::Speech(text), Timestamp::now());
        if let Some(t) = self.turn.as_mut() {
            t.add_ms(Stage::Nlu, started.elapsed().as_millis() as u64);
        }
        self.apply(out, false).await;
    }

    async fn on_dtmf(&mut self, digit: char) {
        if self.ending.is_some() {
            return;
        }
        if self.speaking.is_some() {
            self.interrupt().await;
        }
        self.no_input_at = None;
        self.begin_turn(Some(Instant::now()));
        let started = Instant::now();
        let out = self.engine.handle(Input::Dtmf(digit), Timestamp::now());
        if let Some(t) = self.turn.as_mut() {
            t.add_ms(Stage::Nlu, started.elapsed().as_millis() as u64);
        }
        self.apply(out, false).await;
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Heard {
                span,
                result,
                asr_ms,
            } => {
                let Some(i) = self.hearings.iter().position(|h| h.span == span) else {
                    return;
                };
                match self.hearings[i].turn {
                    Some(turn) => {
                        self.hearings.remove(i);
                        self.on_heard(turn, result, asr_ms).await;
                    }
                    // Speculative: kept until the turn ends with this span (or is cancelled),
                    // or, when it is already a whole answer to the step ("yes", a full date of
                    // birth) and the caller is still silent, the turn ends here instead of
                    // waiting out the step's full end-of-turn silence.
                    None => {
                        let complete = result.as_ref().is_ok_and(|t| {
                            !is_noise(&t.text) && self.engine.answer_complete(&t.text)
                        });
                        self.hearings[i].result = Some((result, asr_ms));
                        if complete
                            && self.speaking.is_none()
                            && self.ending.is_none()
                            && let Some((start_ms, end_ms)) =
                                self.vad.endpointer().end_turn_now(span.1)
                        {
                            tracing::debug!("turn ended early: a whole answer");
                            self.services.metrics.early_turn_end();
                            self.on_turn_end(start_ms, end_ms).await;
                        }
                    }
                }
            }
            Internal::Emr { reply, emr_ms, op } => {
                self.action = None;
                if let Some(t) = self.turn.as_mut() {
                    t.add_ms(Stage::Emr, emr_ms);
                    t.actions.push(audit::TurnAction {
                        op: op.into(),
                        resource_type: String::new(),
                        resource_id: None,
                        outcome: emr_outcome(&reply).into(),
                    });
                }
                let started = Instant::now();
                let out = self.engine.handle(Input::Emr(reply), Timestamp::now());
                if let Some(t) = self.turn.as_mut() {
                    t.add_ms(Stage::Nlu, started.elapsed().as_millis() as u64);
                }
                self.apply(out, false).await;
            }
            Internal::Slow => {
                if self.action.is_some() && self.speaking.is_none() {
                    self.say_fixed(ONE_MOMENT).await;
                }
            }
        }
    }

    async fn on_speaker(&mut self, event: SpeakerEvent) {
        match event {
            SpeakerEvent::FirstFrame { segment, at } => {
                if let Some(t) = self.turn.as_mut()
                    && t.first_audio.is_none()
                    && t.first_segment.is_some_and(|s| segment >= s)
                {
                    t.first_audio = Some(at);
                }
            }
            SpeakerEvent::Done { segment } => {
                if self.speaking == Some(segment) {
                    self.speaking = None;
                    self.vad.endpointer().set_agent_speaking(false);
                    self.after_speaking().await;
                }
            }
        }
    }

    /// The agent stopped talking: end the call, or wait for the caller.
    async fn after_speaking(&mut self) {
        if self.action.is_some() || self.speaking.is_some() {
            return;
        }
        match self.ending.take() {
            Some(Ending::HangUp) => {
                self.outcome.get_or_insert(Outcome::Completed);
                self.hang_up().await;
            }
            Some(Ending::Escalate { urgent }) => self.escalate(urgent).await,
            None => {
                // The step (a flow id, never PHI) tells a scripted caller which question is open.
                tracing::info!(
                    turn = self.turns,
                    step = self.engine.current_step(),
                    "waiting for the caller"
                );
                self.arm_no_input();
            }
        }
    }

    fn arm_no_input(&mut self) {
        let hearing = self.hearings.iter().any(|h| h.turn.is_some());
        if self.speaking.is_none() && self.action.is_none() && !hearing {
            self.no_input_at = Some(
                tokio::time::Instant::now()
                    + Duration::from_secs(u64::from(self.services.call.no_input_secs)),
            );
        }
    }

    /// Acts on the engine's output: speak, run the action, remember how the call ends.
    async fn apply(&mut self, out: Output, fixed: bool) {
        self.vad
            .endpointer()
            .set_end_of_turn_ms(u64::from(out.silence_ms.max(100)));
        if let Some(end) = out.end {
            self.ending = Some(end);
        }
        if !out.say.is_empty() {
            if let Some(t) = self.turn.as_mut() {
                t.reply.extend(out.say.iter().cloned());
                t.decided.get_or_insert_with(Instant::now);
            }
            let parts = out
                .say
                .into_iter()
                .map(|text| Utterance::Text { text, fixed })
                .collect();
            self.queue(parts).await;
        }
        if let Some(action) = out.action {
            self.start_action(action, Duration::from_millis(out.min_action_ms));
        }
        if self.speaking.is_none() {
            self.after_speaking().await;
        }
    }

    async fn queue(&mut self, parts: Vec<Utterance>) {
        let segment = self.speaker.say(parts).await;
        self.speaking = Some(segment);
        self.vad.endpointer().set_agent_speaking(true);
        self.no_input_at = None;
        if let Some(t) = self.turn.as_mut() {
            t.first_segment.get_or_insert(segment);
        }
    }

    async fn say_fixed(&mut self, text: &str) {
        if let Some(t) = self.turn.as_mut() {
            t.reply.push(text.to_string());
        }
        self.queue(vec![Utterance::Text {
            text: text.to_string(),
            fixed: true,
        }])
        .await;
    }

    fn start_action(&mut self, action: Action, floor: Duration) {
        let emr = self.services.emr.clone();
        let tx = self.internal.clone();
        let slow_after = Duration::from_millis(self.services.call.one_moment_ms);
        let op = action_name(&action);
        self.no_input_at = None;
        self.action = Some(tokio::spawn(async move {
            let started = Instant::now();
            let work = run_action(emr.as_ref(), action);
            tokio::pin!(work);
            let reply = tokio::select! {
                reply = &mut work => reply,
                _ = tokio::time::sleep(slow_after) => {
                    let _ = tx.send(Internal::Slow).await;
                    work.await
                }
            };
            let emr_ms = started.elapsed().as_millis() as u64;
            // Identity checks take the same time whether or not the patient exists.
            if let Some(rest) = floor.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
            let _ = tx.send(Internal::Emr { reply, emr_ms, op }).await;
        }));
    }

    /// Stops the agent's voice now (barge-in, a keypad digit, the end of the call).
    async fn interrupt(&mut self) {
        self.speaker.interrupt();
        self.edge.flush().await;
        self.speaking = None;
        self.vad.endpointer().set_agent_speaking(false);
    }

    async fn hang_up(&mut self) {
        self.edge.hangup().await;
        // The loop ends when the SIP side reports the call over; make sure it does.
        let _ = tokio::time::timeout(HANGUP_WAIT, async {
            while let Some(ev) = self.edge.events.recv().await {
                if ev == CallerEvent::Ended {
                    break;
                }
            }
        })
        .await;
    }

    /// Records the escalation and transfers the call, or promises a callback.
    async fn escalate(&mut self, urgent: bool) {
        let call = &self.services.call;
        let target = if urgent && !call.urgent_transfer_uri.is_empty() {
            call.urgent_transfer_uri.clone()
        } else {
            call.transfer_uri.clone()
        };
        let id = uuid::Uuid::new_v4().to_string();
        let verified = self.engine.verified().is_some();
        let created_ms = Timestamp::now().as_millisecond();
        let summary_sealed = if verified {
            let text = format!(
                "Escalated at step {}. The caller said: {}",
                self.engine.current_step(),
                self.recent.join(" / ")
            );
            self.services
                .audit
                .crypto
                .seal(
                    crate::audit::keys::Purpose::Phi,
                    created_ms,
                    &crate::audit::keys::Binding::new("escalations", &id, "summary"),
                    text.as_bytes(),
                )
                .await
                .map_err(|e| tracing::error!(error = %e, "escalation summary not sealed"))
                .ok()
        } else {
            None
        };
        let record = EscalationRecord {
            id: id.clone(),
            call_id: self.call_id.clone(),
            created_ms,
            reason: self.engine.current_step().to_string(),
            urgent,
            identity: if verified { "verified" } else { "unverified" }.into(),
            outcome: "pending".into(),
            summary_sealed,
        };
        if let Err(e) = self.services.store.insert_escalation(&record).await {
            tracing::error!(error = %e, "escalation not stored");
        }
        let outcome = if target.is_empty() {
            Err(None)
        } else {
            tracing::info!(urgent, "transferring the call to staff");
            match tokio::time::timeout(TRANSFER_TIMEOUT, self.control.transfer(&target)).await {
                Ok(result) => result.map_err(Some),
                Err(_) => Err(Some(crate::sip::transport::TransferError::Timeout)),
            }
        };
        let outcome = match outcome {
            // The caller's phone cannot transfer: call staff and carry the call ourselves.
            Err(Some(
                e @ (crate::sip::transport::TransferError::Refused(_)
                | crate::sip::transport::TransferError::Unsupported),
            )) => {
                tracing::info!(error = %e, "the caller's phone cannot transfer; bridging to staff");
                self.bridge(&target).await.map_err(|()| Some(e))
            }
            other => other,
        };
        let stored = match &outcome {
            Ok(()) => "transferred",
            Err(_) => "callback",
        };
        if let Err(e) = self
            .services
            .store
            .set_escalation_outcome(&id, stored)
            .await
        {
            tracing::error!(error = %e, "escalation outcome not stored");
        }
        match outcome {
            Ok(()) => {
                self.outcome = Some(Outcome::Transferred);
                // The SIP side ends our leg; wait for it.
                self.hang_up().await;
            }
            Err(why) => {
                if let Some(e) = why {
                    tracing::warn!(error = %e, "transfer failed; a callback is recorded");
                }
                self.outcome = Some(Outcome::Callback);
                self.ending = Some(Ending::HangUp);
                self.say_fixed(CALLBACK).await;
            }
        }
    }
}

impl Live {
    /// Calls staff at `target` and carries the call's audio between caller and staff until one
    /// side hangs up. Err when there is no SIP dialer or staff did not answer (the caller is
    /// still on our line).
    async fn bridge(&mut self, target: &str) -> Result<(), ()> {
        let Some(dialer) = self.services.dialer.clone() else {
            return Err(());
        };
        let mut staff = match tokio::time::timeout(TRANSFER_TIMEOUT, dialer.dial(target)).await {
            Ok(Ok(staff)) => staff,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "staff did not answer the bridged call");
                return Err(());
            }
            Err(_) => {
                tracing::warn!("staff did not answer the bridged call in time");
                return Err(());
            }
        };
        tracing::info!(staff_call = staff.id, "bridged to staff");
        let max = Duration::from_secs(self.services.call.max_call_secs);
        let (end, stats) = bridge::run(&mut self.edge, &mut staff.edge, max).await;
        tracing::info!(
            end = ?end,
            to_staff = stats.to_staff,
            to_caller = stats.to_caller,
            dropped = stats.dropped,
            digits = stats.digits,
            "bridge ended"
        );
        Ok(())
    }
}

/// Recognizer output that is not speech: whisper's sound annotations and lone punctuation.
fn is_noise(text: &str) -> bool {
    let t = text.trim();
    let bracketed =
        (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('(') && t.ends_with(')'));
    bracketed || !t.chars().any(|c| c.is_alphanumeric())
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::FindPatient(_) => "find_patient",
        Action::UpcomingAppointments { .. } => "list_appointments",
        Action::FreeSlots(_) => "find_slots",
        Action::Book { .. } => "book",
        Action::Cancel { .. } => "cancel",
        Action::Reschedule { .. } => "reschedule",
        Action::LeaveMessage { .. } => "take_message",
    }
}

fn emr_outcome(reply: &EmrReply) -> &'static str {
    let ok = match reply {
        EmrReply::Patient(r) => r.is_ok(),
        EmrReply::Appointments(r) => r.is_ok(),
        EmrReply::Slots(r) => r.is_ok(),
        EmrReply::Book(r) => r.is_ok(),
        EmrReply::Cancel(r) => r.is_ok(),
        EmrReply::Reschedule(r) => r.is_ok(),
        EmrReply::Message(r) => r.is_ok(),
    };
    if ok { "ok" } else { "error" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_annotations_are_noise() {
        assert!(is_noise("[BLANK_AUDIO]"));
        assert!(is_noise(" (coughs) "));
        assert!(is_noise("..."));
        assert!(!is_noise("I'd like to book an appointment."));
        assert!(!is_noise("0"));
    }
}
