//! `cargo run --example tonic_client`: a tonic gRPC client whose calls carry
//! OAuth2 bearer tokens.
//!
//! It starts, on 127.0.0.1, a gRPC health service that accepts only the
//! current token, and a token endpoint (in process, through a
//! `tower::service_fn`). Then it calls the service through
//! `BufferBodyLayer` + `OAuth2Layer`, revokes the token, and calls again: the
//! server answers UNAUTHENTICATED (`grpc-status: 16`), the layer fetches a new
//! token and resends the call once, and the caller just sees the answer.
//!
//! A `Channel` adds its endpoint's origin to each call after the layer, which
//! sees only the path (`/grpc.health.v1.Health/Check`): the layer is told the
//! channel's origin with `Destinations::secure().origin_form_to(..)`, which
//! accepts `https` anywhere and `http` only on loopback. Without it the calls
//! would go out with no token.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{service_fn, ServiceBuilder};
use tower_oauth2::layer::{BufferBodyLayer, ReplayClone};
use tower_oauth2::{
    ClientAuth, Destinations, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The token the gRPC server accepts; the token endpoint issues a new one each time.
    let current = Arc::new(Mutex::new(String::new()));
    let issued = Arc::new(Mutex::new(0u32));

    let (cur, n) = (current.clone(), issued.clone());
    let token_http = service_fn(move |_req: http::Request<Full<Bytes>>| {
        let (cur, n) = (cur.clone(), n.clone());
        async move {
            let token = {
                let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
                *n += 1;
                format!("grpc-token-{n}")
            };
            *cur.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
            println!("token endpoint: issued {token}");
            let body =
                format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":300}}"#);
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
        }
    });

    // The gRPC server, with an interceptor checking the bearer token.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let cur = current.clone();
    let check = move |req: tonic::Request<()>| {
        let sent = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let want = format!("Bearer {}", cur.lock().unwrap_or_else(|p| p.into_inner()));
        if sent == Some(want.as_str()) {
            Ok(req)
        } else {
            println!(
                "grpc server: UNAUTHENTICATED for {}",
                sent.unwrap_or("no token")
            );
            Err(tonic::Status::unauthenticated("invalid token"))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                health, check,
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    // The client: token cache, layer, channel.
    let endpoint = TokenEndpoint::new(
        token_http,
        TokenUrl::new("http://127.0.0.1/token")?,
        ClientAuth::client_secret_basic("orders-client", "s3cret"),
    );
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let origin = format!("http://{addr}");
    let channel = Channel::from_shared(origin.clone())?.connect().await?;
    // The channel's origin: its calls get the token (http is fine: loopback).
    let to_channel = Destinations::secure().origin_form_to(&origin)?;
    let oauth2 = OAuth2Layer::new(cache.clone())
        .destinations(to_channel)
        .replay_body(ReplayClone);
    let svc = ServiceBuilder::new()
        // tonic's request bodies are streams: buffer unary calls so they can be resent.
        .layer(BufferBodyLayer::new(64 * 1024))
        .layer(oauth2)
        .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(svc);

    let request = || HealthCheckRequest {
        service: "orders".into(),
    };
    let reply = client.check(request()).await?.into_inner();
    println!("call 1: {:?}", reply.status());

    *current.lock().unwrap_or_else(|p| p.into_inner()) = "revoked".into();
    println!("grpc server: the token is revoked");
    let reply = client.check(request()).await?.into_inner();
    println!("call 2: {:?}", reply.status());

    let stats = cache.stats();
    println!(
        "token fetches: {}, calls resent after UNAUTHENTICATED: {}",
        stats.token_fetches, stats.retries
    );
    if stats.token_fetches != 2 || stats.retries != 1 {
        return Err("expected two token fetches and one resent call".into());
    }
    Ok(())
}
