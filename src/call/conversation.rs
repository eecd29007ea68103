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

mod turn;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use self::turn::Turn;
pub use self::turn::{Outcome, TurnAction, TurnRecord};
use super::metrics::Stage;
use crate::dialog::engine::{Action, EmrReply, Ending, Engine, Input, Output};
use crate::dialog::nlu::Understanding;
use crate::speech::vad::{EndpointParams, Endpointer, VadEvent, WINDOW_DURATION_MS};

mod policy;
use self::policy::{Hearing, is_backchannel, is_noise};

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
            Event::Ended => self.finish(Outcome::CallerHungUp, now),
            Event::Escalated { reached_staff } => {
                self.escalating = false;
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
            return self.finish(Outcome::Completed, now);
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

    // ----- the caller's voice -----

    fn on_voice(&mut self, probs: &[f32], now: Instant) {
        let mut events = Vec::new();
        for p in probs {
            self.endpointer.feed(*p, WINDOW_DURATION_MS, &mut events);
        }
        for event in events {
            match event {
                // The caller is talking: no re-prompt while they do.
                VadEvent::SpeechStart { .. } => self.no_input_at = None,
                VadEvent::BargeIn { .. } => {
                    self.talk_over = self.speaking.is_some() && self.ending.is_none();
                }
                VadEvent::Pause { start_ms, end_ms } => self.on_pause((start_ms, end_ms)),
                VadEvent::TurnEnd { start_ms, end_ms } => self.on_turn_end((start_ms, end_ms), now),
            }
        }
        if self.talk_over
            && self.speaking.is_some()
            && self.endpointer.speech_ms() >= self.settings.barge_in_sure_ms
        {
            self.barge_in();
        }
    }

    /// The caller paused inside a turn: recognize what they said so far now, so that if the
    /// pause becomes the end of the turn the transcript is ready sooner (and talk-over is judged
    /// by its words). If they go on, the job is cancelled by the next pause or the turn's end.
    fn on_pause(&mut self, span: Span) {
        if self.ending.is_some() || (self.speaking.is_some() && !self.talk_over) {
            return;
        }
        self.cancel_speculative();
        let talk_over = self.speaking.is_some();
        self.recognize(Hearing::new(span, None, talk_over), !talk_over);
    }

    fn on_turn_end(&mut self, span: Span, now: Instant) {
        if self.ending.is_some() || (self.speaking.is_some() && !self.talk_over) {
            // Talk-over too short to be barge-in ("mm-hmm", a cough): not a turn.
            return self.cancel_speculative();
        }
        if self.speaking.is_some() {
            // Talk-over that ended before its words were judged: the judgement ends the turn.
            match self
                .hearings
                .iter_mut()
                .find(|h| h.span == span && h.turn.is_none())
            {
                Some(h) => h.ended = true,
                None => {
                    self.cancel_speculative();
                    let mut h = Hearing::new(span, None, true);
                    h.ended = true;
                    self.recognize(h, false);
                }
            }
            return;
        }
        self.end_turn(span, now);
    }

    /// The caller's turn over `span` is final: use the recognition started at its last pause
    /// when it covers the same speech, or recognize it now.
    fn end_turn(&mut self, span: Span, now: Instant) {
        let silence_ms = self.endpointer.now_ms().saturating_sub(span.1);
        let speech_end = now
            .checked_sub(Duration::from_millis(silence_ms))
            .unwrap_or(now);
        self.begin_turn(Some(speech_end), now);
        if let Some(t) = self.turn.as_mut() {
            t.add_ms(Stage::Endpointing, silence_ms);
        }
        self.no_input_at = None;
        let turn = self.turns;
        match self
            .hearings
            .iter()
            .position(|h| h.turn.is_none() && h.span == span)
        {
            Some(i) => {
                self.hearings[i].turn = Some(turn);
                if let Some((heard, ms)) = self.hearings[i].result.take() {
                    self.hearings.remove(i);
                    self.on_transcript(turn, heard, ms, now);
                }
            }
            None => {
                self.cancel_speculative();
                self.recognize(Hearing::new(span, Some(turn), false), false);
            }
        }
    }

    fn recognize(&mut self, hearing: Hearing, may_skip: bool) {
        self.commands.push_back(Command::Recognize {
            span: hearing.span,
            may_skip,
        });
        self.hearings.push(hearing);
    }

    /// Cancels the recognitions no turn has claimed (the caller went on speaking).
    fn cancel_speculative(&mut self) {
        let commands = &mut self.commands;
        self.hearings.retain(|h| {
            if h.turn.is_none() {
                commands.push_back(Command::CancelRecognition { span: h.span });
            }
            h.turn.is_some()
        });
    }

    fn on_heard(&mut self, span: Span, heard: Heard, ms: u64, now: Instant) {
        let Some(i) = self.hearings.iter().position(|h| h.span == span) else {
            return; // cancelled meanwhile
        };
        if let Some(turn) = self.hearings[i].turn {
            self.hearings.remove(i);
            return self.on_transcript(turn, heard, ms, now);
        }
        if heard == Heard::Skipped {
            self.hearings.remove(i);
            return;
        }
        let text = match &heard {
            Heard::Text(t) if !is_noise(t) => Some(t.clone()),
            _ => None,
        };
        if self.hearings[i].talk_over {
            // Talk-over judged by its words: a backchannel lets the agent talk on.
            if text.as_deref().is_none_or(is_backchannel) {
                self.hearings.remove(i);
                self.talk_over = false;
                self.commands.push_back(Command::Count(Notice::Backchannel));
                return;
            }
            self.barge_in();
            self.hearings[i].talk_over = false;
            if self.hearings[i].ended {
                // Its turn is over already: it ends now, with these words.
                self.hearings[i].result = Some((heard, ms));
                return self.end_turn(span, now);
            }
        }
        let complete = text
            .as_deref()
            .is_some_and(|t| self.engine.answer_complete(t));
        self.hearings[i].result = Some((heard, ms));
        if complete
            && self.speaking.is_none()
            && self.ending.is_none()
            && let Some(span) = self.endpointer.end_turn_now(span.1)
        {
            self.commands
                .push_back(Command::Count(Notice::EarlyTurnEnd));
            self.end_turn(span, now);
        }
    }

    /// The transcript of turn `turn`: on to the understanding service.
    fn on_transcript(&mut self, turn: u32, heard: Heard, ms: u64, now: Instant) {
        if let Some(t) = self.turn.as_mut().filter(|t| t.number == turn) {
            t.add_ms(Stage::Asr, ms);
        }
        let text = match heard {
            Heard::Text(t) => t.trim().to_string(),
            Heard::Failed | Heard::Skipped => String::new(),
        };
        if self.ending.is_some() {
            return;
        }
        if text.is_empty() || is_noise(&text) {
            // Nothing usable was said: keep listening.
            return self.arm_no_input(now);
        }
        self.recent.push_back(text.clone());
        if self.recent.len() > 3 {
            self.recent.pop_front();
        }
        if let Some(t) = self.turn.as_mut().filter(|t| t.number == turn) {
            t.transcript = Some(text.clone());
        }
        let allowed = self.engine.allowed_intents();
        self.understanding = Some((turn, text.clone()));
        self.commands.push_back(Command::Understand {
            turn,
            text,
            allowed,
        });
    }

    fn on_understood(&mut self, turn: u32, understanding: Understanding, ms: u64, now: Instant) {
        // The newest turn wins: an understanding of a turn the caller has since talked past
        // is dropped.
        let Some((_, text)) = self.understanding.take_if(|(t, _)| *t == turn) else {
            return;
        };
        if self.ending.is_some() {
            return;
        }
        if let Some(t) = self.turn.as_mut() {
            t.add_ms(Stage::Nlu, ms);
        }
        let input = Input::Understood {
            text,
            understanding,
        };
        let out = self.engine.handle(input, self.wall(now));
        self.apply(out, false, now);
    }

    // ----- keypad, EMR -----

    fn on_dtmf(&mut self, digit: char, now: Instant) {
        if self.ending.is_some() {
            return;
        }
        self.interrupt();
        self.understanding = None;
        self.no_input_at = None;
        self.begin_turn(Some(now), now);
        let out = self.engine.handle(Input::Dtmf(digit), self.wall(now));
        self.apply(out, false, now);
    }

    fn on_emr(&mut self, reply: EmrReply, ms: u64, now: Instant) {
        let Some(op) = self.action.take() else { return };
        self.slow_at = None;
        if let Some(t) = self.turn.as_mut() {
            t.add_ms(Stage::Emr, ms);
            t.actions.push(TurnAction {
                op,
                ok: policy::emr_ok(&reply),
            });
        }
        let out = self.engine.handle(Input::Emr(reply), self.wall(now));
        self.apply(out, false, now);
    }

    // ----- the agent's side -----

    /// Acts on the engine's output: speak, run the action, remember how the call ends.
    fn apply(&mut self, out: Output, fixed: bool, now: Instant) {
        self.endpointer
            .set_end_of_turn_ms(u64::from(out.silence_ms.max(100)));
        if let Some(end) = out.end {
            self.ending = Some(end);
        }
        if !out.say.is_empty() {
            if let Some(t) = self.turn.as_mut() {
                t.reply.extend(out.say.iter().cloned());
                t.decided.get_or_insert(now);
            }
            self.queue(out.say, fixed);
        }
        if let Some(action) = out.action {
            self.no_input_at = None;
            self.action = Some(policy::action_name(&action));
            self.slow_at = Some(now + self.settings.one_moment);
            let floor = Duration::from_millis(out.min_action_ms);
            self.commands
                .push_back(Command::RunAction { action, floor });
        }
        if self.speaking.is_none() {
            self.after_speaking(now);
        }
    }

    fn queue(&mut self, texts: Vec<String>, fixed: bool) {
        let segment = self.next_segment;
        self.next_segment += 1;
        self.commands.push_back(Command::Say {
            segment,
            texts,
            fixed,
        });
        self.speaking = Some(segment);
        self.endpointer.set_agent_speaking(true);
        self.no_input_at = None;
        if let Some(t) = self.turn.as_mut() {
            t.first_segment.get_or_insert(segment);
        }
    }

    fn say_fixed(&mut self, text: &str, now: Instant) {
        if let Some(t) = self.turn.as_mut() {
            t.reply.push(text.to_string());
            t.decided.get_or_insert(now);
        }
        self.queue(vec![text.to_string()], true);
    }

    fn stopped_speaking(&mut self) {
        self.speaking = None;
        self.talk_over = false;
        self.endpointer.set_agent_speaking(false);
    }

    /// Stops the agent's voice now (barge-in, a keypad digit, the end of the call).
    fn interrupt(&mut self) {
        if self.speaking.is_some() {
            self.commands.push_back(Command::Flush);
            self.stopped_speaking();
        }
    }

    fn barge_in(&mut self) {
        if self.speaking.is_some() {
            self.commands.push_back(Command::Count(Notice::BargeIn));
            self.interrupt();
        }
    }

    /// The agent stopped talking: end the call, go to staff, or wait for the caller.
    fn after_speaking(&mut self, now: Instant) {
        if self.action.is_some() || self.speaking.is_some() || self.escalating {
            return;
        }
        match self.ending.take() {
            Some(Ending::HangUp) => {
                self.outcome.get_or_insert(Outcome::Completed);
                self.hang_up(now);
            }
            Some(Ending::Escalate { urgent }) => {
                self.escalating = true;
                let verified = self.engine.verified().is_some();
                let step = self.engine.current_step().to_string();
                let recent = Vec::from(self.recent.clone()).join(" / ");
                let summary = verified
                    .then(|| format!("Escalated at step {step}. The caller said: {recent}"));
                let request = EscalationRequest {
                    urgent,
                    step,
                    summary,
                };
                self.commands.push_back(Command::Escalate(request));
            }
            None => {
                let step = self.engine.current_step().to_string();
                self.commands.push_back(Command::Waiting {
                    turn: self.turns,
                    step,
                });
                self.arm_no_input(now);
            }
        }
    }

    fn arm_no_input(&mut self, now: Instant) {
        let hearing = self.hearings.iter().any(|h| h.turn.is_some());
        if self.speaking.is_none()
            && self.action.is_none()
            && !hearing
            && self.understanding.is_none()
            && self.ending.is_none()
            && !self.escalating
        {
            self.no_input_at = Some(now + self.settings.no_input);
        }
    }

    fn hang_up(&mut self, now: Instant) {
        if self.hangup_at.is_none() {
            self.commands.push_back(Command::Hangup);
            self.hangup_at = Some(now + self.settings.hangup_wait);
        }
    }

    // ----- turns and the end -----

    /// Starts a new caller turn (the previous one, if any, goes to the audit log first).
    fn begin_turn(&mut self, speech_end: Option<Instant>, now: Instant) {
        self.write_turn(now);
        self.turns += 1;
        self.commands.push_back(Command::Count(Notice::Turn));
        self.turn = Some(Turn::new(self.turns, speech_end, self.wall(now)));
    }

    fn write_turn(&mut self, now: Instant) {
        if let Some(t) = self.turn.take() {
            let patient = self.engine.verified().map(|v| v.patient().clone());
            let record = t.finish(self.wall(now), patient);
            self.commands.push_back(Command::AuditTurn(record));
        }
    }

    /// The call is over: the last turn recorded, everything in flight stopped.
    fn finish(&mut self, default: Outcome, now: Instant) {
        self.write_turn(now);
        self.interrupt();
        if self.action.take().is_some() {
            self.commands.push_back(Command::CancelAction);
        }
        for h in self.hearings.drain(..) {
            self.commands
                .push_back(Command::CancelRecognition { span: h.span });
        }
        self.finished = true;
        let outcome = *self.outcome.get_or_insert(default);
        self.commands.push_back(Command::Finished(outcome));
    }
}

#[cfg(test)]
mod tests;
