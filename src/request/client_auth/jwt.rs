//! The `private_key_jwt` and `client_secret_jwt` methods (feature `jwt`):
//! their constructors and the assertions they sign (RFC 7523 §2.2).

use crate::credentials::CredentialSource;
use crate::error::Error;
use crate::jose::{KeyError, Signer, SigningKey};
use crate::request::assertion::AssertionSettings;
use crate::request::TokenUrl;
use crate::secret::SecretString;

use super::ClientAuth;

impl ClientAuth {
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): every
    /// token request carries a new assertion signed with `key`, with `iss`
    /// and `sub` the client id, `aud` the token endpoint URL (see
    /// [`ClientAuth::assertion_audience`]), a random `jti`, `iat` now and
    /// `exp` 60 seconds later (see [`ClientAuth::assertion_lifetime`]). The
    /// body gets `client_id`, `client_assertion_type` and `client_assertion`.
    pub fn private_key_jwt(client_id: impl Into<String>, key: SigningKey) -> Self {
        ClientAuth::PrivateKeyJwt {
            client_id: client_id.into(),
            key,
            assertion: AssertionSettings::default(),
        }
    }

    /// `private_key_jwt` as [`ClientAuth::private_key_jwt`], with the
    /// private key (PEM: PKCS#8, PKCS#1, SEC1) read from `source` for every
    /// token request and parsed for `algorithm`, its `kid` `key_id`: a key
    /// rotated by a secret manager is used from the next request. A file
    /// that holds no usable key is an
    /// [`ErrorKind::Credential`](crate::ErrorKind::Credential) error
    /// ([`crate::error::CredentialFailure::NotAKey`]) naming the file.
    pub fn private_key_jwt_from(
        client_id: impl Into<String>,
        algorithm: crate::jose::Algorithm,
        key_id: Option<String>,
        source: CredentialSource,
    ) -> Self {
        ClientAuth::PrivateKeyJwtFrom {
            client_id: client_id.into(),
            algorithm,
            key_id,
            source,
            assertion: AssertionSettings::default(),
        }
    }

    /// `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): as
    /// [`ClientAuth::private_key_jwt`], signed with HS256 keyed with the
    /// octets of `client_secret`.
    ///
    /// A secret shorter than 32 bytes is refused with
    /// [`crate::jose::KeyErrorKind::TooShort`]: RFC 7518 §3.2 requires an
    /// HS256 key of at least 256 bits.
    pub fn client_secret_jwt(
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Result<Self, KeyError> {
        let client_secret = client_secret.into();
        crate::jose::check_hmac_secret(&client_secret)?;
        Ok(ClientAuth::ClientSecretJwt {
            client_id: client_id.into(),
            client_secret,
            assertion: AssertionSettings::default(),
        })
    }

    /// `client_secret_jwt` as [`ClientAuth::client_secret_jwt`], with the
    /// secret read from `source` for every token request (a mounted secret
    /// that a vault rotates; a file's trailing line breaks are cut off). A
    /// secret shorter than 32 bytes is an
    /// [`ErrorKind::Credential`](crate::ErrorKind::Credential) error
    /// ([`crate::error::CredentialFailure::NotAKey`]) naming the file, at
    /// the token request that reads it.
    pub fn client_secret_jwt_from(client_id: impl Into<String>, source: CredentialSource) -> Self {
        ClientAuth::ClientSecretJwtFrom {
            client_id: client_id.into(),
            source,
            assertion: AssertionSettings::default(),
        }
    }

    /// For `private_key_jwt` and `client_secret_jwt`: the assertion's `aud`
    /// instead of the token endpoint URL. Pass the issuer identifier from
    /// discovery ([`crate::discovery::ProviderMetadata::issuer`]): OpenID
    /// Connect Core §9 accepts it, and a server that validates against it
    /// alone (as the update of RFC 7523 in progress asks) refuses anything
    /// else. Other methods send no assertion and ignore it.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        if let Some(settings) = self.assertion_settings_mut() {
            settings.set_audience(audience.into());
        }
        self
    }

    /// For `private_key_jwt` and `client_secret_jwt`: the time from `iat`
    /// to `exp` (60 seconds by default), between 1 second and
    /// [`crate::request::MAX_CLIENT_ASSERTION_LIFETIME`] (5 minutes); a
    /// value outside is brought to the nearer bound. Other methods send no
    /// assertion and ignore it.
    pub fn assertion_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        if let Some(settings) = self.assertion_settings_mut() {
            settings.set_lifetime(lifetime);
        }
        self
    }

    fn assertion_settings_mut(&mut self) -> Option<&mut AssertionSettings> {
        match self {
            ClientAuth::PrivateKeyJwt { assertion, .. }
            | ClientAuth::PrivateKeyJwtFrom { assertion, .. }
            | ClientAuth::ClientSecretJwt { assertion, .. }
            | ClientAuth::ClientSecretJwtFrom { assertion, .. } => Some(assertion),
            _ => None,
        }
    }

    /// A fresh client assertion for a request to `url`, for the methods
    /// that send one.
    pub(crate) fn assertion(&self, url: &TokenUrl) -> Result<Option<SecretString>, Error> {
        let (client_id, signer, settings) = match self {
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                assertion,
            } => (client_id, Signer::Key(key), assertion),
            ClientAuth::ClientSecretJwt {
                client_id,
                client_secret,
                assertion,
            } => (client_id, Signer::Secret(client_secret), assertion),
            _ => return Ok(None),
        };
        settings.sign(signer, client_id, &url.to_string()).map(Some)
    }

    /// The algorithm of the assertions this method signs, if it signs any.
    pub(crate) fn assertion_algorithm(&self) -> Option<crate::jose::Algorithm> {
        match self {
            ClientAuth::PrivateKeyJwt { key, .. } => Some(key.algorithm()),
            ClientAuth::PrivateKeyJwtFrom { algorithm, .. } => Some(*algorithm),
            ClientAuth::ClientSecretJwt { .. } | ClientAuth::ClientSecretJwtFrom { .. } => {
                Some(crate::jose::Algorithm::HS256)
            }
            _ => None,
        }
    }
}
