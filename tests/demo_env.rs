//! `examples/demo` configured by environment variables alone, as a
//! Kubernetes deployment would (issue 21): no flag on the command line, the
//! client secret from a file. The demo runs as a child process with those
//! variables: setting them in this process would race the other tests,
//! which share its environment.

use std::time::{Duration, Instant};

use crate::support::demo_process::{Member, Summary};
use crate::support::token_server::{ClientCheck, TestServer};

/// Runs the demo with no flag and the variables `vars` (2 minutes at most).
async fn run_demo(vars: &[(&str, String)]) -> Summary {
    let demo = Member::start_with_env(&[], vars);
    let deadline = Instant::now() + Duration::from_secs(120);
    tokio::task::spawn_blocking(move || demo.finish(deadline))
        .await
        .expect("the waiting thread")
        .expect("the demo's summary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_from_environment_variables_alone() {
    let server = TestServer::start().await;
    server.set_client("svc-orders", "from-the-file", ClientCheck::Basic);
    let secret = std::env::temp_dir().join(format!("tower-oauth2-demo-env-{}", std::process::id()));
    std::fs::write(&secret, "from-the-file\n").expect("the secret file");
    let vars = [
        ("OAUTH2_TOKEN_URL", server.token_url()),
        ("OAUTH2_CLIENT_ID", "svc-orders".to_owned()),
        (
            "OAUTH2_CLIENT_SECRET_FILE",
            secret.to_string_lossy().into_owned(),
        ),
        ("OAUTH2_SCOPE", "orders:read".to_owned()),
        ("DEMO_URL", server.url("/orders")),
        ("DEMO_REQUESTS", "5".to_owned()),
    ];
    let summary = run_demo(&vars).await;
    let _ = std::fs::remove_file(&secret);
    assert_eq!(summary, Summary::all_ok_with_one_token(5));
    assert_eq!(server.token_requests(), 1);
    let sent = server.received().pop().expect("the token request");
    assert_eq!(sent.param("scope").as_deref(), Some("orders:read"));
}

/// `OAUTH2_ISSUER` instead of the token URL: the demo reads the issuer's
/// metadata (served here at `/.well-known/openid-configuration`, naming
/// the test server's token endpoint) and fetches its token there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_finds_the_token_endpoint_from_the_issuer() {
    use crate::support::serve::serve;
    use http_body_util::Full;

    let server = TestServer::start().await;
    server.set_client("svc-orders", "s3cret", ClientCheck::Basic);
    let token_url = server.token_url();
    let issuer: std::sync::Arc<std::sync::OnceLock<String>> = Default::default();
    let named = issuer.clone();
    let metadata = serve(tower::service_fn(
        move |req: http::Request<hyper::body::Incoming>| {
            let (issuer, token_url) = (named.get().cloned().unwrap_or_default(), token_url.clone());
            async move {
                let found = req.uri().path() == "/.well-known/openid-configuration";
                let body = serde_json::json!({"issuer": issuer, "token_endpoint": token_url});
                let response = http::Response::builder()
                    .status(if found { 200 } else { 404 })
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from(body.to_string())))
                    .expect("a response");
                Ok::<_, std::convert::Infallible>(response)
            }
        },
    ))
    .await;
    let issuer_url = metadata.url("");
    issuer.set(issuer_url.clone()).expect("set once");
    let vars = [
        ("OAUTH2_ISSUER", issuer_url),
        ("OAUTH2_CLIENT_ID", "svc-orders".to_owned()),
        ("OAUTH2_CLIENT_SECRET", "s3cret".to_owned()),
        ("DEMO_URL", server.url("/orders")),
        ("DEMO_REQUESTS", "3".to_owned()),
    ];
    let summary = run_demo(&vars).await;
    assert_eq!(summary, Summary::all_ok_with_one_token(3));
    assert_eq!(server.token_requests(), 1);
}
