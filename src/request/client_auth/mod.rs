//! [`ClientAuth`]: how the client authenticates to the token endpoint.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::request::Builder;
use http::HeaderValue;

use crate::credentials::{CredentialSource, JWT_SPIFFE_ASSERTION_TYPE};
#[cfg(not(feature = "jwt"))]
use crate::error::Error;
#[cfg(feature = "jwt")]
use crate::jose::SigningKey;
use crate::secret::SecretString;

#[cfg(feature = "jwt")]
use super::assertion::{AssertionSettings, CLIENT_ASSERTION_TYPE};
#[cfg(not(feature = "jwt"))]
use super::TokenUrl;

#[cfg(feature = "jwt")]
mod jwt;
mod rotating;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3,
/// OpenID Connect `token_endpoint_auth_method`).
///
/// `private_key_jwt` and `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect
/// Core §9) need the `jwt` feature (`ClientAuth::private_key_jwt`,
/// `ClientAuth::client_secret_jwt`). Without it, use [`ClientAuth::none`]
/// and add `client_assertion_type` and `client_assertion` with
/// [`crate::TokenRequest::param`] and [`crate::TokenRequest::secret_param`].
///
/// A client secret or a client assertion that rotates (a file, a callback)
/// is read for every request: [`ClientAuth::client_secret_basic_from`],
/// [`ClientAuth::client_secret_post_from`], [`ClientAuth::client_assertion`],
/// [`ClientAuth::spiffe_jwt`] (no feature needed; see [`crate::credentials`]).
///
/// `tls_client_auth` and `self_signed_tls_client_auth` (RFC 8705 §2) only
/// shape the request; the proof is the client certificate presented in the
/// TLS handshake, by an HTTP client configured with it
/// (`tls::https_client_with_identity`, feature `rustls`, or any client of
/// yours).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret.
    ClientSecretBasic {
        /// The client identifier.
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    ClientSecretPost {
        /// The client identifier.
        client_id: String,
        /// The client secret.
        client_secret: SecretString,
    },
    /// `none`: a public client; `client_id` in the body.
    None {
        /// The client identifier.
        client_id: String,
    },
    /// `tls_client_auth` (RFC 8705 §2.1): mutual TLS with a certificate
    /// from a CA the server trusts, matched against the subject registered
    /// for the client. `client_id` in the body, no secret.
    TlsClientAuth {
        /// The client identifier.
        client_id: String,
    },
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): mutual TLS with a
    /// self-signed certificate registered for the client. `client_id` in
    /// the body, no secret.
    SelfSignedTlsClientAuth {
        /// The client identifier.
        client_id: String,
    },
    /// `client_secret_basic` or `client_secret_post` with the secret read
    /// for every request from `source`. Made by
    /// [`ClientAuth::client_secret_basic_from`] and
    /// [`ClientAuth::client_secret_post_from`].
    #[non_exhaustive]
    ClientSecretFrom {
        /// The client identifier.
        client_id: String,
        /// Where the secret is read from.
        source: CredentialSource,
        /// In the body (`client_secret_post`) rather than HTTP Basic.
        post: bool,
    },
    /// A client assertion made elsewhere (RFC 7521 §4.2), read for every
    /// request from `source`. Made by [`ClientAuth::client_assertion`] and
    /// [`ClientAuth::spiffe_jwt`].
    #[non_exhaustive]
    ClientAssertion {
        /// The client identifier, sent as `client_id`.
        client_id: String,
        /// Where the assertion is read from.
        source: CredentialSource,
        /// `client_assertion_type`: [`JWT_BEARER_ASSERTION_TYPE`](crate::credentials::JWT_BEARER_ASSERTION_TYPE) or
        /// [`JWT_SPIFFE_ASSERTION_TYPE`].
        assertion_type: &'static str,
    },
    /// `private_key_jwt`: a client assertion signed with the client's
    /// private key, fresh for every request. Made by [`ClientAuth::private_key_jwt`].
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[non_exhaustive]
    PrivateKeyJwt {
        /// The client identifier, the assertion's `iss` and `sub`.
        client_id: String,
        /// The private key.
        key: SigningKey,
        /// The assertion's audience and lifetime.
        assertion: AssertionSettings,
    },
    /// `private_key_jwt` with the private key (PEM) read from `source` for
    /// every request, so a rotated key is used from the next one. Made by
    /// [`ClientAuth::private_key_jwt_from`].
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[non_exhaustive]
    PrivateKeyJwtFrom {
        /// The client identifier, the assertion's `iss` and `sub`.
        client_id: String,
        /// The key's algorithm.
        algorithm: crate::jose::Algorithm,
        /// The `kid` sent in each assertion's header, if any.
        key_id: Option<String>,
        /// Where the PEM private key is read from.
        source: CredentialSource,
        /// The assertion's audience and lifetime.
        assertion: AssertionSettings,
    },
    /// `client_secret_jwt` with the secret read from `source` for every
    /// request, so a rotated secret is used from the next one. Made by
    /// [`ClientAuth::client_secret_jwt_from`].
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[non_exhaustive]
    ClientSecretJwtFrom {
        /// The client identifier, the assertion's `iss` and `sub`.
        client_id: String,
        /// Where the secret is read from.
        source: CredentialSource,
        /// The assertion's audience and lifetime.
        assertion: AssertionSettings,
    },
    /// `client_secret_jwt`: a client assertion signed with HS256 keyed
    /// with the client secret, fresh for every request; the secret itself
    /// is never sent. Made by [`ClientAuth::client_secret_jwt`].
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[non_exhaustive]
    ClientSecretJwt {
        /// The client identifier, the assertion's `iss` and `sub`.
        client_id: String,
        /// The client secret, at least 32 bytes.
        client_secret: SecretString,
        /// The assertion's audience and lifetime.
        assertion: AssertionSettings,
    },
}

