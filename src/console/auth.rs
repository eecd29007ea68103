//! Signing in: password (argon2id, off the runtime), then the TOTP code (or its enrollment at the
//! first sign-in), then a new password when the current one is a one-time password. The session
//! id changes at each step up; failures count toward the lockout; every step is audited.

use axum::Extension;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::guard::{self, Lookup, SigningIn};
use super::pages::{self, EnrollPage, LoginPage, MfaPage, Nav, PasswordPage};
use super::roles::Role;
use super::session::{self, Stage};
use super::{ClientAddr, ConsoleError, ConsoleState, password, totp};
use crate::audit::AuthAction;
use crate::audit::keys::{Binding, Purpose};
use crate::store::console::{ConsoleUser, SessionRow};
use crate::store::now_ms;

/// Most characters of a user name.
pub const MAX_NAME: usize = 64;

#[derive(serde::Deserialize)]
pub struct Why {
    why: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

#[derive(serde::Deserialize)]
pub struct CodeForm {
    code: String,
}

#[derive(serde::Deserialize)]
pub struct NewPasswordForm {
    new_password: String,
    confirm: String,
}

const WRONG: &str = "Wrong user name or password.";
const LOCKED: &str = "This account is locked after too many failed attempts. Try again later, or ask an administrator.";

/// The idle timeout in words: `15 minutes`, `90 seconds`.
pub fn idle_words(secs: u64) -> String {
    if secs < 120 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", secs.div_ceil(60))
    }
}

fn notice_for(state: &ConsoleState, why: Option<&str>) -> Option<String> {
    Some(match why? {
        "idle" => format!(
            "You were signed out after {} without activity.",
            idle_words(state.inner.config.idle_timeout_secs)
        ),
        "expired" => "Your session reached its maximum length. Please sign in again.".into(),
        "disabled" => "Your account has been disabled. Ask an administrator.".into(),
        "signed_out" => "You have signed out.".into(),
        "ended" => "Your session has ended. Please sign in again.".into(),
        _ => return None,
    })
}

fn login_page(
    state: &ConsoleState,
    status: StatusCode,
    error: Option<&'static str>,
    name: &str,
    notice: Option<String>,
) -> Response {
    let page = LoginPage {
        nav: Nav {
            scripts: state.inner.assets.present(),
            ..Nav::default()
        },
        notice,
        error,
        name: name.chars().take(MAX_NAME).collect(),
    };
    (status, pages::render(&page)).into_response()
}

/// A form that failed to parse (malformed, oversized): a plain error page with the right status.
pub fn bad_form(rejection: FormRejection) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        pages::error(
            status,
            "Form too large",
            "The form sent was larger than the console accepts.",
        )
    } else {
        pages::error(
            StatusCode::BAD_REQUEST,
            "Form not understood",
            "The form sent was incomplete or malformed. Go back and try again.",
        )
    }
}

pub async fn login_form(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    why: Result<Query<Why>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query we did not write (hand-edited, garbled) just shows no notice.
    let why = why.map(|Query(w)| w).unwrap_or(Why { why: None });
    // Already signed in: straight on.
    if let Ok(Lookup::Found(_, stage, user)) = guard::lookup(&state, &headers, false).await {
        return Redirect::to(next_page(stage, &user)).into_response();
    }
    let notice = notice_for(&state, why.why.as_deref());
    login_page(&state, StatusCode::OK, None, "", notice)
}

/// Where a session in `stage` goes next.
fn next_page(stage: Stage, user: &ConsoleUser) -> &'static str {
    match stage {
        Stage::Password if user.totp_sealed.is_none() => "/mfa/enroll",
        Stage::Password => "/mfa",
        Stage::ChangePassword => "/password",
        Stage::Full => Role::parse(&user.role).map_or("/login", Role::home),
    }
}

