//! Hot path: the time of one request through each contender (poll_ready,
//! call, poll the response future) over a no-op inner service, with a fresh
//! token cached. See BENCHMARKS.md.
//!
//! `cargo bench -p tower-oauth2-benches --bench hot_path` runs it under criterion. For instruction
//! counts under callgrind, run the built binary with
//! `HOT_PATH_CALLGRIND=<contender>` and `HOT_PATH_CALLS=<n>` (and optionally
//! `HOT_PATH_TOKEN=jwt`, `HOT_PATH_REQUEST=typical`, `HOT_PATH_INNER=arcs`,
//! `HOT_PATH_PATTERN=oneshot`: each call on a fresh clone, as
//! `svc.clone().oneshot(req)` does): it then makes exactly `n` calls of that
//! contender and exits (`benches/callgrind.sh` does this for every contender).

mod common;
mod contenders;

use std::hint::black_box;
use std::task::{Context, Waker};
use std::time::Duration;

use common::Body;
use contenders::{InnerKind, Visit};
use criterion::{BenchmarkGroup, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use tower::Service;

struct CriterionVisit<'a, 'b> {
    group: &'a mut BenchmarkGroup<'b, criterion::measurement::WallTime>,
    req: Req,
}

impl Visit for CriterionVisit<'_, '_> {
    fn visit<S>(&mut self, name: &str, mut svc: S)
    where
        S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug,
    {
        let mut cx = Context::from_waker(Waker::noop());
        self.group.bench_function(name, |b| {
            b.iter(|| contenders::one_call(&mut svc, &mut cx, self.req.make()))
        });
    }
}

struct CountVisit {
    calls: u64,
    req: Req,
    /// Each call on a fresh clone of the service, dropped after it (the
    /// `svc.clone().oneshot(req)` pattern), instead of every call on one.
    clone_per_call: bool,
}

impl Visit for CountVisit {
    fn visit<S>(&mut self, _name: &str, mut svc: S)
    where
        S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug,
    {
        let mut cx = Context::from_waker(Waker::noop());
        if self.clone_per_call {
            for _ in 0..black_box(self.calls) {
                contenders::one_call(&mut svc.clone(), &mut cx, self.req.make());
            }
            return;
        }
        for _ in 0..black_box(self.calls) {
            contenders::one_call(&mut svc, &mut cx, self.req.make());
        }
    }
}

/// The request each hot-path call sends: built fresh per call (every
/// contender, the bare one included, pays for building and dropping it).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Req {
    /// `Request::new(Full::default())`: `GET /`, no headers.
    Empty,
    /// `GET https://api.example.com/v1/items?limit=10` with `accept`,
    /// `user-agent` and `x-request-id` headers (from a template).
    Typical(Method, Uri, HeaderMap),
}

impl Req {
    pub fn typical() -> Req {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
        headers.insert(
            "x-request-id",
            HeaderValue::from_static("0f8e6a52-3c1d-4b7a-9e21-5d4c3b2a1f00"),
        );
        Req::Typical(
            Method::GET,
            Uri::from_static("https://api.example.com/v1/items?limit=10"),
            headers,
        )
    }

    pub fn from_name(name: &str) -> Req {
        match name {
            "typical" => Req::typical(),
            _ => Req::Empty,
        }
    }

    /// The typical request's headers are inserted one by one, as a
    /// client's request builder does, so its map has room for one more (a
    /// clone of the template would have none: every contender's insert
    /// would then reallocate, at a cost that varies by ±100 instructions
    /// with where the allocator happens to put things).
    #[inline]
    pub fn make(&self) -> Request<Body> {
        let mut req = Request::new(Body::default());
        if let Req::Typical(m, u, h) = self {
            *req.method_mut() = m.clone();
            *req.uri_mut() = u.clone();
            let headers = req.headers_mut();
            for (name, value) in h {
                headers.insert(name.clone(), value.clone());
            }
        }
        req
    }
}

