//! Conversation core: the EMR and the audit record.

use super::*;

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
