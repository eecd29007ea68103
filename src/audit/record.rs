//! Audit record schema (version [`SCHEMA_VERSION`]) and the canonical encoding that is hashed.
//!
//! A record is one row of `audit_log`:
//!
//! | column | meaning |
//! |---|---|
//! | `seq` | 1, 2, 3, ... with no gaps: the position in the chain |
//! | `ts_ms` | when it was written (ms since the Unix epoch, UTC) |
//! | `kind` | one of [`AuditEvent::kind`]: `call_turn`, `fhir_access`, `staff_view`, `admin_change`, `auth`, `break_glass`, `config_change`, `key_rotation`, `export`, `prune` |
//! | `version` | the schema version of `body`/`phi`/`transcript` (1) |
//! | `body` | the non-PHI fields as a JSON object (see each event struct) |
//! | `phi` | the PHI fields (patient and resource ids, break-glass reason) as a JSON object, sealed under an `audit` data key, bound to `audit_log/SEQ/phi` |
//! | `transcript` | caller transcript and reply text as a JSON object, sealed under a `transcript` data key, bound to `audit_log/SEQ/transcript` |
//! | `prev_hash` | `hash` of record `seq - 1` (64 zeros before record 1) |
//! | `hash` | hex SHA-256 of the canonical encoding below |
//!
//! Canonical encoding: the ASCII tag `carevoice-audit-v1`, then `seq` as 8 bytes big-endian,
//! `ts_ms` as 8 bytes big-endian (two's complement), `version` as 8 bytes big-endian, then `kind`,
//! `body`, `phi`, `transcript` and `prev_hash` each as a 4-byte big-endian length and the column's
//! UTF-8 bytes exactly as stored (a NULL column is length 0xFFFFFFFF, no bytes). The stored text is
//! hashed as is, so no JSON re-serialization is involved in verification.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::phi::{PatientId, Phi};

/// Version of the record schema written by this build.
pub const SCHEMA_VERSION: i64 = 1;

/// `prev_hash` of record 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Text that is PHI (a transcript, a patient id): sealed before it reaches the database, never
/// printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Confidential(String);

impl Confidential {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// A PHI value handed to the audit log for sealing.
    pub fn from_phi(value: &Phi<String>) -> Self {
        Self(value.expose_for_storage().clone())
    }

    pub fn from_patient(id: &PatientId) -> Self {
        Self(id.as_str().to_string())
    }

    /// The text, for the one place that shows it to a person after recording that it did (the
    /// console's audited disclosure, `console::disclosure`).
    pub fn expose_for_disclosure(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Confidential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Confidential(<redacted>)")
    }
}

impl Serialize for Confidential {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One FHIR action taken during a call turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnAction {
    /// `read`, `search`, `create`, `update`, `delete`.
    pub op: String,
    /// FHIR resource type, e.g. `Appointment`.
    pub resource_type: String,
    /// The resource's id (PHI: sealed).
    pub resource_id: Option<Confidential>,
    /// `ok`, or what went wrong (an HTTP status, `timeout`): no PHI.
    pub outcome: String,
}

/// One turn of a call: what the caller said, what the agent did and answered, and how long each
/// stage took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallTurn {
    pub call_id: String,
    pub turn: u32,
    /// End of the caller's speech and start of the reply (ms since the epoch).
    pub started_ms: i64,
    pub ended_ms: i64,
    /// Identity state at the end of the turn: `unverified`, `verified`, `failed`.
    pub identity: String,
    /// Recognised intent, e.g. `book`, `cancel`, `escalate`.
    pub intent: Option<String>,
    pub actions: Vec<TurnAction>,
    /// Milliseconds per stage, e.g. `endpointing`, `asr`, `llm`, `tts`, `total`.
    pub latency_ms: BTreeMap<String, u64>,
    /// The verified patient (PHI: sealed).
    pub patient: Option<Confidential>,
    /// What the caller said (sealed under a transcript key).
    pub transcript: Option<Confidential>,
    /// What the agent answered (sealed under a transcript key).
    pub reply: Option<Confidential>,
}

