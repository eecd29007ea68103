//! The EMR seen by the rest of carevoice: scheduling operations on a clinic's EMR through FHIR R4.
//! The dialog layer calls [`Emr`]; results about a patient come back wrapped as [`Phi`].
//! The FHIR implementation (fhir-sdk, SMART backend-services auth, timeouts, circuit breaker)
//! implements this trait.

pub mod breaker;
pub mod fhir;
pub mod seed;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::phi::{PatientId, Phi};

/// What the caller said about themselves, to look up the records that may be theirs. The given
/// name is not in it: which candidate answers to the name heard is the identity gate's decision
/// (`dialog::identity`), not the EMR's.
#[derive(Clone, PartialEq, Eq)]
pub struct PatientQuery {
    pub family: String,
    pub birth_date: Date,
    /// Digits only, when the caller gave one or the calling number is to be used.
    pub phone: Option<String>,
}

impl std::fmt::Debug for PatientQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientQuery(<redacted>)")
    }
}

/// A patient's record as far as the phone line needs it.
#[derive(Debug, Clone)]
pub struct PatientRecord {
    pub id: PatientId,
    pub given: Phi<String>,
    pub family: Phi<String>,
    pub birth_date: Phi<Date>,
    /// Phone numbers on file, digits only.
    pub phones: Phi<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppointmentId(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotId(pub String);

/// A bookable slot. The clinic's schedule is not PHI until it is someone's appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotOffer {
    pub id: SlotId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub practitioner_id: Option<String>,
    pub practitioner_name: Option<String>,
    pub location_name: Option<String>,
    pub service_type: Option<String>,
}

/// Which free slots to look for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotQuery {
    /// Practitioner id or (part of) a name, as the caller said it.
    pub practitioner: Option<String>,
    pub service_type: Option<String>,
    pub location: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// At most this many offers (the dialog reads a few out, not fifty).
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppointmentStatus {
    Proposed,
    Pending,
    Booked,
    Arrived,
    Fulfilled,
    Cancelled,
    NoShow,
    Other,
}

/// One of a patient's appointments.
#[derive(Debug, Clone)]
pub struct Appointment {
    pub id: AppointmentId,
    pub status: AppointmentStatus,
    pub start: Phi<Timestamp>,
    pub end: Phi<Option<Timestamp>>,
    pub practitioner_name: Phi<Option<String>>,
    pub location_name: Phi<Option<String>>,
    pub slot: Option<SlotId>,
}

#[derive(Debug, Clone)]
pub enum BookOutcome {
    Booked(Appointment),
    /// Someone else got the slot first; the next free one like it, if any, to offer instead.
    SlotTaken {
        next: Option<SlotOffer>,
    },
}

#[derive(Debug, Clone)]
pub enum RescheduleOutcome {
    /// The new appointment is booked and the old one cancelled.
    Moved(Appointment),
    /// The new slot was taken; nothing changed.
    SlotTaken { next: Option<SlotOffer> },
    /// The new one was booked but the old one could not be cancelled, so the new one was
    /// cancelled again: nothing changed, and the caller must be told so.
    RolledBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageUrgency {
    Routine,
    Urgent,
}

/// Errors the dialog turns into the spoken fallback ("I can't reach the schedule right now...").
#[derive(Debug, thiserror::Error)]
pub enum EmrError {
    #[error("EMR timed out")]
    Timeout,
    #[error("EMR unavailable (circuit open)")]
    CircuitOpen,
    #[error("EMR authentication failed: {0}")]
    Auth(String),
    #[error("EMR answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("EMR answer could not be understood: {0}")]
    Malformed(String),
    #[error("EMR transport: {0}")]
    Transport(String),
    #[error("{0} not found")]
    NotFound(String),
}

/// The scheduling operations the phone line needs.
#[async_trait::async_trait]
pub trait Emr: Send + Sync {
    /// Every record with the query's family name and birth date (and phone, when the query has
    /// one), unnarrowed: the candidates the identity gate picks from. Records without a birth date
    /// are left out (they cannot match one).
    async fn find_patients(&self, query: &PatientQuery) -> Result<Vec<PatientRecord>, EmrError>;
    /// Appointments starting at or after `from`, soonest first.
    async fn upcoming_appointments(
        &self,
        patient: &PatientId,
        from: Timestamp,
    ) -> Result<Vec<Appointment>, EmrError>;
    async fn free_slots(&self, query: &SlotQuery) -> Result<Vec<SlotOffer>, EmrError>;
    async fn book(
        &self,
        patient: &PatientId,
        slot: &SlotId,
        reason: Option<&str>,
    ) -> Result<BookOutcome, EmrError>;
    async fn cancel(&self, appointment: &AppointmentId, reason: &str) -> Result<(), EmrError>;
    /// Books `new_slot` first, then cancels `old`; undoes the booking if the cancel fails.
    async fn reschedule(
        &self,
        patient: &PatientId,
        old: &AppointmentId,
        new_slot: &SlotId,
    ) -> Result<RescheduleOutcome, EmrError>;
    /// A message for staff (Communication or Task, whichever the server supports). `patient` is
    /// None when the caller is not verified.
    async fn leave_message(
        &self,
        patient: Option<&PatientId>,
        text: &str,
        urgency: MessageUrgency,
    ) -> Result<String, EmrError>;
}
