//! The connection to Redis (standalone or Cluster), every call under a
//! deadline, and the outage log: WARN once when Redis stops answering,
//! INFO once when it is back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script};
use tokio::sync::OnceCell;

use super::target::{RedisClient, Target};

/// A live connection; both kinds reconnect by themselves.
#[derive(Clone)]
enum Live {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Why a Redis call gave no answer. Never holds a secret: the redis
/// crate's errors name the failure, not the arguments.
pub(super) enum Trouble {
    Redis(RedisError),
    Deadline(Duration),
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::Redis(e) => write!(f, "{e}"),
            Trouble::Deadline(d) => write!(f, "no answer within {d:?}"),
        }
    }
}

pub(super) struct Conn {
    target: Target,
    /// The nodes' `host:port`s, named in the outage log.
    addr: String,
    live: OnceCell<Live>,
    /// The deadline on every call (connecting included).
    deadline: Duration,
    /// Whether the last call failed (an outage is logged once).
    down: AtomicBool,
}

/// Deletes the lock only if `ARGV[1]` still owns it.
const RELEASE: &str = r"
local v = redis.pcall('GET', KEYS[1])
if v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Publishes the token (`ARGV[2]`, TTL `ARGV[3]` ms) only while `ARGV[1]`
/// still holds the lock: a holder whose lease ran out (a slow fetch, a
/// pause) must not write its token over the one a process that took the
/// lease over may have published since.
const PUBLISH: &str = r"
local o = redis.pcall('GET', KEYS[2])
if o == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// Deletes the key only if its value still starts with the hash `ARGV[1]`:
/// the token (the 401 rule), or the fleet's record of 401s (an answer
/// other than 401 for that token). A value of another type (bad data) is
/// left for the next write.
const DELETE_IF_HASH: &str = r"
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'string' and string.sub(v, 1, 64) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// The token, the lock's owner and the fleet's record of 401s (with its
/// TTL in ms, -2 when absent), in one round trip. A key holding another
/// type reads as absent, as with `MGET`.
const LOOK: &str = r"
local function get(k)
  local v = redis.pcall('GET', k)
  if type(v) == 'string' then return v end
  return false
end
local r = get(KEYS[3])
local ttl = -2
if r then ttl = redis.call('PTTL', KEYS[3]) end
return {get(KEYS[1]), get(KEYS[2]), r, ttl}";

/// Records a backoff step (`ARGV[1]`, number `ARGV[2]`, TTL `ARGV[3]` ms)
/// unless a record of a step at least as far along still runs (more than
/// its `keep` left): the first process to start a step sets its length.
/// `{1}` when written, else `{0, the record left}`. A record equal to
/// `ARGV[4]` (one the caller found forged) is written over whatever it says.
const STEP: &str = r"
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'string' and v ~= ARGV[4] then
  local n, keep = string.match(v, '^%x+ (%d+) (%d+)')
  if n and tonumber(n) >= tonumber(ARGV[2])
     and redis.call('PTTL', KEYS[1]) > tonumber(keep) then
    return {0, v}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1, false}";

/// Takes the lease lock (`ARGV[1]` the owner, `ARGV[2]` the lease in ms):
/// 1 when taken, 0 when another process holds it. What this crate never
/// writes is told apart, as neither `SET NX` nor `MGET` can: -1 for a key
/// of another type (left alone: it is not ours to delete, and nobody waits
/// on it), -2 for a lock with no TTL (given the lease as one, so it ends),
/// -3 for a lock with more than a lease to live (left alone: a process
/// configured with a longer lease may hold it; nobody here waits on it).
const LEASE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return -2
end
if ttl > tonumber(ARGV[2]) then return -3 end
return 0";

/// Extends the lease (`ARGV[2]` ms) only while `ARGV[1]` still holds it.
const RENEW: &str = r"
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// What a lease call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lease {
    /// This process holds the lock now.
    Taken,
    /// Another process holds it (a lock with a TTL).
    Held,
    /// The lock key holds another type; left alone.
    WrongType,
    /// A lock with no TTL; it now has one (the lease).
    NoTtl,
    /// A lock with more than this process's lease to live; left alone.
    LongTtl,
}

/// What [`LOOK`] found: the token's value, the lock's owner, the record
/// of 401s and that record's TTL in ms.
pub(super) type Looked = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>, i64);

