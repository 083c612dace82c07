//! One token for a whole fleet: a shared Redis tier behind the cache's
//! fetch (feature `redis`).
//!
//! [`RedisTier`] is the Redis implementation of
//! [`SharedTier`](crate::tier::SharedTier): the protocol below is the
//! cache's, the same for every tier; this module keeps its contract in
//! Redis (keys, Lua scripts, encryption, deadlines).
//!
//! Every replica of a service has its own [`TokenCache`](crate::TokenCache);
//! built with [`TokenCacheBuilder::redis`](crate::cache::TokenCacheBuilder::redis),
//! they share one token through Redis, and one process of the fleet fetches
//! it. The hot path never talks to Redis: Redis is consulted only when the
//! cache needs a new token (stale, expired, refused with a 401):
//!
//! 1. **Read.** If Redis holds a usable token for the same configuration
//!    (not the one being replaced), it is used: no token request.
//! 2. **Lease.** Else the process takes the lease lock (`SET lock owner NX PX
//!    lease`, a random owner id), fetches, publishes the token (its
//!    wall-clock `issued_at` and `expires_in`, so every process computes the
//!    same schedule; a Redis TTL one second past its expiry, a day at most)
//!    and releases the lock by compare-and-delete (a Lua script). While it
//!    fetches it renews the lease every third of it (compare-owner
//!    `PEXPIRE`), so a fetch longer than the lease (a DPoP nonce resend, a
//!    refresh token refused and then the grant) is still the fleet's only
//!    one, and a holder that dies frees the lock within a lease.
//! 3. **Wait.** A process that finds the lock taken polls (every
//!    [`poll_interval`](RedisTier::poll_interval)) until the token is there,
//!    or the lock is gone without one (the holder failed, or died and its
//!    lease expired): then it takes the lease itself.
//!
//! A lock this crate never writes (a key of another type, a string with no
//! TTL, or one with more than this process's lease to live) is Redis
//! trouble: the process fetches alone at once and logs at WARN once; a
//! lock with no TTL is given the lease as one, so it ends (the others are
//! left as they are: a process configured with a longer lease may hold
//! one). A lease call that gets no answer
//! in time may still land later: its lock is then released by
//! compare-and-delete (spawned, best-effort, for a lease at most), so the
//! fleet does not wait out a lease for nobody's fetch.
//!
//! A background refresh goes the same way, so one process of the fleet
//! refreshes ahead of expiry and the others pick the new token up from
//! Redis when their own copy goes stale, with no request waiting.
//!
//! **401s.** A token refused by a resource server is removed from Redis only
//! if Redis still holds that same token (compare-and-delete on the SHA-256
//! of the access token, in Lua); a newer token already there is used.
//!
//! **Revocation.** [`TokenCache::revoke`](crate::TokenCache::revoke) in one
//! process revokes the fleet's shared token, so it first removes it from
//! Redis (compare-and-delete on its hash, within the Redis deadline): no
//! process, running or new, takes it up again. The other processes still
//! hold it; each one's next request is refused (401), finds it gone from
//! Redis, and is resent with the fleet's next token (one token request for
//! the fleet, under the lease), as for any 401. A request that cannot be
//! resent (a body that cannot be copied, or
//! [`retry_unauthorized(false)`](crate::layer::AuthPolicy::retry_unauthorized))
//! gets that 401. Revoke on shutdown, as one process would; revoking while
//! the fleet runs costs each process one refused request.
//!
//! **The 401 backoff is the fleet's.** Once a token fetched because of a
//! 401 is refused too, a process backs off its refetches-on-401
//! ([`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff)).
//! Kept per process, that record would let each process of a fleet that
//! joins with the shared token spend a token request on its first 401, and
//! each one's (jittered) steps end at other times: N processes, N × the
//! token requests. So the step is shared through Redis, in a record beside
//! the token (`…:refused`: the refused token's hash, the step number, and
//! how long the number is kept after the step; TTL the step's delay plus
//! that):
//!
//! - the process that starts a step writes it (a Lua script; a step at
//!   least as far along that still runs is left alone);
//! - a refetch after a 401 that finds the step running for the very token
//!   it saw refused neither deletes the shared token nor fetches: it takes
//!   the token Redis holds back and joins the step, so its 401s pass
//!   through until the fleet's step ends. A process that takes the very
//!   token the step is for (a process that starts, say) joins it too, and
//!   its first 401 passes through. A step for another token is never
//!   joined;
//! - the next step is numbered after the fleet's, so steps grow fleet-wide;
//!   after a step, the first 401 anywhere gets one new token for the fleet
//!   (the lease), whose refusal starts the next step;
//! - an answer other than 401 for that token, to a process that knows of
//!   the step (started or joined it), deletes the record (compare-and-delete
//!   on the hash): the next 401 gets a new token at once. A process still
//!   in a step of its own finishes it, as one process does.
//!
//! So a fleet whose every token is refused costs the token endpoint what
//! one process costs: at most `2 + log2(2t + 1)` token requests in its
//! first `t` seconds, then one per capped step. (One gap is left: a process
//! that takes a token in the milliseconds between its fetch after a 401
//! and the refusal that starts the step, a process that has just started,
//! spends one token request on its first 401, as before.) The writes are spawned, so
//! a 401 never waits for Redis ([`FleetStats::steps_shared`],
//! [`steps_joined`](FleetStats::steps_joined),
//! [`steps_ended`](FleetStats::steps_ended) count them); when Redis fails,
//! each process keeps its own record, as without the fleet.
//!
//! Anyone who can write the record could hold the fleet's refetches back,
//! so a record imposes at most 5 minutes (the default backoff's maximum),
//! whatever its TTL, once (a step ends for a process when it first seemed
//! to, however long the record lives), and, with an
//! [`encryption_key`](RedisTier::encryption_key), only a record carrying
//! this fleet's tag (ChaCha20-Poly1305 over the key name and its fields)
//! is believed; any other is ignored and written over.
//!
//! **Keys.** `tower-oauth2:<namespace>:{<fingerprint>}:token`, `…:lock` and
//! `…:refused`: the [`ConfigFingerprint`] (SHA-256 hex of the token URL,
//! client, grant, scopes, audience, resources, and a hash of the subject a
//! grant acts for (the refresh token, token-exchange subject, assertion or
//! code the cache was built with), so one cache per user shares nothing with
//! another user's; no secret in clear) in a hash tag, so
//! a token, its lock and its record of 401s share a Redis Cluster slot. No
//! key name holds a secret, and the record of 401s names a token by its
//! SHA-256 only.
//!
//! **Secrets at rest.** With [`encryption_key`](RedisTier::encryption_key),
//! values are sealed with ChaCha20-Poly1305 (the key name as associated
//! data), and the record of 401s is authenticated with it. A value that does not decrypt, is not a token, or belongs to
//! another configuration is ignored (logged at WARN, counted in
//! [`FleetStats::bad_values`]) and overwritten by the next fetch. Without
//! a key, Redis is trusted like the token endpoint: the values are plain
//! JSON, and whoever can write Redis can put any token under any key,
//! one fetched for another user (another subject's fingerprint) included.
//!
//! **TLS and ACL users.** `rediss://` URLs use TLS (rustls with `ring`),
//! trusting Mozilla's roots, or only the CA certificates given to
//! [`tls_ca_certificates`](RedisTier::tls_ca_certificates) (a private CA);
//! [`tls_client_certificate`](RedisTier::tls_client_certificate) presents a
//! client certificate to a Redis with `tls-auth-clients yes`.
//! `redis://user:password@host` (or `rediss://…`) authenticates as an ACL
//! user. A Redis that refuses the handshake or the password is Redis
//! trouble like any other (below); neither the URL nor the password is ever
//! logged or in an error (the outage log names the nodes' `host:port`).
//! The redis crate builds its TLS settings with rustls's process-default
//! provider: if your build enables both of rustls's providers (`ring` and
//! `aws-lc-rs`, say through another dependency), install one with
//! `rustls::crypto::CryptoProvider::install_default` before the first
//! `rediss://` connection, or rustls panics as it cannot choose.
//!
//! **One connection per tier.** Every cache built with one [`RedisTier`]
//! or its clones (all the keys of a
//! [`KeyedOAuth2Layer`](crate::layer::KeyedOAuth2Layer), say) shares one
//! multiplexed Redis connection, made when the first needs it, and one
//! outage log; each keeps its own keys and lease.
//!
//! **Redis trouble never fails a request** that could succeed without it:
//! every call has a [deadline](RedisTier::timeout) (500 ms by default); when
//! Redis fails or is late, the process fetches its own token (its own single
//! flight), logs at WARN once per outage, at INFO when Redis answers again,
//! and shares tokens again from the next fetch.
//!
//! # Example
//!
//! ```no_run
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use std::time::Duration;
//! use tower_oauth2::fleet::RedisTier;
//! use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let http = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//! let endpoint = TokenEndpoint::new(
//!     http,
//!     TokenUrl::new("https://as.example.com/token")?,
//!     ClientAuth::client_secret_basic("svc", "secret"),
//! );
//! # let ca_pem = rcgen::generate_simple_self_signed(["redis.internal".to_owned()])?.cert.pem();
//! // An ACL user over TLS, the server's certificate issued by a private CA.
//! let tier = RedisTier::standalone("rediss://svc:password@redis.internal:6380")?
//!     .tls_ca_certificates(ca_pem)?
//!     .namespace("billing")?
//!     .encryption_key([7; 32]);
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials())
//!     .redis(tier.clone())
//!     .build();
//! # let _ = (cache, tier.stats());
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("../docs/fleet.md")]

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::TokenCacheBuilder;
use crate::store::ConfigFingerprint;

