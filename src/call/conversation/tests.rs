//! Whole calls through the conversation core with a fake clock: voice scores in 32 ms windows,
//! transcripts, understandings and EMR results injected as the stages would send them, every
//! command checked. No audio, no models, no tokio: the suite runs in milliseconds.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::dialog::flow::Flow;
use crate::dialog::nlu::{Emergency, KeywordNlu, Nlu};
use crate::emr::EmrError;
use crate::speech::vad::WINDOW_DURATION_MS;

const SPEECH: f32 = 0.9;
const QUIET: f32 = 0.0;

fn settings() -> Settings {
    Settings {
        endpoint: EndpointParams::default(),
        no_input: Duration::from_secs(8),
        max_call: Duration::from_secs(600),
        one_moment: Duration::from_millis(700),
        hangup_wait: Duration::from_secs(5),
        barge_in_sure_ms: 500,
    }
}

/// One call on the shipped flow, driven by a fake clock in ms since the call started.
struct Call {
    core: Conversation,
    t0: Instant,
    now: Instant,
    /// Every command so far, in order.
    log: Vec<Command>,
    /// Index of the first command not yet looked at by `take`.
    seen: usize,
}

impl Call {
    fn new() -> Call {
        Self::with(settings())
    }

    fn with(settings: Settings) -> Call {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/clinic.yaml");
        let flow = Arc::new(Flow::load(&path).unwrap());
        let engine = crate::dialog::build_engine(&Config::default(), flow, None);
        let t0 = Instant::now();
        let wall: Timestamp = "2026-11-23T19:00:00Z".parse().unwrap();
        let mut core = Conversation::new(engine, settings, t0, wall);
        core.start(t0);
        let mut call = Call {
            core,
            t0,
            now: t0,
            log: Vec::new(),
            seen: 0,
        };
        call.pump();
        call
    }

    fn ms(&self) -> u64 {
        self.now.duration_since(self.t0).as_millis() as u64
    }

    fn pump(&mut self) {
        while let Some(c) = self.core.poll_command() {
            self.log.push(c);
        }
    }

    /// Moves the clock to `ms`, firing every timeout on the way.
    fn at(&mut self, ms: u64) {
        let to = self.t0 + Duration::from_millis(ms);
        while let Some(t) = self.core.next_timeout().filter(|t| *t <= to) {
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
            self.pump();
        }
        self.now = self.now.max(to);
    }

    fn wait(&mut self, ms: u64) {
        let to = self.ms() + ms;
        self.at(to);
    }

    fn event(&mut self, e: Event) {
        self.core.handle(e, self.now);
        self.pump();
    }

    /// `ms` of audio with probability `p`, window by window, the clock moving with it.
    fn voice(&mut self, p: f32, ms: u64) {
        for _ in 0..ms.div_ceil(WINDOW_DURATION_MS) {
            self.wait(WINDOW_DURATION_MS);
            self.event(Event::Voice(vec![p]));
        }
    }

    fn speak(&mut self, ms: u64) {
        self.voice(SPEECH, ms);
    }

    fn quiet(&mut self, ms: u64) {
        self.voice(QUIET, ms);
    }

    /// Commands since the last `take`.
    fn take(&mut self) -> &[Command] {
        let from = self.seen;
        self.seen = self.log.len();
        &self.log[from..]
    }

