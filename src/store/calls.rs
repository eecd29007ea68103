//! Call records: one row per call, no PHI (see `migrations/0001_foundation.sql`).

use sqlx::Row;

use super::{Store, StoreError};

/// How the caller reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sip,
    WebRtc,
    /// An offline call run from a text or WAV script (`carevoice call`).
    Offline,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sip => "sip",
            Channel::WebRtc => "webrtc",
            Channel::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "sip" => Some(Channel::Sip),
            "webrtc" => Some(Channel::WebRtc),
            "offline" => Some(Channel::Offline),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: String,
    pub channel: Channel,
    /// Keyed hash of the calling number; never the number.
    pub caller_hash: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub outcome: Option<String>,
}

impl Store {
    pub async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calls (id, channel, caller_hash, started_ms, ended_ms, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&call.id)
        .bind(call.channel.as_str())
        .bind(&call.caller_hash)
        .bind(call.started_ms)
        .bind(call.ended_ms)
        .bind(call.outcome.as_deref())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a call ended. Returns false when no open call has that id.
    pub async fn finish_call(
        &self,
        id: &str,
        ended_ms: i64,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE calls SET ended_ms = $1, outcome = $2 WHERE id = $3 AND ended_ms IS NULL",
        )
        .bind(ended_ms)
        .bind(outcome)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn get_call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, channel, caller_hash, started_ms, ended_ms, outcome FROM calls WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| call_from_row(&r)).transpose()
    }

    /// The most recent calls first.
    pub async fn recent_calls(&self, limit: i64) -> Result<Vec<CallRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, channel, caller_hash, started_ms, ended_ms, outcome FROM calls \
             ORDER BY started_ms DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(call_from_row).collect()
    }
}

fn call_from_row(row: &sqlx::any::AnyRow) -> Result<CallRecord, StoreError> {
    let channel: String = row.try_get("channel")?;
    Ok(CallRecord {
        id: row.try_get("id")?,
        channel: Channel::parse(&channel).ok_or_else(|| {
            StoreError::Query(sqlx::Error::Decode(
                format!("unknown call channel {channel:?}").into(),
            ))
        })?,
        caller_hash: row.try_get("caller_hash")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        outcome: row.try_get("outcome")?,
    })
}
