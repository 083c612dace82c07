//! Discovery against a real metadata server on 127.0.0.1, then the token
//! endpoint it names serving the tower layer.

use crate::support;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::Full;
use hyper::body::Incoming;
use support::client::{http_client, layered};
use support::serve::{serve, Serving};
use support::token_server::{bearer, ClientCheck, TestServer};
use tower::ServiceExt;
use tower_oauth2::discovery::{Discovery, MetadataDocument, ProviderMetadata};
use tower_oauth2::error::{DiscoveryFailure, ErrorKind};
use tower_oauth2::{Error, TokenCache, TokenRequest};

/// A body sent in chunks with no Content-Length (chunked encoding).
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

type Body = http_body_util::Either<Full<Bytes>, Chunks>;

#[derive(Clone)]
struct Route {
    status: u16,
    body: Bytes,
    chunked: bool,
}

impl Route {
    fn respond(self) -> Response<Body> {
        let body = if self.chunked {
            let chunks = self.body.chunks(1000).map(Bytes::copy_from_slice);
            Body::Right(Chunks(chunks.collect()))
        } else {
            Body::Left(Full::new(self.body))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap();
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        resp
    }
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// Serves metadata documents at the paths it is given, 404 elsewhere, and
/// logs every request as `METHOD path accept=…`.
struct MetadataServer {
    serving: Serving,
    routes: Routes,
    log: Arc<Mutex<Vec<String>>>,
}

impl MetadataServer {
    async fn start() -> Self {
        let routes = Routes::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, l) = (routes.clone(), log.clone());
        let serving = serve(tower::service_fn(move |req: Request<Incoming>| {
            let accept = req
                .headers()
                .get("accept")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let line = format!("{} {} accept={accept}", req.method(), req.uri());
            l.lock().unwrap().push(line);
            let route = r.lock().unwrap().get(req.uri().path()).cloned();
            let response = route.map(Route::respond).unwrap_or_else(|| {
                let mut resp = Response::new(Body::Left(Full::from("no such page")));
                *resp.status_mut() = StatusCode::NOT_FOUND;
                resp
            });
            std::future::ready(Ok::<_, Infallible>(response))
        }))
        .await;
        MetadataServer {
            serving,
            routes,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        self.serving.url(path)
    }

    fn serve(&self, path: &str, status: u16, body: impl Into<Bytes>) {
        self.route(path, status, body.into(), false);
    }

    fn route(&self, path: &str, status: u16, body: Bytes, chunked: bool) {
        self.routes.lock().unwrap().insert(
            path.to_owned(),
            Route {
                status,
                body,
                chunked,
            },
        );
    }

    /// The paths requested, each with its Accept header.
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Where an issuer at the root of its host publishes OpenID Connect
/// Discovery metadata.
const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";

/// Discovery over the tests' hyper-util client, with the default settings.
async fn discover(issuer: &str) -> Result<ProviderMetadata, Error> {
    Discovery::new(http_client()).discover(issuer).await
}

fn document(issuer: &str, token_endpoint: &str, extra: &str) -> String {
    format!(r#"{{"issuer":"{issuer}","token_endpoint":"{token_endpoint}"{extra}}}"#)
}

fn get(path: &str) -> String {
    format!("GET {path} accept=application/json")
}

#[tokio::test]
async fn openid_configuration_at_the_issuer() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("");
    meta.serve(
        OPENID_CONFIGURATION,
        200,
        document(
            &issuer,
            "https://as.example.com/oauth2/token",
            r#","token_endpoint_auth_methods_supported":["client_secret_basic","private_key_jwt"],
               "grant_types_supported":["client_credentials"],
               "scopes_supported":["openid","orders:read"],
               "revocation_endpoint":"https://as.example.com/oauth2/revoke",
               "subject_types_supported":["public"]"#,
        ),
    );
    let m = discover(&issuer).await.unwrap();
    assert_eq!(m.issuer(), issuer);
    assert_eq!(
        m.token_endpoint().to_string(),
        "https://as.example.com/oauth2/token"
    );
    assert_eq!(
        m.token_endpoint_auth_methods_supported().unwrap(),
        ["client_secret_basic", "private_key_jwt"]
    );
    assert_eq!(m.grant_types_supported().unwrap(), ["client_credentials"]);
    assert_eq!(m.scopes_supported().unwrap(), ["openid", "orders:read"]);
    assert_eq!(
        m.revocation_endpoint(),
        Some("https://as.example.com/oauth2/revoke")
    );
    assert_eq!(m.other()["subject_types_supported"][0], "public");
    // One request: the first document was there.
    assert_eq!(meta.log(), [get("/.well-known/openid-configuration")]);
}

#[tokio::test]
async fn rfc_8414_with_an_issuer_path_after_a_404() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("/tenants/a");
    meta.serve(
        "/.well-known/oauth-authorization-server/tenants/a",
        200,
        document(&issuer, "http://127.0.0.1:1/tenants/a/token", ""),
    );
    let m = discover(&issuer).await.unwrap();
    assert_eq!(m.issuer(), issuer);
    assert_eq!(
        m.token_endpoint().to_string(),
        "http://127.0.0.1:1/tenants/a/token"
    );
    assert_eq!(
        meta.log(),
        [
            get("/tenants/a/.well-known/openid-configuration"),
            get("/.well-known/oauth-authorization-server/tenants/a"),
        ]
    );
}

#[tokio::test]
async fn only_the_document_asked_for_is_fetched() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("/t");
    meta.serve(
        "/t/.well-known/openid-configuration",
        200,
        document(&issuer, "https://as.example.com/token", ""),
    );
    let err = Discovery::new(http_client())
        .only(MetadataDocument::OAuthAuthorizationServer)
        .discover(&issuer)
        .await
        .unwrap_err();
    assert_eq!(err.discovery_failure(), Some(DiscoveryFailure::NotFound));
    assert_eq!(
        err.to_string(),
        format!(
            "authorization server discovery failed at {issuer}: no metadata at \
             {} (404 Not Found)",
            meta.url("/.well-known/oauth-authorization-server/t")
        )
    );
    assert_eq!(
        meta.log(),
        [get("/.well-known/oauth-authorization-server/t")]
    );
    // Asked for OpenID Connect Discovery only, the server is found.
    let m = Discovery::new(http_client())
        .only(MetadataDocument::OpenIdConfiguration)
        .discover(&issuer)
        .await
        .unwrap();
    assert_eq!(m.issuer(), issuer);
}

#[tokio::test]
async fn neither_document_is_a_typed_not_found() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("");
    let err = discover(&issuer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Discovery);
    assert_eq!(err.discovery_failure(), Some(DiscoveryFailure::NotFound));
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!(
            "authorization server discovery failed at {issuer}: no metadata at \
             {issuer}/.well-known/openid-configuration (404 Not Found) nor at \
             {issuer}/.well-known/oauth-authorization-server (404 Not Found)"
        )
    );
    assert_eq!(meta.log().len(), 2);
}

