//! Registration with a registrar (RFC 3261 10), sans-IO: REGISTER with our Contact, digest
//! authentication on 401/407 (MD5 or SHA-256, see [`super::digest`]), refresh before the
//! binding expires, and re-registration with exponential backoff after a failure.
//!
//! [`Endpoint`](super::uas::Endpoint) owns the registrations: it routes their responses and
//! timers and queues their bytes with its own.

use std::time::{Duration, Instant};

use super::digest::Challenge;
use super::message::{Message, NameAddr, host_for_print};
use super::txn::{Due, Retransmit, TIMER_F, Transmit, Transport};

/// First retry after a failure; doubles per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(2);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct RegisterConfig {
    /// Where REGISTERs go (the registrar's resolved address).
    pub registrar: std::net::SocketAddr,
    /// Request-URI of the REGISTER: `sip:` and the registrar's domain.
    pub registrar_uri: String,
    /// Address of record we register: `sip:user@domain`.
    pub aor: String,
    /// Digest username and password.
    pub username: String,
    pub password: String,
    /// Binding lifetime we ask for, seconds.
    pub expires: u32,
    /// Our Via address and the Contact URI (`sip:user@ip:port;transport=udp`) we bind.
    pub via_addr: std::net::SocketAddr,
    pub contact: String,
    pub transport: Transport,
    pub user_agent: String,
}

impl std::fmt::Debug for RegisterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterConfig")
            .field("registrar", &self.registrar)
            .field("aor", &self.aor)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterEvent {
    /// The registrar holds our binding for `expires` seconds; we refresh before then.
    Registered { aor: String, expires: u32 },
    /// Registering failed (`code`: the registrar's status; None: no answer); retried after
    /// `retry_in`.
    Failed {
        aor: String,
        code: Option<u16>,
        retry_in: Duration,
    },
}

struct Pending {
    branch: String,
    retransmit: Retransmit,
}

pub struct Registration {
    config: RegisterConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The last challenge and whether it came in a 407 (Proxy-Authorization).
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    /// 401/407 in a row without a success: wrong credentials after the second.
    auth_rejects: u32,
    failures: u32,
    expires: u32,
    pending: Option<Pending>,
    /// When to send the next REGISTER (refresh or retry).
    next_at: Option<Instant>,
    registered: bool,
    transmits: Vec<Transmit>,
    events: Vec<RegisterEvent>,
}

fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

/// When to refresh a binding that lasts `expires` seconds: halfway for short ones, a minute
/// early for long ones.
fn refresh_in(expires: u32) -> Duration {
    let e = u64::from(expires.max(2));
    Duration::from_secs(if e > 240 { e - 60 } else { e / 2 })
}

