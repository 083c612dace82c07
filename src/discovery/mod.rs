//! Finding the token endpoint from an issuer URL: OpenID Connect Discovery
//! and RFC 8414 authorization server metadata.
//!
//! [`Discovery::discover`] fetches the issuer's metadata over any tower HTTP
//! service (the same kind [`TokenEndpoint`](crate::TokenEndpoint) uses), reading at most
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
//! `token_endpoint` is required and must pass [`TokenUrl::new`](crate::TokenUrl::new) (`https`, or
//! `http` on loopback only). Redirects are not followed.
//!
//! [`ProviderMetadata`] is the result: the issuer, the token endpoint, the
//! other endpoints and lists the server published, and everything else as
//! JSON. [`ProviderMetadata::client_secret_auth`] picks a client
//! authentication style the server supports, and
//! [`ProviderMetadata::endpoint`] builds the [`TokenEndpoint`](crate::TokenEndpoint):
//! for a client using mutual TLS (`tls_client_auth`,
//! `self_signed_tls_client_auth`) at the server's `mtls_endpoint_aliases`
//! token endpoint when it publishes one (RFC 8705 §5, [`MtlsEndpointAliases`]),
//! and with the server's revocation endpoint (RFC 7009, also the mTLS alias)
//! when it lists a usable one.
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
#![doc = include_str!("../docs/discovery.md")]

use http::header::{ACCEPT, LOCATION};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use serde_json::Value;
use tracing::Instrument;

use crate::error::{excerpt, sanitize, DiscoveryFailure, Error};
use crate::exchange::{self, retry_after, Answer, Limits};
use crate::transport::HttpClient;
use crate::url::{self, UnsafeUrl};

#[cfg(feature = "dpop")]
mod dpop;
mod metadata;
mod mtls;

pub use metadata::ProviderMetadata;
pub use mtls::MtlsEndpointAliases;

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
    limits: Limits,
    documents: Vec<MetadataDocument>,
}

impl<S> Discovery<S> {
    /// Discovery over `service`, trying OpenID Connect Discovery, then
    /// RFC 8414.
    pub fn new(service: S) -> Self {
        Discovery {
            service,
            limits: Limits::default(),
            documents: vec![
                MetadataDocument::OpenIdConfiguration,
                MetadataDocument::OAuthAuthorizationServer,
            ],
        }
    }

    crate::exchange::limits_options!("fetching one metadata document");

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

/// What one document's fetch found.
enum Attempt {
    Found(Box<ProviderMetadata>),
    /// Plainly not there; the next document is tried.
    NotHere(String),
}

impl<S: HttpClient> Discovery<S> {
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
            match self.fetch(issuer, &url).instrument(span.clone()).await {
                Ok(Attempt::Found(metadata)) => {
                    tracing::debug!(
                        parent: &span,
                        url = %url,
                        token_endpoint = %metadata.token_endpoint(),
                        "metadata found"
                    );
                    return Ok(*metadata);
                }
                Ok(Attempt::NotHere(what)) => {
                    tracing::debug!(parent: &span, url = %url, what = %what, "no metadata there");
                    misses.push(format!("{url} ({what})"));
                }
                Err(e) => {
                    tracing::debug!(parent: &span, error = %e, "discovery failed");
                    return Err(e);
                }
            }
        }
        Err(Error::discovery(
            DiscoveryFailure::NotFound,
            Some(issuer),
            format!("no metadata at {}", misses.join(" nor at ")),
        ))
    }

    async fn fetch(&self, issuer: &str, url: &str) -> Result<Attempt, Error> {
        let request = Request::get(url)
            .header(ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| {
                Error::discovery(
                    DiscoveryFailure::InvalidIssuer,
                    None,
                    format!("the metadata URL cannot be built ({e})"),
                )
            })?;
        let service = self.service.clone();
        let answer = exchange::send(service, request, self.limits, |status| !is_absent(status))
            .await
            .map_err(|e| e.into_discovery(url))?;
        let status = answer.status;
        if status.is_redirection() {
            return Err(refused_redirect(url, &answer));
        }
        if is_absent(status) {
            return Ok(Attempt::NotHere(status.to_string()));
        }
        if !status.is_success() {
            return Err(failed_status(url, answer));
        }
        let body = answer.body.map_err(|e| e.into_discovery(url))?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => ProviderMetadata::from_object(issuer, map, Some(url))
                .map(|m| Attempt::Found(Box::new(m))),
            _ => Ok(Attempt::NotHere(format!("{status}, but not a JSON object"))),
        }
    }
}