#[tokio::test]
async fn an_issuer_mismatch_is_refused_and_not_retried_elsewhere() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("/a");
    // Another tenant's metadata, and a good document at the second URL
    // that must not be reached: a mismatch is not "not found".
    meta.serve(
        "/a/.well-known/openid-configuration",
        200,
        document(&meta.url("/b"), "https://as.example.com/b/token", ""),
    );
    meta.serve(
        "/.well-known/oauth-authorization-server/a",
        200,
        document(&issuer, "https://as.example.com/a/token", ""),
    );
    let err = discover(&issuer).await.unwrap_err();
    assert_eq!(
        err.discovery_failure(),
        Some(DiscoveryFailure::IssuerMismatch)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "authorization server discovery failed at {issuer}/.well-known/openid-configuration: \
             the metadata is for issuer \"{}\", not \"{issuer}\", so it is not used \
             (RFC 8414 §3.3)",
            meta.url("/b")
        )
    );
    assert_eq!(meta.log(), [get("/a/.well-known/openid-configuration")]);

    // A trailing slash is a different issuer.
    let err = discover(&format!("{issuer}/")).await.unwrap_err();
    assert_eq!(
        err.discovery_failure(),
        Some(DiscoveryFailure::IssuerMismatch)
    );
}

#[tokio::test]
async fn a_missing_or_insecure_token_endpoint_is_refused() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("");
    meta.serve(
        OPENID_CONFIGURATION,
        200,
        format!(r#"{{"issuer":"{issuer}","authorization_endpoint":"https://as.example.com/a"}}"#),
    );
    let err = discover(&issuer).await.unwrap_err();
    assert_eq!(
        err.discovery_failure(),
        Some(DiscoveryFailure::MissingTokenEndpoint)
    );

    // Plain http is for loopback only: the client secret would cross the
    // network in clear text.
    meta.serve(
        OPENID_CONFIGURATION,
        200,
        document(&issuer, "http://as.example.com/token", ""),
    );
    let err = discover(&issuer).await.unwrap_err();
    assert_eq!(
        err.discovery_failure(),
        Some(DiscoveryFailure::InvalidTokenEndpoint)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "authorization server discovery failed at {issuer}/.well-known/openid-configuration: \
             token_endpoint \"http://as.example.com/token\" is not usable: token URL must be \
             https (http is accepted only on loopback, or with TokenUrl::new_allow_http)"
        )
    );
    assert_eq!(meta.log().len(), 2);
}

