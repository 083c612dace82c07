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

/// Deletes the token only if it is still the one whose hash is `ARGV[1]`.
/// A value of another type (bad data) is left for the next publish.
const INVALIDATE: &str = r"
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'string' and string.sub(v, 1, 64) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

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

    async fn script(&self, source: &'static str, key: &str, arg: &str) -> Result<i64, Trouble> {
        let (key, arg) = (key.to_owned(), arg.to_owned());
        self.run(|live| async move {
            let script = Script::new(source);
            let mut call = script.key(key);
            call.arg(arg);
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

    /// `SET lock owner NX PX lease`: whether this process now holds it.
    pub(super) async fn lease(
        &self,
        lock_key: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, Trouble> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(lock_key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease));
        let set: Option<String> = self.cmd(cmd).await?;
        Ok(set.is_some())
    }

    /// Stores `value` under `token_key` for `ttl`, whatever was there.
    pub(super) async fn publish(
        &self,
        (token_key, lock_key): (&str, &str),
        owner: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, Trouble> {
        let (token_key, lock_key, owner) =
            (token_key.to_owned(), lock_key.to_owned(), owner.to_owned());
        let published: i64 = self
            .run(|live| async move {
                let script = Script::new(PUBLISH);
                let mut call = script.key(token_key);
                call.key(lock_key).arg(owner).arg(value).arg(millis(ttl));
                match live {
                    Live::Standalone(mut c) => call.invoke_async(&mut c).await,
                    Live::Cluster(mut c) => call.invoke_async(&mut c).await,
                }
            })
            .await?;
        Ok(published == 1)
    }

    /// Releases the lock if `owner` still holds it.
    pub(super) async fn release(&self, lock_key: &str, owner: &str) -> Result<bool, Trouble> {
        Ok(self.script(RELEASE, lock_key, owner).await? == 1)
    }

    /// Deletes the token if its hash is still `hash_hex`.
    pub(super) async fn invalidate(
        &self,
        token_key: &str,
        hash_hex: &str,
    ) -> Result<bool, Trouble> {
        Ok(self.script(INVALIDATE, token_key, hash_hex).await? == 1)
    }
}

/// Milliseconds for `PX`, at least 1 (Redis refuses 0).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
