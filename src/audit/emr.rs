//! The EMR's FHIR accesses onto the audit log. The audit layer sits above the EMR (it seals what
//! every layer reports), so the hook is implemented here and the EMR sees only its own
//! [`EmrObserver`] trait.

use super::{AuditEvent, AuditLog, Confidential, FhirAccess, TrySubmitError};
use crate::emr::fhir::{self as emr, EmrObserver};

/// Every FHIR access the voice agent makes goes on the audit log (ids sealed, no content).
impl EmrObserver for AuditLog {
    fn fhir_access(&self, access: emr::FhirAccess) {
        let status = access
            .outcome
            .strip_prefix("status ")
            .and_then(|s| s.parse().ok());
        let event = AuditEvent::FhirAccess(FhirAccess {
            actor: "agent".into(),
            call_id: None,
            op: access.operation.into(),
            resource_type: access.resource_type.into(),
            outcome: access.outcome,
            status,
            resource_id: (!access.ids.is_empty()).then(|| Confidential::new(access.ids.join(","))),
            patient: None,
        });
        // Queued in order from this synchronous hook, so a shutdown right after the EMR call still
        // writes it; only a full queue (back-pressure) defers it to a task.
        match self.try_submit(event) {
            Ok(_) => {}
            Err(TrySubmitError::Full(event)) => {
                let log = self.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = log.submit(*event).await {
                            tracing::error!(error = %e, "audit: FHIR access not recorded");
                        }
                    });
                }
            }
            Err(TrySubmitError::Closed) => {
                tracing::error!("audit: FHIR access not recorded: the audit writer has stopped");
            }
        }
    }
}
