//! SIP digest authentication as a client (RFC 3261 22.4, RFC 7616 hashing, RFC 8760 algorithms):
//! parse a `WWW-Authenticate` / `Proxy-Authenticate` challenge and build the matching
//! `Authorization` value. MD5 and SHA-256, with `qop=auth` (nc, cnonce) or without qop.
//!
//! Hashes come from RustCrypto (`md-5`, `sha2`): well kept, no C.

use std::fmt::Write as _;

/// Errors of digest authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("challenge is not a Digest challenge")]
    NotDigest,
    #[error("challenge lacks {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0:?} (supported: MD5, SHA-256)")]
    Algorithm(String),
    #[error("challenge offers qop {0:?} but not \"auth\"")]
    Qop(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lowercase hex of the hash of `data`.
    fn hex(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => {
                use md5::Digest as _;
                md5::Md5::digest(data.as_bytes()).to_vec()
            }
            Algorithm::Sha256 => {
                use sha2::Digest as _;
                sha2::Sha256::digest(data.as_bytes()).to_vec()
            }
        };
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// One parsed Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth`.
    pub qop_auth: bool,
    /// The nonce was stale (our credentials were right): retry at once with the new one.
    pub stale: bool,
}

/// `key=value, key="quoted, value"` parameters of an auth header.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            value = v;
            rest = q[end..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

impl Challenge {
    /// Parses a `WWW-Authenticate` / `Proxy-Authenticate` value.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let value = value.trim();
        let (scheme, params) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest);
        }
        let params = auth_params(params);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(a) => return Err(DigestError::Algorithm(a)),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|v| v.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(DigestError::Qop(q));
                }
            }
        };
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Missing("realm"))?,
            nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The strongest challenge we support among several (RFC 8760 3: a server may offer
    /// SHA-256 and MD5 side by side; prefer SHA-256).
    pub fn best<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Challenge, DigestError> {
        let mut best: Option<Challenge> = None;
        let mut first_err = None;
        for v in values {
            match Challenge::parse(v) {
                Ok(c) => {
                    if best.as_ref().is_none_or(|b| {
                        b.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256
                    }) {
                        best = Some(c);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        best.ok_or(first_err.unwrap_or(DigestError::NotDigest))
    }

    /// The `Authorization` (or `Proxy-Authorization`) value for `method` on `uri`. `nc` counts
    /// the requests sent with this nonce (from 1); `cnonce` is our random nonce.
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let ha1 = alg.hex(&format!("{username}:{}:{password}", self.realm));
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hex(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
            q(username),
            q(&self.realm),
            q(&self.nonce),
            q(uri),
            alg.name()
        );
        if self.qop_auth {
            let _ = write!(out, ", qop=auth, nc={nc}, cnonce=\"{}\"", q(cnonce));
        }
        if let Some(o) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", q(o));
        }
        out
    }
}

/// Credentials a peer sent in `Authorization` (we are the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `nc` and `cnonce` when `qop=auth` was used.
    pub qop_auth: Option<(String, String)>,
}

impl Credentials {
    pub fn parse(value: &str) -> Option<Credentials> {
        let value = value.trim();
        let (scheme, params) = value.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let params = auth_params(params);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(_) => return None,
        };
        let qop_auth = match get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((get("nc")?, get("cnonce")?)),
            Some(_) => return None,
        };
        Some(Credentials {
            username: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?,
            algorithm,
            qop_auth,
        })
    }

    /// Whether `response` is right for `password` and `method` (compared in constant time).
    pub fn check(&self, password: &str, method: &str) -> bool {
        let alg = self.algorithm;
        let ha1 = alg.hex(&format!("{}:{}:{password}", self.username, self.realm));
        let ha2 = alg.hex(&format!("{method}:{}", self.uri));
        let want = match &self.qop_auth {
            Some((nc, cnonce)) => {
                alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
            }
            None => alg.hex(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        let got = self.response.to_ascii_lowercase();
        want.len() == got.len()
            && want
                .bytes()
                .zip(got.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 3.5 example (the response is algorithm-independent of the transport: HTTP).
    #[test]
    fn rfc2617_md5_qop_auth_example() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop_auth);
        let a = c.authorization(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("nc=00000001"), "{a}");
        assert!(
            a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{a}"
        );
    }

    /// RFC 7616 3.9.1 example with SHA-256.
    #[test]
    fn rfc7616_sha256_example() {
        let c = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let a = c.authorization(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert!(
            a.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{a}"
        );
    }

    #[test]
    fn no_qop_and_bad_challenges() {
        let c = Challenge::parse("Digest realm=\"r\",nonce=\"n\"").unwrap();
        assert!(!c.qop_auth);
        let a = c.authorization("u", "p", "REGISTER", "sip:r", 1, "c");
        assert!(!a.contains("qop"), "{a}");
        // H(H(u:r:p):n:H(REGISTER:sip:r)) with MD5.
        let ha1 = Algorithm::Md5.hex("u:r:p");
        let ha2 = Algorithm::Md5.hex("REGISTER:sip:r");
        let want = Algorithm::Md5.hex(&format!("{ha1}:n:{ha2}"));
        assert!(a.contains(&want), "{a}");
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\""),
            Err(DigestError::Missing("nonce"))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"x\", nonce=\"y\", algorithm=SHA-512-256"),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"x\", nonce=\"y\", qop=\"auth-int\""),
            Err(DigestError::Qop(_))
        ));
        // Quoted commas and escapes survive.
        let c = Challenge::parse("Digest realm=\"a, \\\"b\\\"\", nonce=n1, stale=TRUE").unwrap();
        assert_eq!(c.realm, "a, \"b\"");
        assert_eq!(c.nonce, "n1");
        assert!(c.stale);
    }

    #[test]
    fn prefers_sha256_among_several() {
        let c = Challenge::best([
            "Digest realm=\"r\", nonce=\"1\", algorithm=MD5, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"2\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"r\", nonce=\"3\", algorithm=SHA-512-256",
        ])
        .unwrap();
        assert_eq!((c.algorithm, c.nonce.as_str()), (Algorithm::Sha256, "2"));
        assert!(Challenge::best(["Basic realm=x"]).is_err());
    }

    #[test]
    fn server_side_check_matches_client_side() {
        for alg in ["MD5", "SHA-256"] {
            let ch = Challenge::parse(&format!(
                "Digest realm=\"clinic\", nonce=\"n0\", qop=\"auth\", algorithm={alg}"
            ))
            .unwrap();
            let auth = ch.authorization("trunk", "pw", "INVITE", "sip:clinic@10.0.0.1", 1, "cn");
            let cred = Credentials::parse(&auth).unwrap();
            assert_eq!(cred.username, "trunk");
            assert!(cred.check("pw", "INVITE"), "{alg}");
            assert!(!cred.check("pw2", "INVITE"), "{alg}");
            assert!(!cred.check("pw", "BYE"), "{alg}");
        }
        let no_qop = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        let cred =
            Credentials::parse(&no_qop.authorization("u", "p", "INVITE", "sip:a", 1, "c")).unwrap();
        assert!(cred.check("p", "INVITE"));
        assert_eq!(Credentials::parse("Basic abc"), None);
        assert_eq!(Credentials::parse("Digest username=\"u\""), None);
    }
}
