//! SRTP (RFC 3711) with SDES keys (RFC 4568): AES_CM_128_HMAC_SHA1_80 and _32, for RTP. SRTCP
//! (same master keys, labels 3..5) lives in [`super::rtcp`].

use aes::Aes128;
use base64::Engine as _;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::MediaError;

pub(crate) type Aes128Ctr = ctr::Ctr128BE<Aes128>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    pub fn parse(name: &str) -> Option<Suite> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(Suite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(Suite::AesCm128HmacSha1_32),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// 16-byte master key and 14-byte master salt.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub key: [u8; 16],
    pub salt: [u8; 14],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn random() -> Result<MasterKey, MediaError> {
        let mut bytes = [0u8; 30];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| MediaError::Srtp("no system randomness".into()))?;
        let mut key = MasterKey {
            key: [0; 16],
            salt: [0; 14],
        };
        key.key.copy_from_slice(&bytes[..16]);
        key.salt.copy_from_slice(&bytes[16..]);
        Ok(key)
    }

    /// From SDES key-params: `inline:BASE64(key||salt)[|lifetime][|MKI:len]`.
    pub fn from_key_params(params: &str) -> Result<MasterKey, MediaError> {
        let inline = params
            .strip_prefix("inline:")
            .ok_or_else(|| MediaError::Srtp("key-params must start with inline:".into()))?;
        let b64 = inline.split('|').next().unwrap_or_default();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| MediaError::Srtp(format!("key is not base64: {e}")))?;
        if raw.len() != 30 {
            return Err(MediaError::Srtp(format!(
                "key||salt is {} bytes, expected 30",
                raw.len()
            )));
        }
        let mut key = MasterKey {
            key: [0; 16],
            salt: [0; 14],
        };
        key.key.copy_from_slice(&raw[..16]);
        key.salt.copy_from_slice(&raw[16..]);
        Ok(key)
    }

    pub fn to_key_params(&self) -> String {
        let mut raw = Vec::with_capacity(30);
        raw.extend_from_slice(&self.key);
        raw.extend_from_slice(&self.salt);
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// AES-CM key derivation (RFC 3711 4.3.1) with key derivation rate 0.
pub(crate) fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&master.salt);
    iv[7] ^= label;
    out.fill(0);
    if let Ok(mut c) = Aes128Ctr::new_from_slices(&master.key, &iv) {
        c.apply_keystream(out);
    }
}

/// One direction of an SRTP stream (one master key, one SSRC at a time).
pub struct SrtpContext {
    suite: Suite,
    cipher_key: [u8; 16],
    salt: [u8; 14],
    auth_key: [u8; 20],
    /// Rollover counter and highest sequence number (receiver) or last sent (sender).
    roc: u32,
    last_seq: Option<u16>,
}

impl SrtpContext {
    pub fn new(suite: Suite, master: &MasterKey) -> SrtpContext {
        let mut cipher_key = [0u8; 16];
        let mut auth_key = [0u8; 20];
        let mut salt = [0u8; 14];
        derive(master, 0, &mut cipher_key);
        derive(master, 1, &mut auth_key);
        derive(master, 2, &mut salt);
        SrtpContext {
            suite,
            cipher_key,
            salt,
            auth_key,
            roc: 0,
            last_seq: None,
        }
    }

    fn keystream(&self, ssrc: u32, index: u64, payload: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        if let Ok(mut c) = Aes128Ctr::new_from_slices(&self.cipher_key, &iv) {
            c.apply_keystream(payload);
        }
    }

    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; 20] {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.auth_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(authenticated);
        mac.update(&roc.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts an RTP packet in place and appends the auth tag.
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), MediaError> {
        let (header_len, seq, ssrc) = header(packet)?;
        if let Some(last) = self.last_seq
            && seq < last
            && last - seq > 0x8000
        {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        let index = ((self.roc as u64) << 16) | seq as u64;
        self.keystream(ssrc, index, &mut packet[header_len..]);
        let tag = self.tag(packet, self.roc);
        packet.extend_from_slice(&tag[..self.suite.tag_len()]);
        Ok(())
    }

    /// Checks the tag and decrypts; returns the plain RTP packet's length within `packet`.
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, MediaError> {
        let tag_len = self.suite.tag_len();
        if packet.len() < 12 + tag_len {
            return Err(MediaError::Srtp("packet too short".into()));
        }
        let body_len = packet.len() - tag_len;
        let (header_len, seq, ssrc) = header(&packet[..body_len])?;
        // Estimate the packet's ROC (RFC 3711 3.3.1).
        let roc = match self.last_seq {
            None => self.roc,
            Some(s_l) => {
                if s_l < 0x8000 {
                    if seq as i32 - s_l as i32 > 0x8000 {
                        self.roc.wrapping_sub(1)
                    } else {
                        self.roc
                    }
                } else if (s_l as i32 - 0x8000) > seq as i32 {
                    self.roc.wrapping_add(1)
                } else {
                    self.roc
                }
            }
        };
        let expected = self.tag(&packet[..body_len], roc);
        let got = &packet[body_len..];
        // Compare without an early exit.
        let diff = expected[..tag_len]
            .iter()
            .zip(got)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(MediaError::Srtp("authentication failed".into()));
        }
        let index = ((roc as u64) << 16) | seq as u64;
        self.keystream(ssrc, index, &mut packet[header_len..body_len]);
        let newer = match self.last_seq {
            None => true,
            Some(s_l) => roc != self.roc || seq > s_l,
        };
        if newer && (roc == self.roc.wrapping_add(1) || roc == self.roc) {
            self.roc = roc;
            self.last_seq = Some(seq);
        }
        Ok(body_len)
    }
}

/// (header length, sequence, SSRC) of an RTP packet.
fn header(packet: &[u8]) -> Result<(usize, u16, u32), MediaError> {
    let p = super::rtp::RtpPacket::parse(packet)?;
    let payload_start = p.payload.as_ptr() as usize - packet.as_ptr() as usize;
    Ok((payload_start, p.sequence, p.ssrc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc3711_b3_key_derivation() {
        let mut master = MasterKey {
            key: [0; 16],
            salt: [0; 14],
        };
        master
            .key
            .copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        master
            .salt
            .copy_from_slice(&hex("0EC675AD498AFEEBB6960B3AABE6"));
        let ctx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &master);
        assert_eq!(
            ctx.cipher_key.to_vec(),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(ctx.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            ctx.auth_key.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn round_trip_tamper_and_rollover() {
        let master = MasterKey::random().unwrap();
        let params = master.to_key_params();
        assert_eq!(MasterKey::from_key_params(&params).unwrap(), master);
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let mut tx = SrtpContext::new(suite, &master);
            let mut rx = SrtpContext::new(suite, &master);
            for seq in [65533u16, 65534, 65535, 0, 1, 2] {
                let plain = crate::media::rtp::RtpPacket {
                    marker: false,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: 99,
                    ssrc: 0xabcdef,
                    payload: &[1, 2, 3, 4, 5, 6, 7, 8],
                };
                let mut p = Vec::new();
                plain.write(&mut p);
                let clear = p.clone();
                tx.protect(&mut p).unwrap();
                assert_ne!(p[12..20], clear[12..20]);
                let mut bad = p.clone();
                bad[13] ^= 1;
                assert!(rx.unprotect(&mut bad).is_err());
                let n = rx.unprotect(&mut p).unwrap();
                assert_eq!(&p[..n], &clear[..]);
            }
            assert_eq!(rx.roc, 1);
        }
        assert!(MasterKey::from_key_params("inline:AAAA").is_err());
        assert!(MasterKey::from_key_params("x").is_err());
    }
}
