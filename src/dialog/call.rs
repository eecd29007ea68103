//! The thin async shell around the [`Engine`] for one call: runs the engine's EMR actions on an
//! [`Emr`], pads identity lookups to the configured minimum time, and records both sides.
//!
//! Two ways to use it:
//! - a text call ([`run_script`], or [`Session`] line by line for `carevoice flows preview`);
//! - a live call shell (the voice pipeline) drives the [`Engine`] itself and calls [`settle`]
//!   after every [`Engine::start`] / [`Engine::handle`]: `settle` hands each sentence to the
//!   shell's sink as soon as it is decided (so speech can start before the EMR answers), runs the
//!   action the engine asked for with [`run_action_padded`], feeds the result back as
//!   [`Input::Emr`], and repeats until the engine waits for the caller or the call ends.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use super::engine::{Action, EmrReply, Ending, Engine, Input, Output};
use super::understand::UnderstandingService;
use crate::emr::Emr;

/// One line of a call transcript.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// `agent` or `caller`.
    pub who: &'static str,
    pub text: String,
    /// For agent lines: the silence hint after it (ms), when the agent then waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence_ms: Option<u32>,
    /// Whether the caller had passed the identity gate when this line was said (so a reader can
    /// check that nothing about a patient was said before).
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub lines: Vec<Line>,
    /// `hangup`, `escalate`, `escalate_urgent`, or `script_ended`.
    pub ending: &'static str,
    pub verified: bool,
}

/// A sentence the engine decided to say, as [`settle`] hands it to the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub text: String,
    /// Set on the last sentence before the engine waits for the caller: the end-of-turn silence
    /// the speech layer should use for the caller's next turn (ms).
    pub silence_ms: Option<u32>,
    /// Whether the caller had passed the identity gate when the engine decided this sentence.
    pub verified: bool,
}

/// A script line: `DTMF 5` is a key press, an empty line is silence, anything else is speech.
pub fn input_of(line: &str) -> Input {
    let t = line.trim();
    if let Some(d) = t
        .strip_prefix("DTMF ")
        .and_then(|d| d.trim().chars().next())
    {
        Input::Dtmf(d)
    } else if t.is_empty() {
        Input::Silence
    } else {
        Input::Speech(t.to_string())
    }
}

/// Runs one engine [`Action`] on the EMR and wraps the result as the [`EmrReply`] the engine
/// expects back (as `Input::Emr`). Errors come back inside the reply: the engine turns them into
/// the spoken fallback.
pub async fn run_action(emr: &dyn Emr, action: Action) -> EmrReply {
    match action {
        Action::FindPatient(q) => EmrReply::Patient(emr.find_patients(&q).await),
        Action::UpcomingAppointments { patient, from } => {
            EmrReply::Appointments(emr.upcoming_appointments(&patient, from).await)
        }
        Action::FreeSlots(q) => EmrReply::Slots(emr.free_slots(&q).await),
        Action::Book { patient, slot } => EmrReply::Book(emr.book(&patient, &slot, None).await),
        Action::Cancel { appointment } => EmrReply::Cancel(
            emr.cancel(&appointment, "cancelled by the patient by phone")
                .await,
        ),
        Action::Reschedule {
            patient,
            old,
            new_slot,
        } => EmrReply::Reschedule(emr.reschedule(&patient, &old, &new_slot).await),
        Action::LeaveMessage {
            patient,
            text,
            urgency,
        } => EmrReply::Message(emr.leave_message(patient.as_ref(), &text, urgency).await),
    }
}

/// [`run_action`], taking at least `min_action_ms` ([`Output::min_action_ms`]): an identity
/// check then takes the same time whether the patient exists or not.
pub async fn run_action_padded(emr: &dyn Emr, action: Action, min_action_ms: u64) -> EmrReply {
    let started = Instant::now();
    let reply = run_action(emr, action).await;
    if let Some(rest) = Duration::from_millis(min_action_ms).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    reply
}

