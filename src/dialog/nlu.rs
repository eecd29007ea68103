//! Understanding a caller's turn: which intent (among the labels the current step allows), and
//! whether it is an emergency or a general question. [`KeywordNlu`] is the deterministic fast
//! path; a model-backed [`Nlu`] can decide what it cannot.

use super::parse::{normalize, yes_no};

/// What kind of emergency a caller described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emergency {
    /// Call the emergency number (911).
    Medical,
    /// Call the crisis line (988).
    Crisis,
}

/// A general question answered from clinic facts, no identity needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Hours,
    Address,
    Parking,
    Insurance,
    Records,
}

/// What the caller's turn means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Understanding {
    Emergency(Emergency),
    Question(Topic),
    /// One of the flow's intent labels (`book`, `cancel`, `yes`, ...).
    Intent(&'static str),
    Unknown,
}

impl Understanding {
    /// A short label: `book`, `question:hours`, `emergency`, `crisis`, `unknown`, ...
    pub fn label(&self) -> String {
        match self {
            Self::Emergency(Emergency::Medical) => "emergency".into(),
            Self::Emergency(Emergency::Crisis) => "crisis".into(),
            Self::Question(t) => format!("question:{}", format!("{t:?}").to_lowercase()),
            Self::Intent(l) => (*l).to_string(),
            Self::Unknown => "unknown".into(),
        }
    }
}

/// Every intent label a caller's first turn may carry (what the bench and accuracy test allow).
pub const ALL_INTENTS: &[&str] = &[
    "book",
    "cancel",
    "reschedule",
    "appointments",
    "message",
    "human",
    "yes",
    "no",
    "goodbye",
    "third_party",
];

/// The labelled utterances of `benches/data/intents.tsv`: (label, text).
pub fn labelled_set(tsv: &str) -> Vec<(&str, &str)> {
    tsv.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .collect()
}