/// One FHIR read or write outside a call turn (or in one, when the caller wants one record each).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FhirAccess {
    /// Who acted: `agent` for the voice agent, else a staff user name.
    pub actor: String,
    pub call_id: Option<String>,
    /// `read`, `search`, `create`, `update`, `delete`.
    pub op: String,
    pub resource_type: String,
    /// `ok`, or what went wrong (an HTTP status, `timeout`).
    pub outcome: String,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    pub resource_id: Option<Confidential>,
    pub patient: Option<Confidential>,
}

/// A staff member looked at something patient-related in the console.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StaffView {
    pub actor: String,
    /// What was shown: `escalation`, `transcript`, `message`, `audit`, ...
    pub what: String,
    pub call_id: Option<String>,
    pub patient: Option<Confidential>,
}

/// An administrator changed an account, a role or a setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminChange {
    pub actor: String,
    /// What changed, e.g. `user:alice`, `role:front-desk`.
    pub target: String,
    /// The change in words (no PHI), e.g. `created`, `role front-desk -> admin`.
    pub change: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAction {
    Login,
    Logout,
    LoginFailed,
    /// Too many failures in a row: the account is locked for a while.
    Lockout,
    /// A second factor (TOTP) was enrolled at first sign-in.
    MfaEnrolled,
    /// The user set a new password (the one-time password is forced to change).
    PasswordChanged,
}

impl AuthAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthAction::Login => "login",
            AuthAction::Logout => "logout",
            AuthAction::LoginFailed => "login_failed",
            AuthAction::Lockout => "lockout",
            AuthAction::MfaEnrolled => "mfa_enrolled",
            AuthAction::PasswordChanged => "password_changed",
        }
    }
}

/// Console sign-in events: login, logout (with why: `user`, `idle`, `expired`, `disabled`),
/// failed login, lockout, MFA enrollment, password change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The user name given (for a failed login, whatever was typed).
    pub actor: String,
    pub action: AuthAction,
    /// Client address.
    pub source: Option<String>,
    /// Why a login failed (`bad password`, `bad totp`, `locked`), or why a session ended.
    pub reason: Option<String>,
}

/// Emergency access: a user took the break-glass role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BreakGlass {
    pub actor: String,
    /// When the emergency access ends (ms since the epoch).
    pub expires_ms: i64,
    /// The stated reason (may name a patient: sealed).
    pub reason: Confidential,
    pub patient: Option<Confidential>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigTarget {
    Config,
    Flow,
}

/// The configuration or an intake flow changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub actor: String,
    pub target: ConfigTarget,
    /// The file or flow name.
    pub name: String,
    /// The new version label, when versioned.
    pub version: Option<String>,
    /// SHA-256 of the new content.
    pub sha256: Option<String>,
}

/// `carevoice keys rotate` re-wrapped the data keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRotation {
    pub actor: String,
    pub old_master: String,
    pub new_master: String,
    pub data_keys: u64,
    pub signing_keys: u64,
}

/// `carevoice audit export` handed records out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Export {
    pub actor: String,
    pub format: String,
    pub from_seq: u64,
    pub to_seq: u64,
    pub records: u64,
    /// Whether PHI was decrypted into the export.
    pub decrypted: bool,
}

/// `carevoice audit prune` deleted expired records and destroyed expired data keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prune {
    pub actor: String,
    /// Records `1..=pruned_through` are gone (anchored by the checkpoint at that seq).
    pub pruned_through: u64,
    pub records_deleted: u64,
    pub data_keys_destroyed: Vec<String>,
}

/// Everything the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    CallTurn(CallTurn),
    FhirAccess(FhirAccess),
    StaffView(StaffView),
    AdminChange(AdminChange),
    Auth(Auth),
    BreakGlass(BreakGlass),
    ConfigChange(ConfigChange),
    KeyRotation(KeyRotation),
    Export(Export),
    Prune(Prune),
}

/// An event split into what is stored in clear and what is sealed.
pub(crate) struct Parts {
    pub kind: &'static str,
    pub body: Value,
    pub phi: Option<Value>,
    pub transcript: Option<Value>,
}

