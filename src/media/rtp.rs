//! RTP (RFC 3550) packets: a lean parser and writer, plus RTCP header checks and RFC 4733
//! telephone-event payloads.

use super::MediaError;

/// An RTP packet borrowed from a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, MediaError> {
        if buf.len() < 12 {
            return Err(MediaError::Rtp(format!("{} bytes, need 12", buf.len())));
        }
        if buf[0] >> 6 != 2 {
            return Err(MediaError::Rtp(format!("version {}", buf[0] >> 6)));
        }
        let padding = buf[0] & 0x20 != 0;
        let extension = buf[0] & 0x10 != 0;
        let csrc = (buf[0] & 0x0f) as usize;
        let mut start = 12 + 4 * csrc;
        if extension {
            let Some(ext) = buf.get(start..start + 4) else {
                return Err(MediaError::Rtp("truncated header extension".into()));
            };
            start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
        }
        let mut end = buf.len();
        if padding {
            let pad = *buf.last().unwrap_or(&0) as usize;
            if pad == 0 || pad > end {
                return Err(MediaError::Rtp("bad padding".into()));
            }
            end -= pad;
        }
        if start > end {
            return Err(MediaError::Rtp("header longer than the packet".into()));
        }
        Ok(RtpPacket {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: &buf[start..end],
        })
    }

    /// Writes the packet (no CSRC, no extension, no padding) into `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(((self.marker as u8) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Whether a datagram on the RTP port is RTCP (RFC 5761 4: packet types 192-223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

/// One RTCP packet's type and sender SSRC, walking a compound packet. Errors on bad lengths.
pub fn parse_rtcp(buf: &[u8]) -> Result<Vec<(u8, u32)>, MediaError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < 8 {
            return Err(MediaError::Rtp("truncated RTCP packet".into()));
        }
        if rest[0] >> 6 != 2 {
            return Err(MediaError::Rtp("RTCP version is not 2".into()));
        }
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        if len > rest.len() {
            return Err(MediaError::Rtp("RTCP length past the end".into()));
        }
        out.push((
            rest[1],
            u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        ));
        rest = &rest[len..];
    }
    Ok(out)
}

/// An RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, MediaError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(MediaError::Rtp(
                "telephone-event payload under 4 bytes".into(),
            ));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The keypad character for events 0-15 (`0`-`9`, `*`, `#`, `A`-`D`).
    pub fn digit(&self) -> Option<char> {
        b"0123456789*#ABCD"
            .get(self.event as usize)
            .map(|&b| b as char)
    }
}

/// Turns a stream of telephone-event packets into digits, one per event (RFC 4733 2.5.1):
/// an event is keyed by its RTP timestamp; retransmitted end packets are ignored.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last: Option<u32>,
}

impl DtmfReceiver {
    /// Feed one telephone-event packet; returns the digit when a new event starts.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload).ok()?;
        if self.last == Some(timestamp) {
            return None;
        }
        self.last = Some(timestamp);
        ev.digit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let p = RtpPacket {
            marker: true,
            payload_type: 0,
            sequence: 65535,
            timestamp: 0xdeadbeef,
            ssrc: 7,
            payload: &[1, 2, 3],
        };
        let mut buf = Vec::new();
        p.write(&mut buf);
        assert_eq!(
            buf,
            [
                0x80, 0x80, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 1, 2, 3
            ]
        );
        assert_eq!(RtpPacket::parse(&buf).unwrap(), p);
        assert!(RtpPacket::parse(&buf[..11]).is_err());
        let mut v1 = buf.clone();
        v1[0] = 0x40;
        assert!(RtpPacket::parse(&v1).is_err());
        let mut pad = buf.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200;
        assert!(RtpPacket::parse(&pad).is_err());
        let mut csrc = buf.clone();
        csrc[0] |= 0x0f;
        assert!(RtpPacket::parse(&csrc).is_err());
    }

    #[test]
    fn dtmf_events_once_each() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.push(100, &[5, 0x0a, 0, 160]), Some('5'));
        assert_eq!(rx.push(100, &[5, 0x0a, 1, 64]), None);
        assert_eq!(rx.push(100, &[5, 0x8a, 3, 32]), None);
        assert_eq!(rx.push(900, &[11, 0x8a, 3, 32]), Some('#'));
        assert_eq!(rx.push(1900, &[1, 2]), None);
    }

    #[test]
    fn rtcp() {
        let rr = [0x81, 201, 0, 1, 0, 0, 0, 9];
        assert!(is_rtcp(&rr));
        assert_eq!(parse_rtcp(&rr).unwrap(), vec![(201, 9)]);
        assert!(parse_rtcp(&[0x81, 201, 0, 9, 0, 0, 0, 9]).is_err());
    }
}
