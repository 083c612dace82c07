//! The token cache and the Tokio runtime it fetches on: a cache asked for a
//! token on a runtime that has shut down answers at once with a typed error
//! (it must not deadlock on its own lock: Tokio drops a future inside
//! `spawn` when its runtime is gone), and stays usable for the next caller
//! on a live runtime. A caller waiting for a fetch that its runtime does not
//! run (or waiting outside any runtime) gives up at its wait timeout with a
//! typed error, and the fetch goes on (ARCHITECTURE.md, invariant 10).

use crate::support;

use std::future::Future;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use support::client::http_client;
use support::token_server::TestServer;
use tower_oauth2::error::ErrorKind;
use tower_oauth2::store::{MemoryStore, StoredToken, TokenStore};
use tower_oauth2::token::{IssuedAt, Token, TokenType};
use tower_oauth2::{ClientAuth, Error, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// Long enough for any machine to poll a future once; a deadlocked cache
/// never answers, so the test fails here instead of hanging.
const DEADLINE: Duration = Duration::from_secs(10);

fn cache_builder(server: &TestServer) -> tower_oauth2::cache::TokenCacheBuilder {
    let endpoint = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&server.token_url()).unwrap(),
        ClientAuth::client_secret_basic("client", "secret"),
    );
    TokenCache::builder(endpoint, TokenRequest::client_credentials())
}

/// A runtime's handle, the runtime itself already dropped (shut down).
fn dead_runtime(flavor: &str) -> tokio::runtime::Handle {
    let rt = match flavor {
        "current_thread" => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .unwrap();
    let handle = rt.handle().clone();
    drop(rt);
    handle
}

/// Polls `cache.bearer_header()` once, inside the dead runtime's context,
/// on its own thread: its answer, or `None` if it did not come back before
/// the deadline (the thread is then left stuck).
fn poll_once_on(
    handle: tokio::runtime::Handle,
    cache: TokenCache,
) -> Option<Poll<Result<HeaderValue, Error>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let mut fut = std::pin::pin!(cache.bearer_header());
        let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        let _ = tx.send(polled);
    });
    rx.recv_timeout(DEADLINE).ok()
}

#[test]
fn a_fetch_on_a_dead_runtime_fails_at_once_and_the_next_caller_gets_a_token() {
    for flavor in ["current_thread", "multi_thread"] {
        let server_rt = tokio::runtime::Runtime::new().unwrap();
        let server = server_rt.block_on(TestServer::start());
        let cache = cache_builder(&server).build();

        let polled = poll_once_on(dead_runtime(flavor), cache.clone());
        let Some(Poll::Ready(Err(e))) = polled else {
            panic!("{flavor}: no answer within {DEADLINE:?} (deadlock?): {polled:?}");
        };
        assert_eq!(e.kind(), ErrorKind::NoRuntime, "{flavor}: {e}");
        assert_eq!(server.token_requests(), 0, "{flavor}");

        // No backoff was set by a fetch that never ran: the next caller,
        // on a live runtime, gets a token with one token request.
        let live = tokio::runtime::Runtime::new().unwrap();
        let header = live.block_on(cache.bearer_header()).unwrap();
        assert_eq!(header, "Bearer at-1", "{flavor}");
        assert_eq!(server.token_requests(), 1, "{flavor}");
        let stats = cache.stats();
        assert_eq!(
            (stats.token_fetches, stats.fetch_failures, stats.fail_fast),
            (1, 0, 0),
            "{flavor}: {stats:?}"
        );
        drop(live);
        drop(server);
    }
}

