//! The run itself: a token cache and the layer in front of a hyper-util
//! client, workers sending GETs through it, and the counts they end with.

use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::{
    ClientAuth, OAuth2Layer, OAuth2Service, TokenCache, TokenEndpoint, TokenRequest, TokenUrl,
};

/// The longest a token request may take, whatever `--timeout` says.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run against.
#[derive(Debug, Clone)]
pub struct Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// `basic`, `post` or `none`.
    pub auth: String,
    pub scope: Option<String>,
    pub url: String,
    /// How many requests in all; `None`: as many as fit in five seconds.
    pub requests: Option<u64>,
    pub concurrency: usize,
    /// How long each request may take, token fetch included.
    pub timeout: Duration,
}

/// How the requests ended, and what the token cache did for them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub requests: u64,
    pub ok: u64,
    pub unauthorized: u64,
    /// Failed requests: transport errors, timeouts, other statuses.
    pub errors: u64,
    pub token_fetches: u64,
    pub retries: u64,
}

impl Summary {
    /// Success only if every request was answered with a success.
    pub fn exit_code(&self) -> ExitCode {
        if self.errors + self.unauthorized == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary: requests={} ok={} unauthorized={} errors={} token_fetches={} retries={}",
            self.requests,
            self.ok,
            self.unauthorized,
            self.errors,
            self.token_fetches,
            self.retries
        )
    }
}

type Service = OAuth2Service<Client<HttpConnector, Full<Bytes>>>;

/// Sends the requests `config` asks for and counts how they end. `Err`:
/// the configuration cannot work (no secret for `basic`, a bad token URL).
pub async fn run(config: &Config) -> Result<Summary, String> {
    let cache = cache(config)?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(http);
    let counts = Arc::new(Counts::default());
    let remaining = Arc::new(AtomicU64::new(config.requests.unwrap_or(u64::MAX)));
    let started = Instant::now();
    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| {
            let worker = Worker {
                service: service.clone(),
                config: config.clone(),
                counts: counts.clone(),
                remaining: remaining.clone(),
                started,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let stats = cache.stats();
    println!(
        "demo: {:.1} s, {} background refreshes, {} requests waited for a token, {} tokens invalidated by a 401",
        started.elapsed().as_secs_f64(),
        stats.background_refreshes,
        stats.waits,
        stats.invalidations
    );
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(Summary {
        requests: get(&counts.requests),
        ok: get(&counts.ok),
        unauthorized: get(&counts.unauthorized),
        errors: get(&counts.errors),
        token_fetches: stats.token_fetches,
        retries: stats.retries,
    })
}

/// The token cache `config` describes: client credentials, its scope.
fn cache(config: &Config) -> Result<TokenCache, String> {
    let id = config.client_id.clone();
    let client = match (config.auth.as_str(), config.client_secret.clone()) {
        ("basic", Some(s)) => ClientAuth::client_secret_basic(id, s),
        ("post", Some(s)) => ClientAuth::client_secret_post(id, s),
        ("none", _) => ClientAuth::none(id),
        ("basic" | "post", None) => {
            return Err("--auth basic|post needs --client-secret or OAUTH2_CLIENT_SECRET".into())
        }
        (other, _) => return Err(format!("--auth must be basic, post or none, not {other:?}")),
    };
    let token_url = TokenUrl::new(&config.token_url).map_err(|e| e.to_string())?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let endpoint =
        TokenEndpoint::new(http, token_url, client).timeout(config.timeout.min(TOKEN_TIMEOUT));
    let mut request = TokenRequest::client_credentials();
    if let Some(scope) = &config.scope {
        request = request.scope(scope);
    }
    Ok(TokenCache::builder(endpoint, request).build())
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    ok: AtomicU64,
    unauthorized: AtomicU64,
    errors: AtomicU64,
}

/// One of the tasks sending requests one after another.
struct Worker {
    service: Service,
    config: Config,
    counts: Arc<Counts>,
    remaining: Arc<AtomicU64>,
    started: Instant,
}

/// How long a timed run (no request count) lasts.
const RUN_FOR: Duration = Duration::from_secs(5);

impl Worker {
    async fn run(self) {
        let timed = self.config.requests.is_none();
        loop {
            if timed && self.started.elapsed() >= RUN_FOR {
                break;
            }
            let left = self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if left.is_err() {
                break;
            }
            let req = match Request::get(self.config.url.as_str()).body(Full::default()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("demo: bad --url: {e}");
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            self.counts.requests.fetch_add(1, Ordering::Relaxed);
            let counter = match tokio::time::timeout(self.config.timeout, self.send(req)).await {
                Ok(counter) => counter,
                Err(_) => {
                    let secs = self.config.timeout.as_secs_f64();
                    eprintln!("demo: request timed out after {secs} s");
                    &self.counts.errors
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if timed {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Sends one request through the layer and reads the answer; the
    /// counter it goes under.
    async fn send(&self, req: Request<Full<Bytes>>) -> &AtomicU64 {
        match self.service.clone().oneshot(req).await {
            Ok(resp) if resp.status().is_success() => {
                let _ = resp.into_body().collect().await;
                &self.counts.ok
            }
            Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => &self.counts.unauthorized,
            Ok(resp) => {
                eprintln!("demo: resource answered {}", resp.status());
                &self.counts.errors
            }
            Err(e) => {
                eprintln!("demo: request failed: {e}");
                &self.counts.errors
            }
        }
    }
}
