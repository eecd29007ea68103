//! carevoice's FHIR R4 scheduling client, on `fhir-sdk` (R4B models, which R4 servers accept).
//!
//! Strict in what it sends (resources built from fhir-sdk's typed models, conditional updates with
//! If-Match), tolerant in what it reads (unknown elements and extensions are ignored; names of
//! referenced practitioners/locations come from `_include` when the server supports it and from
//! reads otherwise). Results are plain data; the main crate wraps what is about a patient as PHI.
//!
//! Logging: fhir-sdk logs request URLs (which carry search parameters such as names and birth
//! dates) at info level; carevoice's telemetry turns its target off. Nothing here logs resource
//! content or tokens.

pub mod auth;
mod ops;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fhir_sdk::client::{Client, RequestSettings};
use fhir_sdk::version::FhirR4B;
use reqwest::header::AUTHORIZATION;

pub use auth::{Auth, JwtAlg, SmartConfig};
pub use ops::*;

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error("FHIR configuration: {0}")]
    Config(String),
    #[error("FHIR authentication: {0}")]
    Auth(String),
    #[error("FHIR request timed out")]
    Timeout,
    #[error("FHIR transport: {0}")]
    Transport(String),
    #[error("FHIR server answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("FHIR answer not understood: {0}")]
    Malformed(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A conditional update lost a race (409/412).
    #[error("version conflict on {0}")]
    Conflict(String),
}

impl FhirError {
    /// Worth retrying (reads only): transport trouble, timeouts, 5xx.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FhirError::Timeout | FhirError::Transport(_) | FhirError::Status { status: 500.., .. }
        )
    }
}

impl From<fhir_sdk::client::Error> for FhirError {
    fn from(e: fhir_sdk::client::Error) -> Self {
        use fhir_sdk::client::Error as E;
        match e {
            E::Request(e) if e.is_timeout() => FhirError::Timeout,
            E::Request(e) if e.is_decode() => FhirError::Malformed(e.to_string()),
            E::Request(e) => FhirError::Transport(e.without_url().to_string()),
            E::Json(e) => FhirError::Malformed(e.to_string()),
            E::Response(status, body) => FhirError::Status {
                status: status.as_u16(),
                message: body.chars().take(300).collect(),
            },
            E::OperationOutcomeR4B(status, outcome) => FhirError::Status {
                status: status.as_u16(),
                message: outcome
                    .issue
                    .iter()
                    .flatten()
                    .filter_map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            E::AuthCallback(why) => FhirError::Auth(why),
            other => FhirError::Transport(other.to_string()),
        }
    }
}

/// Where the FHIR server is and how to reach it.
#[derive(Debug, Clone)]
pub struct FhirConfig {
    pub base_url: String,
    pub auth: Auth,
    /// Per request.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) to trust, for a clinic's internal CA.
    pub ca_bundle: Option<PathBuf>,
}

/// A connected client. Cheap to clone.
#[derive(Clone)]
pub struct FhirClient {
    pub(crate) fhir: Client<FhirR4B>,
    pub(crate) tokens: Arc<auth::TokenSource>,
    pub(crate) base_url: String,
}

impl FhirClient {
    pub fn new(config: &FhirConfig) -> Result<FhirClient, FhirError> {
        // One TLS provider for the whole process (ring); a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        if let Some(path) = &config.ca_bundle {
            let pem = std::fs::read(path)
                .map_err(|e| FhirError::Config(format!("CA bundle {}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FhirError::Config(format!("CA bundle {}: {e}", path.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| FhirError::Config(format!("HTTP client: {e}")))?;
        let base = config.base_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| FhirError::Config(format!("base URL {base:?}: {e}")))?;
        let tokens = auth::TokenSource::new(config.auth.clone(), http.clone())?;
        // fhir-sdk sends the FHIR requests; the token endpoint is called with the same client.
        let login_tokens = tokens.clone();
        let fhir = Client::<FhirR4B>::builder()
            .base_url(url)
            .client(http)
            // Retries here cover connection failures only; the caller decides about the rest.
            .request_settings(
                RequestSettings::default()
                    .retries(1)
                    .fixed_retry(Duration::from_millis(100))
                    .timeout(Some(config.timeout)),
            )
            .auth_callback(move |_client: reqwest::Client| {
                let tokens = login_tokens.clone();
                async move {
                    match tokens.header(true).await {
                        Ok(Some(value)) => Ok(value),
                        Ok(None) => Err(FhirError::Auth(
                            "server wants a token; none configured".into(),
                        )),
                        Err(e) => Err(e),
                    }
                }
            })
            .build()
            .map_err(|e| FhirError::Config(e.to_string()))?;
        Ok(FhirClient {
            fhir,
            tokens,
            base_url: base,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Makes sure a fresh token is attached before a request (refreshes near expiry).
    pub(crate) async fn authorize(&self) -> Result<(), FhirError> {
        if let Some(header) = self.tokens.header(false).await? {
            self.fhir
                .patch_request_settings(move |s| s.header(AUTHORIZATION, header));
        }
        Ok(())
    }

    /// A raw GET relative to the base URL, through the same auth and retry machinery, returning
    /// parsed JSON (for resources and endpoints where tolerance matters more than types).
    pub(crate) async fn get_json(&self, path: &str) -> Result<serde_json::Value, FhirError> {
        self.authorize().await?;
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let response = self
            .fhir
            .send_custom_request(|http| {
                http.get(url)
                    .header("accept", "application/fhir+json, application/json")
            })
            .await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| FhirError::Transport(e.without_url().to_string()))?;
        if status.as_u16() == 404 {
            return Err(FhirError::NotFound(
                path.split('?').next().unwrap_or(path).into(),
            ));
        }
        if !status.is_success() {
            return Err(FhirError::Status {
                status: status.as_u16(),
                message: text.chars().take(300).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|e| FhirError::Malformed(e.to_string()))
    }
}
