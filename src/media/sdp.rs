//! SDP (RFC 4566) for audio offer/answer (RFC 3264): PCMU, PCMA, Opus, telephone-event, ptime,
//! direction attributes and SDES crypto lines (RFC 4568).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::MediaError;
use super::srtp::{MasterKey, Suite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction for an offered direction (RFC 3264 6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// One `a=crypto` line (RFC 4568).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: String,
    /// The key-params, e.g. `inline:BASE64KEY|2^31`.
    pub key_params: String,
}

/// One codec from `m=` / `a=rtpmap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub payload_type: u8,
    /// Encoding name in upper case (`PCMU`, `PCMA`, `TELEPHONE-EVENT`, `OPUS`).
    pub encoding: String,
    pub clock_rate: u32,
    pub fmtp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<Format>,
    /// Connection address (media level, else session level).
    pub addr: Option<IpAddr>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub crypto: Vec<Crypto>,
    /// `a=rtcp-mux` (RFC 5761): RTCP shares the RTP port.
    pub rtcp_mux: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub origin_addr: Option<IpAddr>,
    pub media: Vec<MediaDesc>,
}

fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        18 => Some(("G729", 8000)),
        _ => None,
    }
}

fn bad(line: usize, what: impl Into<String>) -> MediaError {
    MediaError::Sdp {
        line,
        message: what.into(),
    }
}

fn parse_addr(rest: &str, line: usize) -> Result<Option<IpAddr>, MediaError> {
    // `IN IP4 192.0.2.1` (a multicast `/ttl` suffix is cut off).
    let mut parts = rest.split_whitespace();
    let (Some("IN"), Some(kind), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(line, "expected `IN IP4|IP6 ADDRESS`"));
    };
    if kind != "IP4" && kind != "IP6" {
        return Err(bad(line, format!("unknown address type {kind:?}")));
    }
    let addr = addr.split('/').next().unwrap_or(addr);
    Ok(addr.parse().ok())
}

