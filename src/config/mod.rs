//! One client configuration from environment variables (the way a
//! Kubernetes deployment sets them) or from a configuration file (serde),
//! made into a [`TokenCache`] in one call.
//!
//! | Variable (setting) | Meaning |
//! |---|---|
//! | `OAUTH2_TOKEN_URL` (`token_url`) | the token endpoint (`https`, `http` on loopback only); this or `OAUTH2_ISSUER` is required |
//! | `OAUTH2_ISSUER` (`issuer`) | instead: the issuer, whose metadata (OpenID Connect Discovery, RFC 8414) names the token endpoint; see [`ClientConfig::discover`] |
//! | `OAUTH2_CLIENT_ID` (`client_id`) | the client id (required) |
//! | `OAUTH2_AUTH` (`auth`) | `basic` (`client_secret_basic`), `post`, `none`, `client_secret_jwt`, `private_key_jwt` (an assertion from `OAUTH2_CLIENT_ASSERTION_FILE`, or signed with `OAUTH2_KEY_FILE`) or `spiffe_jwt` (an assertion from `OAUTH2_CLIENT_ASSERTION_FILE`); default `private_key_jwt` when either file is set, `basic` otherwise |
//! | `OAUTH2_CLIENT_SECRET` (`client_secret`) | the client secret, for `basic`, `post` and `client_secret_jwt` (line breaks at its end cut off, as from a file) |
//! | `OAUTH2_CLIENT_SECRET_FILE` (`client_secret_file`) | instead: a file holding it, read for every token request (a mounted secret; the line breaks at its end are cut off) |
//! | `OAUTH2_CLIENT_ASSERTION_FILE` (`client_assertion_file`) | a file holding the client assertion (a projected service-account token, a SPIFFE JWT-SVID), read for every token request |
//! | `OAUTH2_KEY_FILE` (`key_file`) | a file holding the private key (PEM) that signs `private_key_jwt` assertions, read for every token request (feature `jwt`) |
//! | `OAUTH2_KEY_ALG` (`key_alg`) | its algorithm: `ES256` (default), `EdDSA`, `RS256` or `PS256` (feature `jwt-rsa`) |
//! | `OAUTH2_KEY_ID` (`key_id`) | the `kid` sent in each assertion's header |
//! | `OAUTH2_DPOP_KEY_FILE` (`dpop_key_file`) | a file holding a DPoP private key (PEM or a private JWK): tokens are bound to it and every request carries a proof (RFC 9449); the file is read again when it changes, and a new key gets its own token with no failed request (feature `dpop`; see `dpop::DpopKeys::from_file`) |
//! | `OAUTH2_SCOPE` (`scope`) | the scopes, space-separated (a list in a file) |
//! | `OAUTH2_AUDIENCE` (`audience`) | an `audience` parameter |
//! | `OAUTH2_RESOURCE` (`resource`) | RFC 8707 `resource` indicators, space-separated (a list in a file) |
//! | `OAUTH2_TIMEOUT` (`timeout`) | seconds allowed for one token request (default 30) |
//! | `OAUTH2_REDIS_URL` (`redis_url`) | share tokens with the fleet through this Redis (`redis://`, `rediss://`; several URLs, space-separated: a Redis Cluster's nodes) (feature `redis`) |
//! | `OAUTH2_REDIS_KEY` (`redis_key`) | encrypts the tokens there: standard base64 of 32 bytes |
//! | `OAUTH2_REDIS_LEASE` (`redis_lease`) | seconds one process's token fetch holds the fleet's lease at most |
//! | `OAUTH2_REDIS_TIMEOUT` (`redis_timeout`) | milliseconds allowed for one Redis call (default 500) |
//!
//! An empty variable counts as unset; the line breaks at the end of a
//! value (a Kubernetes secret or config map made with `echo` has one) are
//! cut off. A missing or malformed variable is a
//! [`ConfigError`] that names the variable and what it expects, never the
//! value it holds; `Debug` of a [`ClientConfig`] shows no secret, key or
//! Redis URL. A variable whose feature is off is refused by name, not
//! ignored.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::config::ClientConfig;
//!
//! // `ClientConfig::from_env()` reads the process's environment; `from_vars`
//! // takes any lookup, here a Kubernetes deployment's `env:` as a list.
//! let env = [
//!     ("OAUTH2_TOKEN_URL", "https://login.example.com/oauth2/token"),
//!     ("OAUTH2_CLIENT_ID", "svc-orders"),
//!     ("OAUTH2_CLIENT_SECRET_FILE", "/var/run/secrets/oauth2/client-secret"),
//!     ("OAUTH2_SCOPE", "inventory:read"),
//! ];
//! let lookup = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
//! let config = ClientConfig::from_vars(lookup)?;
//! assert_eq!(config.client_auth().method_name(), "client_secret_basic");
//! assert_eq!(
//!     config.token_url().map(|u| u.to_string()).as_deref(),
//!     Some("https://login.example.com/oauth2/token")
//! );
//!
//! let err = ClientConfig::from_vars(|_| None).unwrap_err();
//! assert_eq!(err.variable(), "OAUTH2_TOKEN_URL");
//! # Ok::<(), tower_oauth2::config::ConfigError>(())
//! ```
//!
//! With a running Tokio runtime, `config.cache(http_client)?` gives the
//! [`TokenCache`] for an [`crate::OAuth2Layer`]; with `OAUTH2_ISSUER`,
//! `config.discover(http_client.clone()).await?` first.
//!
//! # From a configuration file
//!
//! [`ClientConfig`] implements `serde::Deserialize`: a map whose keys are
//! the settings in parentheses above, each a string (a number for the
//! timeouts and the lease; a list of strings for `scope` and `resource`).
//! An unknown key is an error naming it.
//!
//! ```
//! use tower_oauth2::config::ClientConfig;
//!
//! let config: ClientConfig = serde_json::from_str(r#"{
//!     "issuer": "https://login.example.com",
//!     "client_id": "svc-orders",
//!     "auth": "private_key_jwt",
//!     "client_assertion_file": "/var/run/secrets/tokens/oauth2",
//!     "scope": ["inventory:read", "orders:write"],
//!     "timeout": 10
//! }"#)?;
//! assert_eq!(config.issuer(), Some("https://login.example.com"));
//! assert_eq!(config.client_auth().method_name(), "private_key_jwt");
//!
//! let typo = serde_json::from_str::<ClientConfig>(r#"{"client_idd": "x"}"#).unwrap_err();
//! assert!(typo.to_string().contains("client_idd"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::CredentialSource;
use crate::error::Error;
use crate::secret::SecretString;
use crate::transport::{HttpClient, HttpTransport};
use crate::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