#[tokio::test]
async fn an_oversized_document_is_refused_with_or_without_a_content_length() {
    let meta = MetadataServer::start().await;
    let issuer = meta.url("");
    let padding = "x".repeat(5000);
    let doc = document(
        &issuer,
        "https://as.example.com/token",
        &format!(r#","padding":"{padding}""#),
    );
    for chunked in [false, true] {
        meta.route(OPENID_CONFIGURATION, 200, Bytes::from(doc.clone()), chunked);
        let err = Discovery::new(http_client())
            .max_body_bytes(4096)
            .discover(&issuer)
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.is_discovery(), err.discovery_failure()),
            (ErrorKind::BodyTooLarge, true, None),
            "chunked: {chunked}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "authorization server discovery failed at \
                 {issuer}/.well-known/openid-configuration: the metadata is larger than the \
                 4096-byte limit"
            )
        );
        // Under the default limit the same document is fine.
        let m = discover(&issuer).await.unwrap();
        assert_eq!(m.other()["padding"].as_str().unwrap().len(), 5000);
    }
    let oversized = format!(
        r#"{{"issuer":"{issuer}","token_endpoint":"https://as.example.com/token","p":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    meta.serve(OPENID_CONFIGURATION, 200, oversized);
    let err = discover(&issuer).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.is_discovery(), err.discovery_failure()),
        (ErrorKind::BodyTooLarge, true, None)
    );
}

#[tokio::test]
async fn discover_then_fetch_tokens_for_the_tower_layer() {
    let server = TestServer::start().await;
    // The server accepts client_secret_post only, and says so.
    server.set_client("svc-orders", "s3cret", ClientCheck::Post);
    let meta = MetadataServer::start().await;
    let issuer = meta.url("/realms/orders");
    meta.serve(
        "/realms/orders/.well-known/openid-configuration",
        200,
        document(
            &issuer,
            &server.token_url(),
            r#","token_endpoint_auth_methods_supported":["client_secret_post"],
               "grant_types_supported":["client_credentials"]"#,
        ),
    );

    let metadata = discover(&issuer).await.unwrap();
    assert!(metadata.supports_grant_type("client_credentials"));
    let client = metadata.client_secret_auth("svc-orders", "s3cret").unwrap();
    assert_eq!(client.method_name(), "client_secret_post");
    let endpoint = metadata.endpoint(http_client(), client);
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let svc = layered(&cache);
    for path in ["/orders/1", "/orders/2"] {
        let resp = svc.clone().oneshot(server.get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 1);
    let received = server.received();
    assert_eq!(
        received[0].form(),
        [
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), "svc-orders".to_owned()),
            ("client_secret".to_owned(), "s3cret".to_owned()),
        ]
    );
    assert!(received[0].headers.get("authorization").is_none());
    assert_eq!(
        server.path_authorizations(),
        [bearer("/orders/1", "at-1"), bearer("/orders/2", "at-1")]
    );
    assert_eq!(
        meta.log(),
        [get("/realms/orders/.well-known/openid-configuration")]
    );
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn discover_over_reqwest_then_use_the_reqwest_middleware() {
    use tower_oauth2::reqwest::{OAuth2Middleware, ReqwestTransport};

    let server = TestServer::start().await;
    server.set_client("svc-orders", "s3cret", ClientCheck::Basic);
    let meta = MetadataServer::start().await;
    let issuer = meta.url("/tenant");
    meta.serve(
        "/.well-known/oauth-authorization-server/tenant",
        200,
        document(&issuer, &server.token_url(), ""),
    );
    let http = ReqwestTransport::new();
    let metadata = Discovery::new(http.clone())
        .discover(&issuer)
        .await
        .unwrap();
    // No methods listed: RFC 8414's default, client_secret_basic.
    let client = metadata.client_secret_auth("svc-orders", "s3cret").unwrap();
    assert_eq!(client.method_name(), "client_secret_basic");
    let cache = TokenCache::builder(
        metadata.endpoint(http, client),
        TokenRequest::client_credentials(),
    )
    .build();
    let api = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(OAuth2Middleware::new(cache.clone()))
        .build();
    let resp = api.get(server.url("/orders")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 1);
    assert_eq!(
        meta.log(),
        [
            get("/tenant/.well-known/openid-configuration"),
            get("/.well-known/oauth-authorization-server/tenant"),
        ]
    );
}
