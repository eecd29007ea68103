//! The thin async shell around the [`Engine`] for one call: runs the engine's EMR actions on an
//! [`Emr`], pads identity lookups to the configured minimum time, and records both sides. Used by
//! `carevoice call --text` (a whole call from a text script, one caller line per turn).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use super::engine::{Action, EmrReply, Ending, Engine, Input, Output};
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub lines: Vec<Line>,
    /// `hangup`, `escalate`, `escalate_urgent`, or `script_ended`.
    pub ending: &'static str,
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

async fn run_action(emr: &dyn Emr, action: Action) -> EmrReply {
    match action {
        Action::FindPatient(q) => EmrReply::Patient(emr.find_patient(&q).await),
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

/// Feeds `out` and every follow-up of its actions through the engine, recording agent lines.
async fn settle(
    engine: &mut Engine,
    emr: &dyn Emr,
    mut out: Output,
    lines: &mut Vec<Line>,
) -> Option<Ending> {
    let mut end = None;
    loop {
        end = end.or(out.end);
        let n = out.say.len();
        for (i, s) in out.say.drain(..).enumerate() {
            let waits = i + 1 == n && out.action.is_none() && out.end.is_none();
            lines.push(Line {
                who: "agent",
                text: s,
                silence_ms: waits.then_some(out.silence_ms),
            });
        }
        let Some(action) = out.action.take() else {
            return end;
        };
        let started = Instant::now();
        let reply = run_action(emr, action).await;
        let floor = Duration::from_millis(out.min_action_ms);
        if let Some(rest) = floor.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        out = engine.handle(Input::Emr(reply), Timestamp::now());
    }
}

/// Runs a whole call: the greeting, then one script line per caller turn, until the call ends or
/// the script does.
pub async fn run_script(mut engine: Engine, emr: &dyn Emr, script: &[String]) -> Transcript {
    let mut lines = Vec::new();
    let mut ending: Option<Ending> = None;
    let out = engine.start(Timestamp::now());
    ending = ending.or(settle(&mut engine, emr, out, &mut lines).await);
    for line in script {
        if engine.ended() {
            break;
        }
        lines.push(Line {
            who: "caller",
            text: line.clone(),
            silence_ms: None,
        });
        let out = engine.handle(input_of(line), Timestamp::now());
        ending = ending.or(settle(&mut engine, emr, out, &mut lines).await);
    }
    let verified = engine.verified().is_some();
    Transcript {
        lines,
        ending: match ending {
            Some(Ending::HangUp) => "hangup",
            Some(Ending::Escalate { urgent: false }) => "escalate",
            Some(Ending::Escalate { urgent: true }) => "escalate_urgent",
            None => "script_ended",
        },
        verified,
    }
}