// One concept a file: `target` (the URLs, TLS settings, the redis crate's
// client), `conn` (the connection, deadlines, the outage log, the Lua
// scripts), `value` (what a token key holds, encryption), `tier` (each
// `SharedTier` call in Redis), `refusals` (the fleet's record of 401s and
// its backoff step). This file: the public handle. The fetch's protocol
// (read, lease, fetch, publish, wait) is the cache's (`crate::tier`).
mod conn;
mod refusals;
mod target;
mod tier;
mod value;

use conn::Conn;
use target::Target;
use value::Sealer;

/// The fleet's shared token tier in Redis; give it to
/// [`TokenCacheBuilder::redis`](crate::cache::TokenCacheBuilder::redis).
/// See the [module docs](self).
///
/// Configure it before giving it to a cache: the cache takes its own
/// settings when built. A clone shares the counters ([`Self::stats`]) and
/// the connection.
///
/// **One connection per tier.** Every cache built with this tier or a
/// clone of it (each [`KeyedOAuth2Layer`](crate::layer::KeyedOAuth2Layer)
/// key's, say) shares one Redis connection, made when the first of them
/// needs Redis, with one outage log; each cache keeps its own keys and
/// lease. Changing a clone's [`timeout`](Self::timeout) or TLS settings
/// gives that clone a connection of its own. The connection's tasks run on
/// the Tokio runtime that made it: give caches on other runtimes a tier of
/// their own.
#[derive(Clone)]
pub struct RedisTier {
    /// The connection every cache bound to this tier (or a clone) uses.
    conn: Arc<Conn>,
    namespace: String,
    sealer: Option<Sealer>,
    lease: Option<Duration>,
    poll_interval: Duration,
    stats: Arc<Counters>,
    /// The configurations whose lease lock this crate did not write was
    /// logged at WARN (once, until a lease is taken again).
    lock_trouble: Arc<Mutex<HashSet<ConfigFingerprint>>>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.conn.target();
        let (private_ca, client_certificate) = target.tls();
        f.debug_struct("RedisTier")
            .field("kind", &target.kind())
            .field("private_ca", &private_ca)
            .field("client_certificate", &client_certificate)
            .field("namespace", &self.namespace)
            .field("encrypted", &self.sealer.is_some())
            .field("lease", &self.lease)
            .field("timeout", &self.conn.deadline())
            .field("poll_interval", &self.poll_interval)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A Redis URL or setting the tier cannot use. Its message never holds
/// the URL (it may carry a password).
#[derive(Debug, Clone)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl RedisTier {
    /// Default deadline on every Redis call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
    /// Default pause between two looks at Redis while another process
    /// fetches.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);

