//! The tokio shell around [`Endpoint`]: UDP and TCP sockets, the timer, RTP ports, and one media
//! task per call. Everything SIP-specific happens in the sans-IO core; this file moves bytes.
//!
//! Each answered call is handed to the [`CallHandler`] as an [`AnsweredCall`] (the caller-agnostic
//! types of [`crate::media::leg`]): its [`MediaEdge`] and a [`SipCallControl`] for what the call
//! asks of SIP (transfer by REFER, a staff leg to bridge). `serve` installs the live call
//! pipeline; without one, [`GreetingHandler`] plays `media.greeting_wav` (and hangs up after
//! `media.hangup_after_greeting_secs` when set).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::SipError;
use super::message::{self, Framing};
use super::register::{RegisterConfig, RegisterEvent};
use super::uas::{CallId, Endpoint, EndpointConfig, Event, Transport};
use crate::config::{MediaConfig, SipConfig, SipTransport};
use crate::media::leg::{CallControl, LegKind};
use crate::media::sdp::Negotiated;
use crate::media::session::{self, SessionUpdate};
use crate::media::{self, CallerEvent, FRAME_16K, MediaEdge, MediaError};

/// Largest TCP read buffer per connection before the connection is dropped.
const MAX_STREAM_BUFFER: usize = 2 * message::MAX_MESSAGE;