#[test]
fn a_background_refresh_on_a_dead_runtime_serves_the_stale_token_and_recovers() {
    for flavor in ["current_thread", "multi_thread"] {
        let server_rt = tokio::runtime::Runtime::new().unwrap();
        let server = server_rt.block_on(TestServer::start());
        // A stored token issued 3400 s ago for an hour: stale (a refresh is
        // due 5 to 6¼ min before expiry) but still valid.
        let store = MemoryStore::new();
        let issued = SystemTime::now() - Duration::from_secs(3400);
        let stored = Token::new("stored-at", TokenType::Bearer)
            .with_expires_in(Duration::from_secs(3600))
            .with_issued_at(IssuedAt::from_system_time(issued));
        let builder = cache_builder(&server);
        store
            .save(&StoredToken::new(stored, *builder.fingerprint()))
            .unwrap();
        let cache = builder.store(store).build();

        let polled = poll_once_on(dead_runtime(flavor), cache.clone());
        let Some(Poll::Ready(Ok(header))) = polled else {
            panic!("{flavor}: no answer within {DEADLINE:?} (deadlock?): {polled:?}");
        };
        assert_eq!(header, "Bearer stored-at", "{flavor}");
        assert_eq!(server.token_requests(), 0, "{flavor}");

        // On a live runtime the stale token is still served, and the
        // refresh the dead runtime could not run starts now.
        let live = tokio::runtime::Runtime::new().unwrap();
        let header = live.block_on(cache.bearer_header()).unwrap();
        assert_eq!(header, "Bearer stored-at", "{flavor}");
        let refreshed = live.block_on(async {
            tokio::time::timeout(DEADLINE, async {
                loop {
                    let header = cache.bearer_header().await.unwrap();
                    if header != "Bearer stored-at" {
                        return header;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
        });
        assert_eq!(refreshed.unwrap(), "Bearer at-1", "{flavor}");
        assert_eq!(server.token_requests(), 1, "{flavor}");
        let stats = cache.stats();
        let counts = (
            stats.token_fetches,
            stats.background_refreshes,
            stats.fetch_failures,
        );
        assert_eq!(counts, (1, 1, 0), "{flavor}: {stats:?}");
        drop(live);
        drop(server);
    }
}

#[test]
fn a_caller_waiting_for_a_fetch_stalled_mid_exchange_gets_a_typed_timeout() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(TestServer::start());
    server.set_latency(Duration::from_millis(300));
    let cache = cache_builder(&server).build();

    // A caller on `stuck` starts the fetch and gives up; its task has
    // sent the token request, then `stuck` is not driven again (its one
    // thread busy elsewhere), so the fetch does not go on.
    let stuck = current_thread_runtime();
    let first = stuck.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), cache.bearer_header()).await
    });
    assert!(first.is_err(), "{first:?}");

    // A caller on another runtime joins that fetch (it has started and is
    // younger than a fetch may take, so it is not taken over): it gives up
    // at the default deadline (twice the endpoint's 30 s timeout, plus
    // twice the store's 5 s, plus 20 s).
    let waiter = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let hang = Duration::from_secs(3600);
    let answer = waiter.block_on(async { tokio::time::timeout(hang, cache.bearer_header()).await });
    let e = answer
        .expect("the caller waited past any deadline")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WaitTimeout);
    assert!(e.is_timeout() && e.is_retryable(), "{e}");
    assert_eq!(
        e.to_string(),
        "no token within 90s: gave up waiting for the token fetch, which goes on; a later \
         call gets its token"
    );
    // (The token request went out: counted when sent.)
    let stats = cache.stats();
    assert_eq!(
        (stats.waits, stats.wait_timeouts, stats.token_fetches),
        (2, 1, 1),
        "{stats:?}"
    );

    // Neither caller cancelled the fetch: once `stuck` runs again, it
    // lands, with one token request, for the caller there.
    let header = stuck.block_on(cache.bearer_header()).unwrap();
    assert_eq!(header, "Bearer at-1");
    assert_eq!(server.token_requests(), 1);
    let stats = cache.stats();
    let (waits, fetches) = (stats.waits, stats.token_fetches);
    let counts = (waits, stats.wait_timeouts, fetches, stats.fetch_failures);
    assert_eq!(counts, (3, 1, 1, 0), "{stats:?}");
    drop(stuck);
    drop(server);
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cache for `server` whose endpoint has the server's revocation URL,
/// holding (from its store) a token issued 3400 s ago for an hour: stale
/// (a refresh is due 5 to 6¼ min before expiry) but still valid.
fn cache_with_a_stale_token(server: &TestServer) -> tower_oauth2::cache::TokenCacheBuilder {
    let store = MemoryStore::new();
    let issued = SystemTime::now() - Duration::from_secs(3400);
    let stored = Token::new("stored-at", TokenType::Bearer)
        .with_expires_in(Duration::from_secs(3600))
        .with_issued_at(IssuedAt::from_system_time(issued));
    let endpoint = server.endpoint().revocation_url(server.revocation_url());
    let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
    store
        .save(&StoredToken::new(stored, *builder.fingerprint()))
        .unwrap();
    builder.store(store)
}

/// A stale token's refresh stuck on a runtime nobody drives: a sync
/// helper's call on `helper` (a current-thread runtime, driven only inside
/// `block_on`) got the stale token of `cache` (wait timeout 300 ms), which
/// started a background refresh on `helper`; `block_on` returned at once,
/// so the refresh task is never polled while `helper` is neither driven
/// nor dropped. `server` runs on a runtime of its own.
struct StuckRefresh {
    _server_rt: tokio::runtime::Runtime,
    server: TestServer,
    cache: TokenCache,
    helper: tokio::runtime::Runtime,
    /// The generation of the stale token the helper got.
    stale: u64,
}

impl StuckRefresh {
    fn start() -> StuckRefresh {
        let server_rt = tokio::runtime::Runtime::new().unwrap();
        let server = server_rt.block_on(TestServer::start());
        let cache = cache_with_a_stale_token(&server)
            .wait_timeout(Duration::from_millis(300))
            .build();
        let helper = current_thread_runtime();
        let (header, stale) = helper
            .block_on(cache.bearer_header_with_generation())
            .unwrap();
        assert_eq!(header, "Bearer stored-at");
        assert_eq!(server.token_requests(), 0);
        StuckRefresh {
            _server_rt: server_rt,
            server,
            cache,
            helper,
            stale,
        }
    }
}

/// Drives `helper` again for a while: a task left on it runs now.
fn drive(helper: &tokio::runtime::Runtime) {
    helper.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
}

