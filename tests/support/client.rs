//! The HTTP client the tests send with (alone or under the layer), and
//! [`Received`], a request as it went over the wire.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::{OAuth2Layer, OAuth2Service, TokenCache};

/// The hyper-util client type the tests use.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A hyper-util HTTP/1 client over plain TCP.
///
/// Idle connections are dropped after 2 s: Node's HTTP server (the real
/// authorization server's) closes them after 5 s, and a client that keeps
/// them longer may send on one just as it closes.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .build_http()
}

/// A hyper-util HTTP/2 (prior knowledge) client: many concurrent requests
/// share one connection.
#[allow(dead_code, reason = "only some test binaries need HTTP/2")]
pub fn http2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// [`http_client`] under `OAuth2Layer::new(cache)`.
#[allow(dead_code, reason = "only some test binaries send through the layer")]
pub fn layered(cache: &TokenCache) -> OAuth2Service<HttpClient> {
    tower::Layer::layer(&OAuth2Layer::new(cache.clone()), http_client())
}

/// A GET of `url` with an empty body.
#[allow(dead_code, reason = "only some test binaries build requests here")]
pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .body(Full::default())
        .expect("a valid request")
}

/// An error's kind, OAuth error code and description, to compare at once.
#[allow(dead_code, reason = "only some test binaries check OAuth errors")]
pub fn oauth_error(e: &tower_oauth2::Error) -> (ErrorKind, Option<&ErrorCode>, Option<&str>) {
    let response = e.oauth_error();
    (
        e.kind(),
        response.map(|r| r.error()),
        response.and_then(|r| r.error_description()),
    )
}

/// One request as a server received it (or a recording client sent it).
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    #[allow(dead_code, reason = "only some test binaries check it")]
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Received {
    pub fn new(parts: &http::request::Parts, body: &[u8]) -> Self {
        Received {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// The body's form parameters, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The first form parameter called `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The `Authorization` header, if any.
    #[allow(dead_code, reason = "only some test binaries check it")]
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }
}
