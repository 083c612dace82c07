//! A resource that refuses every token, seen by a whole fleet: the 401
//! backoff (ARCHITECTURE.md, invariant 6) holds for the fleet as it does
//! for one process, through the fleet's record of 401s in Redis
//! (`…:{fingerprint}:refused`, invariant 12).
//!
//! Every process here sends through the layer and backs off for an hour
//! once new tokens are refused too, longer than any test runs: the counts
//! do not depend on how fast the machine runs the test. The processes
//! start one after another, each once the one before it has started its
//! backoff step, so the counts are exact.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, ServiceExt};
use tower_oauth2::cache::{Backoff, Stats, TokenCacheBuilder};
use tower_oauth2::fleet::{FleetStats, RedisTier};
use tower_oauth2::OAuth2Layer;

use super::{own_process, tier};
use crate::redis_server::{available, free_port, RedisServer};
use crate::support::client::http_client;
use crate::support::token_server::{bearer, TestServer};

/// Processes in the fleet.
const K: usize = 4;
/// Requests each process sends.
const REQUESTS: usize = 10;

fn an_hour() -> Backoff {
    let hour = Duration::from_secs(3600);
    Backoff::new(hour, hour)
}

type Command = (String, oneshot::Sender<StatusCode>);

/// A process of the fleet (`own_process`) sending GETs through the layer,
/// one at a time, as the test asks.
struct Process {
    tx: mpsc::UnboundedSender<Command>,
    handle: JoinHandle<(Stats, FleetStats)>,
}

impl Process {
    fn start(builder: TokenCacheBuilder, tier: RedisTier) -> Process {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        let counters = tier.clone();
        let handle = own_process(builder, tier, |cache| async move {
            let svc = OAuth2Layer::new(cache.clone())
                .unauthorized_backoff(an_hour())
                .layer(http_client());
            while let Some((url, reply)) = rx.recv().await {
                let req = crate::support::client::get(&url);
                let status = svc.clone().oneshot(req).await.expect("an answer").status();
                let _ = reply.send(status);
            }
            (cache.stats(), counters.stats())
        });
        Process { tx, handle }
    }

    async fn get(&self, url: String) -> StatusCode {
        let (reply, answer) = oneshot::channel();
        self.tx.send((url, reply)).expect("the process runs");
        answer.await.expect("the process answers")
    }

    /// Sends `n` GETs of `{prefix}/{i}` one after another; their statuses.
    async fn send(&self, server: &TestServer, prefix: &str, n: usize) -> Vec<StatusCode> {
        let mut statuses = Vec::with_capacity(n);
        for i in 0..n {
            statuses.push(self.get(server.url(&format!("{prefix}/{i}"))).await);
        }
        statuses
    }

    /// Stops it: its counters.
    async fn finish(self) -> (Stats, FleetStats) {
        drop(self.tx);
        let handle = self.handle;
        tokio::task::spawn_blocking(move || handle.join().expect("the process"))
            .await
            .expect("join")
    }
}

/// The fleet's record of 401s for this server's configuration.
fn refused_key(server: &TestServer) -> String {
    super::token_key(&server.client_credentials()).replace(":token", ":refused")
}

