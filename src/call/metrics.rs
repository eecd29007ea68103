//! Per-stage latency histograms and call counters for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A pipeline stage whose time is measured per turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Silence waited after the caller's last word before the turn was final.
    Endpointing,
    /// Speech recognition of the turn.
    Asr,
    /// The dialog engine's understanding and decision (NLU included).
    Nlu,
    /// EMR actions of the turn.
    Emr,
    /// From the reply being decided to its first audio leaving for the caller.
    TtsFirstAudio,
    /// End of the caller's speech to the first reply audio: what the caller feels.
    Reply,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Endpointing,
        Stage::Asr,
        Stage::Nlu,
        Stage::Emr,
        Stage::TtsFirstAudio,
        Stage::Reply,
    ];

    /// The stage named `name` (as [`Stage::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Endpointing => "endpointing",
            Stage::Asr => "asr",
            Stage::Nlu => "nlu",
            Stage::Emr => "emr",
            Stage::TtsFirstAudio => "tts_first_audio",
            Stage::Reply => "reply",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The call metrics, registered once and shared by all calls.
#[derive(Clone)]
pub struct CallMetrics {
    stages: Family<StageLabel, Histogram>,
    active: Gauge,
    ended: Family<OutcomeLabel, Counter>,
    barge_ins: Counter,
    turns: Counter,
    early_turn_ends: Counter,
    backchannels: Counter,
}

impl Default for CallMetrics {
    fn default() -> Self {
        Self {
            stages: Family::new_with_constructor(|| {
                Histogram::new([
                    0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0,
                ])
            }),
            active: Gauge::default(),
            ended: Family::default(),
            barge_ins: Counter::default(),
            turns: Counter::default(),
            early_turn_ends: Counter::default(),
            backchannels: Counter::default(),
        }
    }
}

impl CallMetrics {
    /// New metrics, registered on `registry` when given.
    pub fn new(registry: Option<&mut Registry>) -> CallMetrics {
        let m = CallMetrics::default();
        if let Some(r) = registry {
            r.register(
                "carevoice_call_stage_seconds",
                "Time per pipeline stage per turn (stage=reply: end of caller speech to first reply audio)",
                m.stages.clone(),
            );
            r.register(
                "carevoice_calls_active",
                "Calls in progress",
                m.active.clone(),
            );
            r.register(
                "carevoice_calls_ended",
                "Calls ended, by outcome",
                m.ended.clone(),
            );
            r.register(
                "carevoice_barge_ins",
                "Times a caller interrupted the agent",
                m.barge_ins.clone(),
            );
            r.register(
                "carevoice_call_turns",
                "Caller turns answered",
                m.turns.clone(),
            );
            r.register(
                "carevoice_early_turn_ends",
                "Caller turns ended at a pause because what was said already answered the step",
                m.early_turn_ends.clone(),
            );
            r.register(
                "carevoice_backchannels",
                "Times a caller's talk-over was a backchannel (uh-huh, okay) and the agent talked on",
                m.backchannels.clone(),
            );
        }
        m
    }

    pub fn observe(&self, stage: Stage, ms: u64) {
        self.stages
            .get_or_create(&StageLabel {
                stage: stage.as_str(),
            })
            .observe(ms as f64 / 1000.0);
    }

    pub fn call_started(&self) {
        self.active.inc();
    }

    pub fn call_ended(&self, outcome: &'static str) {
        self.active.dec();
        self.ended.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn barge_in(&self) {
        self.barge_ins.inc();
    }

    pub fn early_turn_end(&self) {
        self.early_turn_ends.inc();
    }

    pub fn backchannel(&self) {
        self.backchannels.inc();
    }

    pub fn turn(&self) {
        self.turns.inc();
    }

    pub fn active(&self) -> i64 {
        self.active.get()
    }
}