/// Classifies a turn. `allowed` lists the intent labels the current step can act on; the result
/// is one of them, an emergency, a question, or `Unknown`.
pub trait Nlu: Send {
    fn understand(&mut self, text: &str, allowed: &[&'static str]) -> Understanding;
}

/// Words of the intents that speech recognition misspells ("rescedule", "apointment", "cancle").
/// "message" is not here: one edit away is "massage", which a clinic's caller may well mean.
const VOCABULARY: &[&str] = &[
    "reschedule",
    "rescheduled",
    "appointment",
    "appointments",
    "cancel",
    "cancelled",
    "canceled",
    "prescription",
    "emergency",
];

/// `normalized` with each word of six or more letters that is one edit (two, from nine letters)
/// from a [`VOCABULARY`] word read as that word.
fn respell(normalized: &str) -> String {
    normalized
        .split(' ')
        .map(|w| {
            let letters = w.chars().count();
            if letters < 6 || VOCABULARY.contains(&w) {
                return w;
            }
            let max = if letters >= 9 { 2 } else { 1 };
            VOCABULARY
                .iter()
                .map(|v| (strsim::damerau_levenshtein(w, v), *v))
                .filter(|(d, _)| *d <= max)
                .min_by_key(|(d, _)| *d)
                .map_or(w, |(_, v)| v)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_any(padded: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| padded.contains(&format!(" {p} ")))
}

const MEDICAL: &[&str] = &[
    "chest pain",
    "chest pains",
    "pain in my chest",
    "chest hurts",
    "chest is tight",
    "chest feels tight",
    "chest feels really tight",
    "chest feels heavy",
    "pressure in my chest",
    "arm is numb",
    "can't breathe",
    "cant breathe",
    "cannot breathe",
    "can not breathe",
    "trouble breathing",
    "hard to breathe",
    "not breathing",
    "stopped breathing",
    "short of breath",
    "heart attack",
    "having a stroke",
    "a stroke",
    "face is drooping",
    "unconscious",
    "passed out",
    "won't wake up",
    "wont wake up",
    "bleeding a lot",
    "bleeding heavily",
    "won't stop bleeding",
    "wont stop bleeding",
    "overdose",
    "overdosed",
    "too many pills",
    "too much of my medicine",
    "collapsed",
    "isn't waking up",
    "not waking up",
    "seizure",
    "choking",
    "anaphylaxis",
    "throat is closing",
    "throat is swelling",
    "allergic reaction",
    "emergency",
    "dying",
    "ambulance",
    "call 911",
    "call nine one one",
];

const CRISIS: &[&str] = &[
    "hurt myself",
    "hurting myself",
    "harm myself",
    "harming myself",
    "kill myself",
    "killing myself",
    "suicide",
    "suicidal",
    "end my life",
    "take my life",
    "want to die",
    "don't want to live",
    "dont want to live",
    "self harm",
    "cut myself",
    "cutting myself",
];

const HUMAN: &[&str] = &[
    "person",
    "human",
    "real person",
    "somebody",
    "someone",
    "operator",
    "receptionist",
    "representative",
    "agent",
    "staff",
    "front desk",
    "transfer me",
    "speak to a",
    "talk to a",
    "speak with a",
    "talk with a",
    "speak to the nurse",
    "talk to the nurse",
    "speak to a nurse",
    "live person",
];

const THIRD_PARTY: &[&str] = &[
    "calling for my",
    "calling about my",
    "calling on behalf",
    "on behalf of",
    "for my mother",
    "for my mom",
    "for my father",
    "for my dad",
    "for my son",
    "for my daughter",
    "for my wife",
    "for my husband",
    "for my child",
    "for my kid",
    "for my grandmother",
    "for my grandfather",
    "for my partner",
    "for my patient",
    "my mother's",
    "my mom's",
    "my father's",
    "my dad's",
    "my son's",
    "my daughter's",
    "my wife's",
    "my husband's",
    "i'm the doctor",
    "i am the doctor",
    "i'm a doctor",
    "i am a doctor",
    "i'm her doctor",
    "i'm his doctor",
    "this is doctor",
    "this is dr",
    "i'm a nurse",
    "i am a nurse",
    "i'm the nurse",
    "from the hospital",
    "from the pharmacy",
    "i'm his",
    "i'm her",
    "caregiver",
    "power of attorney",
    "guardian",
    "actually i'm",
    "actually i am",
    "actually this is",
    "i'm not the patient",
    "someone else's",
    "somebody else's",
    "another patient",
];

/// "Maria Garcia's appointment": a question about someone else's record.
const POSSESSIVE_RECORD: &[&str] = &[
    "'s appointment",
    "'s appt",
    "'s birthday",
    "'s date of birth",
    "'s record",
    "'s phone",
    "'s schedule",
];

const RESCHEDULE: &[&str] = &[
    "reschedule",
    "re schedule",
    "rescheduled",
    "move my appointment",
    "move my appt",
    "move the appointment",
    "move it",
    "change my appointment",
    "change the appointment",
    "change the time",
    "change the day",
    "change the date",
    "different time",
    "different day",
    "different date",
    "another time",
    "another day",
    "push it back",
    "push back",
    "push my appointment",
    "bump my appointment",
    "switch my appointment",
];

const CANCEL: &[&str] = &[
    "cancel",
    "cancell",
    "canceled",
    "cancelled",
    "cancellation",
    "can't make it",
    "cant make it",
    "won't make it",
    "wont make it",
    "can't come",
    "cant come",
    "won't be able to come",
    "not going to make it",
    "gonna miss",
    "call off",
    "drop my appointment",
    "get rid of my appointment",
];

const APPOINTMENTS: &[&str] = &[
    "when is my",
    "when's my",
    "whens my",
    "what time is my",
    "what day is my",
    "do i have an appointment",
    "do i have any appointment",
    "do i have a appointment",
    "have i got an appointment",
    "confirm my appointment",
    "check my appointment",
    "check on my appointment",
    "my next appointment",
    "next appointment",
    "upcoming appointment",
    "when am i",
    "when do i",
    "what time do i",
    "is my appointment",
    "remind me",
    "when i'm supposed",
    "when i am supposed",
    "appointment is",
];

const BOOK: &[&str] = &[
    "book",
    "booking",
    "schedule",
    "scheduling",
    "make an appointment",
    "make a appointment",
    "new appointment",
    "set up an appointment",
    "set up a visit",
    "get an appointment",
    "need an appointment",
    "want an appointment",
    "like an appointment",
    "an appointment",
    "see the doctor",
    "see a doctor",
    "see doctor",
    "see dr",
    "come in",
    "get in",
    "checkup",
    "check up",
    "physical",
    "visit",
];

const MESSAGE: &[&str] = &[
    "message",
    "leave a note",
    "note for",
    "tell the doctor",
    "tell my doctor",
    "let the doctor know",
    "let my doctor know",
    "pass along",
    "pass on",
    "call me back",
    "callback",
    "call back",
    "refill",
    "prescription",
    "test results",
    "lab results",
    "my results",
    "question for the doctor",
    "question for my doctor",
];

const GOODBYE: &[&str] = &[
    "bye",
    "goodbye",
    "good bye",
    "bye bye",
    "hang up",
    "that's all",
    "that is all",
    "that's everything",
    "nothing else",
    "i'm done",
    "have a good day",
];

/// Keyword and pattern classifier: fast, predictable, and the first thing every turn goes through.
#[derive(Debug, Default, Clone)]
pub struct KeywordNlu;

impl KeywordNlu {
    /// Emergencies and crisis first: checked on every turn, whatever the step.
    pub fn emergency(padded: &str) -> Option<Emergency> {
        if has_any(padded, CRISIS) {
            Some(Emergency::Crisis)
        } else if has_any(padded, MEDICAL)
            && !has_any(
                padded,
                &["not an emergency", "no emergency", "isn't an emergency"],
            )
        {
            Some(Emergency::Medical)
        } else {
            None
        }
    }

    pub fn topic(padded: &str) -> Option<Topic> {
        let asks = has_any(
            padded,
            &[
                "what", "when", "where", "how", "do you", "are you", "is there", "can i", "which",
                "tell me", "does", "what's",
            ],
        );
        if has_any(
            padded,
            &["medical records", "my records", "copy of my", "records"],
        ) {
            return Some(Topic::Records);
        }
        if has_any(padded, &["park", "parking", "garage"]) {
            return Some(Topic::Parking);
        }
        if has_any(
            padded,
            &[
                "insurance",
                "insurances",
                "medicare",
                "medicaid",
                "accept my",
                "take my",
                "in network",
                "in-network",
                "blue cross",
                "aetna",
                "cigna",
            ],
        ) {
            return Some(Topic::Insurance);
        }
        if has_any(
            padded,
            &[
                "address",
                "located",
                "location",
                "directions",
                "where are you",
                "where is the clinic",
                "where's the clinic",
                "where is the office",
                "how do i get there",
            ],
        ) {
            return Some(Topic::Address);
        }
        if has_any(
            padded,
            &[
                "hours",
                "open",
                "close",
                "closing",
                "opening",
                "what time do you",
                "are you open",
            ],
        ) && (asks || has_any(padded, &["hours"]))
        {
            return Some(Topic::Hours);
        }
        None
    }

    fn intent(padded: &str, allowed: &[&'static str]) -> Option<&'static str> {
        let allow = |l: &'static str| allowed.contains(&l).then_some(l);
        if (has_any(padded, THIRD_PARTY) || POSSESSIVE_RECORD.iter().any(|p| padded.contains(p)))
            && let Some(l) = allow("third_party")
        {
            return Some(l);
        }
        if has_any(padded, HUMAN)
            && !has_any(padded, &["in person"])
            && let Some(l) = allow("human")
        {
            return Some(l);
        }
        for (label, phrases) in [
            ("reschedule", RESCHEDULE),
            ("cancel", CANCEL),
            ("appointments", APPOINTMENTS),
            ("book", BOOK),
            ("message", MESSAGE),
        ] {
            if has_any(padded, phrases)
                && let Some(l) = allow(label)
            {
                return Some(l);
            }
        }
        if has_any(padded, GOODBYE)
            && let Some(l) = allow("goodbye")
        {
            return Some(l);
        }
        match yes_no(padded) {
            Some(true) => allow("yes"),
            Some(false) => allow("no"),
            None => None,
        }
    }
}

impl Nlu for KeywordNlu {
    fn understand(&mut self, text: &str, allowed: &[&'static str]) -> Understanding {
        let padded = format!(" {} ", respell(&normalize(text)));
        if let Some(e) = Self::emergency(&padded) {
            return Understanding::Emergency(e);
        }
        // an intent the step acts on beats a question ("I want to book, are you open Saturday?")
        let intent = Self::intent(&padded, allowed);
        if let Some(l @ ("third_party" | "human")) = intent {
            return Understanding::Intent(l);
        }
        if let Some(t) = Self::topic(&padded) {
            return Understanding::Question(t);
        }
        match intent {
            Some(l) => Understanding::Intent(l),
            None => Understanding::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &[
        "book",
        "cancel",
        "reschedule",
        "appointments",
        "message",
        "human",
        "yes",
        "no",
        "goodbye",
        "third_party",
    ];

    #[test]
    fn intent_accuracy_on_the_labelled_set() {
        let set = labelled_set(include_str!("../../benches/data/intents.tsv"));
        assert!(set.len() >= 200, "{}", set.len());
        let mut nlu = KeywordNlu;
        let wrong: Vec<String> = set
            .iter()
            .filter_map(|(label, text)| {
                let got = nlu.understand(text, ALL_INTENTS).label();
                (got != *label).then(|| format!("{text:?}: wanted {label}, got {got}"))
            })
            .collect();
        let accuracy = 1.0 - wrong.len() as f64 / set.len() as f64;
        println!(
            "keyword NLU accuracy {:.1}% ({} of {}); misses:\n{}",
            accuracy * 100.0,
            set.len() - wrong.len(),
            set.len(),
            wrong.join("\n")
        );
        assert!(
            accuracy >= 0.95,
            "accuracy {accuracy:.3}:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn emergencies_win_everywhere() {
        let mut nlu = KeywordNlu;
        for t in [
            "I have chest pain and I want to book",
            "my chest feels really tight and my arm is numb",
            "i took too many pills",
            "my dad just collapsed and isn't waking up",
            "I need an ambulance",
            "please call 911",
            "my husband can't breathe",
            "I want to hurt myself",
            "um i think i'm having a heart attack",
        ] {
            assert!(
                matches!(nlu.understand(t, &[]), Understanding::Emergency(_)),
                "{t}"
            );
        }
        assert_eq!(
            nlu.understand("i want to kill myself", ALL),
            Understanding::Emergency(Emergency::Crisis)
        );
    }

    #[test]
    fn intents_and_questions() {
        let mut nlu = KeywordNlu;
        let cases: &[(&str, Understanding)] = &[
            (
                "I'd like to book an appointment",
                Understanding::Intent("book"),
            ),
            ("I need to cancel", Understanding::Intent("cancel")),
            (
                "can I move my appointment",
                Understanding::Intent("reschedule"),
            ),
            (
                "when is my next appointment",
                Understanding::Intent("appointments"),
            ),
            ("can I talk to a person", Understanding::Intent("human")),
            (
                "I'm calling for my mother",
                Understanding::Intent("third_party"),
            ),
            ("what are your hours", Understanding::Question(Topic::Hours)),
            ("where do I park", Understanding::Question(Topic::Parking)),
            ("yes", Understanding::Intent("yes")),
            ("blah blah", Understanding::Unknown),
            // How whisper tiny spells some callers' words.
            (
                "I need to rescedule my appointment.",
                Understanding::Intent("reschedule"),
            ),
            (
                "I want to cancle my apointment",
                Understanding::Intent("cancel"),
            ),
            ("I need a massage", Understanding::Unknown),
        ];
        for (t, want) in cases {
            assert_eq!(&nlu.understand(t, ALL), want, "{t}");
        }
        // only allowed labels come out
        assert_eq!(
            nlu.understand("I need to cancel", &["yes", "no"]),
            Understanding::Unknown
        );
    }
}