    /// A standalone Redis (or a primary): `redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` for TLS. No connection is made until a token is needed.
    pub fn standalone(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::with_target(Target::standalone(url)?))
    }

    /// A Redis Cluster, given the URLs of one or more of its nodes (all
    /// `redis://` or all `rediss://`).
    pub fn cluster<'a>(urls: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        Ok(Self::with_target(Target::cluster(urls)?))
    }

    fn with_target(target: Target) -> Self {
        RedisTier {
            conn: Arc::new(Conn::new(target, Self::DEFAULT_TIMEOUT)),
            namespace: "default".into(),
            sealer: None,
            lease: None,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            stats: Arc::default(),
            lock_trouble: Arc::default(),
        }
    }

    /// Names this application's tokens apart from others' with the same
    /// configuration (default `default`). It appears in key names: no
    /// secret. Letters, digits and `-_.:` only, 1 to 64 of them.
    pub fn namespace(mut self, namespace: &str) -> Result<Self, ConfigError> {
        let ok = (1..=64).contains(&namespace.len())
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(ConfigError(
                "a Redis namespace is 1 to 64 letters, digits and -_.: characters".into(),
            ));
        }
        self.namespace = namespace.to_owned();
        Ok(self)
    }

    /// Trusts the CA certificates in `pem` (one or more `CERTIFICATE`
    /// blocks; other blocks are skipped) for `rediss://`, instead of
    /// Mozilla's roots: for a Redis whose certificate a private CA issued.
    ///
    /// The URLs must be `rediss://`. The PEM is read now: an error names
    /// what is wrong with it and quotes none of it.
    pub fn tls_ca_certificates(self, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let target = self.conn.target().clone().trusting(pem.as_ref())?;
        let deadline = self.conn.deadline();
        Ok(self.connect(target, deadline))
    }

    /// Presents a client certificate over `rediss://`, for a Redis that
    /// asks for one (`tls-auth-clients yes`): `cert_chain` holds the
    /// certificate (then any intermediates) in PEM, `key` its private key
    /// (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`; RSA, ECDSA
    /// P-256/P-384 or Ed25519). One file holding both can be passed twice.
    ///
    /// The URLs must be `rediss://`. Both are read now and the key checked
    /// against the certificate: an error names what is wrong and quotes
    /// none of either. The key is never printed.
    pub fn tls_client_certificate(
        self,
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<Self, ConfigError> {
        let target = self
            .conn
            .target()
            .clone()
            .presenting(cert_chain.as_ref(), key.as_ref())?;
        let deadline = self.conn.deadline();
        Ok(self.connect(target, deadline))
    }

    /// Encrypts values at rest with ChaCha20-Poly1305 under `key` (32
    /// bytes; share it with the whole fleet, keep it out of Redis), and
    /// authenticates the fleet's record of 401s with it. A value that does
    /// not decrypt, or a record whose tag does not verify, is ignored and
    /// overwritten.
    pub fn encryption_key(mut self, key: [u8; 32]) -> Self {
        self.sealer = Some(Sealer::new(&key));
        self
    }

    /// How long the lease lock lasts unless renewed: a holder that dies
    /// frees it after this. Default: the token endpoint's timeout, plus the
    /// cache's store timeout, plus 5 s. The holder renews it every third of
    /// the lease while its fetch runs (one that takes longer, with a DPoP
    /// nonce resend or a refresh token refused and then the grant, still
    /// has the fleet waiting for it), for at most four times the default
    /// (four token requests, each within the endpoint's timeout).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The deadline on every Redis call, connecting included (default
    /// [`Self::DEFAULT_TIMEOUT`]). Past it, the process fetches its own
    /// token.
    pub fn timeout(self, timeout: Duration) -> Self {
        let target = self.conn.target().clone();
        self.connect(target, timeout)
    }

    /// This tier with a connection of its own (none made yet) to `target`.
    fn connect(mut self, target: Target, deadline: Duration) -> Self {
        self.conn = Arc::new(Conn::new(target, deadline));
        self
    }

    /// How often a process waiting for another's fetch looks at Redis
    /// (default [`Self::DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// A snapshot of the counters of every cache using this tier (or a
    /// clone of it).
    pub fn stats(&self) -> FleetStats {
        self.stats.snapshot()
    }
}

