//! Finding the token endpoint from an issuer URL: OpenID Connect Discovery
//! and RFC 8414 authorization server metadata.
//!
//! [`Discovery::discover`] fetches the issuer's metadata over any tower HTTP
//! service (the same kind [`TokenEndpoint`] uses), reading at most
//! [`Discovery::max_body_bytes`] within [`Discovery::timeout`] per document.
//! It tries, in order:
//!
//! 1. `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery
//!    1.0 §4; a terminating `/` of the issuer is removed first), then
//! 2. `{origin}/.well-known/oauth-authorization-server{issuer path}`
//!    (RFC 8414 §3.1: the well-known segment goes between the host and the
//!    issuer's path).
//!
//! It goes on to the second only when the first is plainly not there: a
//! client error status (404, 403, 405…, but not 408 or 429) or a success
//! whose body is not a JSON object (a web app's catch-all page). Any other
//! failure ends discovery with that error.
//!
//! The document found must name exactly the issuer asked for, or it is
//! refused ([`DiscoveryFailure::IssuerMismatch`]; RFC 8414 §3.3, OpenID
//! Connect Discovery §4.3): otherwise a server could hand out metadata that
//! sends this client's credentials to another token endpoint. Its
//! `token_endpoint` is required and must pass [`TokenUrl::new`] (`https`, or
//! `http` on loopback only). Redirects are not followed.
//!
//! [`ProviderMetadata`] is the result: the issuer, the token endpoint, the
//! other endpoints and lists the server published, and everything else as
//! JSON. [`ProviderMetadata::client_secret_auth`] picks a client
//! authentication style the server supports, and
//! [`ProviderMetadata::endpoint`] builds the [`TokenEndpoint`].
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::service_fn;
//! use tower_oauth2::discovery::Discovery;
//! use tower_oauth2::{TokenCache, TokenRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Any `Service<http::Request<Full<Bytes>>>` will do (a hyper-util client,
//! // `tower_oauth2::reqwest::ReqwestTransport`); this one answers locally.
//! let http = service_fn(|req: http::Request<Full<Bytes>>| async move {
//!     let (status, body) = match req.uri().path() {
//!         "/tenant-a/.well-known/openid-configuration" => (200, r#"{
//!             "issuer": "https://as.example.com/tenant-a",
//!             "token_endpoint": "https://as.example.com/tenant-a/oauth2/token",
//!             "token_endpoint_auth_methods_supported": ["client_secret_post"],
//!             "grant_types_supported": ["client_credentials", "refresh_token"]
//!         }"#),
//!         _ => (404, "not found"),
//!     };
//!     let mut response = http::Response::new(Full::new(Bytes::from(body)));
//!     *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//!
//! let metadata = Discovery::new(http.clone())
//!     .discover("https://as.example.com/tenant-a")
//!     .await?;
//! assert_eq!(
//!     metadata.token_endpoint().to_string(),
//!     "https://as.example.com/tenant-a/oauth2/token"
//! );
//! assert!(metadata.supports_grant_type("client_credentials"));
//!
//! // This server only takes client_secret_post, so that is what is used.
//! let client = metadata.client_secret_auth("svc-orders", "s3cret")?;
//! assert_eq!(client.method_name(), "client_secret_post");
//! let endpoint = metadata.endpoint(http, client);
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
//! # let _ = cache;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, LOCATION};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::Full;
use serde_json::{Map, Value};
use tower::ServiceExt;
use tower_service::Service;
use tracing::Instrument;

use crate::endpoint::{read_limited, TokenEndpoint, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT};
use crate::error::{excerpt, sanitize, BoxError, DiscoveryFailure, Error};
use crate::request::{is_loopback, ClientAuth, TokenUrl};
use crate::secret::SecretString;

/// The well-known path of OpenID Connect Discovery 1.0 §4.
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
/// The well-known path of RFC 8414 §3 (OAuth 2.0 authorization server
/// metadata).
pub const OAUTH_AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";

/// Which metadata document to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataDocument {
    /// OpenID Connect Discovery: `{issuer}/.well-known/openid-configuration`.
    OpenIdConfiguration,
    /// RFC 8414: `{origin}/.well-known/oauth-authorization-server{path}`.
    OAuthAuthorizationServer,
}