    fn last_segment(&self) -> u64 {
        self.log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Say { segment, .. } => Some(*segment),
                _ => None,
            })
            .expect("the agent said something")
    }

    /// The speaker plays the last segment out.
    fn played(&mut self) {
        let segment = self.last_segment();
        let at = self.now;
        self.event(Event::SpeakerStarted { segment, at });
        self.wait(100);
        self.event(Event::SpeakerDone { segment });
    }

    fn said(&self) -> String {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Say { texts, .. } => Some(texts.join(" ")),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn last_said(&self) -> String {
        self.log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Say { texts, .. } => Some(texts.join(" ")),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn waits_at(&self) -> Option<String> {
        self.log.iter().rev().find_map(|c| match c {
            Command::Waiting { step, .. } => Some(step.clone()),
            _ => None,
        })
    }

    fn recognize_spans(&self) -> Vec<(Span, bool)> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Recognize { span, may_skip } => Some((*span, *may_skip)),
                _ => None,
            })
            .collect()
    }

    fn last_recognize(&self) -> Span {
        self.recognize_spans().last().expect("a recognition").0
    }

    fn understand_requests(&self) -> Vec<(u32, String)> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Understand { turn, text, .. } => Some((*turn, text.clone())),
                _ => None,
            })
            .collect()
    }

    fn count(&self, notice: Notice) -> usize {
        self.log
            .iter()
            .filter(|c| matches!(c, Command::Count(n) if *n == notice))
            .count()
    }

    fn flushes(&self) -> usize {
        self.log
            .iter()
            .filter(|c| matches!(c, Command::Flush))
            .count()
    }

    fn has(&self, pred: impl Fn(&Command) -> bool) -> bool {
        self.log.iter().any(pred)
    }

    /// Whether a command since the last `take` matches.
    fn fresh(&self, pred: impl Fn(&Command) -> bool) -> bool {
        self.log[self.seen..].iter().any(pred)
    }

    fn finished_with(&self) -> Option<Outcome> {
        self.log.iter().find_map(|c| match c {
            Command::Finished(o) => Some(*o),
            _ => None,
        })
    }

    fn audit(&self) -> Vec<&TurnRecord> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::AuditTurn(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The transcript of the last recognition comes back after `asr_ms`.
    fn hear(&mut self, text: &str, asr_ms: u64) {
        let span = self.last_recognize();
        self.wait(asr_ms);
        self.event(Event::Heard {
            span,
            heard: Heard::Text(text.into()),
            ms: asr_ms,
        });
    }

    /// The understanding service answers the last request as the keyword rules would.
    fn understand(&mut self, nlu_ms: u64) {
        let (turn, text, allowed) = self
            .log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Understand {
                    turn,
                    text,
                    allowed,
                } => Some((*turn, text.clone(), allowed.clone())),
                _ => None,
            })
            .expect("an understanding request");
        let understanding = KeywordNlu.understand(&text, &allowed);
        self.wait(nlu_ms);
        self.event(Event::Understood {
            turn,
            understanding,
            ms: nlu_ms,
        });
    }

    /// A whole caller turn: speech, the step's silence, the transcript, its understanding.
    fn says(&mut self, text: &str) {
        self.speak(800);
        self.quiet(1300);
        self.hear(text, 150);
        self.understand(1);
    }

    /// Greeting played: the agent waits at how_can_i_help.
    fn greeted() -> Call {
        let mut c = Call::new();
        c.played();
        assert_eq!(c.waits_at().as_deref(), Some("how_can_i_help"));
        c.take();
        c
    }

    /// The caller asked to book and gave a name and date of birth: the identity check runs.
    fn verifying() -> Call {
        let mut c = Call::greeted();
        c.says("I'd like to book an appointment");
        c.played();
        c.says("John Smith");
        c.played();
        c.says("March third nineteen seventy five");
        assert!(
            c.has(|x| matches!(
                x,
                Command::RunAction {
                    action: Action::FindPatient(_),
                    ..
                }
            )),
            "{}",
            c.said()
        );
        c.take();
        c
    }
}

// ----- greeting, waiting, re-prompts -----

#[test]
fn the_greeting_is_said_then_the_agent_waits_for_the_caller() {
    let mut c = Call::new();
    let first = c.take();
    assert!(matches!(
        &first[0],
        Command::Say {
            segment: 0,
            fixed: true,
            ..
        }
    ));
    assert!(
        !c.has(|x| matches!(x, Command::Waiting { .. })),
        "waits only after speaking"
    );
    c.played();
    assert_eq!(c.waits_at().as_deref(), Some("how_can_i_help"));
    assert!(c.said().contains("Thank you for calling"));
}

