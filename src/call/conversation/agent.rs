//! The agent's side of the conversation core: keypad digits and EMR results into the engine, the
//! engine's output into speech, actions and endings, and the turn records.

use std::time::{Duration, Instant};

use super::{Command, Conversation, EscalationRequest, Notice, Outcome, Turn, TurnAction, policy};
use crate::call::metrics::Stage;
use crate::dialog::engine::{EmrReply, Ending, Input, Output};

impl Conversation {
    // ----- keypad, EMR -----

    pub(super) fn on_dtmf(&mut self, digit: char, now: Instant) {
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

    pub(super) fn on_emr(&mut self, reply: EmrReply, ms: u64, now: Instant) {
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
    pub(super) fn apply(&mut self, out: Output, fixed: bool, now: Instant) {
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

    pub(super) fn queue(&mut self, texts: Vec<String>, fixed: bool) {
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

    pub(super) fn say_fixed(&mut self, text: &str, now: Instant) {
        if let Some(t) = self.turn.as_mut() {
            t.reply.push(text.to_string());
            t.decided.get_or_insert(now);
        }
        self.queue(vec![text.to_string()], true);
    }

    pub(super) fn stopped_speaking(&mut self) {
        self.speaking = None;
        self.talk_over = false;
        self.endpointer.set_agent_speaking(false);
    }

    /// Stops the agent's voice now (barge-in, a keypad digit, the end of the call).
    pub(super) fn interrupt(&mut self) {
        if self.speaking.is_some() {
            self.commands.push_back(Command::Flush);
            self.stopped_speaking();
        }
    }

    pub(super) fn barge_in(&mut self) {
        if self.speaking.is_some() {
            self.commands.push_back(Command::Count(Notice::BargeIn));
            self.interrupt();
        }
    }

    /// The agent stopped talking: end the call, go to staff, or wait for the caller.
    pub(super) fn after_speaking(&mut self, now: Instant) {
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

    pub(super) fn arm_no_input(&mut self, now: Instant) {
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

    pub(super) fn hang_up(&mut self, now: Instant) {
        if self.hangup_at.is_none() {
            self.commands.push_back(Command::Hangup);
            self.hangup_at = Some(now + self.settings.hangup_wait);
        }
    }

    // ----- turns and the end -----

    /// Starts a new caller turn (the previous one, if any, goes to the audit log first).
    pub(super) fn begin_turn(&mut self, speech_end: Option<Instant>, now: Instant) {
        self.write_turn(now);
        self.turns += 1;
        self.commands.push_back(Command::Count(Notice::Turn));
        self.turn = Some(Turn::new(self.turns, speech_end, self.wall(now)));
    }

    pub(super) fn write_turn(&mut self, now: Instant) {
        if let Some(t) = self.turn.take() {
            let patient = self.engine.verified().map(|v| v.patient().clone());
            let record = t.finish(self.wall(now), patient);
            self.commands.push_back(Command::AuditTurn(record));
        }
    }

    /// The call is over: the last turn recorded, everything in flight stopped.
    pub(super) fn finish(&mut self, default: Outcome, now: Instant) {
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
