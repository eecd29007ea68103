//! An interactive patient's phone: baresip driven through its stdin menu, so a test can speak
//! each line when the agent has finished talking instead of on a fixed timeline (which breaks
//! as soon as the machine is slower than expected).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::program;
use super::sip::{baresip_config, heard_files};

/// Seconds of silence after each spoken line: the file must not end during the call (baresip
/// hangs up when its audio source ends).
const TAIL_SECS: f32 = 300.0;

pub struct Phone {
    child: Child,
    stdin: ChildStdin,
    dir: PathBuf,
    heard_dir: PathBuf,
    log: PathBuf,
    lines: u32,
}

impl Phone {
    /// Dials `uri` from a fresh baresip whose microphone is silent until [`Phone::say`].
    pub fn dial(uri: &str, srtp: bool, dir: &Path) -> Phone {
        use std::os::unix::process::CommandExt;
        let silence = dir.join("silence.wav");
        write_silence(&silence, TAIL_SECS);
        let config = baresip_config(&silence, srtp, dir);
        let log = dir.join("baresip.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(program("baresip"))
            .arg("-f")
            .arg(&config.conf_dir)
            .args(["-e", &format!("/dial {uri}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .process_group(0)
            .spawn()
            .expect("start baresip");
        let stdin = child.stdin.take().unwrap();
        Phone {
            child,
            stdin,
            dir: dir.to_path_buf(),
            heard_dir: config.heard_dir,
            log,
            lines: 0,
        }
    }

    /// Speaks `text` into the call now (made with [`speech_wav`] first: prefer preparing lines
    /// before the call with [`speech_wav`] and [`Phone::play`], since synthesis takes seconds).
    pub fn say(&mut self, text: &str) {
        self.lines += 1;
        let wav = speech_wav(text, &self.dir.join(format!("say-{}", self.lines)));
        self.play(&wav);
    }

    /// Switches the microphone to `wav` now.
    pub fn play(&mut self, wav: &Path) {
        self.command(&format!("/ausrc aufile,{}", wav.display()));
    }

    /// Presses a key (RFC 4733).
    pub fn press(&mut self, key: char) {
        self.command(&key.to_string());
    }

    fn command(&mut self, line: &str) {
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    /// Whether baresip has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until the agent has answered the last line and gone quiet: its audio arrived after
    /// the line ended, then `quiet` of silence. Read from what baresip is recording, so it works
    /// for many calls at once. Returns false on `timeout`.
    pub fn wait_reply(&self, quiet: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let said_until = self.said_until();
        while Instant::now() < deadline {
            if let Some(heard) = self.recording("-dec.wav") {
                let frames = loud_frames(&heard);
                let from = (said_until * 50.0) as usize;
                if let Some(first) = frames.iter().skip(from).position(|l| *l) {
                    let last_loud = frames.iter().rposition(|l| *l).unwrap_or(0);
                    let quiet_frames = frames.len().saturating_sub(last_loud + 1);
                    if from + first <= last_loud
                        && quiet_frames as f32 >= quiet.as_secs_f32() * 50.0
                    {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// What baresip sent and heard so far (8 kHz samples on the call's timeline).
    pub fn recordings(&self) -> Option<(Vec<i16>, Vec<i16>)> {
        Some((self.recording("-enc.wav")?, self.recording("-dec.wav")?))
    }

    /// Seconds into the call at which the caller's last line ended (from baresip's recording of
    /// what it sent).
    fn said_until(&self) -> f32 {
        let Some(sent) = self.recording("-enc.wav") else {
            return 0.0;
        };
        let frames = loud_frames(&sent);
        frames
            .iter()
            .rposition(|l| *l)
            .map_or(0.0, |i| (i + 1) as f32 / 50.0)
    }

    /// The samples of a recording baresip is still writing (its header is not final yet).
    fn recording(&self, suffix: &str) -> Option<Vec<i16>> {
        let path = std::fs::read_dir(&self.heard_dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(suffix))?;
        read_growing_wav(&path)
    }

    /// Quits baresip (hanging up if the call is still up) and returns what it heard.
    pub fn finish(mut self) -> (Vec<PathBuf>, String) {
        self.command("/quit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !self.exited() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        (heard_files(&self.heard_dir), log)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` in a natural voice (piper, through `carevoice say`, at 8 kHz) followed by minutes of
/// silence, as a caller's microphone input: `STEM.wav`.
pub fn speech_wav(text: &str, stem: &Path) -> PathBuf {
    let spoken = stem.with_extension("voice.wav");
    let out = Command::new(super::carevoice::bin())
        .args(["say", text, "--rate", "8000", "-o"])
        .arg(&spoken)
        .output()
        .expect("run carevoice say");
    assert!(
        out.status.success(),
        "carevoice say failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wav = stem.with_extension("wav");
    super::run_ok(
        "sox",
        Command::new(program("sox"))
            .arg(&spoken)
            .args(["-b", "16", "-e", "signed-integer"])
            .arg(&wav)
            .args(["pad", "0", &TAIL_SECS.to_string()]),
    );
    wav
}

fn write_silence(path: &Path, secs: f32) {
    let mut w = hound::WavWriter::create(
        path,
        hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .unwrap();
    for _ in 0..(secs * 8000.0) as usize {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
}

/// 8 kHz 16-bit samples of a WAV file that may still be written: the data after the `data` chunk
/// header, whatever its declared size.
pub fn read_growing_wav(path: &Path) -> Option<Vec<i16>> {
    let bytes = std::fs::read(path).ok()?;
    let at = bytes.windows(4).position(|w| w == b"data")? + 8;
    Some(
        bytes
            .get(at..)?
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    )
}

/// Per 20 ms frame of 8 kHz audio: louder than -40 dBFS RMS.
pub fn loud_frames(samples: &[i16]) -> Vec<bool> {
    samples
        .chunks(160)
        .map(|f| {
            let energy: f64 = f.iter().map(|s| (*s as f64 / 32768.0).powi(2)).sum();
            (energy / f.len() as f64).sqrt() > 0.01
        })
        .collect()
}

/// From the caller's side of the wire: for each caller utterance in `sent` (loud runs separated
/// by at least 600 ms of quiet), the time from its end to the next audio in `heard` (the agent's
/// reply), in ms. Both recordings share baresip's call timeline.
pub fn reply_latencies(sent: &[i16], heard: &[i16]) -> Vec<u64> {
    let said = loud_frames(sent);
    let got = loud_frames(heard);
    let mut ends = Vec::new();
    let mut last_loud: Option<usize> = None;
    for (i, l) in said.iter().enumerate() {
        if *l {
            last_loud = Some(i);
        } else if let Some(e) = last_loud
            && i - e == 30
        {
            ends.push(e + 1);
        }
    }
    ends.iter()
        .filter_map(|&end| {
            // An agent already talking when the caller stopped is not a reply to it.
            let talking = got
                .get(end.saturating_sub(5)..end)
                .is_some_and(|w| w.iter().any(|l| *l));
            if talking {
                return None;
            }
            let onset = got.iter().skip(end).position(|l| *l)?;
            Some(onset as u64 * 20)
        })
        .collect()
}