/// Feeds `out` (from [`Engine::start`] or [`Engine::handle`]) and every follow-up of its actions
/// through the engine: each sentence goes to `sink` as soon as it is decided, each action runs on
/// `emr` (padded to its minimum time) and its result goes back into the engine. Returns when the
/// engine waits for the caller (`None`) or the call ends (`Some(ending)`: hang up or transfer).
pub async fn settle(
    engine: &mut Engine,
    emr: &dyn Emr,
    mut out: Output,
    mut sink: impl FnMut(Said),
) -> Option<Ending> {
    let mut end = None;
    loop {
        end = end.or(out.end);
        let n = out.say.len();
        let verified = engine.verified().is_some();
        for (i, text) in out.say.drain(..).enumerate() {
            let waits = i + 1 == n && out.action.is_none() && out.end.is_none();
            sink(Said {
                text,
                silence_ms: waits.then_some(out.silence_ms),
                verified,
            });
        }
        let Some(action) = out.action.take() else {
            return end;
        };
        let reply = run_action_padded(emr, action, out.min_action_ms).await;
        out = engine.handle(Input::Emr(reply), Timestamp::now());
    }
}

fn ending_name(ending: Option<Ending>) -> &'static str {
    match ending {
        Some(Ending::HangUp) => "hangup",
        Some(Ending::Escalate { urgent: false }) => "escalate",
        Some(Ending::Escalate { urgent: true }) => "escalate_urgent",
        None => "script_ended",
    }
}

/// One text call, turn by turn: what `carevoice call --text` and `carevoice flows preview` run.
pub struct Session<'a> {
    engine: Engine,
    emr: &'a dyn Emr,
    ending: Option<Ending>,
    understanding: Option<&'a UnderstandingService>,
}

impl<'a> Session<'a> {
    /// A session whose engine understands turns itself (its own [`Nlu`](super::nlu::Nlu): for
    /// keyword-only engines and tests).
    pub fn new(engine: Engine, emr: &'a dyn Emr) -> Self {
        Self {
            engine,
            emr,
            ending: None,
            understanding: None,
        }
    }

    /// Turns understood by `service` (off the async runtime, as on a live call).
    pub fn with_understanding(mut self, service: &'a UnderstandingService) -> Self {
        self.understanding = Some(service);
        self
    }

    async fn settle_into(&mut self, out: Output, lines: &mut Vec<Line>) {
        let ending = settle(&mut self.engine, self.emr, out, |s| {
            lines.push(Line {
                who: "agent",
                text: s.text,
                silence_ms: s.silence_ms,
                verified: s.verified,
            })
        })
        .await;
        self.ending = self.ending.or(ending);
    }

    /// The greeting.
    pub async fn start(&mut self) -> Vec<Line> {
        let mut lines = Vec::new();
        let out = self.engine.start(Timestamp::now());
        self.settle_into(out, &mut lines).await;
        lines
    }

    /// One caller line (see [`input_of`]); returns the caller's line and the agent's answer.
    pub async fn turn(&mut self, line: &str) -> Vec<Line> {
        let mut lines = vec![Line {
            who: "caller",
            text: line.to_string(),
            silence_ms: None,
            verified: self.engine.verified().is_some(),
        }];
        let input = match (input_of(line), self.understanding) {
            (Input::Speech(text), Some(service)) => {
                let allowed = self.engine.allowed_intents();
                let understood = service.understand(text.clone(), allowed).await;
                Input::Understood {
                    text,
                    understanding: understood.understanding,
                }
            }
            (input, _) => input,
        };
        let out = self.engine.handle(input, Timestamp::now());
        self.settle_into(out, &mut lines).await;
        lines
    }

    pub fn ended(&self) -> bool {
        self.engine.ended()
    }

    pub fn verified(&self) -> bool {
        self.engine.verified().is_some()
    }

    /// `hangup`, `escalate`, `escalate_urgent`, or `script_ended` while the call goes on.
    pub fn ending(&self) -> &'static str {
        ending_name(self.ending)
    }
}

/// Runs a whole call: the greeting, then one script line per caller turn, until the call ends or
/// the script does.
pub async fn run_script(
    engine: Engine,
    emr: &dyn Emr,
    understanding: Option<&UnderstandingService>,
    script: &[String],
) -> Transcript {
    let mut session = Session::new(engine, emr);
    if let Some(service) = understanding {
        session = session.with_understanding(service);
    }
    let mut lines = session.start().await;
    for line in script {
        if session.ended() {
            break;
        }
        lines.extend(session.turn(line).await);
    }
    Transcript {
        lines,
        ending: session.ending(),
        verified: session.verified(),
    }
}
