//! `cargo run --example demo`: OAuth2Layer in front of an HTTP client.
//!
//! With no arguments it needs nothing external: it starts a token endpoint and
//! a protected resource server on 127.0.0.1 issuing 2-second tokens, sends
//! requests through the layer from several tasks for a few seconds, revokes
//! the current token once mid-run so the 401 retry shows, and prints what
//! happens.
//!
//! With flags it talks to real servers:
//!
//! ```text
//! cargo run --example demo -- --token-url URL --client-id ID [--client-secret S]
//!     [--auth basic|post|none] [--scope "a b"] --url RESOURCE_URL
//!     [--requests N] [--concurrency C]
//! ```
//!
//! The secret may also come from `OAUTH2_CLIENT_SECRET`. Plain `http` is
//! accepted on loopback only.
//!
//! Either way it ends with one line
//! `summary: requests=N ok=N unauthorized=N errors=N token_fetches=N retries=N`
//! and exits non-zero if any request failed.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

struct Args {
    token_url: String,
    client_id: String,
    client_secret: Option<String>,
    auth: String,
    scope: Option<String>,
    url: String,
    requests: Option<u64>,
    concurrency: usize,
    local: Option<Arc<LocalServer>>,
}

const USAGE: &str = "usage: demo [--token-url URL --client-id ID [--client-secret S] \
[--auth basic|post|none] [--scope \"a b\"] --url RESOURCE_URL [--requests N] [--concurrency C]]";

