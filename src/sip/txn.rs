//! Transactions (RFC 3261 section 17), sans-IO: the timer values, what a transaction hands
//! the shell to send ([`Transmit`]), the one retransmission schedule every transaction uses
//! ([`Retransmit`]), and how a request is matched to its server transaction ([`TxKey`]).
//!
//! Shared by the user-agent core ([`super::uas`]) and registrations ([`super::register`]),
//! so neither imports the other for them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::message::Message;

/// The transport a message came or goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the transport delivers by itself (no retransmissions).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// RTT estimate (RFC 3261 17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Longest retransmit interval of non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// Longest time a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);
/// 64 * T1: Timer B (INVITE client gives up), F (non-INVITE client), H (wait for the ACK of
/// an INVITE response), J (non-INVITE server keeps its response); also how long a
/// finished call lingers.
pub const TIMEOUT: Duration = Duration::from_secs(32);
pub const TIMER_B: Duration = TIMEOUT;
pub const TIMER_F: Duration = TIMEOUT;
pub const TIMER_H: Duration = TIMEOUT;
pub const TIMER_J: Duration = TIMEOUT;

/// Bytes for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

/// A message resent until answered: on UDP at T1, 2*T1, 4*T1 ... (capped at T2 for
/// non-INVITE requests and INVITE responses, RFC 3261 17.1.2.2 and 17.2.1; not capped for an
/// INVITE request, Timer A), never on a reliable transport; given up at its deadline.
#[derive(Debug, Clone)]
pub struct Retransmit {
    pub bytes: Vec<u8>,
    next: Instant,
    interval: Duration,
    cap: Option<Duration>,
    deadline: Instant,
}

/// What [`Retransmit::poll`] says to do at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    Wait,
    /// Send the bytes again.
    Resend,
    /// The deadline has passed: the transaction timed out.
    GiveUp,
}

impl Retransmit {
    /// A non-INVITE request or an INVITE response sent at `now`: doubling capped at T2,
    /// given up after `give_up` (Timer F / H).
    pub fn capped(bytes: Vec<u8>, now: Instant, reliable: bool, give_up: Duration) -> Retransmit {
        Retransmit::new(bytes, now, reliable, Some(T2), give_up)
    }

    /// An INVITE request sent at `now`: doubling without a cap (Timer A), given up after
    /// Timer B.
    pub fn invite(bytes: Vec<u8>, now: Instant, reliable: bool) -> Retransmit {
        Retransmit::new(bytes, now, reliable, None, TIMER_B)
    }

    /// Kept (to resend on demand) but not retransmitted, given up after `give_up`.
    pub fn wait_only(bytes: Vec<u8>, now: Instant, give_up: Duration) -> Retransmit {
        Retransmit::new(bytes, now, true, None, give_up)
    }

    fn new(
        bytes: Vec<u8>,
        now: Instant,
        reliable: bool,
        cap: Option<Duration>,
        give_up: Duration,
    ) -> Retransmit {
        let deadline = now + give_up;
        Retransmit {
            bytes,
            next: if reliable { deadline } else { now + T1 },
            interval: T1,
            cap,
            deadline,
        }
    }

    /// When [`Retransmit::poll`] wants to run next.
    pub fn next_timeout(&self) -> Instant {
        self.next.min(self.deadline)
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// At `now`: give up, resend (and schedule the one after), or wait.
    pub fn poll(&mut self, now: Instant) -> Due {
        if now >= self.deadline {
            return Due::GiveUp;
        }
        if now < self.next {
            return Due::Wait;
        }
        self.interval = match self.cap {
            Some(cap) => (self.interval * 2).min(cap),
            None => self.interval * 2,
        };
        self.next = now + self.interval;
        Due::Resend
    }

    /// A provisional response came to our non-INVITE request (RFC 3261 17.1.2.2): from now on
    /// every T2.
    pub fn proceeding(&mut self, now: Instant) {
        if self.next < self.deadline {
            self.interval = T2;
            self.next = self.next.max(now + T2);
        }
    }
}

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

    /// The times at which `r` resends, polled every 100 ms up to its deadline, and when it
    /// gives up.
    fn schedule(mut r: Retransmit, start: Instant) -> (Vec<Duration>, Duration) {
        let mut sends = Vec::new();
        let mut t = start;
        loop {
            match r.poll(t) {
                Due::Resend => sends.push(t - start),
                Due::GiveUp => return (sends, t - start),
                Due::Wait => {}
            }
            assert!(r.next_timeout() > t || r.expired(t));
            t += Duration::from_millis(100);
        }
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn non_invite_doubles_up_to_t2_and_gives_up_at_timer_f() {
        let now = Instant::now();
        let (sends, gave_up) = schedule(Retransmit::capped(vec![1], now, false, TIMER_F), now);
        // 0.5, 1.5, 3.5, 7.5, then every 4 s.
        let mut want = ms(&[500, 1500, 3500, 7500]);
        let mut t = 7500;
        while t + 4000 < 32_000 {
            t += 4000;
            want.push(Duration::from_millis(t));
        }
        assert_eq!(sends, want);
        assert_eq!(gave_up, TIMER_F);
    }

    #[test]
    fn invite_requests_double_without_a_cap() {
        let now = Instant::now();
        let (sends, gave_up) = schedule(Retransmit::invite(vec![1], now, false), now);
        assert_eq!(sends, ms(&[500, 1500, 3500, 7500, 15_500, 31_500]));
        assert_eq!(gave_up, TIMER_B);
    }

    #[test]
    fn reliable_transports_never_resend_but_still_time_out() {
        let now = Instant::now();
        let r = Retransmit::capped(vec![1], now, true, TIMER_H);
        assert_eq!(r.next_timeout(), now + TIMER_H);
        let (sends, gave_up) = schedule(r, now);
        assert!(sends.is_empty());
        assert_eq!(gave_up, TIMER_H);
        let (sends, _) = schedule(Retransmit::wait_only(vec![1], now, T4), now);
        assert!(sends.is_empty());
    }

    #[test]
    fn a_provisional_answer_slows_retransmissions_to_t2() {
        let now = Instant::now();
        let mut r = Retransmit::capped(vec![1], now, false, TIMER_F);
        assert_eq!(r.poll(now + T1), Due::Resend);
        r.proceeding(now + T1);
        assert_eq!(r.next_timeout(), now + T1 + T2);
        assert_eq!(r.poll(now + T1 + T2 - Duration::from_millis(1)), Due::Wait);
        assert_eq!(r.poll(now + T1 + T2), Due::Resend);
        assert_eq!(r.next_timeout(), now + T1 + T2 * 2);
        assert_eq!(r.poll(now + TIMER_F), Due::GiveUp);
    }

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
