//! A caller's leg as the call pipeline sees it, whatever carries it (SIP today, WebRTC next):
//! the [`MediaEdge`] for audio and keypad digits, and a small [`CallControl`] for what a call
//! asks of its signalling besides media (transfer to staff; place a second leg to bridge).
//! Hanging up is on the edge ([`MediaEdge::hangup`]). Nothing here knows SIP.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::MediaEdge;

/// Which kind of caller a leg serves (for call records and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    Sip,
    WebRtc,
}

/// Why a transfer or a staff leg did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("transfer target is not valid for this kind of call")]
    BadTarget,
    #[error("the call is gone")]
    NoCall,
    /// The caller's side answered the transfer with this error (SIP 405/501: it cannot transfer).
    #[error("the peer refused the transfer ({0})")]
    Refused(u16),
    #[error("the transfer did not complete in time")]
    Timeout,
    #[error("transfer is not supported on this call")]
    Unsupported,
    /// The transferee took the transfer but its call to the target failed with this status
    /// (486 busy, 480 no answer ...); the caller is still on our line.
    #[error("the transfer target did not take the call ({0})")]
    TargetFailed(u16),
    /// Another transfer of this call is still in progress.
    #[error("a transfer of this call is already in progress")]
    InProgress,
    /// A staff leg could not be placed (no dialer, the target refused or did not answer).
    #[error("the staff leg could not be placed: {0}")]
    Dial(String),
}

impl TransferError {
    /// The caller's side cannot transfer: the server may call staff and carry the call itself.
    pub fn caller_cannot_transfer(&self) -> bool {
        matches!(self, TransferError::Refused(_) | TransferError::Unsupported)
    }
}

/// What a call may ask of its signalling besides media.
#[async_trait::async_trait]
pub trait CallControl: Send + Sync {
    /// Hands the caller to `target` (blind). Ok when the target answered: the caller is then off
    /// our hands and the leg ends (its control lane reports `Ended`).
    async fn transfer(&self, target: &str) -> Result<(), TransferError>;

    /// Places a second leg to `target` (staff) for the server to bridge the caller to; the leg
    /// comes back answered and confirmed.
    async fn dial(&self, target: &str) -> Result<AnsweredCall, TransferError>;
}

/// An answered call, handed to the application.
pub struct AnsweredCall {
    /// The signalling's own id for the call (logs only).
    pub id: u64,
    pub kind: LegKind,
    /// The calling number when the signalling gives one. PHI-adjacent: never log it.
    pub caller: Option<String>,
    pub edge: MediaEdge,
    /// Resolves when media flows both ways (SIP: the caller's ACK arrived); an error means the
    /// call ended before that.
    pub confirmed: oneshot::Receiver<()>,
    pub control: Arc<dyn CallControl>,
}

/// Takes each answered call; must return at once (spawn the call's work).
pub trait CallHandler: Send + Sync + 'static {
    fn handle(&self, call: AnsweredCall);
}
