//! The live escalation queue (front desk): every escalation still waiting for staff, urgent ones
//! first, with reason, wait, position and whether the caller was verified. Updates reach the open
//! page through server-sent events within a second: one task per server polls the store every
//! 500 ms and bumps a version; each open page re-renders its table when the version moves (and
//! every few seconds, for the wait times). The summary (PHI) is one click away and audited.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

use super::disclosure;
use super::guard::{self, Lookup, Staff};
use super::pages::{self, EscalationPage, Nav, QueueRow};
use super::{ConsoleError, ConsoleState};
use crate::audit::keys::{Binding, KeyError};
use crate::store::escalations::EscalationRecord;
use crate::store::{Store, now_ms};

/// How often the shared watcher looks at the store.
pub const POLL: Duration = Duration::from_millis(500);
/// Most escalations shown.
const MAX_ROWS: i64 = 200;
/// Re-render the open table at least this often (wait times move).
const REFRESH_TICKS: u32 = 5;

/// Watches the queue in the store; the receiver's value changes whenever the queue does.
pub fn watch(store: Store) -> tokio::sync::watch::Receiver<u64> {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        let mut last = String::new();
        let mut version = 0u64;
        loop {
            if tx.is_closed() {
                return;
            }
            match store.open_escalations(MAX_ROWS).await {
                Ok(rows) => {
                    let shape: String = rows
                        .iter()
                        .map(|r| format!("{}:{};", r.id, r.outcome))
                        .collect();
                    if shape != last {
                        last = shape;
                        version += 1;
                        let _ = tx.send(version);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "console queue poll failed"),
            }
            tokio::time::sleep(POLL).await;
        }
    });
    rx
}

/// Urgent first, then oldest first: the order staff should take them in.
fn queue_order(mut rows: Vec<EscalationRecord>) -> Vec<EscalationRecord> {
    rows.sort_by_key(|r| (!r.urgent, r.created_ms));
    rows
}

fn row_of(r: &EscalationRecord, position: usize, now: i64, tz: &jiff::tz::TimeZone) -> QueueRow {
    QueueRow {
        id: r.id.clone(),
        position,
        urgent: r.urgent,
        reason: reason_label(&r.reason),
        waiting: pages::waiting(now - r.created_ms),
        since: pages::clock(r.created_ms, tz),
        verified: r.identity == "verified",
        has_summary: r.summary_sealed.is_some(),
        outcome: r.outcome.clone(),
    }
}

/// The flow step that escalated, in words (unknown steps as they are: they are our own ids).
pub fn reason_label(step: &str) -> String {
    match step {
        "human" => "Asked for a person".into(),
        "emergency" => "Emergency".into(),
        "identity_failed" => "Identity not confirmed".into(),
        "no_input" => "Caller went silent".into(),
        other => other.replace('_', " "),
    }
}

async fn rows(state: &ConsoleState) -> Result<Vec<QueueRow>, ConsoleError> {
    let now = now_ms();
    let tz = &state.inner.tz;
    Ok(
        queue_order(state.inner.store.open_escalations(MAX_ROWS).await?)
            .iter()
            .enumerate()
            .map(|(i, r)| row_of(r, i + 1, now, tz))
            .collect(),
    )
}

pub async fn page(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
) -> Response {
    match rows(&state).await {
        Ok(rows) => pages::render(&pages::QueuePage {
            nav: Nav::signed_in(
                &staff.name,
                staff.role,
                "/queue",
                state.inner.assets.present(),
            ),
            rows,
            updated: pages::clock(now_ms(), &state.inner.tz),
        }),
        Err(e) => {
            tracing::error!(error = %e, "console queue failed");
            pages::server_error()
        }
    }
}

async fn fragment(state: &ConsoleState) -> Result<String, ConsoleError> {
    let rows = rows(state).await?;
    let updated = pages::clock(now_ms(), &state.inner.tz);
    Ok(askama::Template::render(&pages::QueueRows {
        rows: &rows,
        updated: &updated,
    })?)
}

/// What replaces the queue once the session is over (no PHI stays on the screen).
fn signed_out(reason: &str) -> &'static str {
    match reason {
        "idle" => {
            "<p class=\"notice\" id=\"live-signed-out\" role=\"alert\">You have been signed out \
             after a time without activity. <a id=\"sign-in-again\" href=\"/login?why=idle\">Sign in again</a></p>"
        }
        _ => {
            "<p class=\"notice\" id=\"live-signed-out\" role=\"alert\">You have been signed out. \
             <a id=\"sign-in-again\" href=\"/login\">Sign in again</a></p>"
        }
    }
}

