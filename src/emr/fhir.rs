//! [`Emr`] over FHIR R4 (`carevoice-fhir`, on fhir-sdk): every operation has a timeout, reads are
//! retried with backoff, a circuit breaker turns repeated failures into an immediate fallback, and
//! every FHIR read/write is reported to an [`EmrObserver`] (the audit layer implements it, in
//! `audit::emr`: the EMR does not know the audit log) with resource type, id, operation and
//! outcome — never resource content.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carevoice_fhir::{Booking, FhirClient, FhirConfig, FhirError, Rescheduled, SlotSearch};
use jiff::Timestamp;
use jiff::civil::Date;

use super::breaker::Breaker;
use super::*;
use crate::config::{EmrAuth, EmrConfig, JwtAlgorithm};

/// One FHIR interaction, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirAccess {
    /// e.g. `search`, `read`, `create`, `update`.
    pub operation: &'static str,
    pub resource_type: &'static str,
    /// Ids touched, where known (FHIR ids, not content).
    pub ids: Vec<String>,
    /// `ok`, or the error kind (`timeout`, `status 500`, `circuit-open`, ...).
    pub outcome: String,
    pub latency: Duration,
}

/// Receives every FHIR access (the audit layer implements this).
pub trait EmrObserver: Send + Sync {
    fn fhir_access(&self, access: FhirAccess);
}

/// Reports FHIR accesses to operational logs only (no ids): the default until the audit log is
/// attached.
pub struct TracingObserver;

impl EmrObserver for TracingObserver {
    fn fhir_access(&self, access: FhirAccess) {
        tracing::debug!(
            operation = access.operation,
            resource_type = access.resource_type,
            outcome = %access.outcome,
            latency_ms = access.latency.as_millis() as u64,
            "fhir access"
        );
    }
}

pub struct FhirEmr {
    client: FhirClient,
    timeout: Duration,
    read_retries: u32,
    breaker: Mutex<Breaker>,
    observer: Arc<dyn EmrObserver>,
}

impl From<FhirError> for EmrError {
    fn from(e: FhirError) -> Self {
        match e {
            FhirError::Timeout => EmrError::Timeout,
            FhirError::Auth(m) => EmrError::Auth(m),
            FhirError::Config(m) | FhirError::Transport(m) => EmrError::Transport(m),
            FhirError::Status { status, message } => EmrError::Server { status, message },
            FhirError::Malformed(m) => EmrError::Malformed(m),
            FhirError::NotFound(m) => EmrError::NotFound(m),
            FhirError::Conflict(m) => EmrError::Server {
                status: 412,
                message: m,
            },
        }
    }
}

/// The FHIR client settings from the `[emr]` config section.
pub fn fhir_config(config: &EmrConfig) -> FhirConfig {
    let auth = match config.auth {
        EmrAuth::None => carevoice_fhir::Auth::None,
        EmrAuth::Bearer => carevoice_fhir::Auth::Bearer(config.bearer_token.expose().to_string()),
        EmrAuth::Smart => carevoice_fhir::Auth::Smart(carevoice_fhir::SmartConfig {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            private_key: config.private_key.clone(),
            alg: match config.jwt_alg {
                JwtAlgorithm::RS384 => carevoice_fhir::JwtAlg::Rs384,
                JwtAlgorithm::ES384 => carevoice_fhir::JwtAlg::Es384,
            },
            kid: (!config.jwt_kid.is_empty()).then(|| config.jwt_kid.clone()),
            scope: config.scope.clone(),
        }),
    };
    FhirConfig {
        base_url: config.base_url.clone(),
        auth,
        timeout: Duration::from_millis(config.timeout_ms),
        ca_bundle: (!config.ca_bundle.as_os_str().is_empty()).then(|| config.ca_bundle.clone()),
    }
}

fn outcome_of(e: &EmrError) -> String {
    match e {
        EmrError::Timeout => "timeout".into(),
        EmrError::CircuitOpen => "circuit-open".into(),
        EmrError::Auth(_) => "auth".into(),
        EmrError::Server { status, .. } => format!("status {status}"),
        EmrError::Malformed(_) => "malformed".into(),
        EmrError::Transport(_) => "transport".into(),
        EmrError::NotFound(_) => "not-found".into(),
    }
}

/// Errors that say the server is unwell (count against the breaker), as opposed to answers
/// about the request (404, 409/412, a 4xx validation error).
fn is_server_failure(e: &EmrError) -> bool {
    matches!(
        e,
        EmrError::Timeout
            | EmrError::Transport(_)
            | EmrError::Malformed(_)
            | EmrError::Auth(_)
            | EmrError::Server { status: 500.., .. }
    )
}

fn parse_time(s: &str) -> Result<Timestamp, EmrError> {
    s.parse::<Timestamp>()
        .map_err(|e| EmrError::Malformed(format!("time {s:?}: {e}")))
}

