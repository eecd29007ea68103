//! SIP signalling (RFC 3261) as a sans-IO core plus a thin tokio shell.
//!
//! - [`message`]: parse and print SIP messages (compact forms, folded headers, multiple Via,
//!   quoting, IPv6, Content-Length checks).
//! - [`uas`]: the user-agent server: server transactions with their timers, dialogs, INVITE /
//!   ACK / BYE / CANCEL / OPTIONS / INFO / re-INVITE. Fed datagrams and `Instant`s, it returns
//!   bytes to send, call events and its next timeout; no sockets inside.
//! - [`transport`]: the tokio shell (UDP, TCP, and TLS 1.2+ via tokio-rustls with ring) that
//!   drives [`uas::Endpoint`] and the media tasks of each call.
//! - [`fuzz`]: entry points of the cargo-fuzz targets in `fuzz/` (also run over the seed corpus
//!   by `tests/fuzz_corpus.rs`).
//! - [`digest`]: digest authentication, client side (MD5, SHA-256 per RFC 8760, qop=auth) and
//!   server side (checking a caller's credentials).
//! - [`register`]: REGISTER to a registrar with digest auth, refresh and backoff (sans-IO,
//!   driven by the endpoint).
//! - [`acl`]: the source-address allow-list (`sip.allow_from`).
//! - [`txn`]: transaction matching (RFC 3261 17.2.3: branch + sent-by + method for RFC 3261
//!   peers, the RFC 2543 rule for the others; the transport counts too).
//! - Conformance: the RFC 4475 torture messages (`tests/fixtures/rfc4475`) get the answers
//!   the RFC expects (400, 505 for another SIP version, 416 for a Request-URI scheme we do not
//!   serve, 420 + Unsupported for a required extension, 415 + Accept for a body we cannot read,
//!   406 when the caller accepts no SDP).
//! - In `uas`: blind transfer (REFER + NOTIFY/sipfrag, RFC 3515) in `uas::transfer`; outbound
//!   calls (INVITE client transaction, ACK, CANCEL) in `uas::uac`, behind
//!   [`transport::SipHandle::dial`]; inbound protection: 403 for sources outside `allow_from`
//!   and/or a 401 digest challenge (`sip.auth_user`) for new calls from sources not listed.
//!
//! - Shutdown drains: [`transport::SipServer::run`] refuses new INVITEs (503, Retry-After) but
//!   serves calls in progress until they end or the grace period passes, then sends BYE. RTCP
//!   (SR/RR, SRTCP, rtcp-mux) is per call in `media::session` / `media::rtcp`.
//!
//! Not done yet: REGISTER over TCP/TLS (UDP only; REFER uses the call's own transport).
//!
//! We keep our own core rather than `rsipstack`: rsipstack binds its transactions and dialogs to
//! tokio tasks and sockets, so its state machines cannot be driven byte-for-byte with a fake clock;
//! the part of SIP a UAS for a clinic needs is small. rsipstack and sipp stay useful as interop
//! peers in tests.

pub mod acl;
pub mod digest;
pub mod fuzz;
pub mod message;
pub mod register;
pub mod transport;
pub mod txn;
pub mod uas;

/// Errors of the SIP layer.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("malformed SIP message: {0}")]
    Malformed(String),
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    #[error("SIP message too large: {0} bytes")]
    TooLarge(usize),
    #[error("incomplete SIP message (waiting for more bytes)")]
    Incomplete,
    #[error("empty datagram")]
    Empty,
    #[error("sip.{key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("SIP transport {what} on {addr}: {source}")]
    Io {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("media: {0}")]
    Media(#[from] crate::media::MediaError),
}
