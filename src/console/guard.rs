//! The access layer: finds the session behind the cookie, applies the expiry rules, and lets a
//! request through only when the route's declared access (see [`super::roles::ROUTES`]) allows
//! it. Sessions that end here (idle, expired, account disabled) are audited as logouts.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::pages;
use super::roles::{self, Access, Role};
use super::session::{self, Stage, Verdict};
use super::{ConsoleError, ConsoleState};
use crate::audit::{AuditEvent, Auth, AuthAction};
use crate::store::console::{ConsoleUser, SessionRow};
use crate::store::now_ms;

/// A signed-in staff member (request extension on role-checked routes).
#[derive(Debug, Clone)]
pub struct Staff {
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub session_hash: String,
}

/// A browser half-way through signing in (request extension on `SigningIn` routes).
#[derive(Debug, Clone)]
pub struct SigningIn {
    pub session: SessionRow,
    pub stage: Stage,
    pub user: ConsoleUser,
}

/// What the cookie led to.
pub enum Lookup {
    /// No usable session; `why` says what the sign-in page should tell the person.
    None(Option<&'static str>),
    Found(SessionRow, Stage, Box<ConsoleUser>),
}

/// The session cookie's name: `__Host-` (Secure, no Domain, Path=/) under TLS.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-carevoice_session"
    } else {
        "carevoice_session"
    }
}

/// `Set-Cookie` for a new session token.
pub fn set_cookie(secure: bool, token: &str) -> HeaderValue {
    let secure_attr = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure_attr}",
        cookie_name(secure)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure_attr = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure_attr}",
        cookie_name(secure)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session token in the request's cookies, if any.
pub fn cookie_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Finds and checks the session; `touch` restarts its idle clock (not for live updates).
pub async fn lookup(
    state: &ConsoleState,
    headers: &HeaderMap,
    touch: bool,
) -> Result<Lookup, ConsoleError> {
    let Some(token) = cookie_token(headers, state.inner.secure) else {
        return Ok(Lookup::None(None));
    };
    if !session::plausible_token(&token) {
        return Ok(Lookup::None(Some("ended")));
    }
    let hash = session::token_hash(&token);
    let store = &state.inner.store;
    let Some(row) = store.console_session(&hash).await? else {
        return Ok(Lookup::None(Some("ended")));
    };
    if let Some(reason) = session::ended_reason(&row.stage) {
        return Ok(Lookup::None(Some(reason)));
    }
    let user = store.console_user_by_id(&row.user_id).await?;
    let stage = Stage::parse(&row.stage);
    let now = now_ms();
    let (user, stage) = match (user, stage) {
        (Some(user), Some(stage)) if !user.disabled => (user, stage),
        (user, _) => {
            store
                .end_console_session(&hash, &session::ended_stage("disabled"))
                .await?;
            let name = user.map(|u| u.name).unwrap_or_default();
            state
                .audit_auth(&name, AuthAction::Logout, None, Some("disabled"))
                .await?;
            return Ok(Lookup::None(Some("disabled")));
        }
    };
    let verdict = state
        .inner
        .policy
        .check(stage, row.created_ms, row.last_seen_ms, now);
    if verdict != Verdict::Live {
        store
            .end_console_session(&hash, &session::ended_stage(verdict.reason()))
            .await?;
        if stage == Stage::Full {
            state
                .audit_auth(&user.name, AuthAction::Logout, None, Some(verdict.reason()))
                .await?;
        }
        return Ok(Lookup::None(Some(verdict.reason())));
    }
    if touch {
        store.touch_console_session(&hash, now).await?;
    }
    Ok(Lookup::Found(row, stage, Box::new(user)))
}

