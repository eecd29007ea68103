//! The user-agent server core, sans-IO: server transactions (RFC 3261 17.2) with their timers,
//! dialogs, and the requests a clinic's phone line receives.
//!
//! Drive it with [`Endpoint::receive`] (bytes from a peer), [`Endpoint::accept`] /
//! [`Endpoint::reject`] / [`Endpoint::hangup`] (the application's decisions) and
//! [`Endpoint::on_timeout`]; take what it produced with [`Endpoint::drain`] (bytes to send and
//! events) and ask [`Endpoint::next_timeout`] when to call it again. No sockets, no clock inside.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use self::transfer::TransferError;
use super::SipError;
use super::message::{self, Framing, Message, NameAddr, host_for_print};
use super::register::{RegisterConfig, RegisterEvent, Registration};
use super::txn::TxKey;
use crate::media::sdp::{self, Negotiated, Sdp};

use super::txn::{Due, Retransmit, TIMER_F, TIMER_H, TIMER_J};
pub use super::txn::{T1, T2, TIMEOUT, Transmit, Transport};

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY";

pub type CallId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller sent BYE.
    RemoteBye,
    /// We hung up.
    LocalBye,
    /// The caller cancelled before we answered.
    Cancelled,
    /// We rejected the call.
    Rejected(u16),
    /// No ACK came for our 200 OK.
    NoAck,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new call: answer it with [`Endpoint::accept`] or turn it down with [`Endpoint::reject`].
    IncomingCall {
        call: CallId,
        /// The user part of the From URI (the calling number on a trunk), when there is one.
        /// A phone number identifies a patient: never log it.
        caller: Option<String>,
        /// What we will answer to the offer (codec, DTMF payload type, the caller's media address).
        media: Negotiated,
    },
    /// The ACK for our 200 OK arrived: media may flow both ways.
    Confirmed {
        call: CallId,
    },
    /// A re-INVITE changed the media (hold, unhold, new address or codec). Already answered.
    MediaChanged {
        call: CallId,
        media: Negotiated,
    },
    /// A keypad digit sent with SIP INFO.
    InfoDtmf {
        call: CallId,
        digit: char,
    },
    CallEnded {
        call: CallId,
        reason: EndReason,
    },
    /// A transfer asked with [`Endpoint::transfer`] is over: Ok when the transferee reported
    /// the target answered (we then hang up our leg), or why not.
    TransferDone {
        call: CallId,
        result: Result<(), TransferError>,
    },
    /// An outbound call ([`Endpoint::dial`]) was answered; our ACK is sent and media may flow.
    OutboundAnswered {
        call: CallId,
        media: Negotiated,
    },
    /// News of a registration started with [`Endpoint::register`].
    Registration(RegisterEvent),
    /// A new call whose digest credentials were wrong (challenged again).
    AuthFailed,
    /// A request from a source outside `allow_from`, refused with 403.
    Forbidden {
        from: SocketAddr,
    },
    /// A request we refused as malformed (for metrics; the 400 is already queued).
    BadRequest {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Address put in Via and Contact (what peers can reach us at) for UDP and TCP.
    pub contact_addr: SocketAddr,
    /// Port put in Via and Contact for TLS.
    pub tls_port: u16,
    /// Calls beyond this many get 503 with Retry-After.
    pub max_calls: usize,
    pub retry_after_secs: u32,
    pub user_agent: String,
    /// Sources allowed to send requests (the trunk's or PBX's addresses); empty: anyone.
    /// Others get 403 Forbidden.
    pub allow_from: Vec<super::acl::Cidr>,
    /// Digest credentials new calls must prove when they come from outside `allow_from` (or
    /// from anywhere when `allow_from` is empty): a 401 challenge first.
    pub inbound_auth: Option<InboundAuth>,
}

/// Credentials a peer must use to call us (digest, RFC 3261 22.4; MD5 or SHA-256).
#[derive(Clone)]
pub struct InboundAuth {
    pub realm: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundAuth")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// How long a nonce we issued stays good, and how many may be outstanding.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);
const MAX_NONCES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Our INVITE is out, no final response yet (outbound calls).
    Calling,
    /// INVITE received, waiting for the application.
    Proceeding,
    /// 200 OK sent, waiting for ACK.
    Answered,
    Confirmed,
    /// A non-2xx final response sent, waiting for ACK.
    Rejected,
    Terminated,
}

#[derive(Debug)]
struct Call {
    state: State,
    peer: SocketAddr,
    transport: Transport,
    invite: Message,
    /// Our INVITE's branch (calls we placed); empty for calls we received.
    invite_branch: String,
    /// The server transaction of the INVITE (calls we received).
    invite_key: Option<TxKey>,
    call_id: String,
    local_tag: String,
    /// Remote target (the caller's Contact URI).
    remote_target: String,
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    local_media: Option<SocketAddr>,
    media: Negotiated,
    session_id: u64,
    sdp_version: u64,
    /// Last response to the INVITE (or re-INVITE) in progress, resent on retransmissions.
    last_response: Option<Vec<u8>>,
    /// Server transaction of a re-INVITE whose 200 waits for an ACK.
    reinvite_key: Option<TxKey>,
    /// 180 Ringing already sent.
    rung: bool,
    retransmit: Option<Retransmit>,
    /// When a terminated call is forgotten.
    purge_at: Option<Instant>,
    /// A blind transfer (REFER) in progress.
    transfer: Option<transfer::Pending>,
    /// Set for calls we placed ([`Endpoint::dial`]).
    uac: Option<UacState>,
}

