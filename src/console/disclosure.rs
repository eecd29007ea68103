//! Showing PHI to a person, audited. A [`Disclosed`] text is the only PHI a console template can
//! print, and one exists only through a [`Viewing`], which exists only once the `staff_view`
//! audit record naming the user and what was opened is committed. `Phi<T>` and `Confidential`
//! have no `Display`, so a template cannot print them by accident.

use zeroize::Zeroizing;

use crate::audit::{AuditError, AuditEvent, AuditLog, Confidential, StaffView};

/// PHI cleared for one page. `Display` prints it (the template escapes it); `Debug` does not.
pub struct Disclosed(String);

impl std::fmt::Display for Disclosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Disclosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Disclosed(<redacted>)")
    }
}

/// Proof that a staff view was recorded.
pub struct Viewing {
    /// The audit sequence number of the `staff_view` record. Private: only [`record_view`]
    /// makes a `Viewing`.
    seq: i64,
}

/// Records that `actor` opened `what` (`escalation_summary`, `transcript`) of call `call_id`, and
/// returns the proof that lets the page show it.
pub async fn record_view(
    log: &AuditLog,
    actor: &str,
    what: &str,
    call_id: &str,
) -> Result<Viewing, AuditError> {
    let seq = log
        .append(AuditEvent::StaffView(StaffView {
            actor: actor.to_string(),
            what: what.to_string(),
            call_id: Some(call_id.to_string()),
            patient: None,
        }))
        .await?;
    Ok(Viewing { seq })
}

impl Viewing {
    /// The `staff_view` record's sequence number.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn reveal(&self, text: &Confidential) -> Disclosed {
        Disclosed(text.expose_for_disclosure().to_string())
    }

    /// Decrypted bytes (an escalation summary), as text.
    pub fn reveal_plain(&self, plain: &Zeroizing<Vec<u8>>) -> Disclosed {
        Disclosed(String::from_utf8_lossy(plain).into_owned())
    }
}
