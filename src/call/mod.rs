//! One live call: a pipeline of single-purpose stages around one sans-IO decision core.
//!
//! - [`conversation`]: the core. Turn-taking (end of turn, speculative and early end, barge-in
//!   with backchannels), re-prompts, the call's length limit, keypad digits, endings, the turn
//!   records. Events and `now` in, commands and the next timeout out.
//! - The stages, joined by bounded channels: the media edge (any kind of caller:
//!   [`crate::media::leg`]), the [`listener`] (voice scores on a thread of its own), the
//!   [`recognizer`] (jobs on the shared whisper service), the understanding service
//!   ([`crate::dialog::understand`]), the [`actions`] stage (EMR), the [`speaker`], the ordered
//!   [`audit_writer`], and [`escalation`] (transfer, or a staff leg to [`bridge`]).
//! - [`pipeline`]: the thin async shell that joins them; the edge's control lane (digits, the
//!   hang-up) is polled before anything else and never dropped.
//!
//! Timing, measured per turn and exported on `/metrics` (see [`metrics::Stage`]): the caller's
//! speech ends, endpointing waits for the step's end-of-turn silence, the recognizer runs, the
//! understanding service and the engine decide, EMR actions run, the first reply frame leaves
//! for the caller. Nothing PHI-bearing is logged: spans carry the call id, the turn number and
//! timings only.

mod actions;
mod audit_writer;
mod bridge;
pub mod conversation;
mod escalation;
pub mod events;
mod listener;
pub mod metrics;
mod pipeline;
mod recognizer;
pub mod recording;
pub mod speaker;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

pub use self::conversation::{CALLBACK, ONE_MOMENT, Outcome, TOO_LONG};
use self::events::CallEvents;
use self::metrics::CallMetrics;
use crate::audit;
use crate::config::CallConfig;
use crate::dialog::Dialog;
use crate::dialog::engine::Engine;
use crate::dialog::understand::UnderstandingService;
use crate::emr::Emr;
use crate::media::leg::{AnsweredCall, CallHandler, LegKind};
use crate::speech::Engines;
use crate::store::Store;
use crate::store::calls::{CallRecord, Channel};

/// How long a call waits for media to flow both ways (SIP: the caller's ACK) before giving up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(32);

/// What every call shares: engines, EMR, flow, config, store, audit, metrics.
pub struct CallServices {
    pub engines: Arc<Engines>,
    pub emr: Arc<dyn Emr>,
    /// Flows (hot-reloaded), clinic facts, dialog settings.
    pub dialog: Arc<Dialog>,
    /// What callers' turns mean (keyword rules, and the model when configured), off the runtime.
    pub understanding: UnderstandingService,
    pub call: CallConfig,
    pub store: Store,
    pub audit: audit::Audit,
    pub metrics: CallMetrics,
    /// Call progress for the admin port's feed.
    pub events: Arc<CallEvents>,
    /// Salt for the calling-number hash (the installation's id).
    pub instance: String,
}

impl CallServices {
    /// A dialog engine for one call, on the current flow.
    pub fn engine(&self, calling_number: Option<String>) -> Engine {
        self.dialog.engine(calling_number)
    }

    /// Synthesizes the fixed prompts (greeting, "one moment", fallbacks) into the cache, so that
    /// the greeting starts as soon as a call is answered.
    pub fn warm_up(&self) {
        let mut prompts: Vec<String> = self.engine(None).start(Timestamp::now()).say;
        prompts.extend([ONE_MOMENT, CALLBACK, TOO_LONG].map(String::from));
        for p in prompts {
            if let Err(e) = self.engines.tts.cached(&p, 16_000) {
                tracing::warn!(error = %e, "a fixed prompt could not be pre-synthesized");
            }
        }
    }

    fn caller_hash(&self, number: Option<&str>) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"carevoice-caller\0");
        h.update(self.instance.as_bytes());
        h.update(b"\0");
        h.update(number.unwrap_or("").as_bytes());
        hex::encode(h.finalize())
    }
}

/// The [`CallHandler`] that runs the live pipeline on every answered call.
pub struct LivePipeline {
    services: Arc<CallServices>,
}

impl LivePipeline {
    pub fn new(services: Arc<CallServices>) -> LivePipeline {
        LivePipeline { services }
    }
}

impl CallHandler for LivePipeline {
    fn handle(&self, call: AnsweredCall) {
        tokio::spawn(run(self.services.clone(), call));
    }
}

/// Runs one call until it ends: its record, the conversation, the outcome.
pub async fn run(services: Arc<CallServices>, call: AnsweredCall) {
    let call_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("call", call = %call_id, leg = call.id);
    tracing::Instrument::instrument(run_inner(services, call, call_id), span).await
}

async fn run_inner(services: Arc<CallServices>, call: AnsweredCall, call_id: String) {
    let AnsweredCall {
        kind,
        caller,
        edge,
        confirmed,
        control,
        ..
    } = call;
    let record = CallRecord {
        id: call_id.clone(),
        channel: match kind {
            LegKind::Sip => Channel::Sip,
            LegKind::WebRtc => Channel::WebRtc,
        },
        caller_hash: services.caller_hash(caller.as_deref()),
        started_ms: Timestamp::now().as_millisecond(),
        ended_ms: None,
        outcome: None,
    };
    if let Err(e) = services.store.insert_call(&record).await {
        tracing::error!(error = %e, "call record not stored");
    }
    services.metrics.call_started();
    services
        .events
        .publish(&call_id, "answered", None, None, None);
    let outcome = match tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await {
        Ok(Ok(())) => {
            pipeline::converse(services.clone(), call_id.clone(), caller, edge, control).await
        }
        _ => Outcome::NotConfirmed,
    };
    services.metrics.call_ended(outcome.as_str());
    let ended_ms = Timestamp::now().as_millisecond();
    if let Err(e) = services
        .store
        .finish_call(&call_id, ended_ms, outcome.as_str())
        .await
    {
        tracing::error!(error = %e, "call record not finished");
    }
    let outcome = outcome.as_str();
    services
        .events
        .publish(&call_id, "finished", None, None, Some(outcome));
    tracing::info!(outcome, "call finished");
}
