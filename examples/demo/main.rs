//! `cargo run --example demo`: OAuth2Layer in front of an HTTP client.
//!
//! With no arguments it needs nothing external: it starts a token endpoint and
//! a protected resource server on 127.0.0.1 issuing 2-second tokens, sends
//! requests through the layer from several tasks for a few seconds, revokes
//! the current token once mid-run so the 401 retry shows, and prints what
//! happens.
//!
//! With flags it talks to real servers (`--help` lists every flag and the
//! environment variable that can set it):
//!
//! ```text
//! cargo run --example demo -- --token-url URL --client-id ID [--client-secret S]
//!     [--auth basic|post|none] [--scope "a b"] --url RESOURCE_URL
//!     [--requests N | --duration SECS] [--concurrency C] [--timeout SECS]
//!     [--ca-file PEM]
//! ```
//!
//! The secret may also come from `OAUTH2_CLIENT_SECRET`. It speaks `https`
//! (rustls), trusting Mozilla's root certificates and, with `--ca-file`, the
//! CA certificates of a PEM file; plain `http` is accepted on loopback only.
//! Each request may take `--timeout` seconds (30 by default), token fetch
//! included; one that takes longer is an error.
//!
//! `--duration SECS` sends requests for that long instead of `--requests N`
//! (the two exclude each other). The demo exits non-zero when any request
//! fails (a certificate it does not trust included) or is refused with 401.
//!
//! More flags, each with its environment variable in `--help`:
//!
//! - `--auth private_key_jwt --key key.pem [--key-alg ES256|EdDSA|RS256|PS256] [--key-id KID]`
//!   and `--auth client_secret_jwt` sign a JWT client assertion per token
//!   request (build the demo with `--features jwt`, or `jwt-rsa` for RSA keys:
//!   `cargo run --example demo --features jwt -- …`);
//! - `--client-secret-file PATH` (with `--auth basic` or `post`) reads the
//!   secret from a file for every token request, so a rotated Kubernetes
//!   secret is used without a restart (a trailing newline is cut off);
//!   `--auth private_key_jwt --client-assertion-file PATH` and
//!   `--auth spiffe_jwt --client-assertion-file PATH` send the JWT in the file
//!   (a projected service-account token, a SPIFFE JWT-SVID) as the client
//!   assertion, read for every token request (no `jwt` feature needed);
//! - `--revocation-url URL --revoke-on-exit` revokes the tokens (RFC 7009)
//!   after the last request;
//! - `--dpop-key-file FILE` binds them to the key in FILE instead, read again
//!   when it changes (a rotated key gets its own token, no request fails);
//! - `--dpop` binds the tokens to an ephemeral ES256 key (RFC 9449): token and
//!   resource requests carry proofs (build with `--features dpop`);
//! - `--redis redis://…` shares one token with every other process started
//!   with the same flags (build with `--features redis`); `OAUTH2_REDIS_KEY`
//!   (standard base64 of 32 bytes) encrypts it in Redis. `token_fetches=` still
//!   counts this process's own token requests, and a line `demo: fleet: …`
//!   before the summary counts what the Redis tier did (`shared_hits=`,
//!   `leases=`, `lease_waits=`, `fallbacks=`, …). `--redis-lease SECS` and
//!   `--redis-timeout MS` set the lease and the deadline on Redis calls;
//! - `--pause MS` makes each task wait between two of its requests.
//!
//! Logs go to stderr through a `tracing` subscriber: `RUST_LOG` chooses
//! what (tracing-subscriber's `EnvFilter` syntax); by default the
//! library's WARN lines, so a failed token fetch and its backoff, a
//! resource server refusing new tokens too (the 401 backoff), or a Redis
//! outage shows. `RUST_LOG=tower_oauth2=debug` shows every token request,
//! token cached and 401 handled, inside the spans the `cache` module docs
//! list.
//!
//! While it runs on a terminal, one line on stderr shows its progress
//! (requests per second, the counts so far); nothing of it is printed when
//! stderr is not a terminal.
//!
//! Either way it ends with one line
//! `summary: requests=N ok=N unauthorized=N errors=N token_fetches=N retries=N`
//! and exits non-zero if any request failed (2 for a usage error).

mod args;
mod client;
mod local;
mod progress;
mod run;
mod setup;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use args::{Args, Mode};
use local::{LocalServer, TOKEN_TTL};
use run::{Config, Until};

#[tokio::main]
async fn main() -> ExitCode {
    install_logs();
    let mut config = match Args::mode_from(std::env::args_os()) {
        Mode::Remote(config) => *config,
        Mode::Local { timeout } => {
            let local = LocalServer::start().await;
            println!(
                "demo: token endpoint and resource server on http://{} (tokens live {} s)",
                local.addr, TOKEN_TTL
            );
            // Halfway through, revoke the token in use: one 401, one retry.
            let revoker = local.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                revoker.revoke_current();
            });
            local_config(&local, timeout)
        }
    };
    config.progress = std::io::stderr().is_terminal();
    match run::run(&config).await {
        Ok(summary) => {
            println!("{summary}");
            summary.exit_code()
        }
        Err(msg) => {
            eprintln!("demo: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The library's logs on stderr: `RUST_LOG`, else its WARN lines.
fn install_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("demo: RUST_LOG={spec:?} is not a filter ({e}); showing the WARN lines");
            EnvFilter::new("tower_oauth2=warn")
        }),
        Err(_) => EnvFilter::new("tower_oauth2=warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The run against the demo's own servers: eight tasks for five seconds,
/// each pausing 20 ms between two requests.
fn local_config(local: &LocalServer, timeout: Duration) -> Config {
    Config {
        token_endpoint: run::TokenAt::Url(format!("http://{}/token", local.addr)),
        client_id: "demo-client".into(),
        client_secret: Some("demo p@ss:w+rd/%&=?".into()),
        client_secret_file: None,
        client_assertion_file: None,
        auth: "basic".into(),
        key: None,
        key_alg: "ES256".into(),
        key_id: None,
        revocation_url: None,
        revoke_on_exit: false,
        dpop: false,
        dpop_key_file: None,
        redis: None,
        redis_key: None,
        redis_lease: None,
        redis_timeout: None,
        scope: Some("orders:read".into()),
        url: format!("http://{}/orders", local.addr),
        until: Until::Elapsed(Duration::from_secs(5)),
        concurrency: 8,
        timeout,
        pause: Duration::from_millis(20),
        ca_file: None,
        progress: false,
    }
}
