//! Callbacks: escalations nobody could take live (outcome `callback`) are tasks for the front
//! desk. Staff mark one done with an outcome note (sealed: it may name the patient); ones older
//! than `console.callback_overdue_mins` stand out.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};

use super::auth::bad_form;
use super::guard::Staff;
use super::pages::{self, CallbackRow, CallbacksPage, Nav};
use super::queue::reason_label;
use super::{ConsoleError, ConsoleState};
use crate::audit::keys::{Binding, Purpose};
use crate::audit::{AdminChange, AuditEvent};
use crate::store::now_ms;

/// Longest outcome note.
pub const MAX_NOTE: usize = 2000;

#[derive(serde::Deserialize)]
pub struct Flash {
    done: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct DoneForm {
    note: String,
}

pub async fn page(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
    flash: Result<Query<Flash>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let just_done = flash.is_ok_and(|Query(f)| f.done.is_some());
    match page_inner(&state, &staff, just_done).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "console callbacks page failed");
            pages::server_error()
        }
    }
}

async fn page_inner(
    state: &ConsoleState,
    staff: &Staff,
    just_done: bool,
) -> Result<Response, ConsoleError> {
    let now = now_ms();
    let overdue_ms = state.inner.config.callback_overdue_mins as i64 * 60_000;
    let tz = &state.inner.tz;
    let open = state
        .inner
        .store
        .open_escalations(500)
        .await?
        .into_iter()
        .filter(|e| e.outcome == "callback")
        .map(|e| CallbackRow {
            urgent: e.urgent,
            reason: reason_label(&e.reason),
            since: pages::clock(e.created_ms, tz),
            waiting: pages::waiting(now - e.created_ms),
            overdue: now - e.created_ms >= overdue_ms,
            verified: e.identity == "verified",
            call_id: e.call_id,
            id: e.id,
        })
        .collect();
    let done = state
        .inner
        .store
        .recent_callback_results(20)
        .await?
        .into_iter()
        .map(|(_, at, by)| (pages::clock(at, tz), by))
        .collect();
    Ok(pages::render(&CallbacksPage {
        nav: Nav::signed_in(
            &staff.name,
            staff.role,
            "/callbacks",
            state.inner.assets.present(),
        ),
        open,
        done,
        overdue_mins: state.inner.config.callback_overdue_mins,
        flash: just_done.then_some("Callback marked done."),
    }))
}

pub async fn done(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
    Path(id): Path<String>,
    form: Result<Form<DoneForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(f) => f,
        Err(rejection) => return bad_form(rejection),
    };
    if !crate::audit::turns::plausible_call_id(&id) {
        return pages::not_found();
    }
    let note = form.note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        return pages::error(
            axum::http::StatusCode::BAD_REQUEST,
            "Note needed",
            "Write what came of the callback (up to 2000 characters), then mark it done.",
        );
    }
    match done_inner(&state, &staff, &id, note).await {
        Ok(true) => Redirect::to("/callbacks?done=1").into_response(),
        Ok(false) => pages::error(
            axum::http::StatusCode::CONFLICT,
            "Already done",
            "This callback is no longer open: someone may have marked it done already.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "console callback done failed");
            pages::server_error()
        }
    }
}

async fn done_inner(
    state: &ConsoleState,
    staff: &Staff,
    id: &str,
    note: &str,
) -> Result<bool, ConsoleError> {
    let now = now_ms();
    let sealed = state
        .inner
        .audit
        .crypto
        .seal(
            Purpose::Phi,
            now,
            &Binding::new("callback_results", id, "note"),
            note.as_bytes(),
        )
        .await?;
    let done = state
        .inner
        .store
        .complete_callback(id, now, &staff.name, Some(&sealed))
        .await?;
    if done {
        state
            .inner
            .audit
            .log
            .append(AuditEvent::AdminChange(AdminChange {
                actor: staff.name.clone(),
                target: format!("escalation:{id}"),
                change: "callback done".into(),
            }))
            .await?;
    }
    Ok(done)
}
