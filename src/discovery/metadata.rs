//! [`ProviderMetadata`]: a metadata document, read with serde and checked.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::mtls::{AliasesDocument, MtlsEndpointAliases};
use crate::endpoint::TokenEndpoint;
use crate::error::{sanitize, DiscoveryFailure, Error};
use crate::request::{ClientAuth, RevocationUrl, TokenUrl};
use crate::secret::SecretString;

/// An authorization server's metadata (RFC 8414 §2, OpenID Connect
/// Discovery §3), checked: the issuer is the one asked for and the token
/// endpoint is a usable [`TokenUrl`].
///
/// Endpoints other than the token endpoint are kept as the server sent
/// them, unchecked. A list the server did not publish is `None`; the
/// `supports_*` methods apply the RFC 8414 defaults for those.
#[derive(Clone, Debug)]
pub struct ProviderMetadata {
    issuer: String,
    token_endpoint: TokenUrl,
    authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    jwks_uri: Option<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    grant_types_supported: Option<Vec<String>>,
    scopes_supported: Option<Vec<String>>,
    response_types_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    dpop_signing_alg_values_supported: Option<Vec<String>>,
    mtls_endpoint_aliases: Option<MtlsEndpointAliases>,
    other: Map<String, Value>,
}

impl ProviderMetadata {
    /// Parses and checks a metadata document fetched for `expected_issuer`
    /// (for callers with their own transport, or metadata kept on disk).
    ///
    /// ```
    /// use tower_oauth2::discovery::ProviderMetadata;
    /// use tower_oauth2::error::DiscoveryFailure;
    ///
    /// let doc = br#"{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token"}"#;
    /// let m = ProviderMetadata::from_json("https://as.example.com", doc)?;
    /// assert_eq!(m.token_endpoint().to_string(), "https://as.example.com/token");
    ///
    /// let err = ProviderMetadata::from_json("https://other.example.com", doc).unwrap_err();
    /// assert_eq!(err.discovery_failure(), Some(DiscoveryFailure::IssuerMismatch));
    /// # Ok::<(), tower_oauth2::Error>(())
    /// ```
    pub fn from_json(expected_issuer: &str, json: &[u8]) -> Result<Self, Error> {
        match serde_json::from_slice::<Value>(json) {
            Ok(Value::Object(map)) => Self::from_object(expected_issuer, map, None),
            Ok(_) => Err(invalid_metadata(None, "the metadata is not a JSON object")),
            Err(e) => Err(invalid_metadata(
                None,
                format!("the metadata is not valid JSON ({e})"),
            )),
        }
    }

    /// Reads and checks the JSON object fetched from `url` (none when the
    /// caller fetched it) for `expected_issuer`.
    pub(super) fn from_object(
        expected_issuer: &str,
        object: Map<String, Value>,
        url: Option<&str>,
    ) -> Result<Self, Error> {
        let document: Document = serde_json::from_value(Value::Object(object))
            .map_err(|e| invalid_metadata(url, format!("the metadata cannot be read ({e})")))?;
        document.check(expected_issuer, url)
    }

