-- The front-desk console (issue 17): accounts, sessions, callback results. Portable SQL: runs
-- unchanged on SQLite and PostgreSQL (see src/store/mod.rs for the rules).

-- One row per person: shared logins are impossible by design (164.312(a)(2)(i)).
-- `password_hash` is an argon2id PHC string. `totp_secret` is the RFC 6238 seed sealed under a
-- `credential` data key (bound to console_users/ID/totp_secret); NULL until enrolled at first
-- sign-in. `totp_last_step` is the last time step a code was accepted for, so that a code cannot
-- be used twice. `failed_logins` counts failures in a row; `locked_until_ms` ends a lockout.
CREATE TABLE console_users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    must_change     BIGINT NOT NULL,
    totp_secret     TEXT,
    totp_last_step  BIGINT,
    failed_logins   BIGINT NOT NULL,
    locked_until_ms BIGINT,
    disabled        BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL
);

-- Signed-in browsers. `id_hash` is SHA-256 (hex) of the cookie's random token: the database never
-- holds a usable session id. `stage` is `password` (the password was right, the second factor is
-- still due), `change_password`, `full`, or `ended:REASON` (idle, expired, disabled: kept a while so
-- that the browser's next request can be told why). `pending_totp` is a sealed seed being enrolled.
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    stage        TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    pending_totp TEXT
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- A callback (an escalation with outcome `callback`) marked done by staff. The note may name the
-- patient: sealed under a `phi` data key, bound to callback_results/ESCALATION_ID/note.
CREATE TABLE callback_results (
    escalation_id TEXT PRIMARY KEY,
    done_ms       BIGINT NOT NULL,
    done_by       TEXT NOT NULL,
    note          TEXT
);