impl TokenCacheBuilder {
    /// Shares tokens with the rest of the fleet through Redis: tokens are
    /// read from `tier` before any token request, and one process of the
    /// fleet fetches at a time. See [`crate::fleet`]. The default
    /// [`wait_timeout`](Self::wait_timeout) grows by the tier's lease.
    /// The same as [`shared_tier`](Self::shared_tier) with a [`RedisTier`].
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(self, tier: RedisTier) -> Self {
        self.shared_tier(tier)
    }
}

/// A snapshot of a [`RedisTier`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// Tokens taken from Redis instead of fetched.
    pub shared_hits: u64,
    /// Leases taken: fetches this process made for the fleet.
    pub leases: u64,
    /// Times the lease was held by another process (then waited for).
    pub lease_waits: u64,
    /// Tokens published to Redis.
    pub published: u64,
    /// Tokens not published because this process's lease ran out before
    /// they came (another process may have taken over and published a
    /// newer one); each was still used by this process.
    pub late_publishes: u64,
    /// Fetches made alone because Redis failed, was late, held a lock this
    /// crate never writes, or the wait for another process's fetch ran out.
    pub fallbacks: u64,
    /// Shared tokens removed after a 401, or after this process revoked
    /// them (compare-and-delete).
    pub invalidations: u64,
    /// Values in Redis ignored as unusable (garbage, another version or
    /// configuration, wrong key).
    pub bad_values: u64,
    /// Backoff steps of refetches-on-401 this process started and wrote to
    /// Redis for the fleet (none was running already).
    pub steps_shared: u64,
    /// Fetches that found the fleet's backoff step running and joined it:
    /// the token Redis holds was taken, none was requested, and this
    /// process's 401s pass through until the step ends.
    pub steps_joined: u64,
    /// The fleet's backoff ended by this process: a resource server
    /// answered other than 401 for the token the step was for.
    pub steps_ended: u64,
    /// Lease locks found that this crate never writes (a key of another
    /// type, one with no TTL, or one with more than this process's lease
    /// to live): each time, this process fetched alone.
    pub odd_locks: u64,
}

#[derive(Default)]
struct Counters {
    shared_hits: AtomicU64,
    leases: AtomicU64,
    lease_waits: AtomicU64,
    published: AtomicU64,
    late_publishes: AtomicU64,
    fallbacks: AtomicU64,
    invalidations: AtomicU64,
    bad_values: AtomicU64,
    steps_shared: AtomicU64,
    steps_joined: AtomicU64,
    steps_ended: AtomicU64,
    odd_locks: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FleetStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetStats {
            shared_hits: get(&self.shared_hits),
            leases: get(&self.leases),
            lease_waits: get(&self.lease_waits),
            published: get(&self.published),
            late_publishes: get(&self.late_publishes),
            fallbacks: get(&self.fallbacks),
            invalidations: get(&self.invalidations),
            bad_values: get(&self.bad_values),
            steps_shared: get(&self.steps_shared),
            steps_joined: get(&self.steps_joined),
            steps_ended: get(&self.steps_ended),
            odd_locks: get(&self.odd_locks),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
