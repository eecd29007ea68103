//! RTCP (RFC 3550 section 6): sender and receiver reports with an SDES CNAME, built and parsed
//! as compound packets, and SRTCP (RFC 3711 section 3.4, AES_CM_128_HMAC_SHA1_80). Sans-IO:
//! bytes in, bytes out; the media session decides when to report.

use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::MediaError;
use super::srtp::{Aes128Ctr, MasterKey, derive};

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const PT_BYE: u8 = 203;

/// What a sender says about its own stream (the SR's sender info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
    pub ntp: u64,
    /// The RTP timestamp matching `ntp`.
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

/// Reception statistics about one source (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire; clamped).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp from this source; 0 if none yet.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// One report: SR when `sender` is set, else RR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ssrc: u32,
    pub sender: Option<SenderInfo>,
    pub blocks: Vec<ReportBlock>,
}

/// One packet of a parsed compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Report(Report),
    /// SDES: (SSRC, CNAME) of each chunk that has one.
    Sdes(Vec<(u32, String)>),
    Bye(Vec<u32>),
    /// Any other type (APP, feedback...), skipped.
    Other(u8),
}

/// True when a datagram on a muxed RTP port is RTCP (RFC 5761 4: payload type 64..=95 with the
/// marker bit, i.e. RTCP types 192..=223).
pub fn is_rtcp(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0] >> 6 == 2 && (192..=223).contains(&bytes[1])
}

/// A compound packet: the SR or RR, then SDES with `cname` (RFC 3550 6.1).
pub fn build(report: &Report, cname: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let blocks = &report.blocks[..report.blocks.len().min(31)];
    let pt = if report.sender.is_some() {
        PT_SR
    } else {
        PT_RR
    };
    let words = 1 + report.sender.map_or(0, |_| 5) + 6 * blocks.len();
    out.push(0x80 | blocks.len() as u8);
    out.push(pt);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&report.ssrc.to_be_bytes());
    if let Some(s) = report.sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_ts.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&b.highest_seq.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
    // SDES: one chunk, CNAME item, END, padded to 32 bits.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let start = out.len();
    out.extend_from_slice(&[0x81, PT_SDES, 0, 0]);
    out.extend_from_slice(&report.ssrc.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a compound RTCP packet; errors say which packet and what was wrong.
pub fn parse(bytes: &[u8]) -> Result<Vec<Packet>, MediaError> {
    let bad = |i: usize, what: &str| MediaError::Rtp(format!("RTCP packet {i}: {what}"));
    let mut packets = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let i = packets.len();
        if rest.len() < 4 {
            return Err(bad(i, "shorter than its 4-byte header"));
        }
        if rest[0] >> 6 != 2 {
            return Err(bad(i, "version is not 2"));
        }
        let count = (rest[0] & 0x1f) as usize;
        let pt = rest[1];
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        if len > rest.len() {
            return Err(bad(i, "length runs past the datagram"));
        }
        let mut body = &rest[4..len];
        if rest[0] & 0x20 != 0 {
            // Padding: the last octet counts the padding octets.
            let pad = *body
                .last()
                .ok_or_else(|| bad(i, "padding without a body"))? as usize;
            if pad == 0 || pad > body.len() {
                return Err(bad(i, "bad padding count"));
            }
            body = &body[..body.len() - pad];
        }
        rest = &rest[len..];
        packets.push(match pt {
            PT_SR | PT_RR => {
                let sender_len = if pt == PT_SR { 20 } else { 0 };
                if body.len() < 4 + sender_len + 24 * count {
                    return Err(bad(i, "report shorter than its report count says"));
                }
                let ssrc = u32_at(body, 0);
                let sender = (pt == PT_SR).then(|| SenderInfo {
                    ntp: (u64::from(u32_at(body, 4)) << 32) | u64::from(u32_at(body, 8)),
                    rtp_ts: u32_at(body, 12),
                    packets: u32_at(body, 16),
                    octets: u32_at(body, 20),
                });
                let blocks = (0..count)
                    .map(|k| {
                        let b = &body[4 + sender_len + 24 * k..];
                        let lost = u32_at(b, 4);
                        // Sign-extend the 24-bit count.
                        let cumulative_lost = ((lost << 8) as i32) >> 8;
                        ReportBlock {
                            ssrc: u32_at(b, 0),
                            fraction_lost: (lost >> 24) as u8,
                            cumulative_lost,
                            highest_seq: u32_at(b, 8),
                            jitter: u32_at(b, 12),
                            last_sr: u32_at(b, 16),
                            delay_since_last_sr: u32_at(b, 20),
                        }
                    })
                    .collect();
                Packet::Report(Report {
                    ssrc,
                    sender,
                    blocks,
                })
            }
            PT_SDES => {
                let mut chunks = Vec::new();
                let mut at = 0;
                for _ in 0..count {
                    if body.len() < at + 4 {
                        return Err(bad(i, "SDES chunk cut short"));
                    }
                    let ssrc = u32_at(body, at);
                    at += 4;
                    loop {
                        let Some(&kind) = body.get(at) else {
                            return Err(bad(i, "SDES items without an END"));
                        };
                        if kind == 0 {
                            at = (at + 4) & !3;
                            break;
                        }
                        let n = *body
                            .get(at + 1)
                            .ok_or_else(|| bad(i, "SDES item cut short"))?
                            as usize;
                        let text = body
                            .get(at + 2..at + 2 + n)
                            .ok_or_else(|| bad(i, "SDES item runs past the packet"))?;
                        if kind == 1 {
                            chunks.push((ssrc, String::from_utf8_lossy(text).into_owned()));
                        }
                        at += 2 + n;
                    }
                }
                Packet::Sdes(chunks)
            }
            PT_BYE => {
                if body.len() < 4 * count {
                    return Err(bad(i, "BYE shorter than its source count"));
                }
                Packet::Bye((0..count).map(|k| u32_at(body, 4 * k)).collect())
            }
            other => Packet::Other(other),
        });
    }
    if packets.is_empty() {
        return Err(bad(0, "empty datagram"));
    }
    Ok(packets)
}