impl Sdp {
    /// Parses an SDP body. Errors name the (1-based) line.
    pub fn parse(text: &[u8]) -> Result<Sdp, MediaError> {
        let text = std::str::from_utf8(text).map_err(|_| bad(0, "SDP is not UTF-8"))?;
        let mut sdp = Sdp {
            origin_addr: None,
            media: Vec::new(),
        };
        let mut session_addr = None;
        let mut session_dir = Direction::SendRecv;
        let mut saw_version = false;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let Some((kind, value)) = line.split_once('=') else {
                return Err(bad(n, "expected `x=value`"));
            };
            if kind.len() != 1 {
                return Err(bad(n, format!("bad line type {kind:?}")));
            }
            match kind {
                "v" => {
                    if value != "0" {
                        return Err(bad(n, format!("unsupported version {value:?}")));
                    }
                    saw_version = true;
                }
                "o" => {
                    let parts: Vec<&str> = value.split_whitespace().collect();
                    if parts.len() != 6 {
                        return Err(bad(n, "o= needs 6 fields"));
                    }
                    sdp.origin_addr = parse_addr(&parts[3..].join(" "), n)?;
                }
                "c" => {
                    let addr = parse_addr(value, n)?;
                    match sdp.media.last_mut() {
                        Some(m) => m.addr = addr,
                        None => session_addr = addr,
                    }
                }
                "m" => {
                    let mut parts = value.split_whitespace();
                    let (Some(media), Some(port), Some(proto)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(bad(n, "m= needs media, port, proto"));
                    };
                    let port: u16 = port
                        .split('/')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| bad(n, format!("bad port {port:?}")))?;
                    let mut formats = Vec::new();
                    for f in parts {
                        let Ok(pt) = f.parse::<u8>() else {
                            continue; // non-RTP formats
                        };
                        if pt > 127 {
                            return Err(bad(n, format!("payload type {pt} out of range")));
                        }
                        let (encoding, clock_rate) = static_format(pt).unwrap_or(("", 0));
                        formats.push(Format {
                            payload_type: pt,
                            encoding: encoding.into(),
                            clock_rate,
                            fmtp: None,
                        });
                    }
                    sdp.media.push(MediaDesc {
                        media: media.into(),
                        port,
                        proto: proto.into(),
                        formats,
                        addr: session_addr,
                        direction: session_dir,
                        ptime: None,
                        crypto: Vec::new(),
                        rtcp_mux: false,
                    });
                }
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let Some(m) = sdp.media.last_mut() else {
                        if let Some(d) = Direction::parse(name) {
                            session_dir = d;
                        }
                        continue;
                    };
                    if let Some(d) = Direction::parse(name) {
                        m.direction = d;
                        continue;
                    }
                    // Attributes of media we decline (video, ...) are not ours to judge: a
                    // malformed one there must not cost the caller the audio (RFC 4475 3.1.1.1).
                    if m.media != "audio" {
                        continue;
                    }
                    match name {
                        "rtpmap" => {
                            let (pt, enc) = arg
                                .split_once(' ')
                                .ok_or_else(|| bad(n, "rtpmap needs `PT ENC/RATE`"))?;
                            let pt: u8 =
                                pt.parse().map_err(|_| bad(n, "bad rtpmap payload type"))?;
                            let mut e = enc.trim().split('/');
                            let name = e.next().unwrap_or_default().to_ascii_uppercase();
                            let rate: u32 = e
                                .next()
                                .and_then(|r| r.parse().ok())
                                .ok_or_else(|| bad(n, "bad rtpmap clock rate"))?;
                            if let Some(f) = m.formats.iter_mut().find(|f| f.payload_type == pt) {
                                f.encoding = name;
                                f.clock_rate = rate;
                            }
                        }
                        "fmtp" => {
                            if let Some((pt, params)) = arg.split_once(' ')
                                && let Ok(pt) = pt.parse::<u8>()
                                && let Some(f) = m.formats.iter_mut().find(|f| f.payload_type == pt)
                            {
                                f.fmtp = Some(params.trim().to_string());
                            }
                        }
                        "rtcp-mux" => m.rtcp_mux = true,
                        "ptime" => {
                            m.ptime = Some(
                                arg.trim()
                                    .parse()
                                    .ok()
                                    .filter(|p| (1..=1000).contains(p))
                                    .ok_or_else(|| bad(n, format!("bad ptime {arg:?}")))?,
                            );
                        }
                        "crypto" => {
                            let mut p = arg.split_whitespace();
                            let (Some(tag), Some(suite), Some(key)) =
                                (p.next(), p.next(), p.next())
                            else {
                                return Err(bad(n, "crypto needs `TAG SUITE KEY-PARAMS`"));
                            };
                            let tag = tag.parse().map_err(|_| bad(n, "bad crypto tag"))?;
                            if !key.starts_with("inline:") {
                                return Err(bad(n, "crypto key-params must be inline:"));
                            }
                            m.crypto.push(Crypto {
                                tag,
                                suite: suite.into(),
                                key_params: key.into(),
                            });
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(bad(1, "missing v=0"));
        }
        Ok(sdp)
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&MediaDesc> {
        self.media.iter().find(|m| m.media == "audio")
    }
}

/// The audio codecs we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Opus (RFC 7587): dynamic payload type, 48 kHz RTP clock, `opus/48000/2` in SDP.
    Opus,
}

impl Codec {
    /// Name as written in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// RTP clock rate (Opus: always 48 kHz, RFC 7587 4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => super::opus::CLOCK_RATE,
        }
    }

    /// RTP timestamp units in a 20 ms frame.
    pub fn frame_ticks(self) -> u32 {
        self.clock_rate() / 50
    }
}

/// SDES-SRTP keys agreed in offer/answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The crypto tag we answered.
    pub tag: u32,
    pub suite: Suite,
    /// The offerer's key (decrypts what it sends).
    pub remote: MasterKey,
    /// Our key (encrypts what we send), fresh for each answer.
    pub local: MasterKey,
}

