//! DPoP (RFC 9449): the cost of one proof, and of one request through the
//! layer with a DPoP token cached (a proof per request), next to the same
//! request with a bearer token, and next to the floor: the raw signature of
//! the proof's signing input by the library that signs it (RustCrypto, or
//! `ring` with feature `jwt-ring`). See BENCHMARKS.md, "DPoP".
//!
//! `cargo bench -p tower-oauth2-benches --features dpop --bench dpop`
//! (RustCrypto), `--features jwt-ring,jwt-rsa` (ring, RSA keys too).
//! `DPOP_ALG` picks the key: ES256 (the default), EdDSA, RS256 or PS256
//! (those two with `jwt-rsa`). For instruction counts, run the built
//! binary under callgrind with `DPOP_CALLGRIND=<function>` (one of the
//! names in `count`) and `DPOP_CALLS=<n>`: it makes exactly `n` calls and
//! exits; the difference between two values of `n` is the cost per call
//! (`benches/dpop_callgrind.sh` does it for every function and key;
//! `benches/dpop_qemu.sh` counts the same under QEMU, whose CPU has the
//! ADX and BMI2 that valgrind's lacks). With
//! `DPOP_INTERLEAVED=<rounds>` it times the raw signatures, the proof and
//! both layer calls side by side, a batch of each per round, and prints
//! the medians.

#[allow(dead_code, reason = "this bench needs the no-op service only")]
mod common;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use bytes::Bytes;
use common::{Body, Noop, OPAQUE_TOKEN};
use criterion::Criterion;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_oauth2::dpop::Dpop;
use tower_oauth2::jose::{Algorithm, SigningKey};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

const URL: &str = "https://api.example.com/v1/items?page=2";

const P256_PEM: &str = include_str!("../src/testdata/p256.pem");
const ED25519_PEM: &str = include_str!("../src/testdata/ed25519.pem");
const RSA_PEM: &str = include_str!("../src/testdata/rsa2048.pem");

/// A cache holding a token of `token_type`, fetched before the clock
/// starts, with DPoP key `dpop` if given.
fn cache(token_type: &'static str, dpop: Option<&Dpop>) -> TokenCache {
    let http = tower::service_fn(move |_req: Request<Body>| async move {
        let json = format!(
            r#"{{"access_token":"{OPAQUE_TOKEN}","token_type":"{token_type}","expires_in":86400}}"#
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(json))))
    });
    let url = TokenUrl::new("https://as.example.com/oauth2/token").expect("token URL");
    let endpoint = TokenEndpoint::new(http, url, ClientAuth::client_secret_basic("b", "s"));
    let endpoint = match dpop {
        Some(dpop) => endpoint.dpop(dpop.clone()),
        None => endpoint,
    };
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(cache.bearer_header()).expect("a token");
    cache
}

/// One request through `svc`, polled once (the inner service answers at once).
fn one_call<S>(svc: &mut S, cx: &mut Context<'_>)
where
    S: Service<Request<Body>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let req = Request::get(URL).body(Body::default()).expect("request");
    let mut future = pin!(svc.call(req));
    match future.as_mut().poll(cx) {
        Poll::Ready(answer) => drop(black_box(answer.expect("answered"))),
        Poll::Pending => panic!("the inner service answers at once"),
    }
}

/// The DER inside a PKCS#8 PEM.
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

/// The raw signature of each library, of the same key as the proofs'.
enum Raw {
    RingEs256(ring::signature::EcdsaKeyPair),
    RingEd25519(ring::signature::Ed25519KeyPair),
    RingRsa(
        ring::signature::RsaKeyPair,
        &'static dyn ring::signature::RsaEncoding,
    ),
    RustCryptoEs256(p256::ecdsa::SigningKey),
    RustCryptoEd25519(ed25519_dalek::SigningKey),
}

impl Raw {
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        let rng = ring::rand::SystemRandom::new();
        match self {
            Raw::RingEs256(key) => key.sign(&rng, input).expect("sign").as_ref().to_vec(),
            Raw::RingEd25519(key) => key.sign(input).as_ref().to_vec(),
            Raw::RingRsa(key, padding) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(*padding, &rng, input, &mut signature)
                    .expect("sign");
                signature
            }
            Raw::RustCryptoEs256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
            Raw::RustCryptoEd25519(key) => key.sign(input).to_bytes().to_vec(),
        }
    }
}