impl ClientAuth {
    /// `client_secret_basic`, the method every server must support (RFC 6749 §2.3.1).
    pub fn client_secret_basic(
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        ClientAuth::ClientSecretBasic {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// `client_secret_post`: credentials in the request body.
    pub fn client_secret_post(
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        ClientAuth::ClientSecretPost {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// `none`: a public client that only names itself.
    pub fn none(client_id: impl Into<String>) -> Self {
        ClientAuth::None {
            client_id: client_id.into(),
        }
    }

    /// `tls_client_auth` (RFC 8705 §2.1, PKI mutual TLS): the token request
    /// carries `client_id` and no secret, no `Authorization` header; the
    /// server authenticates the client by the certificate the HTTP client
    /// presents, issued by a CA it trusts for the subject registered for
    /// `client_id`.
    ///
    /// The HTTP client must present that certificate (with the `rustls`
    /// feature, `tls::https_client_with_identity`); with discovery,
    /// [`crate::discovery::ProviderMetadata::endpoint`] picks the server's
    /// mutual-TLS token endpoint alias (RFC 8705 §5).
    pub fn tls_client_auth(client_id: impl Into<String>) -> Self {
        ClientAuth::TlsClientAuth {
            client_id: client_id.into(),
        }
    }

    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): as
    /// [`ClientAuth::tls_client_auth`], with a self-signed certificate that
    /// the server matches against the one registered for `client_id` (in
    /// its `jwks` or `jwks_uri`) instead of a CA.
    pub fn self_signed_tls_client_auth(client_id: impl Into<String>) -> Self {
        ClientAuth::SelfSignedTlsClientAuth {
            client_id: client_id.into(),
        }
    }

    /// Whether the client authenticates with mutual TLS
    /// (`tls_client_auth`, `self_signed_tls_client_auth`): its HTTP client
    /// must present its certificate, and discovery uses the server's
    /// `mtls_endpoint_aliases`.
    pub fn is_mutual_tls(&self) -> bool {
        matches!(
            self,
            ClientAuth::TlsClientAuth { .. } | ClientAuth::SelfSignedTlsClientAuth { .. }
        )
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::ClientSecretBasic { client_id, .. }
            | ClientAuth::ClientSecretPost { client_id, .. }
            | ClientAuth::None { client_id }
            | ClientAuth::TlsClientAuth { client_id }
            | ClientAuth::SelfSignedTlsClientAuth { client_id } => client_id,
            ClientAuth::ClientSecretFrom { client_id, .. }
            | ClientAuth::ClientAssertion { client_id, .. } => client_id,
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt { client_id, .. }
            | ClientAuth::PrivateKeyJwtFrom { client_id, .. }
            | ClientAuth::ClientSecretJwt { client_id, .. }
            | ClientAuth::ClientSecretJwtFrom { client_id, .. } => client_id,
        }
    }

    /// The method's registered name (`client_secret_basic`, …).
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic { .. } => "client_secret_basic",
            ClientAuth::ClientSecretPost { .. } => "client_secret_post",
            ClientAuth::None { .. } => "none",
            ClientAuth::TlsClientAuth { .. } => "tls_client_auth",
            ClientAuth::SelfSignedTlsClientAuth { .. } => "self_signed_tls_client_auth",
            ClientAuth::ClientSecretFrom { post: false, .. } => "client_secret_basic",
            ClientAuth::ClientSecretFrom { post: true, .. } => "client_secret_post",
            // As the server sees it: RFC 7523 §2.2 names no method; OpenID
            // Connect calls a JWT assertion from the client private_key_jwt.
            ClientAuth::ClientAssertion { assertion_type, .. }
                if *assertion_type == JWT_SPIFFE_ASSERTION_TYPE =>
            {
                "spiffe_jwt"
            }
            ClientAuth::ClientAssertion { .. } => "private_key_jwt",
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt { .. } | ClientAuth::PrivateKeyJwtFrom { .. } => {
                "private_key_jwt"
            }
            #[cfg(feature = "jwt")]
            ClientAuth::ClientSecretJwt { .. } | ClientAuth::ClientSecretJwtFrom { .. } => {
                "client_secret_jwt"
            }
        }
    }

