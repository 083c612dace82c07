//! [`SigningKey`]: a private key for JWS signatures, read from PEM, DER or a JWK.

use std::fmt;
use std::sync::Arc;

use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::der::Decode as _;
use p256::pkcs8::{DecodePrivateKey as _, ObjectIdentifier, PrivateKeyInfo, SecretDocument};

use super::error::{KeyError, KeyErrorKind};
use super::Algorithm;

/// `rsaEncryption` (RFC 8017 Appendix C).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1`, P-256 (RFC 5480 §2.1.1.1).
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `id-Ed25519` (RFC 8410 §3).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A private key that signs JWTs: RS256 and PS256 (RSA, 2048 bits or more,
/// with the `jwt-rsa` feature), ES256 (P-256) or EdDSA/Ed25519 (Ed25519).
///
/// Read it from PEM ([`SigningKey::from_pem`]: PKCS#8 `PRIVATE KEY`, PKCS#1
/// `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`), from DER
/// ([`SigningKey::from_der`]) or from a private JWK
/// ([`SigningKey::from_jwk`]). The algorithm is chosen when the key is read,
/// and a key of another type is refused ([`KeyErrorKind::AlgorithmMismatch`]).
///
/// The key material is never printed (`Debug` shows the algorithm and the
/// key id only) and is zeroized when the last clone is dropped. Cloning is
/// cheap: the key is shared. (With feature `jwt-ring`, the copy `ring`
/// signs with, made at the first signature of a P-256 or RSA key, is
/// freed but not zeroized: `ring` does not wipe its keys.)
///
/// ```
/// use tower_oauth2::jose::{Algorithm, KeyErrorKind, SigningKey};
///
/// // The Ed25519 key of RFC 8037 Appendix A.1, as PKCS#8 PEM.
/// let pem = "-----BEGIN PRIVATE KEY-----
/// MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
/// -----END PRIVATE KEY-----";
/// let key = SigningKey::from_pem(Algorithm::EdDSA, pem)?.with_key_id("2024-06");
/// assert_eq!(key.algorithm(), Algorithm::EdDSA);
/// assert_eq!(
///     format!("{key:?}"),
///     r#"SigningKey { alg: EdDSA, kid: Some("2024-06"), key: "[redacted]" }"#
/// );
///
/// let err = SigningKey::from_pem(Algorithm::ES256, pem).unwrap_err();
/// assert_eq!(err.kind(), KeyErrorKind::AlgorithmMismatch);
/// assert_eq!(err.to_string(), "unusable signing key: an Ed25519 key cannot sign ES256");
/// # Ok::<(), tower_oauth2::jose::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    key: Arc<PrivateKey>,
    /// The same key as `ring` signs with it, made at the first signature
    /// (a key read per request for one assertion is handed over once);
    /// `None` inside when `ring` refuses the key and RustCrypto signs.
    #[cfg(feature = "jwt-ring")]
    ring: Arc<std::sync::OnceLock<Option<super::ring_signer::RingKey>>>,
}

/// The key itself. Each type zeroizes its secret on drop.
pub(super) enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    #[cfg(feature = "jwt-rsa")]
    Rsa(rsa::RsaPrivateKey),
}

impl PrivateKey {
    /// Whether this key signs with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        match self {
            PrivateKey::P256(_) => alg == Algorithm::ES256,
            PrivateKey::Ed25519(_) => matches!(alg, Algorithm::EdDSA | Algorithm::Ed25519),
            #[cfg(feature = "jwt-rsa")]
            PrivateKey::Rsa(_) => matches!(alg, Algorithm::RS256 | Algorithm::PS256),
        }
    }

    /// The key type's name in messages and its JWK `kty`.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            PrivateKey::P256(_) => "a P-256 key",
            PrivateKey::Ed25519(_) => "an Ed25519 key",
            #[cfg(feature = "jwt-rsa")]
            PrivateKey::Rsa(_) => "an RSA key",
        }
    }

    /// The algorithm a JWK without `alg` gets.
    pub(super) fn default_algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::P256(_) => Algorithm::ES256,
            PrivateKey::Ed25519(_) => Algorithm::EdDSA,
            #[cfg(feature = "jwt-rsa")]
            PrivateKey::Rsa(_) => Algorithm::RS256,
        }
    }
}