impl MetadataDocument {
    /// The document's URL for `issuer`, which must be an issuer identifier
    /// (see [`Discovery::discover`]).
    ///
    /// ```
    /// use tower_oauth2::discovery::MetadataDocument;
    ///
    /// let issuer = "https://as.example.com/tenant/";
    /// assert_eq!(
    ///     MetadataDocument::OpenIdConfiguration.url(issuer)?,
    ///     "https://as.example.com/tenant/.well-known/openid-configuration"
    /// );
    /// assert_eq!(
    ///     MetadataDocument::OAuthAuthorizationServer.url(issuer)?,
    ///     "https://as.example.com/.well-known/oauth-authorization-server/tenant"
    /// );
    /// # Ok::<(), tower_oauth2::Error>(())
    /// ```
    pub fn url(self, issuer: &str) -> Result<String, Error> {
        let uri = check_issuer(issuer)?;
        Ok(self.url_of(issuer, &uri))
    }

    fn url_of(self, issuer: &str, uri: &Uri) -> String {
        match self {
            // OpenID Connect Discovery §4.1: remove any terminating `/`,
            // then append.
            MetadataDocument::OpenIdConfiguration => {
                format!("{}{OPENID_CONFIGURATION}", issuer.trim_end_matches('/'))
            }
            // RFC 8414 §3.1: remove any terminating `/` of the path, then
            // insert the well-known segment between host and path.
            MetadataDocument::OAuthAuthorizationServer => {
                let scheme = uri.scheme_str().unwrap_or("https");
                let authority = uri.authority().map_or("", |a| a.as_str());
                let path = uri.path().trim_end_matches('/');
                format!("{scheme}://{authority}{OAUTH_AUTHORIZATION_SERVER}{path}")
            }
        }
    }
}

/// Fetches authorization server metadata over the HTTP service `S`.
/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Discovery<S> {
    service: S,
    timeout: Duration,
    max_body_bytes: usize,
    documents: Vec<MetadataDocument>,
}

impl<S> Discovery<S> {
    /// Discovery over `service`, trying OpenID Connect Discovery, then
    /// RFC 8414.
    pub fn new(service: S) -> Self {
        Discovery {
            service,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            documents: vec![
                MetadataDocument::OpenIdConfiguration,
                MetadataDocument::OAuthAuthorizationServer,
            ],
        }
    }

    /// Time allowed for fetching one document, from sending to the last
    /// body byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest document read (default 256 KiB); a larger one is a
    /// [`DiscoveryFailure::BodyTooLarge`] error, and reading stops there.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Fetches only `document`, with no fallback to the other.
    pub fn only(mut self, document: MetadataDocument) -> Self {
        self.documents = vec![document];
        self
    }

    /// The HTTP service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// Gives back the HTTP service.
    pub fn into_inner(self) -> S {
        self.service
    }
}

/// One document's fetch.
enum Attempt {
    Found(Box<ProviderMetadata>),
    /// Plainly not there; the next document is tried.
    NotHere(String),
    Failed(Error),
}

