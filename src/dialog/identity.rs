//! The identity gate: per call, Unverified -> Verified(patient) only when every configured factor
//! matches the EMR's record. It is the only place that issues a [`Verified`] proof.
//!
//! - The EMR returns every record with the family name and birth date heard; the gate picks the
//!   one whose given name is the one heard: an exact match wins, else one that may be it as the
//!   recognizer spelled it ("Marie" for "Maria"). Two close records stay two (twins are never
//!   verified), and none is the same failure as no record at all.
//! - A failed attempt looks the same whether or not such a patient exists (the engine gives one
//!   reply for both, and the shell pads the lookup to `dialog.identity_min_ms`).
//! - After `dialog.identity_attempts` failures the gate locks: the call goes to staff.
//! - Once verified, the gate never verifies anyone else in the same call: a second identity is a
//!   caller asking about someone else, which goes to staff.

use jiff::civil::Date;

use super::parse::{PersonName, answers_to, given_name_close, same_name};
use crate::config::IdentityFactors;
use crate::emr::{EmrError, PatientQuery, PatientRecord};
use crate::phi::{PatientId, Phi, PhiError};

/// Proof that the caller of this call was verified as `patient`. Its field is private to this
/// module, so only the gate below can make one; `Phi::reveal` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    patient: PatientId,
}

impl Verified {
    pub fn patient(&self) -> &PatientId {
        &self.patient
    }
}