    /// No method sends an assertion without the `jwt` feature.
    #[cfg(not(feature = "jwt"))]
    pub(crate) fn assertion(&self, _: &TokenUrl) -> Result<Option<SecretString>, Error> {
        Ok(None)
    }

    /// Whether this method sends `client_assertion` and `client_assertion_type`.
    pub(super) fn sends_assertion(&self) -> bool {
        match self {
            ClientAuth::ClientAssertion { .. } => true,
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt { .. }
            | ClientAuth::PrivateKeyJwtFrom { .. }
            | ClientAuth::ClientSecretJwt { .. }
            | ClientAuth::ClientSecretJwtFrom { .. } => true,
            _ => false,
        }
    }

    /// The `Authorization` header value for `client_secret_basic`, marked
    /// sensitive: `Basic base64(urlencode(id) ":" urlencode(secret))`.
    pub fn basic_authorization(client_id: &str, client_secret: &SecretString) -> HeaderValue {
        let mut value = HeaderValue::try_from(format!(
            "Basic {}",
            basic_credentials(client_id, client_secret)
        ))
        .expect("base64 output is a valid header value");
        value.set_sensitive(true);
        value
    }

    /// Authenticates a token request (or a revocation request, RFC 7009
    /// §2.1): the `Authorization` header for `client_secret_basic`, or the
    /// client's parameters appended to `params` (RFC 6749 §2.3.1, §3.2.1;
    /// RFC 7521 §4.2 with `assertion`, made by [`ClientAuth::assertion`]).
    #[cfg_attr(not(feature = "jwt"), allow(unused_variables))]
    pub(crate) fn authenticate<'a>(
        &'a self,
        request: Builder,
        assertion: Option<&'a SecretString>,
        params: &mut Vec<(&'a str, &'a str)>,
    ) -> Builder {
        match self {
            ClientAuth::ClientSecretBasic {
                client_id,
                client_secret,
            } => {
                return request.header(
                    AUTHORIZATION,
                    ClientAuth::basic_authorization(client_id, client_secret),
                )
            }
            ClientAuth::ClientSecretPost {
                client_id,
                client_secret,
            } => {
                params.push(("client_id", client_id));
                params.push(("client_secret", client_secret.expose_secret()));
            }
            // Read by `read_credential` before the request is built; a
            // source not read sends no secret, and the server refuses it.
            ClientAuth::ClientSecretFrom {
                client_id,
                source,
                post,
            } => match (source.read_value(), post) {
                (Some(secret), false) => {
                    return request.header(
                        AUTHORIZATION,
                        ClientAuth::basic_authorization(client_id, secret),
                    )
                }
                (Some(secret), true) => {
                    params.push(("client_id", client_id));
                    params.push(("client_secret", secret.expose_secret()));
                }
                (None, _) => params.push(("client_id", client_id)),
            },
            ClientAuth::ClientAssertion {
                client_id,
                source,
                assertion_type,
            } => {
                params.push(("client_id", client_id));
                params.push(("client_assertion_type", assertion_type));
                if let Some(assertion) = source.read_value() {
                    params.push(("client_assertion", assertion.expose_secret()));
                }
            }
            // RFC 8705 §2: the certificate in the handshake is the proof.
            ClientAuth::None { client_id }
            | ClientAuth::TlsClientAuth { client_id }
            | ClientAuth::SelfSignedTlsClientAuth { client_id } => {
                params.push(("client_id", client_id))
            }
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt { client_id, .. }
            | ClientAuth::PrivateKeyJwtFrom { client_id, .. }
            | ClientAuth::ClientSecretJwt { client_id, .. }
            | ClientAuth::ClientSecretJwtFrom { client_id, .. } => {
                // RFC 7521 §4.2 makes `client_id` optional; some servers
                // (Microsoft Entra ID) require it, none refuses it.
                params.push(("client_id", client_id));
                params.push(("client_assertion_type", CLIENT_ASSERTION_TYPE));
                if let Some(assertion) = assertion {
                    params.push(("client_assertion", assertion.expose_secret()));
                }
            }
        }
        request
    }

    /// Every form in which this client's secret is sent, to scrub from error
    /// excerpts: the secret, and for `client_secret_basic` the base64
    /// credential too (a gateway that echoes the request's headers would
    /// show it, and it decodes to the secret).
    pub(crate) fn secrets(&self) -> Vec<Cow<'_, str>> {
        match self {
            ClientAuth::ClientSecretBasic {
                client_id,
                client_secret,
            } => vec![
                Cow::Borrowed(client_secret.expose_secret()),
                Cow::Owned(basic_credentials(client_id, client_secret)),
            ],
            ClientAuth::ClientSecretPost { client_secret, .. } => {
                vec![Cow::Borrowed(client_secret.expose_secret())]
            }
            ClientAuth::ClientSecretFrom {
                client_id,
                source,
                post,
            } => match (source.read_value(), post) {
                (Some(secret), false) => vec![
                    Cow::Borrowed(secret.expose_secret()),
                    Cow::Owned(basic_credentials(client_id, secret)),
                ],
                (Some(secret), true) => vec![Cow::Borrowed(secret.expose_secret())],
                (None, _) => Vec::new(),
            },
            ClientAuth::ClientAssertion { source, .. } => source
                .read_value()
                .map(|a| Cow::Borrowed(a.expose_secret()))
                .into_iter()
                .collect(),
            ClientAuth::None { .. }
            | ClientAuth::TlsClientAuth { .. }
            | ClientAuth::SelfSignedTlsClientAuth { .. } => Vec::new(),
            // The secret never leaves; the assertion is scrubbed by the
            // caller, which has the one that was sent.
            #[cfg(feature = "jwt")]
            ClientAuth::ClientSecretJwt { client_secret, .. } => {
                vec![Cow::Borrowed(client_secret.expose_secret())]
            }
            // Unread, it sends no assertion (`read_credential` makes it a
            // `ClientSecretJwt` first).
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt { .. }
            | ClientAuth::PrivateKeyJwtFrom { .. }
            | ClientAuth::ClientSecretJwtFrom { .. } => Vec::new(),
        }
    }
}

/// `base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(client_id: &str, client_secret: &SecretString) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String =
        form_urlencoded::byte_serialize(client_secret.expose_secret().as_bytes()).collect();
    STANDARD.encode(format!("{id}:{secret}"))
}
