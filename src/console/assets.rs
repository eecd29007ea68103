//! Static files from the console's own origin: our stylesheet and script (compiled in), and htmx
//! with its SSE extension from the directory `scripts/setup` installs them in. Only these names
//! are served; nothing else under the directory is reachable.

use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ConsoleState;

const CSS: &str = include_str!("../../templates/console/console.css");

/// The htmx files, loaded once at start.
#[derive(Debug, Default)]
pub struct Assets {
    htmx: Option<Vec<u8>>,
    sse: Option<Vec<u8>>,
}

impl Assets {
    pub fn load(dir: &Path) -> Assets {
        let read = |rel: &str| std::fs::read(dir.join(rel)).ok();
        let assets = Assets {
            htmx: read("htmx.org/dist/htmx.min.js"),
            sse: read("htmx-ext-sse/dist/sse.min.js"),
        };
        if !assets.present() {
            tracing::warn!(
                dir = %dir.display(),
                "console: htmx not found (run scripts/setup); pages work without live updates"
            );
        }
        assets
    }

    /// Whether live updates can run.
    pub fn present(&self) -> bool {
        self.htmx.is_some() && self.sse.is_some()
    }
}

pub async fn file(State(state): State<ConsoleState>, UrlPath(name): UrlPath<String>) -> Response {
    let assets = &state.inner.assets;
    let (body, kind): (Vec<u8>, &str) = match name.as_str() {
        "console.css" => (CSS.as_bytes().to_vec(), "text/css; charset=utf-8"),
        "htmx.min.js" => match &assets.htmx {
            Some(js) => (js.clone(), "text/javascript; charset=utf-8"),
            None => return super::pages::not_found(),
        },
        "sse.min.js" => match &assets.sse {
            Some(js) => (js.clone(), "text/javascript; charset=utf-8"),
            None => return super::pages::not_found(),
        },
        _ => return super::pages::not_found(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response()
}
