//! What the Redis tier stores under a token key, and how it is read back.
//!
//! ```text
//! <64 hex: SHA-256 of the access token> "\n" ( "p" <JSON> | "e" <12-byte nonce> <ChaCha20-Poly1305 ciphertext of the JSON> )
//! ```
//!
//! The JSON is the token file's (`store::file`): the token, its wall-clock
//! `issued_at` and `expires_in` (so every process computes the same
//! schedule), and the configuration fingerprint. The hash in front lets a
//! Lua script compare-and-delete a token (the 401 rule) without reading it,
//! and lets a process tell "the token I am replacing" from a newer one. The
//! ciphertext's associated data is the key name, so a value copied under
//! another configuration's key does not decrypt.

use std::fmt;
use std::time::SystemTime;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::store::{from_json, to_json, ConfigFingerprint, StoredToken};
use crate::token::{IssuedAt, Token};

/// The length of the hash in front of a value, in hex digits.
pub(super) const HASH_HEX: usize = 64;

pub(super) use crate::tier::TokenHash;

/// The user's 32-byte key for encryption at rest. Never printed.
#[derive(Clone)]
pub(super) struct Sealer(ChaCha20Poly1305);

impl Sealer {
    pub(super) fn new(key: &[u8; 32]) -> Self {
        Sealer(ChaCha20Poly1305::new(Key::from_slice(key)))
    }
}

impl Sealer {
    /// A tag authenticating `text` under the key name `key`: the AEAD's
    /// tag over an empty message with `key` and `text` as associated data,
    /// after a random nonce, in hex. So a record only this key's holders
    /// could have written is told from a forged one, and a record copied
    /// under another key name does not verify.
    pub(super) fn tag(&self, key: &str, text: &str) -> Result<String, String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
        let aad = tagged(key, text);
        let tag = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &[],
                    aad: &aad,
                },
            )
            .map_err(|_| "authentication failed".to_owned())?;
        Ok(nonce
            .iter()
            .chain(&tag)
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Whether `tag` (as [`Self::tag`] makes it) authenticates `text`
    /// under the key name `key`.
    pub(super) fn verify(&self, key: &str, text: &str, tag: &str) -> bool {
        let Some(bytes) = from_hex(tag) else {
            return false;
        };
        if bytes.len() != 12 + 16 {
            return false;
        }
        let (nonce, tag) = bytes.split_at(12);
        let aad = tagged(key, text);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: tag,
                    aad: &aad,
                },
            )
            .is_ok_and(|plain| plain.is_empty())
    }
}

/// The associated data of a tag: the key name, then the text.
fn tagged(key: &str, text: &str) -> Vec<u8> {
    [key.as_bytes(), b"\n", text.as_bytes()].concat()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

/// Encodes `token` for the key `key`.
pub(super) fn encode(
    token: &Token,
    fingerprint: ConfigFingerprint,
    key: &str,
    sealer: Option<&Sealer>,
) -> Result<Vec<u8>, String> {
    let json = to_json(&StoredToken::new(token.clone(), fingerprint));
    let mut out = TokenHash::of(token).to_hex().into_bytes();
    out.push(b'\n');
    match sealer {
        None => {
            out.push(b'p');
            out.extend_from_slice(&json);
        }
        Some(Sealer(cipher)) => {
            let mut nonce = [0u8; 12];
            getrandom::fill(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
            let sealed = cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &json,
                        aad: key.as_bytes(),
                    },
                )
                .map_err(|_| "encryption failed".to_owned())?;
            out.push(b'e');
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&sealed);
        }
    }
    Ok(out)
}

/// The hash in front of a value, if it has one.
fn hash_of(value: &[u8]) -> Option<TokenHash> {
    TokenHash::from_hex(std::str::from_utf8(value.get(..HASH_HEX)?).ok()?)
}

/// Decodes a value read from `key`. The error says why it is not usable,
/// with no secret in it: garbage, another version's format, a value that
/// does not decrypt (wrong key, tampered, moved from another key), one
/// written unencrypted when this process expects encryption (or the other
/// way round), or one for another configuration.
pub(super) fn decode(
    value: &[u8],
    fingerprint: ConfigFingerprint,
    key: &str,
    sealer: Option<&Sealer>,
) -> Result<Token, &'static str> {
    let hash = hash_of(value).ok_or("no token hash in front")?;
    let body = value
        .get(HASH_HEX + 1..)
        .filter(|_| value[HASH_HEX] == b'\n');
    let json = match (
        body.ok_or("no separator after the hash")?.split_first(),
        sealer,
    ) {
        (Some((b'p', json)), None) => json.to_vec(),
        (Some((b'e', sealed)), Some(Sealer(cipher))) if sealed.len() > 12 => {
            let (nonce, ciphertext) = sealed.split_at(12);
            let payload = Payload {
                msg: ciphertext,
                aad: key.as_bytes(),
            };
            cipher
                .decrypt(Nonce::from_slice(nonce), payload)
                .map_err(|_| "it does not decrypt with this key")?
        }
        (Some((b'p', _)), Some(_)) => return Err("it is not encrypted, and this process encrypts"),
        (Some((b'e', _)), None) => return Err("it is encrypted, and this process has no key"),
        _ => return Err("unknown format"),
    };
    let stored = from_json(&json).map_err(|_| "its JSON is not a token")?;
    if !stored.is_for(&fingerprint) {
        return Err("it was fetched by another configuration");
    }
    let token = clamp_issued_at(stored.into_token());
    if TokenHash::of(&token) != hash {
        return Err("its hash does not match its token");
    }
    Ok(token)
}

/// Another machine's clock may run a little ahead: a token issued "in the
/// future" by it is taken as issued now, never as younger than it is.
fn clamp_issued_at(token: Token) -> Token {
    let now = SystemTime::now();
    if token.issued_at().system_time() > now {
        token.with_issued_at(IssuedAt::now())
    } else {
        token
    }
}