impl Registration {
    /// A registration that sends its first REGISTER at `now` (on the next timeout).
    pub fn new(config: RegisterConfig, now: Instant) -> Registration {
        Registration {
            expires: config.expires,
            config,
            call_id: format!("{}@carevoice", token()),
            from_tag: token(),
            cseq: 0,
            challenge: None,
            nc: 0,
            auth_rejects: 0,
            failures: 0,
            pending: None,
            next_at: Some(now),
            registered: false,
            transmits: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Whether a response with this top-Via branch is ours.
    pub fn owns(&self, branch: &str) -> bool {
        self.pending.as_ref().is_some_and(|p| p.branch == branch)
    }

    pub fn drain(&mut self) -> (Vec<Transmit>, Vec<RegisterEvent>) {
        (
            std::mem::take(&mut self.transmits),
            std::mem::take(&mut self.events),
        )
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        match &self.pending {
            Some(p) => Some(p.retransmit.next_timeout()),
            None => self.next_at,
        }
    }

    pub fn on_timeout(&mut self, now: Instant) {
        if let Some(p) = self.pending.as_mut() {
            match p.retransmit.poll(now) {
                Due::GiveUp => {
                    // Timer F: the registrar never answered.
                    self.pending = None;
                    self.fail(None, now);
                }
                Due::Resend => {
                    let bytes = p.retransmit.bytes.clone();
                    self.push(bytes);
                }
                Due::Wait => {}
            }
            return;
        }
        if self.next_at.is_some_and(|t| now >= t) {
            self.send_register(now);
        }
    }

    fn push(&mut self, bytes: Vec<u8>) {
        self.transmits.push(Transmit {
            to: self.config.registrar,
            transport: self.config.transport,
            bytes,
        });
    }

    fn send_register(&mut self, now: Instant) {
        let c = &self.config;
        self.cseq += 1;
        let branch = format!("z9hG4bK{}", token());
        let mut req = Message::request("REGISTER", &c.registrar_uri);
        req.push(
            "Via",
            format!(
                "SIP/2.0/{} {}:{};branch={branch};rport",
                c.transport.name(),
                host_for_print(&c.via_addr.ip().to_string()),
                c.via_addr.port()
            ),
        );
        req.push("Max-Forwards", "70");
        req.push("From", format!("<{}>;tag={}", c.aor, self.from_tag));
        req.push("To", format!("<{}>", c.aor));
        req.push("Call-ID", self.call_id.clone());
        req.push("CSeq", format!("{} REGISTER", self.cseq));
        req.push("Contact", format!("<{}>", c.contact));
        req.push("Expires", self.expires.to_string());
        if let Some((ch, proxy)) = &self.challenge {
            self.nc += 1;
            let value = ch.authorization(
                &c.username,
                &c.password,
                "REGISTER",
                &c.registrar_uri,
                self.nc,
                &token(),
            );
            req.push(
                if *proxy {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                },
                value,
            );
        }
        req.push("User-Agent", c.user_agent.clone());
        let bytes = req.to_bytes();
        let reliable = c.transport != Transport::Udp;
        self.pending = Some(Pending {
            branch,
            retransmit: Retransmit::capped(bytes.clone(), now, reliable, TIMER_F),
        });
        self.next_at = None;
        self.push(bytes);
    }

    fn fail(&mut self, code: Option<u16>, now: Instant) {
        self.registered = false;
        self.failures += 1;
        let retry_in =
            (MIN_BACKOFF * 2u32.saturating_pow(self.failures.min(16) - 1)).min(MAX_BACKOFF);
        self.next_at = Some(now + retry_in);
        self.events.push(RegisterEvent::Failed {
            aor: self.config.aor.clone(),
            code,
            retry_in,
        });
    }

    /// A response whose branch [`Registration::owns`].
    pub fn on_response(&mut self, msg: &Message, now: Instant) {
        let Some(code) = msg.code() else { return };
        if code < 200 {
            if let Some(p) = self.pending.as_mut() {
                p.retransmit.proceeding(now);
            }
            return;
        }
        self.pending = None;
        match code {
            200..=299 => {
                // The registrar may shorten our lifetime: our Contact's expires, or Expires.
                let ours = msg
                    .headers_named("Contact")
                    .flat_map(super::message::split_list)
                    .filter_map(NameAddr::parse)
                    .find(|n| n.uri == self.config.contact)
                    .and_then(|n| {
                        n.params
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("expires"))
                            .and_then(|(_, v)| v.as_deref()?.parse::<u32>().ok())
                    });
                let expires = ours
                    .or_else(|| msg.header("Expires").and_then(|e| e.trim().parse().ok()))
                    .unwrap_or(self.expires);
                self.failures = 0;
                self.auth_rejects = 0;
                self.registered = true;
                self.next_at = Some(now + refresh_in(expires));
                self.events.push(RegisterEvent::Registered {
                    aor: self.config.aor.clone(),
                    expires,
                });
            }
            401 | 407 => {
                let header = if code == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let challenge = Challenge::best(msg.headers_named(header));
                match challenge {
                    Ok(ch) if self.auth_rejects == 0 || ch.stale => {
                        self.auth_rejects += 1;
                        self.challenge = Some((ch, code == 407));
                        self.nc = 0;
                        self.send_register(now);
                    }
                    Ok(ch) => {
                        // Our credentials were refused: keep the new nonce, back off.
                        self.challenge = Some((ch, code == 407));
                        self.nc = 0;
                        self.auth_rejects = 0;
                        tracing::warn!(aor = %self.config.aor, "registrar refused our credentials");
                        self.fail(Some(code), now);
                    }
                    Err(e) => {
                        tracing::warn!(aor = %self.config.aor, error = %e, "registrar challenge unusable");
                        self.fail(Some(code), now);
                    }
                }
            }
            423 => {
                // Interval Too Brief: ask for the registrar's minimum.
                match msg
                    .header("Min-Expires")
                    .and_then(|m| m.trim().parse::<u32>().ok())
                {
                    Some(min) if min > self.expires => {
                        self.expires = min;
                        self.send_register(now);
                    }
                    _ => self.fail(Some(code), now),
                }
            }
            _ => self.fail(Some(code), now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{self, Framing};
    use crate::sip::txn::{T1, TIMEOUT};

    fn config() -> RegisterConfig {
        RegisterConfig {
            registrar: "127.0.0.1:5080".parse().unwrap(),
            registrar_uri: "sip:clinic.example".into(),
            aor: "sip:frontdesk@clinic.example".into(),
            username: "frontdesk".into(),
            password: "s3cret".into(),
            expires: 600,
            via_addr: "127.0.0.1:5060".parse().unwrap(),
            contact: "sip:frontdesk@127.0.0.1:5060;transport=udp".into(),
            transport: Transport::Udp,
            user_agent: "carevoice/test".into(),
        }
    }

    fn sent(r: &mut Registration) -> Vec<Message> {
        r.drain()
            .0
            .iter()
            .map(|t| message::parse(&t.bytes, Framing::Datagram).unwrap().0)
            .collect()
    }

    fn reply(req: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
        let mut r = req.response(code, "X", Some("reg1"));
        for (k, v) in extra {
            r.push(k, *v);
        }
        message::parse(&r.to_bytes(), Framing::Datagram).unwrap().0
    }

    #[test]
    fn challenge_then_registered_then_refresh() {
        let now = Instant::now();
        let mut r = Registration::new(config(), now);
        assert_eq!(r.next_timeout(), Some(now));
        r.on_timeout(now);
        let first = sent(&mut r).remove(0);
        assert!(
            first
                .to_bytes()
                .starts_with(b"REGISTER sip:clinic.example SIP/2.0\r\n")
        );
        assert_eq!(first.header("To"), Some("<sip:frontdesk@clinic.example>"));
        assert_eq!(first.header("Expires"), Some("600"));
        assert!(first.header("Authorization").is_none());
        // Timer E on UDP.
        r.on_timeout(now + T1);
        assert_eq!(sent(&mut r).len(), 1);
        let challenge =
            "Digest realm=\"clinic.example\", nonce=\"abc\", qop=\"auth\", algorithm=SHA-256";
        r.on_response(
            &reply(&first, 401, &[("WWW-Authenticate", challenge)]),
            now + T1,
        );
        let second = sent(&mut r).remove(0);
        assert_eq!(second.cseq().unwrap().0, first.cseq().unwrap().0 + 1);
        assert_eq!(second.call_id(), first.call_id());
        let auth = second.header("Authorization").unwrap();
        let ch = Challenge::parse(challenge).unwrap();
        // Same digest as computed independently from the cnonce we sent.
        let cnonce = auth
            .split("cnonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(
            auth,
            ch.authorization(
                "frontdesk",
                "s3cret",
                "REGISTER",
                "sip:clinic.example",
                1,
                cnonce
            )
        );
        assert!(auth.contains("algorithm=SHA-256") && auth.contains("nc=00000001"));
        let contact = "<sip:frontdesk@127.0.0.1:5060;transport=udp>;expires=120";
        r.on_response(&reply(&second, 200, &[("Contact", contact)]), now + T1);
        assert_eq!(
            r.drain().1,
            vec![RegisterEvent::Registered {
                aor: "sip:frontdesk@clinic.example".into(),
                expires: 120
            }]
        );
        assert!(r.is_registered());
        // Refresh halfway through the 120 s the registrar granted, with nc 2 on the same nonce.
        assert_eq!(r.next_timeout(), Some(now + T1 + Duration::from_secs(60)));
        r.on_timeout(now + T1 + Duration::from_secs(60));
        let refresh = sent(&mut r).remove(0);
        assert!(
            refresh
                .header("Authorization")
                .unwrap()
                .contains("nc=00000002")
        );
    }

    #[test]
    fn wrong_password_and_silence_back_off() {
        let now = Instant::now();
        let mut r = Registration::new(config(), now);
        r.on_timeout(now);
        let first = sent(&mut r).remove(0);
        let ch = [("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n1\"")];
        r.on_response(&reply(&first, 401, &ch), now);
        let second = sent(&mut r).remove(0);
        assert!(
            second
                .header("Authorization")
                .unwrap()
                .contains("algorithm=MD5")
        );
        // Refused again with a fresh (not stale) nonce: wrong credentials, back off 2 s.
        let ch2 = [("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n2\"")];
        r.on_response(&reply(&second, 401, &ch2), now);
        let (t, e) = r.drain();
        assert!(t.is_empty());
        assert_eq!(
            e,
            vec![RegisterEvent::Failed {
                aor: "sip:frontdesk@clinic.example".into(),
                code: Some(401),
                retry_in: MIN_BACKOFF
            }]
        );
        // Next attempt: the registrar is silent; Timer F fails it, backoff doubles.
        r.on_timeout(now + MIN_BACKOFF);
        assert_eq!(sent(&mut r).len(), 1);
        let mut at = now + MIN_BACKOFF;
        while at < now + MIN_BACKOFF + TIMEOUT {
            at = r.next_timeout().unwrap();
            r.on_timeout(at);
        }
        let (_, e) = r.drain();
        assert_eq!(
            e.last(),
            Some(&RegisterEvent::Failed {
                aor: "sip:frontdesk@clinic.example".into(),
                code: None,
                retry_in: MIN_BACKOFF * 2
            })
        );
        // 423 with Min-Expires: asks again with the minimum.
        r.on_timeout(at + MIN_BACKOFF * 2);
        let req = sent(&mut r).remove(0);
        r.on_response(&reply(&req, 423, &[("Min-Expires", "3600")]), at);
        let again = sent(&mut r).remove(0);
        assert_eq!(again.header("Expires"), Some("3600"));
        assert!(refresh_in(3600) == Duration::from_secs(3540));
    }
}