impl<S, B> Discovery<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Fetches and checks the metadata of `issuer`.
    ///
    /// `issuer` is the issuer identifier exactly as the server spells it in
    /// its metadata (`https://as.example.com` and `https://as.example.com/`
    /// are different issuers): an `https` URL with no credentials, query or
    /// fragment (RFC 8414 §2); `http` is accepted on loopback only.
    pub async fn discover(&self, issuer: &str) -> Result<ProviderMetadata, Error> {
        let uri = check_issuer(issuer)?;
        let span = tracing::debug_span!("oauth2.discovery", issuer = %sanitize(issuer, 300));
        let mut misses = Vec::new();
        for document in &self.documents {
            let url = document.url_of(issuer, &uri);
            let attempt = match tokio::time::timeout(self.timeout, self.fetch(issuer, &url))
                .instrument(span.clone())
                .await
            {
                Ok(attempt) => attempt,
                Err(_) => Attempt::Failed(Error::timeout(self.timeout).into_discovery(&url)),
            };
            match attempt {
                Attempt::Found(metadata) => {
                    tracing::debug!(
                        parent: &span,
                        url = %url,
                        token_endpoint = %metadata.token_endpoint,
                        "metadata found"
                    );
                    return Ok(*metadata);
                }
                Attempt::NotHere(what) => {
                    tracing::debug!(parent: &span, url = %url, what = %what, "no metadata there");
                    misses.push(format!("{url} ({what})"));
                }
                Attempt::Failed(e) => {
                    tracing::debug!(parent: &span, error = %e, "discovery failed");
                    return Err(e);
                }
            }
        }
        Err(Error::discovery(
            DiscoveryFailure::NotFound,
            Some(issuer),
            format!("no metadata at {}", misses.join(" nor at ")),
            None,
            None,
        ))
    }

    async fn fetch(&self, issuer: &str, url: &str) -> Attempt {
        let request = match Request::get(url)
            .header(ACCEPT, "application/json")
            .body(Full::default())
        {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed(Error::discovery(
                    DiscoveryFailure::InvalidIssuer,
                    None,
                    format!("the metadata URL cannot be built ({e})"),
                    None,
                    None,
                ))
            }
        };
        let response = match self.service.clone().oneshot(request).await {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(Error::transport(e).into_discovery(url)),
        };
        let (parts, body) = response.into_parts();
        let status = parts.status;
        if status.is_redirection() {
            let to = parts
                .headers
                .get(LOCATION)
                .map(|l| excerpt(l.as_bytes(), &[]))
                .unwrap_or_default();
            return Attempt::Failed(Error::discovery(
                DiscoveryFailure::Redirect,
                Some(url),
                format!(
                    "answered {status} to {to:?}; redirects are not followed \
                     (is the issuer spelled as the server spells it?)"
                ),
                Some(status),
                None,
            ));
        }
        if status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS
        {
            return Attempt::NotHere(status.to_string());
        }
        if !status.is_success() {
            let retry_after = crate::endpoint::retry_after(&parts.headers);
            let body = read_limited(body, &parts.headers, self.max_body_bytes)
                .await
                .unwrap_or_default();
            return Attempt::Failed(
                Error::discovery(
                    DiscoveryFailure::HttpStatus,
                    Some(url),
                    format!("answered {status}: {:?}", excerpt(&body, &[])),
                    Some(status),
                    None,
                )
                .with_retry_after(retry_after),
            );
        }
        let body = match read_limited(body, &parts.headers, self.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return Attempt::Failed(e.into_discovery(url)),
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => match ProviderMetadata::from_map(issuer, map, Some(url)) {
                Ok(m) => Attempt::Found(Box::new(m)),
                Err(e) => Attempt::Failed(e),
            },
            _ => Attempt::NotHere(format!("{status}, but not a JSON object")),
        }
    }
}

/// Checks that `issuer` is an issuer identifier (RFC 8414 §2).
fn check_issuer(issuer: &str) -> Result<Uri, Error> {
    // The issuer may hold credentials, so it is not repeated in these errors.
    let invalid = |why: &str| {
        Error::discovery(
            DiscoveryFailure::InvalidIssuer,
            None,
            format!("the issuer {why}"),
            None,
            None,
        )
    };
    if issuer.contains('#') {
        return Err(invalid("must not have a fragment (RFC 8414 §2)"));
    }
    let uri: Uri = issuer
        .parse()
        .map_err(|_| invalid("is not a valid absolute URL"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("is not an absolute URL (https://host/path)"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("must not carry credentials"));
    }
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(authority.host()) => {}
        _ => {
            return Err(invalid(
                "must be an https URL (http is accepted only on loopback)",
            ))
        }
    }
    if uri.query().is_some() {
        return Err(invalid("must not have a query (RFC 8414 §2)"));
    }
    Ok(uri)
}

/// An authorization server's metadata (RFC 8414 §2, OpenID Connect
/// Discovery §3), checked: the issuer is the one asked for and the token
/// endpoint is a usable [`TokenUrl`].
///
/// Endpoints other than the token endpoint are kept as the server sent
/// them, unchecked. A list the server did not publish is `None`; the
/// `supports_*` methods apply the RFC 8414 defaults for those.
#[derive(Clone)]
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
    other: Map<String, Value>,
}