/// SRTCP index (31 bits) with the E (encrypted) flag set.
const E_FLAG: u32 = 0x8000_0000;
const SRTCP_TAG: usize = 10;

/// One direction of SRTCP with AES_CM_128_HMAC_SHA1_80 (RFC 3711 3.4; keys with labels 3..5).
pub struct SrtcpContext {
    cipher_key: [u8; 16],
    salt: [u8; 14],
    auth_key: [u8; 20],
    /// Sender: the last index used. Receiver: the highest index seen (replay check).
    index: u32,
    seen: Option<u32>,
}

impl std::fmt::Debug for SrtcpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtcpContext(..)")
    }
}

impl SrtcpContext {
    pub fn new(master: &MasterKey) -> SrtcpContext {
        let mut cipher_key = [0u8; 16];
        let mut auth_key = [0u8; 20];
        let mut salt = [0u8; 14];
        derive(master, 3, &mut cipher_key);
        derive(master, 4, &mut auth_key);
        derive(master, 5, &mut salt);
        SrtcpContext {
            cipher_key,
            salt,
            auth_key,
            index: 0,
            seen: None,
        }
    }

    fn keystream(&self, ssrc: u32, index: u32, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes().iter().enumerate() {
            iv[10 + i] ^= b;
        }
        if let Ok(mut c) = Aes128Ctr::new_from_slices(&self.cipher_key, &iv) {
            c.apply_keystream(data);
        }
    }

    fn tag(&self, authenticated: &[u8]) -> [u8; 20] {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.auth_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(authenticated);
        mac.finalize().into_bytes().into()
    }

