//! The small judgements the conversation core makes: what a recognizer job is for, which
//! transcripts are not speech, which talk-over is a backchannel.

use super::{Heard, Span};
use crate::dialog::engine::{Action, EmrReply};

/// A recognizer job on the caller's speech: started at a pause inside a turn (speculatively, so
/// recognition overlaps the end-of-turn silence), for talk-over, or when the turn ends.
#[derive(Debug)]
pub(super) struct Hearing {
    pub span: Span,
    /// The turn it answers; `None` while the turn may still go on.
    pub turn: Option<u32>,
    /// The transcript, when it came back before a turn claimed it: (result, recognizer ms).
    pub result: Option<(Heard, u64)>,
    /// Speech over the agent: its words decide whether the agent stops.
    pub talk_over: bool,
    /// For talk-over: the endpointer has ended its turn already.
    pub ended: bool,
}

impl Hearing {
    pub fn new(span: Span, turn: Option<u32>, talk_over: bool) -> Hearing {
        Hearing {
            span,
            turn,
            result: None,
            talk_over,
            ended: false,
        }
    }
}

/// Recognizer output that is not speech: whisper's sound annotations and lone punctuation.
pub fn is_noise(text: &str) -> bool {
    let t = text.trim();
    let bracketed =
        (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('(') && t.ends_with(')'));
    bracketed || !t.chars().any(|c| c.is_alphanumeric())
}

/// Words a listener says to show they follow, not to take the turn. "yes" and "no" are not
/// here: over a question they are answers.
const BACKCHANNEL_WORDS: &[&str] = &[
    "uh", "huh", "uhhuh", "um", "mm", "mmhmm", "mhm", "hmm", "hm", "okay", "ok", "yeah", "right",
    "sure", "alright", "i", "see", "got", "it", "gotcha", "cool", "great",
];

/// Whether talk-over `text` is only backchannel ("uh-huh", "okay", "right, I see").
pub fn is_backchannel(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty()
        && words.len() <= 4
        && words
            .iter()
            .all(|w| BACKCHANNEL_WORDS.contains(&w.as_str()))
}

pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::FindPatient(_) => "find_patient",
        Action::UpcomingAppointments { .. } => "list_appointments",
        Action::FreeSlots(_) => "find_slots",
        Action::Book { .. } => "book",
        Action::Cancel { .. } => "cancel",
        Action::Reschedule { .. } => "reschedule",
        Action::LeaveMessage { .. } => "take_message",
    }
}

pub fn emr_ok(reply: &EmrReply) -> bool {
    match reply {
        EmrReply::Patient(r) => r.is_ok(),
        EmrReply::Appointments(r) => r.is_ok(),
        EmrReply::Slots(r) => r.is_ok(),
        EmrReply::Book(r) => r.is_ok(),
        EmrReply::Cancel(r) => r.is_ok(),
        EmrReply::Reschedule(r) => r.is_ok(),
        EmrReply::Message(r) => r.is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_annotations_are_noise() {
        assert!(is_noise("[BLANK_AUDIO]"));
        assert!(is_noise(" (coughs) "));
        assert!(is_noise("..."));
        assert!(!is_noise("I'd like to book an appointment."));
        assert!(!is_noise("0"));
    }

    #[test]
    fn backchannels_are_short_and_only_listening_words() {
        for b in [
            "Uh-huh.",
            "Okay.",
            "mm-hmm",
            "Right, I see.",
            "Yeah, okay",
            "Got it.",
        ] {
            assert!(is_backchannel(b), "{b}");
        }
        for t in [
            "No.",
            "Yes",
            "Okay, Tuesday then",
            "wait",
            "",
            "okay okay okay okay okay",
        ] {
            assert!(!is_backchannel(t), "{t}");
        }
    }
}
