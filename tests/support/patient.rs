//! A scripted patient on a live call: each line of the script answers one question of the flow,
//! named by its step id. The patient speaks when the agent waits (a `waiting` event on the
//! server's call feed, which names the step), and says the last answer again when the agent asks the
//! same question again because it did not catch it, as a person would. Any other step is a
//! conversation that went astray, and the patient gives up with the step it found.

use std::path::PathBuf;
use std::time::Duration;

use super::clinic::LiveClinic;
use super::phone::{Phone, speech_wav};

/// The call feed's event kind for "the agent waits for the caller".
pub const WAITING: &str = "waiting";

/// How often the patient repeats one answer before giving up.
const MAX_REPEATS: usize = 2;

/// One answer: `steps` are the flow steps (`|`-separated) whose question it answers.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    pub steps: &'static str,
    pub text: &'static str,
}

impl Line {
    fn answers(&self, step: &str) -> bool {
        self.steps.split('|').any(|s| s == step)
    }
}

/// `(steps, text)` pairs as lines.
pub fn script(pairs: &[(&'static str, &'static str)]) -> Vec<Line> {
    pairs
        .iter()
        .map(|&(steps, text)| Line { steps, text })
        .collect()
}

/// The script's lines as speech, ready before the call (synthesis takes seconds).
pub fn voice(lines: &[Line], dir: &std::path::Path) -> Vec<PathBuf> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| speech_wav(l.text, &dir.join(format!("line-{i}"))))
        .collect()
}

/// What the patient did on the call.
#[derive(Debug, Default)]
pub struct Spoken {
    /// Lines of the script said (each once, however often repeated).
    pub lines: usize,
    /// Answers said again because the agent asked again.
    pub repeats: usize,
    /// The steps the agent waited at, in order.
    pub steps: Vec<String>,
}

/// Answers the agent's questions on call `call` (the server's call id) with `lines` (spoken from
/// `wavs`) until the script is done. Err says where the conversation went astray.
pub fn answer(
    clinic: &LiveClinic,
    call: &str,
    phone: &mut Phone,
    lines: &[Line],
    wavs: &[PathBuf],
    timeout: Duration,
) -> Result<Spoken, (Spoken, String)> {
    let mut spoken = Spoken::default();
    let mut repeats_of_last = 0;
    while spoken.lines < lines.len() {
        let waits = spoken.steps.len();
        let waiting = clinic.wait_feed(WAITING, Some(call), waits + 1, timeout);
        let Some(step) = waiting
            .get(waits)
            .map(|w| w["step"].as_str().unwrap_or_default().to_string())
        else {
            let why = format!(
                "the agent did not wait for line {} ({:?}) within {timeout:?}; steps so far {:?}",
                spoken.lines, lines[spoken.lines].text, spoken.steps
            );
            return Err((spoken, why));
        };
        spoken.steps.push(step.clone());
        let next = lines[spoken.lines];
        if next.answers(&step) {
            phone.play(&wavs[spoken.lines]);
            spoken.lines += 1;
            repeats_of_last = 0;
            continue;
        }
        let last = spoken.lines.checked_sub(1);
        if let Some(last) = last.filter(|&l| lines[l].answers(&step))
            && repeats_of_last < MAX_REPEATS
        {
            phone.play(&wavs[last]);
            spoken.repeats += 1;
            repeats_of_last += 1;
            continue;
        }
        let why = format!(
            "the agent waits at step {step:?} where the patient has {:?} for {:?}; steps so far {:?}",
            next.text, next.steps, spoken.steps
        );
        return Err((spoken, why));
    }
    Ok(spoken)
}