impl SigningKey {
    pub(super) fn new(alg: Algorithm, key: PrivateKey) -> Result<Self, KeyError> {
        if !key.fits(alg) {
            return Err(KeyError::new(
                KeyErrorKind::AlgorithmMismatch,
                format!("{} cannot sign {alg}", key.describe()),
            ));
        }
        Ok(SigningKey {
            alg,
            kid: None,
            key: Arc::new(key),
            #[cfg(feature = "jwt-ring")]
            ring: Arc::default(),
        })
    }

    /// Reads a PEM private key for `alg`: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). An encrypted PKCS#8
    /// file (`ENCRYPTED PRIVATE KEY`) is [`KeyErrorKind::Unsupported`]:
    /// decrypt it first.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let (label, doc) = SecretDocument::from_pem(pem.trim())
            .map_err(|e| KeyError::unparseable(format!("not a PEM private key ({e})")))?;
        let key = match label {
            "PRIVATE KEY" => pkcs8(doc.as_bytes())?,
            "EC PRIVATE KEY" => sec1(doc.as_bytes())?,
            "RSA PRIVATE KEY" => pkcs1(doc.as_bytes())?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::unsupported(
                    "an encrypted PKCS#8 key; decrypt it first",
                ))
            }
            other => {
                return Err(KeyError::unparseable(format!(
                    "a PEM `{other}`, not a private key"
                )))
            }
        };
        SigningKey::new(alg, key)
    }

    /// Reads a DER private key for `alg`: PKCS#8, or else PKCS#1 for RS256
    /// and PS256 and SEC1 for ES256.
    pub fn from_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let key = match PrivateKeyInfo::from_der(der) {
            Ok(_) => pkcs8(der)?,
            Err(_) if alg == Algorithm::ES256 => sec1(der)?,
            Err(_) if matches!(alg, Algorithm::RS256 | Algorithm::PS256) => pkcs1(der)?,
            Err(e) => {
                return Err(KeyError::unparseable(format!(
                    "not a PKCS#8 private key ({e})"
                )))
            }
        };
        SigningKey::new(alg, key)
    }

    /// Reads a private JWK (RFC 7517; `kty` `EC` with `crv` `P-256`, `OKP`
    /// with `crv` `Ed25519`, or `RSA`). The algorithm is the JWK's `alg`, or
    /// ES256, EdDSA and RS256 for those types; the key id is its `kid`.
    ///
    /// An error never quotes the input, whatever its shape (a JWK encoded
    /// twice, as a JSON string, says so without showing it), and the parsed
    /// members are zeroized once read. The `&str` given is yours to zeroize.
    pub fn from_jwk(jwk: &str) -> Result<Self, KeyError> {
        super::jwk::parse(jwk)
    }

    /// The same key for another algorithm of its type: PS256 for an RSA key
    /// read as RS256, Ed25519 (RFC 9864) for an Ed25519 key read as EdDSA.
    pub fn with_algorithm(self, alg: Algorithm) -> Result<Self, KeyError> {
        if !self.key.fits(alg) {
            return Err(KeyError::new(
                KeyErrorKind::AlgorithmMismatch,
                format!("{} cannot sign {alg}", self.key.describe()),
            ));
        }
        Ok(SigningKey { alg, ..self })
    }

    /// Sets the key id, sent as the JWS header's `kid` so the server picks
    /// the right key from the client's JWK Set.
    pub fn with_key_id(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if set.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub(super) fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// A new random key for `alg` from the operating system's CSPRNG: a
    /// P-256 key for ES256, an Ed25519 key for EdDSA and Ed25519, a
    /// 2048-bit RSA key for RS256 and PS256 (feature `jwt-rsa`; a fraction
    /// of a second in a release build, seconds in a debug one). HS256 has
    /// no key pair: [`KeyErrorKind::Unsupported`].
    #[cfg(feature = "dpop")]
    pub(crate) fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        let fill = |seed: &mut [u8]| {
            getrandom::fill(seed)
                .map_err(|e| KeyError::unsupported(format!("no random source for a new key ({e})")))
        };
        let key = match alg {
            Algorithm::ES256 => {
                // A 32-byte string is a valid P-256 scalar but with
                // probability about 2^-128; a few draws are always enough.
                let mut key = None;
                for _ in 0..8 {
                    fill(&mut seed[..])?;
                    if let Ok(secret) = p256::SecretKey::from_slice(&seed[..]) {
                        key = Some(PrivateKey::P256(p256::ecdsa::SigningKey::from(secret)));
                        break;
                    }
                }
                key.ok_or_else(|| {
                    KeyError::unsupported("no valid P-256 key from the random source")
                })?
            }
            Algorithm::EdDSA | Algorithm::Ed25519 => {
                // Any 32 bytes are an Ed25519 seed (RFC 8032 §5.1.5).
                fill(&mut seed[..])?;
                PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            Algorithm::RS256 | Algorithm::PS256 => generate_rsa()?,
            Algorithm::HS256 => {
                return Err(KeyError::unsupported(
                    "HS256 is keyed with a shared secret, not a key pair",
                ))
            }
        };
        SigningKey::new(alg, key)
    }

    /// Gets the signer ready now rather than at the first signature (with
    /// `jwt-ring`, hands the key to `ring`).
    #[cfg(feature = "dpop")]
    pub(crate) fn prepare(&self) {
        #[cfg(feature = "jwt-ring")]
        self.ring_key();
    }

    #[cfg(feature = "jwt-ring")]
    fn ring_key(&self) -> Option<&super::ring_signer::RingKey> {
        let key = self.ring.get_or_init(|| {
            let ring = super::ring_signer::RingKey::new(&self.key);
            // Ed25519 is RustCrypto's by choice; anything else, ring refused.
            if ring.is_none() && !matches!(*self.key, PrivateKey::Ed25519(_)) {
                tracing::debug!(alg = %self.alg, "ring refuses this key; RustCrypto signs with it");
            }
            ring
        });
        key.as_ref()
    }

    /// The JWS signature of `input` (RFC 7518 §3): `r || s` for ES256.
    pub(crate) fn sign(&self, input: &[u8]) -> Result<Vec<u8>, p256::ecdsa::Error> {
        #[cfg(feature = "jwt-ring")]
        if let Some(key) = self.ring_key() {
            return key.sign(self.alg, input);
        }
        match (&*self.key, self.alg) {
            (PrivateKey::P256(key), _) => {
                let signature: p256::ecdsa::Signature = key.try_sign(input)?;
                Ok(signature.to_bytes().to_vec())
            }
            (PrivateKey::Ed25519(key), _) => Ok(key.try_sign(input)?.to_bytes().to_vec()),
            #[cfg(feature = "jwt-rsa")]
            (PrivateKey::Rsa(key), alg) => rsa_sign(key, alg, input),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// RS256 (RSASSA-PKCS1-v1_5) or PS256 (RSASSA-PSS, 32-byte salt), with
/// blinding: the random value hides the private exponent's timing.
#[cfg(feature = "jwt-rsa")]
fn rsa_sign(
    key: &rsa::RsaPrivateKey,
    alg: Algorithm,
    input: &[u8],
) -> Result<Vec<u8>, p256::ecdsa::Error> {
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
    let mut rng = rand_core::OsRng;
    Ok(if alg == Algorithm::PS256 {
        rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key.clone())
            .try_sign_with_rng(&mut rng, input)?
            .to_vec()
    } else {
        rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone())
            .try_sign_with_rng(&mut rng, input)?
            .to_vec()
    })
}

#[cfg(all(feature = "dpop", feature = "jwt-rsa"))]
fn generate_rsa() -> Result<PrivateKey, KeyError> {
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| KeyError::unsupported(format!("no new RSA key ({e})")))?;
    Ok(PrivateKey::Rsa(key))
}