/// What offer/answer agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// `RTP/AVP` or `RTP/SAVP`, as offered.
    pub proto: String,
    /// Keys when the offer asked for SRTP.
    pub srtp: Option<SrtpKeys>,
    pub codec: Codec,
    /// The payload type the peer uses for the codec (G.711: static 0 or 8; Opus: dynamic).
    pub payload_type: u8,
    /// Payload type of telephone-event at the codec's clock rate, when both sides have it.
    pub dtmf_pt: Option<u8>,
    pub remote_addr: Option<IpAddr>,
    pub remote_port: u16,
    /// Our direction, as put in the answer.
    pub direction: Direction,
    pub ptime: u32,
    /// The offer had `a=rtcp-mux`: we answer with it and send RTCP on the RTP port.
    pub rtcp_mux: bool,
}

/// Picks what to answer to `offer`: a codec (see below) plus telephone-event at the codec's
/// clock rate. `None` when nothing is acceptable (send 488).
///
/// Codec choice: G.711 (the offerer's first of PCMU/PCMA) whenever it is offered, else Opus.
/// Why G.711 first, even when the offer lists Opus before it: patients call through trunks and
/// PBXs whose audio is G.711 end to end (the PSTN is narrowband), so Opus would only add a
/// transcode and CPU (an Opus encode costs about a hundred times a G.711 one, and the media
/// budget is 200 calls on two cores) for no gain in what the speech layer hears; and G.711 is
/// the codec every SIP peer gets right, while Opus's SDP details (fmtp, stereo, DTX) vary.
/// Opus is taken when it is what the peer offers without G.711 (softphones, WebRTC gateways,
/// wideband-only devices): then the caller's audio is wideband and decodes straight to the
/// 16 kHz the speech layer wants.
pub fn negotiate(offer: &Sdp) -> Option<Negotiated> {
    let audio = offer.media.iter().find(|m| {
        m.media == "audio" && m.port != 0 && (m.proto == "RTP/AVP" || m.proto == "RTP/SAVP")
    })?;
    let srtp = audio.crypto.iter().find_map(|c| {
        let suite = Suite::parse(&c.suite)?;
        let remote = MasterKey::from_key_params(&c.key_params).ok()?;
        Some(SrtpKeys {
            tag: c.tag,
            suite,
            remote,
            local: MasterKey::random().ok()?,
        })
    });
    if audio.proto == "RTP/SAVP" && srtp.is_none() {
        return None;
    }
    let g711 = audio.formats.iter().find_map(|f| {
        if f.clock_rate != 8000 {
            return None;
        }
        match f.encoding.as_str() {
            "PCMU" => Some((Codec::Pcmu, f.payload_type)),
            "PCMA" => Some((Codec::Pcma, f.payload_type)),
            _ => None,
        }
    });
    let opus = audio.formats.iter().find_map(|f| {
        (f.encoding == "OPUS" && f.clock_rate == Codec::Opus.clock_rate())
            .then_some((Codec::Opus, f.payload_type))
    });
    let (codec, pt) = g711.or(opus)?;
    let dtmf_pt = audio
        .formats
        .iter()
        // RFC 4733 2.1: the event clock is the audio codec's (telephone-event/48000 with Opus).
        .find(|f| f.encoding == "TELEPHONE-EVENT" && f.clock_rate == codec.clock_rate())
        .map(|f| f.payload_type);
    Some(Negotiated {
        proto: audio.proto.clone(),
        srtp,
        codec,
        payload_type: pt,
        dtmf_pt,
        remote_addr: audio.addr.or(offer.origin_addr),
        remote_port: audio.port,
        direction: audio.direction.answer(),
        ptime: 20,
        rtcp_mux: audio.rtcp_mux,
    })
}

