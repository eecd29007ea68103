//! `carevoice audit export`: records as JSON Lines or as a FHIR R4 `Bundle` of `AuditEvent`s,
//! with the sealed columns decrypted (the caller holds the key) or left out (`redact`).

use std::io::Write;

use serde_json::{Value, json};
use sqlx::Row;

use super::AuditError;
use super::keys::{Binding, Crypto, KeyError};
use super::record::Record;
use super::verify::record_from_row;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Fhir,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "jsonl" => Some(Format::Jsonl),
            "fhir" => Some(Format::Fhir),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Fhir => "fhir",
        }
    }
}

/// What was exported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub records: u64,
    pub first: i64,
    pub last: i64,
}

/// Resolves a `--from`/`--to` argument: a sequence number, or an RFC 3339 time (the first record
/// at or after it for `from`, the last before or at it for `to`).
pub async fn resolve_bound(store: &Store, arg: &str, is_from: bool) -> Result<i64, AuditError> {
    if let Ok(seq) = arg.parse::<i64>() {
        return Ok(seq);
    }
    let ts: jiff::Timestamp = arg.parse().map_err(|e| {
        AuditError::Usage(format!(
            "{}: expected a sequence number or an RFC 3339 time such as 2026-01-31T00:00:00Z, got {arg:?}: {e}",
            if is_from { "--from" } else { "--to" }
        ))
    })?;
    let ms = ts.as_millisecond();
    let sql = if is_from {
        "SELECT MIN(seq) AS seq FROM audit_log WHERE ts_ms >= $1"
    } else {
        "SELECT MAX(seq) AS seq FROM audit_log WHERE ts_ms <= $1"
    };
    let row = sqlx::query(sql).bind(ms).fetch_one(store.pool()).await?;
    let seq: Option<i64> = row.try_get("seq")?;
    Ok(seq.unwrap_or(if is_from { i64::MAX } else { 0 }))
}

/// The decrypted JSON of one sealed column, or a marker when it cannot be read.
async fn open_column(
    crypto: &Crypto,
    seq: i64,
    column: &str,
    sealed: &Option<String>,
    redact: bool,
) -> Result<Value, AuditError> {
    let Some(sealed) = sealed else {
        return Ok(Value::Null);
    };
    if redact {
        return Ok(json!({"redacted": true}));
    }
    match crypto
        .open_sealed(&Binding::new("audit_log", seq, column), sealed)
        .await
    {
        Ok(plain) => serde_json::from_slice(&plain).map_err(|e| AuditError::Encode(e.to_string())),
        Err(KeyError::Destroyed(key)) => Ok(json!({"shredded": true, "data_key": key})),
        Err(e) => Err(e.into()),
    }
}