enum Input {
    Datagram {
        bytes: Vec<u8>,
        from: SocketAddr,
    },
    Stream {
        msg: Box<message::Message>,
        from: SocketAddr,
        transport: Transport,
    },
    StreamBad {
        head: Vec<u8>,
        error: SipError,
        from: SocketAddr,
        transport: Transport,
    },
    TcpOpen {
        from: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    TcpClosed {
        from: SocketAddr,
    },
    Hangup(CallId),
    /// The ring time of a call is over: answer it.
    Answer(CallId),
    /// The application places a call.
    Dial {
        target: String,
        peer: SocketAddr,
        reply: oneshot::Sender<Result<AnsweredCall, DialError>>,
    },
    /// The application asks to transfer a call (blind, REFER) to `target` (a SIP URI).
    Transfer {
        call: CallId,
        target: String,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
}

pub use crate::media::leg::{AnsweredCall, CallHandler, TransferError};

/// What a SIP call may ask of the SIP side besides media.
#[derive(Clone)]
pub struct SipCallControl {
    call: CallId,
    tx: mpsc::Sender<Input>,
}

#[async_trait::async_trait]
impl CallControl for SipCallControl {
    /// Blind-transfers the call to `target` (`sip:desk@pbx`) with REFER. Ok when the transfer
    /// target answered (the caller is then off our hands and the call ends with a BYE).
    async fn transfer(&self, target: &str) -> Result<(), TransferError> {
        let (reply, rx) = oneshot::channel();
        let input = Input::Transfer {
            call: self.call,
            target: target.to_string(),
            reply,
        };
        if self.tx.send(input).await.is_err() {
            return Err(TransferError::NoCall);
        }
        rx.await.unwrap_or(Err(TransferError::NoCall))
    }

    /// Calls `target` from this server (UDP) for a bridge.
    async fn dial(&self, target: &str) -> Result<AnsweredCall, TransferError> {
        SipHandle {
            tx: self.tx.clone(),
        }
        .dial(target)
        .await
        .map_err(|e| TransferError::Dial(e.to_string()))
    }
}

/// Plays a fixed greeting to every caller, then waits for them to hang up (or hangs up after
/// `hangup_after`). What `serve` does when the speech pipeline is off.
pub struct GreetingHandler {
    pub greeting: Arc<Vec<i16>>,
    pub hangup_after: Option<Duration>,
}

impl CallHandler for GreetingHandler {
    fn handle(&self, call: AnsweredCall) {
        tokio::spawn(greeting_flow(
            call.edge,
            self.greeting.clone(),
            call.confirmed,
            self.hangup_after,
        ));
    }
}

struct ActiveCall {
    updates: mpsc::Sender<SessionUpdate>,
    confirmed: Option<oneshot::Sender<()>>,
}

/// The SIP server: bound sockets, ready to run.
pub struct SipServer {
    udp: Option<Arc<UdpSocket>>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    sip: SipConfig,
    media: MediaConfig,
    handler: Arc<dyn CallHandler>,
    tx: mpsc::Sender<Input>,
    rx: Option<mpsc::Receiver<Input>>,
}

/// Why an outbound call did not get through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("call target is not a SIP URI with an IP address or resolvable host")]
    BadTarget,
    #[error("no RTP port free")]
    NoPort,
    #[error("too many calls")]
    Busy,
    /// The callee (or a proxy) answered this final status; 408: nobody answered.
    #[error("the call failed ({0})")]
    Failed(u16),
    #[error("the SIP server is not running")]
    Stopped,
}

/// Places calls through a running [`SipServer`] (callbacks). Cheap to clone.
#[derive(Clone)]
pub struct SipHandle {
    tx: mpsc::Sender<Input>,
}

impl SipHandle {
    /// Calls `target` (`sip:user@host:port`, UDP) and waits for the answer: the call comes back
    /// like an inbound one (media edge, control), already confirmed (our ACK is sent).
    pub async fn dial(&self, target: &str) -> Result<AnsweredCall, DialError> {
        let uri = message::Uri::parse(target).ok_or(DialError::BadTarget)?;
        let port = uri.port.unwrap_or(5060);
        let peer = tokio::net::lookup_host((uri.host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or(DialError::BadTarget)?;
        let (reply, rx) = oneshot::channel();
        let input = Input::Dial {
            target: target.to_string(),
            peer,
            reply,
        };
        self.tx.send(input).await.map_err(|_| DialError::Stopped)?;
        rx.await.unwrap_or(Err(DialError::Stopped))
    }
}

impl SipServer {
    /// Binds the configured transports and loads the greeting.
    pub async fn bind(sip: SipConfig, media: MediaConfig) -> Result<SipServer, SipError> {
        let addr = SocketAddr::new(sip.bind, sip.port);
        let udp = if sip.transports.contains(&SipTransport::Udp) {
            let s = UdpSocket::bind(addr).await.map_err(|source| SipError::Io {
                what: "UDP bind",
                addr,
                source,
            })?;
            Some(Arc::new(s))
        } else {
            None
        };
        let tcp = if sip.transports.contains(&SipTransport::Tcp) {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| SipError::Io {
                        what: "TCP bind",
                        addr,
                        source,
                    })?,
            )
        } else {
            None
        };
        let tls = if sip.transports.contains(&SipTransport::Tls) {
            let acceptor = tls_acceptor(&sip)?;
            let addr = SocketAddr::new(sip.bind, sip.tls_port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SipError::Io {
                    what: "TLS bind",
                    addr,
                    source,
                })?;
            Some((listener, acceptor))
        } else {
            None
        };
        let greeting = if media.greeting_wav.as_os_str().is_empty() {
            Vec::new()
        } else {
            media::load_wav_16k(&media.greeting_wav)?
        };
        let handler = Arc::new(GreetingHandler {
            greeting: Arc::new(greeting),
            hangup_after: (media.hangup_after_greeting_secs > 0)
                .then(|| Duration::from_secs(media.hangup_after_greeting_secs)),
        });
        let (tx, rx) = mpsc::channel::<Input>(4096);
        Ok(SipServer {
            udp,
            tcp,
            tls,
            sip,
            media,
            handler,
            tx,
            rx: Some(rx),
        })
    }

    /// A handle for placing calls once [`SipServer::run`] runs.
    pub fn handle(&self) -> SipHandle {
        SipHandle {
            tx: self.tx.clone(),
        }
    }

    /// Hands answered calls to `handler` instead of the greeting.
    pub fn set_handler(&mut self, handler: Arc<dyn CallHandler>) {
        self.handler = handler;
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.udp
            .as_ref()
            .and_then(|u| u.local_addr().ok())
            .or_else(|| self.tcp.as_ref().and_then(|t| t.local_addr().ok()))
    }