/// Prints our answer for `n`, with media at `local` and session version `version`.
pub fn answer(
    n: &Negotiated,
    local: std::net::SocketAddr,
    session_id: u64,
    version: u64,
) -> String {
    let ip = local.ip();
    let kind = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "v=0\r\no=carevoice {session_id} {version} IN {kind} {ip}\r\ns=carevoice\r\nc=IN {kind} {ip}\r\nt=0 0\r\n"
    );
    let _ = write!(s, "m=audio {} {} {}", local.port(), n.proto, n.payload_type);
    if let Some(pt) = n.dtmf_pt {
        let _ = write!(s, " {pt}");
    }
    let rate = n.codec.clock_rate();
    match n.codec {
        Codec::Pcmu | Codec::Pcma => {
            let _ = write!(
                s,
                "\r\na=rtpmap:{} {}/{rate}\r\n",
                n.payload_type,
                n.codec.name()
            );
        }
        Codec::Opus => {
            // RFC 7587 6.1: always `/48000/2`. We decode to and encode from 16 kHz mono, so we
            // tell the sender wideband is all we play (maxplaybackrate) and that we send mono
            // wideband (stereo=0 is the default).
            let _ = write!(
                s,
                "\r\na=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} maxplaybackrate=16000;sprop-maxcapturerate=16000\r\n",
                pt = n.payload_type
            );
        }
    }
    if let Some(pt) = n.dtmf_pt {
        let _ = write!(
            s,
            "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    let _ = write!(s, "a=ptime:{}\r\na={}\r\n", n.ptime, n.direction.as_str());
    if n.rtcp_mux {
        s.push_str("a=rtcp-mux\r\n");
    }
    if let Some(k) = &n.srtp {
        let _ = write!(
            s,
            "a=crypto:{} {} {}\r\n",
            k.tag,
            k.suite.name(),
            k.local.to_key_params()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 96 8 0 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:30\r\na=sendonly\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n";

    #[test]
    fn parses_offer() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        let a = sdp.audio().unwrap();
        assert_eq!(a.port, 6000);
        assert_eq!(a.addr, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.ptime, Some(30));
        assert_eq!(a.formats[0].encoding, "OPUS");
        assert_eq!(a.formats[0].clock_rate, 48000);
        assert_eq!(a.formats[2].encoding, "PCMU");
        assert_eq!(a.formats[3].fmtp.as_deref(), Some("0-15"));
        assert_eq!(a.crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(a.crypto[0].tag, 1);
    }

    #[test]
    fn srtp_offer_gets_our_own_key() {
        let savp = OFFER.replace("RTP/AVP", "RTP/SAVP");
        let n = negotiate(&Sdp::parse(savp.as_bytes()).unwrap()).unwrap();
        let keys = n.srtp.clone().unwrap();
        assert_eq!(keys.suite, Suite::AesCm128HmacSha1_80);
        assert_ne!(keys.local, keys.remote);
        let text = answer(&n, "127.0.0.1:7000".parse().unwrap(), 42, 1);
        let back = Sdp::parse(text.as_bytes()).unwrap();
        let a = back.audio().unwrap();
        assert_eq!(a.proto, "RTP/SAVP");
        assert_eq!(
            MasterKey::from_key_params(&a.crypto[0].key_params).unwrap(),
            keys.local
        );
        // SAVP without a usable crypto line: nothing to answer (488).
        let no_crypto = savp.replace("AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80");
        assert!(negotiate(&Sdp::parse(no_crypto.as_bytes()).unwrap()).is_none());
    }

    #[test]
    fn answers_byte_for_byte() {
        let plain: String = OFFER
            .lines()
            .filter(|l| !l.starts_with("a=crypto"))
            .map(|l| format!("{l}\n"))
            .collect();
        let sdp = Sdp::parse(plain.as_bytes()).unwrap();
        let n = negotiate(&sdp).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.dtmf_pt, Some(101));
        assert_eq!(n.direction, Direction::RecvOnly);
        let text = answer(&n, "127.0.0.1:7000".parse().unwrap(), 42, 1);
        assert_eq!(
            text,
            "v=0\r\no=carevoice 42 1 IN IP4 127.0.0.1\r\ns=carevoice\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=recvonly\r\n"
        );
        assert_eq!(
            Sdp::parse(text.as_bytes()).unwrap().audio().unwrap().port,
            7000
        );
        assert!(!n.rtcp_mux);
        // An offer with rtcp-mux gets it in the answer (RFC 5761 5.1.1).
        let muxed = Sdp::parse(format!("{plain}a=rtcp-mux\n").as_bytes()).unwrap();
        let n = negotiate(&muxed).unwrap();
        assert!(n.rtcp_mux);
        let text = answer(&n, "127.0.0.1:7000".parse().unwrap(), 42, 1);
        assert!(text.ends_with("a=recvonly\r\na=rtcp-mux\r\n"), "{text}");
    }

    #[test]
    fn opus_only_offer_gets_an_opus_answer() {
        // What baresip's opus module offers (telephone-event at 8000 only: no DTMF with Opus).
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 stereo=1;sprop-stereo=1\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let n = negotiate(&Sdp::parse(offer.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.dtmf_pt),
            (Codec::Opus, 111, None)
        );
        let text = answer(&n, "127.0.0.1:7000".parse().unwrap(), 42, 1);
        assert_eq!(
            text,
            "v=0\r\no=carevoice 42 1 IN IP4 127.0.0.1\r\ns=carevoice\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxplaybackrate=16000;sprop-maxcapturerate=16000\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        let back = Sdp::parse(text.as_bytes()).unwrap();
        let f = &back.audio().unwrap().formats[0];
        assert_eq!((f.encoding.as_str(), f.clock_rate), ("OPUS", 48000));
        // With telephone-event/48000 offered too, DTMF is on at the Opus clock.
        let both = offer.replace(" 111 101", " 111 101 102")
            + "a=rtpmap:102 telephone-event/48000\r\na=fmtp:102 0-15\r\n";
        let n = negotiate(&Sdp::parse(both.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.dtmf_pt, Some(102));
        let text = answer(&n, "127.0.0.1:7000".parse().unwrap(), 42, 1);
        assert!(
            text.contains("m=audio 7000 RTP/AVP 111 102\r\n")
                && text.contains("a=rtpmap:102 telephone-event/48000\r\n"),
            "{text}"
        );
        // Opus listed first but G.711 offered too: G.711 (see `negotiate`).
        let mixed = offer.replace(" 111 101", " 111 0 101");
        let n = negotiate(&Sdp::parse(mixed.as_bytes()).unwrap()).unwrap();
        assert_eq!((n.codec, n.dtmf_pt), (Codec::Pcmu, Some(101)));
        // Opus at another clock rate is no Opus (RFC 7587 says 48000).
        let wrong = offer.replace("opus/48000/2", "opus/16000/1");
        assert!(negotiate(&Sdp::parse(wrong.as_bytes()).unwrap()).is_none());
    }

    #[test]
    fn rejects_or_declines() {
        let g722_only =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
        assert!(negotiate(&Sdp::parse(g722_only.as_bytes()).unwrap()).is_none());
        for bad in [
            "x",
            "v=1\r\n",
            "v=0\r\nm=audio x RTP/AVP 0\r\n",
            "v=0\r\nc=IN IP9 1.2.3.4\r\n",
            "v=0\r\nm=audio 5 RTP/AVP 200\r\n",
            "v=0\r\nm=audio 5 RTP/AVP 0\r\na=ptime:0\r\n",
            "m=audio 5 RTP/AVP 0\r\n",
        ] {
            assert!(Sdp::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        // A malformed rtpmap on a media line we decline anyway is ignored.
        let video = Sdp::parse(
            b"v=0\r\nm=audio 5 RTP/AVP 0\r\nm=video 7 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n",
        )
        .unwrap();
        assert_eq!(video.media.len(), 2);
        match Sdp::parse(b"v=0\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n") {
            Err(MediaError::Sdp { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }
}