pub async fn login(
    State(state): State<ConsoleState>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let source = addr.ip();
    if !state.allow_attempt(source) {
        return pages::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many sign-in attempts from this computer. Wait a minute and try again.",
        );
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(rejection) => return bad_form(rejection),
    };
    match login_inner(&state, source, &headers, form).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "console sign-in failed");
            pages::server_error()
        }
    }
}

async fn login_inner(
    state: &ConsoleState,
    source: std::net::IpAddr,
    headers: &HeaderMap,
    form: LoginForm,
) -> Result<Response, ConsoleError> {
    let name = form.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME || form.password.len() > password::MAX_LEN
    {
        state
            .audit_auth(
                &name,
                AuthAction::LoginFailed,
                Some(source),
                Some("malformed"),
            )
            .await?;
        state.inner.metrics.sign_in("failed");
        return Ok(login_page(
            state,
            StatusCode::UNAUTHORIZED,
            Some(WRONG),
            "",
            None,
        ));
    }
    let store = &state.inner.store;
    let user = store.console_user_by_name(&name).await?;
    let now = now_ms();
    let Some(user) = user else {
        // Same work as a wrong password, so that timing does not tell which names exist.
        verify_decoy(form.password).await;
        state
            .audit_auth(
                &name,
                AuthAction::LoginFailed,
                Some(source),
                Some("unknown user"),
            )
            .await?;
        state.inner.metrics.sign_in("failed");
        return Ok(login_page(
            state,
            StatusCode::UNAUTHORIZED,
            Some(WRONG),
            &name,
            None,
        ));
    };
    if user.disabled {
        verify_decoy(form.password).await;
        state
            .audit_auth(
                &name,
                AuthAction::LoginFailed,
                Some(source),
                Some("disabled"),
            )
            .await?;
        state.inner.metrics.sign_in("failed");
        return Ok(login_page(
            state,
            StatusCode::UNAUTHORIZED,
            Some(WRONG),
            &name,
            None,
        ));
    }
    if user.locked_until_ms.is_some_and(|until| until > now) {
        state
            .audit_auth(&name, AuthAction::LoginFailed, Some(source), Some("locked"))
            .await?;
        state.inner.metrics.sign_in("locked");
        return Ok(login_page(
            state,
            StatusCode::FORBIDDEN,
            Some(LOCKED),
            &name,
            None,
        ));
    }
    if !verify_password(form.password, user.password_hash.clone()).await {
        let locked = state.count_failure(&user, source, "bad password").await?;
        let error = if locked { LOCKED } else { WRONG };
        return Ok(login_page(
            state,
            StatusCode::UNAUTHORIZED,
            Some(error),
            &name,
            None,
        ));
    }
    // The password is right: a fresh session id (any earlier one is dropped), second factor next.
    let response = state
        .start_session(headers, &user.id, Stage::Password, None)
        .await?;
    let to = next_page(Stage::Password, &user);
    Ok(with_redirect(response, to))
}

/// A verification against the decoy hash (made on first use, also off the runtime).
async fn verify_decoy(password: String) {
    let _ =
        tokio::task::spawn_blocking(move || password::verify(&password, password::decoy_hash()))
            .await;
}

async fn verify_password(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || password::verify(&password, &phc))
        .await
        .unwrap_or(false)
}

fn with_redirect(mut response: Response, to: &'static str) -> Response {
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(header::LOCATION, header::HeaderValue::from_static(to));
    response
}

impl ConsoleState {
    /// Counts a failure; returns whether it locked the account (then also audited as lockout).
    pub(crate) async fn count_failure(
        &self,
        user: &ConsoleUser,
        source: std::net::IpAddr,
        reason: &str,
    ) -> Result<bool, ConsoleError> {
        let config = &self.inner.config;
        let until = now_ms() + config.lockout_mins as i64 * 60_000;
        let failure = self
            .inner
            .store
            .record_login_failure(&user.id, i64::from(config.lockout_failures), until)
            .await?;
        self.audit_auth(
            &user.name,
            AuthAction::LoginFailed,
            Some(source),
            Some(reason),
        )
        .await?;
        if failure.locked_now {
            self.audit_auth(
                &user.name,
                AuthAction::Lockout,
                Some(source),
                Some(&format!("{} failures in a row", config.lockout_failures)),
            )
            .await?;
            // A locked account keeps no sessions: whoever failed may already hold the password.
            self.inner
                .store
                .delete_console_sessions_of(&user.id)
                .await?;
        }
        Ok(failure.locked_now)
    }

