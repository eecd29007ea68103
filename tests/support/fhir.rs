//! Real FHIR R4 servers: sekmet-fhir (PyPI; SQLite-backed, SMART backend-services auth) and
//! Medplum's FHIR engine (npm; in-memory). Real EMRs differ; testing against both catches that.

use std::process::Command;
use std::time::Duration;

use super::{
    ChildGuard, KeyPair, free_port, http_get, peer_path, program, render_template, repo_root,
};

pub struct FhirServer {
    /// Base URL of the FHIR API, e.g. `http://127.0.0.1:PORT/fhir`.
    pub base_url: String,
    /// Token endpoint when SMART auth is on.
    pub token_url: Option<String>,
    pub client_id: String,
    /// A client secret the server also accepts for the same client (sekmet only).
    pub client_secret: String,
    /// The client's key pair for private_key_jwt (sekmet with SMART only).
    pub client_key: Option<KeyPair>,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhirAuth {
    None,
    Smart,
}

impl FhirServer {
    /// sekmet-fhir with its simulator off.
    pub fn sekmet(auth: FhirAuth) -> FhirServer {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-sekmet-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let key = super::rsa_key_pair(dir.path(), "voice-agent");
        let secret = format!("secret-{port}");
        let settings = render_template(
            "sekmet.yaml",
            &[
                ("PORT", port.to_string()),
                ("DIR", dir.path().display().to_string()),
                (
                    "AUTH",
                    match auth {
                        FhirAuth::None => "none",
                        FhirAuth::Smart => "smart",
                    }
                    .into(),
                ),
                ("CLIENT_PUB", key.public_pem.display().to_string()),
                ("CLIENT_SECRET", secret.clone()),
            ],
        );
        let settings_path = dir.path().join("settings.yaml");
        std::fs::write(&settings_path, settings).unwrap();
        let mut cmd = Command::new(peer_path("venv/bin/sekmet"));
        cmd.arg("serve")
            .arg("-c")
            .arg(&settings_path)
            .current_dir(dir.path());
        let mut child = ChildGuard::spawn("sekmet-fhir", cmd, &dir.path().join("sekmet.log"));
        let base_url = format!("http://127.0.0.1:{port}/fhir");
        let metadata = format!("{base_url}/metadata");
        child.wait_ready(Duration::from_secs(60), || {
            matches!(http_get(&metadata), Some((200, _)))
        });
        FhirServer {
            token_url: (auth == FhirAuth::Smart)
                .then(|| format!("http://127.0.0.1:{port}/auth/token")),
            base_url,
            client_id: "voice-agent".into(),
            client_secret: secret,
            client_key: Some(key),
            _child: child,
            _dir: dir,
        }
    }

    /// Medplum's FHIR engine, no auth.
    pub fn medplum() -> FhirServer {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-medplum-")
            .tempdir()
            .unwrap();
        let port = free_port();
        // node resolves the script's imports from tests/peers/node_modules (linked by setup).
        peer_path("node/node_modules/@medplum/fhir-router");
        let mut cmd = Command::new(program("node"));
        cmd.arg(repo_root().join("tests/peers/medplum.mjs"))
            .env("PORT", port.to_string());
        let mut child = ChildGuard::spawn("medplum", cmd, &dir.path().join("medplum.log"));
        let base_url = format!("http://127.0.0.1:{port}/fhir/R4");
        let probe = format!("{base_url}/Patient?_count=1");
        child.wait_ready(Duration::from_secs(60), || {
            matches!(http_get(&probe), Some((200, _)))
        });
        FhirServer {
            base_url,
            token_url: None,
            client_id: String::new(),
            client_secret: String::new(),
            client_key: None,
            _child: child,
            _dir: dir,
        }
    }
}
