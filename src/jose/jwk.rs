//! JSON Web Keys (RFC 7517): reading a private key, writing the public
//! one, and its thumbprint (RFC 7638).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::error::{KeyError, KeyErrorKind};
use super::key::PrivateKey;
use super::{Algorithm, SigningKey};

/// A parsed JWK whose string members (`d`, and RSA's `p`, `q`, `dp`,
/// `dq`, `qi` among them) are zeroized when it is dropped, whatever the
/// outcome of reading it.
struct Jwk(Map<String, Value>);

impl Drop for Jwk {
    fn drop(&mut self) {
        self.0.values_mut().for_each(zeroize_value);
    }
}

/// Zeroizes every string in `value`, however deep (a JWK pasted inside an
/// array or a string is as secret as one given right).
fn zeroize_value(value: &mut Value) {
    use zeroize::Zeroize as _;
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(members) => members.values_mut().for_each(zeroize_value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Reads a private JWK into a signing key (see [`SigningKey::from_jwk`]).
///
/// No message quotes the input: serde's own would (`invalid type: string
/// "{\"d\":…}"` for a JWK encoded twice, as vaults hand them out), so only
/// the kind of the problem and its position are kept. Values quoted are
/// public members, and only when they look like one (`kty`, `crv`, `alg`).
pub(super) fn parse(jwk: &str) -> Result<SigningKey, KeyError> {
    let jwk = match serde_json::from_str::<Value>(jwk) {
        Ok(Value::Object(map)) => Jwk(map),
        Ok(mut other) => {
            let what = match other {
                Value::String(_) => "a JSON string (a JWK encoded twice?)",
                Value::Array(_) => "a JSON array",
                Value::Number(_) => "a JSON number",
                Value::Bool(_) => "a JSON boolean",
                Value::Null | Value::Object(_) => "JSON null",
            };
            zeroize_value(&mut other);
            return Err(KeyError::unparseable(format!(
                "not a JWK JSON object: {what}"
            )));
        }
        Err(e) => {
            let why = match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                _ => "invalid JSON",
            };
            return Err(KeyError::unparseable(format!(
                "not a JWK JSON object: {why} at line {} column {}",
                e.line(),
                e.column()
            )));
        }
    };
    let jwk = &jwk.0;
    let key = match member(jwk, "kty")? {
        "EC" => ec(jwk)?,
        "OKP" => okp(jwk)?,
        "RSA" => rsa(jwk)?,
        "oct" => {
            return Err(KeyError::unsupported(
                "a symmetric (`oct`) JWK; use ClientAuth::client_secret_jwt",
            ))
        }
        other => {
            return Err(KeyError::unsupported(format!(
                "a JWK of type {}",
                public_value(other)
            )))
        }
    };
    let alg = match jwk.get("alg") {
        None => key.default_algorithm(),
        Some(Value::String(alg)) => Algorithm::from_name(alg).ok_or_else(|| {
            KeyError::new(
                KeyErrorKind::AlgorithmMismatch,
                format!(
                    "JWK `alg` {} is not an algorithm this crate signs with",
                    public_value(alg)
                ),
            )
        })?,
        Some(_) => return Err(KeyError::unparseable("JWK `alg` is not a string")),
    };
    let signing_key = SigningKey::new(alg, key)?;
    Ok(match jwk.get("kid") {
        Some(Value::String(kid)) => signing_key.with_key_id(kid.clone()),
        _ => signing_key,
    })
}

/// A public member's value as a message may quote it: names such as
/// `"P-384"` or `"RSA-OAEP"` are; anything longer or stranger (a private
/// key pasted in the wrong member) is only described.
fn public_value(value: &str) -> String {
    let looks_like_a_name = value.len() <= 16
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if looks_like_a_name {
        format!("{value:?}")
    } else {
        "(not shown: not a JWK name)".to_owned()
    }
}

/// A string member of the JWK.
fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyError> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(KeyError::unparseable(format!(
            "JWK member `{name}` is not a string"
        ))),
        None if name == "d" => Err(KeyError::unsupported(
            "a public JWK (no `d`); signing needs the private key",
        )),
        None => Err(KeyError::unparseable(format!("JWK has no `{name}`"))),
    }
}

/// A base64url member's bytes, zeroized when dropped.
fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(member(jwk, name)?)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::unparseable(format!("JWK member `{name}` is not base64url")))
}

