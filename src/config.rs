//! One client-credentials configuration from environment variables, the
//! way a Kubernetes deployment sets them, made into a [`TokenCache`] in
//! one call.
//!
//! | Variable | Meaning |
//! |---|---|
//! | `OAUTH2_TOKEN_URL` | the token endpoint (required; `https`, `http` on loopback only) |
//! | `OAUTH2_CLIENT_ID` | the client id (required) |
//! | `OAUTH2_AUTH` | `basic` (`client_secret_basic`), `post`, `none`, `private_key_jwt` or `spiffe_jwt` (an assertion from `OAUTH2_CLIENT_ASSERTION_FILE`); default `private_key_jwt` when `OAUTH2_CLIENT_ASSERTION_FILE` is set, `basic` otherwise |
//! | `OAUTH2_CLIENT_SECRET` | the client secret, for `basic` and `post` |
//! | `OAUTH2_CLIENT_SECRET_FILE` | instead: a file holding it, read for every token request (a mounted secret; its trailing newline is cut off) |
//! | `OAUTH2_CLIENT_ASSERTION_FILE` | a file holding the client assertion (a projected service-account token, a SPIFFE JWT-SVID), read for every token request |
//! | `OAUTH2_SCOPE` | the scopes, space-separated |
//! | `OAUTH2_AUDIENCE` | an `audience` parameter |
//! | `OAUTH2_RESOURCE` | RFC 8707 `resource` indicators, space-separated |
//! | `OAUTH2_TIMEOUT` | seconds allowed for one token request (default 30) |
//!
//! An empty variable counts as unset. A missing or malformed variable is a
//! [`ConfigError`] that names the variable and what it expects, never the
//! value it holds. Signing keys, discovery and the Redis tier are set in
//! code (`ClientAuth::private_key_jwt` (feature `jwt`), [`crate::discovery`],
//! [`crate::cache::TokenCacheBuilder`]).
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
//! assert_eq!(config.token_url().to_string(), "https://login.example.com/oauth2/token");
//!
//! let err = ClientConfig::from_vars(|_| None).unwrap_err();
//! assert_eq!(err.variable(), "OAUTH2_TOKEN_URL");
//! # Ok::<(), tower_oauth2::config::ConfigError>(())
//! ```
//!
//! With a running Tokio runtime, `config.cache(http_client)` gives the
//! [`TokenCache`] for an [`crate::OAuth2Layer`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::CredentialSource;
use crate::endpoint::DEFAULT_TIMEOUT;
use crate::secret::SecretString;
use crate::transport::HttpTransport;
use crate::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

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

/// The client authentication the variables name.
#[derive(Clone, Debug)]
enum Auth {
    Secret { post: bool, secret: Secret },
    None,
    Assertion { spiffe: bool, file: PathBuf },
}

#[derive(Clone, Debug)]
enum Secret {
    Value(SecretString),
    File(PathBuf),
}

