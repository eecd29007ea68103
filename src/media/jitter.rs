//! Adaptive jitter buffer, sans-IO.
//!
//! Packets go in with [`JitterBuffer::push`] (arrival `Instant`); the playout clock calls
//! [`JitterBuffer::pop`] once per frame (20 ms) and gets the next frame's payload or
//! [`Playout::Missing`] (loss or underrun: the caller conceals it). Playout follows RTP sequence
//! numbers, so timestamp jumps (silence suppression, a new talk spurt) cost nothing. Duplicates and
//! packets older than the playout point are dropped; an SSRC change or a sequence jump of more than
//! [`RESYNC_GAP`] restarts the stream. The target depth follows the RFC 3550 interarrival jitter
//! estimate (`2 * jitter`, between 1 and `max_frames` frames); when the buffer runs more than two
//! frames over the target, the oldest frame is dropped to cut delay.

use std::collections::BTreeMap;
use std::time::Instant;

/// A sequence jump larger than this (in packets) is a restart, not loss.
pub const RESYNC_GAP: u64 = 500;
/// Most packets held at once, whatever arrives between two pops (a flood cannot grow memory).
pub const MAX_QUEUED: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    Frame {
        payload: Vec<u8>,
        payload_type: u8,
    },
    /// Nothing to play for this slot (loss, underrun, or still filling).
    Missing,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    pub dropped_for_delay: u64,
    pub resyncs: u64,
}

#[derive(Debug)]
pub struct JitterBuffer {
    clock_rate: u32,
    frame_ms: u32,
    max_frames: usize,
    ssrc: Option<u32>,
    /// Highest extended sequence number seen.
    highest: u64,
    /// Next extended sequence number to play; `None` until playout starts.
    next: Option<u64>,
    packets: BTreeMap<u64, (u8, Vec<u8>)>,
    filling: bool,
    /// RFC 3550 jitter estimate, in timestamp units.
    jitter: f64,
    last_transit: Option<(Instant, u32)>,
    epoch: Option<Instant>,
    pub stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(clock_rate: u32, frame_ms: u32, max_frames: usize) -> JitterBuffer {
        JitterBuffer {
            clock_rate,
            frame_ms,
            max_frames: max_frames.max(1),
            ssrc: None,
            highest: 0,
            next: None,
            packets: BTreeMap::new(),
            filling: true,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            stats: JitterStats::default(),
        }
    }

    /// Target depth in frames.
    pub fn target(&self) -> usize {
        let frame_ts = (self.clock_rate * self.frame_ms / 1000).max(1) as f64;
        ((2.0 * self.jitter / frame_ts).ceil() as usize + 1).clamp(1, self.max_frames)
    }

    /// RFC 3550 interarrival jitter, in timestamp units (for RTCP reports).
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    fn reset(&mut self, ssrc: u32, seq: u16) {
        if self.ssrc.is_some() {
            self.stats.resyncs += 1;
        }
        self.ssrc = Some(ssrc);
        self.highest = seq as u64 + (1 << 16);
        self.next = None;
        self.packets.clear();
        self.filling = true;
        self.last_transit = None;
    }

