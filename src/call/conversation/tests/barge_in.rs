//! Conversation core: barge-in, backchannels and keypad digits.

use super::*;

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