/// Waits (20 s at most) until Redis holds the fleet's record of 401s or
/// not, as `present` says: a process writes and deletes it in a task of
/// its own. Asserts nothing: the counts tell.
async fn until_record(redis: &RedisServer, key: &str, present: bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let exists = tokio::task::block_in_place(|| redis.cli(&["EXISTS", key]));
        if (exists == "1") == present {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `k` processes sharing `tier_url`'s Redis (when it answers) and one
/// token server whose resources refuse every token: each starts once the
/// one before it has sent its requests, and sends `REQUESTS` GETs. The
/// server, and each process's counters.
async fn always_refused(
    k: usize,
    redis: Option<&RedisServer>,
    tier_url: &str,
) -> (TestServer, Vec<(Stats, FleetStats)>) {
    always_refused_with(k, redis, tier_url, tier).await
}

/// [`always_refused`], each process's tier made by `make`.
async fn always_refused_with(
    k: usize,
    redis: Option<&RedisServer>,
    tier_url: &str,
    make: impl Fn(&str) -> RedisTier,
) -> (TestServer, Vec<(Stats, FleetStats)>) {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    server.set_challenges(&[r#"Bearer error="invalid_token""#]);
    let mut processes = Vec::with_capacity(k);
    for p in 0..k {
        let process = Process::start(server.client_credentials(), make(tier_url));
        let statuses = process.send(&server, &format!("/p{p}"), REQUESTS).await;
        assert_eq!(
            statuses,
            [StatusCode::UNAUTHORIZED; REQUESTS],
            "process {p}"
        );
        if let Some(redis) = redis {
            until_record(redis, &refused_key(&server), true).await;
        }
        processes.push(process);
    }
    let mut counters = Vec::with_capacity(k);
    for process in processes {
        counters.push(process.finish().await);
    }
    (server, counters)
}

fn sum(counters: &[(Stats, FleetStats)], f: impl Fn(&Stats) -> u64) -> u64 {
    counters.iter().map(|(s, _)| f(s)).sum()
}

/// One process alone: at-1 refused, at-2 fetched and the request resent
/// with it, refused too: the backoff starts, and every later 401 passes
/// through. 2 token requests. A fleet of `K` sharing Redis costs the same:
/// every later process takes at-2 from Redis and finds the fleet's backoff
/// step running, so its first 401 passes through too (without the fleet's
/// record each would invalidate the shared token and fetch: `K + 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_refused_every_token_sends_the_token_requests_of_one_process() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let (server, alone) = always_refused(1, Some(&redis), &redis.url()).await;
    let one_process = server.token_requests();
    assert_eq!(one_process, 2);
    assert_eq!(
        server.path_authorizations()[..3],
        [
            bearer("/p0/0", "at-1"),
            bearer("/p0/0", "at-2"),
            bearer("/p0/1", "at-2")
        ]
    );
    assert_eq!(sum(&alone, |s| s.retries), 1);

    let redis = RedisServer::start();
    let (server, fleet) = always_refused(K, Some(&redis), &redis.url()).await;
    eprintln!(
        "{K} processes: {} token requests (one process: {one_process})",
        server.token_requests()
    );
    assert_eq!(
        server.token_requests(),
        one_process,
        "the fleet costs one process"
    );
    assert_eq!(sum(&fleet, |s| s.token_fetches), 2);
    // Only the first process invalidated a token and resent a request; the
    // others' 401s all passed through, as one process's in its backoff.
    assert_eq!(sum(&fleet, |s| s.invalidations), 1);
    assert_eq!(sum(&fleet, |s| s.retries), 1);
    assert_eq!(
        sum(&fleet, |s| s.unauthorized_backed_off),
        (K * REQUESTS) as u64
    );
    assert_eq!(server.resource_count(), K * REQUESTS + 1);
    assert!(server.authorizations()[1..]
        .iter()
        .all(|a| a.as_deref() == Some("Bearer at-2")));
    // The first process wrote the step; each later one joined it.
    let fleet_sum = |f: fn(&FleetStats) -> u64| fleet.iter().map(|(_, t)| f(t)).sum::<u64>();
    assert_eq!(fleet_sum(|t| t.steps_shared), 1);
    assert_eq!(fleet_sum(|t| t.steps_joined), K as u64 - 1);
    assert_eq!(fleet_sum(|t| t.invalidations), 1);
    assert_eq!(fleet_sum(|t| t.fallbacks), 0);
    // The record names the refused token by its hash, never the token.
    let record = tokio::task::block_in_place(|| redis.cli(&["GET", &refused_key(&server)]));
    // (`<64 hex> <step> <ms the number is kept after the step>`: the
    // step's delay, an hour × U[0.5, 1).)
    let fields: Vec<&str> = record.split(' ').collect();
    assert_eq!(fields.len(), 3, "{record}");
    assert!(fields[0].len() == 64 && fields[0].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(fields[1], "1");
    let keep: u64 = fields[2].parse().expect("a number of ms");
    assert!((1_800_000..3_600_000).contains(&keep), "{record}");
}

/// A resource server that takes the token once, from any process that
/// knows of the fleet's backoff step, ends that step for the fleet: the
/// next 401 gets a new token at once, as in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_other_than_401_from_any_process_ends_the_fleets_backoff() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let key = refused_key(&server);
    let start = || Process::start(server.client_credentials(), tier(&redis.url()));
    // a: at-1 refused, at-2 refused on the resend: the fleet's step 1.
    let a = start();
    assert_eq!(
        a.send(&server, "/a", 2).await,
        [StatusCode::UNAUTHORIZED; 2]
    );
    until_record(&redis, &key, true).await;
    // b takes at-2 from Redis and joins the step: its 401 passes through.
    let b = start();
    assert_eq!(b.get(server.url("/b/0")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.token_requests(), 2);

    // The resource takes at-2 once, from b: the fleet's step is over.
    server.set_reject_all(false);
    assert_eq!(b.get(server.url("/b/ok")).await, StatusCode::OK);
    until_record(&redis, &key, false).await;
    // So b's next 401 gets a new token at once, and the request is resent.
    server.set_reject_all(true);
    assert_eq!(
        b.get(server.url("/b/again")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.token_requests(), 3);
    // at-3 is refused too: the fleet's step 1 again, which c joins.
    until_record(&redis, &key, true).await;
    let c = start();
    assert_eq!(c.get(server.url("/c/0")).await, StatusCode::UNAUTHORIZED);
    // a is still in the step it started (its own record runs for an hour,
    // as one process's would): its 401 passes through with at-2.
    assert_eq!(a.get(server.url("/a/late")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.token_requests(), 3);
    assert_eq!(
        server.path_authorizations()[3..],
        [
            bearer("/b/0", "at-2"),
            bearer("/b/ok", "at-2"),
            bearer("/b/again", "at-2"),
            bearer("/b/again", "at-3"),
            bearer("/c/0", "at-3"),
            bearer("/a/late", "at-2"),
        ]
    );

    let (a, b, c) = (a.finish().await, b.finish().await, c.finish().await);
    let counts = |(s, t): &(Stats, FleetStats)| {
        (
            (s.token_fetches, s.invalidations, s.retries),
            (t.steps_shared, t.steps_joined, t.steps_ended),
        )
    };
    assert_eq!(counts(&a), ((2, 1, 1), (1, 0, 0)));
    assert_eq!(counts(&b), ((1, 1, 1), (1, 1, 1)));
    assert_eq!(counts(&c), ((0, 0, 0), (0, 1, 0)));
}

/// Redis down (nothing listens on its port): each process keeps its own
/// record of 401s, as without the fleet: 2 token requests each, and every
/// request answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_process_backs_off_on_its_own() {
    let down = format!("redis://127.0.0.1:{}", free_port());
    let (server, counters) = always_refused(K, None, &down).await;
    assert_eq!(server.token_requests(), 2 * K);
    for (stats, fleet) in &counters {
        assert_eq!(
            (stats.token_fetches, stats.invalidations, stats.retries),
            (2, 1, 1)
        );
        assert_eq!(stats.unauthorized_backed_off, REQUESTS as u64);
        assert_eq!(fleet.fallbacks, 2, "{fleet:?}");
    }
    assert_eq!(server.resource_count(), K * (REQUESTS + 1));
}

/// The hex SHA-256 of an access token, as the record names it.
fn hash_of(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A process holding at-1, which the resource then refuses (revoked), and
/// a record of 401s written into Redis by someone else: step 1, running
/// for an hour. Whether the process's 401 got a new token (the request
/// resent with it) or was held back: the status of that request, and the
/// token requests.
async fn refused_with_a_forged_record(
    record: impl Fn(&str) -> String,
    tier: impl Fn(&str) -> RedisTier,
) -> (StatusCode, usize) {
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let a = Process::start(server.client_credentials(), tier(&redis.url()));
    assert_eq!(a.get(server.url("/a/0")).await, StatusCode::OK);
    let forged = record(&hash_of("at-1"));
    let key = refused_key(&server);
    tokio::task::block_in_place(|| redis.cli(&["SET", &key, &forged, "PX", "3600000"]));
    server.revoke("at-1");
    let status = a.get(server.url("/a/1")).await;
    let requests = server.token_requests();
    let _ = a.finish().await;
    (status, requests)
}

/// A record naming a token nobody here sent is not joined: the 401 for
/// at-1 gets at-2 at once, as with no record at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_another_token_holds_no_refetch_back() {
    if !available() {
        return;
    }
    let other = hash_of("a token nobody sent");
    let (status, requests) = refused_with_a_forged_record(|_| format!("{other} 1 0"), tier).await;
    assert_eq!((status, requests), (StatusCode::OK, 2));
}

/// With an encryption key, a record without this fleet's tag is ignored,
/// even one naming the refused token: the 401 gets a new token, as with no
/// record at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_a_record_the_fleet_did_not_write_is_ignored() {
    if !available() {
        return;
    }
    let sealed = |url: &str| tier(url).encryption_key([7; 32]);
    let (status, requests) =
        refused_with_a_forged_record(|at_1| format!("{at_1} 1 0"), sealed).await;
    assert_eq!((status, requests), (StatusCode::OK, 2));
    // The same record without a key is believed (capped at 5 min): the
    // 401 passes through, no new token.
    let (status, requests) = refused_with_a_forged_record(|at_1| format!("{at_1} 1 0"), tier).await;
    assert_eq!((status, requests), (StatusCode::UNAUTHORIZED, 1));
}

/// With an encryption key the fleet's own records (tagged) are shared and
/// joined as without one: `K` processes, the token requests of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_the_fleets_own_records_are_shared_and_joined() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let sealed = |url: &str| tier(url).encryption_key([7; 32]);
    let (server, fleet) = always_refused_with(K, Some(&redis), &redis.url(), sealed).await;
    assert_eq!(server.token_requests(), 2);
    let fleet_sum = |f: fn(&FleetStats) -> u64| fleet.iter().map(|(_, t)| f(t)).sum::<u64>();
    assert_eq!(fleet_sum(|t| t.steps_shared), 1);
    assert_eq!(fleet_sum(|t| t.steps_joined), K as u64 - 1);
    assert_eq!(fleet_sum(|t| t.bad_values), 0);
    // `<64 hex> <step> <keep> <tag: 56 hex>`.
    let record = tokio::task::block_in_place(|| redis.cli(&["GET", &refused_key(&server)]));
    let fields: Vec<&str> = record.split(' ').collect();
    assert_eq!(
        (fields.len(), fields[1], fields[3].len()),
        (4, "1", 56),
        "{record}"
    );
}
