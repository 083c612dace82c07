//! Signing with `ring` (feature `jwt-ring`): P-256 and RSA keys, read by
//! the RustCrypto crates, handed to `ring` once and signed with it from
//! then on.
//!
//! Why `ring`: a DPoP client signs a proof per request, and `ring`'s P-256
//! (assembly, constant time) signs in about a tenth of the time of
//! RustCrypto's `p256`; it is the provider `rustls` already builds, so a
//! client with TLS compiles nothing new. `aws-lc-rs` needs CMake or a large
//! C build. Ed25519 keys stay with `ed25519-dalek`: it signs about a
//! quarter faster than `ring` does (its vectorized field arithmetic).

use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair};
use zeroize::Zeroizing;

use super::key::PrivateKey;
use super::Algorithm;
/// `signature`'s opaque error, as RustCrypto's signers return it (`ring`'s
/// says no more).
use p256::ecdsa::Error as SignError;

/// A key as `ring` signs with it.
pub(super) enum RingKey {
    P256(EcdsaKeyPair),
    #[cfg(feature = "jwt-rsa")]
    Rsa(sig::RsaKeyPair),
}

impl RingKey {
    /// `key` for `ring`, or `None` when RustCrypto signs it: an Ed25519
    /// key (faster with `ed25519-dalek`), or a key `ring` refuses (an RSA
    /// key outside its 2048 to 4096 bits, or with an exponent under 65537).
    pub(super) fn new(key: &PrivateKey) -> Option<RingKey> {
        match key {
            PrivateKey::P256(key) => {
                let secret = Zeroizing::new(key.to_bytes());
                let public = key.verifying_key().to_encoded_point(false);
                EcdsaKeyPair::from_private_key_and_public_key(
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &secret,
                    public.as_bytes(),
                    &SystemRandom::new(),
                )
                .ok()
                .map(RingKey::P256)
            }
            PrivateKey::Ed25519(_) => None,
            #[cfg(feature = "jwt-rsa")]
            PrivateKey::Rsa(key) => {
                use rsa::pkcs1::EncodeRsaPrivateKey as _;
                // A `SecretDocument`: zeroized when dropped.
                let der = key.to_pkcs1_der().ok()?;
                sig::RsaKeyPair::from_der(der.as_bytes())
                    .ok()
                    .map(RingKey::Rsa)
            }
        }
    }

    /// The JWS signature of `input` with `alg` (RFC 7518 §3): `r || s` for
    /// ES256, as `ECDSA_P256_SHA256_FIXED_SIGNING` gives it.
    #[cfg_attr(not(feature = "jwt-rsa"), allow(unused_variables))]
    pub(super) fn sign(&self, alg: Algorithm, input: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            RingKey::P256(key) => Ok(key
                .sign(&SystemRandom::new(), input)
                .map_err(|_| SignError::new())?
                .as_ref()
                .to_vec()),
            #[cfg(feature = "jwt-rsa")]
            RingKey::Rsa(key) => {
                let padding: &'static dyn sig::RsaEncoding = if alg == Algorithm::PS256 {
                    &sig::RSA_PSS_SHA256
                } else {
                    &sig::RSA_PKCS1_SHA256
                };
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(padding, &SystemRandom::new(), input, &mut signature)
                    .map_err(|_| SignError::new())?;
                Ok(signature)
            }
        }
    }
}
