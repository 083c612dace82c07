//! The HTTP client the tests send with (alone, under the layer, or
//! recording what it sends), and [`Received`], a request as it went over
//! the wire.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::layer::{Destinations, KeyedOAuth2Layer};
use tower_oauth2::{OAuth2Layer, OAuth2Service, TokenCache, TokenEndpoint, TokenRequest};

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
pub fn http2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// [`http_client`] under `OAuth2Layer::new(cache)`.
pub fn layered(cache: &TokenCache) -> OAuth2Service<HttpClient> {
    tower::Layer::layer(&OAuth2Layer::new(cache.clone()), http_client())
}

/// A GET of `url` with an empty body.
pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .body(Full::default())
        .expect("a valid request")
}

/// A GET of `url`, or a POST of `form` (form-urlencoded) to it.
pub fn form_request(method: Method, url: &str, form: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let builder = Request::builder().method(method.clone()).uri(url);
    let request = if method == Method::POST {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        builder
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::from(body))
    } else {
        builder.body(Full::default())
    };
    request.expect("a valid request")
}

/// Sends `request` and reads the whole answer: status, headers, body text.
pub async fn exchange(
    http: &HttpClient,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, String) {
    let what = format!("{} {}", request.method(), request.uri());
    let response = http
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    (parts.status, parts.headers, text)
}

/// An error's kind, OAuth error code and description, to compare at once.
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

    /// The body's form parameter names, in order.
    pub fn names(&self) -> Vec<String> {
        self.form().into_iter().map(|(k, _)| k).collect()
    }

    /// The `Authorization` header, if any.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// An [`HttpClient`] that keeps a copy of every request it sends.
#[derive(Clone)]
pub struct Recording {
    http: HttpClient,
    sent: Arc<Mutex<Vec<Received>>>,
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            http: http_client(),
            sent: Arc::default(),
        }
    }
}

impl Recording {
    /// What was sent so far, in order.
    pub fn sent(&self) -> Vec<Received> {
        self.sent.lock().expect("the recording").clone()
    }
}

impl tower::Service<Request<Full<Bytes>>> for Recording {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Request<Full<Bytes>>>::poll_ready(&mut self.http, cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let http = self.http.clone();
        let sent = self.sent.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let received = Received::new(&parts, &body);
            sent.lock().expect("the recording").push(received);
            http.request(Request::from_parts(parts, Full::new(body)))
                .await
        })
    }
}

/// A keyed layer with a cache per port (each its own resource server),
/// each port's token asked for from `endpoint` with that port as its
/// `audience`.
pub fn keyed_by_port(endpoint: TokenEndpoint<HttpClient>) -> KeyedOAuth2Layer<u16> {
    KeyedOAuth2Layer::new(
        |uri: &http::Uri, _: &HeaderMap| uri.port_u16(),
        move |port: &u16| {
            let request = TokenRequest::client_credentials().audience(port.to_string());
            Some(TokenCache::builder(endpoint.clone(), request).build())
        },
    )
}

/// Destinations for a [`connection`] to `server`: its path-only requests
/// go to `server` (`origin_form_to`).
pub fn to_connection(server: &super::token_server::TestServer) -> Destinations {
    Destinations::secure()
        .origin_form_to(server.url(""))
        .expect("a loopback origin")
}

/// `layer` over a [`connection`] to `server`, told the connection's origin
/// ([`to_connection`]).
pub async fn over_connection(
    server: &super::token_server::TestServer,
    layer: OAuth2Layer,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Incoming>,
    Error = tower_oauth2::layer::ServiceError<tower::BoxError>,
> + Clone {
    let layer = layer.destinations(to_connection(server));
    tower::Layer::layer(&layer, connection(server).await)
}

/// A GET with an origin-form URI (`path`) and the Host header HTTP/1.1
/// needs: what tonic sends over a [`connection`] to `server`.
pub fn origin_form_get(
    server: &super::token_server::TestServer,
    path: &str,
) -> Request<Full<Bytes>> {
    Request::get(path)
        .header(http::header::HOST, server.addr.to_string())
        .body(Full::default())
        .expect("a valid request")
}

/// A `hyper::client::conn` HTTP/1.1 connection to `server`, as a tower
/// service: requests go there whatever their URI says, as over tonic's
/// channel, which sends path-only (origin-form) requests.
pub async fn connection(
    server: &super::token_server::TestServer,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = http::Response<hyper::body::Incoming>,
    Error = tower::BoxError,
    Future: Send,
> + Clone {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect to the test server");
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("an HTTP/1.1 handshake");
    tokio::spawn(conn);
    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let sender = sender.clone();
        async move {
            let mut sender = sender.lock().await;
            sender.ready().await?;
            Ok::<_, tower::BoxError>(sender.send_request(req).await?)
        }
    })
}