impl FhirEmr {
    pub fn new(config: &EmrConfig, observer: Arc<dyn EmrObserver>) -> Result<FhirEmr, EmrError> {
        let client = FhirClient::new(&fhir_config(config))?;
        Ok(FhirEmr {
            client,
            timeout: Duration::from_millis(config.timeout_ms),
            read_retries: config.read_retries,
            breaker: Mutex::new(Breaker::new(
                config.breaker_failures,
                Duration::from_secs(config.breaker_cooldown_secs),
            )),
            observer,
        })
    }

    pub fn client(&self) -> &FhirClient {
        &self.client
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one operation under the breaker and the timeout, retrying reads, and reports it.
    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        resource_type: &'static str,
        is_read: bool,
        ids: impl Fn(&T) -> Vec<String>,
        attempt: F,
    ) -> Result<T, EmrError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, FhirError>>,
    {
        let started = Instant::now();
        let result = self.run_inner(is_read, attempt).await;
        let (outcome, touched) = match &result {
            Ok(value) => ("ok".to_string(), ids(value)),
            Err(e) => (outcome_of(e), Vec::new()),
        };
        self.observer.fhir_access(FhirAccess {
            operation,
            resource_type,
            ids: touched,
            outcome,
            latency: started.elapsed(),
        });
        result
    }

    async fn run_inner<T, F, Fut>(&self, is_read: bool, attempt: F) -> Result<T, EmrError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, FhirError>>,
    {
        if !self.breaker().allow(Instant::now()) {
            return Err(EmrError::CircuitOpen);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let retries = if is_read { self.read_retries } else { 0 };
        let mut backoff = Duration::from_millis(50);
        let mut tries = 0;
        let result = loop {
            let outcome = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err((e.is_transient(), EmrError::from(e))),
                Err(_) => Err((false, EmrError::Timeout)),
            };
            match outcome {
                Err((true, _))
                    if tries < retries && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 3;
                }
                Ok(v) => break Ok(v),
                Err((_, e)) => break Err(e),
            }
        };
        match &result {
            Err(e) if is_server_failure(e) => self.breaker().record_failure(Instant::now()),
            _ => self.breaker().record_success(),
        }
        result
    }

    fn appointment(
        &self,
        patient: &PatientId,
        a: carevoice_fhir::AppointmentInfo,
    ) -> Result<Appointment, EmrError> {
        let status = match a.status.as_str() {
            "proposed" => AppointmentStatus::Proposed,
            "pending" => AppointmentStatus::Pending,
            "booked" => AppointmentStatus::Booked,
            "arrived" | "checked-in" => AppointmentStatus::Arrived,
            "fulfilled" => AppointmentStatus::Fulfilled,
            "cancelled" => AppointmentStatus::Cancelled,
            "noshow" => AppointmentStatus::NoShow,
            _ => AppointmentStatus::Other,
        };
        let start = a
            .start
            .as_deref()
            .ok_or_else(|| EmrError::Malformed("appointment without start".into()))
            .and_then(parse_time)?;
        let end = a.end.as_deref().map(parse_time).transpose()?;
        let owner = patient.clone();
        Ok(Appointment {
            id: AppointmentId(a.id),
            status,
            start: Phi::new(owner.clone(), start),
            end: Phi::new(owner.clone(), end),
            practitioner_name: Phi::new(owner.clone(), a.practitioner_name),
            location_name: Phi::new(owner, a.location_name),
            slot: a.slot_id.map(SlotId),
        })
    }

    fn offer(s: carevoice_fhir::SlotInfo) -> Result<SlotOffer, EmrError> {
        Ok(SlotOffer {
            id: SlotId(s.id),
            start: parse_time(&s.start)?,
            end: parse_time(&s.end)?,
            practitioner_id: s.practitioner_id,
            practitioner_name: s.practitioner_name,
            location_name: s.location_name,
            service_type: s.service_type,
        })
    }

    /// The next free slot like `slot` (same practitioner, from its start on), to offer after a
    /// lost race.
    async fn next_like(&self, slot: &SlotId) -> Option<SlotOffer> {
        let json = self.client.read_json("Slot", &slot.0).await.ok()?;
        let start = json["start"].as_str()?.to_string();
        let schedule = json["schedule"]["reference"]
            .as_str()?
            .rsplit('/')
            .next()?
            .to_string();
        let search = SlotSearch {
            from: Some(start),
            limit: 10,
            ..SlotSearch::default()
        };
        let slots = self.client.free_slots(&search).await.ok()?;
        slots
            .into_iter()
            .find(|s| s.id != slot.0 && s.schedule_id.as_deref() == Some(schedule.as_str()))
            .and_then(|s| Self::offer(s).ok())
    }
}

