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
