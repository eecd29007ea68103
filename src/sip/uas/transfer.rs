//! Blind transfer (RFC 3515): a REFER inside the call's dialog sends the caller (the transferee)
//! to another URI; the transferee reports how its new call goes in NOTIFYs carrying a
//! `message/sipfrag` status line (RFC 3420). Once it says `SIP/2.0 2xx` the caller talks to the
//! target and we hang up our leg.
//!
//! Sans-IO like the rest of [`Endpoint`]: [`Endpoint::transfer`] queues the REFER (a non-INVITE
//! client transaction with Timers E/F), the outcome comes back as [`Event::TransferDone`].

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use super::{CallId, Endpoint, Event, Purpose, State, Transport, TxKey};
use crate::sip::message::{Message, Uri};

/// How long the transferee has to report a final status for its call to the target (ringing a
/// staff phone included). After that the transfer fails with [`TransferError::Timeout`] and the
/// caller is still ours.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

pub use crate::media::leg::TransferError;

/// A transfer waiting for its outcome.
#[derive(Debug)]
pub(super) struct Pending {
    /// The transferee answered the REFER with 2xx.
    pub(super) accepted: bool,
    pub(super) deadline: Instant,
}

/// A transfer target must be a plain SIP/SIPS/tel URI: nothing that could break out of the
/// Refer-To header.
fn valid_target(target: &str) -> Option<String> {
    let uri = target
        .trim()
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(target.trim());
    let clean = !uri.is_empty()
        && uri
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ','));
    (clean && Uri::parse(uri).is_some_and(|u| !u.host.is_empty())).then(|| uri.to_string())
}

/// The status code of a `message/sipfrag` body's status line (`SIP/2.0 200 OK`).
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.split_whitespace().next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

impl Endpoint {
    /// Blind-transfers answered call `call` to `target` (`sip:desk@pbx`): sends a REFER in its
    /// dialog. The outcome arrives later as [`Event::TransferDone`]; on success the call ends
    /// with our BYE. Errors here mean no REFER was sent.
    pub fn transfer(
        &mut self,
        call: CallId,
        target: &str,
        now: Instant,
    ) -> Result<(), TransferError> {
        let target = valid_target(target).ok_or(TransferError::BadTarget)?;
        let c = self.calls.get(&call).ok_or(TransferError::NoCall)?;
        if c.state != State::Confirmed {
            return Err(TransferError::NoCall);
        }
        if c.transfer.is_some() {
            return Err(TransferError::InProgress);
        }
        let transport = c.transport;
        let referred_by = c
            .invite
            .to()
            .map(|t| t.uri)
            .unwrap_or_else(|| "sip:carevoice@invalid".into());
        let contact = self.contact(transport);
        let (mut refer, branch) = self
            .dialog_request(call, "REFER")
            .ok_or(TransferError::NoCall)?;
        refer.push("Contact", contact);
        refer.push("Refer-To", format!("<{target}>"));
        refer.push("Referred-By", format!("<{referred_by}>"));
        let bytes = refer.to_bytes();
        let c = self.calls.get_mut(&call).ok_or(TransferError::NoCall)?;
        c.transfer = Some(Pending {
            accepted: false,
            deadline: now + TRANSFER_TIMEOUT,
        });
        let peer = c.peer;
        self.start_client(branch, peer, transport, bytes, Purpose::Refer(call), now);
        Ok(())
    }

    /// The final response to our REFER.
    pub(super) fn on_refer_response(&mut self, call: CallId, code: u16, _now: Instant) {
        if (200..300).contains(&code) {
            if let Some(t) = self.calls.get_mut(&call).and_then(|c| c.transfer.as_mut()) {
                t.accepted = true;
            }
        } else {
            self.end_transfer(call, Err(TransferError::Refused(code)));
        }
    }

    /// NOTIFY for the implicit "refer" subscription of our REFER.
    pub(super) fn on_notify(
        &mut self,
        msg: Message,
        key: TxKey,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Some(id) = self.dialog_of(&msg) else {
            let r = msg.response(481, "Subscription Does Not Exist", None);
            self.respond_cached(r, Some(key.clone()), from, transport, now);
            return;
        };
        let event = msg.header("Event").unwrap_or_default();
        let package = event.split(';').next().unwrap_or_default().trim();
        if !package.eq_ignore_ascii_case("refer") {
            let mut r = msg.response(489, "Bad Event", None);
            r.push("Allow-Events", "refer");
            self.respond_cached(r, Some(key.clone()), from, transport, now);
            return;
        }
        let cseq = msg.cseq().map(|c| c.0).unwrap_or(0);
        if let Some(c) = self.calls.get_mut(&id) {
            c.remote_cseq = c.remote_cseq.max(cseq);
        }
        let r = msg.response(200, "OK", None);
        self.respond_cached(r, Some(key.clone()), from, transport, now);
        let sipfrag = msg.header("Content-Type").is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("message/sipfrag")
        });
        let status = if sipfrag {
            sipfrag_status(&msg.body)
        } else {
            None
        };
        match status {
            Some(code) if (200..300).contains(&code) => {
                self.end_transfer(id, Ok(()));
                // The caller talks to the target now: our leg is done.
                self.hangup(id, now);
            }
            Some(code) if code >= 300 => {
                self.end_transfer(id, Err(TransferError::TargetFailed(code)))
            }
            _ => {}
        }
    }

    /// Reports the outcome of the transfer of `call`, if one is pending.
    pub(super) fn end_transfer(&mut self, call: CallId, result: Result<(), TransferError>) {
        if let Some(c) = self.calls.get_mut(&call)
            && c.transfer.take().is_some()
        {
            self.events.push(Event::TransferDone { call, result });
        }
    }

    /// Transfers whose transferee never reported a final status.
    pub(super) fn transfer_timeouts(&mut self, now: Instant) {
        let due: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.transfer.as_ref().is_some_and(|t| now >= t.deadline))
            .map(|(id, _)| *id)
            .collect();
        for call in due {
            self.end_transfer(call, Err(TransferError::Timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_plain_uris() {
        assert_eq!(
            valid_target("sip:desk@127.0.0.1:5070").as_deref(),
            Some("sip:desk@127.0.0.1:5070")
        );
        assert_eq!(
            valid_target("<sips:desk@pbx.example>").as_deref(),
            Some("sips:desk@pbx.example")
        );
        assert_eq!(valid_target("desk@pbx"), None);
        assert_eq!(valid_target("http://x"), None);
        assert_eq!(valid_target("sip:a@b>\r\nX-Evil: 1"), None);
        assert_eq!(valid_target("sip:a@b, <sip:c@d>"), None);
        assert_eq!(valid_target(""), None);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\nX: y\r\n"),
            Some(486)
        );
        assert_eq!(sipfrag_status(b"SIP/2.0 99 Odd"), None);
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0"), None);
        assert_eq!(sipfrag_status(b"\xff\xfe"), None);
        assert_eq!(sipfrag_status(b""), None);
    }
}
