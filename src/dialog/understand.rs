//! The understanding service: what a caller's turn means, decided off the async runtime.
//!
//! Built like the recognizer's service ([`crate::speech::asr::AsrService`]): one worker thread
//! owns the [`Nlu`] (keyword rules, and the local model when one is configured), jobs wait in a
//! bounded queue whose depth is in `/metrics`, and a caller that stops waiting (the call ended,
//! the caller spoke again) drops its future, which cancels a job still in the queue. A call's
//! conversation core asks with the step's allowed labels and feeds the answer to its engine as
//! [`Input::Understood`](super::engine::Input::Understood).
//!
//! The keyword rules answer when the service cannot: a full queue past the wait limit, a job
//! slower than the limit, a stopped worker (counted as `carevoice_understanding_fallbacks`). The
//! rules are microseconds of string matching, so that fallback may run on the caller's task; the
//! model never does ([`crate::inference`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::nlu::{KeywordNlu, Nlu, Understanding};

#[derive(Debug, thiserror::Error)]
pub enum UnderstandError {
    #[error("cannot start the understanding worker thread: {0}")]
    Thread(std::io::Error),
}

struct Job {
    text: String,
    allowed: Vec<&'static str>,
    reply: oneshot::Sender<Understanding>,
    cancel: Arc<AtomicBool>,
}

/// Sets the job's cancel flag when the waiting future is dropped first.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What one `understand` call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Understood {
    pub understanding: Understanding,
    /// Time from the request to the answer (queue wait included).
    pub ms: u64,
    /// The keyword rules answered because the service could not in time.
    pub fallback: bool,
}

/// The shared understanding worker behind a bounded queue. Cheap to clone.
#[derive(Clone)]
pub struct UnderstandingService {
    tx: mpsc::Sender<Job>,
    depth: Gauge,
    fallbacks: Counter,
    limit: Duration,
    max_chars: usize,
}

impl UnderstandingService {
    /// Starts the worker thread on `nlu`; at most `queue` turns wait; a turn not understood
    /// within `limit` (queue wait included) gets the keyword rules' answer; turns longer than
    /// `max_chars` are not sent to the model at all (the engine re-prompts them).
    pub fn start(
        nlu: Box<dyn Nlu>,
        queue: usize,
        limit: Duration,
        max_chars: usize,
        registry: Option<&mut Registry>,
    ) -> Result<UnderstandingService, UnderstandError> {
        let (tx, mut rx) = mpsc::channel::<Job>(queue.max(1));
        let depth = Gauge::default();
        let fallbacks = Counter::default();
        if let Some(r) = registry {
            r.register(
                "carevoice_understanding_queue_depth",
                "Caller turns waiting for the understanding service",
                depth.clone(),
            );
            r.register(
                "carevoice_understanding_fallbacks",
                "Caller turns the keyword rules answered because the understanding service could not in time",
                fallbacks.clone(),
            );
        }
        let worker_depth = depth.clone();
        let mut nlu = nlu;
        std::thread::Builder::new()
            .name("understanding".into())
            .spawn(move || {
                crate::inference::mark_this_thread();
                while let Some(job) = rx.blocking_recv() {
                    worker_depth.dec();
                    if job.cancel.load(Ordering::Relaxed) {
                        continue;
                    }
                    let understanding = nlu.understand(&job.text, &job.allowed);
                    let _ = job.reply.send(understanding);
                }
            })
            .map_err(UnderstandError::Thread)?;
        Ok(UnderstandingService {
            tx,
            depth,
            fallbacks,
            limit,
            max_chars,
        })
    }

