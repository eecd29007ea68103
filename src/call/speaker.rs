//! The agent's voice on one call: text in, 20 ms frames out to the caller, in order.
//!
//! Two tasks joined by a bounded channel: the synthesizer turns each text into audio sentence by
//! sentence (piper on a blocking thread), the player sends it to the media edge one 20 ms frame at
//! a time (the edge's bounded queue paces it). The synthesizer runs ahead of the player, so the
//! second sentence is ready when the first has played.
//!
//! Every item carries the generation it was queued in; [`Speaker::interrupt`] (barge-in) starts a
//! new generation, and both tasks drop anything older at once — the player checks before every
//! frame, so playback stops within one frame plus what the media edge had queued (which the caller
//! of `interrupt` flushes).
//!
//! Items are grouped in *segments* (one reply, or one "one moment"): the player reports the first
//! frame of each segment ([`SpeakerEvent::FirstFrame`], for latency) and the end of each
//! ([`SpeakerEvent::Done`], so the call knows when the agent has stopped talking).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::media::FRAME_16K;
use crate::speech::audio::to_i16;
use crate::speech::tts::Tts;

/// What to say.
#[derive(Debug, Clone)]
pub enum Utterance {
    /// Text to synthesize. `fixed`: a prompt said on many calls (greeting, "one moment"), kept in
    /// the synthesis cache.
    Text { text: String, fixed: bool },
    /// Ready audio (16 kHz).
    Pcm(Arc<Vec<f32>>),
}

/// What the player reports to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeakerEvent {
    /// The first frame of `segment` went to the caller at `at`.
    FirstFrame { segment: u64, at: Instant },
    /// Everything of `segment` has been played.
    Done { segment: u64 },
}

enum Item {
    Say {
        generation: u64,
        segment: u64,
        what: Utterance,
    },
    End {
        generation: u64,
        segment: u64,
    },
}

enum Chunk {
    Pcm {
        generation: u64,
        segment: u64,
        pcm: Arc<Vec<f32>>,
    },
    End {
        generation: u64,
        segment: u64,
    },
}

/// One call's voice. Dropping it stops both tasks.
pub struct Speaker {
    tx: mpsc::Sender<Item>,
    generation: Arc<AtomicU64>,
    next_segment: u64,
}

impl Speaker {
    /// Starts the tasks: audio goes to `play` (the media edge), reports to `events`.
    pub fn start(
        tts: Arc<Tts>,
        play: mpsc::Sender<Vec<i16>>,
        events: mpsc::Sender<SpeakerEvent>,
    ) -> Speaker {
        let generation = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Item>(32);
        let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(4);
        tokio::spawn(synthesize(tts, rx, chunk_tx, generation.clone()));
        tokio::spawn(player(chunk_rx, play, events, generation.clone()));
        Speaker {
            tx,
            generation,
            next_segment: 0,
        }
    }

    /// Queues `parts` as one segment after what is queued; returns the segment's number.
    pub async fn say(&mut self, parts: Vec<Utterance>) -> u64 {
        let segment = self.next_segment;
        self.say_as(segment, parts).await;
        segment
    }

    /// Queues `parts` as segment `segment` (numbered by the caller, increasing) after what is
    /// queued.
    pub async fn say_as(&mut self, segment: u64, parts: Vec<Utterance>) {
        self.next_segment = self.next_segment.max(segment + 1);
        let generation = self.generation.load(Ordering::Acquire);
        for what in parts {
            let _ = self
                .tx
                .send(Item::Say {
                    generation,
                    segment,
                    what,
                })
                .await;
        }
        let _ = self
            .tx
            .send(Item::End {
                generation,
                segment,
            })
            .await;
    }

    /// Drops everything queued or playing (barge-in). Segments queued before never report `Done`.
    pub fn interrupt(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

async fn synthesize(
    tts: Arc<Tts>,
    mut rx: mpsc::Receiver<Item>,
    out: mpsc::Sender<Chunk>,
    generation: Arc<AtomicU64>,
) {
    while let Some(item) = rx.recv().await {
        let current = generation.load(Ordering::Acquire);
        match item {
            Item::End {
                generation: g,
                segment,
            } => {
                if g == current
                    && out
                        .send(Chunk::End {
                            generation: g,
                            segment,
                        })
                        .await
                        .is_err()
                {
                    return;
                }
            }
            Item::Say {
                generation: g,
                segment,
                what,
            } => {
                if g != current {
                    continue;
                }
                match what {
                    Utterance::Pcm(pcm) => {
                        if !forward(&out, g, segment, pcm).await {
                            return;
                        }
                    }
                    Utterance::Text { text, fixed: true } => {
                        let tts = tts.clone();
                        let made = tokio::task::spawn_blocking(move || {
                            crate::inference::marked(|| tts.cached(&text, 16_000))
                        })
                        .await;
                        match made {
                            Ok(Ok(pcm)) => {
                                if !forward(&out, g, segment, pcm).await {
                                    return;
                                }
                            }
                            Ok(Err(e)) => tracing::error!(error = %e, "speech synthesis failed"),
                            Err(e) => tracing::error!(error = %e, "speech synthesis panicked"),
                        }
                    }
                    Utterance::Text { text, fixed: false } => {
                        // Sentence by sentence: each goes to the player as soon as it exists.
                        let tts = tts.clone();
                        let out = out.clone();
                        let generation = generation.clone();
                        let made = tokio::task::spawn_blocking(move || {
                            crate::inference::marked(|| {
                                tts.stream(&text, 16_000, |pcm| {
                                    if generation.load(Ordering::Acquire) == g {
                                        let _ = out.blocking_send(Chunk::Pcm {
                                            generation: g,
                                            segment,
                                            pcm: Arc::new(pcm.to_vec()),
                                        });
                                    }
                                })
                            })
                        })
                        .await;
                        match made {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::error!(error = %e, "speech synthesis failed"),
                            Err(e) => tracing::error!(error = %e, "speech synthesis panicked"),
                        }
                    }
                }
            }
        }
    }
}

/// Hands audio to the player; false when the player is gone.
async fn forward(
    out: &mpsc::Sender<Chunk>,
    generation: u64,
    segment: u64,
    pcm: Arc<Vec<f32>>,
) -> bool {
    out.send(Chunk::Pcm {
        generation,
        segment,
        pcm,
    })
    .await
    .is_ok()
}

async fn player(
    mut rx: mpsc::Receiver<Chunk>,
    play: mpsc::Sender<Vec<i16>>,
    events: mpsc::Sender<SpeakerEvent>,
    generation: Arc<AtomicU64>,
) {
    let mut started: Option<u64> = None;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::End {
                generation: g,
                segment,
            } => {
                if g == generation.load(Ordering::Acquire)
                    && events.send(SpeakerEvent::Done { segment }).await.is_err()
                {
                    return;
                }
            }
            Chunk::Pcm {
                generation: g,
                segment,
                pcm,
            } => {
                for frame in pcm.chunks(FRAME_16K) {
                    if g != generation.load(Ordering::Acquire) {
                        break;
                    }
                    let mut samples: Vec<i16> = frame.iter().map(|s| to_i16(*s)).collect();
                    samples.resize(FRAME_16K, 0);
                    if play.send(samples).await.is_err() {
                        return;
                    }
                    if started != Some(segment) {
                        started = Some(segment);
                        let at = Instant::now();
                        if events
                            .send(SpeakerEvent::FirstFrame { segment, at })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    }
}