// ARCHITECTURE.md, invariants 2 and 10: a flight that no runtime runs does
// not hold the cache; the next caller on a live runtime takes it over, and
// the stalled task, if it ever runs, sends nothing.
#[test]
fn a_refresh_stuck_on_a_runtime_nobody_drives_is_taken_over() {
    let StuckRefresh {
        _server_rt,
        server,
        cache,
        helper,
        stale,
    } = StuckRefresh::start();

    // The resource refuses the stale token (a 401): every caller needs
    // the new one now.
    cache.invalidate(stale);
    let live = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..3 {
        let got = live.block_on(cache.bearer_header());
        assert!(matches!(&got, Ok(h) if h == "Bearer at-1"), "{got:?}");
    }
    assert_eq!(server.token_requests(), 1);

    // The helper's runtime runs again: the refresh it was given has been
    // taken over, and sends no token request.
    drive(&helper);
    assert_eq!(server.token_requests(), 1);
    let got = live.block_on(cache.bearer_header());
    assert!(matches!(&got, Ok(h) if h == "Bearer at-1"), "{got:?}");
    let stats = cache.stats();
    let counts = (
        stats.token_fetches,
        stats.fetch_failures,
        stats.wait_timeouts,
    );
    assert_eq!(counts, (1, 0, 0), "{stats:?}");
    drop(server);
}

// ARCHITECTURE.md, invariants 2 and 10: `revoke` does not wait for a fetch
// no runtime runs; it takes the flight slot over and revokes.
#[test]
fn revoke_takes_over_a_refresh_stuck_on_a_runtime_nobody_drives() {
    let StuckRefresh {
        _server_rt,
        server,
        cache,
        helper,
        ..
    } = StuckRefresh::start();

    let live = tokio::runtime::Runtime::new().unwrap();
    let revoked = live
        .block_on(async { tokio::time::timeout(DEADLINE, cache.revoke()).await })
        .expect("revoke waited past any deadline for a fetch no runtime runs");
    assert!(revoked.is_ok(), "{revoked:?}");
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        ["token=stored-at&token_type_hint=access_token".to_owned()]
    );

    // The stalled refresh, if its runtime ever runs it, sends nothing; the
    // next caller fetches a new token.
    drive(&helper);
    assert_eq!(server.token_requests(), 0);
    let got = live.block_on(cache.bearer_header());
    assert!(matches!(&got, Ok(h) if h == "Bearer at-1"), "{got:?}");
    assert_eq!(server.token_requests(), 1);
    drop(server);
}

// ARCHITECTURE.md, invariant 10: `revoke` waits for a fetch that has
// started (it may bring a token to revoke) at most the wait timeout, then
// fails with a typed error, nothing revoked.
#[test]
fn revoke_gives_up_on_a_fetch_stalled_mid_exchange_at_its_wait_timeout() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(TestServer::start());
    server.set_latency(Duration::from_millis(300));
    let endpoint = server.endpoint().revocation_url(server.revocation_url());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials())
        .wait_timeout(Duration::from_millis(300))
        .build();
    // The fetch starts on `helper`, whose caller gives up; `helper` is not
    // driven again.
    let helper = current_thread_runtime();
    let first = helper.block_on(async {
        tokio::time::timeout(Duration::from_millis(20), cache.bearer_header()).await
    });
    assert!(first.is_err(), "{first:?}");

    let live = tokio::runtime::Runtime::new().unwrap();
    let revoked = live
        .block_on(async { tokio::time::timeout(DEADLINE, cache.revoke()).await })
        .expect("revoke waited past any deadline for a fetch no runtime runs");
    let e = revoked.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WaitTimeout, "{e}");
    assert!(server.revocations().is_empty());
    drop(server);
}

/// Runs `fut` to completion on this thread, outside any Tokio runtime.
fn block_on_plain_thread<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn a_caller_outside_any_runtime_waits_by_the_fetch_runtime_clock() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start());
    server.set_latency(Duration::from_millis(500));
    let cache = cache_builder(&server)
        .wait_timeout(Duration::from_millis(20))
        .build();
    // The fetch starts on `rt`; a caller on a plain thread (polled by
    // another executor) joins it, and its deadline runs on `rt`'s timers.
    {
        let _entered = rt.enter();
        let mut first = std::pin::pin!(cache.bearer_header());
        let polled = first.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "{polled:?}");
    }
    let (tx, rx) = mpsc::channel();
    let c = cache.clone();
    std::thread::spawn(move || {
        let _ = tx.send(block_on_plain_thread(c.bearer_header()));
    });
    let e = rx
        .recv_timeout(DEADLINE)
        .expect("the caller outside any runtime waited past its deadline")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WaitTimeout, "{e}");
    assert_eq!(cache.stats().wait_timeouts, 1);
    // The fetch went on, on `rt`: once it lands, the token is there.
    let header = rt.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(header) = cache.bearer_header().await {
                    return header;
                }
            }
        })
        .await
    });
    assert_eq!(header.expect("the fetch never landed"), "Bearer at-1");
    assert_eq!(server.token_requests(), 1);
    drop(server);
}