    fn extend(&self, seq: u16) -> u64 {
        // The candidate nearest to the highest sequence seen.
        let base = self.highest & !0xffff;
        [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
            .into_iter()
            .map(|b| b.wrapping_add(seq as u64))
            .min_by_key(|c| c.abs_diff(self.highest))
            .unwrap_or(base + seq as u64)
    }

    pub fn push(
        &mut self,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        payload_type: u8,
        payload: &[u8],
        now: Instant,
    ) {
        self.stats.received += 1;
        if self.ssrc != Some(ssrc) {
            self.reset(ssrc, seq);
        }
        let mut ext = self.extend(seq);
        if ext.abs_diff(self.highest) > RESYNC_GAP {
            self.reset(ssrc, seq);
            ext = self.extend(seq);
        }
        // Interarrival jitter (RFC 3550 A.8).
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.duration_since(epoch).as_secs_f64() * self.clock_rate as f64) as i64;
        if let Some((prev_arrival, prev_ts)) = self.last_transit {
            let prev_arrival =
                (prev_arrival.duration_since(epoch).as_secs_f64() * self.clock_rate as f64) as i64;
            let d = (arrival - prev_arrival) - (timestamp.wrapping_sub(prev_ts) as i32 as i64);
            self.jitter += ((d.abs() as f64) - self.jitter) / 16.0;
        }
        self.last_transit = Some((now, timestamp));
        if self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicate += 1;
            return;
        }
        self.highest = self.highest.max(ext);
        self.packets.insert(ext, (payload_type, payload.to_vec()));
        while self.packets.len() > MAX_QUEUED {
            if let Some((seq, _)) = self.packets.pop_first() {
                self.stats.dropped_for_delay += 1;
                if self.next.is_some_and(|n| n <= seq) {
                    self.next = Some(seq + 1);
                }
            }
        }
    }

    /// The frame for the next 20 ms slot.
    pub fn pop(&mut self) -> Playout {
        if self.filling {
            if self.packets.len() < self.target() {
                return Playout::Missing;
            }
            self.filling = false;
            if self.next.is_none() {
                self.next = self.packets.keys().next().copied();
            }
        }
        while self.packets.len() > self.target() + 2 {
            if let Some((seq, _)) = self.packets.pop_first() {
                self.stats.dropped_for_delay += 1;
                self.next = Some(seq + 1);
            }
        }
        let Some(next) = self.next else {
            return Playout::Missing;
        };
        if self.packets.is_empty() {
            // Underrun: refill before playing again; the slot counts as lost.
            self.filling = true;
            self.stats.lost += 1;
            self.next = Some(next + 1);
            return Playout::Missing;
        }
        self.next = Some(next + 1);
        match self.packets.remove(&next) {
            Some((payload_type, payload)) => {
                self.stats.played += 1;
                Playout::Frame {
                    payload,
                    payload_type,
                }
            }
            None => {
                self.stats.lost += 1;
                Playout::Missing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(p: &Playout) -> Option<u8> {
        match p {
            Playout::Frame { payload, .. } => Some(payload[0]),
            Playout::Missing => None,
        }
    }

    #[test]
    fn reorder_duplicate_loss_and_wrap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, 20, 8);
        // Sequence wraps at 65535; 1 comes twice, 3 arrives before 2, 4 is lost.
        let slots: [&[(u16, u8)]; 8] = [
            &[(65534, 0)],
            &[(65535, 1)],
            &[(0, 2), (1, 3)],
            &[(1, 3)],
            &[(3, 5), (2, 4)],
            &[],
            &[(5, 7)],
            &[],
        ];
        let mut played = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let at = t0 + Duration::from_millis(20 * i as u64);
            for (seq, tag) in slot.iter() {
                jb.push(1, *seq, *tag as u32 * 160, 0, &[*tag], at);
            }
            played.extend(frame(&jb.pop()));
        }
        assert_eq!(jb.stats.duplicate, 1);
        assert_eq!(played, vec![0, 1, 2, 3, 4, 5, 7]);
        assert_eq!(jb.stats.lost, 1);
        // A late packet (already played) is dropped.
        jb.push(1, 65534, 0, 0, &[0], t0 + Duration::from_millis(400));
        assert_eq!(jb.stats.late, 1);
    }

    #[test]
    fn ssrc_change_and_seq_jump_resync() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, 20, 8);
        jb.push(1, 10, 0, 0, &[1], t0);
        assert_eq!(frame(&jb.pop()), Some(1));
        jb.push(2, 5000, 99999, 0, &[2], t0 + Duration::from_millis(20));
        assert_eq!(jb.stats.resyncs, 1);
        assert_eq!(frame(&jb.pop()), Some(2));
        jb.push(2, 30000, 7, 0, &[3], t0 + Duration::from_millis(40));
        assert_eq!(jb.stats.resyncs, 2);
        assert_eq!(frame(&jb.pop()), Some(3));
    }

    #[test]
    fn adapts_to_jitter_and_trims_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, 20, 10);
        // Packets arrive in bursts of 4 every 80 ms: jitter grows, so does the target.
        for i in 0..40u16 {
            let at = t0 + Duration::from_millis(80 * (i as u64 / 4));
            jb.push(9, i, i as u32 * 160, 0, &[i as u8], at);
        }
        assert!(jb.target() >= 3, "target {}", jb.target());
        // 40 packets queued: popping trims the excess instead of playing it all late.
        let _ = jb.pop();
        assert!(jb.len() <= jb.target() + 2);
        assert!(jb.stats.dropped_for_delay > 0);
    }
}