/// RFC 7518 §6.2: an EC key; P-256 only. `x` and `y` must be `d`'s public key.
fn ec(jwk: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
    let crv = member(jwk, "crv")?;
    if crv != "P-256" {
        return Err(KeyError::unsupported(format!(
            "an EC JWK on curve {}",
            public_value(crv)
        )));
    }
    let d = bytes(jwk, "d")?;
    let secret = p256::SecretKey::from_slice(&d)
        .map_err(|_| KeyError::unparseable("JWK `d` is not a P-256 private key"))?;
    let key = p256::ecdsa::SigningKey::from(secret);
    let point = key.verifying_key().to_encoded_point(false);
    let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
    if point.x().map(|p| &p[..]) != Some(&x[..]) || point.y().map(|p| &p[..]) != Some(&y[..]) {
        return Err(KeyError::unparseable(
            "JWK `x` and `y` are not the public key of `d`",
        ));
    }
    Ok(PrivateKey::P256(key))
}

/// RFC 8037 §2: an Octet Key Pair; Ed25519 only. `x` must be `d`'s public key.
fn okp(jwk: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
    let crv = member(jwk, "crv")?;
    if crv != "Ed25519" {
        return Err(KeyError::unsupported(format!(
            "an OKP JWK on curve {}",
            public_value(crv)
        )));
    }
    let d = bytes(jwk, "d")?;
    let seed: &[u8; 32] = d[..]
        .try_into()
        .map_err(|_| KeyError::unparseable("JWK `d` is not 32 bytes"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    if key.verifying_key().as_bytes()[..] != bytes(jwk, "x")?[..] {
        return Err(KeyError::unparseable(
            "JWK `x` is not the public key of `d`",
        ));
    }
    Ok(PrivateKey::Ed25519(key))
}

/// RFC 7518 §6.3: an RSA key with its two primes.
#[cfg(feature = "jwt-rsa")]
fn rsa(jwk: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
    use rsa::BigUint;
    let int = |name| bytes(jwk, name).map(|b| BigUint::from_bytes_be(&b));
    let primes = vec![int("p")?, int("q")?];
    let key = rsa::RsaPrivateKey::from_components(int("n")?, int("e")?, int("d")?, primes)
        .map_err(|e| KeyError::unparseable(format!("invalid RSA JWK ({e})")))?;
    super::key::rsa_key(key)
}

#[cfg(not(feature = "jwt-rsa"))]
fn rsa(_: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
    Err(super::key::rsa_needs_feature())
}

/// The members RFC 7638 §3.2 hashes, for each key type, as
/// `(name, base64url value or constant)` in lexicographic order.
fn required_members(key: &PrivateKey) -> Vec<(&'static str, String)> {
    match key {
        PrivateKey::P256(key) => {
            let point = key.verifying_key().to_encoded_point(false);
            let coordinate = |c: Option<&p256::FieldBytes>| {
                URL_SAFE_NO_PAD.encode(c.map(|c| &c[..]).unwrap_or_default())
            };
            vec![
                ("crv", "P-256".into()),
                ("kty", "EC".into()),
                ("x", coordinate(point.x())),
                ("y", coordinate(point.y())),
            ]
        }
        PrivateKey::Ed25519(key) => vec![
            ("crv", "Ed25519".into()),
            ("kty", "OKP".into()),
            ("x", URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())),
        ],
        #[cfg(feature = "jwt-rsa")]
        PrivateKey::Rsa(key) => {
            use rsa::traits::PublicKeyParts as _;
            vec![
                ("e", URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())),
                ("kty", "RSA".into()),
                ("n", URL_SAFE_NO_PAD.encode(key.n().to_bytes_be())),
            ]
        }
    }
}

impl SigningKey {
    /// The public key as a JWK: the key type's members (RFC 7518 §6,
    /// RFC 8037 §2), `alg`, `use` `sig`, and `kid` when set. This is what
    /// the client registers with the authorization server (its `jwks`).
    pub fn public_jwk(&self) -> Value {
        let mut jwk: Map<String, Value> = required_members(self.private_key())
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::String(value)))
            .collect();
        jwk.insert("alg".into(), json!(self.algorithm().as_str()));
        jwk.insert("use".into(), json!("sig"));
        if let Some(kid) = self.key_id() {
            jwk.insert("kid".into(), json!(kid));
        }
        Value::Object(jwk)
    }

    /// The public key's required members only (RFC 7638 §3.2), as a JWK:
    /// the `jwk` a DPoP proof carries in its header.
    #[cfg(feature = "dpop")]
    pub(crate) fn bare_public_jwk(&self) -> Value {
        let members = required_members(self.private_key()).into_iter();
        Value::Object(
            members
                .map(|(n, v)| (n.to_owned(), Value::String(v)))
                .collect(),
        )
    }

    /// The JWK thumbprint (RFC 7638) of the public key: base64url of the
    /// SHA-256 of its required members, in order and without whitespace.
    pub fn jwk_thumbprint(&self) -> String {
        let members: Vec<String> = required_members(self.private_key())
            .into_iter()
            .map(|(name, value)| format!("\"{name}\":\"{value}\""))
            .collect();
        let canonical = format!("{{{}}}", members.join(","));
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}
