//! The turn engine (sans-IO): fed the caller's final transcript, a DTMF digit, silence, or an EMR
//! result, it returns what to say (sentence by sentence), the EMR action to run, the end-of-turn
//! silence hint for the speech layer, and whether the call ends (hang up or go to staff).
//!
//! Replies that carry PHI are rendered from the flow's templates, and a PHI placeholder renders
//! only with the identity gate's [`Verified`] proof for the same patient.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::flow::{ActionKind, Flow, SlotType, placeholders};
use super::identity::{GateError, GateOutcome, IdentityGate, Verified};
use super::nlu::{Emergency, KeywordNlu, Nlu, Topic, Understanding};
use super::parse::{self, PersonName, When};
use crate::config::{ClinicConfig, DialogConfig};
use crate::emr::{
    Appointment, AppointmentId, AppointmentStatus, BookOutcome, EmrError, MessageUrgency,
    PatientQuery, PatientRecord, RescheduleOutcome, SlotId, SlotOffer, SlotQuery,
};
use crate::phi::PatientId;

/// Something that happened on the call.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per turn; boxing would only add an allocation
pub enum Input {
    /// The caller's final transcript for a turn, understood by the engine's own [`Nlu`] (text
    /// shells and tests; a live call understands off the async runtime and sends `Understood`).
    Speech(String),
    /// The caller's final transcript with what the understanding service made of it (asked
    /// with [`Engine::allowed_intents`]).
    Understood {
        text: String,
        understanding: Understanding,
    },
    Dtmf(char),
    /// The caller said nothing for the whole turn.
    Silence,
    /// The result of the last [`Action`].
    Emr(EmrReply),
}

/// An EMR operation's result, matching the [`Action`] that asked for it.
#[derive(Debug)]
pub enum EmrReply {
    /// The candidates for the identity gate.
    Patient(Result<Vec<PatientRecord>, EmrError>),
    Appointments(Result<Vec<Appointment>, EmrError>),
    Slots(Result<Vec<SlotOffer>, EmrError>),
    Book(Result<BookOutcome, EmrError>),
    Cancel(Result<(), EmrError>),
    Reschedule(Result<RescheduleOutcome, EmrError>),
    Message(Result<String, EmrError>),
}

/// An EMR operation for the shell to run; its result comes back as [`Input::Emr`].
#[derive(Debug, Clone)]
pub enum Action {
    FindPatient(PatientQuery),
    UpcomingAppointments {
        patient: PatientId,
        from: Timestamp,
    },
    FreeSlots(SlotQuery),
    Book {
        patient: PatientId,
        slot: SlotId,
    },
    Cancel {
        appointment: AppointmentId,
    },
    Reschedule {
        patient: PatientId,
        old: AppointmentId,
        new_slot: SlotId,
    },
    LeaveMessage {
        patient: Option<PatientId>,
        text: String,
        urgency: MessageUrgency,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    HangUp,
    /// Transfer to staff; `urgent` for emergencies.
    Escalate {
        urgent: bool,
    },
}

/// What to do after an input.
#[derive(Debug, Default)]
pub struct Output {
    /// Sentences to speak, in order.
    pub say: Vec<String>,
    pub action: Option<Action>,
    /// Run the action no faster than this (identity checks: same time whether found or not).
    pub min_action_ms: u64,
    /// End-of-turn silence the speech layer should wait for before the caller's turn is final.
    pub silence_ms: u32,
    pub end: Option<Ending>,
}

#[derive(Debug, Clone)]
enum SlotValue {
    Name(PersonName),
    Date(Date),
    Phone(String),
    When(When),
    YesNo(bool),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Caller,
    Emr(ActionKind),
    Ended,
}

const DEFAULT_SILENCE_MS: u32 = 700;

/// One call's dialog state.
pub struct Engine {
    flow: Arc<Flow>,
    clinic: ClinicConfig,
    dialog: DialogConfig,
    tz: TimeZone,
    nlu: Box<dyn Nlu>,
    now: Timestamp,
    step: usize,
    waiting: Waiting,
    retries: u32,
    resume: Option<usize>,
    slots: HashMap<String, SlotValue>,
    prefilled: HashSet<String>,
    gate: IdentityGate,
    patient: Option<Box<PatientRecord>>,
    appointment: Option<Appointment>,
    offer: Option<SlotOffer>,
    calling_number: Option<String>,
}

impl Engine {
    pub fn new(
        flow: Arc<Flow>,
        clinic: ClinicConfig,
        dialog: DialogConfig,
        nlu: Box<dyn Nlu>,
        calling_number: Option<String>,
    ) -> Self {
        let tz = TimeZone::get(&clinic.timezone).unwrap_or(TimeZone::UTC);
        let gate = IdentityGate::new(dialog.identity_factors, dialog.identity_attempts);
        let start = flow.start;
        Self {
            flow,
            clinic,
            dialog,
            tz,
            nlu,
            now: Timestamp::UNIX_EPOCH,
            step: start,
            waiting: Waiting::Caller,
            retries: 0,
            resume: None,
            slots: HashMap::new(),
            prefilled: HashSet::new(),
            gate,
            patient: None,
            appointment: None,
            offer: None,
            calling_number,
        }
    }

