//! The ordered audit writer of one call: every turn record goes through one task, so a call's
//! turns enter the hash chain in the order they happened (a task per turn could reorder them).
//! The channel is bounded and the call waits for room: an audit record is never dropped.
//! [`AuditWriter::close`] waits until every record of the call is in the log.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::conversation::TurnRecord;
use crate::audit::{self, AuditEvent, CallTurn, Confidential};

/// Turn records that may wait for the log.
const QUEUED: usize = 64;

pub struct AuditWriter {
    tx: mpsc::Sender<TurnRecord>,
    task: JoinHandle<()>,
}

impl AuditWriter {
    pub fn start(log: audit::AuditLog, call_id: String) -> AuditWriter {
        let (tx, mut rx) = mpsc::channel::<TurnRecord>(QUEUED);
        let task = tokio::spawn(async move {
            while let Some(turn) = rx.recv().await {
                let event = call_turn(&call_id, turn);
                if let Err(e) = log.submit(event).await {
                    tracing::error!(error = %e, "audit: call turn not recorded");
                }
            }
        });
        AuditWriter { tx, task }
    }

    pub async fn write(&self, turn: TurnRecord) {
        if self.tx.send(turn).await.is_err() {
            tracing::error!("audit: the call's writer stopped; a call turn is not recorded");
        }
    }

    /// Waits until every record written so far is in the log.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// The audit event of a turn: transcript, reply and patient sealed.
fn call_turn(call_id: &str, t: TurnRecord) -> AuditEvent {
    AuditEvent::CallTurn(CallTurn {
        call_id: call_id.to_string(),
        turn: t.number,
        started_ms: t.started.as_millisecond(),
        ended_ms: t.ended.as_millisecond(),
        identity: if t.patient.is_some() {
            "verified"
        } else {
            "unverified"
        }
        .into(),
        intent: None,
        actions: t
            .actions
            .into_iter()
            .map(|a| audit::TurnAction {
                op: a.op.into(),
                resource_type: String::new(),
                resource_id: None,
                outcome: if a.ok { "ok" } else { "error" }.into(),
            })
            .collect(),
        latency_ms: t.latency_ms,
        patient: t.patient.as_ref().map(Confidential::from_patient),
        transcript: t.transcript.map(Confidential::new),
        reply: (!t.reply.is_empty()).then(|| Confidential::new(t.reply.join(" "))),
    })
}