impl fmt::Debug for ProviderMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderMetadata")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("revocation_endpoint", &self.revocation_endpoint)
            .field("introspection_endpoint", &self.introspection_endpoint)
            .field("jwks_uri", &self.jwks_uri)
            .field(
                "token_endpoint_auth_methods_supported",
                &self.token_endpoint_auth_methods_supported,
            )
            .field("grant_types_supported", &self.grant_types_supported)
            .field("scopes_supported", &self.scopes_supported)
            .field("response_types_supported", &self.response_types_supported)
            .field(
                "code_challenge_methods_supported",
                &self.code_challenge_methods_supported,
            )
            .field("other", &self.other.keys().collect::<Vec<_>>())
            .finish()
    }
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
            Ok(Value::Object(map)) => Self::from_map(expected_issuer, map, None),
            Ok(_) => Err(invalid_metadata(None, "the metadata is not a JSON object")),
            Err(e) => Err(invalid_metadata(
                None,
                format!("the metadata is not valid JSON ({e})"),
            )),
        }
    }

    fn from_map(
        expected_issuer: &str,
        mut map: Map<String, Value>,
        url: Option<&str>,
    ) -> Result<Self, Error> {
        // RFC 8414 §3.3: the issuer must be identical to the one the
        // metadata URL was built from, or the metadata must not be used.
        let issuer = match map.remove("issuer") {
            Some(Value::String(s)) if s == expected_issuer => s,
            Some(Value::String(s)) => {
                return Err(Error::discovery(
                    DiscoveryFailure::IssuerMismatch,
                    url,
                    format!(
                        "the metadata is for issuer {:?}, not {:?}, so it is not used \
                         (RFC 8414 §3.3)",
                        sanitize(&s, 200),
                        sanitize(expected_issuer, 200)
                    ),
                    None,
                    None,
                ))
            }
            _ => {
                return Err(Error::discovery(
                    DiscoveryFailure::IssuerMismatch,
                    url,
                    format!(
                        "the metadata names no issuer (expected {:?}), so it is not used",
                        sanitize(expected_issuer, 200)
                    ),
                    None,
                    None,
                ))
            }
        };
        let token_endpoint = match take_string(&mut map, "token_endpoint", url)? {
            Some(s) => TokenUrl::new(&s).map_err(|e| {
                Error::discovery(
                    DiscoveryFailure::InvalidTokenEndpoint,
                    url,
                    format!(
                        "token_endpoint {:?} is not usable: {}",
                        sanitize(&s, 200),
                        e.invalid_request_reason().unwrap_or("invalid URL")
                    ),
                    None,
                    None,
                )
            })?,
            None => {
                return Err(Error::discovery(
                    DiscoveryFailure::MissingTokenEndpoint,
                    url,
                    "the metadata has no token_endpoint",
                    None,
                    None,
                ))
            }
        };
        Ok(ProviderMetadata {
            issuer,
            token_endpoint,
            authorization_endpoint: take_string(&mut map, "authorization_endpoint", url)?,
            revocation_endpoint: take_string(&mut map, "revocation_endpoint", url)?,
            introspection_endpoint: take_string(&mut map, "introspection_endpoint", url)?,
            jwks_uri: take_string(&mut map, "jwks_uri", url)?,
            token_endpoint_auth_methods_supported: take_strings(
                &mut map,
                "token_endpoint_auth_methods_supported",
                url,
            )?,
            grant_types_supported: take_strings(&mut map, "grant_types_supported", url)?,
            scopes_supported: take_strings(&mut map, "scopes_supported", url)?,
            response_types_supported: take_strings(&mut map, "response_types_supported", url)?,
            code_challenge_methods_supported: take_strings(
                &mut map,
                "code_challenge_methods_supported",
                url,
            )?,
            other: map,
        })
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
            let listed = self
                .token_endpoint_auth_methods_supported
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|m| sanitize(m, 50))
                .collect::<Vec<_>>()
                .join(", ");
            Err(Error::discovery(
                DiscoveryFailure::UnsupportedClientAuth,
                Some(&self.issuer),
                format!(
                    "the token endpoint takes neither client_secret_basic nor \
                     client_secret_post (it lists: {listed})"
                ),
                None,
                None,
            ))
        }
    }

    /// The [`TokenEndpoint`] at this server's token endpoint, authenticating
    /// as `client`, over `service`.
    pub fn endpoint<S>(&self, service: S, client: ClientAuth) -> TokenEndpoint<S> {
        TokenEndpoint::new(service, self.token_endpoint.clone(), client)
    }
}