    /// What `text` means among `allowed` (the step's labels). Never fails: the keyword rules
    /// answer when the service cannot (see the module docs). Dropping the future cancels a
    /// queued job.
    pub async fn understand(&self, text: String, allowed: Vec<&'static str>) -> Understood {
        let started = Instant::now();
        if text.trim().is_empty() || text.chars().count() > self.max_chars {
            return Understood {
                understanding: Understanding::Unknown,
                ms: 0,
                fallback: false,
            };
        }
        let (reply, rx) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let job = Job {
            text: text.clone(),
            allowed: allowed.clone(),
            reply,
            cancel,
        };
        self.depth.inc();
        let answer = tokio::time::timeout(self.limit, async {
            if self.tx.send(job).await.is_err() {
                self.depth.dec();
                return None;
            }
            rx.await.ok()
        })
        .await;
        let ms = started.elapsed().as_millis() as u64;
        match answer {
            Ok(Some(understanding)) => Understood {
                understanding,
                ms,
                fallback: false,
            },
            _ => {
                self.fallbacks.inc();
                tracing::warn!(
                    ms,
                    "understanding service too slow or stopped: keyword rules answer"
                );
                Understood {
                    understanding: KeywordNlu.understand(&text, &allowed),
                    ms: started.elapsed().as_millis() as u64,
                    fallback: true,
                }
            }
        }
    }

    /// Turns waiting now.
    pub fn queue_depth(&self) -> i64 {
        self.depth.get()
    }

    /// Turns the keyword rules answered in the service's place.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An understanding engine that takes `delay` per turn and says what the rules say; it
    /// records whether it ran on a marked inference thread.
    struct Slow {
        delay: Duration,
        on_worker: Arc<AtomicBool>,
    }

    impl Nlu for Slow {
        fn understand(&mut self, text: &str, allowed: &[&'static str]) -> Understanding {
            self.on_worker
                .store(crate::inference::allowed_here(), Ordering::SeqCst);
            std::thread::sleep(self.delay);
            KeywordNlu.understand(text, allowed)
        }
    }

    fn service(delay_ms: u64, limit_ms: u64) -> (UnderstandingService, Arc<AtomicBool>) {
        let on_worker = Arc::new(AtomicBool::new(false));
        let nlu = Slow {
            delay: Duration::from_millis(delay_ms),
            on_worker: on_worker.clone(),
        };
        let s = UnderstandingService::start(
            Box::new(nlu),
            4,
            Duration::from_millis(limit_ms),
            2000,
            None,
        )
        .unwrap();
        (s, on_worker)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn turns_are_understood_on_the_worker_thread_not_the_runtime() {
        let (s, on_worker) = service(0, 2000);
        let u = s
            .understand(
                "I'd like to book an appointment".into(),
                vec!["book", "cancel"],
            )
            .await;
        assert_eq!(u.understanding, Understanding::Intent("book"));
        assert!(!u.fallback);
        assert!(
            on_worker.load(Ordering::SeqCst),
            "ran off the inference thread"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_slow_model_gives_way_to_the_keyword_rules() {
        let (s, _) = service(500, 50);
        let u = s
            .understand(
                "cancel my appointment please".into(),
                vec!["book", "cancel"],
            )
            .await;
        assert!(u.fallback);
        assert_eq!(u.understanding, Understanding::Intent("cancel"));
        assert_eq!(s.fallbacks(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_overlong_turn_is_not_sent_to_the_model() {
        let (s, on_worker) = service(0, 2000);
        let long = "word ".repeat(1000);
        let u = s.understand(long, vec!["book"]).await;
        assert_eq!(u.understanding, Understanding::Unknown);
        assert!(!on_worker.load(Ordering::SeqCst));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_dropped_request_is_skipped_and_the_queue_drains() {
        let (s, _) = service(100, 5000);
        // The first turn occupies the worker; the second is dropped while queued.
        let first = tokio::spawn({
            let s = s.clone();
            async move { s.understand("book please".into(), vec!["book"]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let dropped = tokio::time::timeout(
            Duration::from_millis(10),
            s.understand("cancel please".into(), vec!["cancel"]),
        )
        .await;
        assert!(dropped.is_err());
        assert_eq!(
            first.await.unwrap().understanding,
            Understanding::Intent("book")
        );
        let after = s.understand("cancel it".into(), vec!["cancel"]).await;
        assert_eq!(after.understanding, Understanding::Intent("cancel"));
        assert_eq!(s.queue_depth(), 0);
    }
}
