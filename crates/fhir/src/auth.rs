//! SMART backend services (client_credentials with a private_key_jwt assertion, RS384 or ES384),
//! or a static bearer token. Tokens are cached until shortly before they expire, and refreshed
//! once when the server answers 401. Tokens are never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderValue;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::Mutex;

use crate::FhirError;

/// How requests to the FHIR server are authorized.
#[derive(Clone)]
pub enum Auth {
    /// A local test server.
    None,
    /// A static bearer token.
    Bearer(String),
    Smart(SmartConfig),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Bearer(_) => f.write_str("Auth::Bearer(<redacted>)"),
            Auth::Smart(s) => f
                .debug_struct("Auth::Smart")
                .field("token_url", &s.token_url)
                .field("client_id", &s.client_id)
                .field("alg", &s.alg)
                .finish(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlg {
    Rs384,
    Es384,
}

impl JwtAlg {
    fn name(self) -> &'static str {
        match self {
            JwtAlg::Rs384 => "RS384",
            JwtAlg::Es384 => "ES384",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmartConfig {
    pub token_url: String,
    pub client_id: String,
    /// PKCS#8 PEM private key (RSA for RS384, P-384 for ES384).
    pub private_key: PathBuf,
    pub alg: JwtAlg,
    /// Key id put in the assertion header, when the server's JWKS needs it.
    pub kid: Option<String>,
    pub scope: String,
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct CachedToken {
    header: HeaderValue,
    refresh_after: Instant,
}

/// Fetches and caches access tokens.
pub struct TokenSource {
    auth: Auth,
    key: Option<SigningKey>,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
    rng: SystemRandom,
}

fn load_key(path: &Path, alg: JwtAlg) -> Result<SigningKey, FhirError> {
    let bad = |why: String| FhirError::Auth(format!("private key {}: {why}", path.display()));
    let der = PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|e| bad(format!("cannot read a PKCS#8 PEM key: {e}")))?;
    match alg {
        JwtAlg::Rs384 => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map(SigningKey::Rsa)
            .map_err(|e| bad(format!("not an RSA key usable for RS384: {e}"))),
        JwtAlg::Es384 => EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map(SigningKey::Ec)
        .map_err(|e| bad(format!("not a P-384 key usable for ES384: {e}"))),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn new(auth: Auth, http: reqwest::Client) -> Result<Arc<TokenSource>, FhirError> {
        let key = match &auth {
            Auth::Smart(s) => Some(load_key(&s.private_key, s.alg)?),
            _ => None,
        };
        Ok(Arc::new(TokenSource {
            auth,
            key,
            http,
            cached: Mutex::new(None),
            rng: SystemRandom::new(),
        }))
    }

    /// The Authorization header to send now, if any: the cached token, or a fresh one when it is
    /// missing, near expiry, or `force_refresh` (after a 401).
    pub async fn header(&self, force_refresh: bool) -> Result<Option<HeaderValue>, FhirError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Bearer(token) => bearer(token).map(Some),
            Auth::Smart(smart) => {
                let mut cached = self.cached.lock().await;
                if !force_refresh
                    && let Some(token) = cached.as_ref()
                    && Instant::now() < token.refresh_after
                {
                    return Ok(Some(token.header.clone()));
                }
                let fresh = self.fetch(smart).await?;
                let header = fresh.header.clone();
                *cached = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    /// The client assertion (a signed JWT) for `smart`.
    pub fn assertion(&self, smart: &SmartConfig) -> Result<String, FhirError> {
        let now = unix_now();
        let mut header = serde_json::json!({"alg": smart.alg.name(), "typ": "JWT"});
        if let Some(kid) = &smart.kid {
            header["kid"] = kid.clone().into();
        }
        // Servers allow at most 5 minutes of validity.
        let claims = serde_json::json!({
            "iss": smart.client_id,
            "sub": smart.client_id,
            "aud": smart.token_url,
            "iat": now,
            "exp": now + 240,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match self.key.as_ref() {
            Some(SigningKey::Rsa(key)) => {
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA384,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| FhirError::Auth("RS384 signing failed".into()))?;
                sig
            }
            Some(SigningKey::Ec(key)) => key
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| FhirError::Auth("ES384 signing failed".into()))?
                .as_ref()
                .to_vec(),
            None => return Err(FhirError::Auth("no signing key".into())),
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    async fn fetch(&self, smart: &SmartConfig) -> Result<CachedToken, FhirError> {
        let assertion = self.assertion(smart)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", smart.scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let started = Instant::now();
        let response = self
            .http
            .post(&smart.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| FhirError::Auth(format!("token endpoint unreachable: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // The error body of a token endpoint names the problem and never holds a token.
            let detail: String = text.chars().take(300).collect();
            return Err(FhirError::Auth(format!(
                "token endpoint answered {status}: {detail}"
            )));
        }
        let token: TokenResponse = serde_json::from_str(&text)
            .map_err(|e| FhirError::Auth(format!("token response not understood: {e}")))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
        // Refresh a minute early (or at half-life for short tokens).
        let margin = Duration::from_secs(60).min(lifetime / 2);
        tracing::info!(
            expires_in_secs = lifetime.as_secs(),
            "FHIR access token obtained"
        );
        Ok(CachedToken {
            header: bearer(&token.access_token)?,
            refresh_after: started + lifetime - margin,
        })
    }
}

fn bearer(token: &str) -> Result<HeaderValue, FhirError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| FhirError::Auth("access token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// application/x-www-form-urlencoded encoding of one value.
pub(crate) fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