// `reveal` lives beside the proof so that the PHI types (`crate::phi`, the ground floor) need not
// know the gate.
impl<T> Phi<T> {
    /// The value, for a caller verified as its owner.
    pub fn reveal(&self, proof: &Verified) -> Result<&T, PhiError> {
        if &proof.patient == self.owner() {
            Ok(self.value_unchecked())
        } else {
            Err(PhiError::WrongPatient)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateError {
    /// Too many failed attempts.
    Locked,
    /// The call is already verified as a patient; nobody else can be verified in it.
    AlreadyVerified,
    /// A factor the configuration requires is missing (e.g. no phone to compare).
    MissingFactor,
}

/// Result of an identity attempt.
#[derive(Debug)]
pub enum GateOutcome {
    Verified(Box<PatientRecord>),
    /// Nothing matched, or several records did: the same answer either way.
    Failed,
    Locked,
    Error(EmrError),
}

#[derive(Debug)]
pub struct IdentityGate {
    factors: IdentityFactors,
    max_attempts: u32,
    failures: u32,
    verified: Option<Verified>,
    pending: Option<PendingCheck>,
}

#[derive(Debug)]
struct PendingCheck {
    given: String,
    family: String,
    dob: Date,
    phone: Option<String>,
}

impl IdentityGate {
    pub fn new(factors: IdentityFactors, max_attempts: u32) -> Self {
        Self {
            factors,
            max_attempts: max_attempts.max(1),
            failures: 0,
            verified: None,
            pending: None,
        }
    }

    pub fn verified(&self) -> Option<&Verified> {
        self.verified.as_ref()
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts an attempt: the EMR query to run. `phone` is a number the caller gave or the
    /// calling number, digits only.
    pub fn begin(
        &mut self,
        name: &PersonName,
        dob: Date,
        phone: Option<&str>,
    ) -> Result<PatientQuery, GateError> {
        if self.verified.is_some() {
            return Err(GateError::AlreadyVerified);
        }
        if self.failures >= self.max_attempts {
            return Err(GateError::Locked);
        }
        if self.factors == IdentityFactors::NameDobPhone && phone.is_none() {
            return Err(GateError::MissingFactor);
        }
        self.pending = Some(PendingCheck {
            given: name.given.clone(),
            family: name.family.clone(),
            dob,
            phone: phone.map(str::to_string),
        });
        Ok(PatientQuery {
            family: name.family.clone(),
            birth_date: dob,
            phone: if self.factors == IdentityFactors::NameDobPhone {
                phone.map(str::to_string)
            } else {
                None
            },
        })
    }

    /// Ends the attempt with the EMR's candidates. Every factor is compared again here, whatever
    /// the EMR's search matched on.
    pub fn finish(&mut self, candidates: Result<Vec<PatientRecord>, EmrError>) -> GateOutcome {
        let Some(check) = self.pending.take() else {
            return GateOutcome::Failed;
        };
        let candidates = match candidates {
            Err(e) => return GateOutcome::Error(e),
            Ok(candidates) => candidates,
        };
        let mut heard = narrow_by_given(candidates, &check.given);
        let record = match (heard.pop(), heard.is_empty()) {
            (Some(record), true) => record,
            // None answers to the name, or several do: the same failure.
            _ => return self.fail(),
        };
        // The given name as it sounds ("Marie" heard for "Maria"); the family name exactly.
        let name_ok = record
            .given
            .matches(|g| answers_to(&check.given, g, given_name_close))
            && record.family.matches(|f| same_name(f, &check.family));
        let dob_ok = record.birth_date.matches(|d| *d == check.dob);
        let phone_ok = match self.factors {
            IdentityFactors::NameDob => true,
            IdentityFactors::NameDobPhone => check.phone.as_deref().is_some_and(|p| {
                record
                    .phones
                    .matches(|phones| phones.iter().any(|on_file| last10(on_file) == last10(p)))
            }),
        };
        if name_ok && dob_ok && phone_ok {
            self.verified = Some(Verified {
                patient: record.id.clone(),
            });
            GateOutcome::Verified(Box::new(record))
        } else {
            self.fail()
        }
    }

    fn fail(&mut self) -> GateOutcome {
        self.failures += 1;
        if self.failures >= self.max_attempts {
            GateOutcome::Locked
        } else {
            GateOutcome::Failed
        }
    }
}

/// The candidates whose given name is the one heard; when none is, the ones whose given name may
/// be it as the recognizer spelled it ("Marie" for "Maria"). Twins with one family name and birth
/// date stay apart: an exact match wins, and two close ones stay two (not verified).
fn narrow_by_given(candidates: Vec<PatientRecord>, given: &str) -> Vec<PatientRecord> {
    let (exact, others): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|r| r.given.matches(|g| answers_to(given, g, same_name)));
    if !exact.is_empty() {
        return exact;
    }
    others
        .into_iter()
        .filter(|r| r.given.matches(|g| answers_to(given, g, given_name_close)))
        .collect()
}

fn last10(digits: &str) -> String {
    let d: String = digits.chars().filter(char::is_ascii_digit).collect();
    d[d.len().saturating_sub(10)..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn record(id: &str, given: &str, family: &str, dob: Date, phone: &str) -> PatientRecord {
        let pid = PatientId::new(id);
        PatientRecord {
            id: pid.clone(),
            given: Phi::new(pid.clone(), given.into()),
            family: Phi::new(pid.clone(), family.into()),
            birth_date: Phi::new(pid.clone(), dob),
            phones: Phi::new(pid, vec![phone.into()]),
        }
    }

    fn name(g: &str, f: &str) -> PersonName {
        PersonName {
            given: g.into(),
            family: f.into(),
        }
    }

    #[test]
    fn verifies_only_when_every_factor_matches() {
        let dob = date(1975, 3, 3);
        let mut gate = IdentityGate::new(IdentityFactors::NameDob, 3);
        gate.begin(&name("John", "Smith"), date(1975, 3, 4), None)
            .unwrap();
        // an EMR that matched loosely still does not verify a wrong DOB
        let out = gate.finish(Ok(vec![record("a", "John", "Smith", dob, "5551234567")]));
        assert!(matches!(out, GateOutcome::Failed));
        assert!(gate.verified().is_none());
        gate.begin(&name("john", "SMITH"), dob, None).unwrap();
        let out = gate.finish(Ok(vec![record("a", "John", "Smith", dob, "5551234567")]));
        assert!(matches!(out, GateOutcome::Verified(_)));
        assert_eq!(gate.verified().unwrap().patient(), &PatientId::new("a"));
        // nobody else can be verified in this call
        assert_eq!(
            gate.begin(&name("Maria", "Garcia"), dob, None).unwrap_err(),
            GateError::AlreadyVerified
        );
    }

    #[test]
    fn a_given_name_heard_as_it_sounds_verifies_but_not_another_family_name() {
        let dob = date(1992, 11, 30);
        let maria = || Ok(vec![record("m", "Maria", "Garcia", dob, "")]);
        let mut gate = IdentityGate::new(IdentityFactors::NameDob, 3);
        gate.begin(&name("Marie", "Garcia"), dob, None).unwrap();
        assert!(matches!(gate.finish(maria()), GateOutcome::Verified(_)));
        let mut gate = IdentityGate::new(IdentityFactors::NameDob, 3);
        gate.begin(&name("Maria", "Garcie"), dob, None).unwrap();
        assert!(matches!(gate.finish(maria()), GateOutcome::Failed));
        gate.begin(&name("Mark", "Garcia"), dob, None).unwrap();
        assert!(matches!(gate.finish(maria()), GateOutcome::Failed));
    }

    #[test]
    fn several_matches_never_pick_one_and_attempts_lock() {
        let dob = date(1975, 3, 3);
        let mut gate = IdentityGate::new(IdentityFactors::NameDob, 2);
        gate.begin(&name("John", "Smith"), dob, None).unwrap();
        let twins = vec![
            record("a", "John", "Smith", dob, ""),
            record("b", "John", "Smith", dob, ""),
        ];
        assert!(matches!(gate.finish(Ok(twins)), GateOutcome::Failed));
        gate.begin(&name("John", "Smith"), dob, None).unwrap();
        assert!(matches!(gate.finish(Ok(vec![])), GateOutcome::Locked));
        assert_eq!(
            gate.begin(&name("John", "Smith"), date(1975, 3, 3), None)
                .unwrap_err(),
            GateError::Locked
        );
    }

    #[test]
    fn the_given_name_picks_exactly_first_then_as_it_sounds_and_twins_stay_two() {
        let dob = date(1992, 11, 30);
        let twins = || {
            Ok(vec![
                record("a", "Maria", "Garcia", dob, ""),
                record("b", "Mario", "Garcia", dob, ""),
            ])
        };
        let verified_as = |given: &str, candidates| {
            let mut gate = IdentityGate::new(IdentityFactors::NameDob, 3);
            gate.begin(&name(given, "Garcia"), dob, None).unwrap();
            match gate.finish(candidates) {
                GateOutcome::Verified(r) => Some(r.id.as_str().to_string()),
                GateOutcome::Failed => None,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(verified_as("Maria", twins()).as_deref(), Some("a"));
        assert_eq!(verified_as("mario", twins()).as_deref(), Some("b"));
        // close to both: both stay, and two candidates verify nobody
        assert_eq!(verified_as("Marie", twins()), None);
        let two_given = Ok(vec![record("a", "Maria Luisa", "Garcia", dob, "")]);
        assert_eq!(verified_as("Marie", two_given).as_deref(), Some("a"));
        assert_eq!(verified_as("Elena", twins()), None);
    }

    #[test]
    fn phone_factor_when_configured() {
        let dob = date(1975, 3, 3);
        let rec = || Ok(vec![record("a", "John", "Smith", dob, "+1 (555) 123-4567")]);
        let mut gate = IdentityGate::new(IdentityFactors::NameDobPhone, 3);
        assert_eq!(
            gate.begin(&name("John", "Smith"), dob, None).unwrap_err(),
            GateError::MissingFactor
        );
        gate.begin(&name("John", "Smith"), dob, Some("5559999999"))
            .unwrap();
        assert!(matches!(gate.finish(rec()), GateOutcome::Failed));
        gate.begin(&name("John", "Smith"), dob, Some("5551234567"))
            .unwrap();
        assert!(matches!(gate.finish(rec()), GateOutcome::Verified(_)));
    }

    #[test]
    fn reveal_needs_proof_for_the_same_patient() {
        let proof = |id: &str| Verified {
            patient: PatientId::new(id),
        };
        let phi = Phi::new(PatientId::new("a"), 42);
        assert_eq!(phi.reveal(&proof("a")), Ok(&42));
        assert_eq!(phi.reveal(&proof("b")), Err(PhiError::WrongPatient));
        assert!(phi.matches(|v| *v == 42));
    }
}
