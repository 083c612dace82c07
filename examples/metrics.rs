//! `cargo run --example metrics --features metrics`: the token cache's
//! metrics in Prometheus text format.
//!
//! It installs `metrics-exporter-prometheus` as the recorder, and starts on
//! 127.0.0.1, in this process, a token endpoint, a protected resource and a
//! `/metrics` page that serves what the exporter renders. Then it sends
//! requests through [`OAuth2Layer`], the way a service would:
//!
//! 1. the token endpoint is down for its first answer (`503`,
//!    `temporarily_unavailable`): the first request fails with a typed error;
//! 2. once the backoff has passed, 10 requests at once: they all wait for
//!    one token request, and are sent with its token;
//! 3. the resource server revokes the token: the next request gets a 401,
//!    a new token is fetched and the request resent.
//!
//! Then it scrapes `/metrics` over HTTP and prints it, and ends with one line
//! `summary: requests=N ok=N token_fetches=N retries=N` (exit code 1 if the
//! counts are not those above).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::cache::Backoff;
use tower_oauth2::metrics::TOKEN_REQUEST_DURATION_SECONDS;
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// The token endpoint and the resource server: which tokens are live.
#[derive(Default)]
struct Servers {
    /// Token requests answered so far.
    token_requests: AtomicU64,
    live: Mutex<HashSet<String>>,
}

impl Servers {
    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `POST /token`: down for the first request, then `client_credentials`
/// tokens that live 5 minutes.
async fn token(State(servers): State<Arc<Servers>>) -> Response {
    let n = servers.token_requests.fetch_add(1, Ordering::Relaxed) + 1;
    if n == 1 {
        let body = r#"{"error":"temporarily_unavailable","error_description":"restarting"}"#;
        return json(StatusCode::SERVICE_UNAVAILABLE, body.to_owned());
    }
    let access_token = format!("token-{n}");
    servers.live().insert(access_token.clone());
    let body =
        format!(r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":300}}"#);
    json(StatusCode::OK, body)
}

/// `GET /items`: only with a live token (RFC 6750 §3 for the 401).
async fn items(State(servers): State<Arc<Servers>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| servers.live().contains(t)) {
        return json(StatusCode::OK, r#"{"items":[]}"#.to_owned());
    }
    let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)];
    (StatusCode::UNAUTHORIZED, challenge).into_response()
}

/// `GET /metrics`: the Prometheus text format, as the exporter renders it.
async fn metrics(State(prometheus): State<PrometheusHandle>) -> Response {
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, prometheus.render()).into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn serve(servers: Arc<Servers>, prometheus: PrometheusHandle) -> SocketAddr {
    let app = Router::new()
        .route("/token", post(token))
        .route("/items", get(items))
        .with_state(servers)
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(prometheus),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A GET of `url` with `client`: the status and the body, or what failed.
async fn get_text<S>(client: S, url: &str) -> Result<(StatusCode, String), String>
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: std::fmt::Display,
{
    let request = http::Request::get(url)
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    let response = client.oneshot(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    // Token request durations as a histogram (buckets from 5 ms to 30 s,
    // the endpoint's default timeout), which Prometheus can sum over
    // instances, rather than the exporter's default summary.
    let duration = Matcher::Full(TOKEN_REQUEST_DURATION_SECONDS.to_owned());
    let buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let installed = PrometheusBuilder::new()
        .set_buckets_for_metric(duration, &buckets)
        .and_then(|builder| builder.install_recorder());
    let prometheus = match installed {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("metrics: cannot install the Prometheus recorder: {e}");
            return ExitCode::FAILURE;
        }
    };
    tower_oauth2::metrics::describe();
    let servers = Arc::new(Servers::default());
    let addr = serve(servers.clone(), prometheus).await;
    println!("token endpoint, resource and /metrics on http://{addr}");

    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let endpoint = TokenEndpoint::new(
        http.clone(),
        TokenUrl::new(&format!("http://{addr}/token")).expect("a loopback URL"),
        ClientAuth::client_secret_basic("orders", "orders-secret"),
    );
    let backoff = Duration::from_millis(100);
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials())
        .metrics_name("inventory")
        .backoff(Backoff::new(backoff, backoff))
        .build();
    // The token goes to the API's origin only.
    let oauth2 = OAuth2Layer::for_origin(cache.clone(), format!("http://{addr}"))
        .expect("a loopback origin");
    let client = ServiceBuilder::new().layer(oauth2).service(http.clone());
    let items = format!("http://{addr}/items");
    let (mut requests, mut ok) = (0, 0);
    let mut tally = |result: Result<(StatusCode, String), String>| {
        requests += 1;
        match result {
            Ok((StatusCode::OK, _)) => ok += 1,
            Ok((status, _)) => println!("  answered {status}"),
            Err(e) => println!("  failed: {e}"),
        }
    };

    println!("\n1 request while the token endpoint is down:");
    tally(get_text(client.clone(), &items).await);

    tokio::time::sleep(backoff * 2).await;
    println!("10 requests at once, after the backoff (one token request):");
    let batch: Vec<_> = (0..10)
        .map(|_| {
            let (client, items) = (client.clone(), items.clone());
            tokio::spawn(async move { get_text(client, &items).await })
        })
        .collect();
    for task in batch {
        tally(task.await.unwrap_or_else(|e| Err(e.to_string())));
    }

    println!("the resource server revokes the token; 1 more request (401, new token, resent):");
    servers.live().clear();
    tally(get_text(client.clone(), &items).await);

    println!("\nGET http://{addr}/metrics:\n");
    match get_text(http, &format!("http://{addr}/metrics")).await {
        Ok((_, text)) => print!("{text}"),
        Err(e) => println!("  failed: {e}"),
    }

    let stats = cache.stats();
    println!(
        "\nsummary: requests={requests} ok={ok} token_fetches={} retries={}",
        stats.token_fetches, stats.retries
    );
    // What this example claims: the first request failed, the others were
    // answered; three token requests (down, up, after the 401), one resend.
    if (requests, ok, stats.token_fetches, stats.retries) == (12, 11, 3, 1) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
