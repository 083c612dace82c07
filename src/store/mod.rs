//! Persisting tokens, so a restart (or a crash) never loses the newest
//! refresh token.
//!
//! A [`TokenCache`](crate::cache::TokenCache) built with
//! [`TokenCacheBuilder::store`](crate::cache::TokenCacheBuilder::store)
//! loads the stored token when it is built (its refresh token replaces the
//! one configured, being newer; its access token is used while it is valid)
//! and saves every token it fetches **before** using it. When a server
//! rotates refresh tokens, the old one stops working the moment the new one
//! is issued, so the new one must be on disk before anything else happens.
//! A save that fails, or does not finish within
//! [`TokenCacheBuilder::store_timeout`](crate::cache::TokenCacheBuilder::store_timeout),
//! is logged and counted, and the token is used anyway.
//!
//! # Which configuration a token belongs to
//!
//! A token is stored with the [`ConfigFingerprint`] of the configuration
//! that fetched it: token URL, client id and authentication method, grant,
//! scopes, audience, resources. A cache uses a stored token only if the
//! fingerprint is its own: after a configuration change, the old access
//! token is never sent to resources, nor its refresh token to the token
//! endpoint. Such a token is ignored with a warning (no secret in it) and a
//! new one is fetched; the next save replaces it. A token stored without a
//! fingerprint (by a version of this crate before fingerprints) is ignored
//! the same way: there is no telling which configuration fetched it. A
//! restored token whose `issued_at` lies in the future (a clock set back, a
//! file from elsewhere) counts as expired; its refresh token is still used.
//!
//! The fingerprint names the subject too: a cache built from a refresh
//! token, a token-exchange subject token, a pre-made assertion or an
//! authorization code never takes a token stored by a cache built from
//! another one, even with the same token URL, client and scopes (see
//! [`ConfigFingerprint`], "The subject"). Give each user's cache its own
//! file all the same: a [`FileStore`] holds one token. The subject is the
//! value the cache is *built* with: build it again from the same one (the
//! first refresh token, say) and it finds the newer tokens it stored; built
//! from another (a rotated refresh token the application kept from
//! [`on_refresh_token`](crate::cache::TokenCacheBuilder::on_refresh_token)),
//! it is another subject's cache to the store, ignores the stored token and
//! fetches once with the one it was given.
//!
//! # A refused token is never restored
//!
//! When a resource server refuses the access token (a 401), the cache drops
//! it and marks it refused in the store ([`TokenStore::refuse`]), in the
//! background and only if the store still holds that very token. A cache
//! built again later (a restart, a keyed layer's evicted key coming back)
//! then restores the refresh token alone and fetches a new access token.
//!
//! [`FileStore`] writes atomically: a new, randomly named temporary file in
//! the same directory (created exclusively, mode `0600` on Unix), `fsync`,
//! `rename` over the old file, `fsync` of the directory. A crash at any point
//! leaves either the old file or the new one, whole. It refuses a token
//! file path that is a symbolic link unless told to follow it.
//! [`MemoryStore`] keeps the token in memory (tests, or sharing between
//! caches in one process).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth2::store::{ConfigFingerprint, FileStore, StoredToken, TokenStore};
//! use tower_oauth2::token::{Token, TokenType};
//! use tower_oauth2::{ClientAuth, TokenRequest, TokenUrl};
//!
//! let dir = std::env::temp_dir().join(format!("tower-oauth2-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let fingerprint = ConfigFingerprint::new(
//!     &TokenUrl::new("https://as.example.com/token")?,
//!     &ClientAuth::client_secret_basic("svc", "secret"),
//!     &TokenRequest::client_credentials(),
//! );
//! let store = FileStore::new(dir.join("tokens.json"));
//! assert!(store.load(&fingerprint)?.is_none());
//!
//! let token = Token::new("at-1", TokenType::Bearer)
//!     .with_expires_in(Duration::from_secs(3600))
//!     .with_refresh_token("rt-1");
//! store.save(&StoredToken::new(token, fingerprint))?;
//! let loaded = store.load(&fingerprint)?.unwrap();
//! assert!(loaded.is_for(&fingerprint));
//! assert_eq!(loaded.token().refresh_token().unwrap().expose_secret(), "rt-1");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::sync::Mutex;

use crate::secret::SecretString;
use crate::token::Token;

// One concept a file: `fingerprint` (which configuration a token belongs
// to), `file` (the atomic JSON file). This file: the trait, the stored
// value, and the in-memory store.
mod file;
mod fingerprint;

pub use file::FileStore;
// The Redis tier keeps tokens in the same JSON as the token file.
#[cfg(feature = "redis")]
pub(crate) use file::{from_json, to_json};
pub use fingerprint::ConfigFingerprint;