/// Drops empty/None entries so that a record seals only what it has.
fn object(entries: Vec<(&str, Value)>) -> Option<Value> {
    let map: serde_json::Map<String, Value> = entries
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

fn conf(c: &Option<Confidential>) -> Value {
    c.as_ref()
        .map_or(Value::Null, |c| Value::String(c.0.clone()))
}

impl AuditEvent {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::CallTurn(_) => "call_turn",
            AuditEvent::FhirAccess(_) => "fhir_access",
            AuditEvent::StaffView(_) => "staff_view",
            AuditEvent::AdminChange(_) => "admin_change",
            AuditEvent::Auth(_) => "auth",
            AuditEvent::BreakGlass(_) => "break_glass",
            AuditEvent::ConfigChange(_) => "config_change",
            AuditEvent::KeyRotation(_) => "key_rotation",
            AuditEvent::Export(_) => "export",
            AuditEvent::Prune(_) => "prune",
        }
    }

    pub(crate) fn parts(&self) -> Parts {
        let kind = self.kind();
        let (body, phi, transcript) = match self {
            AuditEvent::CallTurn(t) => {
                let actions: Vec<Value> = t
                    .actions
                    .iter()
                    .map(|a| json!({"op": a.op, "resource_type": a.resource_type, "outcome": a.outcome}))
                    .collect();
                let action_ids: Vec<Value> =
                    t.actions.iter().map(|a| conf(&a.resource_id)).collect();
                let any_id = action_ids.iter().any(|v| !v.is_null());
                (
                    json!({
                        "call_id": t.call_id, "turn": t.turn, "started_ms": t.started_ms,
                        "ended_ms": t.ended_ms, "identity": t.identity, "intent": t.intent,
                        "actions": actions, "latency_ms": t.latency_ms,
                    }),
                    object(vec![
                        ("patient", conf(&t.patient)),
                        (
                            "action_resource_ids",
                            if any_id {
                                Value::Array(action_ids)
                            } else {
                                Value::Null
                            },
                        ),
                    ]),
                    object(vec![
                        ("transcript", conf(&t.transcript)),
                        ("reply", conf(&t.reply)),
                    ]),
                )
            }
            AuditEvent::FhirAccess(f) => (
                json!({"actor": f.actor, "call_id": f.call_id, "op": f.op,
                       "resource_type": f.resource_type, "outcome": f.outcome, "status": f.status}),
                object(vec![
                    ("resource_id", conf(&f.resource_id)),
                    ("patient", conf(&f.patient)),
                ]),
                None,
            ),
            AuditEvent::StaffView(v) => (
                json!({"actor": v.actor, "what": v.what, "call_id": v.call_id}),
                object(vec![("patient", conf(&v.patient))]),
                None,
            ),
            AuditEvent::AdminChange(a) => (
                json!({"actor": a.actor, "target": a.target, "change": a.change}),
                None,
                None,
            ),
            AuditEvent::Auth(a) => (
                json!({"actor": a.actor, "action": a.action.as_str(), "source": a.source,
                       "reason": a.reason}),
                None,
                None,
            ),
            AuditEvent::BreakGlass(b) => (
                json!({"actor": b.actor, "expires_ms": b.expires_ms}),
                object(vec![
                    ("reason", Value::String(b.reason.0.clone())),
                    ("patient", conf(&b.patient)),
                ]),
                None,
            ),
            AuditEvent::ConfigChange(c) => (
                json!({"actor": c.actor,
                       "target": match c.target { ConfigTarget::Config => "config", ConfigTarget::Flow => "flow" },
                       "name": c.name, "version": c.version, "sha256": c.sha256}),
                None,
                None,
            ),
            AuditEvent::KeyRotation(k) => (
                json!({"actor": k.actor, "old_master": k.old_master, "new_master": k.new_master,
                       "data_keys": k.data_keys, "signing_keys": k.signing_keys}),
                None,
                None,
            ),
            AuditEvent::Export(e) => (
                json!({"actor": e.actor, "format": e.format, "from_seq": e.from_seq,
                       "to_seq": e.to_seq, "records": e.records, "decrypted": e.decrypted}),
                None,
                None,
            ),
            AuditEvent::Prune(p) => (
                json!({"actor": p.actor, "pruned_through": p.pruned_through,
                       "records_deleted": p.records_deleted,
                       "data_keys_destroyed": p.data_keys_destroyed}),
                None,
                None,
            ),
        };
        let mut body = body;
        if let Value::Object(map) = &mut body {
            map.insert("v".into(), json!(SCHEMA_VERSION));
        }
        Parts {
            kind,
            body,
            phi,
            transcript,
        }
    }
}

