//! The console's pages: askama templates (compiled in, auto-escaped; `templates/console/`), the
//! navigation every page carries, and the error page. Nothing here prints PHI except through a
//! [`super::disclosure::Disclosed`].

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::disclosure::Disclosed;
use super::roles::Role;

/// Who is signed in and where they can go; empty on sign-in and error pages.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub user: Option<String>,
    pub role: Option<&'static str>,
    /// `(href, label, current)`.
    pub links: Vec<(&'static str, &'static str, bool)>,
    /// Whether the htmx assets are installed (else pages run without live updates).
    pub scripts: bool,
}

impl Nav {
    /// The links `role` may follow, `current` marked.
    pub fn signed_in(user: &str, role: Role, current: &str, scripts: bool) -> Nav {
        let links = super::roles::nav_links(role)
            .iter()
            .map(|(href, label)| (*href, *label, *href == current))
            .collect();
        Nav {
            user: Some(user.to_string()),
            role: Some(role.label()),
            links,
            scripts,
        }
    }
}

/// Renders a template, or the plain error page when rendering fails.
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Something went wrong.</p>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage<'a> {
    pub nav: Nav,
    pub status: u16,
    pub title: &'a str,
    pub message: &'a str,
}

/// A plain error page with `status`: the message is ours, never the request's.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        nav: Nav::default(),
        status: status.as_u16(),
        title,
        message,
    };
    (status, render(&page)).into_response()
}

pub fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no such page in the console.",
    )
}

pub fn server_error() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The console could not finish this request. Try again; if it keeps failing, tell your administrator.",
    )
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub nav: Nav,
    pub notice: Option<String>,
    pub error: Option<&'static str>,
    pub name: String,
}

#[derive(Template)]
#[template(path = "console/mfa.html")]
pub struct MfaPage {
    pub nav: Nav,
    pub error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "console/enroll.html")]
pub struct EnrollPage {
    pub nav: Nav,
    pub error: Option<&'static str>,
    /// The QR code as inline SVG, made by us from the otpauth URI (no request data in it).
    pub qr_svg: String,
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    pub uri: String,
}

#[derive(Template)]
#[template(path = "console/password.html")]
pub struct PasswordPage {
    pub nav: Nav,
    pub error: Option<&'static str>,
}

/// One row of the live queue: no PHI (the summary is one click away, audited).
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: String,
    pub position: usize,
    pub urgent: bool,
    pub reason: String,
    pub waiting: String,
    pub since: String,
    pub verified: bool,
    pub has_summary: bool,
    /// `pending` (being transferred) or `callback`.
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
pub struct QueuePage {
    pub nav: Nav,
    pub rows: Vec<QueueRow>,
    pub updated: String,
}

/// The queue table alone: what the live updates swap in.
#[derive(Template)]
#[template(path = "console/queue_rows.html")]
pub struct QueueRows<'a> {
    pub rows: &'a [QueueRow],
    pub updated: &'a str,
}

#[derive(Template)]
#[template(path = "console/escalation.html")]
pub struct EscalationPage {
    pub nav: Nav,
    pub row: QueueRow,
    pub call_id: String,
    pub summary: Option<Disclosed>,
    /// Why no summary is shown (unverified caller, or shredded by retention).
    pub no_summary: &'static str,
}

#[derive(Debug, Clone)]
pub struct CallbackRow {
    pub id: String,
    pub urgent: bool,
    pub reason: String,
    pub since: String,
    pub waiting: String,
    pub overdue: bool,
    pub verified: bool,
    pub call_id: String,
}

#[derive(Template)]
#[template(path = "console/callbacks.html")]
pub struct CallbacksPage {
    pub nav: Nav,
    pub open: Vec<CallbackRow>,
    /// `(when, by)` of callbacks done recently.
    pub done: Vec<(String, String)>,
    pub overdue_mins: u64,
    pub flash: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct CallRow {
    pub id: String,
    pub channel: &'static str,
    pub started: String,
    pub duration: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "console/calls.html")]
pub struct CallsPage {
    pub nav: Nav,
    pub calls: Vec<CallRow>,
}

pub struct TurnRow {
    pub turn: u64,
    pub time: String,
    pub identity: String,
    pub intent: String,
    pub said: Option<Disclosed>,
    pub reply: Option<Disclosed>,
    pub shredded: bool,
}

#[derive(Template)]
#[template(path = "console/call.html")]
pub struct CallPage {
    pub nav: Nav,
    pub call: CallRow,
    pub turns: Vec<TurnRow>,
}

pub struct UserRow {
    pub name: String,
    pub role: &'static str,
    pub state: &'static str,
    pub mfa: bool,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct UsersPage {
    pub nav: Nav,
    pub users: Vec<UserRow>,
}

/// A wait in words: `45 s`, `12 min`, `2 h 05 min`.
pub fn waiting(ms: i64) -> String {
    let secs = (ms / 1000).max(0);
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs / 60)
    } else {
        format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60)
    }
}

/// A timestamp in the clinic's time zone: `2026-12-03 14:05`.
pub fn clock(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_naturally() {
        assert_eq!(waiting(45_000), "45 s");
        assert_eq!(waiting(12 * 60_000 + 5), "12 min");
        assert_eq!(waiting(2 * 3_600_000 + 5 * 60_000), "2 h 05 min");
        assert_eq!(waiting(-5), "0 s");
    }

    #[test]
    fn an_error_page_says_only_what_we_wrote() {
        let page = ErrorPage {
            nav: Nav::default(),
            status: 404,
            title: "Page not found",
            message: "There is no such page in the console.",
        };
        let html = page.render().unwrap();
        assert!(
            html.contains("Page not found") && html.contains("404"),
            "{html}"
        );
    }
}
