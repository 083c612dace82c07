//! `examples/demo`: its command line, and its run against a token endpoint
//! and a resource server on 127.0.0.1, driven here through the example's own
//! modules (in this process; `tests/demo_env.rs` runs the binary).

use crate::args;
use crate::progress;
use crate::run;
use crate::support;

use std::process::ExitCode;
use std::time::Duration;

use args::{Args, Mode};
use clap::CommandFactory;
use progress::Sample;
use run::{Summary, Until};
use support::demo_process::all_ok_with_one_token;
use support::serve::serve_tcp;
use support::token_server::TestServer;
use tokio::io::AsyncReadExt;

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let help = Args::command().render_long_help().to_string();
    for (flag, env) in [
        ("--token-url <URL>", "OAUTH2_TOKEN_URL"),
        ("--client-id <ID>", "OAUTH2_CLIENT_ID"),
        ("--client-secret <S>", "OAUTH2_CLIENT_SECRET"),
        ("--client-secret-file <PATH>", "OAUTH2_CLIENT_SECRET_FILE"),
        (
            "--client-assertion-file <PATH>",
            "OAUTH2_CLIENT_ASSERTION_FILE",
        ),
        ("--auth <METHOD>", "OAUTH2_AUTH"),
        ("--scope <\"a b\">", "OAUTH2_SCOPE"),
        ("--url <RESOURCE_URL>", "DEMO_URL"),
        ("--requests <N>", "DEMO_REQUESTS"),
        ("--duration <SECS>", "DEMO_DURATION"),
        ("--concurrency <C>", "DEMO_CONCURRENCY"),
        ("--timeout <SECS>", "DEMO_TIMEOUT"),
        ("--ca-file <PEM>", "DEMO_CA_FILE"),
        ("--key <PEM>", "OAUTH2_KEY_FILE"),
        ("--key-alg <ALG>", "OAUTH2_KEY_ALG"),
        ("--key-id <KID>", "OAUTH2_KEY_ID"),
        ("--revocation-url <URL>", "OAUTH2_REVOCATION_URL"),
        ("--revoke-on-exit", "DEMO_REVOKE_ON_EXIT"),
        ("--dpop", "OAUTH2_DPOP"),
        ("--dpop-key-file <FILE>", "OAUTH2_DPOP_KEY_FILE"),
        ("--redis <URL>", "OAUTH2_REDIS_URL"),
        ("--redis-key <BASE64>", "OAUTH2_REDIS_KEY"),
        ("--redis-lease <SECS>", "OAUTH2_REDIS_LEASE"),
        ("--redis-timeout <MS>", "OAUTH2_REDIS_TIMEOUT"),
        ("--pause <MS>", "DEMO_PAUSE"),
    ] {
        let at = help
            .find(flag)
            .unwrap_or_else(|| panic!("no {flag}:\n{help}"));
        let next = help[at + 2..]
            .find("\n      --")
            .map_or(help.len(), |n| at + 2 + n);
        assert!(
            help[at..next].contains(&format!("[env: {env}")),
            "{flag} without {env}:\n{help}"
        );
    }
}

#[test]
fn no_arguments_is_the_local_run_with_a_30_second_timeout() {
    let Mode::Local { timeout } = Args::mode_from(["demo"]) else {
        panic!("no arguments must start the demo's own servers");
    };
    assert_eq!(timeout, Duration::from_secs(30));
}

/// The flags naming a server, then `rest`.
fn with_servers<'a>(token_url: &'a str, url: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec!["demo", "--token-url", token_url, "--client-id", "client"];
    flags.extend(["--client-secret", "secret", "--url", url]);
    flags.extend_from_slice(rest);
    flags
}

