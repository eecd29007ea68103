//! Security headers on every console response, and the CSRF check on every state-changing
//! request (Origin / Sec-Fetch-Site must say it came from our own pages).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use super::ConsoleState;
use super::pages;

/// Scripts, styles and images only from our own origin; no inline script, no framing, forms post
/// only to us. htmx runs with `allowEval` and its inline indicator styles off (see base.html).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers; `Cache-Control: no-store` everywhere except the static assets, since any
/// page may show PHI or a session's state.
pub async fn security_headers(
    State(state): State<ConsoleState>,
    request: Request,
    next: Next,
) -> Response {
    let is_asset = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if is_asset {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
    } else {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    if state.inner.secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Refuses a POST (or any non-safe method) that a browser says came from elsewhere.
pub async fn same_origin_only(
    State(state): State<ConsoleState>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !same_origin(request.headers(), state.inner.secure) {
        tracing::warn!(path = %request.uri().path(), "console: cross-origin request refused");
        return pages::error(
            axum::http::StatusCode::FORBIDDEN,
            "Request refused",
            "This form was not sent from a carevoice console page. Go back to the console and try again.",
        );
    }
    next.run(request).await
}

/// Whether the request says it comes from our own origin: `Sec-Fetch-Site` (when sent) must be
/// `same-origin`, and `Origin` must be present and match `Host`. Browsers send both on POST.
pub fn same_origin(headers: &HeaderMap, secure: bool) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let scheme = if secure { "https://" } else { "http://" };
    match (origin.to_str(), host.to_str()) {
        (Ok(origin), Ok(host)) => origin.strip_prefix(scheme) == Some(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let ok = headers(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "https://127.0.0.1:8443"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&ok, true));
        assert!(!same_origin(&ok, false), "scheme must match");
        let other = headers(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!same_origin(&other, true));
        let cross = headers(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "https://127.0.0.1:8443"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(!same_origin(&cross, true));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8443")]), true));
    }
}
