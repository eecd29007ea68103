//! Call history: recent calls with outcome and duration, and one call's turns from the audit log
//! (transcripts decrypted on view; each view is a `staff_view` audit record).

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;

use super::disclosure;
use super::guard::Staff;
use super::pages::{self, CallPage, CallRow, CallsPage, Nav, TurnRow};
use super::{ConsoleError, ConsoleState};
use crate::audit::turns::{call_turns, plausible_call_id};
use crate::store::calls::CallRecord;

const MAX_CALLS: i64 = 100;

fn call_row(c: &CallRecord, tz: &jiff::tz::TimeZone) -> CallRow {
    CallRow {
        id: c.id.clone(),
        channel: match c.channel {
            crate::store::calls::Channel::Sip => "Phone (SIP)",
            crate::store::calls::Channel::WebRtc => "Browser",
            crate::store::calls::Channel::Offline => "Script",
        },
        started: pages::clock(c.started_ms, tz),
        duration: c.ended_ms.map_or_else(
            || "in progress".into(),
            |end| pages::waiting(end - c.started_ms),
        ),
        outcome: c
            .outcome
            .clone()
            .unwrap_or_else(|| "-".into())
            .replace('_', " "),
    }
}

pub async fn list(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
) -> Response {
    match state.inner.store.recent_calls(MAX_CALLS).await {
        Ok(calls) => pages::render(&CallsPage {
            nav: Nav::signed_in(
                &staff.name,
                staff.role,
                "/calls",
                state.inner.assets.present(),
            ),
            calls: calls.iter().map(|c| call_row(c, &state.inner.tz)).collect(),
        }),
        Err(e) => {
            tracing::error!(error = %e, "console call history failed");
            pages::server_error()
        }
    }
}

pub async fn call(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
    Path(id): Path<String>,
) -> Response {
    if !plausible_call_id(&id) {
        return pages::not_found();
    }
    match call_inner(&state, &staff, &id).await {
        Ok(Some(page)) => page,
        Ok(None) => pages::not_found(),
        Err(e) => {
            tracing::error!(error = %e, "console call page failed");
            pages::server_error()
        }
    }
}

async fn call_inner(
    state: &ConsoleState,
    staff: &Staff,
    id: &str,
) -> Result<Option<Response>, ConsoleError> {
    let Some(call) = state.inner.store.get_call(id).await? else {
        return Ok(None);
    };
    let tz = &state.inner.tz;
    // The view is recorded before anything is decrypted for the page.
    let viewing =
        disclosure::record_view(&state.inner.audit.log, &staff.name, "transcript", &call.id)
            .await?;
    let turns = call_turns(&state.inner.store, &state.inner.audit.crypto, &call.id)
        .await?
        .iter()
        .map(|t| TurnRow {
            turn: t.turn,
            time: pages::clock(t.ts_ms, tz),
            identity: t.identity.clone(),
            intent: t.intent.clone().unwrap_or_default(),
            said: t.transcript.as_ref().map(|c| viewing.reveal(c)),
            reply: t.reply.as_ref().map(|c| viewing.reveal(c)),
            shredded: t.shredded,
        })
        .collect();
    Ok(Some(pages::render(&CallPage {
        nav: Nav::signed_in(
            &staff.name,
            staff.role,
            "/calls",
            state.inner.assets.present(),
        ),
        call: call_row(&call, tz),
        turns,
    })))
}
