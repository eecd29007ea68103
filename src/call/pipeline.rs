//! The thin async shell of one call: wires the stages to the [`Conversation`] core and moves
//! events in and commands out. It decides nothing.
//!
//! ```text
//! edge.signals (DTMF, end: never dropped) ──────────────┐ polled first
//! edge.audio ─┬─> recognizer (keeps audio, cuts spans)  │
//!             └─> listener thread (VAD scores) ─┐       │
//! recognizer jobs, understanding, EMR stage ────┴─ inbox┴──> Conversation ──> commands:
//!   Recognize/Cancel -> recognizer · Understand -> understanding service · Say/Flush -> speaker
//!   RunAction -> EMR stage · AuditTurn -> ordered audit writer · Escalate -> escalation stage
//!   Hangup -> edge · Waiting/Finished -> call events feed
//! ```

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::CallServices;
use super::actions::EmrStage;
use super::audit_writer::AuditWriter;
use super::bridge;
use super::conversation::{Command, Conversation, Event, Notice, Outcome, Settings, TurnRecord};
use super::escalation::{self, Escalated};
use super::listener::Listener;
use super::metrics::Stage;
use super::recognizer::Recognizer;
use super::speaker::{Speaker, SpeakerEvent, Utterance};
use crate::media::leg::CallControl;
use crate::media::{CallerSignal, MediaEdge};

/// Results that may wait for the core (voice scores at 31 a second, transcripts, EMR results).
const INBOX: usize = 64;

/// Everything one call's stages hold.
struct Stages {
    services: Arc<CallServices>,
    call_id: String,
    edge: MediaEdge,
    control: Arc<dyn CallControl>,
    speaker: Speaker,
    listener: Listener,
    recognizer: Recognizer,
    emr: EmrStage,
    audit: AuditWriter,
    inbox: mpsc::Sender<Event>,
    understanding: Option<JoinHandle<()>>,
    escalation: Option<oneshot::Receiver<Escalated>>,
}

/// Runs the conversation of one connected call until it ends.
pub async fn converse(
    services: Arc<CallServices>,
    call_id: String,
    caller: Option<String>,
    edge: MediaEdge,
    control: Arc<dyn CallControl>,
) -> Outcome {
    let (inbox, mut events) = mpsc::channel::<Event>(INBOX);
    let (speaker_tx, mut speaker_rx) = mpsc::channel::<SpeakerEvent>(16);
    let listener = match Listener::start(services.engines.voice_scorer(), inbox.clone()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the call's listener thread");
            edge.hangup().await;
            return Outcome::CallerHungUp;
        }
    };
    let mut stages = Stages {
        speaker: Speaker::start(services.engines.tts.clone(), edge.play.clone(), speaker_tx),
        listener,
        recognizer: Recognizer::new(services.engines.asr.clone(), inbox.clone()),
        emr: EmrStage::new(services.emr.clone(), inbox.clone()),
        audit: AuditWriter::start(services.audit.log.clone(), call_id.clone()),
        inbox,
        understanding: None,
        escalation: None,
        edge,
        control,
        call_id,
        services: services.clone(),
    };
    let now = Instant::now();
    let settings = settings(&services);
    let mut core = Conversation::new(services.engine(caller), settings, now, Timestamp::now());
    core.start(now);
    // After the end (or a closed lane) the control lane is not polled again: a closed channel
    // is always ready, and polled first it would starve every other lane.
    let mut signals_open = true;
    let outcome = loop {
        if let Some(outcome) = stages.execute(&mut core).await {
            break outcome;
        }
        let wake = core.next_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            signal = stages.edge.signals.recv(), if signals_open => match signal {
                Some(CallerSignal::Dtmf { digit, .. }) => {
                    core.handle(Event::Dtmf(digit), Instant::now());
                }
                Some(CallerSignal::Ended) | None => {
                    signals_open = false;
                    core.handle(Event::Ended, Instant::now());
                }
            },
            Some(result) = async {
                match stages.escalation.as_mut() {
                    Some(rx) => rx.await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                stages.escalation = None;
                let (reached_staff, bridged) = stages.after_escalation(result).await;
                core.handle(Event::Escalated { reached_staff }, Instant::now());
                if bridged {
                    // The bridge ends when either side hangs up, and hangs up the other.
                    core.handle(Event::Ended, Instant::now());
                }
            }
            Some(event) = speaker_rx.recv() => {
                let event = match event {
                    SpeakerEvent::FirstFrame { segment, at } => Event::SpeakerStarted { segment, at },
                    SpeakerEvent::Done { segment } => Event::SpeakerDone { segment },
                };
                core.handle(event, Instant::now());
            }
            Some(event) = events.recv() => {
                if let Event::Heard { span, .. } = &event {
                    stages.recognizer.finished(*span);
                }
                core.handle(event, Instant::now());
            }
            Some(frame) = stages.edge.audio.recv() => {
                let samples: Vec<f32> = frame.iter().map(|s| *s as f32 / 32768.0).collect();
                stages.recognizer.push(&samples);
                stages.listener.push(samples);
            }
            _ = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => core.handle_timeout(Instant::now()),
        }
    };
    if stages.listener.dropped() > 0 {
        tracing::warn!(
            dropped = stages.listener.dropped(),
            "voice frames dropped: the listener fell behind"
        );
    }
    stages.finish().await;
    outcome
}

