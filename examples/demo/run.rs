//! The run itself: a token cache and the layer in front of a hyper-util
//! client (`http` and `https`), workers sending GETs through it, and the
//! counts they end with.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::discovery::Discovery;
use tower_oauth2::{OAuth2Layer, OAuth2Service, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

use crate::client::{http_client, HttpClient};
use crate::progress::{self, Sample};
use crate::setup;

/// The longest a token request may take, whatever `--timeout` says.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the token endpoint is.
#[derive(Debug, Clone)]
pub enum TokenAt {
    /// `--token-url`.
    Url(String),
    /// `--issuer`: its metadata names it.
    Issuer(String),
}

/// What to run against.
#[derive(Debug, Clone)]
pub struct Config {
    pub token_endpoint: TokenAt,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Files the client secret or the client assertion is read from, for
    /// every token request.
    pub client_secret_file: Option<PathBuf>,
    pub client_assertion_file: Option<PathBuf>,
    /// `basic`, `post`, `none`, `private_key_jwt` or `client_secret_jwt`.
    pub auth: String,
    /// For `private_key_jwt`: the PEM key file, its algorithm, its `kid`
    /// (read only when the demo is built with `--features jwt`).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub key: Option<PathBuf>,
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub key_alg: String,
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub key_id: Option<String>,
    /// The RFC 7009 revocation endpoint, and whether to revoke at the end.
    pub revocation_url: Option<String>,
    pub revoke_on_exit: bool,
    /// Whether tokens are DPoP-bound to an ephemeral key (RFC 9449).
    pub dpop: bool,
    /// Or to the key in this file, read again when it changes.
    pub dpop_key_file: Option<PathBuf>,
    /// The fleet's Redis, and the key that encrypts tokens there.
    pub redis: Option<String>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub redis_key: Option<String>,
    /// The lease and the deadline on Redis calls, when not the defaults.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub redis_lease: Option<Duration>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub redis_timeout: Option<Duration>,
    pub scope: Option<String>,
    pub url: String,
    /// When to stop sending.
    pub until: Until,
    pub concurrency: usize,
    /// How long each request may take, token fetch included.
    pub timeout: Duration,
    /// How long each task waits between two of its requests.
    pub pause: Duration,
    /// A PEM file of CA certificates trusted besides Mozilla's roots.
    pub ca_file: Option<PathBuf>,
    /// Whether to show the live progress line on stderr.
    pub progress: bool,
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After this many requests in all.
    Requests(u64),
    /// Once this long has passed since the start (requests in flight then
    /// still finish).
    Elapsed(Duration),
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

type Service = OAuth2Service<HttpClient>;

/// `scheme://host[:port]` of `url`, the API the token is for.
fn origin_of(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok(format!("{scheme}://{authority}")),
        _ => Err(format!("--url {url:?} must be an absolute http(s) URL")),
    }
}

/// Sends the requests `config` asks for and counts how they end. `Err`:
/// the configuration cannot work (no secret for `basic`, a bad token URL,
/// an unusable `--ca-file`).
pub async fn run(config: &Config) -> Result<Summary, String> {
    let http = http_client(config.ca_file.as_deref())?;
    let (cache, fleet) = cache(config, http.clone()).await?;
    // The token goes to the origin of `--url` only.
    let oauth2 = OAuth2Layer::for_origin(cache.clone(), origin_of(&config.url)?)
        .map_err(|e| format!("--url: {e}"))?;
    let service = ServiceBuilder::new().layer(oauth2).service(http);
    let counts = Arc::new(Counts::default());
    let remaining = Arc::new(AtomicU64::new(match config.until {
        Until::Requests(n) => n,
        Until::Elapsed(_) => u64::MAX,
    }));
    let line = config.progress.then(|| {
        let (counts, cache) = (counts.clone(), cache.clone());
        progress::Line::start(move || counts.sample(&cache))
    });
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
    if let Some(line) = line {
        line.stop().await;
    }
    let stats = cache.stats();
    println!(
        "demo: {:.1} s, {} background refreshes, {} requests waited for a token, {} tokens invalidated by a 401",
        started.elapsed().as_secs_f64(),
        stats.background_refreshes,
        stats.waits,
        stats.invalidations
    );
    if let Some(fleet) = fleet {
        println!("demo: fleet: {}", fleet());
    }
    if config.revoke_on_exit {
        // After the last request: RFC 7009, the refresh token (if any), then
        // the access token. A failure is an error of the run.
        match cache.revoke().await {
            Ok(()) => println!("demo: tokens revoked"),
            Err(e) => {
                progress::eprintln(format_args!("demo: revocation failed: {e}"));
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let s = counts.sample(&cache);
    Ok(Summary {
        requests: s.requests,
        ok: s.ok,
        unauthorized: s.unauthorized,
        errors: s.errors,
        token_fetches: s.token_fetches,
        retries: stats.retries,
    })
}

/// The token cache `config` describes: client credentials, its scope, and
/// what the optional flags add (see `setup`); with `--redis`, what reports
/// the fleet's counters.
async fn cache(
    config: &Config,
    http: HttpClient,
) -> Result<(TokenCache, Option<setup::FleetReport>), String> {
    let client = setup::client_auth(config)?;
    let endpoint = match &config.token_endpoint {
        TokenAt::Url(url) => {
            TokenEndpoint::new(http, TokenUrl::new(url).map_err(|e| e.to_string())?, client)
        }
        TokenAt::Issuer(issuer) => Discovery::new(http.clone())
            .discover(issuer)
            .await
            .map_err(|e| format!("--issuer: {e}"))?
            .endpoint(http, client),
    }
    .timeout(config.timeout.min(TOKEN_TIMEOUT));
    let endpoint = setup::revocation(endpoint, config)?;
    let endpoint = setup::dpop(endpoint, config)?;
    let mut request = TokenRequest::client_credentials();
    if let Some(scope) = &config.scope {
        request = request.scope(scope);
    }
    let (builder, fleet) = setup::fleet(TokenCache::builder(endpoint, request), config)?;
    Ok((builder.build(), fleet))
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    ok: AtomicU64,
    unauthorized: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    /// The counts now, with the token fetches of `cache`.
    fn sample(&self, cache: &TokenCache) -> Sample {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Sample {
            requests: get(&self.requests),
            ok: get(&self.ok),
            unauthorized: get(&self.unauthorized),
            errors: get(&self.errors),
            token_fetches: cache.stats().token_fetches,
        }
    }
}

/// One of the tasks sending requests one after another.
struct Worker {
    service: Service,
    config: Config,
    counts: Arc<Counts>,
    remaining: Arc<AtomicU64>,
    started: Instant,
}

impl Worker {
    async fn run(self) {
        loop {
            if let Until::Elapsed(d) = self.config.until {
                if self.started.elapsed() >= d {
                    break;
                }
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
                    progress::eprintln(format_args!("demo: bad --url: {e}"));
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            self.counts.requests.fetch_add(1, Ordering::Relaxed);
            let counter = match tokio::time::timeout(self.config.timeout, self.send(req)).await {
                Ok(counter) => counter,
                Err(_) => {
                    let secs = self.config.timeout.as_secs_f64();
                    progress::eprintln(format_args!("demo: request timed out after {secs} s"));
                    &self.counts.errors
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if !self.config.pause.is_zero() {
                tokio::time::sleep(self.config.pause).await;
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
                progress::eprintln(format_args!("demo: resource answered {}", resp.status()));
                &self.counts.errors
            }
            Err(e) => {
                progress::eprintln(format_args!("demo: request failed: {}", chain(&e)));
                &self.counts.errors
            }
        }
    }
}

/// `error`, then each of its sources, joined by `: `: a TLS failure shows
/// its cause (`invalid peer certificate: UnknownIssuer`, say).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        // Some errors repeat their source's text in their own.
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        source = e.source();
    }
    text
}
