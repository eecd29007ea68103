//! The front-desk console (issue 17): a web app on its own listener (`[console]`), HTTPS with
//! rustls, server-rendered askama pages that work without JavaScript and update live with htmx
//! and server-sent events when it is there.
//!
//! HIPAA 164.312: unique accounts with argon2id passwords and TOTP for everyone (a)(2)(i), (d);
//! automatic logoff after `console.idle_timeout_secs` (a)(2)(iii); TLS 1.2+ (e); every sign-in
//! event and every view of PHI in the audit log (b).
//!
//! One job per module:
//! - [`tls`]: certificate (configured or self-signed), fingerprint, the TLS listener
//! - [`headers`]: security headers, the same-origin check on state-changing requests (CSRF)
//! - [`roles`]: roles and the table of every route's access; [`guard`]: sessions and that table
//! - [`session`], [`totp`], [`password`], [`ratelimit`]: the sans-IO rules
//! - [`auth`]: sign-in, second factor, enrollment, password change, sign-out
//! - [`queue`], [`callbacks`], [`history`]: the front desk's pages; [`users`]: accounts
//! - [`disclosure`]: the only way PHI reaches a page (after its `staff_view` record)
//! - [`pages`]: templates; [`assets`]: CSS and htmx from our own origin
//!
//! Not in this phase: taking a call or transferring it to a staff phone from the console, hold
//! prompts (both need hooks in the call pipeline), break-glass access.

pub mod assets;
pub mod auth;
pub mod callbacks;
pub mod disclosure;
pub mod guard;
pub mod headers;
pub mod history;
pub mod metrics;
pub mod pages;
pub mod password;
pub mod queue;
pub mod ratelimit;
pub mod roles;
pub mod session;
pub mod tls;
pub mod totp;
pub mod users;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::connect_info::Connected;
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::audit::Audit;
use crate::config::Config;
use crate::store::Store;

/// Largest request body the console reads (forms are small; a note is at most 2000 characters).
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Keys(#[from] crate::audit::KeyError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    #[error("{key}: {}: {reason}", path.display())]
    Tls {
        key: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("console.port: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("console HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("page rendering failed: {0}")]
    Template(#[from] askama::Error),
    #[error("QR code: {0}")]
    Qr(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("{0}")]
    Usage(String),
}

/// The client's address, from the TCP connection (plain or TLS).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ConsoleState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub audit: Audit,
    pub config: crate::config::ConsoleConfig,
    pub policy: session::Policy,
    /// Served over TLS (cookies `Secure` and `__Host-`, HSTS, `https` origins).
    pub secure: bool,
    pub limiter: Mutex<ratelimit::RateLimit>,
    pub assets: assets::Assets,
    pub tz: jiff::tz::TimeZone,
    /// Bumped whenever the escalation queue changes.
    pub queue: tokio::sync::watch::Receiver<u64>,
    pub metrics: metrics::ConsoleMetrics,
}

impl ConsoleState {
    /// Takes one sign-in attempt from `addr` out of its budget.
    pub fn allow_attempt(&self, addr: std::net::IpAddr) -> bool {
        let mut limiter = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let allowed = limiter.allow(addr, crate::store::now_ms());
        if !allowed {
            self.inner.metrics.sign_in("rate_limited");
        }
        allowed
    }
}

/// All routes; their access is declared in [`roles::ROUTES`] and enforced by [`guard::access`].
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/mfa", get(auth::mfa_form).post(auth::mfa))
        .route("/mfa/enroll", get(auth::enroll_form).post(auth::enroll))
        .route(
            "/password",
            get(auth::password_form).post(auth::change_password),
        )
        .route("/queue", get(queue::page))
        .route("/queue/events", get(queue::events))
        .route("/escalations/{id}", get(queue::escalation))
        .route("/callbacks", get(callbacks::page))
        .route("/callbacks/{id}/done", post(callbacks::done))
        .route("/calls", get(history::list))
        .route("/calls/{id}", get(history::call))
        .route("/admin/users", get(users::page))
        .route("/static/{file}", get(assets::file))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::access))
        .fallback(|| async { pages::not_found() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::same_origin_only,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .with_state(state)
}

async fn home(axum::Extension(staff): axum::Extension<guard::Staff>) -> Response {
    Redirect::to(staff.role.home()).into_response()
}

/// The console, bound and ready to serve.
pub struct Console {
    state: ConsoleState,
    listener: Listener,
}

enum Listener {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

impl Console {
    /// Loads (or makes) the certificate and binds `console.bind:console.port`.
    pub async fn bind(
        config: &Config,
        store: Store,
        audit: Audit,
        registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<Console, ConsoleError> {
        let c = &config.console;
        let addr = SocketAddr::new(c.bind, c.port);
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ConsoleError::Listen { addr, source })?;
        let secure = !c.plain_http;
        let listener = if secure {
            let tls = tls::load(c, &config.server.data_dir)?;
            tracing::info!(
                cert = %tls.cert_path.display(),
                self_signed = tls.self_signed,
                sha256 = %tls.fingerprint,
                "console TLS certificate"
            );
            Listener::Tls(tls::TlsListener::new(tcp, tls.acceptor).map_err(ConsoleError::Http)?)
        } else {
            tracing::warn!(%addr, "console on plain HTTP (loopback only, console.plain_http)");
            Listener::Plain(tcp)
        };
        let tz =
            jiff::tz::TimeZone::get(&config.clinic.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let policy = session::Policy {
            idle_ms: c.idle_timeout_secs as i64 * 1000,
            max_ms: c.session_max_hours as i64 * 3_600_000,
            // Password given, code still due: a few minutes at most.
            pending_ms: 10 * 60_000,
        };
        let state = ConsoleState {
            inner: Arc::new(Inner {
                queue: queue::watch(store.clone()),
                store,
                audit,
                config: c.clone(),
                policy,
                secure,
                limiter: Mutex::new(ratelimit::RateLimit::new(c.sign_in_per_minute)),
                assets: assets::Assets::load(&c.resolved_assets_dir()),
                tz,
                metrics: metrics::ConsoleMetrics::new(registry),
            }),
        };
        guard::sweep(state.clone());
        Ok(Console { state, listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Plain(l) => l.local_addr().ok(),
            Listener::Tls(l) => axum::serve::Listener::local_addr(l).ok(),
        }
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConsoleError> {
        let addr = self.local_addr();
        let app = router(self.state).into_make_service_with_connect_info::<ClientAddr>();
        let scheme = if matches!(self.listener, Listener::Tls(_)) {
            "https"
        } else {
            "http"
        };
        if let Some(addr) = addr {
            tracing::info!(url = %format!("{scheme}://{addr}/"), "console listening");
        }
        match self.listener {
            Listener::Plain(l) => axum::serve(l, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(ConsoleError::Http),
            Listener::Tls(l) => axum::serve(l, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(ConsoleError::Http),
        }
    }
}
