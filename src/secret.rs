//! A string that is never printed.
//!
//! Client secrets, access tokens, refresh tokens and grant credentials are held
//! in [`SecretString`]. Its `Debug` prints `SecretString("[redacted]")` and it
//! has no `Display`, so neither `{:?}` on a containing struct nor an error
//! message can leak it. Reading it is an explicit, greppable call:
//! [`SecretString::expose_secret`].
//!
//! # Example
//!
//! ```
//! use tower_oauth2::SecretString;
//!
//! let secret = SecretString::from("s3cr3t");
//! assert_eq!(format!("{secret:?}"), "SecretString(\"[redacted]\")");
//! assert_eq!(secret.expose_secret(), "s3cr3t");
//! ```

use std::fmt;
use std::sync::Arc;

/// A secret string (client secret, access token, refresh token, password).
///
/// Cloning is cheap (the text is shared). Equality of two secrets of the same
/// length looks at every byte, so it does not reveal where they first differ.
#[derive(Clone)]
pub struct SecretString(Arc<str>);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(Arc::from(secret.into()))
    }

    /// Returns the secret text. Call this only where the secret is sent.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The secret's length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(\"[redacted]\")")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretString {}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::from("hunter2");
        let shown = format!("{s:?} {:#?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.expose_secret(), "hunter2");
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn equality() {
        assert_eq!(SecretString::from("a"), SecretString::from("a".to_string()));
        assert_ne!(SecretString::from("a"), SecretString::from("b"));
        assert_ne!(SecretString::from("a"), SecretString::from("ab"));
    }
}