#[cfg(all(feature = "dpop", not(feature = "jwt-rsa")))]
fn generate_rsa() -> Result<PrivateKey, KeyError> {
    Err(rsa_needs_feature())
}

/// A PKCS#8 `PrivateKeyInfo` (RFC 5208, RFC 5958) of a type this crate signs with.
fn pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let info = PrivateKeyInfo::from_der(der)
        .map_err(|e| KeyError::unparseable(format!("not a PKCS#8 private key ({e})")))?;
    let oid = info.algorithm.oid;
    let invalid = |e: p256::pkcs8::Error| KeyError::unparseable(format!("invalid key ({e})"));
    if oid == EC_PUBLIC_KEY {
        let curve = info.algorithm.parameters_oid().ok();
        if curve != Some(SECP256R1) {
            return Err(KeyError::unsupported(
                "an EC key on a curve other than P-256",
            ));
        }
        return Ok(PrivateKey::P256(
            p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(invalid)?,
        ));
    }
    if oid == ED25519 {
        return Ok(PrivateKey::Ed25519(
            ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(invalid)?,
        ));
    }
    if oid == RSA_ENCRYPTION {
        return rsa_pkcs8(der);
    }
    Err(KeyError::unsupported(format!(
        "a PKCS#8 key of algorithm {oid}, which is not RSA, P-256 or Ed25519"
    )))
}