#[test]
fn silence_after_the_question_brings_a_reprompt() {
    let mut c = Call::greeted();
    c.wait(7_900);
    assert!(!c.fresh(|x| matches!(x, Command::Say { .. })));
    c.wait(200);
    assert!(
        c.last_said().starts_with("Sorry, I didn't catch that"),
        "{}",
        c.said()
    );
    // The greeting's turn went to the audit log when the re-prompt's turn began.
    assert_eq!(c.audit()[0].number, 0);
}

#[test]
fn a_caller_who_starts_speaking_is_not_reprompted() {
    let mut c = Call::greeted();
    c.wait(7_500);
    c.speak(1_000);
    assert!(
        !c.fresh(|x| matches!(x, Command::Say { .. })),
        "{}",
        c.said()
    );
}

#[test]
fn repeated_silence_goes_to_staff_after_the_retries() {
    let mut c = Call::greeted();
    for _ in 0..3 {
        c.wait(8_100);
        c.played();
    }
    assert!(c.said().contains("member of our staff"), "{}", c.said());
    assert!(c.has(|x| matches!(x, Command::Escalate(r) if !r.urgent)));
}

// ----- end of turn -----

#[test]
fn a_pause_starts_a_speculative_recognition_the_turn_end_claims() {
    let mut c = Call::greeted();
    c.speak(800);
    c.quiet(300);
    let spans = c.recognize_spans();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].1, "speculative jobs may be skipped");
    c.quiet(700);
    // The step's 900 ms silence ended the turn: no second job for the same speech.
    assert_eq!(c.recognize_spans().len(), 1);
    c.hear("I'd like to book an appointment", 150);
    assert_eq!(
        c.understand_requests(),
        vec![(1, "I'd like to book an appointment".into())]
    );
}

#[test]
fn an_understood_request_moves_the_flow_on() {
    let mut c = Call::greeted();
    c.says("I'd like to book an appointment");
    assert!(
        c.last_said().contains("first and last name"),
        "{}",
        c.said()
    );
}

#[test]
fn a_whole_answer_at_a_pause_ends_the_turn_early() {
    let mut c = Call::greeted();
    c.says("I'd like to book an appointment");
    c.played();
    c.take();
    c.speak(900);
    c.quiet(300); // the pause: a speculative job
    let span = c.last_recognize();
    c.hear("John Smith", 100);
    assert_eq!(c.count(Notice::EarlyTurnEnd), 1);
    // The ask_name step waits 1000 ms of silence; the turn ended at ~400 ms.
    assert_eq!(c.understand_requests().last().unwrap().1, "John Smith");
    let turn = c.core.turn.as_ref().unwrap();
    assert!(
        turn.latency_ms["endpointing"] < 1_000,
        "{:?}",
        turn.latency_ms
    );
    assert_eq!(c.recognize_spans().last().unwrap().0, span);
}

#[test]
fn a_partial_answer_at_a_pause_waits_for_the_silence() {
    let mut c = Call::greeted();
    c.speak(600);
    c.quiet(300);
    c.hear("I'd like to", 100);
    assert_eq!(c.count(Notice::EarlyTurnEnd), 0);
    assert!(c.understand_requests().is_empty());
    c.quiet(600);
    // The silence ended the turn and the stored transcript is used at once.
    assert_eq!(c.understand_requests(), vec![(1, "I'd like to".into())]);
    assert_eq!(c.recognize_spans().len(), 1);
}

#[test]
fn speech_after_a_pause_cancels_the_speculative_job() {
    let mut c = Call::greeted();
    c.speak(600);
    c.quiet(300);
    let first = c.last_recognize();
    c.speak(600);
    c.quiet(300);
    assert!(c.has(|x| matches!(x, Command::CancelRecognition { span } if *span == first)));
    let second = c.last_recognize();
    assert_ne!(first, second);
    assert_eq!(second.0, first.0, "the same turn, longer");
    // The first job's late answer is ignored.
    c.event(Event::Heard {
        span: first,
        heard: Heard::Text("I'd".into()),
        ms: 100,
    });
    c.quiet(700);
    c.hear("I'd like to cancel my appointment", 100);
    assert_eq!(c.understand_requests().len(), 1);
    assert_eq!(
        c.understand_requests()[0].1,
        "I'd like to cancel my appointment"
    );
}

