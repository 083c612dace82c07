//! A tonic `Channel` through the layer, against a tonic gRPC server on
//! 127.0.0.1 that checks the bearer token and answers UNAUTHENTICATED
//! (`grpc-status: 16`, in an HTTP 200) when it is revoked.
//!
//! A `Channel` adds its endpoint's origin to each request inside itself,
//! after the layer: the layer sees origin-form URIs (`/pkg.Svc/Method`) and
//! sends the token only when told where the channel goes.

use crate::support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use support::serve::{serve, Serving};
use support::token_server::TestServer;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tower_oauth2::layer::{BufferBodyLayer, Destinations, ReplayClone};
use tower_oauth2::{ErrorKind, OAuth2Layer, TokenCache};

/// (authorization metadata, accepted?) of each call the gRPC server saw.
type Calls = Arc<std::sync::Mutex<Vec<(Option<String>, bool)>>>;

/// A gRPC health service behind an interceptor that accepts only tokens the
/// authorization server would.
async fn grpc_server(auth: &TestServer) -> (Serving, Calls) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let auth_server = auth.state.clone();
    let calls = Calls::default();
    let seen = calls.clone();
    let check = move |req: tonic::Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = header
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| auth_server.accepts(t));
        seen.lock().unwrap().push((header, ok));
        if ok {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated("invalid token"))
        }
    };
    let intercepted = tonic::service::interceptor::InterceptedService::new(health, check);
    (serve(tonic::service::Routes::new(intercepted)).await, calls)
}

/// The token server, the gRPC server (with what it saw), a cache of tokens
/// for it, and a channel to it.
async fn setup() -> (TestServer, Serving, Calls, TokenCache, Channel) {
    let auth = TestServer::start().await;
    let (grpc, calls) = grpc_server(&auth).await;
    let cache = auth.client_credentials().build();
    let channel = Channel::from_shared(grpc.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (auth, grpc, calls, cache, channel)
}

/// A layer taking tokens from `cache` for calls over a channel to `grpc`:
/// the setup the README and `examples/tonic_client.rs` show.
fn layer_for(grpc: &Serving, cache: &TokenCache) -> OAuth2Layer {
    let to_channel = Destinations::secure().origin_form_to(grpc.url("")).unwrap();
    OAuth2Layer::new(cache.clone()).destinations(to_channel)
}

/// A buffered request as tonic's transport takes it.
fn tonic_body(request: http::Request<Full<Bytes>>) -> http::Request<tonic::body::Body> {
    request.map(tonic::body::Body::new)
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: "orders".into(),
    }
}

#[tokio::test]
async fn unauthenticated_is_refetched_and_the_call_resent_once() {
    let (auth, grpc, calls, cache, channel) = setup().await;
    // Unary calls buffered (up to 64 KiB), so a call can be resent.
    let oauth2 = layer_for(&grpc, &cache).replay_body(ReplayClone);
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(64 * 1024))
        .layer(oauth2)
        .map_request(tonic_body)
        .service(channel);
    let mut client = HealthClient::new(svc);

    let reply = client.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);
    auth.revoke("at-1");
    let reply = client.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);

    assert_eq!(
        *calls.lock().unwrap(),
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
    let (auth, grpc, calls, cache, channel) = setup().await;
    // No buffering: tonic's bodies are streams, so nothing can be resent.
    let svc = ServiceBuilder::new()
        .layer(layer_for(&grpc, &cache))
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
    assert_eq!(calls.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn told_the_channels_origin_the_layer_sends_the_token() {
    let (auth, grpc, calls, cache, channel) = setup().await;
    let origin = format!("http://127.0.0.1:{}", grpc.addr.port());
    let to_channel = Destinations::secure().origin_form_to(&origin).unwrap();
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()).destinations(to_channel))
        .service(channel);
    let reply = HealthClient::new(svc).check(check()).await.unwrap();
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
    assert_eq!(
        *calls.lock().unwrap(),
        [(Some("Bearer at-1".to_owned()), true)]
    );
    assert_eq!(auth.token_requests(), 1);
}

#[tokio::test]
async fn by_default_a_channels_calls_get_no_token() {
    let (auth, _grpc, calls, cache, channel) = setup().await;
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(channel);
    let status = HealthClient::new(svc).check(check()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Sent as it came: no token, no fetch, no resend of the refusal.
    assert_eq!(*calls.lock().unwrap(), [(None, false)]);
    assert_eq!(auth.token_requests(), 0);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (0, 0));
}

#[test]
fn a_channel_in_clear_text_to_another_host_is_refused_up_front() {
    let e = Destinations::secure()
        .origin_form_to("http://10.0.0.1:50051")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidDestination);
    // An https channel to the same host is fine.
    Destinations::secure()
        .origin_form_to("https://10.0.0.1:50051")
        .unwrap();
}