fn settings(services: &CallServices) -> Settings {
    let call = &services.call;
    Settings {
        endpoint: services.engines.endpoint,
        no_input: std::time::Duration::from_secs(u64::from(call.no_input_secs)),
        max_call: std::time::Duration::from_secs(call.max_call_secs),
        one_moment: std::time::Duration::from_millis(call.one_moment_ms),
        hangup_wait: std::time::Duration::from_secs(5),
        barge_in_sure_ms: 500,
    }
}

impl Stages {
    /// Carries out every queued command; `Some` when the call is over.
    async fn execute(&mut self, core: &mut Conversation) -> Option<Outcome> {
        while let Some(command) = core.poll_command() {
            match command {
                Command::Recognize { span, may_skip } => {
                    if let Some(declined) = self.recognizer.start(span, may_skip) {
                        core.handle(declined, Instant::now());
                    }
                }
                Command::CancelRecognition { span } => self.recognizer.cancel(span),
                Command::Understand {
                    turn,
                    text,
                    allowed,
                } => {
                    tracing::info!(turn, chars = text.len(), "heard"); // the length only: PHI
                    let service = self.services.understanding.clone();
                    let inbox = self.inbox.clone();
                    let task = tokio::spawn(async move {
                        let u = service.understand(text, allowed).await;
                        let event = Event::Understood {
                            turn,
                            understanding: u.understanding,
                            ms: u.ms,
                        };
                        let _ = inbox.send(event).await;
                    });
                    // The newest turn wins: an older understanding still running is dropped.
                    if let Some(old) = self.understanding.replace(task) {
                        old.abort();
                    }
                }
                Command::Say {
                    segment,
                    texts,
                    fixed,
                } => {
                    let parts = texts
                        .into_iter()
                        .map(|text| Utterance::Text { text, fixed })
                        .collect();
                    self.speaker.say_as(segment, parts).await;
                }
                Command::Flush => {
                    self.speaker.interrupt();
                    self.edge.flush().await;
                }
                Command::RunAction { action, floor } => self.emr.run(action, floor),
                Command::CancelAction => self.emr.cancel(),
                Command::Escalate(request) => {
                    let (tx, rx) = oneshot::channel();
                    let services = self.services.clone();
                    let call_id = self.call_id.clone();
                    let control = self.control.clone();
                    tokio::spawn(async move {
                        let result =
                            escalation::escalate(services, call_id, request, control).await;
                        let _ = tx.send(result);
                    });
                    self.escalation = Some(rx);
                }
                Command::Hangup => self.edge.hangup().await,
                Command::AuditTurn(turn) => {
                    self.observe(&turn);
                    self.audit.write(turn).await;
                }
                Command::Waiting { turn, step } => {
                    tracing::info!(turn, step = %step, "waiting for the caller");
                    let events = &self.services.events;
                    events.publish(&self.call_id, "waiting", Some(turn), Some(step), None);
                }
                Command::Count(notice) => {
                    let m = &self.services.metrics;
                    match notice {
                        Notice::Turn => m.turn(),
                        Notice::BargeIn => {
                            m.barge_in();
                            tracing::info!("barge-in: playback stopped");
                        }
                        Notice::EarlyTurnEnd => {
                            m.early_turn_end();
                            tracing::debug!("turn ended early: a whole answer");
                        }
                        Notice::Backchannel => {
                            m.backchannel();
                            tracing::debug!("talk-over was a backchannel: the agent talks on");
                        }
                    }
                }
                Command::Finished(outcome) => return Some(outcome),
            }
        }
        None
    }

    /// A turn's stage latencies into the metrics and the log (ids and timings only).
    fn observe(&self, turn: &TurnRecord) {
        for (stage, ms) in &turn.latency_ms {
            if let Some(stage) = Stage::from_name(stage) {
                self.services.metrics.observe(stage, *ms);
            }
        }
        tracing::info!(turn = turn.number, latency_ms = ?turn.latency_ms, "turn");
    }

    /// Bridges the caller to a staff leg the escalation placed. Returns whether the caller
    /// reached staff, and whether a bridge carried the call to its end.
    async fn after_escalation(&mut self, result: Escalated) -> (bool, bool) {
        match result {
            Escalated::Transferred => (true, false),
            Escalated::Callback => (false, false),
            Escalated::Bridge(mut staff) => {
                tracing::info!(staff_call = staff.id, "bridged to staff");
                let max = std::time::Duration::from_secs(self.services.call.max_call_secs);
                let (end, stats) = bridge::run(&mut self.edge, &mut staff.edge, max).await;
                tracing::info!(
                    end = ?end,
                    to_staff = stats.to_staff,
                    to_caller = stats.to_caller,
                    dropped = stats.dropped,
                    digits = stats.digits,
                    "bridge ended"
                );
                (true, true)
            }
        }
    }

    /// The call is over: stop the voice and every job, and let the audit records land.
    async fn finish(self) {
        self.speaker.interrupt();
        if let Some(task) = self.understanding {
            task.abort();
        }
        drop(self.recognizer);
        drop(self.emr);
        self.audit.close().await;
    }
}