#[test]
fn a_skipped_speculative_job_is_recognized_when_the_turn_ends() {
    let mut c = Call::greeted();
    c.speak(600);
    c.quiet(300);
    let span = c.last_recognize();
    c.event(Event::Heard {
        span,
        heard: Heard::Skipped,
        ms: 0,
    });
    c.quiet(700);
    let spans = c.recognize_spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1], (span, false), "a finished turn is never skipped");
}

#[test]
fn noise_from_the_recognizer_keeps_the_agent_listening() {
    let mut c = Call::greeted();
    c.speak(400);
    c.quiet(1_000);
    c.hear("[BLANK_AUDIO]", 100);
    assert!(c.understand_requests().is_empty());
    assert!(!c.fresh(|x| matches!(x, Command::Say { .. })));
    // ... and a re-prompt comes if nothing else is said.
    c.wait(8_100);
    assert!(c.last_said().starts_with("Sorry"), "{}", c.said());
}

#[test]
fn a_failed_recognition_keeps_the_agent_listening() {
    let mut c = Call::greeted();
    c.speak(400);
    c.quiet(1_000);
    let span = c.last_recognize();
    c.event(Event::Heard {
        span,
        heard: Heard::Failed,
        ms: 90,
    });
    assert!(c.understand_requests().is_empty());
    assert!(
        c.core.next_timeout().is_some(),
        "the no-input timer is armed"
    );
}

#[test]
fn a_click_is_not_a_turn() {
    let mut c = Call::greeted();
    c.speak(64); // shorter than the 96 ms a start needs
    c.quiet(1_500);
    assert!(c.recognize_spans().is_empty());
}

// ----- barge-in and backchannels -----

#[test]
fn long_talk_over_stops_the_agent_without_waiting_for_words() {
    let mut c = Call::new();
    c.wait(2_000);
    c.speak(450);
    assert_eq!(c.flushes(), 0, "not before barge_in_sure_ms");
    c.speak(100);
    assert_eq!(c.flushes(), 1);
    assert_eq!(c.count(Notice::BargeIn), 1);
    // Then it is the caller's turn like any other.
    c.speak(300);
    c.quiet(1_000);
    c.hear("I need to cancel", 120);
    assert_eq!(c.understand_requests().len(), 1);
}

#[test]
fn a_cough_over_the_agent_is_ignored() {
    let mut c = Call::new();
    c.speak(200);
    c.quiet(1_500);
    assert_eq!(c.flushes(), 0);
    assert!(c.recognize_spans().is_empty());
    assert!(c.understand_requests().is_empty());
}

#[test]
fn a_backchannel_over_the_agent_does_not_interrupt() {
    let mut c = Call::new();
    c.speak(380);
    c.quiet(300); // the pause: its words are recognized (never skipped)
    let spans = c.recognize_spans();
    assert_eq!(spans.len(), 1);
    assert!(!spans[0].1);
    c.hear("Uh-huh.", 120);
    assert_eq!(c.flushes(), 0);
    assert_eq!(c.count(Notice::Backchannel), 1);
    c.quiet(1_000);
    c.played();
    assert_eq!(c.waits_at().as_deref(), Some("how_can_i_help"));
    assert!(c.understand_requests().is_empty());
}

#[test]
fn short_talk_over_with_real_words_interrupts_and_is_the_next_turn() {
    let mut c = Call::new();
    c.speak(400);
    c.quiet(300);
    c.hear("Cancel my appointment", 150);
    assert_eq!(c.flushes(), 1);
    assert_eq!(c.count(Notice::BargeIn), 1);
    c.quiet(700);
    assert_eq!(
        c.understand_requests(),
        vec![(1, "Cancel my appointment".into())]
    );
    assert_eq!(
        c.recognize_spans().len(),
        1,
        "the talk-over's transcript is reused"
    );
}

