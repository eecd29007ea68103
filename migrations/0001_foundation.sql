-- Portable SQL: runs unchanged on SQLite and PostgreSQL (see src/store/mod.rs for the rules).

-- Small key/value facts about this installation (instance id, first start).
CREATE TABLE app_meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- One row per call. No PHI here: the caller is identified by a keyed hash of the calling number,
-- so repeat callers can be counted without storing the number itself.
CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    caller_hash TEXT NOT NULL,
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT,
    outcome     TEXT
);
CREATE INDEX calls_started_ms ON calls (started_ms);
