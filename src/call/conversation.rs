//! The conversation core of one call (sans-IO): every turn-taking decision, and nothing else.
//!
//! Fed [`Event`]s (voice scores, transcripts, understandings, EMR results, speaker progress,
//! keypad digits, the hang-up) with the time they happened, it queues [`Command`]s for the
//! stages around it ([`Conversation::poll_command`]) and says when it next wants to be woken
//! ([`Conversation::next_timeout`]). No clock, no tokio, no sockets: its tests drive whole calls
//! in microseconds with a fake clock.
//!
//! What it decides:
//! - **End of turn.** The endpointer (VAD scores in) ends a turn after the step's silence; at a
//!   short pause it asks for a *speculative* recognition, and when that transcript already
//!   answers the step ([`Engine::answer_complete`]) and the caller is still silent, the turn
//!   ends there instead of waiting out the silence.
//! - **Barge-in, with backchannels.** Speech over the agent for `barge_in_min_ms` opens a
//!   *talk-over*. Speech that goes on to `barge_in_sure_ms` stops the agent at once; a shorter
//!   one is recognized first, and "uh-huh", "okay", "right" let the agent talk on.
//! - **No-input re-prompts, the call's length limit, keypad digits, the ending** (hang up, or the
//!   escalation stage's transfer or callback), "one moment" while the EMR is slow.
//! - **The audit record of every turn**, in order, with per-stage latencies.

mod agent;
mod listening;
mod turn;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use self::turn::Turn;
pub use self::turn::{Outcome, TurnAction, TurnRecord};
use crate::dialog::engine::{Action, EmrReply, Ending, Engine, Input};
use crate::dialog::nlu::Understanding;
use crate::speech::vad::{EndpointParams, Endpointer};

mod policy;
use self::policy::Hearing;

/// Said when an EMR action is slow.
pub const ONE_MOMENT: &str = "One moment, please.";
/// Said when a transfer is not possible.
pub const CALLBACK: &str = "I can't connect you to the front desk right now. They will call you back as soon as possible. Goodbye.";
/// Said when the call has gone on too long.
pub const TOO_LONG: &str = "I'm sorry, we have run out of time on this call. Please call again if you need more help. Goodbye.";

/// A span of caller speech in stream time (ms of audio since the call's first frame).
pub type Span = (u64, u64);

/// Turn-taking settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub endpoint: EndpointParams,
    /// Silence after the agent stops before it re-prompts.
    pub no_input: Duration,
    pub max_call: Duration,
    /// An EMR action slower than this gets "one moment".
    pub one_moment: Duration,
    /// How long the edge has to report the end after we hung up.
    pub hangup_wait: Duration,
    /// Talk-over this long stops the agent without waiting for its words (a backchannel is
    /// shorter).
    pub barge_in_sure_ms: u64,
}

/// What a recognition came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Text(String),
    /// The recognizer failed.
    Failed,
    /// A speculative job the shell did not run (the recognizer was busy with other calls).
    Skipped,
}

/// Something that happened on the call.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // EMR replies are a few per call; boxing only adds a hop
pub enum Event {
    /// Speech probabilities of the next classifier windows of caller audio, in order.
    Voice(Vec<f32>),
    Heard {
        span: Span,
        heard: Heard,
        ms: u64,
    },
    Understood {
        turn: u32,
        understanding: Understanding,
        ms: u64,
    },
    EmrDone {
        reply: EmrReply,
        ms: u64,
    },
    /// The first frame of speaker segment `segment` went out at `at`.
    SpeakerStarted {
        segment: u64,
        at: Instant,
    },
    SpeakerDone {
        segment: u64,
    },
    Dtmf(char),
    /// The caller's leg ended (the caller hung up, or our hang-up or transfer completed).
    Ended,
    /// The escalation stage's result: true when the caller reached staff.
    Escalated {
        reached_staff: bool,
    },
}

/// A transfer to staff, for the escalation stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRequest {
    pub urgent: bool,
    /// The flow step the call was at (no PHI).
    pub step: String,
    /// What a verified caller said on the last turns; `None` before identity.
    pub summary: Option<String>,
}

/// Counted in the call metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Turn,
    BargeIn,
    EarlyTurnEnd,
    Backchannel,
}

/// What the stages should do.
#[derive(Debug)]
pub enum Command {
    /// Recognize the caller's speech in `span` (with some audio either side). `may_skip`: a
    /// speculative job the shell may decline (it then sends `Heard::Skipped`).
    Recognize {
        span: Span,
        may_skip: bool,
    },
    CancelRecognition {
        span: Span,
    },
    Understand {
        turn: u32,
        text: String,
        allowed: Vec<&'static str>,
    },
    /// Speak `texts` as one segment. `fixed`: a prompt said on many calls (cacheable).
    Say {
        segment: u64,
        texts: Vec<String>,
        fixed: bool,
    },
    /// Stop the agent's voice now (drop what is queued).
    Flush,
    /// Run an EMR action, no faster than `floor` (identity checks take the same time either way).
    RunAction {
        action: Action,
        floor: Duration,
    },
    CancelAction,
    Escalate(EscalationRequest),
    Hangup,
    AuditTurn(TurnRecord),
    /// The agent waits for the caller at `step` (a flow id: a test hook, never PHI).
    Waiting {
        turn: u32,
        step: String,
    },
    Count(Notice),
    /// The call is over; nothing follows.
    Finished(Outcome),
}