#[test]
fn talk_over_whose_turn_ended_before_its_words_came_back() {
    let mut c = Call::new();
    c.speak(400);
    c.quiet(1_200); // past the end-of-turn silence, still unjudged
    assert!(c.understand_requests().is_empty());
    c.hear("I want to book", 400);
    assert_eq!(c.flushes(), 1);
    assert_eq!(c.understand_requests(), vec![(1, "I want to book".into())]);
}

#[test]
fn nothing_said_after_the_ending_is_decided_is_a_turn() {
    let mut c = Call::greeted();
    c.says("that's all, goodbye");
    assert!(c.last_said().contains("Goodbye"), "{}", c.said());
    c.take();
    c.speak(800);
    c.quiet(1_500);
    assert!(
        c.recognize_spans()
            .iter()
            .all(|(s, _)| s.1 < 2_000 || c.flushes() == 0)
    );
    assert_eq!(c.flushes(), 0, "the goodbye is not interrupted");
}

// ----- keypad -----

#[test]
fn a_digit_interrupts_the_agent_and_routes() {
    let mut c = Call::new();
    c.wait(1_000);
    c.event(Event::Dtmf('1'));
    assert_eq!(c.flushes(), 1);
    // 1 = book, which needs identity first.
    assert!(
        c.last_said().contains("first and last name"),
        "{}",
        c.said()
    );
}

#[test]
fn zero_goes_to_staff_after_the_prompt_plays() {
    let mut c = Call::greeted();
    c.event(Event::Dtmf('0'));
    assert!(c.last_said().contains("member of our staff"));
    assert!(
        !c.has(|x| matches!(x, Command::Escalate(_))),
        "not over the prompt"
    );
    c.played();
    let request = c.log.iter().find_map(|x| match x {
        Command::Escalate(r) => Some(r.clone()),
        _ => None,
    });
    let request = request.expect("escalated");
    assert!(!request.urgent);
    assert_eq!(
        request.summary, None,
        "nothing of an unverified caller's words"
    );
}

#[test]
fn digits_after_the_ending_are_ignored() {
    let mut c = Call::greeted();
    c.event(Event::Dtmf('0'));
    c.take();
    c.event(Event::Dtmf('1'));
    assert!(c.take().is_empty());
}

#[test]
fn a_digit_supersedes_an_understanding_still_running() {
    let mut c = Call::greeted();
    c.speak(800);
    c.quiet(1_000);
    c.hear("I want to cancel", 100);
    let (turn, _) = c.understand_requests()[0].clone();
    c.event(Event::Dtmf('1'));
    let before = c.said();
    c.event(Event::Understood {
        turn,
        understanding: Understanding::Intent("cancel"),
        ms: 300,
    });
    assert_eq!(c.said(), before, "the stale understanding changed nothing");
}

// ----- escalation and endings -----

#[test]
fn reaching_staff_hangs_up_as_transferred() {
    let mut c = Call::greeted();
    c.event(Event::Dtmf('0'));
    c.played();
    c.event(Event::Escalated {
        reached_staff: true,
    });
    assert!(c.has(|x| matches!(x, Command::Hangup)));
    c.event(Event::Ended);
    assert_eq!(c.finished_with(), Some(Outcome::Transferred));
}

#[test]
fn a_transfer_that_ends_the_leg_before_the_stage_reports_is_still_transferred() {
    let mut c = Call::greeted();
    c.event(Event::Dtmf('0'));
    c.played();
    // The REFER succeeded: the SIP side ends our leg while the stage still writes its outcome.
    c.event(Event::Ended);
    assert!(c.finished_with().is_none());
    c.wait(30);
    c.event(Event::Escalated {
        reached_staff: true,
    });
    assert_eq!(c.finished_with(), Some(Outcome::Transferred));
}

#[test]
fn a_caller_who_hangs_up_during_an_escalation_that_never_reports_is_let_go() {
    let mut c = Call::greeted();
    c.event(Event::Dtmf('0'));
    c.played();
    c.event(Event::Ended);
    c.wait(5_100);
    assert_eq!(c.finished_with(), Some(Outcome::CallerHungUp));
}

