//! [`ClientAuth`]: how the client authenticates to the token endpoint.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::request::Builder;
use http::HeaderValue;

use crate::secret::SecretString;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3,
/// OpenID Connect `token_endpoint_auth_method`).
///
/// For `private_key_jwt` or `client_secret_jwt` (RFC 7523 §2.2), use
/// [`ClientAuth::none`] and add `client_assertion_type` and
/// `client_assertion` with [`crate::TokenRequest::param`] and
/// [`crate::TokenRequest::secret_param`]; signing the assertion is up to you.
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

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::ClientSecretBasic { client_id, .. }
            | ClientAuth::ClientSecretPost { client_id, .. }
            | ClientAuth::None { client_id } => client_id,
        }
    }

    /// The method's registered name (`client_secret_basic`, …).
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic { .. } => "client_secret_basic",
            ClientAuth::ClientSecretPost { .. } => "client_secret_post",
            ClientAuth::None { .. } => "none",
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

    /// Authenticates a token request: the `Authorization` header for
    /// `client_secret_basic`, or the client's parameters appended to `params`
    /// (RFC 6749 §2.3.1, §3.2.1).
    pub(super) fn authenticate<'a>(
        &'a self,
        request: Builder,
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
            ClientAuth::None { client_id } => params.push(("client_id", client_id)),
        }
        request
    }

    /// Every form in which this client's secret is sent, to scrub from error
    /// excerpts: the secret, and for `client_secret_basic` the base64
    /// credential too (a gateway that echoes the request's headers would
    /// show it, and it decodes to the secret).
    pub(super) fn secrets(&self) -> Vec<Cow<'_, str>> {
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
            ClientAuth::None { .. } => Vec::new(),
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
