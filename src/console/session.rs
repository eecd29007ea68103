//! Console sessions, sans-IO: the random token in the cookie, the hash the store keeps, and the
//! expiry rules (idle timeout and absolute lifetime) as a pure function of explicit times.

use sha2::{Digest, Sha256};

/// Where a signed-in browser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The password was right; the second factor (or its enrollment) is still due.
    Password,
    /// Both factors passed, but the one-time password must be replaced first.
    ChangePassword,
    /// Signed in.
    Full,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Password => "password",
            Stage::ChangePassword => "change_password",
            Stage::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "password" => Some(Stage::Password),
            "change_password" => Some(Stage::ChangePassword),
            "full" => Some(Stage::Full),
            _ => None,
        }
    }
}

/// The `stage` an ended session is left with, so that the person's next request can be told why
/// (`ended:idle`, `ended:expired`, `ended:disabled`); the sweep deletes these later.
pub fn ended_stage(reason: &str) -> String {
    format!("ended:{reason}")
}

/// Why a session ended, when its `stage` says it did.
pub fn ended_reason(stage: &str) -> Option<&'static str> {
    let reason = stage.strip_prefix("ended:")?;
    Some(match reason {
        "idle" => "idle",
        "expired" => "expired",
        "disabled" => "disabled",
        _ => "ended",
    })
}

/// The expiry rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// No request for this long ends the session (automatic logoff).
    pub idle_ms: i64,
    /// A session never lasts longer than this.
    pub max_ms: i64,
    /// A half-signed-in session (password given, code not yet) lasts at most this long.
    pub pending_ms: i64,
}

/// What [`Policy::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Live,
    /// Idle too long (`reason` `idle` in the logout record).
    Idle,
    /// Past the absolute lifetime (`expired`).
    Expired,
}

impl Verdict {
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Live => "live",
            Verdict::Idle => "idle",
            Verdict::Expired => "expired",
        }
    }
}

impl Policy {
    /// Whether a session made at `created_ms`, last used at `last_seen_ms`, still holds at
    /// `now_ms`. A clock that went backwards counts as no time passed.
    pub fn check(&self, stage: Stage, created_ms: i64, last_seen_ms: i64, now_ms: i64) -> Verdict {
        let age = now_ms.saturating_sub(created_ms).max(0);
        let idle = now_ms.saturating_sub(last_seen_ms).max(0);
        let max = if stage == Stage::Full {
            self.max_ms
        } else {
            self.pending_ms.min(self.max_ms)
        };
        if age >= max {
            Verdict::Expired
        } else if idle >= self.idle_ms {
            Verdict::Idle
        } else {
            Verdict::Live
        }
    }
}

/// A fresh session token for the cookie: 32 random bytes, base64url.
pub fn new_token() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps for a token: SHA-256, hex. A stolen database holds no usable session.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a cookie value looks like one of our tokens (43 base64url characters); anything else
/// is refused before it reaches the store.
pub fn plausible_token(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        idle_ms: 15 * 60_000,
        max_ms: 12 * 3_600_000,
        pending_ms: 5 * 60_000,
    };

    #[test]
    fn idle_timeout_ends_a_session_that_saw_no_request() {
        let t0 = 1_000_000;
        assert_eq!(
            POLICY.check(Stage::Full, t0, t0, t0 + 60_000),
            Verdict::Live
        );
        assert_eq!(
            POLICY.check(Stage::Full, t0, t0, t0 + 15 * 60_000 - 1),
            Verdict::Live
        );
        assert_eq!(
            POLICY.check(Stage::Full, t0, t0, t0 + 15 * 60_000),
            Verdict::Idle
        );
        // A request a minute ago keeps it alive.
        let later = t0 + 60 * 60_000;
        assert_eq!(
            POLICY.check(Stage::Full, t0, later - 60_000, later),
            Verdict::Live
        );
    }

    #[test]
    fn absolute_lifetime_wins_over_activity() {
        let t0 = 0;
        let end = 12 * 3_600_000;
        assert_eq!(
            POLICY.check(Stage::Full, t0, end - 1, end),
            Verdict::Expired
        );
        assert_eq!(
            POLICY.check(Stage::Full, t0, end - 2, end - 1),
            Verdict::Live
        );
    }

    #[test]
    fn half_signed_in_sessions_are_short() {
        assert_eq!(
            POLICY.check(Stage::Password, 0, 4 * 60_000, 5 * 60_000),
            Verdict::Expired
        );
        assert_eq!(
            POLICY.check(Stage::Full, 0, 4 * 60_000, 5 * 60_000),
            Verdict::Live
        );
    }

    #[test]
    fn a_clock_going_backwards_is_no_time() {
        assert_eq!(POLICY.check(Stage::Full, 10, 10, 5), Verdict::Live);
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(plausible_token(&a), "{a}");
        assert!(!plausible_token("forged"));
        assert!(!plausible_token(&format!("{}!", &a[..42])));
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn an_ended_session_keeps_its_reason() {
        assert_eq!(ended_reason(&ended_stage("idle")), Some("idle"));
        assert_eq!(ended_reason(&ended_stage("disabled")), Some("disabled"));
        assert_eq!(ended_reason("ended:whatever"), Some("ended"));
        assert_eq!(ended_reason("full"), None);
        assert_eq!(Stage::parse(&ended_stage("idle")), None);
    }

    #[test]
    fn stages_round_trip() {
        for s in [Stage::Password, Stage::ChangePassword, Stage::Full] {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
        }
        assert_eq!(Stage::parse("admin"), None);
    }
}