#[async_trait::async_trait]
impl Emr for FhirEmr {
    async fn find_patients(&self, query: &PatientQuery) -> Result<Vec<PatientRecord>, EmrError> {
        let birth = query.birth_date.to_string();
        let found = self
            .run(
                "search",
                "Patient",
                true,
                |v: &Vec<carevoice_fhir::PatientInfo>| v.iter().map(|p| p.id.clone()).collect(),
                // Every record with this family name and birth date; the identity gate picks the
                // one whose given name is the one heard.
                || {
                    self.client
                        .find_patients(&query.family, "", &birth, query.phone.as_deref())
                },
            )
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|p| {
                let birth_date = p.birth_date.as_deref()?.parse::<Date>().ok()?;
                let id = PatientId::new(p.id);
                Some(PatientRecord {
                    given: Phi::new(id.clone(), p.given),
                    family: Phi::new(id.clone(), p.family),
                    birth_date: Phi::new(id.clone(), birth_date),
                    phones: Phi::new(id.clone(), p.phones),
                    id,
                })
            })
            .collect())
    }

    async fn upcoming_appointments(
        &self,
        patient: &PatientId,
        from: Timestamp,
    ) -> Result<Vec<Appointment>, EmrError> {
        let from = from.to_string();
        let found = self
            .run(
                "search",
                "Appointment",
                true,
                |v: &Vec<carevoice_fhir::AppointmentInfo>| v.iter().map(|a| a.id.clone()).collect(),
                || self.client.appointments_for(patient.as_str(), &from),
            )
            .await?;
        found
            .into_iter()
            .map(|a| self.appointment(patient, a))
            .collect()
    }

    async fn free_slots(&self, query: &SlotQuery) -> Result<Vec<SlotOffer>, EmrError> {
        let search = SlotSearch {
            practitioner: query.practitioner.clone(),
            service_type: query.service_type.clone(),
            location: query.location.clone(),
            from: query.from.map(|t| t.to_string()),
            to: query.to.map(|t| t.to_string()),
            limit: query.limit,
        };
        let found = self
            .run(
                "search",
                "Slot",
                true,
                |v: &Vec<carevoice_fhir::SlotInfo>| v.iter().map(|s| s.id.clone()).collect(),
                || self.client.free_slots(&search),
            )
            .await?;
        found.into_iter().map(Self::offer).collect()
    }

    async fn book(
        &self,
        patient: &PatientId,
        slot: &SlotId,
        reason: Option<&str>,
    ) -> Result<BookOutcome, EmrError> {
        let booking = self
            .run(
                "create",
                "Appointment",
                false,
                |b: &Booking| match b {
                    Booking::Booked(a) => vec![a.id.clone(), slot.0.clone()],
                    Booking::SlotTaken => vec![slot.0.clone()],
                },
                || self.client.book(patient.as_str(), &slot.0, reason),
            )
            .await?;
        match booking {
            Booking::Booked(a) => Ok(BookOutcome::Booked(self.appointment(patient, a)?)),
            Booking::SlotTaken => Ok(BookOutcome::SlotTaken {
                next: self.next_like(slot).await,
            }),
        }
    }

    async fn cancel(&self, appointment: &AppointmentId, reason: &str) -> Result<(), EmrError> {
        self.run(
            "update",
            "Appointment",
            false,
            |_: &()| vec![appointment.0.clone()],
            || self.client.cancel(&appointment.0, reason),
        )
        .await
    }

    async fn reschedule(
        &self,
        patient: &PatientId,
        old: &AppointmentId,
        new_slot: &SlotId,
    ) -> Result<RescheduleOutcome, EmrError> {
        let outcome = self
            .run(
                "update",
                "Appointment",
                false,
                |r: &Rescheduled| match r {
                    Rescheduled::Moved(a) => vec![old.0.clone(), a.id.clone()],
                    _ => vec![old.0.clone()],
                },
                || {
                    self.client
                        .reschedule(patient.as_str(), &old.0, &new_slot.0)
                },
            )
            .await?;
        match outcome {
            Rescheduled::Moved(a) => Ok(RescheduleOutcome::Moved(self.appointment(patient, a)?)),
            Rescheduled::SlotTaken => Ok(RescheduleOutcome::SlotTaken {
                next: self.next_like(new_slot).await,
            }),
            Rescheduled::RolledBack => Ok(RescheduleOutcome::RolledBack),
        }
    }

    async fn leave_message(
        &self,
        patient: Option<&PatientId>,
        text: &str,
        urgency: MessageUrgency,
    ) -> Result<String, EmrError> {
        self.run(
            "create",
            "Communication",
            false,
            |id: &String| vec![id.clone()],
            || {
                self.client.leave_message(
                    patient.map(PatientId::as_str),
                    text,
                    urgency == MessageUrgency::Urgent,
                )
            },
        )
        .await
    }
}
