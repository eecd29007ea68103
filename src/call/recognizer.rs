//! The recognizer stage of one call: keeps the caller's recent audio and runs the jobs the
//! conversation core asks for on the shared recognizer ([`AsrService`]: whisper on worker
//! threads behind a bounded queue). Each job's transcript comes back to the call's inbox as
//! [`Event::Heard`]; cancelling a job (the caller went on speaking) aborts its task, which drops
//! the service's future and so cancels the decode.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::conversation::{Event, Heard, Span};
use super::recording::CallerAudio;
use crate::speech::asr::AsrService;
use crate::speech::audio::Audio;

/// Audio kept before a turn's detected start and after its end, so the recognizer hears the
/// whole first and last word.
const PRE_ROLL_MS: u64 = 250;
const POST_ROLL_MS: u64 = 250;
/// Caller audio kept for cutting out turns (longer turns are cut to their last seconds).
const CALLER_AUDIO_SECS: u32 = 60;

pub struct Recognizer {
    asr: AsrService,
    audio: CallerAudio,
    jobs: HashMap<Span, JoinHandle<()>>,
    inbox: mpsc::Sender<Event>,
}

impl Recognizer {
    pub fn new(asr: AsrService, inbox: mpsc::Sender<Event>) -> Recognizer {
        Recognizer {
            asr,
            audio: CallerAudio::new(CALLER_AUDIO_SECS),
            jobs: HashMap::new(),
            inbox,
        }
    }

    /// Keeps a frame of the caller's audio.
    pub fn push(&mut self, frame: &[f32]) {
        self.audio.push(frame);
    }

    /// Starts recognizing `span`. With `may_skip` (a speculative job) it declines when the
    /// shared recognizer is busy: under load a speculative job would queue ahead of other calls'
    /// finished turns. Returns the event to feed back at once when it declines.
    pub fn start(&mut self, span: Span, may_skip: bool) -> Option<Event> {
        if may_skip && !self.asr.idle() {
            return Some(Event::Heard {
                span,
                heard: Heard::Skipped,
                ms: 0,
            });
        }
        let now_ms = self.audio.now_ms();
        let samples = self.audio.slice(
            span.0.saturating_sub(PRE_ROLL_MS),
            (span.1 + POST_ROLL_MS).min(now_ms),
        );
        let asr = self.asr.clone();
        let inbox = self.inbox.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = asr
                .transcribe(Audio {
                    rate: 16_000,
                    samples,
                })
                .await;
            let heard = match result {
                Ok(t) => Heard::Text(t.text),
                Err(e) => {
                    tracing::warn!(error = %e, "recognizer failed on a turn");
                    Heard::Failed
                }
            };
            let ms = started.elapsed().as_millis() as u64;
            let _ = inbox.send(Event::Heard { span, heard, ms }).await;
        });
        if let Some(old) = self.jobs.insert(span, task) {
            old.abort();
        }
        None
    }

    /// The job for `span` reported (its task is done).
    pub fn finished(&mut self, span: Span) {
        self.jobs.remove(&span);
    }

    pub fn cancel(&mut self, span: Span) {
        if let Some(job) = self.jobs.remove(&span) {
            job.abort();
        }
    }
}

impl Drop for Recognizer {
    /// A call that ends stops its recognizer jobs (no transcript is wanted any more).
    fn drop(&mut self) {
        for job in self.jobs.values() {
            job.abort();
        }
    }
}