/// Where a browser without a usable session goes.
fn to_sign_in(why: Option<&'static str>, live_update: bool) -> Response {
    if live_update {
        // An EventSource cannot show a sign-in page; the full page will.
        return (StatusCode::UNAUTHORIZED, "signed out\n").into_response();
    }
    match why {
        Some(why) => Redirect::to(&format!("/login?why={why}")).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

/// The access layer (a route layer: it sees the matched route).
pub async fn access(
    State(state): State<ConsoleState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(route) = matched.map(|m| m.as_str().to_string()) else {
        return next.run(request).await;
    };
    let Some(access) = roles::access_of(&route) else {
        tracing::error!(%route, "console route without declared access refused");
        return forbidden();
    };
    let live_update = route == "/queue/events";
    match access {
        Access::Public => next.run(request).await,
        Access::SigningIn => match lookup(&state, request.headers(), true).await {
            Ok(Lookup::Found(_, Stage::Full, user)) => {
                let home = Role::parse(&user.role).map_or("/", Role::home);
                Redirect::to(home).into_response()
            }
            Ok(Lookup::Found(session, stage, user)) => {
                request.extensions_mut().insert(SigningIn {
                    session,
                    stage,
                    user: *user,
                });
                next.run(request).await
            }
            Ok(Lookup::None(why)) => to_sign_in(why, false),
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                pages::server_error()
            }
        },
        Access::Roles(allowed) => match lookup(&state, request.headers(), !live_update).await {
            Ok(Lookup::Found(session, Stage::Full, user)) => {
                let Some(role) = Role::parse(&user.role) else {
                    return forbidden();
                };
                if !allowed.contains(&role) {
                    return forbidden();
                }
                request.extensions_mut().insert(Staff {
                    user_id: user.id,
                    name: user.name,
                    role,
                    session_hash: session.id_hash,
                });
                next.run(request).await
            }
            Ok(Lookup::Found(_, Stage::Password, _)) => Redirect::to("/mfa").into_response(),
            Ok(Lookup::Found(_, Stage::ChangePassword, _)) => {
                Redirect::to("/password").into_response()
            }
            Ok(Lookup::None(why)) => to_sign_in(why, live_update),
            Err(e) => {
                tracing::error!(error = %e, "console session lookup failed");
                pages::server_error()
            }
        },
    }
}

fn forbidden() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "Your role does not give access to this page. If you need it, ask an administrator.",
    )
}

impl ConsoleState {
    /// Appends an `auth` audit record.
    pub async fn audit_auth(
        &self,
        actor: &str,
        action: AuthAction,
        source: Option<std::net::IpAddr>,
        reason: Option<&str>,
    ) -> Result<(), ConsoleError> {
        // Whatever was typed as a user name goes into the record, bounded.
        let actor: String = actor.chars().take(64).collect();
        self.inner
            .audit
            .log
            .append(AuditEvent::Auth(Auth {
                actor,
                action,
                source: source.map(|s| s.to_string()),
                reason: reason.map(str::to_string),
            }))
            .await?;
        Ok(())
    }
}

/// Ends sessions nobody came back to, every minute, and deletes long-ended ones: the logoff is recorded when it happens, not
/// only when the browser returns. (Each request checks expiry itself; this is the bookkeeping.)
pub fn sweep(state: ConsoleState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = sweep_once(&state).await {
                tracing::warn!(error = %e, "console session sweep failed");
            }
        }
    });
}

async fn sweep_once(state: &ConsoleState) -> Result<(), ConsoleError> {
    let now = now_ms();
    let policy = state.inner.policy;
    let stale = state
        .inner
        .store
        .stale_console_sessions(
            now - policy.idle_ms,
            now - policy.max_ms,
            now - policy.pending_ms.min(policy.max_ms),
        )
        .await?;
    for (row, name) in stale {
        let stage = Stage::parse(&row.stage).unwrap_or(Stage::Password);
        let verdict = policy.check(stage, row.created_ms, row.last_seen_ms, now);
        let reason = if verdict == Verdict::Live {
            "idle"
        } else {
            verdict.reason()
        };
        state
            .inner
            .store
            .end_console_session(&row.id_hash, &session::ended_stage(reason))
            .await?;
        if stage == Stage::Full {
            state
                .audit_auth(&name, AuthAction::Logout, None, Some(reason))
                .await?;
        }
    }
    // Ended sessions have told their browser why by now (or never will).
    state
        .inner
        .store
        .purge_ended_console_sessions(now - policy.max_ms)
        .await?;
    Ok(())
}