impl Conn {
    pub(super) fn new(target: Target, deadline: Duration) -> Self {
        Conn {
            addr: target.addr(),
            target,
            live: OnceCell::new(),
            deadline,
            down: AtomicBool::new(false),
        }
    }

    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    async fn live(&self) -> Result<Live, RedisError> {
        let live = self
            .live
            .get_or_try_init(|| async {
                Ok::<_, RedisError>(match self.target.client() {
                    RedisClient::Standalone(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.deadline))
                            .set_response_timeout(Some(self.deadline))
                            .set_number_of_retries(1)
                            .set_max_delay(Duration::from_millis(500));
                        Live::Standalone(
                            ConnectionManager::new_with_config((**client).clone(), config).await?,
                        )
                    }
                    RedisClient::Cluster(client) => {
                        Live::Cluster(client.get_async_connection().await?)
                    }
                })
            })
            .await?;
        Ok(live.clone())
    }

    /// Runs `call` on a connection within the deadline, and keeps the
    /// outage log.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, Trouble>
    where
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let attempt = async {
            let live = self.live().await?;
            call(live).await
        };
        let result = match tokio::time::timeout(self.deadline, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Trouble::Redis(e)),
            Err(_) => Err(Trouble::Deadline(self.deadline)),
        };
        match &result {
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        redis = %self.addr,
                        "Redis answers again; tokens are shared with the fleet again"
                    );
                }
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        redis = %self.addr,
                        error = %e,
                        "Redis does not answer; this process fetches its own tokens until it does"
                    );
                } else {
                    tracing::debug!(redis = %self.addr, error = %e, "Redis still does not answer");
                }
            }
        }
        result
    }

    async fn cmd<T: redis::FromRedisValue + Send + 'static>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, Trouble> {
        self.run(|live| async move {
            match live {
                Live::Standalone(mut c) => cmd.query_async(&mut c).await,
                Live::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        })
        .await
    }

    /// Runs the Lua script `source` on `keys` (one hash slot) with `args`.
    async fn script<T: redis::FromRedisValue + Send + 'static>(
        &self,
        source: &'static str,
        keys: &[&str],
        args: Vec<Vec<u8>>,
    ) -> Result<T, Trouble> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.run(|live| async move {
            let script = Script::new(source);
            let mut call = script.prepare_invoke();
            for key in keys {
                call.key(key);
            }
            for arg in args {
                call.arg(arg);
            }
            match live {
                Live::Standalone(mut c) => call.invoke_async(&mut c).await,
                Live::Cluster(mut c) => call.invoke_async(&mut c).await,
            }
        })
        .await
    }

    /// The token value and the lock's owner, in one round trip (both keys
    /// share a hash slot). A key holding another type reads as absent.
    pub(super) async fn read(
        &self,
        token_key: &str,
        lock_key: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Trouble> {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(token_key).arg(lock_key);
        self.cmd(cmd).await
    }

    /// `SET lock owner NX PX lease`, and what holds the lock if that fails.
    pub(super) async fn lease(
        &self,
        lock_key: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Lease, Trouble> {
        let args = vec![owner.into(), millis(lease).to_string().into()];
        let found: i64 = self.script(LEASE, &[lock_key], args).await?;
        Ok(match found {
            1 => Lease::Taken,
            -1 => Lease::WrongType,
            -2 => Lease::NoTtl,
            -3 => Lease::LongTtl,
            _ => Lease::Held,
        })
    }

    /// Extends the lease to `lease` from now if `owner` still holds it:
    /// whether it did.
    pub(super) async fn renew(
        &self,
        lock_key: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, Trouble> {
        let args = vec![owner.into(), millis(lease).to_string().into()];
        let renewed: i64 = self.script(RENEW, &[lock_key], args).await?;
        Ok(renewed == 1)
    }

    /// The token value, the lock's owner and the fleet's record of 401s,
    /// in one round trip (the keys share a hash slot).
    pub(super) async fn look(
        &self,
        (token_key, lock_key, refused_key): (&str, &str, &str),
    ) -> Result<Looked, Trouble> {
        let keys = [token_key, lock_key, refused_key];
        self.script(LOOK, &keys, Vec::new()).await
    }

    /// Stores `value` under `token_key` for `ttl`, only while `owner`
    /// still holds the lock: whether it did.
    pub(super) async fn publish(
        &self,
        (token_key, lock_key): (&str, &str),
        owner: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, Trouble> {
        let args = vec![owner.into(), value, millis(ttl).to_string().into()];
        let published: i64 = self.script(PUBLISH, &[token_key, lock_key], args).await?;
        Ok(published == 1)
    }

    /// Releases the lock if `owner` still holds it.
    pub(super) async fn release(&self, lock_key: &str, owner: &str) -> Result<bool, Trouble> {
        let released: i64 = self
            .script(RELEASE, &[lock_key], vec![owner.into()])
            .await?;
        Ok(released == 1)
    }

    /// Deletes `key` if its value still starts with `hash_hex`.
    pub(super) async fn delete_if_hash(&self, key: &str, hash_hex: &str) -> Result<bool, Trouble> {
        let args = vec![hash_hex.into()];
        let deleted: i64 = self.script(DELETE_IF_HASH, &[key], args).await?;
        Ok(deleted == 1)
    }

    /// Records backoff step `step` as `value` under `refused_key` for
    /// `ttl`, unless a step at least as far along runs: `None` when it did,
    /// else the record left there. `unless`: a record the caller found
    /// forged, written over whatever it says.
    pub(super) async fn record_step(
        &self,
        refused_key: &str,
        value: String,
        step: u32,
        ttl: Duration,
        unless: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Trouble> {
        let args = vec![
            value.into(),
            step.to_string().into(),
            millis(ttl).to_string().into(),
            unless.unwrap_or_default(),
        ];
        let (written, left): (i64, Option<Vec<u8>>) =
            self.script(STEP, &[refused_key], args).await?;
        Ok(if written == 1 { None } else { left })
    }
}

/// Milliseconds for `PX`, at least 1 (Redis refuses 0) and at most
/// 2^50 (some 35,000 years: Redis refuses a TTL that overflows its clock).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 1 << 50)
}

// The test helper that starts `redis-server`s, shared with `tests/fleet`.
#[cfg(test)]
#[path = "../../tests/fleet/redis_server.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "a test helper: the standalone server only"
)]
mod redis_server;

/// The Lua scripts against a real `redis-server` (skipped loudly when
/// there is none, and failing in CI, as `tests/fleet`).
#[cfg(test)]
mod tests {
    use super::*;

    use super::redis_server::{available, RedisServer};

    fn conn(redis: &RedisServer) -> Conn {
        let target = Target::standalone(&redis.url()).unwrap();
        Conn::new(target, Duration::from_secs(2))
    }

    const KEY: &str = "t:{fp}:refused";

    fn hash(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    async fn step(conn: &Conn, value: &str, number: u32, ttl_ms: u64) -> bool {
        let ttl = Duration::from_millis(ttl_ms);
        let written = conn.record_step(KEY, value.into(), number, ttl, None).await;
        written.map_err(|e| e.to_string()).unwrap().is_none()
    }

    #[tokio::test]
    async fn a_step_is_recorded_unless_one_at_least_as_far_along_runs() {
        if !available() {
            return;
        }
        let redis = RedisServer::start();
        let conn = conn(&redis);
        let (a, b) = (hash('a'), hash('b'));
        // Nothing there: step 2 for a, 60 s, its number kept 60 s after.
        let two = format!("{a} 2 60000");
        assert!(step(&conn, &two, 2, 120_000).await);
        assert_eq!(redis.cli(&["GET", KEY]), two);
        // It runs: steps 1 and 2 (another process's, for b) leave it.
        assert!(!step(&conn, &format!("{b} 1 60000"), 1, 120_000).await);
        assert!(!step(&conn, &format!("{b} 2 60000"), 2, 120_000).await);
        assert_eq!(redis.cli(&["GET", KEY]), two);
        // A step further along replaces it.
        let three = format!("{b} 3 60000");
        assert!(step(&conn, &three, 3, 90_000).await);
        assert_eq!(redis.cli(&["GET", KEY]), three);
        // A step that is over (less than its keep left) is replaced by any.
        redis.cli(&["SET", KEY, &format!("{a} 9 60000"), "PX", "30000"]);
        assert!(step(&conn, &two, 2, 120_000).await);
        assert_eq!(redis.cli(&["GET", KEY]), two);
        let pttl: u64 = redis.cli(&["PTTL", KEY]).parse().unwrap();
        assert!((60_000..=120_000).contains(&pttl), "{pttl}");
        // A record the caller found forged is written over, whatever it
        // says; the record left is returned when nothing is written.
        let forged = format!("{a} 99 0");
        redis.cli(&["SET", KEY, &forged, "PX", "3600000"]);
        let left = conn.record_step(KEY, two.clone(), 2, Duration::from_secs(120), None);
        assert_eq!(left.await.ok(), Some(Some(forged.clone().into_bytes())));
        let unless = Some(forged.into_bytes());
        let over = conn.record_step(KEY, two.clone(), 2, Duration::from_secs(120), unless);
        assert_eq!(over.await.ok(), Some(None));
        assert_eq!(redis.cli(&["GET", KEY]), two);
        // Garbage, or another type, is overwritten.
        for bad in [&["SET", KEY, "garbage"][..], &["HSET", KEY, "f", "v"][..]] {
            redis.cli(&["DEL", KEY]);
            redis.cli(bad);
            assert!(step(&conn, &two, 2, 120_000).await, "{bad:?}");
            assert_eq!(redis.cli(&["GET", KEY]), two);
        }
    }

    #[tokio::test]
    async fn the_look_reads_token_lock_and_record_and_the_record_goes_by_its_hash() {
        if !available() {
            return;
        }
        let redis = RedisServer::start();
        let conn = conn(&redis);
        let keys = ("t:{fp}:token", "t:{fp}:lock", KEY);
        let look = || async { conn.look(keys).await.map_err(|e| e.to_string()).unwrap() };
        assert_eq!(look().await, (None, None, None, -2));
        let record = format!("{} 1 60000", hash('a'));
        redis.cli(&["SET", keys.0, "v"]);
        redis.cli(&["SET", keys.1, "owner"]);
        redis.cli(&["SET", KEY, &record, "PX", "90000"]);
        let (token, lock, found, pttl) = look().await;
        assert_eq!(
            (token, lock, found),
            (
                Some(b"v".to_vec()),
                Some(b"owner".to_vec()),
                Some(record.clone().into_bytes())
            )
        );
        assert!((60_000..=90_000).contains(&pttl), "{pttl}");
        // Another type reads as absent.
        redis.cli(&["DEL", keys.0]);
        redis.cli(&["HSET", keys.0, "f", "v"]);
        assert_eq!(look().await.0, None);
        // Deleted only by the hash it names.
        let conn = &conn;
        let deleted = |h: String| async move { conn.delete_if_hash(KEY, &h).await.ok() };
        assert_eq!(deleted(hash('b')).await, Some(false));
        assert_eq!(redis.cli(&["EXISTS", KEY]), "1");
        assert_eq!(deleted(hash('a')).await, Some(true));
        assert_eq!(redis.cli(&["EXISTS", KEY]), "0");
    }

    #[tokio::test]
    async fn the_lease_tells_a_lock_this_crate_never_writes_and_renews_only_its_own() {
        if !available() {
            return;
        }
        let redis = RedisServer::start();
        let conn = conn(&redis);
        let lock = "t:{fp}:lock";
        let lease = Duration::from_secs(30);
        let take = |owner: &'static str| {
            let conn = &conn;
            async move { conn.lease(lock, owner, lease).await.ok() }
        };
        assert_eq!(take("a").await, Some(Lease::Taken));
        assert_eq!(take("b").await, Some(Lease::Held));
        // Renewed by its owner only.
        redis.cli(&["PEXPIRE", lock, "1000"]);
        assert_eq!(conn.renew(lock, "b", lease).await.ok(), Some(false));
        let pttl: u64 = redis.cli(&["PTTL", lock]).parse().unwrap();
        assert!(pttl <= 1000, "{pttl}");
        assert_eq!(conn.renew(lock, "a", lease).await.ok(), Some(true));
        let pttl: u64 = redis.cli(&["PTTL", lock]).parse().unwrap();
        assert!((1000..=30_000).contains(&pttl), "{pttl}");
        // Another type: left as it is.
        for make in [&["HSET", lock, "f", "v"][..], &["RPUSH", lock, "x"][..]] {
            redis.cli(&["DEL", lock]);
            redis.cli(make);
            assert_eq!(take("a").await, Some(Lease::WrongType), "{make:?}");
            assert_ne!(redis.cli(&["TYPE", lock]), "string");
            assert_eq!(conn.renew(lock, "a", lease).await.ok(), Some(false));
        }
        // A string lock with no TTL: given the lease as one, once.
        redis.cli(&["DEL", lock]);
        redis.cli(&["SET", lock, "stuck"]);
        assert_eq!(take("a").await, Some(Lease::NoTtl));
        let pttl: i64 = redis.cli(&["PTTL", lock]).parse().unwrap();
        assert!((1..=30_000).contains(&pttl), "{pttl}");
        assert_eq!(take("a").await, Some(Lease::Held));
        assert_eq!(redis.cli(&["GET", lock]), "stuck");
        // More than a lease to live: left alone.
        redis.cli(&["PEXPIRE", lock, "3600000"]);
        assert_eq!(take("a").await, Some(Lease::LongTtl));
        let pttl: i64 = redis.cli(&["PTTL", lock]).parse().unwrap();
        assert!(pttl > 30_000, "{pttl}");
    }
}
