//! `examples/demo` over HTTPS: a token endpoint and a resource server behind
//! TLS listeners on 127.0.0.1, with certificates from a test CA that only
//! `--ca-file` makes the demo trust. Driven through the example's own
//! modules, as tests/demo.rs does.

use crate::args;
use crate::run;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::{Args, Mode};
use run::{Config, Until};
use support::pki::{pki, tls_servers, Frontend};

/// A file under the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("tower-oauth2-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The demo's configuration for these flags, after the servers' URLs and
/// the client's credentials.
fn remote(token: &Frontend, resource: &Frontend, flags: &[&str]) -> Config {
    // The token URL is checked against the certificate's IP address, the
    // resource URL against its DNS name.
    let token_url = format!("https://127.0.0.1:{}/token", token.port());
    let url = format!("https://localhost:{}/orders", resource.port());
    let mut args = vec![
        "demo",
        "--token-url",
        &token_url,
        "--client-id",
        "svc-orders",
        "--client-secret",
        "s3cret",
        "--scope",
        "orders:read",
        "--url",
        &url,
    ];
    args.extend_from_slice(flags);
    match Args::mode_from(args) {
        Mode::Remote(config) => *config,
        Mode::Local { timeout } => {
            panic!("flags must name the servers to use, not the local run ({timeout:?})")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_file_every_request_succeeds_over_tls() {
    let pki = pki();
    let (server, token_tls, resource_tls) = tls_servers(&pki).await;
    let ca = TempFile::new("demo-ca.pem", &pki.ca_pem);
    let flags = ["--requests", "5", "--concurrency", "2"];
    let config = remote(
        &token_tls,
        &resource_tls,
        &[&flags[..], &["--ca-file", ca.path()]].concat(),
    );
    assert_eq!(config.ca_file.as_deref(), Some(Path::new(ca.path())));
    assert_eq!(config.until, Until::Requests(5));

    let summary = run::run(&config).await.expect("a usable configuration");
    assert_eq!(
        summary.to_string(),
        "summary: requests=5 ok=5 unauthorized=0 errors=0 token_fetches=1 retries=0"
    );
    assert_eq!(summary.exit_code(), ExitCode::SUCCESS);

    // One token request, over TLS, with the client's credentials.
    assert_eq!(server.token_requests(), 1);
    let received = server.received();
    let sent = (received[0].authorization(), received[0].body.as_str());
    let basic = "Basic c3ZjLW9yZGVyczpzM2NyZXQ="; // svc-orders:s3cret
    let form = "grant_type=client_credentials&scope=orders%3Aread";
    assert_eq!(sent, (Some(basic), form));
    assert_eq!((token_tls.accepted(), token_tls.refused()), (1, 0));
    // Five resource requests, each with the token, none refused.
    let seen = server.path_authorizations();
    let expected = vec![("/orders".to_owned(), Some("Bearer at-1".to_owned())); 5];
    assert_eq!(seen, expected);
    assert_eq!(resource_tls.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_file_the_certificate_is_refused_and_the_request_is_an_error() {
    let pki = pki();
    let (server, token_tls, resource_tls) = tls_servers(&pki).await;
    // One request: a second one within the cache's backoff would fail
    // without a token request of its own, after it a new one would be sent.
    let config = remote(&token_tls, &resource_tls, &["--requests", "1"]);
    assert_eq!(config.ca_file, None);

    let summary = run::run(&config).await.expect("a usable configuration");
    assert_eq!(
        summary.to_string(),
        "summary: requests=1 ok=0 unauthorized=0 errors=1 token_fetches=1 retries=0"
    );
    assert_eq!(summary.exit_code(), ExitCode::FAILURE);
    // Mozilla's roots do not hold the test CA: the token request never got
    // through the handshake, and so nothing went to the resource server.
    assert_eq!(server.token_requests(), 0);
    assert_eq!(token_tls.accepted(), 0);
    assert_eq!(server.resource_count(), 0);
    assert_eq!(resource_tls.accepted(), 0);
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_used_stops_the_demo_before_any_request() {
    let pki = pki();
    let (server, token_tls, resource_tls) = tls_servers(&pki).await;

    let missing = std::env::temp_dir().join("tower-oauth2-no-such-ca.pem");
    let missing = missing.to_str().unwrap();
    let config = remote(&token_tls, &resource_tls, &["--ca-file", missing]);
    let io = std::fs::read(missing).unwrap_err();
    assert_eq!(
        run::run(&config).await,
        Err(format!("--ca-file {missing}: I/O error: {io}"))
    );

    // A PEM file with a key and no certificate.
    let key = TempFile::new(
        "demo-key.pem",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let config = remote(&token_tls, &resource_tls, &["--ca-file", key.path()]);
    assert_eq!(
        run::run(&config).await,
        Err(format!(
            "--ca-file {}: no PEM certificate in it",
            key.path()
        ))
    );

    assert_eq!(server.token_requests() + server.resource_count(), 0);
    assert_eq!(token_tls.accepted() + resource_tls.accepted(), 0);
}
