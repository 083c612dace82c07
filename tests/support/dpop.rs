//! The test servers' side of DPoP (RFC 9449 §4.3): a proof read and
//! checked (ES256, EdDSA/Ed25519, RS256 or PS256 signature with the key
//! in its header, `typ`, `htm`,
//! `htu`, `iat` window, `jti` replay, `nonce`, `ath`), and the key's
//! RFC 7638 thumbprint (`jkt`) that a token is bound to.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A proof whose signature was checked.
#[derive(Debug, Clone)]
pub struct Proof {
    pub header: Value,
    pub claims: Value,
    /// The thumbprint of the key in its header.
    pub jkt: String,
}

fn json(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Reads `jws` and checks its signature with the `jwk` of its header:
/// ES256 (checked with RustCrypto's `p256`), EdDSA or Ed25519, RS256 or
/// PS256 (checked with `ring`), the key type fitting the `alg`.
pub fn read(jws: &str) -> Result<Proof, String> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err("not a compact JWS".into());
    };
    let (header, claims) = (json(h)?, json(c)?);
    if header["typ"] != "dpop+jwt" {
        return Err(format!("typ: {header}"));
    }
    let jwk = &header["jwk"];
    let member = |name: &str| -> Result<&str, String> {
        jwk[name].as_str().ok_or(format!("jwk.{name}: {jwk}"))
    };
    let bytes = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(member(name)?)
            .map_err(|e| e.to_string())
    };
    let input = format!("{h}.{c}");
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string())?;
    let alg = header["alg"].as_str().unwrap_or_default();
    let canonical = match (alg, member("kty")?) {
        ("ES256", "EC") => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if member("crv")? != "P-256" || x.len() != 32 || y.len() != 32 {
                return Err(format!("jwk: {jwk}"));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                // Both 32 bytes long, as checked above.
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            let key =
                p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|e| e.to_string())?;
            let signature =
                p256::ecdsa::Signature::from_slice(&signature).map_err(|e| e.to_string())?;
            key.verify(input.as_bytes(), &signature)
                .map_err(|_| "bad signature".to_owned())?;
            format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                member("x")?,
                member("y")?
            )
        }
        ("EdDSA" | "Ed25519", "OKP") => {
            if member("crv")? != "Ed25519" {
                return Err(format!("jwk: {jwk}"));
            }
            let key =
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, bytes("x")?);
            key.verify(input.as_bytes(), &signature)
                .map_err(|_| "bad signature".to_owned())?;
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, member("x")?)
        }
        ("RS256" | "PS256", "RSA") => {
            let params = if alg == "RS256" {
                &ring::signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &ring::signature::RSA_PSS_2048_8192_SHA256
            };
            let key = ring::signature::RsaPublicKeyComponents {
                n: bytes("n")?,
                e: bytes("e")?,
            };
            key.verify(params, input.as_bytes(), &signature)
                .map_err(|_| "bad signature".to_owned())?;
            format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                member("e")?,
                member("n")?
            )
        }
        (alg, kty) => return Err(format!("alg {alg:?} with a {kty:?} key")),
    };
    let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    Ok(Proof {
        header,
        claims,
        jkt,
    })
}

/// base64url(SHA-256(access token)): a resource proof's `ath`.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// What a server wants of a proof.
pub struct Expect<'a> {
    pub htm: &'a str,
    pub htu: &'a str,
    pub nonce: Option<&'a str>,
    pub access_token: Option<&'a str>,
}

/// Why a proof was refused: `use_dpop_nonce` (send the nonce) or
/// `invalid_dpop_proof` with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    UseNonce,
    Invalid(String),
}

