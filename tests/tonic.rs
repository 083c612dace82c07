//! A tonic `Channel` through the layer, against a tonic gRPC server on
//! 127.0.0.1 that checks the bearer token and answers UNAUTHENTICATED
//! (`grpc-status: 16`, in an HTTP 200) when it is revoked.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use support::{http_client, TestServer};
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tower_oauth2::layer::{BufferBodyLayer, ReplayClone};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// (authorization metadata, accepted?) of each call the gRPC server saw.
type Calls = Arc<std::sync::Mutex<Vec<(Option<String>, bool)>>>;

struct Grpc {
    url: String,
    calls: Calls,
    _task: tokio::task::JoinHandle<()>,
}

/// A gRPC health service behind an interceptor that accepts only tokens the
/// authorization server would.
async fn grpc_server(auth: &TestServer) -> Grpc {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let state = auth.state.clone();
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let auth_server = support::StateHandle::new(state);
    let check = move |req: tonic::Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = header
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| auth_server.token_is_valid(t));
        seen.lock().unwrap().push((header, ok));
        if ok {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated("invalid token"))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                health, check,
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    Grpc {
        url,
        calls,
        _task: task,
    }
}

fn cache(auth: &TestServer) -> TokenCache {
    let endpoint = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&auth.token_url()).unwrap(),
        ClientAuth::client_secret_basic("client", "secret"),
    );
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: "orders".into(),
    }
}

#[tokio::test]
async fn unauthenticated_is_refetched_and_the_call_resent_once() {
    let auth = TestServer::start().await;
    let grpc = grpc_server(&auth).await;
    let cache = cache(&auth);
    let channel = Channel::from_shared(grpc.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(64 * 1024))
        .layer(OAuth2Layer::new(cache.clone()).replay_body(ReplayClone))
        .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(svc);

    let reply = client.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);
    auth.revoke("at-1");
    let reply = client.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);

    assert_eq!(
        *grpc.calls.lock().unwrap(),
        [
            (Some("Bearer at-1".to_owned()), true),
            (Some("Bearer at-1".to_owned()), false),
            (Some("Bearer at-2".to_owned()), true),
        ]
    );
    assert_eq!(auth.token_requests(), 2);
    let stats = cache.stats();
    assert_eq!((stats.invalidations, stats.retries), (1, 1));
}

#[tokio::test]
async fn a_streamed_body_is_not_resent_but_the_token_is_replaced() {
    let auth = TestServer::start().await;
    let grpc = grpc_server(&auth).await;
    let cache = cache(&auth);
    let channel = Channel::from_shared(grpc.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // No buffering: tonic's bodies are streams, so nothing can be resent.
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(channel);
    let mut client = HealthClient::new(svc);
    client.check(check()).await.unwrap();
    auth.revoke("at-1");
    let status = client.check(check()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // The 16 dropped that token, so the next call gets a new one.
    let reply = client.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);
    assert_eq!(auth.token_requests(), 2);
    assert_eq!(cache.stats().retries, 0);
    assert_eq!(grpc.calls.lock().unwrap().len(), 3);
}
