//! Credentials read for every request from a [`CredentialSource`] (a file
//! that rotates, a callback): the constructors, and the client as it is
//! for one request once its credential is read.

use std::borrow::Cow;
use std::time::Duration;

use crate::credentials::{
    CredentialSource, Holds, JWT_BEARER_ASSERTION_TYPE, JWT_SPIFFE_ASSERTION_TYPE,
};
use crate::error::Error;
#[cfg(feature = "jwt")]
use crate::jose::SigningKey;
use crate::secret::SecretString;

use super::ClientAuth;

impl ClientAuth {
    /// `client_secret_basic` with the secret read from `source` for every
    /// request, so a rotated secret is used from the next one (see
    /// [`crate::credentials`]; a file's trailing line breaks are cut off).
    pub fn client_secret_basic_from(
        client_id: impl Into<String>,
        source: CredentialSource,
    ) -> Self {
        ClientAuth::ClientSecretFrom {
            client_id: client_id.into(),
            source,
            post: false,
        }
    }

    /// `client_secret_post` with the secret read from `source` for every
    /// request (see [`ClientAuth::client_secret_basic_from`]).
    pub fn client_secret_post_from(client_id: impl Into<String>, source: CredentialSource) -> Self {
        ClientAuth::ClientSecretFrom {
            client_id: client_id.into(),
            source,
            post: true,
        }
    }

    /// A JWT client assertion made elsewhere (RFC 7523 §2.2: a projected
    /// service-account token, a federated identity token), read from
    /// `source` for every request and sent as `client_assertion` with
    /// `client_assertion_type` [`JWT_BEARER_ASSERTION_TYPE`] and
    /// `client_id`. The server sees `private_key_jwt` (the
    /// [`ClientAuth::method_name`]). Needs no `jwt` feature: nothing is
    /// signed here. See [`crate::credentials`] for the checks.
    pub fn client_assertion(client_id: impl Into<String>, source: CredentialSource) -> Self {
        ClientAuth::ClientAssertion {
            client_id: client_id.into(),
            source,
            assertion_type: JWT_BEARER_ASSERTION_TYPE,
        }
    }

    /// A SPIFFE JWT-SVID as the client assertion
    /// (draft-ietf-oauth-spiffe-client-auth): as
    /// [`ClientAuth::client_assertion`], with `client_assertion_type`
    /// [`JWT_SPIFFE_ASSERTION_TYPE`]. The draft registers that assertion
    /// type only, no `token_endpoint_auth_method` name: `spiffe_jwt`, what
    /// [`ClientAuth::method_name`] and `OAUTH2_AUTH` call it, is this
    /// crate's. `client_id` is usually the workload's SPIFFE ID.
    pub fn spiffe_jwt(client_id: impl Into<String>, source: CredentialSource) -> Self {
        ClientAuth::ClientAssertion {
            client_id: client_id.into(),
            source,
            assertion_type: JWT_SPIFFE_ASSERTION_TYPE,
        }
    }

    /// Whether the credential is read from a file or callback for each
    /// request: such a client reads it again, and retries once, after an
    /// `invalid_client`.
    pub fn reads_credential(&self) -> bool {
        match self {
            ClientAuth::ClientSecretFrom { source, .. }
            | ClientAuth::ClientAssertion { source, .. } => source.rereads(),
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwtFrom { .. } | ClientAuth::ClientSecretJwtFrom { .. } => true,
            _ => false,
        }
    }

    /// This client with its credential read now from its file or callback
    /// (a callback given `within`), for one request; any other client as
    /// it is.
    pub(crate) async fn read_credential(&self, within: Duration) -> Result<ClientAuth, Error> {
        match self.source_holds() {
            Some((source, holds)) if source.rereads() => {
                let value = source.read(holds, within).await?;
                self.with_value(value)
            }
            _ => Ok(self.clone()),
        }
    }

    /// [`ClientAuth::read_credential`] without awaiting (a file, not a
    /// callback), for [`crate::TokenRequest::build`].
    pub(crate) fn read_credential_now(&self) -> Result<Cow<'_, ClientAuth>, Error> {
        match self.source_holds() {
            Some((source, holds)) if source.rereads() => {
                Ok(Cow::Owned(self.with_value(source.read_now(holds)?)?))
            }
            _ => Ok(Cow::Borrowed(self)),
        }
    }

    fn source_holds(&self) -> Option<(&CredentialSource, Holds)> {
        match self {
            ClientAuth::ClientSecretFrom { source, .. } => Some((source, Holds::Secret)),
            ClientAuth::ClientAssertion { source, .. } => Some((source, Holds::Assertion)),
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwtFrom { source, .. }
            | ClientAuth::ClientSecretJwtFrom { source, .. } => Some((source, Holds::Secret)),
            _ => None,
        }
    }

    /// This client holding `value` as the credential it read (for a key
    /// file, the key parsed from it).
    fn with_value(&self, value: SecretString) -> Result<ClientAuth, Error> {
        Ok(match self {
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwtFrom {
                client_id,
                algorithm,
                key_id,
                source,
                assertion,
            } => {
                let key = SigningKey::from_pem(*algorithm, value.expose_secret())
                    .map_err(|e| source.not_a_key(*algorithm, e.kind()))?;
                ClientAuth::PrivateKeyJwt {
                    client_id: client_id.clone(),
                    key: match key_id {
                        Some(kid) => key.with_key_id(kid),
                        None => key,
                    },
                    assertion: assertion.clone(),
                }
            }
            #[cfg(feature = "jwt")]
            ClientAuth::ClientSecretJwtFrom {
                client_id,
                source,
                assertion,
            } => {
                crate::jose::check_hmac_secret(&value).map_err(|_| source.short_hmac_secret())?;
                ClientAuth::ClientSecretJwt {
                    client_id: client_id.clone(),
                    client_secret: value,
                    assertion: assertion.clone(),
                }
            }
            ClientAuth::ClientSecretFrom {
                client_id, post, ..
            } => ClientAuth::ClientSecretFrom {
                client_id: client_id.clone(),
                source: CredentialSource::value(value),
                post: *post,
            },
            ClientAuth::ClientAssertion {
                client_id,
                assertion_type,
                ..
            } => ClientAuth::ClientAssertion {
                client_id: client_id.clone(),
                source: CredentialSource::value(value),
                assertion_type,
            },
            other => other.clone(),
        })
    }
}