    /// The call starts: the greeting.
    pub fn start(&mut self, now: Timestamp) -> Output {
        self.now = now;
        let mut out = Output::default();
        self.enter(self.flow.start, &mut out);
        out
    }

    /// Whether the caller is verified (for the shell's audit record).
    pub fn verified(&self) -> Option<&Verified> {
        self.gate.verified()
    }

    pub fn current_step(&self) -> &str {
        &self.flow.steps[self.step].id
    }

    pub fn ended(&self) -> bool {
        self.waiting == Waiting::Ended
    }

    /// Whether `text` is already a whole answer to what the step asks, so the speech layer may end
    /// the caller's turn at a short pause instead of waiting out the step's full end-of-turn
    /// silence (which is long on purpose where callers pause inside an answer: dates of birth,
    /// messages). Only answers that cannot sensibly go on count: an emergency, a full name, a date
    /// of birth with its year, a whole phone number, a yes or no, a day with a time of day, or a
    /// request the step acts on. A day alone ("next Tuesday ..."), free text and digits wait for
    /// the silence.
    /// Uses the keyword rules only (no model): it runs on every pause and decides nothing.
    pub fn answer_complete(&self, text: &str) -> bool {
        let text = text.trim();
        if self.waiting != Waiting::Caller
            || text.is_empty()
            || text.chars().count() > self.dialog.max_turn_chars
        {
            return false;
        }
        let allowed = self.allowed();
        let understanding = KeywordNlu.understand(text, &allowed);
        if matches!(understanding, Understanding::Emergency(_)) {
            return true;
        }
        let step = &self.flow.steps[self.step];
        match step.collect.as_ref().map(|(_, kind)| *kind) {
            Some(
                kind @ (SlotType::PersonName
                | SlotType::DateOfBirth
                | SlotType::Phone
                | SlotType::YesNo),
            ) => self.parse_slot(kind, text).is_some(),
            // "next Tuesday afternoon", "tomorrow at ten": a day alone may go on
            Some(SlotType::DateTime) => {
                parse::when(text, self.today()).is_some_and(|w| w.time.is_some())
            }
            Some(_) => false,
            None => match understanding {
                Understanding::Intent(l) => step.on.contains_key(l) || self.flow.on.contains_key(l),
                Understanding::Question(_) => true,
                _ => false,
            },
        }
    }

    pub fn handle(&mut self, input: Input, now: Timestamp) -> Output {
        self.now = now;
        let mut out = Output::default();
        match (self.waiting, input) {
            (Waiting::Ended, _) => {}
            (Waiting::Emr(kind), Input::Emr(reply)) => self.on_emr(kind, reply, &mut out),
            // barge-in while an EMR action runs, or a stray EMR reply: ignored
            (Waiting::Emr(_), _) | (Waiting::Caller, Input::Emr(_)) => {}
            (Waiting::Caller, Input::Speech(text)) => self.on_speech(&text, &mut out),
            (
                Waiting::Caller,
                Input::Understood {
                    text,
                    understanding,
                },
            ) => self.on_understood(&text, understanding, &mut out),
            (Waiting::Caller, Input::Dtmf(d)) => self.on_dtmf(d, &mut out),
            (Waiting::Caller, Input::Silence) => self.retry(&mut out),
        }
        out
    }

