//! The EMR stage of one call: runs the engine's action on the EMR as a task of its own (the
//! EMR is network I/O with its own timeout and breaker), pads identity checks to the floor the
//! engine asks for, and sends the result to the call's inbox as [`Event::EmrDone`]. One action
//! at a time; a new one or [`EmrStage::cancel`] aborts the one in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::conversation::Event;
use crate::dialog::call::run_action;
use crate::dialog::engine::Action;
use crate::emr::Emr;

pub struct EmrStage {
    emr: Arc<dyn Emr>,
    inbox: mpsc::Sender<Event>,
    running: Option<JoinHandle<()>>,
}

impl EmrStage {
    pub fn new(emr: Arc<dyn Emr>, inbox: mpsc::Sender<Event>) -> EmrStage {
        EmrStage {
            emr,
            inbox,
            running: None,
        }
    }

    pub fn run(&mut self, action: Action, floor: Duration) {
        self.cancel();
        let emr = self.emr.clone();
        let inbox = self.inbox.clone();
        self.running = Some(tokio::spawn(async move {
            let started = Instant::now();
            let reply = run_action(emr.as_ref(), action).await;
            let ms = started.elapsed().as_millis() as u64;
            // Identity checks take the same time whether or not the patient exists.
            if let Some(rest) = floor.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
            let _ = inbox.send(Event::EmrDone { reply, ms }).await;
        }));
    }

    pub fn cancel(&mut self) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
    }
}

impl Drop for EmrStage {
    fn drop(&mut self) {
        self.cancel();
    }
}