impl Call {
    /// Our non-2xx final response to the INVITE is `bytes`: resent until the ACK (Timer G),
    /// given up after Timer H.
    fn reject_with(&mut self, bytes: &[u8], now: Instant) {
        self.state = State::Rejected;
        self.last_response = Some(bytes.to_vec());
        self.retransmit = Some(Retransmit::capped(
            bytes.to_vec(),
            now,
            self.transport.reliable(),
            TIMER_H,
        ));
    }
}

/// What an outbound call keeps besides [`Call`].
#[derive(Debug, Default)]
struct UacState {
    /// The callee's To (with its tag) from the 2xx: the To of our in-dialog requests.
    remote: Option<String>,
    /// Our ACK for the 2xx, resent when the 2xx is.
    ack: Option<Vec<u8>>,
    /// We hung up before the answer (CANCEL sent).
    cancelled: bool,
}

/// A non-INVITE server transaction's response kept for retransmissions (Timer J).
struct Cached {
    bytes: Vec<u8>,
    expires: Instant,
}

/// What a client transaction of ours is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Bye,
    /// The REFER of a transfer on this call.
    Refer(CallId),
}

/// Our non-INVITE request (BYE, REFER), retransmitted until a response (Timers E/F).
struct ClientTx {
    to: SocketAddr,
    transport: Transport,
    retransmit: Retransmit,
    purpose: Purpose,
}

pub struct Endpoint {
    config: EndpointConfig,
    /// Shutting down: new calls get 503 with Retry-After; calls in progress go on.
    draining: bool,
    calls: HashMap<CallId, Call>,
    /// Our outbound INVITEs by branch (client transactions).
    by_branch: HashMap<String, CallId>,
    /// INVITE server transactions (RFC 3261 17.2.3 matching).
    server_tx: HashMap<TxKey, CallId>,
    by_dialog: HashMap<(String, String), CallId>,
    cached: HashMap<TxKey, Cached>,
    client: HashMap<String, ClientTx>,
    next_id: CallId,
    registrations: Vec<Registration>,
    /// Nonces we challenged with, and when each expires.
    nonces: HashMap<String, Instant>,
    transmits: Vec<Transmit>,
    events: Vec<Event>,
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

fn dtmf_from_info(msg: &Message) -> Option<char> {
    let ct = msg.header("Content-Type")?.to_ascii_lowercase();
    let body = std::str::from_utf8(&msg.body).ok()?;
    let raw = if ct.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ct.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let c = raw.chars().next()?.to_ascii_uppercase();
    match raw {
        "10" => Some('*'),
        "11" => Some('#'),
        _ if raw.len() == 1 && "0123456789*#ABCD".contains(c) => Some(c),
        _ => None,
    }
}

/// Header inspection of a request we implement (RFC 3261 8.2.2): a Request-URI scheme we do
/// not serve (416) or an extension the request requires (420; we support none). ACK and
/// CANCEL are never refused here.
/// A refusal: status code, reason phrase and the headers that go with it.
type Refusal = (u16, &'static str, Vec<(&'static str, String)>);

