//! SIP peers: Kamailio (proxy), sipp (scripted UAC/UAS with RTP), baresip and pjsua2 (softphones
//! that play a WAV and record what they hear).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, free_port, free_port_range, program, render_template, tcp_open};

/// Kamailio relaying every new request to `forward`.
pub struct Kamailio {
    pub port: u16,
    pub tls_port: u16,
    /// Its TLS certificate (self-signed, for 127.0.0.1): the CA a verifying client trusts.
    pub cert: PathBuf,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    pub fn start(forward: SocketAddr) -> Kamailio {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-kamailio-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let tls_port = free_port();
        let (cert, key) = super::self_signed_cert(dir.path());
        let tls_cfg = dir.path().join("tls.cfg");
        std::fs::write(
            &tls_cfg,
            render_template(
                "kamailio-tls.cfg",
                &[
                    ("CERT", cert.display().to_string()),
                    ("KEY", key.display().to_string()),
                ],
            ),
        )
        .unwrap();
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(
            &cfg,
            render_template(
                "kamailio.cfg",
                &[
                    ("PORT", port.to_string()),
                    ("TLS_PORT", tls_port.to_string()),
                    ("TLS_CFG", tls_cfg.display().to_string()),
                    ("FORWARD", forward.to_string()),
                ],
            ),
        )
        .unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut cmd = Command::new(program("kamailio"));
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-P"])
            .arg(run_dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&run_dir);
        let mut child = ChildGuard::spawn("kamailio", cmd, &dir.path().join("kamailio.log"));
        child.wait_ready(Duration::from_secs(20), || {
            tcp_open(port) && tcp_open(tls_port)
        });
        Kamailio {
            port,
            tls_port,
            cert,
            _child: child,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// sipp's built-in UAS, echoing RTP back to the caller.
pub struct SippUas {
    pub port: u16,
    pub media_port: u16,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl SippUas {
    pub fn start() -> SippUas {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-sipp-uas-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let media_port = free_port_range(4);
        let mut cmd = Command::new(program("sipp"));
        cmd.args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-rtp_echo", "-nostdin"])
            .current_dir(dir.path());
        let mut child = ChildGuard::spawn("sipp uas", cmd, &dir.path().join("sipp-uas.log"));
        // sipp binds its UDP port at once; give it a moment and make sure it did not exit.
        child.wait_ready(Duration::from_secs(10), || {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        });
        SippUas {
            port,
            media_port,
            child,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log_tail(&self) -> String {
        self.child.log_tail()
    }
}

/// Outcome of a sipp UAC run.
pub struct SippRun {
    pub success: bool,
    pub output: String,
}

/// Runs sipp as UAC: `scenario` is a built-in name (`uac`) or a scenario file; `transport` is
/// `u1` (UDP) or `t1` (TCP); `calls` calls at `rate` per second, at most `timeout` in all.
pub fn sipp_uac(
    target: SocketAddr,
    scenario: &str,
    transport: &str,
    calls: u32,
    rate: u32,
    timeout: Duration,
    work_dir: &Path,
) -> SippRun {
    let port = free_port();
    let mut cmd = Command::new(program("sipp"));
    if Path::new(scenario).is_file() {
        cmd.arg("-sf").arg(scenario);
    } else {
        cmd.args(["-sn", scenario]);
    }
    let media_port = free_port_range(4);
    cmd.args(["-t", transport, "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args([
            "-nostdin",
            "-timeout",
            &format!("{}s", timeout.as_secs().max(1)),
        ])
        .arg("-timeout_error")
        .arg(target.to_string())
        .current_dir(work_dir);
    let out = cmd.output().expect("run sipp");
    SippRun {
        success: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// What a baresip call left behind.
pub struct BaresipCall {
    pub output: String,
    /// WAV files of what baresip heard (decoded audio from the far end).
    pub heard: Vec<PathBuf>,
}

/// A baresip configuration in `dir`: `wav` as the microphone, what it hears recorded into the
/// returned folder. `srtp` makes media encryption mandatory (SDES).
pub struct BaresipConfig {
    pub conf_dir: PathBuf,
    pub heard_dir: PathBuf,
}

/// [`baresip_config_with`] offering PCMU only.
pub fn baresip_config(wav: &Path, srtp: bool, dir: &Path) -> BaresipConfig {
    baresip_config_with(wav, srtp, "PCMU", dir)
}

/// A baresip configuration whose offer holds `codecs` only (baresip's `audio_codecs`, e.g.
/// `PCMU` or `opus/48000/2`).
pub fn baresip_config_with(wav: &Path, srtp: bool, codecs: &str, dir: &Path) -> BaresipConfig {
    let conf_dir = dir.join("baresip");
    let snd = dir.join("heard");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&snd).unwrap();
    let (cert, key) = super::self_signed_cert(dir);
    // baresip wants certificate and key in one PEM.
    let tls_pem = dir.join("baresip-tls.pem");
    std::fs::write(
        &tls_pem,
        [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat(),
    )
    .unwrap();
    // baresip listens for TLS on the SIP port + 1.
    let sip_port = free_port_range(2);
    let rtp = free_port_range(10);
    std::fs::write(
        conf_dir.join("config"),
        render_template(
            "baresip.conf",
            &[
                ("SIP_PORT", sip_port.to_string()),
                ("TLS_PEM", tls_pem.display().to_string()),
                ("CA_PEM", cert.display().to_string()),
                ("WAV", wav.display().to_string()),
                ("SND_PATH", snd.display().to_string()),
                ("RTP_MIN", rtp.to_string()),
                ("RTP_MAX", (rtp + 9).to_string()),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        conf_dir.join("accounts"),
        format!(
            "<sip:caller@127.0.0.1:{sip_port}>;regint=0;audio_codecs={codecs}{}\n",
            if srtp { ";mediaenc=srtp-mand" } else { "" }
        ),
    )
    .unwrap();
    BaresipConfig {
        conf_dir,
        heard_dir: snd,
    }
}

/// The WAV files of what baresip heard (decoded audio from the far end), in `dir`.
pub fn heard_files(dir: &Path) -> Vec<PathBuf> {
    let mut heard: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
                .collect()
        })
        .unwrap_or_default();
    heard.sort();
    heard
}

/// baresip dials `uri`, plays `wav` (16-bit mono at 8 kHz for PCMU) as its microphone, records
/// what it hears, and quits after `seconds`. `srtp` makes media encryption mandatory (SDES).
pub fn baresip_call(uri: &str, wav: &Path, seconds: u32, srtp: bool, dir: &Path) -> BaresipCall {
    baresip_call_with(uri, wav, seconds, srtp, "PCMU", dir)
}

/// [`baresip_call`] offering `codecs` only (baresip's names with rate and channels where they
/// are not 8000/1: `opus/48000/2`, with `wav` at 48 kHz stereo).
pub fn baresip_call_with(
    uri: &str,
    wav: &Path,
    seconds: u32,
    srtp: bool,
    codecs: &str,
    dir: &Path,
) -> BaresipCall {
    let BaresipConfig {
        conf_dir,
        heard_dir,
    } = baresip_config_with(wav, srtp, codecs, dir);
    let out = Command::new(program("baresip"))
        .arg("-f")
        .arg(&conf_dir)
        .args(["-t", &seconds.to_string(), "-e", &format!("/dial {uri}")])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run baresip");
    let heard = heard_files(&heard_dir);
    BaresipCall {
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        heard,
    }
}

/// sipp running a UAS scenario file for one call (`-m 1`): it exits 0 once the scenario
/// completed, non-zero on an error or after `timeout`.
pub struct SippScenarioUas {
    pub port: u16,
    child: ChildGuard,
}

impl SippScenarioUas {
    pub fn start(scenario: &Path, timeout: Duration, dir: &Path) -> SippScenarioUas {
        Self::start_with(scenario, timeout, dir, &[])
    }

    /// [`SippScenarioUas::start`] with more sipp arguments (`-rtp_echo` ...).
    pub fn start_with(
        scenario: &Path,
        timeout: Duration,
        dir: &Path,
        extra: &[&str],
    ) -> SippScenarioUas {
        let port = free_port();
        let media_port = free_port_range(4);
        let mut cmd = Command::new(program("sipp"));
        cmd.arg("-sf")
            .arg(scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout_error"])
            .args(["-timeout", &format!("{}s", timeout.as_secs().max(1))])
            .args(extra)
            .current_dir(dir);
        let mut child = ChildGuard::spawn("sipp uas scenario", cmd, &dir.join("sipp-staff.log"));
        child.wait_ready(Duration::from_secs(10), || {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        });
        SippScenarioUas { port, child }
    }

    /// Waits for sipp to finish: Some(true) when the scenario passed.
    pub fn wait(&mut self, timeout: Duration) -> Option<bool> {
        self.child.wait_exit(timeout).map(|s| s.success())
    }

    pub fn log_tail(&self) -> String {
        self.child.log_tail()
    }
}

/// Kamailio as a registrar with digest auth (`algorithm`: "MD5" or "SHA-256", qop=auth) for one
/// user, routing calls for registered users to their Contact.
pub struct KamailioRegistrar {
    pub port: u16,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl KamailioRegistrar {
    pub fn start(user: &str, password: &str, algorithm: &str) -> KamailioRegistrar {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-kamailio-reg-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(
            &cfg,
            render_template(
                "kamailio-registrar.cfg",
                &[
                    ("PORT", port.to_string()),
                    ("USER", user.to_string()),
                    ("PASSWORD", password.to_string()),
                    ("ALGORITHM", algorithm.to_string()),
                ],
            ),
        )
        .unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut cmd = Command::new(program("kamailio"));
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-P"])
            .arg(run_dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&run_dir);
        let mut child = ChildGuard::spawn("kamailio", cmd, &dir.path().join("kamailio.log"));
        child.wait_ready(Duration::from_secs(20), || tcp_open(port));
        KamailioRegistrar {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Everything Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.child.log).unwrap_or_default()
    }
}

/// What a pjsua2 call left behind.
pub struct PjsuaCall {
    pub output: String,
    /// The last SIP status pjsua saw (200 for an answered call that ended normally).
    pub code: Option<u16>,
    /// What pjsua heard (its recorder's WAV), when media came up.
    pub heard: Option<PathBuf>,
}

/// How pjsua2 calls: over TLS verifying the server against `ca` (else UDP), SRTP mandatory.
#[derive(Clone, Copy)]
pub struct PjsuaOptions<'a> {
    pub tls_ca: Option<&'a Path>,
    pub srtp: bool,
}

/// pjsua2 (the venv's `pjsua2-python`, `tests/peers/pjsua_call.py`) dials `uri`, plays `wav`
/// (16-bit mono, 16 kHz suits its conference bridge) into the call, records what it hears and
/// hangs up after `seconds`.
pub fn pjsua_call(
    uri: &str,
    wav: &Path,
    seconds: u32,
    options: PjsuaOptions<'_>,
    dir: &Path,
) -> PjsuaCall {
    let heard = dir.join("pjsua-heard.wav");
    let mut cmd = Command::new(super::peer_path("venv/bin/python"));
    cmd.arg(super::repo_root().join("tests/peers/pjsua_call.py"))
        .arg(uri)
        .arg(wav)
        .arg(&heard)
        .arg(free_port().to_string())
        .arg(free_port_range(8).to_string())
        .arg(seconds.to_string())
        .current_dir(dir);
    if let Some(ca) = options.tls_ca {
        cmd.arg("--tls").arg(ca);
    }
    if options.srtp {
        cmd.arg("--srtp");
    }
    let out = cmd.output().expect("run pjsua2");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("CODE "))
        .and_then(|c| c.trim().parse().ok());
    PjsuaCall {
        code,
        heard: heard.is_file().then_some(heard),
        output,
    }
}
