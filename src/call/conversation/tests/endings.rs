//! Conversation core: escalation and endings.

use super::*;

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