    /// Serves until `shutdown` resolves, then drains: new INVITEs get 503 with Retry-After
    /// (OPTIONS and the calls in progress are still served) until every call has ended or
    /// `grace` has passed; calls left then are ended with BYE.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) {
        let tx = self.tx.clone();
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let bind_addr = self
            .local_addr()
            .unwrap_or(SocketAddr::new(self.sip.bind, self.sip.port));
        let contact_ip: IpAddr = self.sip.contact_ip();
        let mut endpoint = Endpoint::new(EndpointConfig {
            contact_addr: SocketAddr::new(contact_ip, bind_addr.port()),
            tls_port: self.sip.tls_port,
            max_calls: self.sip.max_calls as usize,
            retry_after_secs: self.sip.retry_after_secs,
            user_agent: format!("carevoice/{}", env!("CARGO_PKG_VERSION")),
            allow_from: self.sip.allow_from.clone(),
            inbound_auth: (!self.sip.auth_user.is_empty()).then(|| super::uas::InboundAuth {
                realm: self.sip.auth_realm.clone(),
                username: self.sip.auth_user.clone(),
                password: self.sip.auth_password.expose().to_string(),
            }),
        });
        if let Some(config) = self.register_config(bind_addr, contact_ip).await {
            tracing::info!(aor = %config.aor, registrar = %config.registrar, "registering");
            endpoint.register(config, Instant::now());
        }
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(udp) = self.udp.clone() {
            let tx = tx.clone();
            tasks.spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    let input = Input::Datagram {
                        bytes: buf[..n].to_vec(),
                        from,
                    };
                    if tx.send(input).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(listener) = self.tcp.take() {
            let tx = tx.clone();
            tasks.spawn(async move {
                loop {
                    let Ok((stream, from)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(stream_connection(stream, from, Transport::Tcp, tx.clone()));
                }
            });
        }
        if let Some((listener, acceptor)) = self.tls.take() {
            let tx = tx.clone();
            tasks.spawn(async move {
                loop {
                    let Ok((stream, from)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => stream_connection(tls, from, Transport::Tls, tx).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%from, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%from, "TLS handshake timed out"),
                        }
                    });
                }
            });
        }
        tracing::info!(addr = %bind_addr, transports = ?self.sip.transports, "SIP listening");
        let mut tcp_writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let mut calls: HashMap<CallId, ActiveCall> = HashMap::new();
        let mut next_rtp_port = self.media.rtp_port_min;
        let mut ringing: HashMap<CallId, (Option<String>, Negotiated)> = HashMap::new();
        let mut dialing: HashMap<
            CallId,
            (UdpSocket, oneshot::Sender<Result<AnsweredCall, DialError>>),
        > = HashMap::new();
        let mut transfers: HashMap<CallId, oneshot::Sender<Result<(), TransferError>>> =
            HashMap::new();
        tokio::pin!(shutdown);
        // Set once `shutdown` resolved: when the drain ends (grace over).
        let mut drain_until: Option<tokio::time::Instant> = None;
        // Set once the drain ended: BYEs are out; linger for their answers, then stop.
        let mut stop_at: Option<tokio::time::Instant> = None;
        loop {
            if let Some(stop) = stop_at {
                if tokio::time::Instant::now() >= stop
                    || endpoint.live_calls().is_empty() && calls.is_empty() && dialing.is_empty()
                {
                    break;
                }
            } else if drain_until.is_some()
                && endpoint.live_calls().is_empty()
                && calls.is_empty()
                && dialing.is_empty()
            {
                tracing::info!("drained: no calls left");
                break;
            }
            let deadline = endpoint
                .next_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let deadline = [drain_until.filter(|_| stop_at.is_none()), stop_at]
                .into_iter()
                .flatten()
                .fold(deadline, |a, b| a.min(b));
            tokio::select! {
                _ = &mut shutdown, if drain_until.is_none() => {
                    let live = endpoint.live_calls().len();
                    tracing::info!(calls = live, grace_secs = grace.as_secs(), "SIP draining: refusing new calls");
                    endpoint.start_draining();
                    drain_until = Some(tokio::time::Instant::now() + grace);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    endpoint.on_timeout(now);
                    if stop_at.is_none() && drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        let live = endpoint.live_calls();
                        tracing::info!(calls = live.len(), "grace period over; hanging up");
                        for call in live {
                            endpoint.hangup(call, now);
                        }
                        // One BYE retransmission round (T1 = 500 ms) and its answer.
                        stop_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                    }
                }
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let now = Instant::now();
                    match input {
                        Input::Datagram { bytes, from } => endpoint.receive(&bytes, from, Transport::Udp, now),
                        Input::Stream { msg, from, transport } => endpoint.receive_message(*msg, from, transport, now),
                        Input::StreamBad { head, error, from, transport } => endpoint.receive_malformed(&head, &error, from, transport),
                        Input::TcpOpen { from, writer } => { tcp_writers.insert(from, writer); }
                        Input::TcpClosed { from } => { tcp_writers.remove(&from); }
                        Input::Hangup(call) => endpoint.hangup(call, now),
                        Input::Answer(call) => {
                            if let Some((caller, media)) = ringing.remove(&call) {
                                self.answer(call, caller, media, &mut endpoint, &mut calls, &mut next_rtp_port, &tx).await;
                            }
                        }
                        Input::Dial { target, peer, reply } => {
                            match self.rtp_socket(&mut next_rtp_port).await {
                                Err(_) => { let _ = reply.send(Err(DialError::NoPort)); }
                                Ok(socket) => {
                                    let mut local = socket.local_addr().unwrap_or(SocketAddr::new(self.media.bind, 0));
                                    if local.ip().is_unspecified() {
                                        local.set_ip(self.sip.contact_ip());
                                    }
                                    match endpoint.dial(&target, peer, Transport::Udp, local, now) {
                                        Ok(call) => {
                                            tracing::info!(call, "dialing out");
                                            dialing.insert(call, (socket, reply));
                                        }
                                        Err(e) => {
                                            let _ = reply.send(Err(match e {
                                                super::uas::DialError::BadTarget => DialError::BadTarget,
                                                super::uas::DialError::Busy => DialError::Busy,
                                            }));
                                        }
                                    }
                                }
                            }
                        }
                        Input::Transfer { call, target, reply } => {
                            match endpoint.transfer(call, &target, now) {
                                Ok(()) => {
                                    tracing::info!(call, "transfer: REFER sent");
                                    transfers.insert(call, reply);
                                }
                                Err(e) => {
                                    tracing::info!(call, error = %e, "transfer not started");
                                    let _ = reply.send(Err(e));
                                }
                            }
                        }
                    }
                }
            }
            // Events may lead to more output (accept, reject), so drain until quiet.
            loop {
                let (transmits, events) = endpoint.drain();
                if transmits.is_empty() && events.is_empty() {
                    break;
                }
                for t in transmits {
                    match t.transport {
                        Transport::Udp => {
                            if let Some(udp) = &self.udp {
                                let _ = udp.send_to(&t.bytes, t.to).await;
                            }
                        }
                        Transport::Tcp | Transport::Tls => {
                            if let Some(w) = tcp_writers.get(&t.to) {
                                let _ = w.try_send(t.bytes);
                            }
                        }
                    }
                }
                for event in events {
                    if let Event::IncomingCall {
                        call,
                        caller,
                        media,
                    } = event
                    {
                        if self.sip.answer_after_ms == 0 {
                            self.answer(
                                call,
                                caller,
                                media,
                                &mut endpoint,
                                &mut calls,
                                &mut next_rtp_port,
                                &tx,
                            )
                            .await;
                        } else {
                            endpoint.ring(call);
                            ringing.insert(call, (caller, media));
                            let tx = tx.clone();
                            let delay = Duration::from_millis(self.sip.answer_after_ms);
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = tx.send(Input::Answer(call)).await;
                            });
                        }
                        continue;
                    }
                    if let Event::TransferDone { call, result } = event {
                        match &result {
                            Ok(()) => tracing::info!(call, ok = true, "transfer done"),
                            Err(e) => {
                                tracing::info!(call, ok = false, error = %e, "transfer done")
                            }
                        }
                        if let Some(reply) = transfers.remove(&call) {
                            let _ = reply.send(result);
                        }
                        continue;
                    }
                    if let Event::OutboundAnswered { call, media } = event {
                        if let Some((socket, reply)) = dialing.remove(&call) {
                            tracing::info!(
                                call,
                                codec = media.codec.name(),
                                "outbound call answered"
                            );
                            let (answered, active) =
                                self.start_media(call, None, socket, media, &tx);
                            let (confirmed_tx, confirmed) = oneshot::channel();
                            let _ = confirmed_tx.send(());
                            let answered = AnsweredCall {
                                confirmed,
                                ..answered
                            };
                            calls.insert(call, active);
                            if reply.send(Ok(answered)).is_err() {
                                // Nobody waits for this call any more.
                                endpoint.hangup(call, Instant::now());
                            }
                        }
                        continue;
                    }
                    if let Event::CallEnded { call, reason } = &event {
                        ringing.remove(call);
                        transfers.remove(call);
                        if let Some((_, reply)) = dialing.remove(call) {
                            let code = match reason {
                                super::uas::EndReason::Rejected(code) => *code,
                                _ => 487,
                            };
                            let _ = reply.send(Err(DialError::Failed(code)));
                        }
                    }
                    self.on_event(event, &mut calls).await;
                }
            }
        }
        for (_, c) in calls.drain() {
            let _ = c.updates.try_send(SessionUpdate::End);
        }
        tasks.abort_all();
        tracing::info!("SIP stopped");
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        call: CallId,
        caller: Option<String>,
        media: Negotiated,
        endpoint: &mut Endpoint,
        calls: &mut HashMap<CallId, ActiveCall>,
        next_rtp_port: &mut u16,
        tx: &mpsc::Sender<Input>,
    ) {
        let socket = match self.rtp_socket(next_rtp_port).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(call, error = %e, "no RTP port; refusing the call");
                endpoint.reject(
                    call,
                    503,
                    "Service Unavailable",
                    Some(self.sip.retry_after_secs),
                    Instant::now(),
                );
                return;
            }
        };
        let Ok(mut local) = socket.local_addr() else {
            endpoint.reject(call, 500, "Server Internal Error", None, Instant::now());
            return;
        };
        if local.ip().is_unspecified() {
            local.set_ip(self.sip.contact_ip());
        }
        tracing::info!(
            call,
            codec = media.codec.name(),
            srtp = media.srtp.is_some(),
            rtp = %local,
            "answering call"
        );
        endpoint.accept(call, local, Instant::now());
        let (answered, active) = self.start_media(call, caller, socket, media, tx);
        self.handler.handle(answered);
        calls.insert(call, active);
    }

    /// Starts the media task of a call and makes the application's side of it.
    fn start_media(
        &self,
        call: CallId,
        caller: Option<String>,
        socket: UdpSocket,
        media: Negotiated,
        tx: &mpsc::Sender<Input>,
    ) -> (AnsweredCall, ActiveCall) {
        let (edge, peer) = media::edge(50, 5);
        let (updates_tx, updates_rx) = mpsc::channel(16);
        let (confirmed_tx, confirmed_rx) = oneshot::channel();
        let hangup_tx = tx.clone();
        tokio::spawn(async move {
            let stats = session::run(socket, media, peer, updates_rx, move || {
                let _ = hangup_tx.try_send(Input::Hangup(call));
            })
            .await;
            tracing::info!(
                call,
                rtp_in = stats.rtp_in,
                rtp_out = stats.rtp_out,
                rtp_bad = stats.rtp_bad,
                dtmf_digits = stats.dtmf_digits,
                dtmf_sent = stats.dtmf_sent,
                audio_dropped = stats.audio_dropped,
                rtcp_in = stats.rtcp_in,
                rtcp_out = stats.rtcp_out,
                rtcp_bad = stats.rtcp_bad,
                codec_errors = stats.codec_errors,
                "call media ended"
            );
        });
        (
            AnsweredCall {
                id: call,
                kind: LegKind::Sip,
                caller,
                edge,
                confirmed: confirmed_rx,
                control: Arc::new(SipCallControl {
                    call,
                    tx: tx.clone(),
                }),
            },
            ActiveCall {
                updates: updates_tx,
                confirmed: Some(confirmed_tx),
            },
        )
    }

    async fn on_event(&self, event: Event, calls: &mut HashMap<CallId, ActiveCall>) {
        match event {
            Event::IncomingCall { .. } => {}
            Event::Confirmed { call } => {
                if let Some(c) = calls.get_mut(&call)
                    && let Some(tx) = c.confirmed.take()
                {
                    let _ = tx.send(());
                }
            }
            Event::MediaChanged { call, media } => {
                tracing::info!(call, direction = media.direction.as_str(), "media changed");
                if let Some(c) = calls.get(&call) {
                    let _ = c.updates.send(SessionUpdate::Media(media)).await;
                }
            }
            Event::InfoDtmf { call, .. } => {
                if let (Event::InfoDtmf { digit, .. }, Some(c)) = (&event, calls.get(&call)) {
                    let _ = c.updates.try_send(SessionUpdate::InfoDtmf(*digit));
                }
            }
            Event::CallEnded { call, reason } => {
                tracing::info!(call, ?reason, "call ended");
                if let Some(c) = calls.remove(&call) {
                    let _ = c.updates.try_send(SessionUpdate::End);
                }
            }
            Event::TransferDone { .. } | Event::OutboundAnswered { .. } => {}
            Event::AuthFailed => {
                tracing::info!("SIP call with wrong digest credentials: challenged again");
            }
            Event::Forbidden { from } => {
                tracing::info!(%from, "SIP request from a source not in sip.allow_from: 403");
            }
            Event::Registration(RegisterEvent::Registered { aor, expires }) => {
                tracing::info!(%aor, expires, "registered");
            }
            Event::Registration(RegisterEvent::Failed {
                aor,
                code,
                retry_in,
            }) => {
                tracing::warn!(
                    %aor,
                    code = code.unwrap_or(0),
                    retry_in_secs = retry_in.as_secs(),
                    "registration failed"
                );
            }
            Event::BadRequest { .. } => {
                // The reason may quote header text: keep it out of the logs.
                tracing::debug!("malformed SIP message refused");
            }
        }
    }

    /// The registration `sip.registrar` asks for (UDP), with the registrar's address resolved.
    async fn register_config(
        &self,
        bind_addr: SocketAddr,
        contact_ip: IpAddr,
    ) -> Option<RegisterConfig> {
        let sip = &self.sip;
        if sip.registrar.is_empty() {
            return None;
        }
        if self.udp.is_none() {
            tracing::warn!("sip.registrar is set but UDP is off: not registering");
            return None;
        }
        let uri = sip.registrar.uri()?.clone();
        let host = message::host_for_print(&uri.host);
        let port = uri.port.unwrap_or(5060);
        let registrar = match tokio::net::lookup_host((uri.host.as_str(), port)).await {
            Ok(mut addrs) => addrs.next()?,
            Err(e) => {
                tracing::warn!(registrar = %sip.registrar, error = %e, "cannot resolve sip.registrar");
                return None;
            }
        };
        let domain = if sip.register_domain.is_empty() {
            host.clone()
        } else {
            sip.register_domain.clone()
        };
        let via_addr = SocketAddr::new(contact_ip, bind_addr.port());
        Some(RegisterConfig {
            registrar,
            registrar_uri: match uri.port {
                Some(p) => format!("sip:{host}:{p}"),
                None => format!("sip:{host}"),
            },
            aor: format!("sip:{}@{domain}", sip.register_user),
            username: sip.register_user.clone(),
            password: sip.register_password.expose().to_string(),
            expires: sip.register_expires,
            via_addr,
            contact: format!(
                "sip:{}@{}:{};transport=udp",
                sip.register_user,
                message::host_for_print(&contact_ip.to_string()),
                via_addr.port()
            ),
            transport: Transport::Udp,
            user_agent: format!("carevoice/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    async fn rtp_socket(&self, next: &mut u16) -> Result<UdpSocket, MediaError> {
        let (min, max) = (self.media.rtp_port_min, self.media.rtp_port_max);
        // Even ports only (RTP convention), round robin through the range.
        let span = (max - min) / 2 + 1;
        for _ in 0..span {
            let port = *next;
            *next = if port + 2 > max { min } else { port + 2 };
            if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.media.bind, port)).await {
                return Ok(s);
            }
        }
        Err(MediaError::NoPort { min, max })
    }
}