/// One stored record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub version: i64,
    pub body: String,
    pub phi: Option<String>,
    pub transcript: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

fn put(h: &mut Sha256, field: Option<&str>) {
    match field {
        Some(s) => {
            h.update((s.len() as u32).to_be_bytes());
            h.update(s.as_bytes());
        }
        None => h.update(u32::MAX.to_be_bytes()),
    }
}

impl Record {
    /// SHA-256 of the canonical encoding (see the module doc), hex.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"carevoice-audit-v1");
        h.update(self.seq.to_be_bytes());
        h.update(self.ts_ms.to_be_bytes());
        h.update(self.version.to_be_bytes());
        put(&mut h, Some(&self.kind));
        put(&mut h, Some(&self.body));
        put(&mut h, self.phi.as_deref());
        put(&mut h, self.transcript.as_deref());
        put(&mut h, Some(&self.prev_hash));
        hex::encode(h.finalize())
    }
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: i64, hash: &str, ts_ms: i64) -> Vec<u8> {
    format!("carevoice-audit-checkpoint-v1\0{seq}\0{hash}\0{ts_ms}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            seq: 7,
            ts_ms: 1_000,
            kind: "auth".into(),
            version: 1,
            body: "{}".into(),
            phi: None,
            transcript: Some("v1.k.AAAA".into()),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = record().compute_hash();
        assert_eq!(base.len(), 64);
        let mut changed = Vec::new();
        let mut r = record();
        r.seq = 8;
        changed.push(r.compute_hash());
        let mut r = record();
        r.ts_ms = 1_001;
        changed.push(r.compute_hash());
        let mut r = record();
        r.kind = "autj".into();
        changed.push(r.compute_hash());
        let mut r = record();
        r.body = "{ }".into();
        changed.push(r.compute_hash());
        let mut r = record();
        r.phi = Some(String::new());
        changed.push(r.compute_hash());
        let mut r = record();
        r.transcript = None;
        changed.push(r.compute_hash());
        let mut r = record();
        r.prev_hash = "1".repeat(64);
        changed.push(r.compute_hash());
        for h in changed {
            assert_ne!(h, base);
        }
    }

    #[test]
    fn phi_stays_out_of_the_body_and_debug() {
        let event = AuditEvent::CallTurn(CallTurn {
            call_id: "c1".into(),
            turn: 2,
            identity: "verified".into(),
            patient: Some(Confidential::new("patient-42")),
            transcript: Some(Confidential::new("my birthday is March 3")),
            reply: Some(Confidential::new("You are booked")),
            actions: vec![TurnAction {
                op: "create".into(),
                resource_type: "Appointment".into(),
                resource_id: Some(Confidential::new("appt-9")),
                outcome: "ok".into(),
            }],
            ..CallTurn::default()
        });
        let parts = event.parts();
        let body = parts.body.to_string();
        for secret in ["patient-42", "March 3", "booked", "appt-9"] {
            assert!(!body.contains(secret), "{body}");
            assert!(!format!("{event:?}").contains(secret));
        }
        assert!(
            body.contains("Appointment") && body.contains("\"v\":1"),
            "{body}"
        );
        assert_eq!(parts.phi.unwrap()["action_resource_ids"][0], "appt-9");
        assert_eq!(parts.transcript.unwrap()["reply"], "You are booked");
    }
}
