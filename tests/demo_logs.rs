//! `examples/demo` run as a process, as a person runs it: its logs on
//! stderr (issue 22, "Logs a person can see"). `RUST_LOG` chooses them;
//! by default the library's WARN lines show, so a resource server that
//! refuses every token shows the 401 backoff's line.

mod support;

use std::process::Output;
use std::time::Duration;

use support::demo_binary::demo_binary;
use support::token_server::TestServer;

/// Runs the demo against `server` (`/orders` as the resource) for
/// `requests` requests from one task, with `RUST_LOG` set to `rust_log`
/// (or unset); at most a minute.
async fn run_demo(server: &TestServer, requests: &str, rust_log: Option<&str>) -> Output {
    let binary = tokio::task::spawn_blocking(demo_binary)
        .await
        .expect("the demo built");
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["--token-url", &server.token_url()])
        .args(["--client-id", "client", "--client-secret", "secret"])
        .args(["--url", &server.url("/orders")])
        .args(["--requests", requests, "--concurrency", "1"])
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
