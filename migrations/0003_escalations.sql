-- Portable SQL: runs unchanged on SQLite and PostgreSQL (see src/store/mod.rs for the rules).

-- Calls handed to staff (transferred, or to call back), for the staff console. The summary is PHI:
-- sealed under a `phi` data key (bound to escalations/ID/summary), and only written when the
-- caller's identity was verified.
CREATE TABLE escalations (
    id         TEXT PRIMARY KEY,
    call_id    TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    urgent     BIGINT NOT NULL,
    identity   TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    summary    TEXT
);
CREATE INDEX escalations_created_ms ON escalations (created_ms);
