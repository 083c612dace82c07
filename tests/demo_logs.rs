//! `examples/demo` run as a process, as a person runs it: its logs on
//! stderr (issue 22, "Logs a person can see"). `RUST_LOG` chooses them;
//! by default the library's WARN lines show, so a resource server that
//! refuses every token shows the 401 backoff's line.

use crate::support;

use std::process::Output;
use std::time::Duration;

use support::demo_binary::demo_binary;
use support::token_server::TestServer;

/// Runs the demo against `server` (`/orders` as the resource) for
/// `requests` requests from one task, with `RUST_LOG` set to `rust_log`
/// (or unset); at most a minute.
async fn run_demo(server: &TestServer, requests: &str, rust_log: Option<&str>) -> Output {
    run_demo_with(server, requests, rust_log, &[]).await
}

/// [`run_demo`] with more flags.
async fn run_demo_with(
    server: &TestServer,
    requests: &str,
    rust_log: Option<&str>,
    more: &[&str],
) -> Output {
    let binary = tokio::task::spawn_blocking(demo_binary)
        .await
        .expect("the demo built");
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["--token-url", &server.token_url()])
        .args(["--client-id", "client", "--client-secret", "secret"])
        .args(["--url", &server.url("/orders")])
        .args(["--requests", requests, "--concurrency", "1"])
        .args(more)
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the demo ends within a minute")
        .expect("the demo ran")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_debug_shows_the_librarys_lines_in_their_spans() {
    let server = TestServer::start().await;
    let out = run_demo(&server, "3", Some("tower_oauth2=debug")).await;
    let logs = stderr(&out);
    assert!(out.status.success(), "{logs}");
    // The token request, inside the fetch's span and its own.
    assert!(logs.contains(" DEBUG "), "{logs}");
    assert!(logs.contains("oauth2.fetch{background=false}"), "{logs}");
    assert!(
        logs.contains("oauth2.token_request{grant_type=\"client_credentials\""),
        "{logs}"
    );
    assert!(logs.contains("token issued"), "{logs}");
    assert!(logs.contains("token cached"), "{logs}");
    // Never the secret or the token.
    assert!(
        !logs.contains("secret\"") && !logs.contains("at-1"),
        "{logs}"
    );
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_always_refusing_resource_shows_the_backoff_warn_line_only() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let out = run_demo(&server, "4", None).await;
    let logs = stderr(&out);
    // Refused requests make the demo exit non-zero.
    assert!(!out.status.success(), "{logs}");
    let backoff = "the resource server refused a token fetched because of a 401: \
                   new tokens do not help";
    assert_eq!(logs.matches(backoff).count(), 1, "{logs}");
    let line = logs
        .lines()
        .find(|l| l.contains(backoff))
        .expect("the backoff line");
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("error=\"invalid_token\" step=1"), "{line}");
    // WARN lines only: no DEBUG or INFO from the library by default.
    assert!(
        !logs.contains(" DEBUG ") && !logs.contains(" INFO "),
        "{logs}"
    );
    // The first token, its replacement after the first 401, then no more.
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_refused_client_shows_the_failed_fetch_and_its_backoff() {
    let server = TestServer::start().await;
    server.set_failing(Some(support::token_server::Canned::invalid_client(
        "client authentication failed",
    )));
    let out = run_demo(&server, "3", None).await;
    let logs = stderr(&out);
    assert!(!out.status.success(), "{logs}");
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("token fetch failed"))
        .collect();
    assert_eq!(failed.len(), 1, "one fetch, then its backoff:\n{logs}");
    assert!(failed[0].contains(" WARN "), "{logs}");
    assert!(failed[0].contains("invalid_client"), "{logs}");
    assert!(failed[0].contains("failures=1 backoff="), "{logs}");
    assert!(!logs.contains("secret\""), "{logs}");
    assert_eq!(server.token_requests(), 1);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_redis_outage_shows_one_warn_line() {
    let server = TestServer::start().await;
    // Nothing listens there: the outage from the start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let redis = format!("redis://127.0.0.1:{port}");
    let out = run_demo_with(
        &server,
        "3",
        None,
        &["--redis", &redis, "--redis-timeout", "500"],
    )
    .await;
    let logs = stderr(&out);
    assert!(out.status.success(), "the process fetches alone:\n{logs}");
    let outage = "Redis does not answer; this process fetches its own tokens until it does";
    assert_eq!(logs.matches(outage).count(), 1, "{logs}");
    assert!(logs
        .lines()
        .any(|l| l.contains(outage) && l.contains(" WARN ")));
    assert_eq!(server.token_requests(), 1);
}
