//! `examples/demo` configured by environment variables alone, as a
//! Kubernetes deployment would (issue 21): no flag on the command line, the
//! client secret from a file. Its own test binary: it sets the process's
//! environment, which no other test may read meanwhile.

#[path = "../examples/demo/args.rs"]
mod args;
#[path = "../examples/demo/client.rs"]
mod client;
#[path = "../examples/demo/progress.rs"]
mod progress;
#[path = "../examples/demo/run.rs"]
mod run;
#[path = "../examples/demo/setup.rs"]
mod setup;
mod support;

use args::{Args, Mode};
use run::Summary;
use support::token_server::{ClientCheck, TestServer};

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
    for (name, value) in &vars {
        std::env::set_var(name, value);
    }
    let mode = Args::mode_from(["demo"]);
    for (name, _) in &vars {
        std::env::remove_var(name);
    }
    let config = match mode {
        Mode::Remote(config) => config,
        Mode::Local { timeout } => {
            panic!("the variables name the servers, yet the local run ({timeout:?}) was chosen")
        }
    };
    let summary = run::run(&config).await.expect("a usable configuration");
    let _ = std::fs::remove_file(&secret);
    assert_eq!(
        summary,
        Summary {
            requests: 5,
            ok: 5,
            token_fetches: 1,
            ..Summary::default()
        }
    );
    assert_eq!(summary.exit_code(), std::process::ExitCode::SUCCESS);
    assert_eq!(server.token_requests(), 1);
    let sent = server.received().pop().expect("the token request");
    assert_eq!(sent.param("scope").as_deref(), Some("orders:read"));
}
