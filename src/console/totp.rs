//! RFC 6238 time-based one-time passwords (HMAC-SHA1, 6 digits, 30 s steps), sans-IO: the caller
//! passes the Unix time. Also the RFC 4648 base32 that authenticator apps exchange secrets in, and
//! the `otpauth://` URI they scan.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per time step (RFC 6238's default, what every authenticator app uses).
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps either side of now that are still accepted: clocks drift and people type slowly.
pub const WINDOW: u64 = 1;

/// The time step `unix_secs` falls in.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The code for time step `step` (RFC 4226 HOTP with the step as the counter), `digits` long.
pub fn code_for_step(secret: &[u8], step: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch is unreachable in practice.
        return 0;
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// The step a typed code is valid for at `unix_secs` (within [`WINDOW`]), if any. The caller
/// stores the step and refuses any step not after the stored one, so a code works once.
pub fn verify(secret: &[u8], typed: &str, unix_secs: u64) -> Option<u64> {
    let typed = typed.trim();
    if typed.len() != DIGITS as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = typed.parse().ok()?;
    let now = step_at(unix_secs);
    // Newest first, so that a code valid for two steps (it never is, but) records the later one.
    (now.saturating_sub(WINDOW)..=now + WINDOW)
        .rev()
        .find(|&step| constant_time_eq(code_for_step(secret, step, DIGITS), value))
}

fn constant_time_eq(a: u32, b: u32) -> bool {
    (a ^ b) == 0
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (authenticator apps accept it so).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The provisioning URI an authenticator app scans (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, the SHA-1 rows (8 digits, the 20-byte ASCII seed).
    #[test]
    fn rfc6238_test_vectors() {
        let seed = b"12345678901234567890";
        for (time, expected) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(code_for_step(seed, step_at(time), 8), expected, "T={time}");
        }
    }

    #[test]
    fn six_digit_codes_verify_within_the_window_only() {
        let seed = b"12345678901234567890";
        let now = 1_111_111_111;
        let code = format!("{:06}", code_for_step(seed, step_at(now), 6));
        assert_eq!(verify(seed, &code, now), Some(step_at(now)));
        assert_eq!(verify(seed, &code, now + 30), Some(step_at(now)));
        assert_eq!(verify(seed, &code, now + 90), None, "two steps late");
        assert_eq!(verify(seed, "12345", now), None);
        assert_eq!(verify(seed, "abcdef", now), None);
        assert_eq!(verify(seed, "", now), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn otpauth_uri_escapes_the_account() {
        let uri = otpauth_uri("carevoice", "ann lee", b"12345678901234567890");
        assert!(
            uri.starts_with("otpauth://totp/carevoice:ann%20lee?secret=GEZDGNBVGY3TQOJQ"),
            "{uri}"
        );
        assert!(uri.ends_with("&digits=6&period=30"), "{uri}");
    }
}
