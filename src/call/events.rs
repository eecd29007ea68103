//! Call progress as a feed: each call's notable moments (answered, waiting for the caller at a
//! step, finished with an outcome), numbered, the last few thousand kept. The admin port serves
//! it (`GET /calls/events?after=N`): a hook for end-to-end tests and the call harness to follow
//! a call without reading log text, and for a future live view. Flow step ids and outcomes only:
//! never PHI.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Events kept (older ones are forgotten; a reader that falls this far behind misses them).
const KEPT: usize = 4096;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallEvent {
    pub seq: u64,
    pub call: String,
    /// `answered`, `waiting`, `finished`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// For `waiting`: the flow step whose answer the agent waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For `finished`: how the call ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
}

#[derive(Default)]
pub struct CallEvents {
    inner: Mutex<(u64, VecDeque<CallEvent>)>,
}

impl CallEvents {
    pub fn publish(
        &self,
        call: &str,
        kind: &'static str,
        turn: Option<u32>,
        step: Option<String>,
        outcome: Option<&'static str>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += 1;
        let seq = inner.0;
        inner.1.push_back(CallEvent {
            seq,
            call: call.to_string(),
            kind,
            turn,
            step,
            outcome,
        });
        if inner.1.len() > KEPT {
            inner.1.pop_front();
        }
    }

    /// Events with a sequence number above `after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<CallEvent> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.1.iter().filter(|e| e.seq > after).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_read_after_a_mark() {
        let feed = CallEvents::default();
        feed.publish("a", "answered", None, None, None);
        feed.publish("a", "waiting", Some(0), Some("greet".into()), None);
        feed.publish("a", "finished", None, None, Some("completed"));
        let all = feed.after(0);
        assert_eq!(all.len(), 3);
        assert_eq!(feed.after(2).len(), 1);
        assert_eq!(feed.after(2)[0].outcome, Some("completed"));
        assert_eq!(all[1].step.as_deref(), Some("greet"));
    }
}