fn ts_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn jsonl_line(r: &Record, body: Value, phi: Value, transcript: Value) -> Value {
    json!({
        "seq": r.seq, "time": ts_text(r.ts_ms), "ts_ms": r.ts_ms, "kind": r.kind,
        "version": r.version, "body": body, "phi": phi, "transcript": transcript,
        "prev_hash": r.prev_hash, "hash": r.hash,
    })
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// One record as a FHIR R4 AuditEvent.
fn audit_event(r: &Record, body: &Value, phi: &Value, transcript: &Value) -> Value {
    let kind_coding = coding("urn:carevoice:audit-kind", &r.kind, &r.kind);
    let failed = body["outcome"].as_str().is_some_and(|o| o != "ok")
        || matches!(body["action"].as_str(), Some("login_failed" | "lockout"));
    let (event_type, subtype, action) = match r.kind.as_str() {
        "fhir_access" => {
            let op = body["op"].as_str().unwrap_or("read");
            let action = match op {
                "create" => "C",
                "update" => "U",
                "delete" => "D",
                _ => "R",
            };
            let interaction = if op == "search" { "search-type" } else { op };
            (
                coding(
                    "http://terminology.hl7.org/CodeSystem/audit-event-type",
                    "rest",
                    "RESTful Operation",
                ),
                coding("http://hl7.org/fhir/restful-interaction", interaction, op),
                action,
            )
        }
        "auth" => {
            let (code, display) = if body["action"].as_str() == Some("logout") {
                ("110123", "Logout")
            } else {
                ("110122", "Login")
            };
            (
                coding(DCM, "110114", "User Authentication"),
                coding(DCM, code, display),
                "E",
            )
        }
        "export" => (coding(DCM, "110106", "Export"), kind_coding, "R"),
        "staff_view" | "call_turn" => (coding(DCM, "110110", "Patient Record"), kind_coding, "R"),
        "break_glass" => (coding(DCM, "110113", "Security Alert"), kind_coding, "E"),
        "admin_change" | "config_change" | "key_rotation" | "prune" => (
            coding(DCM, "110100", "Application Activity"),
            kind_coding,
            "U",
        ),
        _ => (
            coding(DCM, "110100", "Application Activity"),
            kind_coding,
            "E",
        ),
    };
    let who = body["actor"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("call {}", body["call_id"].as_str().unwrap_or("?")));
    let mut entities = Vec::new();
    if let Some(patient) = phi["patient"].as_str() {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
        }));
    }
    if let (Some(rt), Some(id)) = (body["resource_type"].as_str(), phi["resource_id"].as_str()) {
        entities.push(json!({"what": {"reference": format!("{rt}/{id}")}}));
    }
    let mut detail = vec![json!({"type": "body", "valueString": body.to_string()})];
    if !phi.is_null() {
        detail.push(json!({"type": "phi", "valueString": phi.to_string()}));
    }
    if !transcript.is_null() {
        detail.push(json!({"type": "transcript", "valueString": transcript.to_string()}));
    }
    detail.push(json!({"type": "hash", "valueString": r.hash}));
    entities.push(json!({
        "what": {"identifier": {"system": "urn:carevoice:audit-seq", "value": r.seq.to_string()}},
        "detail": detail,
    }));
    json!({
        "resourceType": "AuditEvent",
        "id": format!("carevoice-audit-{}", r.seq),
        "type": event_type,
        "subtype": [subtype],
        "action": action,
        "recorded": ts_text(r.ts_ms),
        "outcome": if failed { "4" } else { "0" },
        "agent": [{"who": {"display": who}, "requestor": true}],
        "source": {"observer": {"display": "carevoice"}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": entities,
    })
}

/// Writes records `from..=to` to `out`.
pub async fn export(
    store: &Store,
    crypto: &Crypto,
    from: i64,
    to: i64,
    format: Format,
    redact: bool,
    out: &mut dyn Write,
) -> Result<Summary, AuditError> {
    let io = |e: std::io::Error| AuditError::Io(format!("cannot write the export: {e}"));
    let mut summary = Summary {
        first: from,
        last: from - 1,
        records: 0,
    };
    let mut entries = Vec::new();
    let mut next = from;
    loop {
        let rows = super::verify::record_rows(store, next, to, 2000).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let r = record_from_row(row)?;
            let body: Value =
                serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
            let phi = open_column(crypto, r.seq, "phi", &r.phi, redact).await?;
            let transcript =
                open_column(crypto, r.seq, "transcript", &r.transcript, redact).await?;
            match format {
                Format::Jsonl => {
                    let line = jsonl_line(&r, body, phi, transcript);
                    writeln!(out, "{line}").map_err(io)?;
                }
                Format::Fhir => entries.push(json!({
                    "fullUrl": format!("urn:carevoice:audit:{}", r.seq),
                    "resource": audit_event(&r, &body, &phi, &transcript),
                })),
            }
            if summary.records == 0 {
                summary.first = r.seq;
            }
            summary.records += 1;
            summary.last = r.seq;
            next = r.seq + 1;
        }
    }
    if format == Format::Fhir {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": jiff::Timestamp::now().to_string(),
            "entry": entries,
        });
        serde_json::to_writer_pretty(&mut *out, &bundle)
            .map_err(|e| AuditError::Io(format!("cannot write the export: {e}")))?;
        writeln!(out).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(summary)
}
