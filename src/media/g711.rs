//! G.711 μ-law and A-law (ITU-T G.711), sample by sample.

/// 16-bit linear PCM -> μ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - ((s as u32) << 17).leading_zeros().min(7)) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// μ-law -> 16-bit linear PCM.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// 16-bit linear PCM -> A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = sample as i32;
    let mask = if s >= 0 {
        0xd5
    } else {
        s = -s - 1;
        0x55
    };
    s = s.min(32767);
    let byte = if s < 256 {
        s >> 4
    } else {
        let exponent = 31 - (s as u32).leading_zeros() as i32 - 7;
        let mantissa = (s >> (exponent + 3)) & 0x0f;
        (exponent << 4) | mantissa
    };
    (byte as u8) ^ mask
}

/// A-law -> 16-bit linear PCM.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
    }

    #[test]
    fn round_trips_within_quantisation() {
        for byte in 0..=255u8 {
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(byte)),
                byte | if byte == 0x7f { 0x80 } else { 0 }
            );
            assert_eq!(linear_to_alaw(alaw_to_linear(byte)), byte);
        }
        for s in (-32768i32..=32767).step_by(97) {
            let s = s as i16;
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            let tol = (s as i32).abs() / 16 + 16;
            assert!((u - s as i32).abs() <= tol, "ulaw {s} -> {u}");
            assert!((a - s as i32).abs() <= tol, "alaw {s} -> {a}");
        }
    }
}