    /// The issuer identifier (equal to the one asked for).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> &TokenUrl {
        &self.token_endpoint
    }

    /// `authorization_endpoint`, as sent.
    pub fn authorization_endpoint(&self) -> Option<&str> {
        self.authorization_endpoint.as_deref()
    }

    /// `revocation_endpoint` (RFC 7009), as sent.
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }

    /// `introspection_endpoint` (RFC 7662), as sent.
    pub fn introspection_endpoint(&self) -> Option<&str> {
        self.introspection_endpoint.as_deref()
    }

    /// `jwks_uri`, as sent.
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref()
    }

    /// `token_endpoint_auth_methods_supported`, if sent (RFC 8414 §2: when
    /// absent, `client_secret_basic` is the default).
    pub fn token_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        self.token_endpoint_auth_methods_supported.as_deref()
    }

    /// `grant_types_supported`, if sent (RFC 8414 §2: when absent,
    /// `authorization_code` and `implicit`).
    pub fn grant_types_supported(&self) -> Option<&[String]> {
        self.grant_types_supported.as_deref()
    }

    /// `scopes_supported`, if sent (a server may support scopes it does not
    /// list).
    pub fn scopes_supported(&self) -> Option<&[String]> {
        self.scopes_supported.as_deref()
    }

    /// `response_types_supported`, if sent.
    pub fn response_types_supported(&self) -> Option<&[String]> {
        self.response_types_supported.as_deref()
    }

    /// `code_challenge_methods_supported` (PKCE), if sent.
    pub fn code_challenge_methods_supported(&self) -> Option<&[String]> {
        self.code_challenge_methods_supported.as_deref()
    }

    /// `dpop_signing_alg_values_supported` (RFC 9449 §5.1), if sent: the
    /// algorithms the server takes DPoP proofs signed with.
    pub fn dpop_signing_alg_values_supported(&self) -> Option<&[String]> {
        self.dpop_signing_alg_values_supported.as_deref()
    }

    /// `mtls_endpoint_aliases` (RFC 8705 §5), if sent: the endpoints for
    /// clients that present a certificate.
    pub fn mtls_endpoint_aliases(&self) -> Option<&MtlsEndpointAliases> {
        self.mtls_endpoint_aliases.as_ref()
    }

    /// The token endpoint for `client`: the `mtls_endpoint_aliases` one
    /// when the client authenticates with mutual TLS
    /// ([`ClientAuth::is_mutual_tls`]) and the server published one
    /// (RFC 8705 §5), else `token_endpoint`.
    ///
    /// A client that authenticates otherwise but presents a certificate to
    /// have its tokens bound to it (RFC 8705 §3) takes the alias itself:
    /// `mtls_endpoint_aliases().and_then(|a| a.token_endpoint())`.
    pub fn token_endpoint_for(&self, client: &ClientAuth) -> &TokenUrl {
        self.mtls_alias(client, MtlsEndpointAliases::token_endpoint)
            .unwrap_or(&self.token_endpoint)
    }

    /// The revocation endpoint for `client`, chosen as
    /// [`ProviderMetadata::token_endpoint_for`] chooses.
    pub fn revocation_endpoint_for(&self, client: &ClientAuth) -> Option<&str> {
        self.mtls_alias(client, MtlsEndpointAliases::revocation_endpoint)
            .or(self.revocation_endpoint())
    }

    /// The introspection endpoint for `client`, chosen as
    /// [`ProviderMetadata::token_endpoint_for`] chooses.
    pub fn introspection_endpoint_for(&self, client: &ClientAuth) -> Option<&str> {
        self.mtls_alias(client, MtlsEndpointAliases::introspection_endpoint)
            .or(self.introspection_endpoint())
    }

    /// The alias `pick` takes, for a client using mutual TLS.
    fn mtls_alias<'a, T: ?Sized>(
        &'a self,
        client: &ClientAuth,
        pick: impl FnOnce(&'a MtlsEndpointAliases) -> Option<&'a T>,
    ) -> Option<&'a T> {
        let aliases = self.mtls_endpoint_aliases.as_ref();
        aliases.filter(|_| client.is_mutual_tls()).and_then(pick)
    }

    /// Every other member of the document, as sent.
    pub fn other(&self) -> &Map<String, Value> {
        &self.other
    }

    /// Whether the token endpoint accepts client authentication `method`
    /// (`client_secret_basic`, `private_key_jwt`…), taking RFC 8414's
    /// default when the server lists none.
    pub fn supports_client_auth(&self, method: &str) -> bool {
        match &self.token_endpoint_auth_methods_supported {
            Some(methods) => methods.iter().any(|m| m == method),
            None => method == "client_secret_basic",
        }
    }

    /// Whether the server supports `grant_type`, taking RFC 8414's default
    /// (`authorization_code`, `implicit`) when it lists none. Many servers
    /// leave grants out of the list; use this for diagnostics rather than
    /// to refuse to try.
    pub fn supports_grant_type(&self, grant_type: &str) -> bool {
        match &self.grant_types_supported {
            Some(grants) => grants.iter().any(|g| g == grant_type),
            None => matches!(grant_type, "authorization_code" | "implicit"),
        }
    }

    /// Client authentication with a client secret, in a style the server
    /// supports: `client_secret_basic` if it does (also when it lists no
    /// methods, RFC 8414's default), else `client_secret_post`; otherwise a
    /// [`DiscoveryFailure::UnsupportedClientAuth`] error.
    pub fn client_secret_auth(
        &self,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Result<ClientAuth, Error> {
        if self.supports_client_auth("client_secret_basic") {
            Ok(ClientAuth::client_secret_basic(client_id, client_secret))
        } else if self.supports_client_auth("client_secret_post") {
            Ok(ClientAuth::client_secret_post(client_id, client_secret))
        } else {
            Err(self.unsupported_client_auth(format!(
                "the token endpoint takes neither client_secret_basic nor \
                 client_secret_post ({})",
                self.listed_auth_methods()
            )))
        }
    }

    /// Checks a `private_key_jwt` or `client_secret_jwt` client against
    /// this server and makes the issuer its assertions' audience (see
    /// [`ClientAuth::assertion_audience`]): the server must list the method
    /// (RFC 8414 `token_endpoint_auth_methods_supported`) and, when it
    /// lists algorithms (`token_endpoint_auth_signing_alg_values_supported`),
    /// the key's. Otherwise a [`DiscoveryFailure::UnsupportedClientAuth`]
    /// error. Other clients are returned as they are if the server lists
    /// their method.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_client_auth(&self, client: ClientAuth) -> Result<ClientAuth, Error> {
        let method = client.method_name();
        if !self.supports_client_auth(method) {
            return Err(self.unsupported_client_auth(format!(
                "the token endpoint does not take {method} ({})",
                self.listed_auth_methods()
            )));
        }
        let Some(alg) = client.assertion_algorithm() else {
            return Ok(client);
        };
        let algs = self
            .other
            .get("token_endpoint_auth_signing_alg_values_supported");
        if let Some(Value::Array(algs)) = algs {
            if !algs.iter().any(|a| a == alg.as_str()) {
                return Err(self.unsupported_client_auth(format!(
                    "the token endpoint does not take {alg} assertions \
                     (token_endpoint_auth_signing_alg_values_supported: {})",
                    sanitize(&Value::Array(algs.clone()).to_string(), 120)
                )));
            }
        }
        Ok(client.assertion_audience(self.issuer.clone()))
    }

    /// The client authentication methods the server lists, for messages.
    fn listed_auth_methods(&self) -> String {
        match &self.token_endpoint_auth_methods_supported {
            Some(methods) => {
                let methods: Vec<String> = methods.iter().map(|m| sanitize(m, 50)).collect();
                format!("it lists: {}", methods.join(", "))
            }
            None => "it lists none, so RFC 8414's default, client_secret_basic, applies".into(),
        }
    }

    fn unsupported_client_auth(&self, detail: String) -> Error {
        Error::discovery(
            DiscoveryFailure::UnsupportedClientAuth,
            Some(&self.issuer),
            detail,
        )
    }

    /// The [`TokenEndpoint`] at this server's token endpoint, authenticating
    /// as `client`, over `service`: the `mtls_endpoint_aliases` one for a
    /// client using mutual TLS ([`ProviderMetadata::token_endpoint_for`]);
    /// with the server's revocation endpoint
    /// ([`ProviderMetadata::revocation_endpoint_for`]) as its
    /// [`TokenEndpoint::revocation_url`] when it lists one that is a usable
    /// [`RevocationUrl`] (one that is not is logged at WARN and left out:
    /// [`crate::TokenCache::revoke`] then fails with
    /// [`crate::ErrorKind::NoRevocationEndpoint`]).
    pub fn endpoint<S>(&self, service: S, client: ClientAuth) -> TokenEndpoint<S> {
        let revocation = self
            .revocation_endpoint_for(&client)
            .map(RevocationUrl::new);
        let url = self.token_endpoint_for(&client).clone();
        let endpoint = TokenEndpoint::new(service, url, client);
        match revocation {
            Some(Ok(url)) => endpoint.revocation_url(url),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the metadata's revocation_endpoint is not used");
                endpoint
            }
            None => endpoint,
        }
    }
}