fn header_inspection(msg: &Message) -> Option<Refusal> {
    let uri = match &msg.start {
        message::StartLine::Request { uri, .. } => uri,
        message::StartLine::Response { .. } => return None,
    };
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or_default();
    if !["sip", "sips", "tel"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Some((416, "Unsupported URI Scheme", Vec::new()));
    }
    let required: Vec<&str> = msg
        .headers_named("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if !required.is_empty() {
        return Some((
            420,
            "Bad Extension",
            vec![("Unsupported", required.join(", "))],
        ));
    }
    None
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            config,
            draining: false,
            calls: HashMap::new(),
            by_branch: HashMap::new(),
            server_tx: HashMap::new(),
            by_dialog: HashMap::new(),
            cached: HashMap::new(),
            client: HashMap::new(),
            next_id: 1,
            registrations: Vec::new(),
            nonces: HashMap::new(),
            transmits: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Stops taking new calls (503 with Retry-After, like a full server); dialogs in progress,
    /// OPTIONS and registrations are served as before.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// The calls not yet ended, so a shell can hang them all up.
    pub fn live_calls(&self) -> Vec<CallId> {
        self.calls
            .iter()
            .filter(|(_, c)| !matches!(c.state, State::Terminated | State::Rejected))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.state != State::Terminated)
            .count()
    }

    /// Everything queued since the last drain: bytes to send, then events.
    pub fn drain(&mut self) -> (Vec<Transmit>, Vec<Event>) {
        (
            std::mem::take(&mut self.transmits),
            std::mem::take(&mut self.events),
        )
    }

    /// Starts registering with a registrar (first REGISTER at once), kept up until dropped.
    pub fn register(&mut self, config: RegisterConfig, now: Instant) {
        let mut r = Registration::new(config, now);
        r.on_timeout(now);
        self.registrations.push(r);
        self.collect_registrations();
    }

    /// Whether every registration holds a binding now.
    pub fn registered(&self) -> bool {
        self.registrations.iter().all(|r| r.is_registered())
    }

    fn collect_registrations(&mut self) {
        for r in &mut self.registrations {
            let (t, e) = r.drain();
            self.transmits.extend(t);
            self.events.extend(e.into_iter().map(Event::Registration));
        }
    }

    fn send(&mut self, to: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        self.transmits.push(Transmit {
            to,
            transport,
            bytes,
        });
    }

    fn finish(&mut self, resp: &mut Message) {
        resp.push("Server", self.config.user_agent.clone());
    }

    fn contact(&self, transport: Transport) -> String {
        let a = self.via_addr(transport);
        format!(
            "<sip:carevoice@{}:{};transport={}>",
            host_for_print(&a.ip().to_string()),
            a.port(),
            transport.name().to_ascii_lowercase()
        )
    }

    fn via_addr(&self, transport: Transport) -> SocketAddr {
        let mut a = self.config.contact_addr;
        if transport == Transport::Tls {
            a.set_port(self.config.tls_port);
        }
        a
    }

    /// Handles one datagram or one framed stream message from `from`.
    pub fn receive(&mut self, bytes: &[u8], from: SocketAddr, transport: Transport, now: Instant) {
        let msg = match message::parse(bytes, Framing::Datagram) {
            Ok((m, _)) => m,
            Err(SipError::Empty) => return,
            Err(e) => {
                self.receive_malformed(bytes, &e, from, transport);
                return;
            }
        };
        self.receive_message(msg, from, transport, now);
    }

    /// Handles bytes that did not parse as a message (`error` says why): a 400 (505 for
    /// another SIP version) when the head tells where to send it, else nothing. Stream
    /// transports call this when framing is lost, before they close the connection.
    pub fn receive_malformed(
        &mut self,
        bytes: &[u8],
        error: &SipError,
        from: SocketAddr,
        transport: Transport,
    ) {
        let head = message::parse_head_only(bytes);
        match error {
            SipError::UnsupportedVersion(_) => {
                self.reply_bad_with(head, 505, "Version Not Supported", from, transport)
            }
            e => self.reply_bad(head, &e.to_string(), from, transport),
        }
    }

    /// Handles an already parsed message (stream transports frame and parse first).
    pub fn receive_message(
        &mut self,
        msg: Message,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        if msg.code().is_some() {
            self.on_response(&msg, now);
            return;
        }
        if let Err(e) = msg.check_request() {
            self.reply_bad(Some(msg), &e.to_string(), from, transport);
            return;
        }
        let listed = super::acl::allowed(&self.config.allow_from, from.ip());
        let must_auth =
            self.config.inbound_auth.is_some() && (self.config.allow_from.is_empty() || !listed);
        let Some(key) = TxKey::of(&msg, transport) else {
            self.reply_bad(Some(msg), "bad Via", from, transport);
            return;
        };
        let known_branch = self.server_tx.contains_key(&key);
        // New INVITEs only: retransmissions of an accepted one get their last response again.
        if must_auth
            && msg.method() == Some("INVITE")
            && msg.to().is_some_and(|t| t.tag().is_none())
            && !known_branch
            && !self.authenticated(&msg, now)
        {
            self.challenge(&msg, from, transport, now);
            return;
        }
        if !listed && !must_auth {
            self.events.push(Event::Forbidden { from });
            if msg.method() != Some("ACK") {
                let mut r = msg.response(403, "Forbidden", Some(&random_token()));
                self.finish(&mut r);
                self.send(from, transport, r.to_bytes());
            }
            return;
        }
        let method = msg.method().unwrap_or_default().to_string();
        // Retransmitted non-INVITE request: resend the response.
        if method != "INVITE"
            && method != "ACK"
            && let Some(c) = self.cached.get(&key)
        {
            let bytes = c.bytes.clone();
            self.send(from, transport, bytes);
            return;
        }
        if method != "ACK"
            && method != "CANCEL"
            && !known_branch
            && ALLOW.split(", ").any(|m| m == method)
            && let Some((code, reason, extra)) = header_inspection(&msg)
        {
            if method == "INVITE" {
                let tag = random_token();
                self.reject_new(&msg, key, code, reason, &tag, from, transport, now, &extra);
            } else {
                let mut r = msg.response(code, reason, Some(&random_token()));
                for (name, value) in extra {
                    r.push(name, value);
                }
                self.respond_cached(r, Some(key), from, transport, now);
            }
            return;
        }
        match method.as_str() {
            "INVITE" => self.on_invite(msg, key, from, transport, now),
            "ACK" => self.on_ack(&msg, &key, now),
            "BYE" => self.on_bye(msg, key, from, transport, now),
            "CANCEL" => self.on_cancel(msg, key, from, transport, now),
            "OPTIONS" => {
                let mut r = msg.response(200, "OK", Some(&random_token()));
                r.push("Allow", ALLOW);
                r.push("Accept", "application/sdp");
                self.respond_cached(r, Some(key), from, transport, now);
            }
            "INFO" => self.on_info(msg, key, from, transport, now),
            "NOTIFY" => self.on_notify(msg, key, from, transport, now),
            "REGISTER" | "SUBSCRIBE" | "PUBLISH" | "MESSAGE" | "UPDATE" | "PRACK" | "REFER" => {
                let mut r = msg.response(405, "Method Not Allowed", Some(&random_token()));
                r.push("Allow", ALLOW);
                self.respond_cached(r, Some(key), from, transport, now);
            }
            _ => {
                let mut r = msg.response(501, "Not Implemented", Some(&random_token()));
                r.push("Allow", ALLOW);
                self.respond_cached(r, Some(key), from, transport, now);
            }
        }
    }

    /// Whether a new INVITE carries valid credentials for a nonce we issued (each nonce once).
    fn authenticated(&mut self, msg: &Message, now: Instant) -> bool {
        let Some(auth) = self.config.inbound_auth.clone() else {
            return true;
        };
        let ok = msg
            .headers_named("Authorization")
            .filter_map(super::digest::Credentials::parse)
            .any(|c| {
                c.username == auth.username
                    && c.realm == auth.realm
                    && self.nonces.get(&c.nonce).is_some_and(|&exp| now < exp)
                    && c.check(&auth.password, "INVITE")
                    && self.nonces.remove(&c.nonce).is_some()
            });
        if !ok && msg.header("Authorization").is_some() {
            self.events.push(Event::AuthFailed);
        }
        ok
    }

    /// 401 with a fresh nonce, one challenge per algorithm (RFC 8760). MD5 comes first because
    /// many UAs read only the first header; SHA-256-capable ones pick it from the second.
    fn challenge(&mut self, msg: &Message, from: SocketAddr, transport: Transport, now: Instant) {
        let Some(auth) = self.config.inbound_auth.clone() else {
            return;
        };
        self.nonces.retain(|_, exp| now < *exp);
        if self.nonces.len() >= MAX_NONCES {
            let mut r = msg.response(503, "Service Unavailable", Some(&random_token()));
            r.push("Retry-After", self.config.retry_after_secs.to_string());
            self.finish(&mut r);
            self.send(from, transport, r.to_bytes());
            return;
        }
        let nonce = format!("{}{}", random_token(), random_token());
        self.nonces.insert(nonce.clone(), now + NONCE_LIFETIME);
        let mut r = msg.response(401, "Unauthorized", Some(&random_token()));
        for alg in ["MD5", "SHA-256"] {
            r.push(
                "WWW-Authenticate",
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", qop=\"auth\", algorithm={alg}",
                    auth.realm
                ),
            );
        }
        self.finish(&mut r);
        self.send(from, transport, r.to_bytes());
    }

    fn reply_bad(
        &mut self,
        msg: Option<Message>,
        reason: &str,
        from: SocketAddr,
        transport: Transport,
    ) {
        let phrase: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        self.reply_bad_with(
            msg,
            400,
            &format!("Bad Request ({phrase})"),
            from,
            transport,
        );
    }

    fn reply_bad_with(
        &mut self,
        msg: Option<Message>,
        code: u16,
        reason: &str,
        from: SocketAddr,
        transport: Transport,
    ) {
        self.events.push(Event::BadRequest {
            reason: reason.to_string(),
        });
        // An answer needs a request with a Via to go back along (we send it to the source
        // address, the Via is copied so the sender can match it); anything else is dropped.
        // An ACK is never answered.
        let Some(msg) = msg else { return };
        let is_ack = |m: &str| m.eq_ignore_ascii_case("ACK");
        if msg.method().is_none_or(|m| m.is_empty() || is_ack(m))
            || msg
                .header("CSeq")
                .is_some_and(|c| c.split_whitespace().nth(1).is_some_and(is_ack))
            || msg.header("Via").is_none()
        {
            return;
        }
        let mut r = msg.response(code, reason, None);
        self.finish(&mut r);
        self.send(from, transport, r.to_bytes());
    }

    fn respond_cached(
        &mut self,
        mut resp: Message,
        key: Option<TxKey>,
        to: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        self.finish(&mut resp);
        let bytes = resp.to_bytes();
        if !transport.reliable()
            && let Some(key) = key
        {
            self.cached.insert(
                key,
                Cached {
                    bytes: bytes.clone(),
                    expires: now + TIMER_J,
                },
            );
        }
        self.send(to, transport, bytes);
    }

    fn dialog_of(&self, msg: &Message) -> Option<CallId> {
        let call_id = msg.call_id()?.to_string();
        let tag = msg.to()?.tag()?.to_string();
        self.by_dialog.get(&(call_id, tag)).copied()
    }

    fn on_invite(
        &mut self,
        msg: Message,
        key: TxKey,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        // A retransmission of an INVITE in progress: resend the last response.
        if let Some(id) = self.server_tx.get(&key).copied() {
            if let Some(call) = self.calls.get(&id)
                && let Some(bytes) = call.last_response.clone()
            {
                self.send(from, transport, bytes);
            }
            return;
        }
        if msg.to().and_then(|t| t.tag().map(str::to_string)).is_some() {
            self.on_reinvite(msg, key, from, transport, now);
            return;
        }
        let local_tag = random_token();
        let content_type = msg
            .header("Content-Type")
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        // We answer with SDP only: a caller that accepts no SDP cannot take our answer.
        if let Some(accept) = msg.header("Accept")
            && !accept.split(',').any(|a| {
                let a = a.split(';').next().unwrap_or_default().trim();
                ["application/sdp", "application/*", "*/*"]
                    .iter()
                    .any(|ok| a.eq_ignore_ascii_case(ok))
            })
        {
            let extra = [("Accept", "application/sdp".to_string())];
            self.reject_new(
                &msg,
                key,
                406,
                "Not Acceptable",
                &local_tag,
                from,
                transport,
                now,
                &extra,
            );
            return;
        }
        // A body we cannot read (RFC 3261 21.4.13): 415 with what we accept.
        if !msg.body.is_empty() && !content_type.starts_with("application/sdp")
            || msg
                .header("Content-Encoding")
                .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            let extra = [
                ("Accept", "application/sdp".to_string()),
                ("Accept-Encoding", "identity".to_string()),
            ];
            self.reject_new(
                &msg,
                key,
                415,
                "Unsupported Media Type",
                &local_tag,
                from,
                transport,
                now,
                &extra,
            );
            return;
        }
        let offer = if msg.body.is_empty() {
            Err("an SDP offer is required".to_string())
        } else {
            Sdp::parse(&msg.body).map_err(|e| e.to_string())
        };
        let media = match offer.map(|o| sdp::negotiate(&o)) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.reject_new(
                    &msg,
                    key,
                    488,
                    "Not Acceptable Here",
                    &local_tag,
                    from,
                    transport,
                    now,
                    &[],
                );
                return;
            }
            Err(e) => {
                let reason = format!("Not Acceptable Here ({e})");
                self.reject_new(
                    &msg,
                    key,
                    488,
                    &reason,
                    &local_tag,
                    from,
                    transport,
                    now,
                    &[],
                );
                return;
            }
        };
        if self.draining || self.active_calls() >= self.config.max_calls {
            let retry = [("Retry-After", self.config.retry_after_secs.to_string())];
            self.reject_new(
                &msg,
                key,
                503,
                "Service Unavailable",
                &local_tag,
                from,
                transport,
                now,
                &retry,
            );
            return;
        }
        let mut trying = msg.response(100, "Trying", None);
        self.finish(&mut trying);
        let trying = trying.to_bytes();
        self.send(from, transport, trying.clone());
        let id = self.next_id;
        self.next_id += 1;
        let call = self.new_call(&msg, key.clone(), local_tag, from, transport, media.clone());
        let mut call = call;
        call.last_response = Some(trying);
        self.server_tx.insert(key, id);
        self.by_dialog
            .insert((call.call_id.clone(), call.local_tag.clone()), id);
        self.calls.insert(id, call);
        let caller = msg
            .from()
            .and_then(|f| message::Uri::parse(&f.uri))
            .and_then(|u| u.user);
        self.events.push(Event::IncomingCall {
            call: id,
            caller,
            media,
        });
    }

    fn new_call(
        &self,
        msg: &Message,
        key: TxKey,
        local_tag: String,
        from: SocketAddr,
        transport: Transport,
        media: Negotiated,
    ) -> Call {
        let remote_target = msg
            .header("Contact")
            .and_then(NameAddr::parse)
            .map(|n| n.uri)
            .or_else(|| msg.from().map(|f| f.uri))
            .unwrap_or_default();
        let session_id = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        ) >> 2;
        Call {
            state: State::Proceeding,
            peer: from,
            transport,
            invite: msg.clone(),
            invite_branch: String::new(),
            invite_key: Some(key),
            call_id: msg.call_id().unwrap_or_default().to_string(),
            local_tag,
            remote_target,
            route_set: msg
                .headers_named("Record-Route")
                .map(str::to_string)
                .collect(),
            remote_cseq: msg.cseq().map(|c| c.0).unwrap_or(0),
            local_cseq: 0,
            local_media: None,
            media,
            session_id,
            sdp_version: 1,
            last_response: None,
            reinvite_key: None,
            rung: false,
            retransmit: None,
            purge_at: None,
            transfer: None,
            uac: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reject_new(
        &mut self,
        msg: &Message,
        key: TxKey,
        code: u16,
        reason: &str,
        local_tag: &str,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
        extra: &[(&str, String)],
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let placeholder = Negotiated {
            proto: "RTP/AVP".into(),
            srtp: None,
            codec: sdp::Codec::Pcmu,
            payload_type: 0,
            dtmf_pt: None,
            remote_addr: None,
            remote_port: 0,
            direction: sdp::Direction::Inactive,
            ptime: 20,
            rtcp_mux: false,
        };
        let mut call = self.new_call(
            msg,
            key.clone(),
            local_tag.to_string(),
            from,
            transport,
            placeholder,
        );
        let mut r = msg.response(code, reason, Some(local_tag));
        for (name, value) in extra {
            r.push(name, value.clone());
        }
        if code == 488 {
            r.push("Warning", "304 carevoice \"Media type not available\"");
        }
        self.finish(&mut r);
        let bytes = r.to_bytes();
        call.reject_with(&bytes, now);
        self.send(from, transport, bytes);
        self.server_tx.insert(key, id);
        self.calls.insert(id, call);
    }

    /// Sends 180 Ringing for a call not yet answered (once).
    pub fn ring(&mut self, call: CallId) {
        let contact = match self.calls.get(&call) {
            Some(c) if c.state == State::Proceeding && !c.rung => self.contact(c.transport),
            _ => return,
        };
        let user_agent = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.rung = true;
        let mut ringing = c.invite.response(180, "Ringing", Some(&c.local_tag));
        ringing.push("Contact", contact);
        ringing.push("Server", user_agent);
        let bytes = ringing.to_bytes();
        c.last_response = Some(bytes.clone());
        let (peer, transport) = (c.peer, c.transport);
        self.send(peer, transport, bytes);
    }

    /// Answers call `call` (180 Ringing unless sent, then 200 OK with our SDP answer, media at
    /// `local_media`).
    pub fn accept(&mut self, call: CallId, local_media: SocketAddr, now: Instant) {
        let user_agent = self.config.user_agent.clone();
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != State::Proceeding {
            return;
        }
        let transport = c.transport;
        self.ring(call);
        let contact = self.contact(transport);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.local_media = Some(local_media);
        let answer = sdp::answer(&c.media, local_media, c.session_id, c.sdp_version);
        let mut ok = c.invite.response(200, "OK", Some(&c.local_tag));
        ok.push("Contact", contact);
        ok.push("Allow", ALLOW);
        ok.push("Server", user_agent);
        ok.push("Content-Type", "application/sdp");
        ok.body = answer.into_bytes();
        let ok = ok.to_bytes();
        c.state = State::Answered;
        c.last_response = Some(ok.clone());
        c.retransmit = Some(Retransmit::capped(
            ok.clone(),
            now,
            transport.reliable(),
            TIMER_H,
        ));
        let peer = c.peer;
        self.send(peer, transport, ok);
    }

    /// Turns down a call we have not answered (486 Busy Here, 503, 603 ...).
    pub fn reject(
        &mut self,
        call: CallId,
        code: u16,
        reason: &str,
        retry_after: Option<u32>,
        now: Instant,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != State::Proceeding {
            return;
        }
        let mut r = c.invite.response(code, reason, Some(&c.local_tag));
        if let Some(secs) = retry_after {
            r.push("Retry-After", secs.to_string());
        }
        r.push("Server", self.config.user_agent.clone());
        let bytes = r.to_bytes();
        c.reject_with(&bytes, now);
        let (peer, transport) = (c.peer, c.transport);
        self.send(peer, transport, bytes);
        self.events.push(Event::CallEnded {
            call,
            reason: EndReason::Rejected(code),
        });
    }

    fn on_ack(&mut self, msg: &Message, key: &TxKey, now: Instant) {
        // ACK for a non-2xx final response: the INVITE's transaction (for an RFC 2543 ACK,
        // also the To tag of our response).
        let to_tag = msg.to().and_then(|t| t.tag().map(str::to_string));
        if let Some(id) = self.server_tx.get(key).copied()
            && let Some(c) = self.calls.get_mut(&id)
            && c.state == State::Rejected
            && (!key.is_rfc2543() || to_tag.as_deref() == Some(c.local_tag.as_str()))
        {
            c.retransmit = None;
            c.state = State::Terminated;
            c.purge_at = Some(now + TIMEOUT);
            return;
        }
        let Some(id) = self.dialog_of(msg) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        match c.state {
            State::Answered => {
                c.retransmit = None;
                c.state = State::Confirmed;
                self.events.push(Event::Confirmed { call: id });
            }
            State::Confirmed if c.reinvite_key.is_some() => {
                c.retransmit = None;
                c.reinvite_key = None;
            }
            _ => {}
        }
    }

    fn on_reinvite(
        &mut self,
        msg: Message,
        key: TxKey,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Some(id) = self.dialog_of(&msg) else {
            let mut r = msg.response(481, "Call/Transaction Does Not Exist", None);
            self.finish(&mut r);
            self.send(from, transport, r.to_bytes());
            return;
        };
        let contact = self.contact(transport);
        let user_agent = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let cseq = msg.cseq().map(|c| c.0).unwrap_or(0);
        let (code, reason) = if c.state != State::Confirmed || c.reinvite_key.is_some() {
            (491, "Request Pending")
        } else if cseq <= c.remote_cseq {
            (500, "Server Internal Error (CSeq out of order)")
        } else {
            (200, "OK")
        };
        let negotiated = if code == 200 {
            Sdp::parse(&msg.body).ok().and_then(|o| sdp::negotiate(&o))
        } else {
            None
        };
        let mut r;
        if code == 200
            && let Some(media) = negotiated
        {
            c.remote_cseq = cseq;
            c.media = media.clone();
            c.sdp_version += 1;
            r = msg.response(200, "OK", Some(&c.local_tag));
            r.push("Contact", contact);
            r.push("Server", user_agent);
            r.push("Content-Type", "application/sdp");
            let local = c.local_media.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            r.body = sdp::answer(&media, local, c.session_id, c.sdp_version).into_bytes();
            let bytes = r.to_bytes();
            c.reinvite_key = Some(key.clone());
            c.retransmit = Some(Retransmit::capped(
                bytes.clone(),
                now,
                transport.reliable(),
                TIMER_H,
            ));
            c.last_response = Some(bytes.clone());
            self.server_tx.insert(key, id);
            self.send(from, transport, bytes);
            self.events.push(Event::MediaChanged { call: id, media });
        } else {
            if code == 200 {
                c.remote_cseq = cseq;
                r = msg.response(488, "Not Acceptable Here", None);
            } else {
                r = msg.response(code, reason, None);
            }
            r.push("Server", user_agent);
            // The ACK for this error goes hop by hop; it needs nothing from us.
            self.send(from, transport, r.to_bytes());
        }
    }

    fn on_bye(
        &mut self,
        msg: Message,
        key: TxKey,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let (code, reason) = match self.dialog_of(&msg) {
            Some(id) => {
                if let Some(c) = self.calls.get_mut(&id)
                    && c.state != State::Terminated
                {
                    c.state = State::Terminated;
                    c.retransmit = None;
                    c.purge_at = Some(now + TIMEOUT);
                    // A transferee may hang up our leg itself once it took the REFER.
                    let accepted = c.transfer.as_ref().is_some_and(|t| t.accepted);
                    self.end_transfer(
                        id,
                        if accepted {
                            Ok(())
                        } else {
                            Err(TransferError::NoCall)
                        },
                    );
                    self.events.push(Event::CallEnded {
                        call: id,
                        reason: EndReason::RemoteBye,
                    });
                }
                (200, "OK")
            }
            None => (481, "Call/Transaction Does Not Exist"),
        };
        let r = msg.response(code, reason, None);
        self.respond_cached(r, Some(key), from, transport, now);
    }

    fn on_cancel(
        &mut self,
        msg: Message,
        key: TxKey,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Some(id) = self.server_tx.get(&key.with_method("INVITE")).copied() else {
            let r = msg.response(481, "Call/Transaction Does Not Exist", None);
            self.respond_cached(r, Some(key.clone()), from, transport, now);
            return;
        };
        let r = msg.response(200, "OK", None);
        self.respond_cached(r, Some(key.clone()), from, transport, now);
        let user_agent = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.state != State::Proceeding {
            return;
        }
        let mut r = c
            .invite
            .response(487, "Request Terminated", Some(&c.local_tag));
        r.push("Server", user_agent);
        let bytes = r.to_bytes();
        c.reject_with(&bytes, now);
        let (peer, t) = (c.peer, c.transport);
        self.send(peer, t, bytes);
        self.events.push(Event::CallEnded {
            call: id,
            reason: EndReason::Cancelled,
        });
    }

    fn on_info(
        &mut self,
        msg: Message,
        key: TxKey,
        from: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let r = match self.dialog_of(&msg) {
            Some(id) => {
                if let Some(digit) = dtmf_from_info(&msg) {
                    self.events.push(Event::InfoDtmf { call: id, digit });
                }
                msg.response(200, "OK", None)
            }
            None => msg.response(481, "Call/Transaction Does Not Exist", None),
        };
        self.respond_cached(r, Some(key), from, transport, now);
    }

    fn on_response(&mut self, msg: &Message, now: Instant) {
        let (Some(branch), Some(code)) = (
            msg.top_via().and_then(|v| v.branch().map(str::to_string)),
            msg.code(),
        ) else {
            return;
        };
        if let Some(id) = self.by_branch.get(&branch).copied()
            && self.calls.get(&id).is_some_and(|c| c.uac.is_some())
        {
            match msg.cseq().map(|c| c.1) {
                Some("INVITE") => self.on_invite_response(id, msg, now),
                Some("CANCEL") if code >= 200 => {
                    self.client.remove(&format!("{branch}/cancel"));
                }
                _ => {}
            }
            return;
        }
        if let Some(r) = self.registrations.iter_mut().find(|r| r.owns(&branch)) {
            r.on_response(msg, now);
            self.collect_registrations();
            return;
        }
        let Some(tx) = self.client.get_mut(&branch) else {
            return;
        };
        if code < 200 {
            // Proceeding (RFC 3261 17.1.2.2): keep retransmitting, every T2.
            tx.retransmit.proceeding(now);
            return;
        }
        let purpose = tx.purpose;
        self.client.remove(&branch);
        if let Purpose::Refer(call) = purpose {
            self.on_refer_response(call, code, now);
        }
    }

    /// Builds a request inside the dialog of `call` (RFC 3261 12.2.1.1): next local CSeq, From
    /// and To from the INVITE swapped, remote target as Request-URI, route set as Route.
    /// Returns the request and its branch.
    fn dialog_request(&mut self, call: CallId, method: &str) -> Option<(Message, String)> {
        let c = self.calls.get_mut(&call)?;
        c.local_cseq = c.local_cseq.max(c.remote_cseq) + 1;
        let cseq = c.local_cseq;
        self.dialog_request_cseq(call, method, cseq)
    }

    /// [`Endpoint::dialog_request`] with a given CSeq number (an ACK reuses its INVITE's).
    fn dialog_request_cseq(
        &mut self,
        call: CallId,
        method: &str,
        cseq: u32,
    ) -> Option<(Message, String)> {
        let transport = self.calls.get(&call)?.transport;
        let via_addr = self.via_addr(transport);
        let user_agent = self.config.user_agent.clone();
        let c = self.calls.get(&call)?;
        let branch = format!("z9hG4bK{}", random_token());
        let mut req = Message::request(method, &c.remote_target);
        req.push(
            "Via",
            format!(
                "SIP/2.0/{} {}:{};branch={branch};rport",
                c.transport.name(),
                host_for_print(&via_addr.ip().to_string()),
                via_addr.port()
            ),
        );
        req.push("Max-Forwards", "70");
        if let Some(uac) = &c.uac {
            // We placed the call: our INVITE's From, the callee's To from its answer.
            req.push(
                "From",
                c.invite.header("From").unwrap_or_default().to_string(),
            );
            req.push("To", uac.remote.clone().unwrap_or_default());
        } else {
            // From/To swap: our To (with our tag) is the From of our requests.
            let mut local = c.invite.header("To").unwrap_or_default().to_string();
            if NameAddr::parse(&local).is_some_and(|n| n.tag().is_none()) {
                let _ = write!(local, ";tag={}", c.local_tag);
            }
            req.push("From", local);
            req.push(
                "To",
                c.invite.header("From").unwrap_or_default().to_string(),
            );
        }
        req.push("Call-ID", c.call_id.clone());
        req.push("CSeq", format!("{cseq} {method}"));
        for route in &c.route_set {
            req.push("Route", route.clone());
        }
        req.push("User-Agent", user_agent);
        Some((req, branch))
    }

    /// Starts a non-INVITE client transaction: sends `bytes` now and retransmits them on UDP
    /// (Timer E) until a final response or Timer F.
    fn start_client(
        &mut self,
        branch: String,
        to: SocketAddr,
        transport: Transport,
        bytes: Vec<u8>,
        purpose: Purpose,
        now: Instant,
    ) {
        self.client.insert(
            branch,
            ClientTx {
                to,
                transport,
                retransmit: Retransmit::capped(bytes.clone(), now, transport.reliable(), TIMER_F),
                purpose,
            },
        );
        self.send(to, transport, bytes);
    }

    /// Hangs up: BYE for an answered call, 480 for one still ringing.
    pub fn hangup(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        match c.state {
            State::Proceeding => {
                self.reject(call, 480, "Temporarily Unavailable", None, now);
                return;
            }
            State::Calling => {
                self.cancel_outbound(call, now);
                return;
            }
            State::Answered | State::Confirmed => {}
            State::Rejected | State::Terminated => return,
        }
        let Some((bye, branch)) = self.dialog_request(call, "BYE") else {
            return;
        };
        let bytes = bye.to_bytes();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = State::Terminated;
        c.retransmit = None;
        c.purge_at = Some(now + TIMEOUT);
        let (peer, transport) = (c.peer, c.transport);
        self.start_client(branch, peer, transport, bytes, Purpose::Bye, now);
        self.end_transfer(call, Err(TransferError::NoCall));
        self.events.push(Event::CallEnded {
            call,
            reason: EndReason::LocalBye,
        });
    }

    /// When [`Endpoint::on_timeout`] wants to run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().flat_map(|c| {
            [
                c.retransmit.as_ref().map(Retransmit::next_timeout),
                c.purge_at,
            ]
        });
        let client = self
            .client
            .values()
            .map(|t| Some(t.retransmit.next_timeout()));
        let cached = self.cached.values().map(|c| Some(c.expires));
        let transfers = self
            .calls
            .values()
            .map(|c| c.transfer.as_ref().map(|t| t.deadline));
        let registrations = self.registrations.iter().map(|r| r.next_timeout());
        calls
            .chain(client)
            .chain(cached)
            .chain(transfers)
            .chain(registrations)
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`: retransmissions, ACK timeouts, cleanup.
    pub fn on_timeout(&mut self, now: Instant) {
        let mut sends = Vec::new();
        let mut timed_out = Vec::new();
        let mut unanswered = Vec::new();
        for (id, c) in self.calls.iter_mut() {
            if let Some(r) = c.retransmit.as_mut() {
                let due = r.poll(now);
                if due == Due::GiveUp {
                    c.retransmit = None;
                    match c.state {
                        State::Answered => timed_out.push(*id),
                        State::Calling => {
                            // Timer B, or nobody answered while it rang.
                            c.state = State::Terminated;
                            c.purge_at = Some(now + TIMEOUT);
                            unanswered.push(*id);
                        }
                        State::Confirmed => c.reinvite_key = None,
                        _ => {
                            c.state = State::Terminated;
                            c.purge_at = Some(now + TIMEOUT);
                        }
                    }
                } else if due == Due::Resend {
                    sends.push((c.peer, c.transport, r.bytes.clone()));
                }
            }
        }
        for (_, t) in self.client.iter_mut() {
            if t.retransmit.poll(now) == Due::Resend {
                sends.push((t.to, t.transport, t.retransmit.bytes.clone()));
            }
        }
        // Timer F: a REFER nobody answered fails the transfer.
        let refer_timeouts: Vec<CallId> = self
            .client
            .values()
            .filter(|t| t.retransmit.expired(now))
            .filter_map(|t| match t.purpose {
                Purpose::Refer(call) => Some(call),
                Purpose::Bye => None,
            })
            .collect();
        self.client.retain(|_, t| !t.retransmit.expired(now));
        for call in refer_timeouts {
            self.end_transfer(call, Err(TransferError::Timeout));
        }
        self.transfer_timeouts(now);
        for r in &mut self.registrations {
            r.on_timeout(now);
        }
        self.collect_registrations();
        self.cached.retain(|_, c| now < c.expires);
        for (to, transport, bytes) in sends {
            self.send(to, transport, bytes);
        }
        for call in unanswered {
            self.events.push(Event::CallEnded {
                call,
                reason: EndReason::Rejected(408),
            });
        }
        for id in timed_out {
            // No ACK for our 200 (RFC 3261 13.3.1.4): confirm and end the dialog with BYE.
            if let Some(c) = self.calls.get_mut(&id) {
                c.state = State::Confirmed;
            }
            self.hangup(id, now);
            if let Some(Event::CallEnded { reason, .. }) = self.events.last_mut() {
                *reason = EndReason::NoAck;
            }
        }
        let purge: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.purge_at.is_some_and(|p| now >= p))
            .map(|(id, _)| *id)
            .collect();
        for id in purge {
            if let Some(c) = self.calls.remove(&id) {
                self.by_branch.remove(&c.invite_branch);
                for key in [c.invite_key, c.reinvite_key].into_iter().flatten() {
                    self.server_tx.remove(&key);
                }
                self.by_dialog.remove(&(c.call_id, c.local_tag));
            }
        }
    }
}

#[cfg(test)]
mod tests;
mod transfer;
mod uac;

pub use self::uac::DialError;