/// Plays the greeting once the call is confirmed; drains what the caller sends.
async fn greeting_flow(
    mut edge: MediaEdge,
    greeting: Arc<Vec<i16>>,
    confirmed: oneshot::Receiver<()>,
    hangup_after: Option<Duration>,
) {
    if confirmed.await.is_err() {
        return;
    }
    let mut frames = greeting.chunks(FRAME_16K);
    let mut next_frame = frames.next();
    let hangup_time = || hangup_after.map(|d| tokio::time::Instant::now() + d);
    let mut hangup_at = if next_frame.is_none() {
        hangup_time()
    } else {
        None
    };
    let mut digits = 0u32;
    let play = edge.play.clone();
    loop {
        tokio::select! {
            sent = async {
                match next_frame {
                    Some(f) => play.send(f.to_vec()).await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !sent {
                    return;
                }
                next_frame = frames.next();
                if next_frame.is_none() {
                    hangup_at = hangup_time();
                }
            }
            ev = edge.recv() => match ev {
                Some(CallerEvent::Ended) | None => break,
                Some(CallerEvent::Dtmf { .. }) => digits += 1,
                Some(CallerEvent::Audio(_)) => {}
            },
            _ = async {
                match hangup_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                edge.hangup().await;
                while let Some(ev) = edge.recv().await {
                    if ev == CallerEvent::Ended {
                        break;
                    }
                }
                break;
            }
        }
    }
    tracing::info!(dtmf_digits = digits, "greeting flow done");
}

/// TLS 1.2+ server config (rustls with ring) from the PEM files in `sip.tls_cert` / `sip.tls_key`.
fn tls_acceptor(sip: &SipConfig) -> Result<tokio_rustls::TlsAcceptor, SipError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let bad = |key: &'static str, message: String| SipError::Config { key, message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&sip.tls_cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| bad("tls_cert", format!("{}: {e}", sip.tls_cert.display())))?;
    if certs.is_empty() {
        return Err(bad(
            "tls_cert",
            format!("{}: no certificate", sip.tls_cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&sip.tls_key)
        .map_err(|e| bad("tls_key", format!("{}: {e}", sip.tls_key.display())))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("tls_cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("tls_key", format!("{}: {e}", sip.tls_key.display())))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One TCP or TLS connection: frames SIP messages by Content-Length and writes what the core
/// sends back to this peer.
async fn stream_connection<S>(
    stream: S,
    from: SocketAddr,
    transport: Transport,
    tx: mpsc::Sender<Input>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = tokio::io::split(stream);
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(256);
    if tx.send(Input::TcpOpen { from, writer: wtx }).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    'read: loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match message::parse(&buf, Framing::Stream) {
                Ok((msg, used)) => {
                    buf.drain(..used);
                    let input = Input::Stream {
                        msg: Box::new(msg),
                        from,
                        transport,
                    };
                    if tx.send(input).await.is_err() {
                        break 'read;
                    }
                }
                Err(SipError::Incomplete) => {
                    if buf.len() > MAX_STREAM_BUFFER {
                        break 'read;
                    }
                    break;
                }
                Err(error) => {
                    // Framing is lost: answer 400 if the head parses, then close.
                    let head = std::mem::take(&mut buf);
                    let _ = tx
                        .send(Input::StreamBad {
                            head,
                            error,
                            from,
                            transport,
                        })
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break 'read;
                }
            }
        }
    }
    let _ = tx.send(Input::TcpClosed { from }).await;
    writer.abort();
}
