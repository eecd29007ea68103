//! Accounts: the `carevoice users ...` commands and the administrators' accounts page. A new
//! account gets a one-time password (shown once, replaced at first sign-in) and enrolls its TOTP
//! at first sign-in; every change is an `admin_change` audit record.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::guard::Staff;
use super::pages::{self, Nav, UserRow, UsersPage};
use super::roles::Role;
use super::{ConsoleError, ConsoleState, password};
use crate::audit::{AdminChange, Audit, AuditEvent};
use crate::store::console::ConsoleUser;
use crate::store::{Store, now_ms};

/// Whether `name` can be an account name: 1-64 of letters, digits, `.`, `_`, `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= super::auth::MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn record(
    audit: &Audit,
    actor: &str,
    name: &str,
    change: String,
) -> Result<(), ConsoleError> {
    audit
        .log
        .append(AuditEvent::AdminChange(AdminChange {
            actor: actor.to_string(),
            target: format!("user:{name}"),
            change,
        }))
        .await?;
    Ok(())
}

/// `users add`: makes the account and returns its one-time password.
pub async fn add(
    store: &Store,
    audit: &Audit,
    actor: &str,
    name: &str,
    role: Role,
) -> Result<String, ConsoleError> {
    if !valid_name(name) {
        return Err(ConsoleError::Usage(format!(
            "user name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
        )));
    }
    let one_time = password::one_time()?;
    let for_hash = one_time.clone();
    let phc = tokio::task::spawn_blocking(move || password::hash(&for_hash))
        .await
        .map_err(|e| ConsoleError::Random(e.to_string()))??;
    let user = ConsoleUser {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        role: role.as_str().to_string(),
        password_hash: phc,
        must_change: true,
        totp_sealed: None,
        totp_last_step: None,
        failed_logins: 0,
        locked_until_ms: None,
        disabled: false,
        created_ms: now_ms(),
    };
    if !store.insert_console_user(&user).await? {
        return Err(ConsoleError::Usage(format!("user {name:?} already exists")));
    }
    record(
        audit,
        actor,
        name,
        format!("created, role {}", role.as_str()),
    )
    .await?;
    Ok(one_time)
}

async fn existing(store: &Store, name: &str) -> Result<ConsoleUser, ConsoleError> {
    store.console_user_by_name(name).await?.ok_or_else(|| {
        ConsoleError::Usage(format!("no user {name:?} (see `carevoice users list`)"))
    })
}

/// `users disable` / `users enable`. A disabled user's next request is refused (every request
/// checks the account), which also ends and audits the session, with a page that says why.
pub async fn set_disabled(
    store: &Store,
    audit: &Audit,
    actor: &str,
    name: &str,
    disabled: bool,
) -> Result<(), ConsoleError> {
    let user = existing(store, name).await?;
    store.set_console_user_disabled(&user.id, disabled).await?;
    if !disabled {
        store.clear_login_failures(&user.id).await?;
    }
    let change = if disabled { "disabled" } else { "enabled" };
    record(audit, actor, name, change.into()).await?;
    Ok(())
}

/// `users reset-mfa`: forgets the TOTP seed (the user enrolls again at the next sign-in) and ends
/// the user's sessions.
pub async fn reset_mfa(
    store: &Store,
    audit: &Audit,
    actor: &str,
    name: &str,
) -> Result<(), ConsoleError> {
    let user = existing(store, name).await?;
    store.set_console_totp(&user.id, None, None).await?;
    store.delete_console_sessions_of(&user.id).await?;
    record(audit, actor, name, "mfa reset".into()).await?;
    Ok(())
}

/// One line of `users list`.
pub fn describe(u: &ConsoleUser, now: i64) -> String {
    format!(
        "{:<24} {:<11} {:<9} mfa={:<3} {}",
        u.name,
        u.role,
        state_of(u, now),
        if u.totp_sealed.is_some() { "yes" } else { "no" },
        if u.must_change {
            "one-time password not yet replaced"
        } else {
            ""
        }
    )
}

fn state_of(u: &ConsoleUser, now: i64) -> &'static str {
    if u.disabled {
        "disabled"
    } else if u.locked_until_ms.is_some_and(|t| t > now) {
        "locked"
    } else {
        "active"
    }
}

/// The accounts page (administrators).
pub async fn page(
    State(state): State<ConsoleState>,
    Extension(staff): Extension<Staff>,
) -> Response {
    let now = now_ms();
    match state.inner.store.console_users().await {
        Ok(users) => pages::render(&UsersPage {
            nav: Nav::signed_in(
                &staff.name,
                staff.role,
                "/admin/users",
                state.inner.assets.present(),
            ),
            users: users
                .iter()
                .map(|u| UserRow {
                    name: u.name.clone(),
                    role: Role::parse(&u.role).map_or("unknown", Role::label),
                    state: state_of(u, now),
                    mfa: u.totp_sealed.is_some(),
                })
                .collect(),
        }),
        Err(e) => {
            tracing::error!(error = %e, "console accounts page failed");
            pages::server_error()
        }
    }
}
