//! Memory per key: the heap a key of `KeyedOAuth2Layer`, a subject of
//! `OnBehalfLayer` (RFC 8693 token exchange) and a bare `TokenCache` keep,
//! each holding one cached token, measured with a counting global
//! allocator over N keys (10,000 under `cargo bench`). Each key gets its
//! token the real way: a request through the layer, whose cache fetches
//! from a token endpoint answered in process (`common::LocalTokenServer`).
//! Nothing is timed, so the numbers do not depend on the machine's load.
//! See BENCHMARKS.md, "Memory per key".
//!
//! `cargo bench -p tower-oauth2-benches --bench memory` (a custom harness).
//! Under `cargo test --benches` it runs the same with fewer keys, as a
//! smoke test.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::size_of;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Body, LocalTokenServer, Noop};
use http::{HeaderMap, HeaderValue, Request, Uri};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::layer::KeyedOAuth2Layer;
use tower_oauth2::on_behalf::{OnBehalfLayer, SubjectToken, ACCESS_TOKEN_TYPE};
use tower_oauth2::{AuthPolicy, Destinations, Token, TokenCache, TokenRequest};

/// The system allocator, counting the bytes and blocks alive and every
/// call that allocates (`alloc`, `alloc_zeroed`, `realloc`).
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);
/// Every byte ever allocated (a `realloc` that grows counts its growth).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` as it came; the counters are
// plain atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            counted(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            counted(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            counted(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}