    /// Makes a new session for `user_id` at `stage`, dropping the one the request came with
    /// (session fixation: the id never survives a change of privilege). The response carries the
    /// cookie.
    pub(crate) async fn start_session(
        &self,
        headers: &HeaderMap,
        user_id: &str,
        stage: Stage,
        pending_totp: Option<String>,
    ) -> Result<Response, ConsoleError> {
        let secure = self.inner.secure;
        if let Some(old) = guard::cookie_token(headers, secure) {
            self.inner
                .store
                .delete_console_session(&session::token_hash(&old))
                .await?;
        }
        let token = session::new_token().map_err(|e| ConsoleError::Random(e.to_string()))?;
        let now = now_ms();
        self.inner
            .store
            .insert_console_session(&SessionRow {
                id_hash: session::token_hash(&token),
                user_id: user_id.to_string(),
                stage: stage.as_str().to_string(),
                created_ms: now,
                last_seen_ms: now,
                pending_totp,
            })
            .await?;
        let mut response = StatusCode::NO_CONTENT.into_response();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, guard::set_cookie(secure, &token));
        Ok(response)
    }
}

fn nav_for_signing_in(state: &ConsoleState) -> Nav {
    Nav {
        scripts: state.inner.assets.present(),
        ..Nav::default()
    }
}

pub async fn mfa_form(
    State(state): State<ConsoleState>,
    Extension(signing): Extension<SigningIn>,
) -> Response {
    match signing.stage {
        Stage::Password if signing.user.totp_sealed.is_some() => pages::render(&MfaPage {
            nav: nav_for_signing_in(&state),
            error: None,
        }),
        stage => Redirect::to(next_page(stage, &signing.user)).into_response(),
    }
}

pub async fn mfa(
    State(state): State<ConsoleState>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Extension(signing): Extension<SigningIn>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    if !state.allow_attempt(addr.ip()) {
        return pages::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many sign-in attempts from this computer. Wait a minute and try again.",
        );
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(rejection) => return bad_form(rejection),
    };
    let Some(sealed) = signing.user.totp_sealed.clone() else {
        return Redirect::to("/mfa/enroll").into_response();
    };
    if signing.stage != Stage::Password {
        return Redirect::to(next_page(signing.stage, &signing.user)).into_response();
    }
    let result = async {
        let binding = Binding::new("console_users", &signing.user.id, "totp_secret");
        let secret = state
            .inner
            .audit
            .crypto
            .open_sealed(&binding, &sealed)
            .await?;
        state
            .second_factor(&signing, &headers, addr.ip(), &secret, &form.code, None)
            .await
    }
    .await;
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => (
            StatusCode::UNAUTHORIZED,
            pages::render(&MfaPage {
                nav: nav_for_signing_in(&state),
                error: Some(error),
            }),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console second factor failed");
            pages::server_error()
        }
    }
}