impl InnerKind {
    pub fn from_name(name: &str) -> InnerKind {
        match name {
            "arcs" => InnerKind::Arcs,
            _ => InnerKind::Noop,
        }
    }
}

const PARTS: &[&str] = &[
    "Instant::now",
    "CLOCK_MONOTONIC_COARSE",
    "SystemTime::now",
    "ArcSwapOption::load+clone",
    "arc_swap::Cache::load+clone",
];

/// One of `PARTS`, as a closure to call repeatedly.
fn part_fn(part: &str) -> Box<dyn FnMut()> {
    use arc_swap::{ArcSwapOption, Cache};
    use std::sync::Arc;
    let header =
        http::HeaderValue::try_from(format!("Bearer {}", common::OPAQUE_TOKEN)).expect("header");
    let swap = Arc::new(ArcSwapOption::from_pointee(header));
    match part {
        "Instant::now" => Box::new(|| {
            black_box(std::time::Instant::now());
        }),
        // What a coarse clock would cost instead (Linux; ~4 ms resolution).
        "CLOCK_MONOTONIC_COARSE" => Box::new(|| {
            black_box(coarse_now());
        }),
        "SystemTime::now" => Box::new(|| {
            black_box(std::time::SystemTime::now());
        }),
        "ArcSwapOption::load+clone" => Box::new(move || {
            let guard = swap.load();
            black_box(guard.as_deref().cloned());
        }),
        "arc_swap::Cache::load+clone" => {
            let mut cache = Cache::new(swap);
            Box::new(move || {
                black_box(cache.load().as_deref().cloned());
            })
        }
        other => panic!("unknown part {other}; one of {PARTS:?}"),
    }
}

#[cfg(target_os = "linux")]
fn coarse_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    ts
}

#[cfg(not(target_os = "linux"))]
fn coarse_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A JWT-sized access token (1 KiB of token characters).
pub fn jwt_sized_token() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s: String = (0..1024)
        .map(|i| alphabet[(i * 7 + 3) % alphabet.len()] as char)
        .collect();
    s.replace_range(100..101, ".");
    s.replace_range(700..701, ".");
    s
}

fn token_for(kind: &str) -> String {
    match kind {
        "jwt" => jwt_sized_token(),
        _ => common::OPAQUE_TOKEN.to_owned(),
    }
}

/// Collects the contenders, for the interleaved rounds.
struct Collect {
    load: contenders::Load,
    runs: Vec<(String, Box<Run>)>,
}

/// `calls` calls on each of `threads` threads: the wall time.
type Run = dyn FnMut(u64, usize) -> Duration;

impl Visit for Collect {
    fn visit<S>(&mut self, name: &str, svc: S)
    where
        S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug,
    {
        let load = self.load.clone();
        let run =
            move |calls: u64, threads: usize| contenders::run_load(&svc, threads, calls, &load);
        self.runs.push((name.to_owned(), Box::new(run)));
    }
}

/// `HOT_PATH_ROUNDS=n [HOT_PATH_THREADS=t] [HOT_PATH_REQUEST=typical]
/// [HOT_PATH_PATTERN=oneshot]`: every contender in turn, n rounds, each
/// thread calling its own clone (or a fresh clone per call); per contender
/// the median ns per call (wall time / calls per thread) and the median of
/// the per-round ratios of its overhead over `bare` to AddAuthorization's.
fn interleaved(
    rt: &tokio::runtime::Runtime,
    rounds: usize,
    threads: usize,
    load: contenders::Load,
) {
    let mut all = Collect {
        load,
        runs: Vec::new(),
    };
    contenders::contenders(rt, common::OPAQUE_TOKEN, None, InnerKind::Noop, &mut all);
    let calls = 200_000;
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); all.runs.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in all.runs.iter_mut().enumerate() {
            ns[i].push(run(calls, threads).as_nanos() as f64 / calls as f64);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("threads {threads}, {rounds} rounds of {calls} calls a thread");
    for (i, (name, _)) in all.runs.iter().enumerate() {
        let ratios: Vec<f64> = (0..rounds)
            .map(|r| (ns[i][r] - ns[0][r]) / (ns[1][r] - ns[0][r]))
            .collect();
        println!(
            "{name:30} {:8.1} ns/call  overhead/AddAuthorization's {:5.2}",
            median(ns[i].clone()),
            median(ratios)
        );
    }
}