/// Where a cache keeps its token between runs.
///
/// `save` is called on a blocking thread after every fetch, before the token
/// is used, within the cache's
/// [`store_timeout`](crate::cache::TokenCacheBuilder::store_timeout); `load`
/// once, when the cache is built. The cache checks the fingerprint of what
/// `load` returns: a store need not.
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, if any, with the fingerprint it was saved with.
    ///
    /// `fingerprint` is the loading cache's own: a store that keeps one token
    /// per configuration (a key per fingerprint) uses it to find the token;
    /// a store with a single slot returns whatever it holds.
    fn load(&self, fingerprint: &ConfigFingerprint) -> io::Result<Option<StoredToken>>;
    /// Stores `token`, replacing what was stored (for its fingerprint). Must
    /// not return before the token is durable.
    fn save(&self, token: &StoredToken) -> io::Result<()>;

    /// A resource server refused `access_token` (a 401): if the store still
    /// holds it for `fingerprint`, it must never be restored again. Called
    /// on a blocking thread, off the request's path, in order with the
    /// saves, within the cache's
    /// [`store_timeout`](crate::cache::TokenCacheBuilder::store_timeout).
    ///
    /// The default loads, compares, and saves the stored token marked
    /// ([`StoredToken::access_token_refused`]): its refresh token is kept,
    /// since the refusal was of the access token. A store shared by several
    /// processes may do the compare and the write atomically instead.
    fn refuse(
        &self,
        fingerprint: &ConfigFingerprint,
        access_token: &SecretString,
    ) -> io::Result<()> {
        match self.load(fingerprint)? {
            Some(stored)
                if stored.is_for(fingerprint)
                    && !stored.access_token_refused()
                    && stored.token().access_token() == access_token =>
            {
                self.save(&stored.with_access_token_refused())
            }
            _ => Ok(()),
        }
    }
}

/// A token as a [`TokenStore`] keeps it: the token, and the
/// [`ConfigFingerprint`] of the configuration that fetched it.
#[derive(Clone, Debug)]
pub struct StoredToken {
    token: Token,
    fingerprint: Option<ConfigFingerprint>,
    /// A resource server refused the access token (see [`TokenStore::refuse`]).
    refused: bool,
}

impl StoredToken {
    /// `token`, fetched by the configuration `fingerprint` names.
    pub fn new(token: Token, fingerprint: ConfigFingerprint) -> Self {
        StoredToken {
            token,
            fingerprint: Some(fingerprint),
            refused: false,
        }
    }

    /// A token stored before fingerprints existed. No cache uses it, since
    /// there is no telling which configuration fetched it.
    pub fn without_fingerprint(token: Token) -> Self {
        StoredToken {
            token,
            fingerprint: None,
            refused: false,
        }
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The fingerprint it was stored with, if any.
    pub fn fingerprint(&self) -> Option<&ConfigFingerprint> {
        self.fingerprint.as_ref()
    }

    /// Whether it was fetched by the configuration `fingerprint` names.
    pub fn is_for(&self, fingerprint: &ConfigFingerprint) -> bool {
        self.fingerprint.as_ref() == Some(fingerprint)
    }

    /// Gives back the token.
    pub fn into_token(self) -> Token {
        self.token
    }

    /// Whether a resource server refused the access token (a 401): a cache
    /// restores only the refresh token then, never the access token.
    pub fn access_token_refused(&self) -> bool {
        self.refused
    }

    /// This token, its access token marked refused.
    pub fn with_access_token_refused(mut self) -> Self {
        self.refused = true;
        self
    }
}

/// Keeps the token in memory.
#[derive(Default)]
pub struct MemoryStore {
    token: Mutex<Option<StoredToken>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.token.lock().map(|t| t.is_some()).unwrap_or(false);
        f.debug_struct("MemoryStore")
            .field("holds_token", &held)
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self, _: &ConfigFingerprint) -> io::Result<Option<StoredToken>> {
        Ok(self.token.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn save(&self, token: &StoredToken) -> io::Result<()> {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::token::TokenType;

    #[test]
    fn memory_store() {
        let fp = ConfigFingerprint::from_bytes([1; 32]);
        let m = MemoryStore::new();
        assert!(m.load(&fp).unwrap().is_none());
        let token = Token::new("at-7", TokenType::Bearer).with_expires_in(Duration::from_secs(60));
        m.save(&StoredToken::new(token, fp)).unwrap();
        let stored = m.load(&fp).unwrap().unwrap();
        assert_eq!(stored.token().access_token().expose_secret(), "at-7");
        assert!(stored.is_for(&fp));
        assert!(!stored.is_for(&ConfigFingerprint::from_bytes([2; 32])));
        assert_eq!(format!("{m:?}"), "MemoryStore { holds_token: true }");
        // Debug shows the fingerprint, never the token's secrets.
        let shown = format!("{stored:?}");
        assert!(
            shown.contains(&fp.to_string()) && !shown.contains("at-7"),
            "{shown}"
        );
    }
}
