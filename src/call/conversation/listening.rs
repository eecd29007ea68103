//! The caller's side of the conversation core: voice scores into the endpointer, pauses and
//! ends of turn, recognitions (speculative, talk-over, final) and their transcripts, and the
//! understanding of each turn.

use std::time::{Duration, Instant};

use super::policy::{Hearing, is_backchannel, is_noise};
use super::{Command, Conversation, Heard, Notice, Span};
use crate::call::metrics::Stage;
use crate::dialog::engine::Input;
use crate::dialog::nlu::Understanding;
use crate::speech::vad::{VadEvent, WINDOW_DURATION_MS};

impl Conversation {
    // ----- the caller's voice -----

    pub(super) fn on_voice(&mut self, probs: &[f32], now: Instant) {
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
    pub(super) fn on_pause(&mut self, span: Span) {
        if self.ending.is_some() || (self.speaking.is_some() && !self.talk_over) {
            return;
        }
        self.cancel_speculative();
        let talk_over = self.speaking.is_some();
        self.recognize(Hearing::new(span, None, talk_over), !talk_over);
    }

    pub(super) fn on_turn_end(&mut self, span: Span, now: Instant) {
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
    pub(super) fn end_turn(&mut self, span: Span, now: Instant) {
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

    pub(super) fn recognize(&mut self, hearing: Hearing, may_skip: bool) {
        self.commands.push_back(Command::Recognize {
            span: hearing.span,
            may_skip,
        });
        self.hearings.push(hearing);
    }

    /// Cancels the recognitions no turn has claimed (the caller went on speaking).
    pub(super) fn cancel_speculative(&mut self) {
        let commands = &mut self.commands;
        self.hearings.retain(|h| {
            if h.turn.is_none() {
                commands.push_back(Command::CancelRecognition { span: h.span });
            }
            h.turn.is_some()
        });
    }

    pub(super) fn on_heard(&mut self, span: Span, heard: Heard, ms: u64, now: Instant) {
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
    pub(super) fn on_transcript(&mut self, turn: u32, heard: Heard, ms: u64, now: Instant) {
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

    pub(super) fn on_understood(
        &mut self,
        turn: u32,
        understanding: Understanding,
        ms: u64,
        now: Instant,
    ) {
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
}
