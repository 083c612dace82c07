//! The demo binary (`examples/demo`), built once per test binary with
//! `cargo build --example demo` and the features this test binary was
//! built with: when `cargo test` built the examples already (it does, with
//! the same features), that build is a no-op. For the tests that run it as
//! a process (`support::demo_process`, `tests/demo_logs.rs`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Every feature of the crate, to build the demo as this binary was built.
const FEATURES: [(&str, bool); 8] = [
    ("rustls", cfg!(feature = "rustls")),
    ("dpop", cfg!(feature = "dpop")),
    ("reqwest", cfg!(feature = "reqwest")),
    ("jwt", cfg!(feature = "jwt")),
    ("jwt-rsa", cfg!(feature = "jwt-rsa")),
    ("metrics", cfg!(feature = "metrics")),
    ("redis", cfg!(feature = "redis")),
    ("testing", cfg!(feature = "testing")),
];

/// The demo binary, built once (with this test binary's features).
pub fn demo_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let features: Vec<&str> = FEATURES.iter().filter(|f| f.1).map(|f| f.0).collect();
            let mut cargo = Command::new(env!("CARGO"));
            // What cargo sets for this test's run is not the user's
            // environment: a build script watching one of these (ring's
            // does) would rebuild its crate and everything above it.
            for (name, _) in std::env::vars_os() {
                let n = name.to_string_lossy();
                let set_by_cargo = ["CARGO_PKG_", "CARGO_MANIFEST_"]
                    .iter()
                    .any(|p| n.starts_with(p))
                    || [
                        "CARGO_CRATE_NAME",
                        "CARGO_BIN_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                    ]
                    .contains(&&*n)
                    || ["CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR"].contains(&&*n);
                if set_by_cargo {
                    cargo.env_remove(&name);
                }
            }
            let out = cargo
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    "build",
                    "--example",
                    "demo",
                    "--message-format=json-render-diagnostics",
                ])
                .args(["--features", &features.join(",")])
                .stderr(Stdio::inherit())
                .output()
                .expect("run cargo build --example demo");
            assert!(out.status.success(), "cargo build --example demo failed");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["target"]["name"] == "demo")
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .expect("cargo names the demo's executable")
        })
        .clone()
}