    fn today(&self) -> Date {
        self.now.to_zoned(self.tz.clone()).date()
    }

    // ----- moving through the flow -----

    fn enter(&mut self, mut target: usize, out: &mut Output) {
        for _ in 0..64 {
            let flow = Arc::clone(&self.flow);
            let step = &flow.steps[target];
            if step.requires_verified && self.gate.verified().is_none() {
                self.resume = Some(target);
                target = flow.identify;
                continue;
            }
            self.step = target;
            self.retries = 0;
            if let Some((slot, _)) = &step.collect
                && self.prefilled.remove(slot)
                && self.slots.contains_key(slot)
            {
                // the caller already said it ("book next Tuesday"): move on
                if let Some(next) = step.next.or_else(|| step.on.get("collected").copied()) {
                    target = next;
                    continue;
                }
            }
            if let Some(template) = &step.say {
                match self.render(template) {
                    Some(text) => push_sentences(&mut out.say, &text),
                    None => return self.fail_safe(out),
                }
            }
            if let Some(kind) = step.action {
                match kind {
                    ActionKind::Hangup => return self.end(Ending::HangUp, out),
                    ActionKind::Escalate => {
                        return self.end(Ending::Escalate { urgent: false }, out);
                    }
                    _ => return self.start_action(kind, out),
                }
            }
            if step.waits() {
                self.waiting = Waiting::Caller;
                out.silence_ms = step.silence_ms.unwrap_or(DEFAULT_SILENCE_MS);
                return;
            }
            match step.next {
                Some(next) => target = next,
                None => return self.fail_safe(out),
            }
        }
        self.fail_safe(out)
    }

    fn end(&mut self, ending: Ending, out: &mut Output) {
        self.waiting = Waiting::Ended;
        out.end = Some(ending);
        out.action = None;
    }

    /// Something the flow cannot handle: apologise and hand the call to staff.
    fn fail_safe(&mut self, out: &mut Output) {
        out.say.push(
            "I'm sorry, something went wrong on my side. Let me connect you with our staff.".into(),
        );
        self.end(Ending::Escalate { urgent: false }, out);
    }

    fn route(&mut self, label: &str, out: &mut Output) {
        let flow = Arc::clone(&self.flow);
        let step = &flow.steps[self.step];
        if let Some(t) = step.on.get(label) {
            return self.enter(*t, out);
        }
        if label == "verified" {
            if let Some(t) = self.resume.take() {
                return self.enter(t, out);
            }
            if let Some(n) = step.next {
                return self.enter(n, out);
            }
        }
        if step.waits()
            && let Some(t) = flow.on.get(label)
        {
            return self.enter(*t, out);
        }
        if label == "error" {
            out.say.push(
                "I'm sorry, I can't reach the schedule right now. Let me connect you with our staff."
                    .into(),
            );
            return self.end(Ending::Escalate { urgent: false }, out);
        }
        if let Some(n) = step.next {
            return self.enter(n, out);
        }
        self.fail_safe(out)
    }

    fn retry(&mut self, out: &mut Output) {
        self.retries += 1;
        if self.retries > self.dialog.max_retries {
            out.say
                .push("I'm sorry, I'm having trouble understanding.".into());
            out.say
                .push("Let me connect you with a member of our staff.".into());
            return self.end(Ending::Escalate { urgent: false }, out);
        }
        let step = &self.flow.steps[self.step];
        let text = match (&step.reprompt, &step.say) {
            (Some(r), _) => self.render(r),
            (None, Some(s)) => self
                .render(s)
                .map(|s| format!("Sorry, I didn't catch that. {s}")),
            (None, None) => Some("Sorry, I didn't catch that.".into()),
        };
        match text {
            Some(t) => push_sentences(&mut out.say, &t),
            None => return self.fail_safe(out),
        }
        out.silence_ms = step.silence_ms.unwrap_or(DEFAULT_SILENCE_MS);
    }

    // ----- caller input -----

    /// The intent labels the current step can act on: what to ask the understanding service.
    pub fn allowed_intents(&self) -> Vec<&'static str> {
        self.allowed()
    }

