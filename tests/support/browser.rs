//! Headless Debian Chromium through playwright-core (`tests/peers/browser.mjs`).

use std::path::Path;
use std::process::Command;

use super::{peer_path, program, repo_root};

/// What the page showed.
#[derive(Debug, serde::Deserialize)]
pub struct PageView {
    pub http: Option<u16>,
    pub title: String,
    /// Text of the element with id `status`, if any.
    pub status: Option<String>,
    pub text: String,
}

/// Loads `url` in headless Chromium, saves a screenshot, and returns what the page showed.
pub fn visit(url: &str, screenshot: &Path) -> PageView {
    program("chromium");
    peer_path("node/node_modules/playwright-core");
    let out = Command::new(program("node"))
        .arg(repo_root().join("tests/peers/browser.mjs"))
        .arg(url)
        .arg(screenshot)
        .output()
        .expect("run node browser.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("browser output {line:?}: {e}"))
}

/// A headless Chromium kept open and driven one command at a time (`tests/peers/console.mjs`):
/// for flows that need the test's own computation between steps (a TOTP code, a row inserted).
pub struct Driver {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Driver {
    pub fn launch() -> Driver {
        Self::launch_with(true)
    }

    /// A browser with JavaScript off (`javascript: false`).
    pub fn launch_with(javascript: bool) -> Driver {
        use std::process::Stdio;
        program("chromium");
        peer_path("node/node_modules/playwright-core");
        let mut child = Command::new(program("node"))
            .arg(repo_root().join("tests/peers/console.mjs"))
            .env("CONSOLE_NO_JS", if javascript { "0" } else { "1" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node console.mjs");
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("driver stdout"));
        Driver {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command; returns the answer, or the error text when the browser says it failed.
    pub fn try_cmd(&mut self, command: serde_json::Value) -> Result<serde_json::Value, String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{command}").expect("write to the browser driver");
        self.stdin.flush().expect("flush the browser driver");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the browser driver");
        let answer: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("browser driver said {line:?}: {e}"));
        if answer["ok"] == true {
            Ok(answer)
        } else {
            Err(answer["error"]
                .as_str()
                .unwrap_or("no error text")
                .to_string())
        }
    }

    /// Like [`Driver::try_cmd`], panicking on failure (with the command).
    pub fn cmd(&mut self, command: serde_json::Value) -> serde_json::Value {
        let shown = command.to_string();
        self.try_cmd(command)
            .unwrap_or_else(|e| panic!("browser command {shown} failed: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
