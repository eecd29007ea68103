//! oidc-provider (npm): a real OAuth2 authorization server for SMART backend services.

use std::process::Command;
use std::time::Duration;

use super::{ChildGuard, KeyPair, free_port, http_get, peer_path, program, repo_root};

pub struct OidcServer {
    pub issuer: String,
    pub token_url: String,
    pub client_id: String,
    pub client_key: KeyPair,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl OidcServer {
    /// Starts a server that trusts `client_id`'s fresh RS384 key and issues JWT access tokens for
    /// `audience`, valid `token_ttl_secs`.
    pub fn start(client_id: &str, audience: &str, token_ttl_secs: u32) -> OidcServer {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-oidc-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let key = super::rsa_key_pair(dir.path(), client_id);
        peer_path("node/node_modules/oidc-provider");
        let mut cmd = Command::new(program("node"));
        cmd.arg(repo_root().join("tests/peers/oidc.mjs"))
            .env("PORT", port.to_string())
            .env("CLIENT_ID", client_id)
            .env("CLIENT_PUB", &key.public_pem)
            .env("AUDIENCE", audience)
            .env("TOKEN_TTL", token_ttl_secs.to_string());
        let mut child = ChildGuard::spawn("oidc-provider", cmd, &dir.path().join("oidc.log"));
        let issuer = format!("http://127.0.0.1:{port}");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        child.wait_ready(Duration::from_secs(30), || {
            matches!(http_get(&discovery), Some((200, _)))
        });
        OidcServer {
            token_url: format!("{issuer}/token"),
            issuer,
            client_id: client_id.into(),
            client_key: key,
            _child: child,
            _dir: dir,
        }
    }
}