/// One call's conversation. See the module docs.
pub struct Conversation {
    engine: Engine,
    endpointer: Endpointer,
    settings: Settings,
    commands: VecDeque<Command>,
    /// The wall clock at `origin`, so engine time follows the events' instants.
    origin: (Instant, Timestamp),
    /// The last segment queued and not yet played out; `None` when the agent is silent.
    speaking: Option<u64>,
    next_segment: u64,
    /// The EMR action in flight: its name.
    action: Option<&'static str>,
    slow_at: Option<Instant>,
    hearings: Vec<Hearing>,
    /// Speech over the agent long enough to be barge-in, not yet judged.
    talk_over: bool,
    /// The turn waiting for its understanding, with its text.
    understanding: Option<(u32, String)>,
    ending: Option<Ending>,
    escalating: bool,
    turn: Option<Turn>,
    turns: u32,
    no_input_at: Option<Instant>,
    deadline: Option<Instant>,
    hangup_at: Option<Instant>,
    /// What the caller said on the last turns, for a verified caller's escalation summary.
    recent: VecDeque<String>,
    outcome: Option<Outcome>,
    /// The leg ended while an escalation was in flight.
    leg_ended: bool,
    finished: bool,
}

impl Conversation {
    pub fn new(engine: Engine, settings: Settings, now: Instant, wall: Timestamp) -> Self {
        Conversation {
            engine,
            endpointer: Endpointer::new(settings.endpoint),
            settings,
            commands: VecDeque::new(),
            origin: (now, wall),
            speaking: None,
            next_segment: 0,
            action: None,
            slow_at: None,
            hearings: Vec::new(),
            talk_over: false,
            understanding: None,
            ending: None,
            escalating: false,
            turn: None,
            turns: 0,
            no_input_at: None,
            deadline: None,
            hangup_at: None,
            recent: VecDeque::new(),
            outcome: None,
            leg_ended: false,
            finished: false,
        }
    }

    /// The call is connected: the greeting.
    pub fn start(&mut self, now: Instant) {
        self.deadline = Some(now + self.settings.max_call);
        self.turn = Some(Turn::new(0, None, self.wall(now)));
        let out = self.engine.start(self.wall(now));
        self.apply(out, true, now);
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        [
            self.no_input_at,
            self.deadline,
            self.slow_at,
            self.hangup_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The dialog engine (read-only: for the shell's logs and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn handle(&mut self, event: Event, now: Instant) {
        if self.finished {
            return;
        }
        match event {
            Event::Voice(probs) => self.on_voice(&probs, now),
            Event::Heard { span, heard, ms } => self.on_heard(span, heard, ms, now),
            Event::Understood {
                turn,
                understanding,
                ms,
            } => self.on_understood(turn, understanding, ms, now),
            Event::EmrDone { reply, ms } => self.on_emr(reply, ms, now),
            Event::SpeakerStarted { segment, at } => {
                if let Some(t) = self.turn.as_mut()
                    && t.first_audio.is_none()
                    && t.first_segment.is_some_and(|s| segment >= s)
                {
                    t.first_audio = Some(at);
                }
            }
            Event::SpeakerDone { segment } => {
                if self.speaking == Some(segment) {
                    self.stopped_speaking();
                    self.after_speaking(now);
                }
            }
            Event::Dtmf(digit) => self.on_dtmf(digit, now),
            // A transfer ends the leg before the escalation stage has reported: wait for it
            // (at most the hang-up wait) to know whether the caller reached staff.
            Event::Ended if self.escalating => {
                self.leg_ended = true;
                self.hangup_at
                    .get_or_insert(now + self.settings.hangup_wait);
            }
            Event::Ended => self.finish(Outcome::CallerHungUp, now),
            Event::Escalated { reached_staff } => {
                self.escalating = false;
                if self.leg_ended {
                    let outcome = if reached_staff {
                        Outcome::Transferred
                    } else {
                        Outcome::CallerHungUp
                    };
                    return self.finish(outcome, now);
                }
                if reached_staff {
                    self.outcome = Some(Outcome::Transferred);
                    self.hang_up(now);
                } else {
                    self.outcome = Some(Outcome::Callback);
                    self.ending = Some(Ending::HangUp);
                    self.say_fixed(CALLBACK, now);
                }
            }
        }
    }

    /// The time given by [`next_timeout`](Self::next_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if self.hangup_at.is_some_and(|t| now >= t) {
            self.hangup_at = None;
            let outcome = if self.leg_ended {
                Outcome::CallerHungUp
            } else {
                Outcome::Completed
            };
            return self.finish(outcome, now);
        }
        if self.deadline.is_some_and(|t| now >= t) {
            self.deadline = None;
            self.interrupt();
            self.outcome = Some(Outcome::TooLong);
            self.ending = Some(Ending::HangUp);
            self.say_fixed(TOO_LONG, now);
        }
        if self.slow_at.is_some_and(|t| now >= t) {
            self.slow_at = None;
            if self.action.is_some() && self.speaking.is_none() {
                self.say_fixed(ONE_MOMENT, now);
            }
        }
        if self.no_input_at.is_some_and(|t| now >= t) {
            self.no_input_at = None;
            self.begin_turn(None, now);
            let out = self.engine.handle(Input::Silence, self.wall(now));
            self.apply(out, false, now);
        }
    }

    fn wall(&self, now: Instant) -> Timestamp {
        let since = now.saturating_duration_since(self.origin.0);
        self.origin
            .1
            .saturating_add(SignedDuration::try_from(since).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(self.origin.1)
    }
}

#[cfg(test)]
mod tests;