mod settings;
mod vars;

/// A variable that is missing or malformed: which one, and what it
/// expects. Never holds the variable's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    variable: &'static str,
    expected: String,
}

impl ConfigError {
    fn new(variable: &'static str, expected: impl Into<String>) -> Self {
        ConfigError {
            variable,
            expected: expected.into(),
        }
    }

    /// The variable's name.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// What the variable must hold.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.expected)
    }
}

impl std::error::Error for ConfigError {}

/// Where the token endpoint is.
#[derive(Clone, Debug)]
enum Endpoint {
    Url(TokenUrl),
    /// Known once [`ClientConfig::discover`] has read the metadata.
    Issuer(String),
}

/// The client authentication the variables name.
#[derive(Clone, Debug)]
enum Auth {
    Secret {
        post: bool,
        secret: Secret,
    },
    None,
    Assertion {
        spiffe: bool,
        file: PathBuf,
    },
    #[cfg(feature = "jwt")]
    SecretJwt(Secret),
    #[cfg(feature = "jwt")]
    Key {
        file: PathBuf,
        algorithm: crate::jose::Algorithm,
        key_id: Option<String>,
    },
}

#[derive(Clone, Debug)]
enum Secret {
    Value(SecretString),
    File(PathBuf),
}

impl Secret {
    fn source(&self) -> CredentialSource {
        match self {
            Secret::Value(s) => CredentialSource::value(s.clone()),
            Secret::File(f) => CredentialSource::file(f),
        }
    }
}

/// A client configuration read from variables or a configuration file (see
/// the [module docs](self) for the list). `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    endpoint: Endpoint,
    client_id: String,
    auth: Auth,
    scope: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    timeout: Duration,
    /// The DPoP key file (feature `dpop`).
    dpop_key_file: Option<PathBuf>,
    #[cfg(feature = "redis")]
    redis: Option<crate::fleet::RedisTier>,
}