/// Checks the one `DPoP` header of a request against `expect`, recording
/// its `jti` in `seen` (a `jti` seen before is a replay).
pub fn check(
    headers: &http::HeaderMap,
    expect: &Expect<'_>,
    seen: &mut HashSet<String>,
) -> Result<Proof, Refused> {
    let invalid = |why: String| Refused::Invalid(why);
    let values: Vec<_> = headers.get_all("dpop").iter().collect();
    let [value] = values[..] else {
        return Err(invalid(format!("{} DPoP headers", values.len())));
    };
    let proof = read(value.to_str().map_err(|e| invalid(e.to_string()))?).map_err(invalid)?;
    let claims = &proof.claims;
    if claims["htm"] != expect.htm || claims["htu"] != expect.htu {
        return Err(invalid(format!(
            "htm/htu {} {}",
            claims["htm"], claims["htu"]
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let iat = claims["iat"].as_u64().unwrap_or(0);
    if iat + 60 < now || iat > now + 5 {
        return Err(invalid(format!("iat {iat}, now {now}")));
    }
    let ath = expect.access_token.map(ath);
    if claims["ath"].as_str() != ath.as_deref() {
        return Err(invalid(format!("ath {}", claims["ath"])));
    }
    let jti = claims["jti"].as_str().unwrap_or_default();
    if jti.len() < 16 || !seen.insert(jti.to_owned()) {
        return Err(invalid(format!("jti {jti:?} replayed or short")));
    }
    if expect.nonce.is_some() && claims["nonce"].as_str() != expect.nonce {
        return Err(Refused::UseNonce);
    }
    Ok(proof)
}

/// How a [`NonceResource`] hands out its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// A fresh nonce in every answer (RFC 9449 §9 allows it): a proof must
    /// carry the latest one given.
    EveryAnswer,
    /// A new nonce every `n` requests, sent only in the `use_dpop_nonce`
    /// challenges (as a server rotating on a timer that gives its nonce only
    /// when asked for it).
    EveryRequests(usize),
}

/// What a [`NonceResource`] counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NonceCounts {
    /// Requests received.
    pub requests: usize,
    /// Answered `401 DPoP error="use_dpop_nonce"`.
    pub challenged: usize,
    /// Refused for anything else (why, in order): a bug of the client.
    pub invalid: Vec<String>,
}

/// A resource server on 127.0.0.1 that takes any `DPoP` token whose proof
/// is valid for it (`htm`, `htu`, `ath`, unseen `jti`) and carries its
/// current nonce; challenges a proof with a stale nonce, or none, with
/// `use_dpop_nonce` and the current nonce.
pub struct NonceResource {
    pub serving: super::serve::Serving,
    state: std::sync::Arc<std::sync::Mutex<NonceState>>,
}

struct NonceState {
    rotation: Rotation,
    nonce: u64,
    counts: NonceCounts,
    seen: HashSet<String>,
}

impl NonceState {
    fn current(&self) -> String {
        format!("rs-nonce-{}", self.nonce)
    }

    fn answer(
        &mut self,
        parts: &http::request::Parts,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        self.counts.requests += 1;
        if let Rotation::EveryRequests(n) = self.rotation {
            if self.counts.requests % n == 0 {
                self.nonce += 1;
            }
        }
        let token = (parts.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("DPoP "))
            .map(str::to_owned);
        let host = parts.headers.get("host").and_then(|v| v.to_str().ok());
        let htu = format!("http://{}{}", host.unwrap_or_default(), parts.uri.path());
        let nonce = self.current();
        let expect = Expect {
            htm: parts.method.as_str(),
            htu: &htu,
            nonce: Some(&nonce),
            access_token: token.as_deref(),
        };
        let checked = match token {
            Some(_) => check(&parts.headers, &expect, &mut self.seen),
            None => Err(Refused::Invalid("no DPoP token".into())),
        };
        let (status, challenge) = match checked {
            Ok(_) => (200, None),
            Err(Refused::UseNonce) => {
                self.counts.challenged += 1;
                (401, Some(r#"DPoP error="use_dpop_nonce", algs="ES256""#))
            }
            Err(Refused::Invalid(why)) => {
                self.counts.invalid.push(why);
                (
                    401,
                    Some(r#"DPoP error="invalid_dpop_proof", algs="ES256""#),
                )
            }
        };
        let mut answer = http::Response::builder().status(status);
        if let Some(challenge) = challenge {
            answer = answer.header("www-authenticate", challenge);
        }
        if self.rotation == Rotation::EveryAnswer {
            self.nonce += 1;
            answer = answer.header("dpop-nonce", self.current());
        } else if challenge.is_some() {
            answer = answer.header("dpop-nonce", nonce);
        }
        answer.body(Default::default()).expect("a valid answer")
    }
}

impl NonceResource {
    pub async fn start(rotation: Rotation) -> NonceResource {
        let state = std::sync::Arc::new(std::sync::Mutex::new(NonceState {
            rotation,
            nonce: 1,
            counts: NonceCounts::default(),
            seen: HashSet::new(),
        }));
        let st = state.clone();
        let serving = super::serve::serve(tower::service_fn(
            move |req: http::Request<hyper::body::Incoming>| {
                let (parts, _) = req.into_parts();
                let answer = st.lock().unwrap_or_else(|p| p.into_inner()).answer(&parts);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            },
        ))
        .await;
        NonceResource { serving, state }
    }

    pub fn url(&self, path: &str) -> String {
        self.serving.url(path)
    }

    pub fn counts(&self) -> NonceCounts {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts
            .clone()
    }
}