/// A SEC1 `ECPrivateKey` (RFC 5915) on P-256.
fn sec1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let key = p256::SecretKey::from_sec1_der(der)
        .map_err(|_| KeyError::unparseable("not a SEC1 P-256 private key"))?;
    Ok(PrivateKey::P256(key.into()))
}

#[cfg(feature = "jwt-rsa")]
fn rsa_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
        .map_err(|e| KeyError::unparseable(format!("invalid RSA key ({e})")))?;
    rsa_key(key)
}

#[cfg(not(feature = "jwt-rsa"))]
fn rsa_pkcs8(_: &[u8]) -> Result<PrivateKey, KeyError> {
    Err(rsa_needs_feature())
}

/// A PKCS#1 `RSAPrivateKey` (RFC 8017 Appendix A.1.2).
#[cfg(feature = "jwt-rsa")]
fn pkcs1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
        .map_err(|e| KeyError::unparseable(format!("not a PKCS#1 RSA private key ({e})")))?;
    rsa_key(key)
}

#[cfg(not(feature = "jwt-rsa"))]
fn pkcs1(_: &[u8]) -> Result<PrivateKey, KeyError> {
    Err(rsa_needs_feature())
}

#[cfg(not(feature = "jwt-rsa"))]
pub(super) fn rsa_needs_feature() -> KeyError {
    KeyError::unsupported("an RSA key; RS256 and PS256 need the `jwt-rsa` feature")
}

/// Checks an RSA key's consistency and its size (RFC 7518 §3.3: 2048 bits or more).
#[cfg(feature = "jwt-rsa")]
pub(super) fn rsa_key(key: rsa::RsaPrivateKey) -> Result<PrivateKey, KeyError> {
    use rsa::traits::PublicKeyParts as _;
    key.validate()
        .map_err(|e| KeyError::unparseable(format!("invalid RSA key ({e})")))?;
    let bits = key.n().bits();
    if bits < 2048 {
        return Err(KeyError::new(
            KeyErrorKind::TooShort,
            format!("a {bits}-bit RSA key; RFC 7518 §3.3 requires 2048 bits or more"),
        ));
    }
    Ok(PrivateKey::Rsa(key))
}

#[cfg(test)]
impl SigningKey {
    /// Whether `signature` is this key's signature of `input` with its algorithm.
    pub(crate) fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match &*self.key {
            PrivateKey::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verifying_key().verify(input, &s).is_ok()),
            PrivateKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verifying_key().verify(input, &s).is_ok()),
            #[cfg(feature = "jwt-rsa")]
            PrivateKey::Rsa(key) => {
                let public = key.to_public_key();
                let Ok(s) = rsa::pkcs1v15::Signature::try_from(signature) else {
                    return false;
                };
                if self.alg == Algorithm::PS256 {
                    let Ok(s) = rsa::pss::Signature::try_from(signature) else {
                        return false;
                    };
                    rsa::pss::VerifyingKey::<sha2::Sha256>::new(public)
                        .verify(input, &s)
                        .is_ok()
                } else {
                    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public)
                        .verify(input, &s)
                        .is_ok()
                }
            }
        }
    }
}