fn parse_args() -> Result<Option<Args>, String> {
    let mut flags: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let known = [
            "--token-url",
            "--client-id",
            "--client-secret",
            "--auth",
            "--scope",
            "--url",
            "--requests",
            "--concurrency",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument {flag:?}\n{USAGE}"));
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        flags.insert(flag, value);
    }
    if flags.is_empty() {
        return Ok(None);
    }
    let need = |k: &str| {
        flags
            .get(k)
            .cloned()
            .ok_or_else(|| format!("{k} is required with flags\n{USAGE}"))
    };
    let number = |k: &str| -> Result<Option<u64>, String> {
        flags
            .get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{k} must be a whole number"))
            })
            .transpose()
    };
    Ok(Some(Args {
        token_url: need("--token-url")?,
        client_id: need("--client-id")?,
        client_secret: flags
            .get("--client-secret")
            .cloned()
            .or_else(|| std::env::var("OAUTH2_CLIENT_SECRET").ok()),
        auth: flags
            .get("--auth")
            .cloned()
            .unwrap_or_else(|| "basic".into()),
        scope: flags.get("--scope").cloned(),
        url: need("--url")?,
        requests: Some(number("--requests")?.unwrap_or(20)),
        concurrency: number("--concurrency")?.unwrap_or(4).max(1) as usize,
        local: None,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            let local = LocalServer::start().await;
            println!(
                "demo: token endpoint and resource server on http://{} (tokens live {} s)",
                local.addr, TOKEN_TTL
            );
            Args {
                token_url: format!("http://{}/token", local.addr),
                client_id: "demo-client".into(),
                client_secret: Some("demo p@ss:w+rd/%&=?".into()),
                auth: "basic".into(),
                scope: Some("orders:read".into()),
                url: format!("http://{}/orders", local.addr),
                requests: None,
                concurrency: 8,
                local: Some(local),
            }
        }
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("demo: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let client = match (args.auth.as_str(), args.client_secret.clone()) {
        ("basic", Some(s)) => ClientAuth::client_secret_basic(args.client_id.clone(), s),
        ("post", Some(s)) => ClientAuth::client_secret_post(args.client_id.clone(), s),
        ("none", _) => ClientAuth::none(args.client_id.clone()),
        ("basic" | "post", None) => {
            return Err("--auth basic|post needs --client-secret or OAUTH2_CLIENT_SECRET".into())
        }
        (other, _) => return Err(format!("--auth must be basic, post or none, not {other:?}")),
    };
    let token_url = TokenUrl::new(&args.token_url).map_err(|e| e.to_string())?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let endpoint =
        TokenEndpoint::new(http.clone(), token_url, client).timeout(Duration::from_secs(10));
    let mut request = TokenRequest::client_credentials();
    if let Some(scope) = &args.scope {
        request = request.scope(scope);
    }
    let cache = TokenCache::builder(endpoint, request).build();
    let service = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(http);

    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let run_for = Duration::from_secs(5);
    let remaining = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (service, counts, remaining, url) = (
            service.clone(),
            counts.clone(),
            remaining.clone(),
            args.url.clone(),
        );
        let timed = args.requests.is_none();
        workers.push(tokio::spawn(async move {
            loop {
                if timed && started.elapsed() >= run_for {
                    break;
                }
                if remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let req = match Request::get(url.as_str()).body(Full::default()) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("demo: bad --url: {e}");
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                counts.requests.fetch_add(1, Ordering::Relaxed);
                match service.clone().oneshot(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.into_body().collect().await;
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                        counts.unauthorized.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        eprintln!("demo: resource answered {}", resp.status());
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("demo: request failed: {e}");
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if timed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    if let Some(local) = &args.local {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        local.revoke_current();
    }
    for w in workers {
        let _ = w.await;
    }
    let stats = cache.stats();
    let c = &*counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "demo: {:.1} s, {} background refreshes, {} requests waited for a token, {} tokens invalidated by a 401",
        started.elapsed().as_secs_f64(),
        stats.background_refreshes,
        stats.waits,
        stats.invalidations
    );
    println!(
        "summary: requests={} ok={} unauthorized={} errors={} token_fetches={} retries={}",
        get(&c.requests),
        get(&c.ok),
        get(&c.unauthorized),
        get(&c.errors),
        stats.token_fetches,
        stats.retries
    );
    let failed = get(&c.errors) + get(&c.unauthorized);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    ok: AtomicU64,
    unauthorized: AtomicU64,
    errors: AtomicU64,
}

// ---------------------------------------------------------------------------
// The local token endpoint and resource server (used with no arguments).

const TOKEN_TTL: u64 = 2;

struct LocalServer {
    addr: SocketAddr,
    started: Instant,
    tokens: Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    next: u64,
    valid: HashMap<String, Instant>,
    revoked: HashSet<String>,
    newest: Option<String>,
}

impl LocalServer {
    async fn start() -> Arc<LocalServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let server = Arc::new(LocalServer {
            addr: listener.local_addr().expect("local address"),
            started: Instant::now(),
            tokens: Mutex::new(Tokens::default()),
        });
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        server
    }

    fn log(&self, what: &str) {
        println!("[{:>5.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn revoke_current(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(newest) = t.newest.clone() {
            t.revoked.insert(newest.clone());
            drop(t);
            self.log(&format!(
                "resource server: revoking {newest} (the next request gets a 401)"
            ));
        }
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        if parts.uri.path() == "/token" {
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
                return json(400, r#"{"error":"unsupported_grant_type"}"#);
            }
            let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            t.next += 1;
            let token = format!("demo-token-{}", t.next);
            t.valid.insert(
                token.clone(),
                Instant::now() + Duration::from_secs(TOKEN_TTL),
            );
            t.newest = Some(token.clone());
            drop(t);
            self.log(&format!(
                "token endpoint: issued {token} (expires_in={TOKEN_TTL})"
            ));
            return json(
                200,
                &format!(
                    r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{TOKEN_TTL},"scope":"orders:read"}}"#
                ),
            );
        }
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let ok = token.as_ref().is_some_and(|tok| {
            !t.revoked.contains(tok) && t.valid.get(tok).is_some_and(|exp| Instant::now() < *exp)
        });
        drop(t);
        if ok {
            json(200, r#"{"orders":[]}"#)
        } else {
            self.log(&format!(
                "resource server: 401 for {}",
                token.as_deref().unwrap_or("a request without a token")
            ));
            let mut r = json(401, r#"{"error":"invalid_token"}"#);
            r.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
            r
        }
    }
}

fn json(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}
