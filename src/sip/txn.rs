//! Transactions (RFC 3261 section 17), sans-IO: how a request is matched to its server
//! transaction ([`TxKey`]).

use super::message::Message;
use super::uas::Transport;

/// The magic cookie that marks a branch made by an RFC 3261 element (RFC 3261 8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Which server transaction a request belongs to (RFC 3261 17.2.3).
///
/// - A request whose top Via branch starts with the magic cookie matches by branch, sent-by
///   and method (an ACK matches its INVITE), and the transport it came over.
/// - Others (RFC 2543 peers) match by Request-URI, From tag, Call-ID, CSeq number, the whole
///   top Via, method and transport, plus the To tag for non-INVITE requests. An ACK matches
///   the INVITE it acknowledges; [`Endpoint`](super::uas::Endpoint) checks that its To tag is
///   the one of our response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKey {
    Rfc3261 {
        branch: String,
        /// `host:port` of the top Via, the host in lower case, the port filled in.
        sent_by: String,
        method: String,
        transport: Transport,
    },
    Rfc2543 {
        request_uri: String,
        from_tag: String,
        /// Empty for INVITE (and the ACK and CANCEL that match it).
        to_tag: String,
        call_id: String,
        cseq: u32,
        via: String,
        method: String,
        transport: Transport,
    },
}

impl TxKey {
    /// The server transaction `msg` (a request) belongs to: ACK matches INVITE.
    pub fn of(msg: &Message, transport: Transport) -> Option<TxKey> {
        let method = match msg.method()? {
            "ACK" => "INVITE",
            m => m,
        };
        TxKey::for_method(msg, transport, method)
    }

    /// The key `msg` would have with `method` instead of its own: a CANCEL finds the INVITE
    /// it cancels with `for_method(cancel, t, "INVITE")` (RFC 3261 9.2).
    pub fn for_method(msg: &Message, transport: Transport, method: &str) -> Option<TxKey> {
        let via = msg.top_via()?;
        if let Some(branch) = via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            let default_port = if via.transport == "TLS" { 5061 } else { 5060 };
            return Some(TxKey::Rfc3261 {
                branch: branch.to_string(),
                sent_by: format!(
                    "{}:{}",
                    via.host.to_ascii_lowercase(),
                    via.port.unwrap_or(default_port)
                ),
                method: method.to_string(),
                transport,
            });
        }
        let uri = match &msg.start {
            super::message::StartLine::Request { uri, .. } => uri.clone(),
            super::message::StartLine::Response { .. } => return None,
        };
        let tag = |n: Option<super::message::NameAddr>| {
            n.and_then(|n| n.tag().map(str::to_string))
                .unwrap_or_default()
        };
        Some(TxKey::Rfc2543 {
            request_uri: uri,
            from_tag: tag(msg.from()),
            to_tag: if method == "INVITE" {
                String::new()
            } else {
                tag(msg.to())
            },
            call_id: msg.call_id()?.to_string(),
            cseq: msg.cseq()?.0,
            via: msg
                .header("Via")?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            method: method.to_string(),
            transport,
        })
    }

    /// The same transaction for another method (the INVITE a CANCEL or an ACK refers to).
    pub fn with_method(&self, method: &str) -> TxKey {
        let mut k = self.clone();
        match &mut k {
            TxKey::Rfc3261 { method: m, .. } => *m = method.to_string(),
            TxKey::Rfc2543 {
                method: m, to_tag, ..
            } => {
                *m = method.to_string();
                if method == "INVITE" {
                    to_tag.clear();
                }
            }
        }
        k
    }

    /// Whether this is an RFC 2543 key (no magic cookie).
    pub fn is_rfc2543(&self) -> bool {
        matches!(self, TxKey::Rfc2543 { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, parse};

    fn msg(method: &str, via: &str, to_tag: &str, cseq: u32) -> Message {
        let cseq_method = if method == "ACK" { "ACK" } else { method };
        let text = format!(
            "{method} sip:clinic@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@example.com>;tag=f1\r\nTo: <sip:clinic@example.com>{to_tag}\r\nCall-ID: c1\r\nCSeq: {cseq} {cseq_method}\r\nContent-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes(), Framing::Datagram).unwrap().0
    }

    #[test]
    fn rfc3261_keys_use_branch_sent_by_method_and_transport() {
        let a = msg(
            "INVITE",
            "SIP/2.0/UDP h1.example.com;branch=z9hG4bK1",
            "",
            1,
        );
        let b = msg(
            "INVITE",
            "SIP/2.0/UDP H1.example.com:5060;branch=z9hG4bK1",
            "",
            1,
        );
        let other_host = msg(
            "INVITE",
            "SIP/2.0/UDP h2.example.com;branch=z9hG4bK1",
            "",
            1,
        );
        let ack = msg(
            "ACK",
            "SIP/2.0/UDP h1.example.com;branch=z9hG4bK1",
            ";tag=x",
            1,
        );
        let bye = msg(
            "BYE",
            "SIP/2.0/UDP h1.example.com;branch=z9hG4bK1",
            ";tag=x",
            2,
        );
        let key = |m: &Message| TxKey::of(m, Transport::Udp).unwrap();
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&other_host));
        assert_eq!(key(&a), key(&ack));
        assert_ne!(key(&a), key(&bye));
        assert_ne!(key(&a), TxKey::of(&a, Transport::Tcp).unwrap());
        assert!(!key(&a).is_rfc2543());
    }

    #[test]
    fn rfc2543_keys_use_the_whole_request() {
        let a = msg("INVITE", "SIP/2.0/UDP h1.example.com", "", 1);
        let key = |m: &Message| TxKey::of(m, Transport::Udp).unwrap();
        assert!(key(&a).is_rfc2543());
        assert_eq!(
            key(&a),
            key(&msg("INVITE", "SIP/2.0/UDP  h1.example.com", "", 1))
        );
        assert_ne!(
            key(&a),
            key(&msg("INVITE", "SIP/2.0/UDP h2.example.com", "", 1))
        );
        assert_ne!(
            key(&a),
            key(&msg("INVITE", "SIP/2.0/UDP h1.example.com", "", 2))
        );
        // A branch without the cookie counts as part of the Via, not as a transaction id.
        let b1 = msg("INVITE", "SIP/2.0/UDP h1.example.com;branch=1", "", 1);
        let b2 = msg("INVITE", "SIP/2.0/UDP h9.example.com;branch=1", "", 1);
        assert_ne!(key(&b1), key(&b2));
        // The ACK for our error response matches the INVITE, whatever its To tag.
        assert_eq!(
            key(&a),
            key(&msg("ACK", "SIP/2.0/UDP h1.example.com", ";tag=x", 1))
        );
        // Non-INVITE requests count the To tag.
        let bye1 = msg("BYE", "SIP/2.0/UDP h1.example.com", ";tag=x", 2);
        let bye2 = msg("BYE", "SIP/2.0/UDP h1.example.com", ";tag=y", 2);
        assert_ne!(key(&bye1), key(&bye2));
        let cancel = msg("CANCEL", "SIP/2.0/UDP h1.example.com", "", 1);
        assert_eq!(key(&cancel).with_method("INVITE"), key(&a));
    }
}
