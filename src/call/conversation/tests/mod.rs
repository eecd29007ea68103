//! Whole calls through the conversation core with a fake clock: voice scores in 32 ms windows,
//! transcripts, understandings and EMR results injected as the stages would send them, every
//! command checked. No audio, no models, no tokio: the suite runs in milliseconds.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::dialog::flow::Flow;
use crate::dialog::nlu::{Emergency, KeywordNlu, Nlu};
use crate::emr::EmrError;
use crate::speech::vad::WINDOW_DURATION_MS;

const SPEECH: f32 = 0.9;
const QUIET: f32 = 0.0;

fn settings() -> Settings {
    Settings {
        endpoint: EndpointParams::default(),
        no_input: Duration::from_secs(8),
        max_call: Duration::from_secs(600),
        one_moment: Duration::from_millis(700),
        hangup_wait: Duration::from_secs(5),
        barge_in_sure_ms: 500,
    }
}

/// One call on the shipped flow, driven by a fake clock in ms since the call started.
struct Call {
    core: Conversation,
    t0: Instant,
    now: Instant,
    /// Every command so far, in order.
    log: Vec<Command>,
    /// Index of the first command not yet looked at by `take`.
    seen: usize,
}

impl Call {
    fn new() -> Call {
        Self::with(settings())
    }

    fn with(settings: Settings) -> Call {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/clinic.yaml");
        let flow = Arc::new(Flow::load(&path).unwrap());
        let engine = crate::dialog::build_engine(&Config::default(), flow, None);
        let t0 = Instant::now();
        let wall: Timestamp = "2026-11-23T19:00:00Z".parse().unwrap();
        let mut core = Conversation::new(engine, settings, t0, wall);
        core.start(t0);
        let mut call = Call {
            core,
            t0,
            now: t0,
            log: Vec::new(),
            seen: 0,
        };
        call.pump();
        call
    }

    fn ms(&self) -> u64 {
        self.now.duration_since(self.t0).as_millis() as u64
    }

    fn pump(&mut self) {
        while let Some(c) = self.core.poll_command() {
            self.log.push(c);
        }
    }

    /// Moves the clock to `ms`, firing every timeout on the way.
    fn at(&mut self, ms: u64) {
        let to = self.t0 + Duration::from_millis(ms);
        while let Some(t) = self.core.next_timeout().filter(|t| *t <= to) {
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
            self.pump();
        }
        self.now = self.now.max(to);
    }

    fn wait(&mut self, ms: u64) {
        let to = self.ms() + ms;
        self.at(to);
    }

    fn event(&mut self, e: Event) {
        self.core.handle(e, self.now);
        self.pump();
    }

    /// `ms` of audio with probability `p`, window by window, the clock moving with it.
    fn voice(&mut self, p: f32, ms: u64) {
        for _ in 0..ms.div_ceil(WINDOW_DURATION_MS) {
            self.wait(WINDOW_DURATION_MS);
            self.event(Event::Voice(vec![p]));
        }
    }

    fn speak(&mut self, ms: u64) {
        self.voice(SPEECH, ms);
    }

    fn quiet(&mut self, ms: u64) {
        self.voice(QUIET, ms);
    }

    /// Commands since the last `take`.
    fn take(&mut self) -> &[Command] {
        let from = self.seen;
        self.seen = self.log.len();
        &self.log[from..]
    }

    fn last_segment(&self) -> u64 {
        self.log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Say { segment, .. } => Some(*segment),
                _ => None,
            })
            .expect("the agent said something")
    }

    /// The speaker plays the last segment out.
    fn played(&mut self) {
        let segment = self.last_segment();
        let at = self.now;
        self.event(Event::SpeakerStarted { segment, at });
        self.wait(100);
        self.event(Event::SpeakerDone { segment });
    }

    fn said(&self) -> String {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Say { texts, .. } => Some(texts.join(" ")),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn last_said(&self) -> String {
        self.log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Say { texts, .. } => Some(texts.join(" ")),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn waits_at(&self) -> Option<String> {
        self.log.iter().rev().find_map(|c| match c {
            Command::Waiting { step, .. } => Some(step.clone()),
            _ => None,
        })
    }

    fn recognize_spans(&self) -> Vec<(Span, bool)> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Recognize { span, may_skip } => Some((*span, *may_skip)),
                _ => None,
            })
            .collect()
    }

    fn last_recognize(&self) -> Span {
        self.recognize_spans().last().expect("a recognition").0
    }

    fn understand_requests(&self) -> Vec<(u32, String)> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::Understand { turn, text, .. } => Some((*turn, text.clone())),
                _ => None,
            })
            .collect()
    }

    fn count(&self, notice: Notice) -> usize {
        self.log
            .iter()
            .filter(|c| matches!(c, Command::Count(n) if *n == notice))
            .count()
    }

    fn flushes(&self) -> usize {
        self.log
            .iter()
            .filter(|c| matches!(c, Command::Flush))
            .count()
    }

    fn has(&self, pred: impl Fn(&Command) -> bool) -> bool {
        self.log.iter().any(pred)
    }

    /// Whether a command since the last `take` matches.
    fn fresh(&self, pred: impl Fn(&Command) -> bool) -> bool {
        self.log[self.seen..].iter().any(pred)
    }

    fn finished_with(&self) -> Option<Outcome> {
        self.log.iter().find_map(|c| match c {
            Command::Finished(o) => Some(*o),
            _ => None,
        })
    }

    fn audit(&self) -> Vec<&TurnRecord> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::AuditTurn(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The transcript of the last recognition comes back after `asr_ms`.
    fn hear(&mut self, text: &str, asr_ms: u64) {
        let span = self.last_recognize();
        self.wait(asr_ms);
        self.event(Event::Heard {
            span,
            heard: Heard::Text(text.into()),
            ms: asr_ms,
        });
    }

    /// The understanding service answers the last request as the keyword rules would.
    fn understand(&mut self, nlu_ms: u64) {
        let (turn, text, allowed) = self
            .log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Understand {
                    turn,
                    text,
                    allowed,
                } => Some((*turn, text.clone(), allowed.clone())),
                _ => None,
            })
            .expect("an understanding request");
        let understanding = KeywordNlu.understand(&text, &allowed);
        self.wait(nlu_ms);
        self.event(Event::Understood {
            turn,
            understanding,
            ms: nlu_ms,
        });
    }

    /// A whole caller turn: speech, the step's silence, the transcript, its understanding.
    fn says(&mut self, text: &str) {
        self.speak(800);
        self.quiet(1300);
        self.hear(text, 150);
        self.understand(1);
    }

    /// Greeting played: the agent waits at how_can_i_help.
    fn greeted() -> Call {
        let mut c = Call::new();
        c.played();
        assert_eq!(c.waits_at().as_deref(), Some("how_can_i_help"));
        c.take();
        c
    }

    /// The caller asked to book and gave a name and date of birth: the identity check runs.
    fn verifying() -> Call {
        let mut c = Call::greeted();
        c.says("I'd like to book an appointment");
        c.played();
        c.says("John Smith");
        c.played();
        c.says("March third nineteen seventy five");
        assert!(
            c.has(|x| matches!(
                x,
                Command::RunAction {
                    action: Action::FindPatient(_),
                    ..
                }
            )),
            "{}",
            c.said()
        );
        c.take();
        c
    }
}

mod barge_in;
mod emr_and_audit;
mod endings;
mod turns;
