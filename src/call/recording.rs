//! The caller's recent audio, kept so a finished turn can be cut out and sent to the recognizer.
//! Sans-IO: frames in, slices out by stream time (ms since the call's first frame).

use std::collections::VecDeque;

/// Samples per millisecond at 16 kHz.
const PER_MS: u64 = 16;

/// A bounded window of the caller's 16 kHz audio.
pub struct CallerAudio {
    samples: VecDeque<f32>,
    /// Stream index of `samples[0]`.
    base: u64,
    capacity: usize,
}

impl CallerAudio {
    /// Keeps the last `max_secs` seconds.
    pub fn new(max_secs: u32) -> CallerAudio {
        let capacity = max_secs.max(1) as usize * 16_000;
        CallerAudio {
            samples: VecDeque::with_capacity(capacity.min(16_000 * 10)),
            base: 0,
            capacity,
        }
    }

    pub fn push(&mut self, frame: &[f32]) {
        self.samples.extend(frame.iter().copied());
        let over = self.samples.len().saturating_sub(self.capacity);
        if over > 0 {
            self.samples.drain(..over);
            self.base += over as u64;
        }
    }

    /// Stream time at the end of the audio pushed so far.
    pub fn now_ms(&self) -> u64 {
        (self.base + self.samples.len() as u64) / PER_MS
    }

    /// The audio from `start_ms` to `end_ms` (clamped to what is kept).
    pub fn slice(&self, start_ms: u64, end_ms: u64) -> Vec<f32> {
        let end_index = self.base + self.samples.len() as u64;
        let from = (start_ms * PER_MS).clamp(self.base, end_index);
        let to = (end_ms * PER_MS).clamp(from, end_index);
        self.samples
            .range((from - self.base) as usize..(to - self.base) as usize)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_by_stream_time_and_forgets_the_oldest() {
        let mut a = CallerAudio::new(1);
        for i in 0..100 {
            a.push(&[i as f32; 320]); // 20 ms each
        }
        assert_eq!(a.now_ms(), 2000);
        // only the last second is kept
        assert!(a.slice(0, 500).is_empty());
        let s = a.slice(1000, 1040);
        assert_eq!(s.len(), 640);
        assert_eq!(s[0], 50.0);
        assert_eq!(s[639], 51.0);
        // beyond the end: clamped
        assert_eq!(a.slice(1980, 5000).len(), 320);
        assert!(a.slice(3000, 2000).is_empty());
    }
}