#[test]
fn when_staff_cannot_be_reached_a_callback_is_promised_then_the_call_ends() {
    let mut c = Call::greeted();
    c.event(Event::Dtmf('0'));
    c.played();
    c.event(Event::Escalated {
        reached_staff: false,
    });
    assert_eq!(c.last_said(), CALLBACK);
    assert!(
        !c.has(|x| matches!(x, Command::Hangup)),
        "not over the callback prompt"
    );
    c.played();
    assert!(c.has(|x| matches!(x, Command::Hangup)));
    c.event(Event::Ended);
    assert_eq!(c.finished_with(), Some(Outcome::Callback));
}

#[test]
fn an_emergency_goes_to_staff_urgently() {
    let mut c = Call::greeted();
    c.speak(800);
    c.quiet(1_000);
    c.hear("I have chest pain", 100);
    let turn = c.understand_requests()[0].0;
    c.event(Event::Understood {
        turn,
        understanding: Understanding::Emergency(Emergency::Medical),
        ms: 1,
    });
    assert!(c.said().contains("911"), "{}", c.said());
    c.played();
    assert!(c.has(|x| matches!(x, Command::Escalate(r) if r.urgent)));
}

#[test]
fn goodbye_hangs_up_as_completed() {
    let mut c = Call::greeted();
    c.says("no that's all, goodbye");
    c.played();
    assert!(c.has(|x| matches!(x, Command::Hangup)));
    c.event(Event::Ended);
    assert_eq!(c.finished_with(), Some(Outcome::Completed));
}

#[test]
fn a_hang_up_the_edge_never_confirms_ends_after_the_wait() {
    let mut c = Call::greeted();
    c.says("goodbye");
    c.played();
    assert!(c.finished_with().is_none());
    c.wait(5_100);
    assert_eq!(c.finished_with(), Some(Outcome::Completed));
    assert!(c.core.finished());
    assert_eq!(c.core.next_timeout(), None);
}

#[test]
fn the_caller_hanging_up_mid_reply_stops_the_voice_and_records_the_turn() {
    let mut c = Call::new();
    c.wait(1_000);
    c.event(Event::Ended);
    assert_eq!(c.flushes(), 1);
    assert_eq!(c.audit().len(), 1);
    assert_eq!(c.finished_with(), Some(Outcome::CallerHungUp));
    // Nothing after the end.
    c.take();
    c.event(Event::Dtmf('1'));
    c.speak(500);
    assert!(c.take().is_empty());
}

#[test]
fn hanging_up_while_a_turn_is_recognized_cancels_the_job() {
    let mut c = Call::greeted();
    c.speak(800);
    c.quiet(1_000);
    let span = c.last_recognize();
    c.event(Event::Ended);
    assert!(c.has(|x| matches!(x, Command::CancelRecognition { span: s } if *s == span)));
    assert_eq!(c.finished_with(), Some(Outcome::CallerHungUp));
}

#[test]
fn a_call_past_its_length_limit_is_ended_politely() {
    let mut s = settings();
    s.max_call = Duration::from_secs(30);
    let mut c = Call::with(s);
    c.at(30_001);
    assert_eq!(c.flushes(), 1, "the greeting was still playing");
    assert_eq!(c.last_said(), TOO_LONG);
    c.played();
    assert!(c.has(|x| matches!(x, Command::Hangup)));
    c.event(Event::Ended);
    assert_eq!(c.finished_with(), Some(Outcome::TooLong));
}

// ----- the EMR -----

#[test]
fn identity_runs_on_the_emr_with_a_floor_and_a_failure_retries() {
    let mut c = Call::verifying();
    let floor = c.log.iter().find_map(|x| match x {
        Command::RunAction { floor, .. } => Some(*floor),
        _ => None,
    });
    assert!(
        floor.is_some_and(|f| f > Duration::ZERO),
        "identity checks have a floor"
    );
    c.event(Event::EmrDone {
        reply: EmrReply::Patient(Ok(Vec::new())),
        ms: 40,
    });
    assert!(c.said().contains("couldn't confirm"), "{}", c.said());
}

