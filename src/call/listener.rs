//! The listener stage: the caller's audio in, voice scores out, on a thread of its own.
//!
//! The voice classifier (Silero through ONNX Runtime: a few hundred microseconds per 32 ms window)
//! is model inference, so it runs here and not on the async runtime; the endpointing decisions
//! it feeds are the conversation core's. Frames arrive on a bounded data lane: when the thread
//! falls behind, frames are dropped and counted (a late frame is worth nothing to turn-taking),
//! and the scores go to the call's inbox in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::conversation::Event;
use crate::speech::vad::VoiceScorer;

/// Frames that may wait for the classifier (1 s of audio).
const FRAMES_QUEUED: usize = 50;

/// A call's listener: feed it frames; dropping it stops the thread.
pub struct Listener {
    frames: mpsc::Sender<Vec<f32>>,
    dropped: Arc<AtomicU64>,
}

impl Listener {
    /// Starts the thread: scores go to `inbox` as [`Event::Voice`].
    pub fn start(mut scorer: VoiceScorer, inbox: mpsc::Sender<Event>) -> std::io::Result<Self> {
        let (frames, mut rx) = mpsc::channel::<Vec<f32>>(FRAMES_QUEUED);
        std::thread::Builder::new()
            .name("listener".into())
            .spawn(move || {
                crate::inference::mark_this_thread();
                let mut probs = Vec::with_capacity(2);
                while let Some(frame) = rx.blocking_recv() {
                    probs.clear();
                    if let Err(e) = scorer.push(&frame, &mut probs) {
                        tracing::error!(error = %e, "VAD failed on a frame");
                        continue;
                    }
                    if !probs.is_empty()
                        && inbox.blocking_send(Event::Voice(probs.clone())).is_err()
                    {
                        break; // the call is over
                    }
                }
            })?;
        Ok(Listener {
            frames,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hands a frame to the classifier; a frame that does not fit is dropped and counted.
    pub fn push(&self, frame: Vec<f32>) {
        if self.frames.try_send(frame).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