/// A metadata document as serde reads it: the members this crate reads,
/// each of the JSON type it must have or marked as mistyped (`null` is
/// absent), and all the others.
#[derive(Deserialize)]
struct Document {
    issuer: Option<Member<String>>,
    token_endpoint: Option<Member<String>>,
    authorization_endpoint: Option<Member<String>>,
    revocation_endpoint: Option<Member<String>>,
    introspection_endpoint: Option<Member<String>>,
    jwks_uri: Option<Member<String>>,
    token_endpoint_auth_methods_supported: Option<Member<Vec<String>>>,
    grant_types_supported: Option<Member<Vec<String>>>,
    scopes_supported: Option<Member<Vec<String>>>,
    response_types_supported: Option<Member<Vec<String>>>,
    code_challenge_methods_supported: Option<Member<Vec<String>>>,
    dpop_signing_alg_values_supported: Option<Member<Vec<String>>>,
    mtls_endpoint_aliases: Option<Member<AliasesDocument>>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// One member as sent: of the type it must have, or of another.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Member<T> {
    Typed(T),
    Mistyped(IgnoredAny),
}

impl Document {
    /// The checks of RFC 8414 §3.3 and the types of §2, in member order.
    fn check(self, expected_issuer: &str, url: Option<&str>) -> Result<ProviderMetadata, Error> {
        let issuer = check_issuer(self.issuer, expected_issuer, url)?;
        let token_endpoint = check_token_endpoint(self.token_endpoint, url)?;
        let text = |member, key| typed(member, key, "a string", url);
        let list = |member, key| typed(member, key, "a list of strings", url);
        Ok(ProviderMetadata {
            issuer,
            token_endpoint,
            authorization_endpoint: text(self.authorization_endpoint, "authorization_endpoint")?,
            revocation_endpoint: text(self.revocation_endpoint, "revocation_endpoint")?,
            introspection_endpoint: text(self.introspection_endpoint, "introspection_endpoint")?,
            jwks_uri: text(self.jwks_uri, "jwks_uri")?,
            token_endpoint_auth_methods_supported: list(
                self.token_endpoint_auth_methods_supported,
                "token_endpoint_auth_methods_supported",
            )?,
            grant_types_supported: list(self.grant_types_supported, "grant_types_supported")?,
            scopes_supported: list(self.scopes_supported, "scopes_supported")?,
            response_types_supported: list(
                self.response_types_supported,
                "response_types_supported",
            )?,
            code_challenge_methods_supported: list(
                self.code_challenge_methods_supported,
                "code_challenge_methods_supported",
            )?,
            dpop_signing_alg_values_supported: list(
                self.dpop_signing_alg_values_supported,
                "dpop_signing_alg_values_supported",
            )?,
            mtls_endpoint_aliases: typed(
                self.mtls_endpoint_aliases,
                "mtls_endpoint_aliases",
                "an object",
                url,
            )?
            .map(|aliases| aliases.check(url))
            .transpose()?,
            other: self.other,
        })
    }
}

