//! The carevoice binary itself, started as a user would (`carevoice serve`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, free_port, http_get};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_carevoice"))
}

/// `carevoice ARGS` with a clean CAREVOICE_* environment, run to completion.
pub fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = command(cwd, env);
    cmd.args(args);
    cmd.output().expect("run carevoice")
}

fn command(cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("CAREVOICE_") && key != "CAREVOICE_CACHE" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(cwd).envs(env.iter().copied());
    cmd
}

/// A running `carevoice serve` with its data in a temp dir.
pub struct Server {
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub child: ChildGuard,
}

impl Server {
    /// Starts the server with `extra_config` appended to a config that sets the data dir and a
    /// free admin port; waits for `/healthz`.
    pub fn start(extra_config: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-serve-")
            .tempdir()
            .unwrap();
        let admin_port = free_port();
        let config = format!(
            "[server]\ndata_dir = \"{}\"\n\n[admin]\nport = {admin_port}\n\n{extra_config}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("carevoice.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = command(dir.path(), &[]);
        cmd.arg("--config").arg(&config_path).arg("serve");
        let mut child = ChildGuard::spawn("carevoice serve", cmd, &dir.path().join("serve.log"));
        let health = format!("http://127.0.0.1:{admin_port}/healthz");
        child.wait_ready(Duration::from_secs(30), || {
            matches!(http_get(&health), Some((200, _)))
        });
        Server {
            admin_port,
            dir,
            child,
        }
    }

    /// Stops the server and starts it again on the same data dir and config (same ports).
    pub fn restart(self) -> Server {
        let Server {
            admin_port,
            dir,
            child,
        } = self;
        drop(child);
        let config_path = dir.path().join("carevoice.toml");
        let mut cmd = command(dir.path(), &[]);
        cmd.arg("--config").arg(&config_path).arg("serve");
        let mut child = ChildGuard::spawn("carevoice serve", cmd, &dir.path().join("serve.log"));
        let health = format!("http://127.0.0.1:{admin_port}/healthz");
        child.wait_ready(Duration::from_secs(30), || {
            matches!(http_get(&health), Some((200, _)))
        });
        Server {
            admin_port,
            dir,
            child,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("carevoice.toml")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }
}