impl ConsoleState {
    /// Checks a code against `secret`: on success the session steps up (new id) and the response
    /// redirects on; on failure the message for the form. `enrolling` carries the sealed seed to
    /// store once its first code is right.
    async fn second_factor(
        &self,
        signing: &SigningIn,
        headers: &HeaderMap,
        source: std::net::IpAddr,
        secret: &[u8],
        code: &str,
        enrolling: Option<String>,
    ) -> Result<Result<Response, &'static str>, ConsoleError> {
        let user = &signing.user;
        let now_secs = (now_ms() / 1000).max(0) as u64;
        let Some(step) = totp::verify(secret, code, now_secs) else {
            let locked = self.count_failure(user, source, "bad code").await?;
            return Ok(Err(if locked {
                LOCKED
            } else {
                "That code is not right. Check the time on your phone and try the current code."
            }));
        };
        let step = step as i64;
        let store = &self.inner.store;
        if let Some(sealed) = &enrolling {
            store
                .set_console_totp(&user.id, Some(sealed), Some(step))
                .await?;
            self.audit_auth(&user.name, AuthAction::MfaEnrolled, Some(source), None)
                .await?;
        } else if !store.accept_totp_step(&user.id, step).await? {
            let locked = self.count_failure(user, source, "replayed code").await?;
            return Ok(Err(if locked {
                LOCKED
            } else {
                "That code was already used. Wait for the next code and enter that one."
            }));
        }
        store.clear_login_failures(&user.id).await?;
        self.inner.metrics.sign_in("ok");
        let stage = if user.must_change {
            Stage::ChangePassword
        } else {
            self.audit_auth(&user.name, AuthAction::Login, Some(source), None)
                .await?;
            Stage::Full
        };
        let response = self.start_session(headers, &user.id, stage, None).await?;
        Ok(Ok(with_redirect(response, next_page(stage, user))))
    }
}

pub async fn enroll_form(
    State(state): State<ConsoleState>,
    Extension(signing): Extension<SigningIn>,
) -> Response {
    if signing.stage != Stage::Password || signing.user.totp_sealed.is_some() {
        return Redirect::to(next_page(signing.stage, &signing.user)).into_response();
    }
    match enroll_page(&state, &signing, None).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "console enrollment page failed");
            pages::server_error()
        }
    }
}

/// The seed being enrolled: the session's pending one, or a fresh one (sealed into the session,
/// so that a reload shows the same QR code).
async fn pending_seed(
    state: &ConsoleState,
    signing: &SigningIn,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ConsoleError> {
    let crypto = &state.inner.audit.crypto;
    let binding = Binding::new("console_sessions", &signing.session.id_hash, "pending_totp");
    if let Some(sealed) = &signing.session.pending_totp {
        return Ok(crypto.open_sealed(&binding, sealed).await?);
    }
    let mut seed = zeroize::Zeroizing::new(vec![0u8; 20]);
    getrandom::fill(&mut seed).map_err(|e| ConsoleError::Random(e.to_string()))?;
    let sealed = crypto
        .seal(Purpose::Credential, now_ms(), &binding, &seed)
        .await?;
    state
        .inner
        .store
        .set_console_session_pending_totp(&signing.session.id_hash, Some(&sealed))
        .await?;
    Ok(seed)
}

async fn enroll_page(
    state: &ConsoleState,
    signing: &SigningIn,
    error: Option<&'static str>,
) -> Result<Response, ConsoleError> {
    let seed = pending_seed(state, signing).await?;
    let uri = totp::otpauth_uri("carevoice", &signing.user.name, &seed);
    let qr_svg = qrcode::QrCode::new(uri.as_bytes())
        .map(|code| {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(220, 220)
                .quiet_zone(true)
                .build();
            // Inline in HTML: the XML declaration is not wanted there.
            match svg.find("<svg") {
                Some(at) => svg[at..].to_string(),
                None => svg,
            }
        })
        .map_err(|e| ConsoleError::Qr(e.to_string()))?;
    let page = EnrollPage {
        nav: nav_for_signing_in(state),
        error,
        qr_svg,
        secret: totp::base32(&seed),
        uri,
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    Ok((status, pages::render(&page)).into_response())
}

pub async fn enroll(
    State(state): State<ConsoleState>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Extension(signing): Extension<SigningIn>,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    if !state.allow_attempt(addr.ip()) {
        return pages::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many sign-in attempts from this computer. Wait a minute and try again.",
        );
    }
    let Form(form) = match form {
        Ok(f) => f,
        Err(rejection) => return bad_form(rejection),
    };
    if signing.stage != Stage::Password || signing.user.totp_sealed.is_some() {
        return Redirect::to(next_page(signing.stage, &signing.user)).into_response();
    }
    let result = async {
        let seed = pending_seed(&state, &signing).await?;
        let sealed = state
            .inner
            .audit
            .crypto
            .seal(
                Purpose::Credential,
                now_ms(),
                &Binding::new("console_users", &signing.user.id, "totp_secret"),
                &seed,
            )
            .await?;
        match state
            .second_factor(
                &signing,
                &headers,
                addr.ip(),
                &seed,
                &form.code,
                Some(sealed),
            )
            .await?
        {
            Ok(response) => Ok(response),
            Err(error) => enroll_page(&state, &signing, Some(error)).await,
        }
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "console enrollment failed");
        pages::server_error()
    })
}