/// A client-credentials configuration read from variables (see the
/// [module docs](self) for the list). `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    token_url: TokenUrl,
    client_id: String,
    auth: Auth,
    scope: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    timeout: Duration,
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
        let get = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name) {
                Some(v) if v.contains('\u{0}') => Err(ConfigError::new(
                    name,
                    "expected Unicode text without NUL characters",
                )),
                Some(v) if v.trim().is_empty() => Ok(None),
                other => Ok(other),
            }
        };
        let required = |name: &'static str, expected: &str| {
            get(name)?
                .ok_or_else(|| ConfigError::new(name, format!("is not set; expected {expected}")))
        };
        let url = required("OAUTH2_TOKEN_URL", "the token endpoint's URL")?;
        let token_url = TokenUrl::new(url.trim()).map_err(|_| {
            ConfigError::new(
                "OAUTH2_TOKEN_URL",
                "expected an https URL (http only to a loopback address) with no credentials \
                 or fragment",
            )
        })?;
        let client_id = required("OAUTH2_CLIENT_ID", "the client id")?;
        let secret = get("OAUTH2_CLIENT_SECRET")?;
        let secret_file = get("OAUTH2_CLIENT_SECRET_FILE")?;
        let assertion_file = get("OAUTH2_CLIENT_ASSERTION_FILE")?;
        let default_auth = if assertion_file.is_some() {
            "private_key_jwt"
        } else {
            "basic"
        };
        let auth = get("OAUTH2_AUTH")?;
        let auth = match auth.as_deref().map(str::trim).unwrap_or(default_auth) {
            method @ ("basic" | "post") => {
                let secret = match (secret, secret_file) {
                    (Some(s), None) => Secret::Value(SecretString::from(s)),
                    (None, Some(f)) => Secret::File(PathBuf::from(f)),
                    (Some(_), Some(_)) => {
                        return Err(ConfigError::new(
                            "OAUTH2_CLIENT_SECRET_FILE",
                            "expected only one of OAUTH2_CLIENT_SECRET and \
                             OAUTH2_CLIENT_SECRET_FILE, not both",
                        ))
                    }
                    (None, None) => {
                        return Err(ConfigError::new(
                            "OAUTH2_CLIENT_SECRET",
                            format!(
                                "is not set; OAUTH2_AUTH={method} expects it or \
                                 OAUTH2_CLIENT_SECRET_FILE"
                            ),
                        ))
                    }
                };
                Auth::Secret {
                    post: method == "post",
                    secret,
                }
            }
            "none" => Auth::None,
            method @ ("private_key_jwt" | "spiffe_jwt") => match assertion_file {
                Some(file) => Auth::Assertion {
                    spiffe: method == "spiffe_jwt",
                    file: PathBuf::from(file),
                },
                None => {
                    return Err(ConfigError::new(
                        "OAUTH2_CLIENT_ASSERTION_FILE",
                        format!("is not set; OAUTH2_AUTH={method} expects the assertion's file"),
                    ))
                }
            },
            _ => {
                return Err(ConfigError::new(
                    "OAUTH2_AUTH",
                    "expected basic, post, none, private_key_jwt or spiffe_jwt",
                ))
            }
        };
        let timeout = match get("OAUTH2_TIMEOUT")? {
            None => DEFAULT_TIMEOUT,
            Some(t) => match t.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::new(
                        "OAUTH2_TIMEOUT",
                        "expected a whole number of seconds, at least 1",
                    ))
                }
            },
        };
        Ok(ClientConfig {
            token_url,
            client_id,
            auth,
            scope: get("OAUTH2_SCOPE")?,
            audience: get("OAUTH2_AUDIENCE")?,
            resources: get("OAUTH2_RESOURCE")?
                .map(|r| r.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            timeout,
        })
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> &TokenUrl {
        &self.token_url
    }

    /// The client authentication: a secret file or an assertion file is
    /// read for every token request ([`crate::credentials`]).
    pub fn client_auth(&self) -> ClientAuth {
        let id = self.client_id.clone();
        match &self.auth {
            Auth::Secret { post, secret } => match (secret, post) {
                (Secret::Value(s), false) => ClientAuth::client_secret_basic(id, s.clone()),
                (Secret::Value(s), true) => ClientAuth::client_secret_post(id, s.clone()),
                (Secret::File(f), false) => {
                    ClientAuth::client_secret_basic_from(id, CredentialSource::file(f))
                }
                (Secret::File(f), true) => {
                    ClientAuth::client_secret_post_from(id, CredentialSource::file(f))
                }
            },
            Auth::None => ClientAuth::none(id),
            Auth::Assertion {
                spiffe: false,
                file,
            } => ClientAuth::client_assertion(id, CredentialSource::file(file)),
            Auth::Assertion { spiffe: true, file } => {
                ClientAuth::spiffe_jwt(id, CredentialSource::file(file))
            }
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

    /// The token endpoint over `http`, with the timeout.
    pub fn endpoint<S>(&self, http: S) -> TokenEndpoint<S> {
        TokenEndpoint::new(http, self.token_url.clone(), self.client_auth()).timeout(self.timeout)
    }

    /// The token cache over `http`, with the defaults of
    /// [`crate::cache::TokenCacheBuilder`]; for other settings, build one
    /// from [`ClientConfig::endpoint`] and [`ClientConfig::token_request`].
    pub fn cache<S: HttpTransport>(&self, http: S) -> TokenCache {
        TokenCache::builder(self.endpoint(http), self.token_request()).build()
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
