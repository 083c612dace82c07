//! The integration tests, one binary: one module per area (a file here, or
//! a folder for the fleet, the combination matrix and the real
//! authorization server), and what they share built once (`support`, the
//! Redis test servers, the demo's own modules). Run one area with
//! `cargo test --all-features --test it fleet::` (a name filter).
//!
//! A module whose features are off compiles to nothing (`#![cfg]` at its
//! top), so `cargo test` with the default features runs the rest.

// With a feature off, the modules using some of `support` compile to
// nothing and leave it unused; the build with every feature (CI's clippy)
// still finds dead code.
#![cfg_attr(
    not(all(
        feature = "rustls",
        feature = "reqwest",
        feature = "jwt",
        feature = "dpop",
        feature = "jwt-rsa",
        feature = "metrics",
        feature = "redis",
        feature = "testing"
    )),
    allow(dead_code)
)]

// The demo example's modules, driven by `demo`, `demo_env` and `demo_tls`
// (they name each other as `crate::…`, so they sit at the root).
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

#[cfg(feature = "redis")]
#[path = "../src/test_support/redis_server.rs"]
mod redis_server;
mod support;

mod axum;
mod cache;
mod cache_runtime;
mod credentials;
mod demo;
mod demo_env;
mod demo_logs;
mod demo_tls;
mod destinations;
mod discovery;
mod dpop;
mod dpop_algs;
mod dpop_rotation;
mod faults;
mod fleet;
mod forbidden;
mod jwt;
mod keyed;
mod keyed_handle;
mod layer;
mod matrix;
mod metrics;
mod mtls;
mod on_behalf;
mod parser_robustness;
mod poll_ready;
mod real_server;
mod redirects;
mod reqwest;
mod revocation;
mod secrets;
mod spans;
mod status;
mod store;
mod testing_kit;
mod tier_contract;
mod tls;
mod token_bodies;
mod token_endpoint;
mod tonic;
mod unauthorized;