pub async fn password_form(
    State(state): State<ConsoleState>,
    Extension(signing): Extension<SigningIn>,
) -> Response {
    if signing.stage != Stage::ChangePassword {
        return Redirect::to(next_page(signing.stage, &signing.user)).into_response();
    }
    pages::render(&PasswordPage {
        nav: nav_for_signing_in(&state),
        error: None,
    })
}

pub async fn change_password(
    State(state): State<ConsoleState>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    Extension(signing): Extension<SigningIn>,
    headers: HeaderMap,
    form: Result<Form<NewPasswordForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(f) => f,
        Err(rejection) => return bad_form(rejection),
    };
    if signing.stage != Stage::ChangePassword {
        return Redirect::to(next_page(signing.stage, &signing.user)).into_response();
    }
    let refuse = |error: &'static str| {
        (
            StatusCode::BAD_REQUEST,
            pages::render(&PasswordPage {
                nav: nav_for_signing_in(&state),
                error: Some(error),
            }),
        )
            .into_response()
    };
    if form.new_password != form.confirm {
        return refuse("The two passwords are not the same.");
    }
    if let Some(why) = password::weakness(&form.new_password, &signing.user.name) {
        return refuse(why);
    }
    if verify_password(
        form.new_password.clone(),
        signing.user.password_hash.clone(),
    )
    .await
    {
        return refuse("The new password must differ from the one-time password.");
    }
    let result = async {
        let new = form.new_password;
        let phc = tokio::task::spawn_blocking(move || password::hash(&new))
            .await
            .map_err(|e| ConsoleError::Random(e.to_string()))??;
        let user = &signing.user;
        state
            .inner
            .store
            .set_console_password(&user.id, &phc, false)
            .await?;
        state
            .audit_auth(
                &user.name,
                AuthAction::PasswordChanged,
                Some(addr.ip()),
                None,
            )
            .await?;
        state
            .audit_auth(&user.name, AuthAction::Login, Some(addr.ip()), None)
            .await?;
        let response = state
            .start_session(&headers, &user.id, Stage::Full, None)
            .await?;
        Ok::<_, ConsoleError>(with_redirect(response, next_page(Stage::Full, user)))
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "console password change failed");
        pages::server_error()
    })
}

pub async fn logout(
    State(state): State<ConsoleState>,
    ConnectInfo(ClientAddr(addr)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let secure = state.inner.secure;
    let result = async {
        if let Lookup::Found(row, stage, user) = guard::lookup(&state, &headers, false).await? {
            state
                .inner
                .store
                .delete_console_session(&row.id_hash)
                .await?;
            if stage == Stage::Full {
                state
                    .audit_auth(
                        &user.name,
                        AuthAction::Logout,
                        Some(addr.ip()),
                        Some("user"),
                    )
                    .await?;
            }
        }
        Ok::<_, ConsoleError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "console sign-out failed");
        return pages::server_error();
    }
    let mut response = Redirect::to("/login?why=signed_out").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, guard::clear_cookie(secure));
    response
}