/// Whether `status` plainly says "no metadata here": a client error, but
/// not 408 or 429, which say "not now".
fn is_absent(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

fn refused_redirect(url: &str, answer: &Answer) -> Error {
    let status = answer.status;
    let to = answer
        .headers
        .get(LOCATION)
        .map(|l| excerpt(l.as_bytes(), &[]))
        .unwrap_or_default();
    Error::redirect(status).in_discovery(
        url,
        format!(
            "answered {status} to {to:?}; redirects are not followed \
             (is the issuer spelled as the server spells it?)"
        ),
    )
}

/// An error status that does not mean "not here" (5xx, 408, 429).
fn failed_status(url: &str, answer: Answer) -> Error {
    let body = answer.body.unwrap_or_default();
    let excerpt = excerpt(&body, &[]);
    let detail = format!("answered {}: {excerpt:?}", answer.status);
    Error::http_status(answer.status, excerpt)
        .with_retry_after(retry_after(&answer.headers))
        .in_discovery(url, detail)
}

/// Checks that `issuer` is an issuer identifier (RFC 8414 §2).
fn check_issuer(issuer: &str) -> Result<Uri, Error> {
    // The issuer may hold credentials, so it is not repeated in these errors.
    let invalid = |why: &str| {
        Error::discovery(
            DiscoveryFailure::InvalidIssuer,
            None,
            format!("the issuer {why}"),
        )
    };
    if issuer.contains('#') {
        return Err(invalid("must not have a fragment (RFC 8414 §2)"));
    }
    let uri: Uri = issuer
        .parse()
        .map_err(|_| invalid("is not a valid absolute URL"))?;
    match url::check(&uri) {
        Ok(()) => {}
        Err(UnsafeUrl::OriginForm | UnsafeUrl::NoHost) => {
            return Err(invalid("is not an absolute URL (https://host/path)"))
        }
        Err(UnsafeUrl::Credentials) => return Err(invalid("must not carry credentials")),
        Err(UnsafeUrl::NoScheme | UnsafeUrl::ClearText | UnsafeUrl::Scheme) => {
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

#[cfg(test)]
mod tests {
    use super::metadata::tests::doc;
    use super::*;
    use crate::error::ErrorKind;
    use bytes::Bytes;
    use http::Response;
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
        assert_eq!((e.kind(), e.is_discovery()), (ErrorKind::HttpStatus, true));
        assert_eq!(e.discovery_failure(), None);
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
        assert_eq!((e.kind(), e.is_discovery()), (ErrorKind::Redirect, true));
        assert_eq!(e.status(), Some(StatusCode::MOVED_PERMANENTLY));
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at \
             https://as.example.com/.well-known/openid-configuration: answered 301 Moved \
             Permanently to \"\"; redirects are not followed (is the issuer spelled as the \
             server spells it?)"
        );
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
        assert_eq!((e.kind(), e.is_discovery()), (ErrorKind::Transport, true));
        assert!(e.is_transport() && e.is_retryable());
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "connection refused"
        );
        let copy = e.clone();
        assert_eq!(
            (copy.kind(), copy.is_discovery()),
            (ErrorKind::Transport, true)
        );
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
            .timeout(std::time::Duration::from_millis(50))
            .discover("https://as.example.com")
            .await
            .unwrap_err();
        assert_eq!((e.kind(), e.is_discovery()), (ErrorKind::Timeout, true));
        assert!(e.is_timeout() && e.is_retryable());
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at \
             https://as.example.com/.well-known/openid-configuration: no complete answer \
             within 50ms"
        );
    }
}
