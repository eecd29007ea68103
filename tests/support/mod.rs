//! Real test peers, one line each: every peer starts on free loopback ports, is waited on until it
//! answers, and is torn down when its guard drops (also when the test panics).
//!
//! Peers are installed by `scripts/setup` (apt packages, a Python venv and npm packages under
//! `$CAREVOICE_CACHE/peers`). A missing peer fails the test with the command that installs it.
#![allow(dead_code)]

pub mod browser;
pub mod carevoice;
pub mod clinic;
pub mod fhir;
pub mod oidc;
pub mod patient;
pub mod phone;
pub mod postgres;
pub mod sip;

use std::fs::File;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// carevoice's cache dir, as `scripts/setup` and `config::cache_dir` compute it.
pub fn cache_dir() -> PathBuf {
    ::carevoice::config::cache_dir()
}

/// A file from the peers installed by `scripts/setup`; panics with the fix when it is missing.
pub fn peer_path(relative: &str) -> PathBuf {
    let path = cache_dir().join("peers").join(relative);
    assert!(
        path.exists(),
        "test peer {} is not installed; run scripts/setup",
        path.display()
    );
    path
}

/// A system program; panics with the fix when it is missing.
pub fn program(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
    ]) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not installed; run scripts/setup");
}

/// Ports already handed out in this test process: parallel tests must not get the same one
/// while its peer is still starting up.
fn handed_out() -> std::sync::MutexGuard<'static, std::collections::HashSet<u16>> {
    static PORTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<u16>>> =
        std::sync::OnceLock::new();
    PORTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A loopback port that was free a moment ago (TCP and UDP both), never one handed out before
/// in this process.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && handed_out().insert(port) {
            return port;
        }
    }
}

/// `n` consecutive free ports (for peers that take a base port and use the next ones too).
pub fn free_port_range(n: u16) -> u16 {
    'search: loop {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        for p in base..base + n {
            if TcpListener::bind(("127.0.0.1", p)).is_err()
                || UdpSocket::bind(("127.0.0.1", p)).is_err()
                || (p != base && handed_out().contains(&p))
            {
                continue 'search;
            }
        }
        handed_out().extend(base..base + n);
        return base;
    }
}

/// A child process in its own process group; the whole group is killed on drop.
pub struct ChildGuard {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        use std::os::unix::process::CommandExt;
        let out = File::create(log).expect("create peer log");
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has exited.
    pub fn try_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends a signal to the process group.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([
                format!("-{signal}"),
                "--".into(),
                format!("-{}", self.pid()),
            ])
            .stderr(Stdio::null())
            .status();
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Polls `ready` until it returns true; panics with the log tail if the process exits first
    /// or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.try_exited() {
                panic!(
                    "{} exited before it was ready ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready after {timeout:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_exited().is_some() {
            return;
        }
        self.signal("TERM");
        if self.wait_exit(Duration::from_secs(3)).is_none() {
            self.signal("KILL");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last 40 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub fn tcp_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A blocking HTTP client for readiness checks and smoke tests (loopback only).
pub fn http() -> reqwest::blocking::Client {
    // reqwest is built without a default TLS provider (the project uses ring everywhere).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("http client")
}

/// An async HTTP client (loopback only), with the project's TLS provider installed.
pub fn async_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

/// GET returning (status, body), or None when nothing answers yet.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let resp = http().get(url).send().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().unwrap_or_default()))
}

/// Runs a command to completion, panicking with its output when it fails.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// An RSA key pair in PEM files (for SMART backend-services clients, TLS).
pub struct KeyPair {
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
}

pub fn rsa_key_pair(dir: &Path, name: &str) -> KeyPair {
    let private_pem = dir.join(format!("{name}.key.pem"));
    let public_pem = dir.join(format!("{name}.pub.pem"));
    run_ok(
        "openssl genpkey",
        Command::new(program("openssl"))
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&private_pem),
    );
    run_ok(
        "openssl pkey -pubout",
        Command::new(program("openssl"))
            .args(["pkey", "-pubout", "-in"])
            .arg(&private_pem)
            .arg("-out")
            .arg(&public_pem),
    );
    KeyPair {
        private_pem,
        public_pem,
    }
}

/// A self-signed TLS certificate for 127.0.0.1 / localhost: (cert.pem, key.pem).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run_ok(
        "openssl req -x509",
        Command::new(program("openssl"))
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

/// Speech for a caller: espeak-ng, resampled by sox to `rate` Hz 16-bit mono, padded with
/// `pad_secs` of trailing silence.
pub fn speak_wav(text: &str, rate: u32, pad_secs: f32, out: &Path) {
    let raw = out.with_extension("espeak.wav");
    run_ok(
        "espeak-ng",
        Command::new(program("espeak-ng"))
            .args(["-v", "en-us", "-w"])
            .arg(&raw)
            .arg(text),
    );
    run_ok(
        "sox",
        Command::new(program("sox"))
            .arg(&raw)
            .args([
                "-r",
                &rate.to_string(),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
            ])
            .arg(out)
            .args(["pad", "0", &pad_secs.to_string()]),
    );
    let _ = std::fs::remove_file(raw);
}

/// Peak amplitude (0.0-1.0) of a WAV file, measured by sox.
pub fn wav_peak(path: &Path) -> f32 {
    let out = Command::new(program("sox"))
        .arg(path)
        .args(["-n", "stat"])
        .output()
        .expect("sox stat");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("Maximum amplitude"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Fills `template` (a file under tests/peers) replacing each `{{KEY}}`.
pub fn render_template(template: &str, vars: &[(&str, String)]) -> String {
    let path = repo_root().join("tests/peers").join(template);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    assert!(
        !text.contains("{{"),
        "{template}: unfilled placeholder in\n{text}"
    );
    text
}
