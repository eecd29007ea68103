//! Conversation core: greeting, re-prompts and the end of a turn.

use super::*;

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
