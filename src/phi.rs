//! PHI as a type, the ground floor of the crate: the EMR makes these values, the audit log seals
//! them, the dialog reveals them; this module imports none of those layers. Values from the EMR
//! about a patient are wrapped in [`Phi`]: no `Display`, a `Debug` that prints nothing of the
//! value, no `Serialize`. The value comes out only through `Phi::reveal`, with the
//! `dialog::identity::Verified` proof for the same patient; the proof and `reveal` are defined in
//! the identity gate, the only place that can make one, after the caller proved who they are.
//!
//! Two narrow exits exist besides `reveal`, each for one job:
//! - [`Phi::matches`] answers a yes/no question about the value (the identity gate comparing what
//!   the caller said with the record) without handing the value out;
//! - [`Phi::expose_for_storage`] hands the value to the encryption-at-rest layer, which seals it.

use std::fmt;

/// The EMR's id of a patient. Not printed by `Debug` either: an id links a log line to a person.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PatientId(String);

impl PatientId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The raw id, for FHIR references and the (encrypted) audit record.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientId(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhiError {
    #[error("PHI of another patient than the verified one")]
    WrongPatient,
}

/// A value about one patient.
#[derive(Clone, PartialEq, Eq)]
pub struct Phi<T> {
    owner: PatientId,
    value: T,
}

impl<T> Phi<T> {
    pub fn new(owner: PatientId, value: T) -> Self {
        Self { owner, value }
    }

    pub fn owner(&self) -> &PatientId {
        &self.owner
    }

    /// The value with no proof checked: only for `Phi::reveal` in the identity gate, which checks
    /// the proof first (the gate sits above this module, so it cannot see the field).
    pub(crate) fn value_unchecked(&self) -> &T {
        &self.value
    }

    /// A yes/no question about the value, answered without handing it out.
    pub fn matches(&self, question: impl FnOnce(&T) -> bool) -> bool {
        question(&self.value)
    }

    /// The value for the encryption-at-rest layer to seal. Nothing else may call this.
    pub fn expose_for_storage(&self) -> &T {
        &self.value
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Phi<U> {
        Phi {
            owner: self.owner,
            value: f(self.value),
        }
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phi(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_nothing_of_the_value() {
        let phi = Phi::new(PatientId::new("p-123"), "1975-03-03".to_string());
        let shown = format!("{phi:?} {:?}", phi.owner());
        assert!(!shown.contains("1975"), "{shown}");
        assert!(!shown.contains("p-123"), "{shown}");
    }
}