fn counted(bytes: isize, blocks: isize) {
    ALLOCATED.fetch_add(bytes.max(0) as usize, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
    CALLS.fetch_add(1, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Clone, Copy)]
struct Snapshot {
    bytes: isize,
    blocks: isize,
    calls: usize,
    allocated: usize,
}

fn snapshot() -> Snapshot {
    Snapshot {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        calls: CALLS.load(Ordering::Relaxed),
        allocated: ALLOCATED.load(Ordering::Relaxed),
    }
}

/// What `n` keys cost, each given its token by one request, then asked
/// once more (served from its cache).
struct Measured {
    n: usize,
    /// Before the first key, after the first key (each, once the layer and
    /// one key exist), after the `n` keys, after a second request per key.
    before: Snapshot,
    filled: Snapshot,
    again: Snapshot,
    /// Left alive once the layer and everything it made is dropped, from
    /// before the layer was built.
    leftover: isize,
    /// Allocation calls per request to build and drop the request alone
    /// (its URI, its extensions), taken off the calls per request.
    request_calls: f64,
}

impl Measured {
    /// What the `n` keys of a layer sending requests made by `req` hold:
    /// the heap `(before, filled, again)` ([`fill`]), measured once the
    /// layer is dropped against the heap at `start`.
    fn new(
        n: usize,
        (before, filled, again): (Snapshot, Snapshot, Snapshot),
        start: isize,
        req: impl Fn(usize) -> Request<Body>,
    ) -> Self {
        Measured {
            n,
            before,
            filled,
            again,
            leftover: LIVE_BYTES.load(Ordering::Relaxed) - start,
            request_calls: request_calls(0..n, req),
        }
    }

    fn per_key(&self, a: isize, b: isize) -> f64 {
        (b - a) as f64 / self.n as f64
    }

    fn row(&self, name: &str) {
        let (b, f, a) = (self.before, self.filled, self.again);
        let calls_first = (f.calls - b.calls) as f64 / self.n as f64 - self.request_calls;
        let calls_again = (a.calls - f.calls) as f64 / self.n as f64 - self.request_calls;
        let allocated_first = (f.allocated - b.allocated) as f64 / self.n as f64;
        println!(
            "{name:<18} | {:>9.1} {:>10.2} | {:>10.1} {:>12.0} {:>12.1} | {:>8}",
            self.per_key(b.bytes, f.bytes),
            self.per_key(b.blocks, f.blocks),
            calls_first,
            allocated_first,
            calls_again,
            self.leftover,
        );
    }
}

/// Allocation calls per request to build and drop `req(i)`, `i` in `keys`.
fn request_calls(keys: std::ops::Range<usize>, req: impl Fn(usize) -> Request<Body>) -> f64 {
    let n = keys.len();
    let before = CALLS.load(Ordering::Relaxed);
    for i in keys {
        drop(req(i));
    }
    (CALLS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

/// Sends `req(i)` for each `i` in `keys` through `svc`, one at a time.
async fn send_each<S>(
    svc: &mut S,
    keys: std::ops::Range<usize>,
    req: impl Fn(usize) -> Request<Body>,
) where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
{
    for i in keys {
        let svc = svc.ready().await.expect("ready");
        svc.call(req(i)).await.expect("request");
    }
}

/// Sends one request for key `n` (what is made once, such as the map,
/// lazily initialized statics and the runtime's task storage, is then not
/// counted per key), then one for each of keys `0..n`, then each again:
/// the heap before the `n` keys, with them, and after a second request
/// each.
async fn fill<S>(
    svc: &mut S,
    n: usize,
    req: impl Fn(usize) -> Request<Body>,
) -> (Snapshot, Snapshot, Snapshot)
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
{
    send_each(svc, n..n + 1, &req).await;
    let before = snapshot();
    send_each(svc, 0..n, &req).await;
    let filled = snapshot();
    exit_if_profiling();
    send_each(svc, 0..n, &req).await;
    (before, filled, snapshot())
}

/// The keyed layer keyed by tenant (`https://t<i>.example.com`), each
/// tenant's cache a client-credentials grant naming its API as `resource`.
async fn keyed(n: usize) -> Measured {
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    let server = LocalTokenServer::new(common::OPAQUE_TOKEN, 3600, Duration::ZERO);
    let endpoint = server.endpoint();
    let key = |uri: &Uri, _: &HeaderMap| {
        let host = uri.host()?;
        host.strip_prefix('t')?
            .split('.')
            .next()?
            .parse::<usize>()
            .ok()
    };
    let make = move |tenant: &usize| {
        let request =
            TokenRequest::client_credentials().resource(format!("https://t{tenant}.example.com"));
        Some(TokenCache::builder(endpoint.clone(), request).build())
    };
    let layer = KeyedOAuth2Layer::new(key, make).max_keys(n + 1);
    let mut svc = layer.layer(Noop::default());
    let req = |i: usize| {
        Request::get(format!("https://t{i}.example.com/items"))
            .body(Body::default())
            .expect("request")
    };
    let (before, filled, again) = fill(&mut svc, n, req).await;
    assert_eq!(server.token_requests(), n + 1, "one token per key");
    assert_eq!(layer.keys().len(), n + 1, "every key kept");
    drop((svc, layer, server));
    Measured::new(n, (before, filled, again), start, req)
}

/// A subject token the size of an opaque access token (43 characters).
fn subject(i: usize) -> SubjectToken {
    SubjectToken::new(format!("subject-{i:0>35}"))
}

/// The token-exchange layer: one cache per subject, each exchanging that
/// subject's token for one with the downstream API as `audience`.
async fn on_behalf(n: usize) -> Measured {
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    let server = LocalTokenServer::new(common::OPAQUE_TOKEN, 3600, Duration::ZERO);
    let endpoint = server.endpoint();
    let layer = OnBehalfLayer::new(move |subject: &SubjectToken| {
        let request = TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE)
            .audience("https://inventory.example.com");
        TokenCache::builder(endpoint.clone(), request).build()
    })
    .max_subjects(n + 1)
    .destinations(Destinations::origins(["https://inventory.example.com"]).expect("origin"));
    let mut svc = layer.layer(Noop::default());
    let req = |i: usize| {
        let mut req = Request::get("https://inventory.example.com/items")
            .body(Body::default())
            .expect("request");
        req.extensions_mut().insert(subject(i));
        req
    };
    let (before, filled, again) = fill(&mut svc, n, req).await;
    assert_eq!(server.token_requests(), n + 1, "one token per subject");
    assert_eq!(layer.subjects(), n + 1, "every subject kept");
    drop((svc, layer, server));
    Measured::new(n, (before, filled, again), start, req)
}

/// `n` bare caches (client credentials, as the keyed layer's), each with
/// its token, held in a `Vec`: what the layers add is the difference.
async fn bare_caches(n: usize) -> Measured {
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    let server = LocalTokenServer::new(common::OPAQUE_TOKEN, 3600, Duration::ZERO);
    let endpoint = server.endpoint();
    let make = |tenant: usize| {
        let request =
            TokenRequest::client_credentials().resource(format!("https://t{tenant}.example.com"));
        TokenCache::builder(endpoint.clone(), request).build()
    };
    let first = make(n);
    first.bearer_header().await.expect("token");
    let mut caches = Vec::with_capacity(n);
    let before = snapshot();
    for i in 0..n {
        let cache = make(i);
        cache.bearer_header().await.expect("token");
        caches.push(cache);
    }
    let filled = snapshot();
    exit_if_profiling();
    for cache in &caches {
        cache.bearer_header().await.expect("token");
    }
    let again = snapshot();
    assert_eq!(server.token_requests(), n + 1, "one token per cache");
    drop((caches, first, endpoint, server));
    Measured {
        n,
        before,
        filled,
        again,
        leftover: LIVE_BYTES.load(Ordering::Relaxed) - start,
        // No request is built: the caches are asked directly.
        request_calls: 0.0,
    }
}

/// `MEMORY_PROFILE=<bare|keyed|on_behalf>`: only that part runs, and the
/// process exits as soon as its keys have their tokens, so that a heap
/// profiler's "at exit" view (`valgrind --tool=dhat`, heaptrack) shows
/// what the keys hold, by allocation site.
fn profiling() -> Option<String> {
    std::env::var("MEMORY_PROFILE").ok()
}

fn exit_if_profiling() {
    if profiling().is_some() {
        std::process::exit(0);
    }
}

fn main() {
    let n = if common::is_bench_run() {
        10_000
    } else {
        1_000
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "memory: {n} keys, each with one cached token (an opaque 43-character access token), \
         counted by a global allocator; current-thread runtime"
    );
    println!(
        "{:<18} | {:>9} {:>10} | {:>10} {:>12} {:>12} | {:>8}",
        "", "bytes/key", "blocks/key", "allocs/new", "alloc'd/new", "allocs/again", "leftover"
    );
    if let Some(part) = profiling() {
        rt.block_on(async {
            // Each exits the process once its keys have their tokens.
            let _ = match part.as_str() {
                "bare" => bare_caches(n).await,
                "keyed" => keyed(n).await,
                "on_behalf" => on_behalf(n).await,
                other => panic!("MEMORY_PROFILE={other}: bare, keyed or on_behalf"),
            };
        });
        return;
    }
    rt.block_on(async {
        // A first run warms up what is made once per process (tracing
        // callsites, thread-locals), so that `leftover` shows leaks only.
        keyed(1).await;
        on_behalf(1).await;
        bare_caches(1).await;
        let results = [
            ("TokenCache (bare)", bare_caches(n).await),
            ("KeyedOAuth2Layer", keyed(n).await),
            ("OnBehalfLayer", on_behalf(n).await),
        ];
        for (name, measured) in &results {
            measured.row(name);
        }
        // The bytes a key keeps, at most (BENCHMARKS.md, "Memory per key",
        // with every feature of this package on; about a tenth above the
        // latest): a key costing more is a decision, not an accident.
        for ((name, measured), limit) in results.iter().zip([1_900, 2_200, 2_500]) {
            let bytes = measured.per_key(measured.before.bytes, measured.filled.bytes);
            assert!(
                bytes <= f64::from(limit),
                "{name}: {bytes:.1} bytes per key, above {limit}"
            );
        }
        for (name, measured) in &results {
            // Nothing a key made outlives the layer (a fraction of a byte
            // per key allows for the runtime's own bookkeeping).
            assert!(
                measured.leftover < n as isize,
                "{name}: {} bytes left alive after the layer was dropped",
                measured.leftover
            );
        }
    });
    println!(
        "bytes/key, blocks/key: heap alive per key once it has its token (the map included); \
         allocs/new, alloc'd/new: allocation calls and bytes allocated (freed since or not) per \
         request that makes a key (the token fetch included, building the request not; the \
         keyed map is copied on each insert); allocs/again: per request served from a key's cache; \
         leftover: bytes alive after the layer was dropped"
    );
    println!(
        "size_of: TokenCache {}, AuthPolicy {}, Token {}, TokenRequest {}, HeaderValue {}, \
         SubjectToken {}",
        size_of::<TokenCache>(),
        size_of::<AuthPolicy>(),
        size_of::<Token>(),
        size_of::<TokenRequest>(),
        size_of::<HeaderValue>(),
        size_of::<SubjectToken>(),
    );
}
