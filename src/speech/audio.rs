//! Audio in and out of the engines. WAV files, 16-bit conversion and resampling are the media
//! layer's ([`crate::media::audio`], [`crate::media::resample`]), re-exported here as the speech
//! engines' view of audio; the [`Framer`] that cuts synthesized speech into RTP frames is speech's.

use std::ops::ControlFlow;

pub use crate::media::audio::{Audio, AudioError, read_wav, to_i16, write_wav};
pub use crate::media::resample::resample;

/// Cuts audio that arrives in pieces of any length (a sentence from the synthesizer) into frames of
/// a fixed size (20 ms for RTP), keeping the remainder for the next piece. Sans-IO: the caller
/// sends the frames.
#[derive(Debug, Clone)]
pub struct Framer {
    frame: usize,
    pending: Vec<f32>,
}

impl Framer {
    /// Frames of `frame` samples (at least 1).
    pub fn new(frame: usize) -> Framer {
        let frame = frame.max(1);
        Framer {
            frame,
            pending: Vec::with_capacity(frame),
        }
    }

    /// Frames of `ms` milliseconds at `rate`, e.g. 20 ms at 8 kHz = 160 samples.
    pub fn for_duration(rate: u32, ms: u32) -> Framer {
        Framer::new((rate as u64 * ms as u64 / 1000) as usize)
    }

    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// Samples waiting for a full frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds `samples` and calls `out` with every frame now complete; stops early (leaving the
    /// rest unsent and dropped) when `out` breaks, e.g. on barge-in.
    pub fn push(
        &mut self,
        mut samples: &[f32],
        out: &mut impl FnMut(&[f32]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if !self.pending.is_empty() {
            let take = (self.frame - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < self.frame {
                return ControlFlow::Continue(());
            }
            let frame = std::mem::take(&mut self.pending);
            let flow = out(&frame);
            self.pending = frame;
            self.pending.clear();
            flow?;
        }
        let mut chunks = samples.chunks_exact(self.frame);
        for frame in &mut chunks {
            out(frame)?;
        }
        self.pending.extend_from_slice(chunks.remainder());
        ControlFlow::Continue(())
    }

    /// The last partial frame, padded with silence; nothing when no samples wait.
    pub fn finish(&mut self, out: &mut impl FnMut(&[f32]) -> ControlFlow<()>) -> ControlFlow<()> {
        if self.pending.is_empty() {
            return ControlFlow::Continue(());
        }
        self.pending.resize(self.frame, 0.0);
        let frame = std::mem::take(&mut self.pending);
        out(&frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_cuts_pieces_into_fixed_frames_and_pads_the_last() {
        let mut f = Framer::for_duration(8000, 20);
        assert_eq!(f.frame_len(), 160);
        let mut frames: Vec<Vec<f32>> = Vec::new();
        let mut out = |fr: &[f32]| {
            frames.push(fr.to_vec());
            ControlFlow::Continue(())
        };
        // 100 + 300 + 50 samples: two full frames, 130 left, padded to one more.
        let pieces = [vec![1.0; 100], vec![2.0; 300], vec![3.0; 50]];
        for p in &pieces {
            assert!(f.push(p, &mut out).is_continue());
        }
        assert_eq!(f.pending(), 130);
        assert!(f.finish(&mut out).is_continue());
        // Nothing waits any more: a second finish sends nothing.
        assert!(f.finish(&mut out).is_continue());
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|fr| fr.len() == 160));
        let flat: Vec<f32> = frames.concat();
        let input: Vec<f32> = pieces.concat();
        assert_eq!(&flat[..input.len()], &input[..]);
        assert!(flat[input.len()..].iter().all(|s| *s == 0.0));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn framer_stops_when_the_sink_breaks() {
        let mut f = Framer::new(10);
        let mut sent = 0;
        let mut out = |_: &[f32]| {
            sent += 1;
            if sent == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        assert!(f.push(&[0.5; 5], &mut out).is_continue());
        assert!(f.push(&[0.5; 100], &mut out).is_break());
        assert_eq!(sent, 2);
        assert!(Framer::new(0).frame_len() == 1);
    }
}