    fn allowed(&self) -> Vec<&'static str> {
        let step = &self.flow.steps[self.step];
        super::flow::INTENTS
            .iter()
            .copied()
            .filter(|l| step.on.contains_key(*l) || self.flow.on.contains_key(*l))
            .collect()
    }

    fn on_dtmf(&mut self, digit: char, out: &mut Output) {
        let step = &self.flow.steps[self.step];
        match step.dtmf.get(&digit).or_else(|| self.flow.dtmf.get(&digit)) {
            Some(t) => {
                let t = *t;
                self.enter(t, out)
            }
            None => self.retry(out),
        }
    }

    fn on_speech(&mut self, text: &str, out: &mut Output) {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > self.dialog.max_turn_chars {
            return self.retry(out);
        }
        let allowed = self.allowed();
        let understanding = self.nlu.understand(text, &allowed);
        self.on_understood(text, understanding, out)
    }

    fn on_understood(&mut self, text: &str, understanding: Understanding, out: &mut Output) {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > self.dialog.max_turn_chars {
            return self.retry(out);
        }
        let flow = Arc::clone(&self.flow);
        let step = &flow.steps[self.step];
        match &understanding {
            Understanding::Emergency(kind) => return self.emergency(*kind, out),
            Understanding::Intent(l @ ("third_party" | "human" | "goodbye")) => {
                // "no, that's all" answers a yes/no question; other global labels leave the step
                let answers_yes_no =
                    matches!(step.collect, Some((_, SlotType::YesNo))) && *l == "goodbye";
                if !answers_yes_no && (step.on.contains_key(*l) || flow.on.contains_key(*l)) {
                    return self.route(l, out);
                }
            }
            Understanding::Question(topic) => {
                // a question is answered, then the step asks again (no retry counted)
                let fact = self.fact(*topic);
                push_sentences(&mut out.say, &fact);
                if let Some(t) = step.say.as_ref().and_then(|s| self.render(s)) {
                    push_sentences(&mut out.say, &t);
                }
                out.silence_ms = step.silence_ms.unwrap_or(DEFAULT_SILENCE_MS);
                return;
            }
            _ => {}
        }
        if let Some((slot, kind)) = &step.collect {
            if let Some(value) = self.parse_slot(*kind, text) {
                if *kind == SlotType::PersonName
                    && let Some(dob) = parse::date_of_birth(text, self.today())
                {
                    self.slots.insert("dob".into(), SlotValue::Date(dob));
                    self.prefilled.insert("dob".into());
                }
                let label = match value {
                    SlotValue::YesNo(true) => "yes",
                    SlotValue::YesNo(false) => "no",
                    _ => "collected",
                };
                self.slots.insert(slot.clone(), value);
                if label == "collected" && !step.on.contains_key("collected") {
                    return match step.next {
                        Some(n) => self.enter(n, out),
                        None => self.fail_safe(out),
                    };
                }
                return self.route(label, out);
            }
            if let Understanding::Intent(l) = understanding
                && step.on.contains_key(l)
            {
                return self.route(l, out);
            }
            return self.retry(out);
        }
        match understanding {
            Understanding::Intent(l) if step.on.contains_key(l) || flow.on.contains_key(l) => {
                if matches!(l, "book" | "reschedule")
                    && let Some(w) = parse::when(text, self.today())
                {
                    self.slots.insert("when".into(), SlotValue::When(w));
                    self.prefilled.insert("when".into());
                }
                self.route(l, out)
            }
            _ => self.retry(out),
        }
    }

    fn parse_slot(&self, kind: SlotType, text: &str) -> Option<SlotValue> {
        let today = self.today();
        match kind {
            SlotType::PersonName => parse::person_name(text).map(SlotValue::Name),
            SlotType::DateOfBirth => parse::date_of_birth(text, today).map(SlotValue::Date),
            SlotType::Phone => parse::phone(text).map(SlotValue::Phone),
            SlotType::DateTime => parse::when(text, today).map(SlotValue::When),
            SlotType::YesNo => parse::yes_no(text).map(SlotValue::YesNo),
            SlotType::Digits => parse::digits(text).map(SlotValue::Text),
            SlotType::Provider | SlotType::FreeText => {
                let t = text.trim();
                (t.split_whitespace().count() >= 2 || matches!(kind, SlotType::Provider))
                    .then(|| SlotValue::Text(t.to_string()))
            }
        }
    }

    fn emergency(&mut self, kind: Emergency, out: &mut Output) {
        match kind {
            Emergency::Medical => {
                out.say.push(format!(
                    "If this is a medical emergency, please hang up and call {} right now.",
                    self.dialog.emergency_number
                ));
            }
            Emergency::Crisis => {
                out.say.push(format!(
                    "You are not alone, and help is available right now. Please call or text {} to reach the crisis line, or call {} if you are in danger.",
                    self.dialog.crisis_number, self.dialog.emergency_number
                ));
            }
        }
        out.say
            .push("I'm connecting you with our staff urgently now.".into());
        self.end(Ending::Escalate { urgent: true }, out);
    }

    fn fact(&self, topic: Topic) -> String {
        match topic {
            Topic::Hours => self.clinic.hours.clone(),
            Topic::Address => self.clinic.address.clone(),
            Topic::Parking => self.clinic.parking.clone(),
            Topic::Insurance => self.clinic.insurance.clone(),
            Topic::Records => self.clinic.records.clone(),
        }
    }

    // ----- EMR actions -----

    fn start_action(&mut self, kind: ActionKind, out: &mut Output) {
        let proof = self.gate.verified().cloned();
        let action = match kind {
            ActionKind::VerifyIdentity => {
                let (Some(SlotValue::Name(name)), Some(SlotValue::Date(dob))) =
                    (self.slots.get("name"), self.slots.get("dob"))
                else {
                    return self.route("failed", out);
                };
                let phone = match self.slots.get("phone") {
                    Some(SlotValue::Phone(p)) => Some(p.clone()),
                    _ => self.calling_number.clone(),
                };
                match self.gate.begin(name, *dob, phone.as_deref()) {
                    Ok(q) => {
                        out.min_action_ms = self.dialog.identity_min_ms;
                        Action::FindPatient(q)
                    }
                    Err(GateError::AlreadyVerified) => return self.route("verified", out),
                    Err(GateError::Locked) => return self.route("locked", out),
                    Err(GateError::MissingFactor) => return self.route("failed", out),
                }
            }
            ActionKind::ListAppointments => match &proof {
                Some(p) => Action::UpcomingAppointments {
                    patient: p.patient().clone(),
                    from: self.now,
                },
                None => return self.fail_safe(out),
            },
            ActionKind::FindSlots => Action::FreeSlots(self.slot_query()),
            ActionKind::Book => match (&proof, &self.offer) {
                (Some(p), Some(o)) => Action::Book {
                    patient: p.patient().clone(),
                    slot: o.id.clone(),
                },
                _ => return self.fail_safe(out),
            },
            ActionKind::Cancel => match (&proof, &self.appointment) {
                (Some(_), Some(a)) => Action::Cancel {
                    appointment: a.id.clone(),
                },
                _ => return self.fail_safe(out),
            },
            ActionKind::Reschedule => match (&proof, &self.appointment, &self.offer) {
                (Some(p), Some(a), Some(o)) => Action::Reschedule {
                    patient: p.patient().clone(),
                    old: a.id.clone(),
                    new_slot: o.id.clone(),
                },
                _ => return self.fail_safe(out),
            },
            ActionKind::TakeMessage => {
                let text = match self.slots.get("message") {
                    Some(SlotValue::Text(t)) => t.clone(),
                    _ => return self.fail_safe(out),
                };
                Action::LeaveMessage {
                    patient: proof.map(|p| p.patient().clone()),
                    text,
                    urgency: MessageUrgency::Routine,
                }
            }
            ActionKind::Escalate | ActionKind::Hangup => return self.fail_safe(out),
        };
        self.waiting = Waiting::Emr(kind);
        out.action = Some(action);
    }

    fn slot_query(&self) -> SlotQuery {
        let tomorrow = self.today().tomorrow().unwrap_or(self.today());
        let (first, last) = match self.slots.get("when") {
            Some(SlotValue::When(w)) => (w.first_day, w.last_day),
            _ => (
                tomorrow,
                tomorrow
                    .checked_add(jiff::Span::new().days(14))
                    .unwrap_or(tomorrow),
            ),
        };
        let from = self
            .tz
            .to_timestamp(first.to_datetime(jiff::civil::Time::midnight()))
            .unwrap_or(self.now)
            .max(self.now);
        let to = last
            .tomorrow()
            .ok()
            .and_then(|d| {
                self.tz
                    .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                    .ok()
            })
            .unwrap_or(from);
        SlotQuery {
            from: Some(from),
            to: Some(to),
            limit: 50,
            ..SlotQuery::default()
        }
    }

    /// The offer closest to what the caller asked for.
    fn choose_offer(&self, mut offers: Vec<SlotOffer>) -> Option<SlotOffer> {
        offers.retain(|o| o.start >= self.now);
        offers.sort_by_key(|o| o.start);
        let Some(SlotValue::When(w)) = self.slots.get("when") else {
            return offers.into_iter().next();
        };
        let local = |o: &SlotOffer| o.start.to_zoned(self.tz.clone()).time();
        if let Some(exact) = w.exact {
            let minutes = |t: jiff::civil::Time| i32::from(t.hour()) * 60 + i32::from(t.minute());
            return offers
                .into_iter()
                .min_by_key(|o| (minutes(local(o)) - minutes(exact)).abs());
        }
        if let Some((from, to)) = w.time {
            return offers
                .into_iter()
                .find(|o| local(o) >= from && local(o) < to);
        }
        offers.into_iter().next()
    }

    fn on_emr(&mut self, kind: ActionKind, reply: EmrReply, out: &mut Output) {
        self.waiting = Waiting::Caller;
        let label: &str = match (kind, reply) {
            (ActionKind::VerifyIdentity, EmrReply::Patient(r)) => match self.gate.finish(r) {
                GateOutcome::Verified(record) => {
                    self.patient = Some(record);
                    "verified"
                }
                GateOutcome::Failed => {
                    self.slots.remove("name");
                    self.slots.remove("dob");
                    "failed"
                }
                GateOutcome::Locked => "locked",
                GateOutcome::Error(_) => "error",
            },
            (ActionKind::ListAppointments, EmrReply::Appointments(r)) => match r {
                Ok(list) => {
                    let mine = self.gate.verified().cloned();
                    let next = list.into_iter().find(|a| {
                        matches!(
                            a.status,
                            AppointmentStatus::Booked
                                | AppointmentStatus::Pending
                                | AppointmentStatus::Proposed
                        ) && mine.as_ref().is_some_and(|p| a.start.reveal(p).is_ok())
                    });
                    match next {
                        Some(a) => {
                            self.appointment = Some(a);
                            "found"
                        }
                        None => "none",
                    }
                }
                Err(_) => "error",
            },
            (ActionKind::FindSlots, EmrReply::Slots(r)) => match r {
                Ok(offers) => match self.choose_offer(offers) {
                    Some(o) => {
                        self.offer = Some(o);
                        "found"
                    }
                    None => "none",
                },
                Err(_) => "error",
            },
            (ActionKind::Book, EmrReply::Book(r)) => match r {
                Ok(BookOutcome::Booked(_)) => "booked",
                Ok(BookOutcome::SlotTaken { next: Some(o) }) => {
                    self.offer = Some(o);
                    "taken"
                }
                Ok(BookOutcome::SlotTaken { next: None }) => "gone",
                Err(_) => "error",
            },
            (ActionKind::Cancel, EmrReply::Cancel(r)) => match r {
                Ok(()) => "cancelled",
                Err(_) => "error",
            },
            (ActionKind::Reschedule, EmrReply::Reschedule(r)) => match r {
                Ok(RescheduleOutcome::Moved(_)) => "moved",
                Ok(RescheduleOutcome::SlotTaken { next: Some(o) }) => {
                    self.offer = Some(o);
                    "taken"
                }
                Ok(RescheduleOutcome::SlotTaken { next: None }) => "gone",
                Ok(RescheduleOutcome::RolledBack) => "rolled_back",
                Err(_) => "error",
            },
            (ActionKind::TakeMessage, EmrReply::Message(r)) => match r {
                Ok(_) => "sent",
                Err(_) => "error",
            },
            _ => "error",
        };
        self.route(label, out)
    }

    // ----- templates -----

    /// Renders a template; `None` when a placeholder cannot be filled (a PHI value without proof,
    /// or a value not collected), which the caller treats as a failure, never as an empty string.
    fn render(&self, template: &str) -> Option<String> {
        let names = placeholders(template).ok()?;
        let mut text = template.to_string();
        for name in names {
            let value = self.placeholder(name)?;
            text = text.replacen(&format!("{{{name}}}"), &value, 1);
        }
        Some(text)
    }

    fn placeholder(&self, name: &str) -> Option<String> {
        let proof = self.gate.verified();
        Some(match name {
            "clinic.name" => self.clinic.name.clone(),
            "clinic.hours" => self.clinic.hours.clone(),
            "clinic.address" => self.clinic.address.clone(),
            "clinic.parking" => self.clinic.parking.clone(),
            "clinic.insurance" => self.clinic.insurance.clone(),
            "clinic.records" => self.clinic.records.clone(),
            "dialog.emergency_number" => self.dialog.emergency_number.clone(),
            "dialog.crisis_number" => self.dialog.crisis_number.clone(),
            "offer.when" => self.say_time(self.offer.as_ref()?.start),
            "offer.provider" => self
                .offer
                .as_ref()?
                .practitioner_name
                .clone()
                .unwrap_or_else(|| "the next available provider".into()),
            "appointment.when" => {
                let a = self.appointment.as_ref()?;
                self.say_time(*a.start.reveal(proof?).ok()?)
            }
            "appointment.provider" => {
                let a = self.appointment.as_ref()?;
                a.practitioner_name
                    .reveal(proof?)
                    .ok()?
                    .clone()
                    .unwrap_or_else(|| "your provider".into())
            }
            "appointment.count" => {
                let _ = proof?;
                usize::from(self.appointment.is_some()).to_string()
            }
            "patient.first_name" => self.patient.as_ref()?.given.reveal(proof?).ok()?.clone(),
            other => {
                let slot = other.strip_prefix("slot.")?;
                match self.slots.get(slot)? {
                    SlotValue::Name(_) | SlotValue::Date(_) | SlotValue::Phone(_) => {
                        // identifying values are read back only after verification
                        let _ = proof?;
                        match self.slots.get(slot)? {
                            SlotValue::Name(n) => format!("{} {}", n.given, n.family),
                            SlotValue::Date(d) => d.strftime("%B %-d, %Y").to_string(),
                            SlotValue::Phone(p) => p.clone(),
                            _ => return None,
                        }
                    }
                    SlotValue::When(w) => w.first_day.strftime("%A, %B %-d").to_string(),
                    SlotValue::YesNo(b) => if *b { "yes" } else { "no" }.into(),
                    SlotValue::Text(t) => t.clone(),
                }
            }
        })
    }

    /// "Tuesday, March 3rd at 2:30 PM"
    fn say_time(&self, t: Timestamp) -> String {
        let z: Zoned = t.to_zoned(self.tz.clone());
        let day = z.day();
        let suffix = match (day % 10, day % 100) {
            (_, 11..=13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        let time = if z.minute() == 0 {
            z.strftime("%-I %p").to_string()
        } else {
            z.strftime("%-I:%M %p").to_string()
        };
        format!("{} {day}{suffix} at {time}", z.strftime("%A, %B"))
    }
}

/// Splits text into sentences for the speech layer (on `.`, `?`, `!` followed by a space).
fn push_sentences(out: &mut Vec<String>, text: &str) {
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        if matches!(bytes[i], b'.' | b'?' | b'!')
            && bytes.get(i + 1).is_none_or(|b| *b == b' ')
            // "Dr. Patel", "a.m." stay together
            && !text[..i].ends_with("Dr")
            && !text[..i].ends_with("Mr")
            && !text[..i].ends_with("Mrs")
            && !text[..i].ends_with("Ms")
            && !(i >= 2 && bytes[i - 2] == b'.')
        {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s.to_string());
            }
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
}

#[cfg(test)]
mod tests;
