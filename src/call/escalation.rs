//! The escalation stage: a call that goes to staff. Records the escalation (a verified caller's
//! summary sealed), transfers the caller to the configured staff target, and when the caller's
//! side cannot transfer, places a staff leg for the pipeline to bridge. Its result reaches the
//! pipeline as an [`Escalated`]; the conversation core then ends the call or promises a callback.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::CallServices;
use super::conversation::EscalationRequest;
use crate::media::leg::{AnsweredCall, CallControl, TransferError};
use crate::store::escalations::EscalationRecord;

/// How long a transfer may take (the staff phone ringing included) before the caller is told
/// that the front desk will call back.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(45);

/// How an escalation came out.
pub enum Escalated {
    /// The caller is with staff (transferred away from us).
    Transferred,
    /// Staff answered a leg we placed: bridge the caller to it.
    Bridge(AnsweredCall),
    /// Nobody could take the call: the front desk calls back.
    Callback,
}

/// Runs one escalation of call `call_id`.
pub async fn escalate(
    services: Arc<CallServices>,
    call_id: String,
    request: EscalationRequest,
    control: Arc<dyn CallControl>,
) -> Escalated {
    let call = &services.call;
    let target = if request.urgent && !call.urgent_transfer_uri.is_empty() {
        call.urgent_transfer_uri.clone()
    } else {
        call.transfer_uri.clone()
    };
    let id = uuid::Uuid::new_v4().to_string();
    let created_ms = Timestamp::now().as_millisecond();
    let verified = request.summary.is_some();
    let summary_sealed = match &request.summary {
        Some(text) => services
            .audit
            .crypto
            .seal(
                crate::audit::keys::Purpose::Phi,
                created_ms,
                &crate::audit::keys::Binding::new("escalations", &id, "summary"),
                text.as_bytes(),
            )
            .await
            .map_err(|e| tracing::error!(error = %e, "escalation summary not sealed"))
            .ok(),
        None => None,
    };
    let record = EscalationRecord {
        id: id.clone(),
        call_id,
        created_ms,
        reason: request.step.clone(),
        urgent: request.urgent,
        identity: if verified { "verified" } else { "unverified" }.into(),
        outcome: "pending".into(),
        summary_sealed,
    };
    if let Err(e) = services.store.insert_escalation(&record).await {
        tracing::error!(error = %e, "escalation not stored");
    }
    let result = reach_staff(control.as_ref(), &target, request.urgent).await;
    let stored = match &result {
        Escalated::Callback => "callback",
        Escalated::Transferred | Escalated::Bridge(_) => "transferred",
    };
    if let Err(e) = services.store.set_escalation_outcome(&id, stored).await {
        tracing::error!(error = %e, "escalation outcome not stored");
    }
    result
}

/// Transfer, or bridge when the caller's side cannot transfer.
async fn reach_staff(control: &dyn CallControl, target: &str, urgent: bool) -> Escalated {
    if target.is_empty() {
        return Escalated::Callback;
    }
    tracing::info!(urgent, "transferring the call to staff");
    let transferred = tokio::time::timeout(TRANSFER_TIMEOUT, control.transfer(target))
        .await
        .unwrap_or(Err(TransferError::Timeout));
    match transferred {
        Ok(()) => Escalated::Transferred,
        // The caller's phone cannot transfer: call staff and carry the call ourselves.
        Err(e) if e.caller_cannot_transfer() => {
            tracing::info!(error = %e, "the caller's phone cannot transfer; bridging to staff");
            match tokio::time::timeout(TRANSFER_TIMEOUT, control.dial(target)).await {
                Ok(Ok(staff)) => Escalated::Bridge(staff),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "staff did not answer the bridged call");
                    Escalated::Callback
                }
                Err(_) => {
                    tracing::warn!("staff did not answer the bridged call in time");
                    Escalated::Callback
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "transfer failed; a callback is recorded");
            Escalated::Callback
        }
    }
}