impl ClientConfig {
    /// Reads the process's environment variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A value that is not Unicode is refused by name in `from_vars`.
        Self::from_vars(|name| {
            std::env::var_os(name).map(|v| v.into_string().unwrap_or_else(|_| "\u{0}".into()))
        })
    }

    /// Reads the variables through `lookup` (a name to its value, `None`
    /// when unset): a config file's map, a test's list.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        vars::read(&lookup)
    }

    /// The token endpoint's URL: `None` while only the issuer is known
    /// (before [`ClientConfig::discover`]).
    pub fn token_url(&self) -> Option<&TokenUrl> {
        match &self.endpoint {
            Endpoint::Url(url) => Some(url),
            Endpoint::Issuer(_) => None,
        }
    }

    /// The issuer (`OAUTH2_ISSUER`), while its metadata is not read yet.
    pub fn issuer(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Issuer(issuer) => Some(issuer),
            Endpoint::Url(_) => None,
        }
    }

    /// Reads the issuer's metadata over `http` (OpenID Connect Discovery,
    /// then RFC 8414; [`crate::discovery`]) and takes its token endpoint
    /// (its mutual-TLS alias for a client that authenticates with mutual
    /// TLS). A configuration with `OAUTH2_TOKEN_URL` is returned as it is.
    pub async fn discover<S: HttpClient>(mut self, http: S) -> Result<Self, Error> {
        if let Endpoint::Issuer(issuer) = &self.endpoint {
            let metadata = crate::discovery::Discovery::new(http)
                .discover(issuer)
                .await?;
            let url = metadata.token_endpoint_for(&self.client_auth()).clone();
            self.endpoint = Endpoint::Url(url);
        }
        Ok(self)
    }

    /// The client authentication: a secret file, a key file or an
    /// assertion file is read for every token request
    /// ([`crate::credentials`]).
    pub fn client_auth(&self) -> ClientAuth {
        let id = self.client_id.clone();
        match &self.auth {
            Auth::Secret { post, secret } => match (secret, post) {
                (Secret::Value(s), false) => ClientAuth::client_secret_basic(id, s.clone()),
                (Secret::Value(s), true) => ClientAuth::client_secret_post(id, s.clone()),
                (Secret::File(_), false) => {
                    ClientAuth::client_secret_basic_from(id, secret.source())
                }
                (Secret::File(_), true) => ClientAuth::client_secret_post_from(id, secret.source()),
            },
            Auth::None => ClientAuth::none(id),
            Auth::Assertion {
                spiffe: false,
                file,
            } => ClientAuth::client_assertion(id, CredentialSource::file(file)),
            Auth::Assertion { spiffe: true, file } => {
                ClientAuth::spiffe_jwt(id, CredentialSource::file(file))
            }
            // Checked when the secret is read: a short one is a typed
            // error at the token request, never a panic here.
            #[cfg(feature = "jwt")]
            Auth::SecretJwt(secret) => ClientAuth::client_secret_jwt_from(id, secret.source()),
            #[cfg(feature = "jwt")]
            Auth::Key {
                file,
                algorithm,
                key_id,
            } => ClientAuth::private_key_jwt_from(
                id,
                *algorithm,
                key_id.clone(),
                CredentialSource::file(file),
            ),
        }
    }

    /// The `client_credentials` request with the scope, audience and
    /// resources.
    pub fn token_request(&self) -> TokenRequest {
        let mut request = TokenRequest::client_credentials();
        if let Some(scope) = &self.scope {
            request = request.scope(scope);
        }
        if let Some(audience) = &self.audience {
            request = request.audience(audience.clone());
        }
        for resource in &self.resources {
            request = request.resource(resource.clone());
        }
        request
    }

    /// The token endpoint over `http`, with the timeout, and the DPoP key
    /// of `OAUTH2_DPOP_KEY_FILE` (read now, and again whenever the file
    /// changes). An error naming `OAUTH2_ISSUER` while the issuer's
    /// metadata is not read yet, or `OAUTH2_DPOP_KEY_FILE` for a key file
    /// that holds no usable key (the path and what is wrong, never the
    /// content).
    pub fn endpoint<S>(&self, http: S) -> Result<TokenEndpoint<S>, ConfigError> {
        let url = self.token_url().ok_or_else(|| {
            ConfigError::new(
                "OAUTH2_ISSUER",
                "names the token endpoint only once its metadata is read: call \
                 ClientConfig::discover first",
            )
        })?;
        let endpoint = TokenEndpoint::new(http, url.clone(), self.client_auth());
        let endpoint = endpoint.timeout(self.timeout);
        match &self.dpop_key_file {
            None => Ok(endpoint),
            #[cfg(feature = "dpop")]
            Some(path) => {
                let keys = crate::dpop::DpopKeys::from_file(path)
                    .map_err(|e| ConfigError::new("OAUTH2_DPOP_KEY_FILE", e.to_string()))?;
                Ok(endpoint.dpop_keys(keys))
            }
            // Refused by name when the variables are read.
            #[cfg(not(feature = "dpop"))]
            Some(_) => Ok(endpoint),
        }
    }

    /// The token cache over `http`, sharing tokens through the Redis tier
    /// when `OAUTH2_REDIS_URL` is set, with the other defaults of
    /// [`crate::cache::TokenCacheBuilder`]; for other settings, build one
    /// from [`ClientConfig::endpoint`] and [`ClientConfig::token_request`].
    /// Errors as [`ClientConfig::endpoint`].
    pub fn cache<S: HttpTransport>(&self, http: S) -> Result<TokenCache, ConfigError> {
        let builder = TokenCache::builder(self.endpoint(http)?, self.token_request());
        #[cfg(feature = "redis")]
        let builder = match &self.redis {
            Some(tier) => builder.redis(tier.clone()),
            None => builder,
        };
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<ClientConfig, ConfigError> {
        ClientConfig::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    const BASE: [(&str, &str); 2] = [
        ("OAUTH2_TOKEN_URL", "https://as.example.com/token"),
        ("OAUTH2_CLIENT_ID", "svc"),
    ];

    fn with(more: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        BASE.iter().chain(more).copied().collect()
    }

    #[test]
    fn errors_name_the_variable_and_never_the_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "OAUTH2_TOKEN_URL"),
            (
                &[("OAUTH2_TOKEN_URL", "http://CANARY.example/t")],
                "OAUTH2_TOKEN_URL",
            ),
            (
                &[("OAUTH2_TOKEN_URL", "https://a.example/t")],
                "OAUTH2_CLIENT_ID",
            ),
        ];
        for (vars, variable) in cases {
            let e = from(vars).unwrap_err();
            assert_eq!(e.variable(), *variable);
            assert!(!e.to_string().contains("CANARY"), "{e}");
        }
        for (more, variable) in [
            (&[][..], "OAUTH2_CLIENT_SECRET"),
            (&[("OAUTH2_AUTH", "CANARY")][..], "OAUTH2_AUTH"),
            (
                &[
                    ("OAUTH2_CLIENT_SECRET", "CANARY"),
                    ("OAUTH2_CLIENT_SECRET_FILE", "/s"),
                ][..],
                "OAUTH2_CLIENT_SECRET_FILE",
            ),
            (
                &[("OAUTH2_AUTH", "spiffe_jwt")][..],
                "OAUTH2_CLIENT_ASSERTION_FILE",
            ),
            (
                &[("OAUTH2_AUTH", "none"), ("OAUTH2_TIMEOUT", "CANARY")][..],
                "OAUTH2_TIMEOUT",
            ),
            (
                &[("OAUTH2_AUTH", "none"), ("OAUTH2_TIMEOUT", "0")][..],
                "OAUTH2_TIMEOUT",
            ),
        ] {
            let e = from(&with(more)).unwrap_err();
            assert_eq!(e.variable(), variable, "{e}");
            assert!(!format!("{e} {e:?}").contains("CANARY"), "{e}");
        }
    }

    #[test]
    fn the_issuer_instead_of_the_token_url() {
        let config = from(&[
            ("OAUTH2_ISSUER", "https://login.example.com"),
            ("OAUTH2_CLIENT_ID", "svc"),
            ("OAUTH2_AUTH", "none"),
        ])
        .unwrap();
        assert_eq!(config.issuer(), Some("https://login.example.com"));
        assert!(config.token_url().is_none());
        // Not before discovery: an error naming the variable, no panic.
        let e = config.endpoint(()).unwrap_err();
        assert_eq!(e.variable(), "OAUTH2_ISSUER");
        assert!(!e.expected().contains("  "), "{e}");
        let both = from(&with(&[
            ("OAUTH2_ISSUER", "https://login.example.com"),
            ("OAUTH2_AUTH", "none"),
        ]));
        assert_eq!(both.unwrap_err().variable(), "OAUTH2_ISSUER");
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn a_key_file_and_a_client_secret_jwt() {
        let config = from(&with(&[
            ("OAUTH2_KEY_FILE", "/keys/CANARY.pem"),
            ("OAUTH2_KEY_ALG", "EdDSA"),
            ("OAUTH2_KEY_ID", "k1"),
        ]))
        .unwrap();
        assert!(matches!(
            config.client_auth(),
            ClientAuth::PrivateKeyJwtFrom {
                algorithm: crate::jose::Algorithm::EdDSA,
                key_id: Some(ref kid),
                ..
            } if kid == "k1"
        ));
        let method = |more: &[(&'static str, &'static str)]| {
            from(&with(more)).map(|c| c.client_auth().method_name())
        };
        assert_eq!(
            method(&[
                ("OAUTH2_AUTH", "client_secret_jwt"),
                ("OAUTH2_CLIENT_SECRET_FILE", "/s")
            ]),
            Ok("client_secret_jwt")
        );
        for (more, variable) in [
            (
                &[("OAUTH2_AUTH", "client_secret_jwt")][..],
                "OAUTH2_CLIENT_SECRET",
            ),
            (
                &[("OAUTH2_KEY_FILE", "/k"), ("OAUTH2_KEY_ALG", "HS256")][..],
                "OAUTH2_KEY_ALG",
            ),
            (
                &[
                    ("OAUTH2_KEY_FILE", "/k"),
                    ("OAUTH2_CLIENT_ASSERTION_FILE", "/a"),
                ][..],
                "OAUTH2_KEY_FILE",
            ),
            (
                &[("OAUTH2_AUTH", "spiffe_jwt"), ("OAUTH2_KEY_FILE", "/k")][..],
                "OAUTH2_CLIENT_ASSERTION_FILE",
            ),
        ] {
            assert_eq!(method(more).unwrap_err().variable(), variable);
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_variables_and_no_password_shown() {
        let config = from(&with(&[
            ("OAUTH2_AUTH", "none"),
            ("OAUTH2_REDIS_URL", "redis://fleet:CANARY@127.0.0.1:6379/0"),
            (
                "OAUTH2_REDIS_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            ("OAUTH2_REDIS_LEASE", "20"),
            ("OAUTH2_REDIS_TIMEOUT", "250"),
        ]))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("encrypted: true"), "{shown}");
        assert!(!shown.contains("CANARY"), "{shown}");
        for (more, variable) in [
            (
                &[("OAUTH2_REDIS_URL", "http://CANARY@x")][..],
                "OAUTH2_REDIS_URL",
            ),
            (
                &[
                    ("OAUTH2_REDIS_URL", "redis://127.0.0.1"),
                    ("OAUTH2_REDIS_KEY", "CANARY"),
                ][..],
                "OAUTH2_REDIS_KEY",
            ),
            (
                &[
                    ("OAUTH2_REDIS_URL", "redis://127.0.0.1"),
                    ("OAUTH2_REDIS_TIMEOUT", "0"),
                ][..],
                "OAUTH2_REDIS_TIMEOUT",
            ),
            (&[("OAUTH2_REDIS_LEASE", "5")][..], "OAUTH2_REDIS_LEASE"),
        ] {
            let mut vars = with(more);
            vars.push(("OAUTH2_AUTH", "none"));
            let e = from(&vars).unwrap_err();
            assert_eq!(e.variable(), variable, "{e}");
            assert!(!format!("{e} {e:?}").contains("CANARY"), "{e}");
        }
    }

    #[cfg(feature = "dpop")]
    #[test]
    fn a_dpop_key_file_binds_the_tokens_and_a_bad_one_is_named() {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/p256-sec1.pem");
        let vars = with(&[("OAUTH2_AUTH", "none"), ("OAUTH2_DPOP_KEY_FILE", key)]);
        let endpoint = from(&vars).unwrap().endpoint(()).unwrap();
        assert_eq!(endpoint.dpop_key().unwrap().algorithm().as_str(), "ES256");
        let missing = "/no/such/dir/CANARY-dpop.pem";
        let vars = with(&[("OAUTH2_AUTH", "none"), ("OAUTH2_DPOP_KEY_FILE", missing)]);
        let e = from(&vars).unwrap().endpoint(()).unwrap_err();
        assert_eq!(e.variable(), "OAUTH2_DPOP_KEY_FILE");
        assert!(e.expected().contains(missing), "{e}");
    }

    #[cfg(not(feature = "dpop"))]
    #[test]
    fn a_dpop_key_file_without_the_feature_is_refused_by_name() {
        let vars = with(&[("OAUTH2_AUTH", "none"), ("OAUTH2_DPOP_KEY_FILE", "/k")]);
        let e = from(&vars).unwrap_err();
        assert_eq!(e.variable(), "OAUTH2_DPOP_KEY_FILE");
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn a_redis_variable_without_the_feature_is_refused_by_name() {
        let e = from(&with(&[
            ("OAUTH2_AUTH", "none"),
            ("OAUTH2_REDIS_URL", "redis://127.0.0.1"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable(), "OAUTH2_REDIS_URL");
        assert!(e.expected().contains("`redis` feature"), "{e}");
    }

    #[test]
    fn a_configuration_file() {
        let config: ClientConfig = serde_json::from_str(
            r#"{"token_url": "https://as.example.com/token", "client_id": "svc",
                "client_secret": "CANARY", "auth": "post",
                "scope": ["a", "b"], "resource": ["https://r.example"], "timeout": 7,
                "audience": null}"#,
        )
        .unwrap();
        assert_eq!(config.client_auth().method_name(), "client_secret_post");
        assert_eq!(config.timeout, Duration::from_secs(7));
        assert_eq!(config.scope.as_deref(), Some("a b"));
        assert_eq!(config.resources, ["https://r.example"]);
        assert_eq!(config.audience, None);
        for (json, says) in [
            (
                r#"{"client_idd": "CANARY"}"#,
                "unknown setting `client_idd`",
            ),
            (r#"{"scope": [1]}"#, "`scope`: expected a list of strings"),
            (
                r#"{"token_url": "https://as.example.com/t", "client_id": "svc", "auth": "none", "timeout": 0}"#,
                "`timeout` (OAUTH2_TIMEOUT",
            ),
            (
                r#"{"token_url": "http://CANARY.example/t", "client_id": "x"}"#,
                "`token_url`",
            ),
        ] {
            let e = serde_json::from_str::<ClientConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("CANARY"), "{e}");
        }
    }

    #[test]
    fn every_method_and_the_request() {
        let method = |more: &[(&'static str, &'static str)]| {
            from(&with(more)).unwrap().client_auth().method_name()
        };
        assert_eq!(
            method(&[("OAUTH2_CLIENT_SECRET", "s")]),
            "client_secret_basic"
        );
        assert_eq!(
            method(&[("OAUTH2_AUTH", "post"), ("OAUTH2_CLIENT_SECRET_FILE", "/s")]),
            "client_secret_post"
        );
        assert_eq!(method(&[("OAUTH2_AUTH", "none")]), "none");
        assert_eq!(
            method(&[("OAUTH2_CLIENT_ASSERTION_FILE", "/t")]),
            "private_key_jwt"
        );
        assert_eq!(
            method(&[
                ("OAUTH2_AUTH", "spiffe_jwt"),
                ("OAUTH2_CLIENT_ASSERTION_FILE", "/t")
            ]),
            "spiffe_jwt"
        );
        let config = from(&with(&[
            ("OAUTH2_CLIENT_SECRET", "CANARY"),
            ("OAUTH2_SCOPE", "a b"),
            ("OAUTH2_AUDIENCE", "api"),
            ("OAUTH2_RESOURCE", "https://r1.example https://r2.example"),
            ("OAUTH2_TIMEOUT", "7"),
            ("OAUTH2_AUDIENCE_UNUSED", ""),
        ]))
        .unwrap();
        assert!(!format!("{config:?}").contains("CANARY"));
        assert_eq!(config.timeout, Duration::from_secs(7));
        let request = format!("{:?}", config.token_request());
        for part in ["\"a\"", "\"b\"", "audience=\"api\"", "https://r2.example"] {
            assert!(request.contains(part), "{part} in {request}");
        }
    }
}
