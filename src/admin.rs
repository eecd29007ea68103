//! The admin HTTP port: `/metrics` (Prometheus), `/healthz`, and a status page. The staff console
//! (`src/console/`) will mount its routes on this router.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::store::Store;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub call_events: Arc<crate::call::events::CallEvents>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/calls/events", get(call_events))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

/// Call progress after sequence number `after`, as JSON lines (flow step ids and outcomes only).
async fn call_events(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<After>,
) -> Response {
    let mut body = String::new();
    for e in state.call_events.after(q.after) {
        if let Ok(line) = serde_json::to_string(&e) {
            body.push_str(&line);
            body.push('\n');
        }
    }
    ([(header::CONTENT_TYPE, "application/jsonl")], body).into_response()
}

async fn healthz(State(state): State<AdminState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn status_page(State(state): State<AdminState>) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>carevoice</title></head>\
         <body><h1>carevoice</h1><p id=\"status\">Server running</p>\
         <dl><dt>Version</dt><dd id=\"version\">{}</dd><dt>Database</dt><dd id=\"engine\">{}</dd>\
         <dt>Uptime</dt><dd id=\"uptime\">{} s</dd></dl>\
         <p><a href=\"/metrics\">Metrics</a></p></body></html>",
        env!("CARGO_PKG_VERSION"),
        state.store.engine().name(),
        state.metrics.uptime_secs()
    ))
}