#[test]
fn a_slow_emr_gets_one_moment() {
    let mut c = Call::verifying();
    c.played(); // whatever was said before the check
    c.wait(700);
    assert_eq!(c.last_said(), ONE_MOMENT);
}

#[test]
fn a_fast_emr_gets_no_one_moment() {
    let mut c = Call::verifying();
    c.wait(100);
    c.event(Event::EmrDone {
        reply: EmrReply::Patient(Ok(Vec::new())),
        ms: 100,
    });
    c.wait(2_000);
    assert!(!c.said().contains(ONE_MOMENT));
}

#[test]
fn the_caller_speaking_while_the_emr_answers_changes_nothing() {
    let mut c = Call::verifying();
    c.says("hello are you there");
    let said = c.said();
    assert!(
        !said.contains("Sorry"),
        "no re-prompt while the EMR works: {said}"
    );
    c.event(Event::EmrDone {
        reply: EmrReply::Patient(Err(EmrError::Timeout)),
        ms: 40,
    });
    assert!(
        c.said().contains("can't reach the schedule"),
        "{}",
        c.said()
    );
}

#[test]
fn no_reprompt_while_the_emr_works() {
    let mut c = Call::verifying();
    c.played();
    c.wait(20_000);
    assert!(!c.said().contains("Sorry"), "{}", c.said());
}

#[test]
fn hanging_up_during_an_emr_action_cancels_it() {
    let mut c = Call::verifying();
    c.event(Event::Ended);
    assert!(c.has(|x| matches!(x, Command::CancelAction)));
    assert_eq!(c.finished_with(), Some(Outcome::CallerHungUp));
    // A late result is ignored.
    c.take();
    c.event(Event::EmrDone {
        reply: EmrReply::Patient(Ok(Vec::new())),
        ms: 40,
    });
    assert!(c.take().is_empty());
}

// ----- the audit record -----

#[test]
fn every_turn_is_recorded_in_order_with_its_stage_latencies() {
    let mut c = Call::greeted();
    c.speak(800);
    c.quiet(928); // the 29th quiet window passes the step's 900 ms: the turn ends there
    c.hear("I'd like to book an appointment", 150);
    c.understand(7);
    let segment = c.last_segment();
    c.wait(40);
    let at = c.now;
    c.event(Event::SpeakerStarted { segment, at });
    c.event(Event::SpeakerDone { segment });
    c.event(Event::Ended);
    let turns = c.audit();
    assert_eq!(
        turns.iter().map(|t| t.number).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let t = turns[1];
    assert_eq!(
        t.transcript.as_deref(),
        Some("I'd like to book an appointment")
    );
    assert!(t.reply.join(" ").contains("first and last name"));
    assert_eq!(t.latency_ms["asr"], 150);
    assert_eq!(t.latency_ms["nlu"], 7);
    let endpointing = t.latency_ms["endpointing"];
    assert_eq!(endpointing, 928);
    // Reply = endpointing + ASR + NLU + 40 ms to the first frame.
    assert_eq!(t.latency_ms["reply"], endpointing + 150 + 7 + 40);
    assert_eq!(t.latency_ms["tts_first_audio"], 40);
    assert!(t.patient.is_none());
    assert!(t.started <= t.ended);
    // The greeting's first frame played at once.
    assert_eq!(turns[0].latency_ms["tts_first_audio"], 0);
}

#[test]
fn engine_time_follows_the_events_clock() {
    let mut c = Call::greeted();
    c.wait(60_000);
    c.event(Event::Ended);
    let last = c.audit().last().copied().unwrap();
    assert!(last.ended.as_second() >= 60, "{:?}", last.ended);
}

#[test]
fn a_whole_call_runs_far_faster_than_real_time() {
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let mut c = Call::greeted();
        c.says("I'd like to book an appointment");
        c.played();
        c.says("John Smith");
        c.played();
        c.says("March third nineteen seventy five");
        c.event(Event::EmrDone {
            reply: EmrReply::Patient(Ok(Vec::new())),
            ms: 40,
        });
        c.played();
        c.event(Event::Ended);
        assert!(c.finished_with().is_some());
    }
    // 20 calls of about 20 s of audio each.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