/// RFC 8414 §3.3: the issuer must be identical to the one the metadata URL
/// was built from, or the metadata must not be used.
fn check_issuer(
    member: Option<Member<String>>,
    expected: &str,
    url: Option<&str>,
) -> Result<String, Error> {
    let detail = match member {
        Some(Member::Typed(issuer)) if issuer == expected => return Ok(issuer),
        Some(Member::Typed(issuer)) => format!(
            "the metadata is for issuer {:?}, not {:?}, so it is not used (RFC 8414 §3.3)",
            sanitize(&issuer, 200),
            sanitize(expected, 200)
        ),
        _ => format!(
            "the metadata names no issuer (expected {:?}), so it is not used",
            sanitize(expected, 200)
        ),
    };
    Err(Error::discovery(
        DiscoveryFailure::IssuerMismatch,
        url,
        detail,
    ))
}

/// The `token_endpoint`: present, and a usable [`TokenUrl`].
fn check_token_endpoint(
    member: Option<Member<String>>,
    url: Option<&str>,
) -> Result<TokenUrl, Error> {
    let Some(endpoint) = typed(member, "token_endpoint", "a string", url)? else {
        return Err(Error::discovery(
            DiscoveryFailure::MissingTokenEndpoint,
            url,
            "the metadata has no token_endpoint",
        ));
    };
    token_url(&endpoint, "token_endpoint", url)
}