/// Server-sent events: `queue` with the new table whenever it changes, `signed-out` (and the end
/// of the stream) once the session is over. These requests never restart the idle clock.
pub async fn events(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let rx = state.inner.queue.clone();
    let stream = live(state, headers, rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Live {
    /// Counts this stream as open while it lives.
    _open: super::metrics::StreamGuard,
    state: ConsoleState,
    headers: HeaderMap,
    rx: tokio::sync::watch::Receiver<u64>,
    ticks: u32,
    done: bool,
}

fn live(
    state: ConsoleState,
    headers: HeaderMap,
    mut rx: tokio::sync::watch::Receiver<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    rx.mark_unchanged();
    let start = Live {
        _open: state.inner.metrics.stream_opened(),
        state,
        headers,
        rx,
        ticks: 0,
        done: false,
    };
    futures_util::stream::unfold(start, |mut live| async move {
        if live.done {
            return None;
        }
        loop {
            let changed = tokio::select! {
                r = live.rx.changed() => r.is_ok(),
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            live.ticks += 1;
            // The session may have ended (idle, disabled) since the page was opened.
            let why = match guard::lookup(&live.state, &live.headers, false).await {
                Ok(Lookup::Found(..)) => None,
                Ok(Lookup::None(why)) => Some(why.unwrap_or("ended")),
                Err(e) => {
                    tracing::warn!(error = %e, "console live queue: session check failed");
                    Some("ended")
                }
            };
            if let Some(why) = why {
                live.done = true;
                let event = Event::default().event("signed-out").data(signed_out(why));
                return Some((Ok(event), live));
            }
            if changed || live.ticks >= REFRESH_TICKS {
                live.ticks = 0;
                match fragment(&live.state).await {
                    Ok(html) => {
                        let event = Event::default().event("queue").data(html);
                        return Some((Ok(event), live));
                    }
                    Err(e) => tracing::warn!(error = %e, "console live queue render failed"),
                }
            }
        }
    })
}

/// One escalation with its summary: the summary is decrypted only for a verified caller, and
/// only after the `staff_view` record is written.
pub async fn escalation(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
    Path(id): Path<String>,
) -> Response {
    if !crate::audit::turns::plausible_call_id(&id) {
        return pages::not_found();
    }
    match escalation_inner(&state, &staff, &id).await {
        Ok(Some(page)) => page,
        Ok(None) => pages::not_found(),
        Err(e) => {
            tracing::error!(error = %e, "console escalation page failed");
            pages::server_error()
        }
    }
}

async fn escalation_inner(
    state: &ConsoleState,
    staff: &Staff,
    id: &str,
) -> Result<Option<Response>, ConsoleError> {
    let Some(record) = state.inner.store.escalation(id).await? else {
        return Ok(None);
    };
    let now = now_ms();
    let position = queue_order(state.inner.store.open_escalations(MAX_ROWS).await?)
        .iter()
        .position(|r| r.id == record.id)
        .map_or(0, |i| i + 1);
    let row = row_of(&record, position, now, &state.inner.tz);
    let (summary, no_summary) = match (&record.summary_sealed, record.identity == "verified") {
        (Some(sealed), true) => {
            let viewing = disclosure::record_view(
                &state.inner.audit.log,
                &staff.name,
                "escalation_summary",
                &record.call_id,
            )
            .await?;
            let binding = Binding::new("escalations", &record.id, "summary");
            match state.inner.audit.crypto.open_sealed(&binding, sealed).await {
                Ok(plain) => (Some(viewing.reveal_plain(&plain)), ""),
                Err(KeyError::Destroyed(_)) => {
                    (None, "The summary was deleted under the retention policy.")
                }
                Err(e) => return Err(e.into()),
            }
        }
        (_, false) => (
            None,
            "No summary: the caller's identity was not verified, so nothing they said about their health is shown.",
        ),
        (None, true) => (None, "No summary was recorded for this call."),
    };
    let page = EscalationPage {
        nav: Nav::signed_in(
            &staff.name,
            staff.role,
            "/queue",
            state.inner.assets.present(),
        ),
        row,
        call_id: record.call_id.clone(),
        summary,
        no_summary,
    };
    Ok(Some(pages::render(&page)))
}