fn invalid_metadata(url: Option<&str>, detail: impl Into<String>) -> Error {
    Error::discovery(DiscoveryFailure::InvalidMetadata, url, detail, None, None)
}

fn take_string(
    map: &mut Map<String, Value>,
    key: &str,
    url: Option<&str>,
) -> Result<Option<String>, Error> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_metadata(url, format!("{key} is not a string"))),
    }
}

fn take_strings(
    map: &mut Map<String, Value>,
    key: &str,
    url: Option<&str>,
) -> Result<Option<Vec<String>>, Error> {
    let not_list = || invalid_metadata(url, format!("{key} is not a list of strings"));
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(not_list()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(not_list()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    #[test]
    fn well_known_urls() {
        let cases = [
            (
                "https://as.example.com",
                "https://as.example.com/.well-known/openid-configuration",
                "https://as.example.com/.well-known/oauth-authorization-server",
            ),
            (
                "https://as.example.com/",
                "https://as.example.com/.well-known/openid-configuration",
                "https://as.example.com/.well-known/oauth-authorization-server",
            ),
            // RFC 8414 §3.1's example.
            (
                "https://example.com/issuer1",
                "https://example.com/issuer1/.well-known/openid-configuration",
                "https://example.com/.well-known/oauth-authorization-server/issuer1",
            ),
            (
                "https://as.example.com:8443/realms/a/",
                "https://as.example.com:8443/realms/a/.well-known/openid-configuration",
                "https://as.example.com:8443/.well-known/oauth-authorization-server/realms/a",
            ),
            (
                "http://127.0.0.1:9000/t",
                "http://127.0.0.1:9000/t/.well-known/openid-configuration",
                "http://127.0.0.1:9000/.well-known/oauth-authorization-server/t",
            ),
        ];
        for (issuer, oidc, rfc8414) in cases {
            assert_eq!(
                MetadataDocument::OpenIdConfiguration.url(issuer).unwrap(),
                oidc
            );
            assert_eq!(
                MetadataDocument::OAuthAuthorizationServer
                    .url(issuer)
                    .unwrap(),
                rfc8414
            );
        }
    }

    #[test]
    fn issuers_that_are_not_issuer_identifiers() {
        for bad in [
            "http://as.example.com",
            "https://as.example.com/?tenant=a",
            "https://as.example.com/#x",
            "https://user:pa55word@as.example.com",
            "/relative",
            "ftp://as.example.com",
            "not a url",
            "",
        ] {
            let e = MetadataDocument::OpenIdConfiguration.url(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Discovery, "{bad}");
            assert_eq!(
                e.discovery_failure(),
                Some(DiscoveryFailure::InvalidIssuer),
                "{bad}"
            );
            assert!(!e.is_retryable());
            assert!(!format!("{e} {e:?}").contains("pa55word"), "{e:?}");
        }
        assert!(check_issuer("http://localhost:8080").is_ok());
        assert!(check_issuer("http://[::1]:8080/x").is_ok());
    }

    fn doc(extra: &str) -> String {
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
        assert_eq!(
            other,
            [
                "mtls_endpoint_aliases",
                "registration_endpoint",
                "userinfo_endpoint"
            ]
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
        assert_eq!(
            e.discovery_failure(),
            Some(DiscoveryFailure::UnsupportedClientAuth)
        );
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://as.example.com: the token \
             endpoint takes neither client_secret_basic nor client_secret_post (it lists: \
             private_key_jwt, tls_client_auth)"
        );
        assert!(!format!("{e:?}").contains("pa55word"));
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

    type Log = Arc<Mutex<Vec<String>>>;
    type TestService =
        tower::util::BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

    /// A service answering `(path, status, body)` routes and 404 elsewhere.
    fn server(routes: Vec<(&'static str, u16, String)>) -> (TestService, Log) {
        let log: Log = Arc::default();
        let seen = log.clone();
        let svc = tower::service_fn(move |req: Request<Full<Bytes>>| {
            seen.lock().unwrap().push(format!(
                "{} {} accept={}",
                req.method(),
                req.uri(),
                req.headers()[ACCEPT].to_str().unwrap()
            ));
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == req.uri().path())
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, "not found".into()));
            async move {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(r)
            }
        });
        (tower::util::BoxCloneService::new(svc), log)
    }

    #[tokio::test]
    async fn an_html_page_on_the_first_url_falls_back_to_the_second() {
        let (svc, log) = server(vec![
            (
                "/.well-known/openid-configuration",
                200,
                "<!doctype html><title>app</title>".into(),
            ),
            ("/.well-known/oauth-authorization-server", 200, doc("")),
        ]);
        let m = Discovery::new(svc)
            .discover("https://as.example.com")
            .await
            .unwrap();
        assert_eq!(m.issuer(), "https://as.example.com");
        assert_eq!(
            *log.lock().unwrap(),
            [
                "GET https://as.example.com/.well-known/openid-configuration accept=application/json",
                "GET https://as.example.com/.well-known/oauth-authorization-server accept=application/json",
            ]
        );
    }

    #[tokio::test]
    async fn server_errors_and_redirects_end_discovery() {
        let (svc, log) = server(vec![(
            "/.well-known/openid-configuration",
            503,
            "down for maintenance".into(),
        )]);
        let e = Discovery::new(svc)
            .discover("https://as.example.com")
            .await
            .unwrap_err();
        assert_eq!(e.discovery_failure(), Some(DiscoveryFailure::HttpStatus));
        assert_eq!(e.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at \
             https://as.example.com/.well-known/openid-configuration: answered 503 Service \
             Unavailable: \"down for maintenance\""
        );
        assert_eq!(log.lock().unwrap().len(), 1);

        let (svc, _) = server(vec![(
            "/.well-known/openid-configuration",
            301,
            String::new(),
        )]);
        let e = Discovery::new(svc)
            .discover("https://as.example.com")
            .await
            .unwrap_err();
        assert_eq!(e.discovery_failure(), Some(DiscoveryFailure::Redirect));
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn only_one_document_and_not_found() {
        let (svc, log) = server(vec![]);
        let e = Discovery::new(svc)
            .only(MetadataDocument::OAuthAuthorizationServer)
            .discover("https://as.example.com/t")
            .await
            .unwrap_err();
        assert_eq!(e.discovery_failure(), Some(DiscoveryFailure::NotFound));
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://as.example.com/t: no metadata at \
             https://as.example.com/.well-known/oauth-authorization-server/t (404 Not Found)"
        );
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_transport_failure_is_typed() {
        let svc = tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("connection refused"))
        });
        let e = Discovery::new(svc)
            .discover("https://as.example.com")
            .await
            .unwrap_err();
        assert_eq!(e.discovery_failure(), Some(DiscoveryFailure::Transport));
        assert!(e.is_transport() && e.is_retryable());
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "connection refused"
        );
        let copy = e.duplicate();
        assert_eq!(copy.discovery_failure(), Some(DiscoveryFailure::Transport));
        assert_eq!(
            std::error::Error::source(&copy).unwrap().to_string(),
            "connection refused"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let svc = tower::service_fn(|_req: Request<Full<Bytes>>| async {
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
        });
        let e = Discovery::new(svc)
            .timeout(Duration::from_millis(50))
            .discover("https://as.example.com")
            .await
            .unwrap_err();
        assert_eq!(e.discovery_failure(), Some(DiscoveryFailure::Timeout));
        assert!(e.is_timeout() && e.is_retryable());
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at \
             https://as.example.com/.well-known/openid-configuration: no complete answer \
             within 50ms"
        );
    }
}
