//! HTTPS for the console: rustls (ring), TLS 1.2 and 1.3 only. The certificate is the configured
//! one, or a self-signed one made at first start in the data dir (the embedded default); its
//! SHA-256 fingerprint is logged so that staff can check what their browser is shown.
//!
//! [`TlsListener`] hands axum finished TLS connections: handshakes run in their own tasks with a
//! timeout, so one slow client cannot hold up the accept loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use super::ConsoleError;
use crate::config::ConsoleConfig;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in flight at once.
const MAX_HANDSHAKES: usize = 256;

/// The acceptor plus what to tell people about the certificate.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the leaf certificate (DER), as `AB:CD:...`.
    pub fingerprint: String,
    /// Where the certificate came from (a configured file, or the self-signed one made here).
    pub cert_path: PathBuf,
    pub self_signed: bool,
}

/// `AB:CD:...` hex of SHA-256 over `der`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Loads the configured certificate, or makes (once) and loads the self-signed default.
pub fn load(config: &ConsoleConfig, data_dir: &Path) -> Result<Tls, ConsoleError> {
    let (cert_path, key_path, self_signed) = if config.tls_cert.as_os_str().is_empty() {
        let dir = data_dir.join("console-tls");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        if !cert.is_file() || !key.is_file() {
            make_self_signed(&dir, &cert, &key, config)?;
        }
        (cert, key, true)
    } else {
        (config.tls_cert.clone(), config.tls_key.clone(), false)
    };
    let bad = |key: &str, path: &Path, reason: String| ConsoleError::Tls {
        key: key.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| bad("console.tls_cert", &cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("console.tls_cert", &cert_path, e.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Err(bad(
            "console.tls_cert",
            &cert_path,
            "no certificate in the file".into(),
        ));
    };
    let fingerprint = fingerprint(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| bad("console.tls_key", &key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("console.tls_cert", &cert_path, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("console.tls_key", &key_path, e.to_string()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        fingerprint,
        cert_path,
        self_signed,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A self-signed certificate for `localhost`, the loopback addresses and the bind address; the key
/// file is written 0600.
fn make_self_signed(
    dir: &Path,
    cert: &Path,
    key: &Path,
    config: &ConsoleConfig,
) -> Result<(), ConsoleError> {
    let fail = |reason: String| ConsoleError::Tls {
        key: "console.tls_cert".into(),
        path: cert.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create the directory: {e}")))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !config.bind.is_unspecified() && !config.bind.is_loopback() {
        names.push(config.bind.to_string());
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| fail(format!("cannot make a self-signed certificate: {e}")))?;
    write_private(key, &pem("PRIVATE KEY", &made.signing_key.serialize_der()))
        .map_err(|e| fail(format!("cannot write {}: {e}", key.display())))?;
    std::fs::write(cert, pem("CERTIFICATE", made.cert.der().as_ref()))
        .map_err(|e| fail(format!("cannot write: {e}")))?;
    tracing::info!(path = %cert.display(), "made a self-signed console certificate");
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// Accepts TCP connections and hands out the ones whose TLS handshake finished.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "console accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "console TLS handshake failed"),
                        Err(_) => tracing::debug!("console TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task is gone (only at shutdown): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