fn main() {
    let rt = common::runtime(1);
    let _guard = rt.enter();

    if let Ok(rounds) = std::env::var("HOT_PATH_ROUNDS") {
        let rounds = rounds.parse().expect("HOT_PATH_ROUNDS: a number");
        let threads = std::env::var("HOT_PATH_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(1);
        let req = Req::from_name(&std::env::var("HOT_PATH_REQUEST").unwrap_or_default());
        let load = contenders::Load {
            make: std::sync::Arc::new(move || req.make()),
            clone_per_call: std::env::var("HOT_PATH_PATTERN").is_ok_and(|p| p == "oneshot"),
        };
        interleaved(&rt, rounds, threads, load);
        return;
    }

    if std::env::var("HOT_PATH_SIZES").is_ok() {
        type Future = tower_oauth2::layer::ResponseFuture<common::Noop, Body>;
        println!(
            "ResponseFuture<Noop, _>: {} bytes",
            std::mem::size_of::<Future>()
        );
        return;
    }

    if let Ok(name) = std::env::var("HOT_PATH_CALLGRIND") {
        if let Some(part) = name.strip_prefix("part:") {
            let calls: u64 = std::env::var("HOT_PATH_CALLS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(100_000);
            let mut f = part_fn(part);
            for _ in 0..black_box(calls) {
                f();
            }
            return;
        }
        let calls = std::env::var("HOT_PATH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        let token = token_for(&std::env::var("HOT_PATH_TOKEN").unwrap_or_default());
        let req = Req::from_name(&std::env::var("HOT_PATH_REQUEST").unwrap_or_default());
        let inner = InnerKind::from_name(&std::env::var("HOT_PATH_INNER").unwrap_or_default());
        let clone_per_call = std::env::var("HOT_PATH_PATTERN").is_ok_and(|p| p == "oneshot");
        let mut visit = CountVisit {
            calls,
            req,
            clone_per_call,
        };
        contenders::contenders(&rt, &token, Some(&name), inner, &mut visit);
        return;
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for (label, kind, req, inner) in [
        (
            "empty_request/opaque_43B",
            "opaque",
            "empty",
            InnerKind::Noop,
        ),
        ("empty_request/jwt_1KiB", "jwt", "empty", InnerKind::Noop),
        (
            "typical_request/opaque_43B",
            "opaque",
            "typical",
            InnerKind::Noop,
        ),
        (
            "empty_request/opaque_43B/inner_6_arcs",
            "opaque",
            "empty",
            InnerKind::Arcs,
        ),
    ] {
        let token = token_for(kind);
        let mut group = c.benchmark_group(format!("hot_path/{label}"));
        let req = Req::from_name(req);
        contenders::contenders(
            &rt,
            &token,
            None,
            inner,
            &mut CriterionVisit {
                group: &mut group,
                req,
            },
        );
        group.finish();
    }
    // The parts of a lookup, alone: a clock read (ours reads the monotonic
    // clock per request, aws-smithy-runtime's cache the wall clock; the
    // coarse monotonic clock is what a cheaper check could use), and
    // getting the header out of an `ArcSwapOption` with `load()` (what
    // `TokenCache::lookup` does) or through a per-handle `arc_swap::Cache`
    // (one relaxed pointer load while the token is unchanged).
    let mut group = c.benchmark_group("hot_path/parts");
    for part in PARTS {
        let mut f = part_fn(part);
        group.bench_function(*part, |b| b.iter(&mut f));
    }
    group.finish();
    c.final_summary();
}