#[test]
fn duration_is_the_alternative_to_a_request_count() {
    let (token_url, url) = ("http://127.0.0.1:1/token", "http://127.0.0.1:1/orders");
    let until = |rest: &[&str]| match Args::mode_from(with_servers(token_url, url, rest)) {
        Mode::Remote(config) => (config.until, config.pause, config.progress),
        Mode::Local { .. } => panic!("flags must name the servers to use"),
    };
    let (none, off) = (Duration::ZERO, false);
    assert_eq!(until(&[]), (Until::Requests(20), none, off));
    assert_eq!(until(&["--requests", "7"]), (Until::Requests(7), none, off));
    let two_seconds = Until::Elapsed(Duration::from_secs(2));
    assert_eq!(until(&["--duration", "2"]), (two_seconds, none, off));

    let both = with_servers(token_url, url, &["--requests", "7", "--duration", "2"]);
    let err = Args::command().try_get_matches_from(both).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    let zero = with_servers(token_url, url, &["--duration", "0"]);
    let err = Args::command().try_get_matches_from(zero).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
}

/// Runs the demo against `server` (token endpoint, `/orders` resource) with
/// `rest` after the flags naming them.
async fn run_against(server: &TestServer, rest: &[&str]) -> Summary {
    let (token_url, url) = (server.token_url(), server.url("/orders"));
    let Mode::Remote(config) = Args::mode_from(with_servers(&token_url, &url, rest)) else {
        panic!("flags must name the servers to use");
    };
    run::run(&config).await.expect("a usable configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_exit_revokes_the_token_after_the_last_request() {
    let server = TestServer::start().await;
    let revoke = server.url("/revoke");
    let rest = [
        "--requests",
        "3",
        "--revocation-url",
        &revoke,
        "--revoke-on-exit",
    ];
    assert_eq!(run_against(&server, &rest).await, all_ok_with_one_token(3));
    // One revocation, of the one access token, after the three requests.
    let revocations = server.revocations();
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert!(
        revocations[0].body.contains("token=at-1")
            && revocations[0].body.contains("token_type_hint=access_token"),
        "{:?}",
        revocations[0].body
    );
    assert_eq!(server.resource_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_binds_the_token_and_proves_every_request() {
    let server = TestServer::start().await;
    // The server issues DPoP-bound tokens and refuses a request without a
    // valid proof (signature, htm, htu, ath, a fresh jti).
    server.enable_dpop();
    let rest = ["--requests", "3", "--concurrency", "1", "--dpop"];
    let summary = run_against(&server, &rest).await;
    assert_eq!(
        summary,
        all_ok_with_one_token(3),
        "refused: {:?}",
        server.dpop_refusals()
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    // Every resource request went with the DPoP scheme.
    let authorizations = server.authorizations();
    assert_eq!(authorizations.len(), 3);
    for a in &authorizations {
        assert!(
            a.as_deref().is_some_and(|a| a.starts_with("DPoP ")),
            "{authorizations:?}"
        );
    }
}

/// `--dpop-key-file`: the tokens are bound to the key in the file (its
/// thumbprint in the token request's proof), every request proved.
#[cfg(feature = "dpop")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_key_file_binds_the_token_to_the_files_key() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/ed25519.pem");
    let key = tower_oauth2::dpop::Dpop::from_key_file(file).expect("the test key");
    let rest = [
        "--requests",
        "3",
        "--concurrency",
        "1",
        "--dpop-key-file",
        file,
    ];
    let summary = run_against(&server, &rest).await;
    assert_eq!(
        summary,
        all_ok_with_one_token(3),
        "{:?}",
        server.dpop_refusals()
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    let sent = &server.received()[0];
    let proof = crate::support::dpop::read(sent.headers["dpop"].to_str().unwrap()).unwrap();
    assert_eq!(proof.jkt, key.thumbprint());
    assert_eq!(
        server.authorizations(),
        vec![Some("DPoP at-1".to_owned()); 3]
    );
}

#[tokio::test]
async fn optional_flags_that_cannot_work_stop_the_run_with_what_is_missing() {
    let (token_url, url) = ("http://127.0.0.1:1/token", "http://127.0.0.1:1/orders");
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/p256-public.pem");
    for (rest, expected) in [
        (
            &["--revoke-on-exit"][..],
            "--revoke-on-exit needs --revocation-url",
        ),
        (
            &["--auth", "private_key_jwt"][..],
            "--auth private_key_jwt needs --key PATH",
        ),
        (&["--auth", "private_key_jwt", "--key", key][..], "--key "),
        (
            &[
                "--auth",
                "private_key_jwt",
                "--key",
                key,
                "--key-alg",
                "XX1",
            ][..],
            "--key-alg \"XX1\"",
        ),
        (&["--redis", "not a url"][..], "--redis: "),
        (
            &["--redis", "redis://127.0.0.1:1", "--redis-key", "!!"][..],
            "OAUTH2_REDIS_KEY is not standard base64",
        ),
        (
            &["--redis", "redis://127.0.0.1:1", "--redis-key", "AAAA"][..],
            "OAUTH2_REDIS_KEY must hold 32 bytes",
        ),
    ] {
        let Mode::Remote(config) = Args::mode_from(with_servers(token_url, url, rest)) else {
            panic!("flags must name the servers to use");
        };
        let err = run::run(&config).await.expect_err(expected);
        assert!(err.contains(expected), "{rest:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_run_counts_every_request_it_sent() {
    let server = TestServer::start().await;
    let (token_url, url) = (server.token_url(), server.url("/orders"));
    let flags = with_servers(&token_url, &url, &["--duration", "1", "--concurrency", "2"]);
    let Mode::Remote(config) = Args::mode_from(flags) else {
        panic!("flags must name the servers to use");
    };

    let summary = run::run(&config).await.expect("a usable configuration");
    // However many fit in the second: all answered, with the one token.
    let sent = server.resource_count() as u64;
    assert!(sent > 0, "{summary}");
    let expected = Summary {
        requests: sent,
        ok: sent,
        token_fetches: 1,
        ..Summary::default()
    };
    assert_eq!(summary, expected);
    assert_eq!(summary.exit_code(), ExitCode::SUCCESS);
    assert_eq!(server.token_requests(), 1);
}

#[test]
fn the_progress_line_shows_the_rate_and_the_counts() {
    let sample = Sample {
        requests: 1250,
        ok: 1240,
        unauthorized: 1,
        errors: 9,
        token_fetches: 3,
    };
    assert_eq!(
        progress::text(Duration::from_millis(2560), 487.6, &sample),
        "demo: 2.6 s, 488 requests/s, ok=1240 unauthorized=1 errors=9 token_fetches=3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_never_answers_times_out_as_errors() {
    let server = TestServer::start().await;
    // Accepts, reads whatever comes, never answers; the connection ends
    // when the client gives up on it.
    let silent = serve_tcp(|mut tcp| async move {
        let mut buf = [0u8; 1024];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let token_url = server.token_url();
    let url = silent.url("/orders");
    let flags = [
        "demo",
        "--token-url",
        &token_url,
        "--client-id",
        "client",
        "--client-secret",
        "secret",
        "--url",
        &url,
        "--requests",
        "3",
        "--concurrency",
        "2",
        "--timeout",
        "1",
    ];
    let Mode::Remote(config) = Args::mode_from(flags) else {
        panic!("flags must name the servers to use");
    };
    assert_eq!(config.timeout, Duration::from_secs(1));

    let summary = run::run(&config).await.expect("a usable configuration");
    assert_eq!(
        summary.to_string(),
        "summary: requests=3 ok=0 unauthorized=0 errors=3 token_fetches=1 retries=0"
    );
    assert_eq!(summary.exit_code(), ExitCode::FAILURE);
    assert_eq!(server.token_requests(), 1);
}

/// A resource that answers every request with 401 (a bearer challenge,
/// only a `Basic` one, none at all), 200 requests at concurrency 4: a few
/// token requests each, and every 401 still counted in the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_refuses_every_token_costs_a_few_token_requests() {
    for challenges in [
        &[r#"Bearer error="invalid_token""#][..],
        &[r#"Basic realm="demo""#][..],
        &[][..],
    ] {
        let server = TestServer::start().await;
        server.set_reject_all(true);
        server.set_challenges(challenges);
        let (token_url, url) = (server.token_url(), server.url("/orders"));
        let flags = with_servers(
            &token_url,
            &url,
            &["--requests", "200", "--concurrency", "4"],
        );
        let Mode::Remote(config) = Args::mode_from(flags) else {
            panic!("flags must name the servers to use");
        };

        let summary = run::run(&config).await.expect("a usable configuration");

        let fetches = summary.token_fetches;
        assert_eq!(server.token_requests() as u64, fetches, "{challenges:?}");
        // Only a Basic challenge: not ours to answer with a new token. A
        // bearer challenge or none: one refetch, then a backoff (which the
        // run may outlast once or twice on a slow machine).
        let allowed = if challenges == [r#"Basic realm="demo""#] {
            1..=1
        } else {
            2..=5
        };
        assert!(allowed.contains(&fetches), "{challenges:?}: {summary}");
        // Each refetch resends the request that asked for it, and the
        // others (up to 3) that were refused the same token meanwhile.
        let retries = summary.retries;
        let refetches = fetches - 1;
        assert!(
            (refetches..=4 * refetches).contains(&retries),
            "{challenges:?}: {summary}"
        );
        assert_eq!(
            summary.to_string(),
            format!(
                "summary: requests=200 ok=0 unauthorized=200 errors=0 token_fetches={fetches} retries={retries}"
            ),
            "{challenges:?}"
        );
        assert_eq!(summary.exit_code(), ExitCode::FAILURE);
        assert_eq!(server.resource_count() as u64, 200 + summary.retries);
    }
}

/// A file of its own for one test, removed at the end.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn with(name: &str, content: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("tower-oauth2-demo-{name}-{}", std::process::id()));
        std::fs::write(&path, content).expect("a temporary file");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the demo against `server` with exactly `flags` after the program name.
async fn run_with(flags: &[&str]) -> Summary {
    let Mode::Remote(config) =
        Args::mode_from(std::iter::once("demo").chain(flags.iter().copied()))
    else {
        panic!("flags must name the servers to use");
    };
    run::run(&config).await.expect("a usable configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_and_the_client_assertion_from_files() {
    use support::token_server::ClientCheck;
    let server = TestServer::start().await;
    let (token_url, url) = (server.token_url(), server.url("/orders"));

    server.set_client("client", "from-a-file", ClientCheck::Post);
    let secret = TempFile::with("secret", "from-a-file\n");
    let flags = [
        "--token-url",
        &token_url,
        "--client-id",
        "client",
        "--url",
        &url,
    ];
    let mut with_secret = flags.to_vec();
    with_secret.extend([
        "--auth",
        "post",
        "--client-secret-file",
        secret.path(),
        "--requests",
        "6",
    ]);
    assert_eq!(run_with(&with_secret).await, all_ok_with_one_token(6));

    // A JWT that has not expired (2100), as a token issuer would write it.
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let jwt = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"ES256"}"#),
        b64(r#"{"sub":"client","exp":4102444800}"#),
        b64("sig")
    );
    server.set_client("client", "unused", ClientCheck::Assertion);
    server.set_assertion_type(tower_oauth2::credentials::JWT_SPIFFE_ASSERTION_TYPE);
    server.accept_assertion(&jwt);
    let assertion = TempFile::with("svid", &jwt);
    let mut with_svid = flags.to_vec();
    with_svid.extend([
        "--auth",
        "spiffe_jwt",
        "--client-assertion-file",
        assertion.path(),
        "--requests",
        "6",
    ]);
    assert_eq!(run_with(&with_svid).await, all_ok_with_one_token(6));
    assert_eq!(server.token_requests(), 2);
    let sent = server.received().pop().expect("the token request");
    assert_eq!(sent.param("client_assertion"), Some(jwt));

    let both = ["demo", "--client-secret", "s", "--client-secret-file", "/x"];
    let err = Args::command().try_get_matches_from(both).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}
