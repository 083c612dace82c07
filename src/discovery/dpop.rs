//! A DPoP key for a discovered server: of an algorithm it lists in
//! `dpop_signing_alg_values_supported` (RFC 9449 §5.1).

use super::ProviderMetadata;
use crate::dpop::{choose_algorithm, Dpop};
use crate::jose::{KeyError, SigningKey};

impl ProviderMetadata {
    /// A new DPoP key of the algorithm [`choose_algorithm`] picks from this
    /// server's `dpop_signing_alg_values_supported` (ES256 when it lists
    /// none); [`KeyErrorKind::NotOffered`](crate::jose::KeyErrorKind::NotOffered)
    /// when it lists none this build signs with.
    ///
    /// ```
    /// use tower_oauth2::discovery::ProviderMetadata;
    /// use tower_oauth2::jose::Algorithm;
    ///
    /// let doc = br#"{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token",
    ///                "dpop_signing_alg_values_supported":["EdDSA"]}"#;
    /// let metadata = ProviderMetadata::from_json("https://as.example.com", doc)?;
    /// assert_eq!(metadata.dpop()?.algorithm(), Algorithm::EdDSA);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dpop(&self) -> Result<Dpop, KeyError> {
        Dpop::generate_with(choose_algorithm(self.dpop_signing_alg_values_supported())?)
    }

    /// DPoP with your `key` (see [`Dpop::from_key`]), checked against this
    /// server: when it lists `dpop_signing_alg_values_supported`, the key's
    /// algorithm must be there
    /// ([`KeyErrorKind::NotOffered`](crate::jose::KeyErrorKind::NotOffered)
    /// otherwise).
    pub fn dpop_with_key(&self, key: SigningKey) -> Result<Dpop, KeyError> {
        crate::dpop::check_offered(key.algorithm(), self.dpop_signing_alg_values_supported())?;
        Dpop::from_key(key)
    }
}
