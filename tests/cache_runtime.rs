//! The token cache and the Tokio runtime it fetches on: a cache asked for a
//! token on a runtime that has shut down answers at once with a typed error
//! (it must not deadlock on its own lock: Tokio drops a future inside
//! `spawn` when its runtime is gone), and stays usable for the next caller
//! on a live runtime. A caller waiting for a fetch that its runtime does not
//! run (or waiting outside any runtime) gives up at its wait timeout with a
//! typed error, and the fetch goes on (ARCHITECTURE.md, invariant 10).

mod support;

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
        assert_eq!(
            (
                stats.token_fetches,
                stats.background_refreshes,
                stats.fetch_failures
            ),
            (1, 1, 0),
            "{flavor}: {stats:?}"
        );
        drop(live);
        drop(server);
    }
}

#[test]
fn a_caller_waiting_for_a_fetch_stuck_on_another_runtime_gets_a_typed_timeout() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(TestServer::start());
    let cache = cache_builder(&server).build();

    // A caller on `stuck` starts the fetch, then goes away; `stuck` is not
    // driven again (its one thread busy elsewhere), so the fetch task does
    // not run.
    let stuck = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    {
        let _entered = stuck.enter();
        let mut first = std::pin::pin!(cache.bearer_header());
        let polled = first.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "{polled:?}");
    }

    // A caller on another runtime joins that fetch: it gives up at the
    // default deadline (twice the endpoint's 30 s timeout, plus 30 s).
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
    let stats = cache.stats();
    assert_eq!(
        (stats.waits, stats.wait_timeouts, stats.token_fetches),
        (2, 1, 0),
        "{stats:?}"
    );

    // Neither caller cancelled the fetch: once `stuck` runs again, it
    // lands, with one token request, for the caller there.
    let header = stuck.block_on(cache.bearer_header()).unwrap();
    assert_eq!(header, "Bearer at-1");
    assert_eq!(server.token_requests(), 1);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.waits,
            stats.wait_timeouts,
            stats.token_fetches,
            stats.fetch_failures
        ),
        (3, 1, 1, 0),
        "{stats:?}"
    );
    drop(stuck);
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
