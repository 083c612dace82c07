//! The fleet as real OS processes: 8 processes of `examples/demo` (built
//! with feature `redis`) against one token endpoint and resource server of
//! `tests/support`, each with `--redis`. The shared run is the issue's:
//! 5 s tokens for 20 s; the run that kills Redis uses 2 s tokens for 15 s
//! (more refreshes in less CI time).
//!
//! Nothing here asserts a time: the bounds count token requests, and the
//! durations printed are for the report.

use std::time::{Duration, Instant};

use super::TTL_SECS;
use crate::redis_server::{available, RedisServer};
use crate::support::demo_process::{demo_binary, one_at_a_time, Member, Summary};
use crate::support::token_server::TestServer;

const MEMBERS: usize = 8;
/// How long each process of the shared run sends requests, and how long
/// its tokens live.
const SHARED_RUN_SECS: u64 = 20;
const SHARED_TTL_SECS: u64 = 5;
/// How long each process of the run that kills Redis sends requests
/// (tokens of `TTL_SECS`).
const OUTAGE_RUN_SECS: u64 = 15;

/// The demo's flags for a fleet member: one task, a request every 20 ms,
/// Redis calls given 2 s (a loaded CI machine must not turn a slow answer
/// into a fallback the assertions would count).
fn flags(server: &TestServer, redis: &RedisServer, rest: &[&str]) -> Vec<String> {
    let mut f: Vec<String> = [
        "--token-url",
        &server.token_url(),
        "--client-id",
        "client",
        "--client-secret",
        "secret",
        "--url",
        &server.url("/orders"),
        "--redis",
        &redis.url(),
        "--redis-timeout",
        "2000",
        "--concurrency",
        "1",
        "--pause",
        "20",
        "--timeout",
        "30",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.extend(rest.iter().map(|s| s.to_string()));
    f
}

fn start(n: usize, flags: &[String]) -> Vec<Member> {
    (0..n).map(|_| Member::start(flags)).collect()
}

/// Waits for every member to exit (at most a minute); their summaries.
async fn finish(members: Vec<Member>) -> Vec<Summary> {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        members
            .into_iter()
            .map(|m| m.finish(deadline).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    })
    .await
    .expect("the members' exits")
}

fn sum(summaries: &[Summary], f: impl Fn(&Summary) -> u64) -> u64 {
    summaries.iter().map(f).sum()
}

/// Every request of every member answered with a success.
fn assert_none_failed(summaries: &[Summary]) {
    for s in summaries {
        assert!(s.counts.requests > 0, "{s:?}");
        assert_eq!(
            (s.counts.ok, s.counts.unauthorized, s.counts.errors),
            (s.counts.requests, 0, 0),
            "{s:?}"
        );
    }
}

/// At most the requests one process sends in `elapsed`: the first, then
/// one per refresh, which comes at the earliest when a token goes stale.
/// A token of `ttl_secs` goes stale at the earliest at `L − lead × 1.25`,
/// lead = L / 4: 11/16 of its life.
fn one_process(elapsed: Duration, ttl_secs: u64) -> u64 {
    let earliest_stale_ms = u128::from(ttl_secs) * 1000 * 11 / 16;
    1 + (elapsed.as_millis() / earliest_stale_ms) as u64
}