/// The token endpoint `endpoint` sent as member `key`, if it is a usable
/// [`TokenUrl`].
pub(super) fn token_url(endpoint: &str, key: &str, url: Option<&str>) -> Result<TokenUrl, Error> {
    TokenUrl::new(endpoint).map_err(|e| {
        Error::discovery(
            DiscoveryFailure::InvalidTokenEndpoint,
            url,
            format!(
                "{key} {:?} is not usable: {}",
                sanitize(endpoint, 200),
                e.invalid_request_reason().unwrap_or("invalid URL")
            ),
        )
    })
}

/// The value of the member `key`, if sent, or an error saying it is not
/// `what` it must be.
pub(super) fn typed<T>(
    member: Option<Member<T>>,
    key: &str,
    what: &str,
    url: Option<&str>,
) -> Result<Option<T>, Error> {
    match member {
        None => Ok(None),
        Some(Member::Typed(value)) => Ok(Some(value)),
        Some(Member::Mistyped(_)) => Err(invalid_metadata(url, format!("{key} is not {what}"))),
    }
}

fn invalid_metadata(url: Option<&str>, detail: impl Into<String>) -> Error {
    Error::discovery(DiscoveryFailure::InvalidMetadata, url, detail)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A document for `https://as.example.com` with `extra` members.
    pub(crate) fn doc(extra: &str) -> String {
        format!(
            r#"{{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token"{extra}}}"#
        )
    }

    #[test]
    fn parses_the_typed_members_and_keeps_the_rest() {
        let json = doc(
            r#","authorization_endpoint":"https://as.example.com/authorize",
               "revocation_endpoint":"https://as.example.com/revoke",
               "introspection_endpoint":"https://as.example.com/introspect",
               "jwks_uri":"https://as.example.com/jwks",
               "token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_post"],
               "grant_types_supported":["client_credentials"],
               "scopes_supported":["orders:read"],
               "response_types_supported":["code"],
               "code_challenge_methods_supported":["S256"],
               "userinfo_endpoint":"https://as.example.com/userinfo",
               "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.as.example.com/token"},
               "registration_endpoint":null"#,
        );
        let m = ProviderMetadata::from_json("https://as.example.com", json.as_bytes()).unwrap();
        assert_eq!(m.issuer(), "https://as.example.com");
        assert_eq!(
            m.token_endpoint().to_string(),
            "https://as.example.com/token"
        );
        assert_eq!(
            m.authorization_endpoint(),
            Some("https://as.example.com/authorize")
        );
        assert_eq!(
            m.revocation_endpoint(),
            Some("https://as.example.com/revoke")
        );
        assert_eq!(
            m.introspection_endpoint(),
            Some("https://as.example.com/introspect")
        );
        assert_eq!(m.jwks_uri(), Some("https://as.example.com/jwks"));
        assert_eq!(
            m.token_endpoint_auth_methods_supported().unwrap(),
            ["private_key_jwt", "client_secret_post"]
        );
        assert_eq!(m.grant_types_supported().unwrap(), ["client_credentials"]);
        assert_eq!(m.scopes_supported().unwrap(), ["orders:read"]);
        assert_eq!(m.response_types_supported().unwrap(), ["code"]);
        assert_eq!(m.code_challenge_methods_supported().unwrap(), ["S256"]);
        let mut other: Vec<_> = m.other().keys().map(String::as_str).collect();
        other.sort_unstable();
        // mtls_endpoint_aliases is a typed member (see the mtls tests).
        assert_eq!(other, ["registration_endpoint", "userinfo_endpoint"]);
        let aliases = m.mtls_endpoint_aliases().unwrap();
        assert_eq!(
            aliases.token_endpoint().unwrap().to_string(),
            "https://mtls.as.example.com/token"
        );
        assert!(m.supports_grant_type("client_credentials"));
        assert!(!m.supports_grant_type("authorization_code"));
        assert!(!m.supports_client_auth("client_secret_basic"));
        let auth = m.client_secret_auth("id", "s3cret").unwrap();
        assert_eq!(auth.method_name(), "client_secret_post");
        let shown = format!("{m:?}");
        assert!(shown.contains("userinfo_endpoint"), "{shown}");
    }

    #[test]
    fn the_endpoint_carries_a_usable_revocation_endpoint() {
        let metadata = |extra: &str| {
            ProviderMetadata::from_json("https://as.example.com", doc(extra).as_bytes()).unwrap()
        };
        let client = || ClientAuth::none("svc");
        let m = metadata(r#","revocation_endpoint":"https://as.example.com/revoke""#);
        let endpoint = m.endpoint((), client());
        assert_eq!(
            endpoint.revocation_endpoint().map(ToString::to_string),
            Some("https://as.example.com/revoke".to_owned())
        );
        assert_eq!(endpoint.url().to_string(), "https://as.example.com/token");
        // Clear text off loopback, or none at all: no revocation endpoint,
        // and the token endpoint as ever.
        for extra in [
            r#","revocation_endpoint":"http://as.example.com/revoke""#,
            "",
        ] {
            let endpoint = metadata(extra).endpoint((), client());
            assert!(endpoint.revocation_endpoint().is_none(), "{extra}");
            assert_eq!(endpoint.url().to_string(), "https://as.example.com/token");
        }
    }

    #[test]
    fn rfc_8414_defaults_when_lists_are_absent() {
        let m = ProviderMetadata::from_json("https://as.example.com", doc("").as_bytes()).unwrap();
        assert_eq!(m.token_endpoint_auth_methods_supported(), None);
        assert_eq!(m.grant_types_supported(), None);
        assert!(m.supports_client_auth("client_secret_basic"));
        assert!(!m.supports_client_auth("client_secret_post"));
        assert!(m.supports_grant_type("authorization_code"));
        assert!(!m.supports_grant_type("client_credentials"));
        assert_eq!(
            m.client_secret_auth("id", "s").unwrap().method_name(),
            "client_secret_basic"
        );
        assert!(m.other().is_empty());
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_client_auth_checks_method_and_algorithm_and_sets_the_issuer() {
        use crate::jose::{Algorithm, SigningKey};
        let key =
            SigningKey::from_pem(Algorithm::ES256, include_str!("../testdata/p256.pem")).unwrap();
        let metadata = |extra: &str| {
            ProviderMetadata::from_json("https://as.example.com", doc(extra).as_bytes()).unwrap()
        };
        let m = metadata(
            r#","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_jwt"],
               "token_endpoint_auth_signing_alg_values_supported":["ES256","HS256"]"#,
        );
        let client = m
            .jwt_client_auth(ClientAuth::private_key_jwt("svc", key.clone()))
            .unwrap();
        let ClientAuth::PrivateKeyJwt { assertion, .. } = &client else {
            panic!("{client:?}");
        };
        assert_eq!(assertion.audience(), Some("https://as.example.com"));
        let hs = ClientAuth::client_secret_jwt("svc", "0123456789abcdef0123456789abcdef");
        assert!(m.jwt_client_auth(hs.unwrap()).is_ok());
        // A server that lists no algorithms takes the key's.
        let m = metadata(r#","token_endpoint_auth_methods_supported":["private_key_jwt"]"#);
        assert!(m
            .jwt_client_auth(ClientAuth::private_key_jwt("svc", key.clone()))
            .is_ok());

        let m = metadata(
            r#","token_endpoint_auth_methods_supported":["private_key_jwt"],
               "token_endpoint_auth_signing_alg_values_supported":["RS256","PS256"]"#,
        );
        let e = m
            .jwt_client_auth(ClientAuth::private_key_jwt("svc", key.clone()))
            .unwrap_err();
        assert_unsupported_client_auth(
            &e,
            "authorization server discovery failed at https://as.example.com: the token \
             endpoint does not take ES256 assertions \
             (token_endpoint_auth_signing_alg_values_supported: [\"RS256\",\"PS256\"])",
        );
        let e = metadata("")
            .jwt_client_auth(ClientAuth::private_key_jwt("svc", key))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://as.example.com: the token \
             endpoint does not take private_key_jwt (it lists none, so RFC 8414's default, \
             client_secret_basic, applies)"
        );
    }

    /// `e` is an `UnsupportedClientAuth` failure that says `message`.
    fn assert_unsupported_client_auth(e: &Error, message: &str) {
        assert_eq!(
            e.discovery_failure(),
            Some(DiscoveryFailure::UnsupportedClientAuth)
        );
        assert_eq!(e.to_string(), message);
    }

    #[test]
    fn unsupported_client_auth_is_a_typed_error() {
        let m = ProviderMetadata::from_json(
            "https://as.example.com",
            doc(
                r#","token_endpoint_auth_methods_supported":["private_key_jwt","tls_client_auth"]"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let e = m.client_secret_auth("id", "pa55word").unwrap_err();
        assert_unsupported_client_auth(
            &e,
            "authorization server discovery failed at https://as.example.com: the token \
             endpoint takes neither client_secret_basic nor client_secret_post (it lists: \
             private_key_jwt, tls_client_auth)",
        );
        assert!(!format!("{e:?}").contains("pa55word"));
    }

    #[test]
    fn mutual_tls_clients_take_the_mtls_endpoint_aliases() {
        let m = ProviderMetadata::from_json(
            "https://as.example.com",
            doc(r#","revocation_endpoint":"https://as.example.com/revoke",
                   "introspection_endpoint":"https://as.example.com/introspect",
                   "mtls_endpoint_aliases":{
                     "token_endpoint":"https://mtls.as.example.com/token",
                     "introspection_endpoint":"https://mtls.as.example.com/introspect",
                     "userinfo_endpoint":"https://mtls.as.example.com/userinfo"}"#)
            .as_bytes(),
        )
        .unwrap();
        let aliases = m.mtls_endpoint_aliases().unwrap();
        assert_eq!(aliases.revocation_endpoint(), None);
        assert_eq!(
            aliases.introspection_endpoint(),
            Some("https://mtls.as.example.com/introspect")
        );
        assert_eq!(
            aliases.other().keys().collect::<Vec<_>>(),
            ["userinfo_endpoint"]
        );
        let endpoints = |client: &ClientAuth| {
            (
                m.token_endpoint_for(client).to_string(),
                m.revocation_endpoint_for(client),
                m.introspection_endpoint_for(client),
                m.endpoint((), client.clone()).url().to_string(),
            )
        };
        for mtls in [
            ClientAuth::tls_client_auth("svc"),
            ClientAuth::self_signed_tls_client_auth("svc"),
        ] {
            assert_eq!(
                endpoints(&mtls),
                (
                    "https://mtls.as.example.com/token".to_owned(),
                    // No alias: the ordinary endpoint (RFC 8705 §5).
                    Some("https://as.example.com/revoke"),
                    Some("https://mtls.as.example.com/introspect"),
                    "https://mtls.as.example.com/token".to_owned(),
                )
            );
        }
        for other in [
            ClientAuth::client_secret_basic("svc", "s3cret"),
            ClientAuth::none("svc"),
        ] {
            assert_eq!(
                endpoints(&other),
                (
                    "https://as.example.com/token".to_owned(),
                    Some("https://as.example.com/revoke"),
                    Some("https://as.example.com/introspect"),
                    "https://as.example.com/token".to_owned(),
                )
            );
        }

        // Without aliases, every client takes the ordinary endpoints.
        let m = ProviderMetadata::from_json("https://as.example.com", doc("").as_bytes()).unwrap();
        assert!(m.mtls_endpoint_aliases().is_none());
        let mtls = ClientAuth::tls_client_auth("svc");
        assert_eq!(
            m.token_endpoint_for(&mtls).to_string(),
            "https://as.example.com/token"
        );
        assert_eq!(m.revocation_endpoint_for(&mtls), None);
    }

    #[test]
    fn unusable_mtls_endpoint_aliases_are_refused() {
        let cases = [
            (
                r#","mtls_endpoint_aliases":["https://mtls.as.example.com/token"]"#,
                DiscoveryFailure::InvalidMetadata,
                "authorization server discovery failed: mtls_endpoint_aliases is not an object",
            ),
            (
                r#","mtls_endpoint_aliases":{"token_endpoint":"http://mtls.as.example.com/token"}"#,
                DiscoveryFailure::InvalidTokenEndpoint,
                "authorization server discovery failed: mtls_endpoint_aliases.token_endpoint \
                 \"http://mtls.as.example.com/token\" is not usable: token URL must be https \
                 (http is accepted only on loopback, or with TokenUrl::new_allow_http)",
            ),
            (
                r#","mtls_endpoint_aliases":{"token_endpoint":7}"#,
                DiscoveryFailure::InvalidMetadata,
                "authorization server discovery failed: mtls_endpoint_aliases.token_endpoint \
                 is not a string",
            ),
            (
                r#","mtls_endpoint_aliases":{"revocation_endpoint":["x"]}"#,
                DiscoveryFailure::InvalidMetadata,
                "authorization server discovery failed: \
                 mtls_endpoint_aliases.revocation_endpoint is not a string",
            ),
        ];
        for (extra, failure, message) in cases {
            let e = ProviderMetadata::from_json("https://as.example.com", doc(extra).as_bytes())
                .unwrap_err();
            assert_eq!(e.discovery_failure(), Some(failure), "{extra}");
            assert_eq!(e.to_string(), message);
        }
        // null is absent, as for every member.
        let m = ProviderMetadata::from_json(
            "https://as.example.com",
            doc(r#","mtls_endpoint_aliases":null"#).as_bytes(),
        )
        .unwrap();
        assert!(m.mtls_endpoint_aliases().is_none());
    }

    #[test]
    fn refused_documents() {
        let issuer = "https://as.example.com";
        let cases: [(&str, DiscoveryFailure, &str); 9] = [
            (
                r#"{"issuer":"https://evil.example.com","token_endpoint":"https://evil.example.com/token"}"#,
                DiscoveryFailure::IssuerMismatch,
                "authorization server discovery failed: the metadata is for issuer \
                 \"https://evil.example.com\", not \"https://as.example.com\", so it is not used \
                 (RFC 8414 §3.3)",
            ),
            (
                r#"{"issuer":"https://as.example.com/","token_endpoint":"https://as.example.com/token"}"#,
                DiscoveryFailure::IssuerMismatch,
                "",
            ),
            (
                r#"{"token_endpoint":"https://as.example.com/token"}"#,
                DiscoveryFailure::IssuerMismatch,
                "authorization server discovery failed: the metadata names no issuer \
                 (expected \"https://as.example.com\"), so it is not used",
            ),
            (
                r#"{"issuer":"https://as.example.com"}"#,
                DiscoveryFailure::MissingTokenEndpoint,
                "authorization server discovery failed: the metadata has no token_endpoint",
            ),
            (
                r#"{"issuer":"https://as.example.com","token_endpoint":"http://as.example.com/token"}"#,
                DiscoveryFailure::InvalidTokenEndpoint,
                "authorization server discovery failed: token_endpoint \
                 \"http://as.example.com/token\" is not usable: token URL must be https \
                 (http is accepted only on loopback, or with TokenUrl::new_allow_http)",
            ),
            (
                r#"{"issuer":"https://as.example.com","token_endpoint":"/token"}"#,
                DiscoveryFailure::InvalidTokenEndpoint,
                "",
            ),
            (
                r#"{"issuer":"https://as.example.com","token_endpoint":42}"#,
                DiscoveryFailure::InvalidMetadata,
                "authorization server discovery failed: token_endpoint is not a string",
            ),
            (
                &doc(r#","grant_types_supported":"client_credentials""#),
                DiscoveryFailure::InvalidMetadata,
                "authorization server discovery failed: grant_types_supported is not a list \
                 of strings",
            ),
            (
                r#"["not", "an", "object"]"#,
                DiscoveryFailure::InvalidMetadata,
                "authorization server discovery failed: the metadata is not a JSON object",
            ),
        ];
        for (json, failure, message) in cases {
            let e = ProviderMetadata::from_json(issuer, json.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Discovery, "{json}");
            assert_eq!(e.discovery_failure(), Some(failure), "{json}");
            assert!(!e.is_retryable(), "{json}");
            if !message.is_empty() {
                assert_eq!(e.to_string(), message);
            }
        }
    }
}