/// The proofs' key for `alg`, and the raw signers of the same key: ring's,
/// and RustCrypto's (none for RSA).
fn keys(alg: &str) -> (Dpop, Raw, Option<Raw>) {
    use ring::signature as sig;
    let rng = ring::rand::SystemRandom::new();
    let (pem, alg) = match alg {
        "ES256" => (P256_PEM, Algorithm::ES256),
        "EdDSA" => (ED25519_PEM, Algorithm::EdDSA),
        "RS256" => (RSA_PEM, Algorithm::RS256),
        "PS256" => (RSA_PEM, Algorithm::PS256),
        other => panic!("DPOP_ALG {other}: ES256, EdDSA, RS256 or PS256"),
    };
    let key = SigningKey::from_pem(alg, pem).expect("the test key");
    let dpop = Dpop::from_key(key).expect("a DPoP key");
    let der = der(pem);
    let (ring, rust_crypto) = match alg {
        Algorithm::ES256 => {
            let ring =
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng);
            let rc =
                <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(&der);
            (
                Raw::RingEs256(ring.expect("ring key")),
                Some(Raw::RustCryptoEs256(rc.expect("key"))),
            )
        }
        Algorithm::EdDSA => {
            let ring = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).expect("ring key");
            let seed: [u8; 32] = der[der.len() - 32..].try_into().expect("seed");
            let rc = ed25519_dalek::SigningKey::from_bytes(&seed);
            (Raw::RingEd25519(ring), Some(Raw::RustCryptoEd25519(rc)))
        }
        _ => {
            let padding: &'static dyn sig::RsaEncoding = if alg == Algorithm::PS256 {
                &sig::RSA_PSS_SHA256
            } else {
                &sig::RSA_PKCS1_SHA256
            };
            let ring = sig::RsaKeyPair::from_pkcs8(&der).expect("ring key");
            (Raw::RingRsa(ring, padding), None)
        }
    };
    (dpop, ring, rust_crypto)
}

