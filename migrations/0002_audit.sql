-- Audit log and at-rest encryption keys (issue 9). Portable SQL (see src/store/mod.rs).

-- The head of the hash chain: one row, locked by every append (SELECT ... FOR UPDATE on
-- PostgreSQL, BEGIN IMMEDIATE on SQLite) so that several writers, even in several processes,
-- form one chain.
CREATE TABLE audit_head (
    id         TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, updated_ms)
VALUES ('main', 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- One row per audit record (schema in src/audit/record.rs). `body` holds the record's non-PHI
-- fields as JSON; `phi` and `transcript` hold its PHI fields as AES-GCM ciphertexts ("v1.KEY.B64"),
-- sealed under data keys of the `audit` and `transcript` purposes. `hash` is SHA-256 over the
-- canonical encoding of the row, which includes `seq` and `prev_hash`.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    ts_ms      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL,
    phi        TEXT,
    transcript TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_ts_ms ON audit_log (ts_ms);

-- Signed checkpoints: Ed25519 over ("carevoice-audit-checkpoint-v1", seq, hash, ts_ms).
CREATE TABLE audit_checkpoints (
    seq            BIGINT PRIMARY KEY,
    hash           TEXT NOT NULL,
    ts_ms          BIGINT NOT NULL,
    signing_key_id TEXT NOT NULL,
    signature      TEXT NOT NULL
);

-- Ed25519 checkpoint signing keys; the secret is wrapped by the master key, with the public key
-- in the associated data, so a swapped public key fails to unwrap.
CREATE TABLE audit_signing_keys (
    id             TEXT PRIMARY KEY,
    public_key     TEXT NOT NULL,
    wrapped_secret TEXT NOT NULL,
    master_id      TEXT NOT NULL,
    created_ms     BIGINT NOT NULL
);

-- Data keys: one per purpose and calendar month (UTC), wrapped by the master key. Prune sets
-- `wrapped` to NULL (crypto-shredding): what was sealed under the key is unreadable from then on.
CREATE TABLE data_keys (
    id              TEXT PRIMARY KEY,
    purpose         TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms   BIGINT NOT NULL,
    wrapped         TEXT,
    master_id       TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    destroyed_ms    BIGINT
);