    /// Encrypts a compound RTCP packet in place (all but the first 8 bytes), appends E|index and
    /// the 80-bit tag. The first packet has index 1, as in libsrtp.
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), MediaError> {
        if packet.len() < 8 {
            return Err(MediaError::Srtp("RTCP packet shorter than 8 bytes".into()));
        }
        self.index = (self.index + 1) & 0x7fff_ffff;
        let ssrc = u32_at(packet, 4);
        self.keystream(ssrc, self.index, &mut packet[8..]);
        packet.extend_from_slice(&(E_FLAG | self.index).to_be_bytes());
        let tag = self.tag(packet);
        packet.extend_from_slice(&tag[..SRTCP_TAG]);
        Ok(())
    }

    /// Checks the tag and replays, decrypts; returns the plain RTCP length within `packet`.
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, MediaError> {
        if packet.len() < 8 + 4 + SRTCP_TAG {
            return Err(MediaError::Srtp("SRTCP packet too short".into()));
        }
        let signed = packet.len() - SRTCP_TAG;
        let expected = self.tag(&packet[..signed]);
        let diff = expected[..SRTCP_TAG]
            .iter()
            .zip(&packet[signed..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(MediaError::Srtp("SRTCP authentication failed".into()));
        }
        let body = signed - 4;
        let e_index = u32_at(packet, body);
        let index = e_index & 0x7fff_ffff;
        if self.seen.is_some_and(|s| index <= s) {
            return Err(MediaError::Srtp("SRTCP replay".into()));
        }
        self.seen = Some(index);
        if e_index & E_FLAG != 0 {
            let ssrc = u32_at(packet, 4);
            self.keystream(ssrc, index, &mut packet[8..body]);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sr_and_rr_round_trip_through_bytes() {
        let block = ReportBlock {
            ssrc: 0x1234_5678,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 42,
            last_sr: 0xaabb_ccdd,
            delay_since_last_sr: 65536,
        };
        let sr = Report {
            ssrc: 0xcafe_babe,
            sender: Some(SenderInfo {
                ntp: 0xe000_0001_8000_0000,
                rtp_ts: 160_000,
                packets: 250,
                octets: 40_000,
            }),
            blocks: vec![block],
        };
        let bytes = build(&sr, "carevoice@clinic");
        assert_eq!(bytes.len() % 4, 0);
        // SR header: V=2, RC=1, PT=200, length 12 words - 1.
        assert_eq!(&bytes[..4], &[0x81, 200, 0, 12]);
        assert!(is_rtcp(&bytes));
        let parsed = parse(&bytes).unwrap();
        assert_eq!(
            parsed,
            vec![
                Packet::Report(sr),
                Packet::Sdes(vec![(0xcafe_babe, "carevoice@clinic".into())])
            ]
        );
        let rr = Report {
            ssrc: 7,
            sender: None,
            blocks: vec![],
        };
        let bytes = build(&rr, "x");
        assert_eq!(&bytes[..4], &[0x80, 201, 0, 1]);
        assert_eq!(parse(&bytes).unwrap()[0], Packet::Report(rr));
    }

    #[test]
    fn bad_rtcp_is_an_error_not_a_panic() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x81, 200, 0, 12, 0, 0]).is_err());
        assert!(parse(&[0x40, 200, 0, 0]).is_err());
        assert!(parse(&[0x81, 201, 0, 1, 0, 0, 0, 1]).is_err());
        assert!(parse(&[0xa0, 203, 0, 1, 0, 0, 0, 0]).is_err());
        assert_eq!(parse(&[0x80, 205, 0, 0]).unwrap(), vec![Packet::Other(205)]);
        // An RTP packet (PT 0) on a muxed port is not RTCP.
        assert!(!is_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        for n in 0..64 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 0x81) as u8).collect();
            let _ = parse(&bytes);
        }
    }

    /// libsrtp's srtp_validate vector (test/srtp_driver.c): the RFC 3711 B.3 master key, SSRC
    /// 0xcafebabe, the first SRTCP packet (index 1).
    #[test]
    fn srtcp_matches_the_libsrtp_vector_and_round_trips() {
        let raw = hex("e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6");
        let mut master = MasterKey::from_key_params(&format!(
            "inline:{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw)
        ))
        .unwrap();
        let plain = hex("81c8000b cafebabe abababab abababab abababab abababab");
        let cipher = hex(
            "81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8 80000001 993e08cd 54d6c123 0798",
        );
        let mut tx = SrtcpContext::new(&master);
        let mut p = plain.clone();
        tx.protect(&mut p).unwrap();
        assert_eq!(p, cipher);
        let mut rx = SrtcpContext::new(&master);
        let mut bad = p.clone();
        bad[9] ^= 1;
        assert!(rx.unprotect(&mut bad).is_err());
        let n = rx.unprotect(&mut p).unwrap();
        assert_eq!(&p[..n], &plain[..]);
        // The same packet again is a replay.
        let mut again = cipher.clone();
        assert!(rx.unprotect(&mut again).is_err());
        // Another key does not authenticate.
        master = MasterKey::random().unwrap();
        let mut other = SrtcpContext::new(&master);
        let mut c = cipher.clone();
        assert!(other.unprotect(&mut c).is_err());
    }
}