async fn setup(ttl_secs: u64) -> Option<(RedisServer, TestServer)> {
    if !available() {
        return None;
    }
    tokio::task::block_in_place(demo_binary);
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_ttl(Some(ttl_secs));
    Some((redis, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_demo_processes_send_the_token_requests_of_one() {
    let _one = one_at_a_time().await;
    let Some((redis, server)) = setup(SHARED_TTL_SECS).await else {
        return;
    };
    let started = Instant::now();
    let duration = SHARED_RUN_SECS.to_string();
    let members = start(MEMBERS, &flags(&server, &redis, &["--duration", &duration]));
    // Past halfway, right after a refresh, the resource server refuses
    // every token issued so far: each process sees 401s; the fleet fetches
    // one new token. Not at a fixed time: a refresh under way then (slow on
    // a loaded machine) would issue a token the revocation also refuses, a
    // second refusal in a row, which the 401 backoff rightly answers by
    // returning 401s for a while.
    tokio::time::sleep(Duration::from_secs(SHARED_RUN_SECS / 2)).await;
    let before = server.token_requests();
    let deadline = Instant::now() + Duration::from_secs(SHARED_RUN_SECS);
    while server.token_requests() == before {
        assert!(
            Instant::now() < deadline,
            "no refresh in {SHARED_RUN_SECS} s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Time for every process to take the new token from Redis (each does
    // when its own copy goes stale, within a few hundred ms of the others).
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.revoke_all();
    let summaries = finish(members).await;
    let elapsed = started.elapsed();

    let requests = server.token_requests() as u64;
    let bound = 1 + one_process(elapsed, SHARED_TTL_SECS);
    eprintln!(
        "{MEMBERS} processes, {elapsed:?}: {requests} token requests \
         (one process, with the revocation: at most {bound}); {} requests, {} resent after a 401; \
         fleet: {} tokens from Redis, {} leases, {} lease waits",
        sum(&summaries, |s| s.counts.requests),
        sum(&summaries, |s| s.counts.retries),
        sum(&summaries, |s| s.fleet("shared_hits")),
        sum(&summaries, |s| s.fleet("leases")),
        sum(&summaries, |s| s.fleet("lease_waits")),
    );
    assert_none_failed(&summaries);
    assert!((3..=bound).contains(&requests), "{requests} > {bound}");
    assert_eq!(sum(&summaries, |s| s.counts.token_fetches), requests);
    assert_eq!(sum(&summaries, |s| s.fleet("leases")), requests);
    assert_eq!(sum(&summaries, |s| s.fleet("fallbacks")), 0);
    assert!(sum(&summaries, |s| s.fleet("shared_hits")) >= MEMBERS as u64 - 1);
    assert!(
        sum(&summaries, |s| s.counts.retries) >= 1,
        "the revocation was seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_demo_processes_fail_no_request_while_redis_is_killed_and_restarted() {
    let _one = one_at_a_time().await;
    let Some((mut redis, server)) = setup(TTL_SECS).await else {
        return;
    };
    let duration = OUTAGE_RUN_SECS.to_string();
    let members = start(MEMBERS, &flags(&server, &redis, &["--duration", &duration]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = server.token_requests();
    tokio::task::block_in_place(|| redis.stop());
    // A token goes stale within 1.5 s, and a process gives Redis 2 s before
    // it fetches alone: wait (not a fixed time, which a loaded machine
    // overruns) until the fleet has fetched at least once a process.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.token_requests() - before < MEMBERS {
        assert!(
            Instant::now() < deadline,
            "{} token requests in 30 s without Redis",
            server.token_requests() - before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = server.token_requests() - before;
    tokio::task::block_in_place(|| redis.restart());
    let restarted = server.token_requests();
    // Past a token's staleness: the fleet has published to the new Redis.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let keys = redis.cli(&["DBSIZE"]);
    let summaries = finish(members).await;
    let after = server.token_requests() - restarted;

    eprintln!(
        "{MEMBERS} processes: {before} token requests before the outage, {during} during it, \
         {after} after the restart ({} in all); {} fetches alone; keys 2.5 s after the restart: {keys}",
        server.token_requests(),
        sum(&summaries, |s| s.fleet("fallbacks")),
    );
    assert_none_failed(&summaries);
    assert_eq!(
        sum(&summaries, |s| s.counts.token_fetches),
        server.token_requests() as u64
    );
    assert!(sum(&summaries, |s| s.fleet("fallbacks")) >= MEMBERS as u64);
    assert_ne!(keys, "0", "the fleet shares through the restarted Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_lease_holder_is_taken_over_by_another_process() {
    let _one = one_at_a_time().await;
    let Some((redis, server)) = setup(TTL_SECS).await else {
        return;
    };
    // Long tokens (only the take-over is counted) and a token endpoint that
    // holds the first request a minute: the holder dies in its fetch.
    server.set_ttl(Some(3600));
    server.set_latency(Duration::from_secs(60));
    let lease = Duration::from_secs(5);
    let lease_flag = lease.as_secs().to_string();
    let flags = |rest: &[&str]| {
        let mut f = flags(&server, &redis, &["--redis-lease", &lease_flag]);
        f.extend(rest.iter().map(|s| s.to_string()));
        f
    };
    // Alone, it surely holds the lease once its token request is at the
    // token endpoint.
    let holder = Member::start(&flags(&["--requests", "1"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.token_requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the holder sent no token request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leased = Instant::now();
    server.set_latency(Duration::from_secs(1));
    let holder_pid = holder.pid();
    tokio::task::block_in_place(|| holder.kill());
    assert_ne!(
        redis.cli(&["KEYS", "*:lock"]),
        "",
        "the dead holder's lease"
    );

    let members = start(MEMBERS - 1, &flags(&["--requests", "4"]));
    while server.token_requests() == 1 {
        assert!(Instant::now() < deadline, "no process took over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let taken_over = leased.elapsed();
    let summaries = finish(members).await;
    let done = leased.elapsed();

    eprintln!(
        "holder (pid {holder_pid}) killed in its fetch; its lease ({lease:?}) taken over after \
         {taken_over:?}, every process done after {done:?} (a fetch takes 1 s); \
         {} lease waits",
        sum(&summaries, |s| s.fleet("lease_waits")),
    );
    assert_none_failed(&summaries);
    assert_eq!(server.token_requests(), 2, "the dead holder's and one more");
    assert_eq!(sum(&summaries, |s| s.counts.token_fetches), 1);
    assert_eq!(sum(&summaries, |s| s.fleet("leases")), 1);
    assert_eq!(sum(&summaries, |s| s.fleet("fallbacks")), 0);
    assert_eq!(
        sum(&summaries, |s| s.fleet("shared_hits")),
        MEMBERS as u64 - 2
    );
}