fn main() {
    let alg = std::env::var("DPOP_ALG").unwrap_or_else(|_| "ES256".into());
    let (dpop, ring, rust_crypto) = keys(&alg);
    let uri: Uri = URL.parse().expect("URI");
    // What a resource proof's signature covers: `header.claims`.
    let proof = dpop
        .proof(&Method::GET, &uri, Some(OPAQUE_TOKEN))
        .expect("a proof");
    let proof = proof.to_str().expect("ASCII");
    let input = proof.rsplit_once('.').expect("a JWS").0.as_bytes().to_vec();
    let long_token = "x".repeat(1024);
    if let Ok(rounds) = std::env::var("DPOP_INTERLEAVED") {
        let rounds = rounds
            .parse()
            .expect("DPOP_INTERLEAVED: a number of rounds");
        let raw = (&ring, rust_crypto.as_ref(), input.as_slice());
        return interleaved(&alg, rounds, &dpop, &uri, raw);
    }
    if let Ok(function) = std::env::var("DPOP_CALLGRIND") {
        let calls: u64 = std::env::var("DPOP_CALLS").map_or(1, |n| n.parse().expect("DPOP_CALLS"));
        let raw = (&ring, rust_crypto.as_ref(), input.as_slice());
        return count(&function, calls, &dpop, &uri, raw);
    }
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group(format!("dpop_{alg}"));
    group.bench_function("raw_sign_ring", |b| b.iter(|| ring.sign(black_box(&input))));
    if let Some(raw) = &rust_crypto {
        group.bench_function("raw_sign_rustcrypto", |b| {
            b.iter(|| raw.sign(black_box(&input)))
        });
    }
    group.bench_function("proof_token_request", |b| {
        b.iter(|| dpop.proof(&Method::POST, black_box(&uri), None))
    });
    group.bench_function("proof_resource_43B_token", |b| {
        b.iter(|| dpop.proof(&Method::GET, black_box(&uri), Some(OPAQUE_TOKEN)))
    });
    group.bench_function("proof_resource_1KiB_token", |b| {
        b.iter(|| dpop.proof(&Method::GET, black_box(&uri), Some(&long_token)))
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut bearer = OAuth2Layer::new(cache("Bearer", None)).layer(Noop::default());
    group.bench_function("layer_call_bearer", |b| {
        b.iter(|| one_call(&mut bearer, &mut cx))
    });
    let mut bound = OAuth2Layer::new(cache("DPoP", Some(&dpop))).layer(Noop::default());
    group.bench_function("layer_call_dpop", |b| {
        b.iter(|| one_call(&mut bound, &mut cx))
    });
    group.finish();
    criterion.final_summary();
}

/// The contenders timed side by side: each round times a batch of each in
/// turn, so a change of the machine's load falls on all of them; the
/// medians over `rounds` are printed, with the calls per second of one
/// core they come to.
fn interleaved(alg: &str, rounds: usize, dpop: &Dpop, uri: &Uri, raw: (&Raw, Option<&Raw>, &[u8])) {
    use std::time::Instant;
    let (ring, rust_crypto, input) = raw;
    let mut cx = Context::from_waker(Waker::noop());
    let mut bearer = OAuth2Layer::new(cache("Bearer", None)).layer(Noop::default());
    let mut bound = OAuth2Layer::new(cache("DPoP", Some(dpop))).layer(Noop::default());
    let rsa = alg.starts_with("RS") || alg.starts_with("PS");
    let batch = if rsa { 20 } else { 200 };
    let mut names = vec!["raw_sign_ring"];
    if rust_crypto.is_some() {
        names.push("raw_sign_rustcrypto");
    }
    names.extend([
        "proof_resource_43B_token",
        "layer_call_bearer",
        "layer_call_dpop",
    ]);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            let n = if *name == "layer_call_bearer" {
                batch * 100
            } else {
                batch
            };
            let start = Instant::now();
            for _ in 0..n {
                match *name {
                    "raw_sign_ring" => drop(black_box(ring.sign(black_box(input)))),
                    "raw_sign_rustcrypto" => {
                        if let Some(raw) = rust_crypto {
                            drop(black_box(raw.sign(black_box(input))));
                        }
                    }
                    "proof_resource_43B_token" => drop(black_box(
                        dpop.proof(&Method::GET, uri, Some(OPAQUE_TOKEN))
                            .expect("proof"),
                    )),
                    "layer_call_bearer" => one_call(&mut bearer, &mut cx),
                    _ => one_call(&mut bound, &mut cx),
                }
            }
            times[i].push(start.elapsed().as_secs_f64() / n as f64);
        }
    }
    println!("{alg}: medians of {rounds} interleaved rounds");
    for (name, mut t) in names.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        let median = t[t.len() / 2];
        println!(
            "{name:28} {:>10.2} µs  {:>9.0} /s",
            median * 1e6,
            1.0 / median
        );
    }
}

/// `calls` calls of `function`, for callgrind.
fn count(function: &str, calls: u64, dpop: &Dpop, uri: &Uri, raw: (&Raw, Option<&Raw>, &[u8])) {
    let (ring, rust_crypto, input) = raw;
    let mut cx = Context::from_waker(Waker::noop());
    let mut bearer = OAuth2Layer::new(cache("Bearer", None)).layer(Noop::default());
    let mut bound = OAuth2Layer::new(cache("DPoP", Some(dpop))).layer(Noop::default());
    // A JWT access token's size.
    let long_token = "x".repeat(1024);
    for _ in 0..black_box(calls) {
        match function {
            "raw_sign_ring" => drop(black_box(ring.sign(black_box(input)))),
            "raw_sign_rustcrypto" => {
                let raw = rust_crypto.expect("no RustCrypto signer for RSA here");
                drop(black_box(raw.sign(black_box(input))));
            }
            "proof_resource_43B_token" => {
                black_box(
                    dpop.proof(&Method::GET, uri, Some(OPAQUE_TOKEN))
                        .expect("proof"),
                );
            }
            "proof_resource_1KiB_token" => {
                black_box(
                    dpop.proof(&Method::GET, uri, Some(&long_token))
                        .expect("proof"),
                );
            }
            "layer_call_bearer" => one_call(&mut bearer, &mut cx),
            "layer_call_dpop" => one_call(&mut bound, &mut cx),
            other => panic!("no function {other}"),
        }
    }
}
