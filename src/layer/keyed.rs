//! One client, many APIs: [`KeyedOAuth2Layer`] picks each request's token
//! by a key (by default its origin), one [`TokenCache`] per key.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::destinations::Destinations;
use super::error::ServiceError;
use super::future::ResponseFuture;
use super::policy::AuthPolicy;
use super::replay::{Kept, ReplayBody, ReplayEmpty};
use crate::cache::keyed::{Entry, KeyMap};
use crate::cache::{Backoff, Lookup, TokenCache, TokenCopy};
use crate::error::Error;

type KeyFn<K> = dyn Fn(&Uri, &HeaderMap) -> Option<K> + Send + Sync;
type MakeFn<K> = dyn Fn(&K) -> Option<TokenCache> + Send + Sync;

/// What a [`KeyedOAuth2Layer`] does with a request whose key maps to no
/// token configuration (an origin not in its list, or a key its function
/// maps to nothing). Either way no token meant for another API is sent,
/// and no token is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// The request fails with [`ServiceError::Token`], an error of kind
    /// [`ErrorKind::UnmappedKey`](crate::ErrorKind::UnmappedKey); nothing is
    /// sent. The default.
    #[default]
    Error,
    /// The request is sent as it came, with no token.
    PassThrough,
}

/// Adds OAuth2 bearer tokens to requests, a different token per key: one
/// client for several APIs, each with its own audience, RFC 8707
/// `resource` or scope (or, multi-tenant, each tenant its own token).
///
/// For each request that may carry a token (its [`Destinations`]: when
/// none are chosen, [`Destinations::secure`] first, then for its key the
/// origins that key's token request names, as
/// [`OAuth2Layer::new`](super::OAuth2Layer::new) chooses; chosen ones apply
/// to every key alike) the layer computes a key (by default the request's origin:
/// [`KeyedOAuth2Layer::by_origin`]; or any function of the URI and headers:
/// [`KeyedOAuth2Layer::new`]) and takes the token from that key's
/// [`TokenCache`]. Each key's cache is made on first use by a function you
/// give, usually one [`TokenCacheBuilder`](crate::cache::TokenCacheBuilder)
/// per key built from one endpoint and a variation of one base
/// [`TokenRequest`](crate::TokenRequest) (`resource`, `audience`, scope):
/// an ordinary cache, with the same single flight, background refresh and
/// 401 rules as a single one; a 401 from one API invalidates that API's
/// token only. A key that maps to nothing ([`Unmapped`]) gets an error or
/// passes through untouched, never another key's token.
///
/// The layer holds at most [`max_keys`](KeyedOAuth2Layer::max_keys) caches
/// (default 64; the least recently used goes first) and drops a cache
/// unused for [`idle_timeout`](KeyedOAuth2Layer::idle_timeout) (default 15
/// min) when a new key comes or on [`evict_idle`](KeyedOAuth2Layer::evict_idle);
/// a dropped key gets a new cache (and token) when used again.
///
/// The lookup by key takes no lock: one `ArcSwap` load of the map, one hash
/// lookup, then the cache's own hot path. A new key is inserted
/// copy-on-write under a mutex only writers take.
///
/// Clones of the layer, and the services made from it, share the caches.
/// A layer given an option after it was cloned or made a service takes
/// caches of its own (each key's cache is used with the options it was
/// made with, so sharing them would lend one layer's options to the
/// other): set the options first, then clone.
pub struct KeyedOAuth2Layer<K, P = ReplayEmpty> {
    shared: Arc<Shared<K>>,
    replay: P,
}

struct Shared<K> {
    key: Arc<KeyFn<K>>,
    make: Arc<MakeFn<K>>,
    caches: Arc<KeyMap<K, AuthPolicy>>,
    options: Options,
}

#[derive(Clone, Debug)]
struct Options {
    destinations: Destinations,
    /// `destinations` was chosen (or the key function names the origin,
    /// `by_origin`): every key's policy takes it. Otherwise each key's
    /// policy keeps [`AuthPolicy::new`]'s, the origins its token request
    /// names, and `destinations` is only the first check.
    destinations_chosen: bool,
    keep_existing: bool,
    retry_unauthorized: bool,
    unauthorized_backoff: Option<Backoff>,
    refused_with: Vec<http::StatusCode>,
    unmapped: Unmapped,
    /// The map's bounds, as set (`None`: the default), for the map of a
    /// layer that detaches.
    max_keys: Option<usize>,
    idle_timeout: Option<Duration>,
}

// By hand: the functions are not `Clone`-derivable through `Arc<dyn …>`
// bounds on `K`.
impl<K> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Shared {
            key: Arc::clone(&self.key),
            make: Arc::clone(&self.make),
            caches: Arc::clone(&self.caches),
            options: self.options.clone(),
        }
    }
}

impl<K, P: Clone> Clone for KeyedOAuth2Layer<K, P> {
    fn clone(&self) -> Self {
        KeyedOAuth2Layer {
            shared: Arc::clone(&self.shared),
            replay: self.replay.clone(),
        }
    }
}

impl<K> KeyedOAuth2Layer<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// A layer keyed by `key` (a function of the request's URI and headers;
    /// `None`: the request has no key, see [`Unmapped`]), taking the token
    /// of key `k` from the cache `make(&k)` gives on `k`'s first use
    /// (`None`: `k` maps to nothing). `make` runs with no lock held; it may
    /// run twice for one key when two requests bring a new key at once,
    /// and then one of the two caches, never used, is dropped.
    pub fn new(
        key: impl Fn(&Uri, &HeaderMap) -> Option<K> + Send + Sync + 'static,
        make: impl Fn(&K) -> Option<TokenCache> + Send + Sync + 'static,
    ) -> Self {
        KeyedOAuth2Layer {
            shared: Arc::new(Shared {
                key: Arc::new(key),
                make: Arc::new(make),
                caches: Arc::new(KeyMap::new()),
                options: Options {
                    destinations: Destinations::secure(),
                    destinations_chosen: false,
                    keep_existing: false,
                    retry_unauthorized: true,
                    unauthorized_backoff: None,
                    refused_with: Vec::new(),
                    unmapped: Unmapped::Error,
                    max_keys: None,
                    idle_timeout: None,
                },
            }),
            replay: ReplayEmpty,
        }
    }
}

impl KeyedOAuth2Layer<usize> {
    /// A layer keyed by the request's origin: `origins` lists each origin
    /// (`https://api.example.com`, a port if not the default, no path) with
    /// what its cache is made from (a [`TokenRequest`](crate::TokenRequest)
    /// variation, say), and `make` makes an origin's cache from that on the
    /// origin's first use. The key of an origin is its position in the list
    /// (for [`KeyedOAuth2Layer::cache_for`]). A request to any other
    /// origin is [`Unmapped`]. The origins are parsed here, once; a request
    /// is matched against them with no allocation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidDestination`](crate::ErrorKind::InvalidDestination)
    /// when an origin is not an `http`/`https` origin.
    pub fn by_origin<O, T>(
        origins: impl IntoIterator<Item = (O, T)>,
        make: impl Fn(&T) -> TokenCache + Send + Sync + 'static,
    ) -> Result<Self, Error>
    where
        O: AsRef<str>,
        T: Send + Sync + 'static,
    {
        let mut matchers = Vec::new();
        let mut written = Vec::new();
        let mut configs = Vec::new();
        for (origin, config) in origins {
            let origin = origin.as_ref();
            matchers.push(Destinations::origins([origin])?);
            written.push(WrittenOrigin::of(origin));
            configs.push(config);
        }
        // As the origin is written first (no parsing of the request's
        // authority, which costs more than the rest of the layer); the
        // same origin written otherwise (`HOST:0443`) by the full match.
        let key = move |uri: &Uri, _: &HeaderMap| {
            let written = written.iter().position(|w| w.matches(uri));
            written.or_else(|| matchers.iter().position(|o| o.allows(uri)))
        };
        let make = move |key: &usize| configs.get(*key).map(&make);
        let mut layer = KeyedOAuth2Layer::new(key, make);
        // The key is the origin: a key's token goes to its own origin only.
        layer.options().destinations_chosen = true;
        Ok(layer)
    }
}

/// An origin of [`KeyedOAuth2Layer::by_origin`]'s list, as a request's
/// URI usually writes it: a request whose scheme is `scheme` and whose
/// authority is one of `authorities` (in any case) goes to that origin,
/// with no credentials (the origin has none). Each `host:port`, and `host`
/// alone when the port is the scheme's default.
struct WrittenOrigin {
    scheme: &'static str,
    authorities: Vec<String>,
}

impl WrittenOrigin {
    /// `origin`, already checked by [`Destinations::origins`] (none of its
    /// forms if it does not parse: the full match alone is used then).
    fn of(origin: &str) -> WrittenOrigin {
        let uri = origin.parse::<Uri>().ok();
        let parts = uri.as_ref().and_then(|uri| {
            let scheme = uri.scheme_str()?.to_ascii_lowercase();
            let authority = uri.authority()?;
            Some((
                scheme,
                authority.host().to_ascii_lowercase(),
                authority.port_u16(),
            ))
        });
        let (scheme, default_port) = match parts.as_ref().map(|(s, ..)| s.as_str()) {
            Some("https") => ("https", 443),
            Some("http") => ("http", 80),
            _ => ("", 0),
        };
        let mut authorities = Vec::new();
        if let (Some((_, host, port)), false) = (parts, scheme.is_empty()) {
            let port = port.unwrap_or(default_port);
            let with_port = format!("{host}:{port}");
            if port == default_port {
                authorities.push(host);
            }
            authorities.push(with_port);
        }
        WrittenOrigin {
            scheme,
            authorities,
        }
    }

    #[inline]
    fn matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let authority = authority.as_str();
        // Byte for byte first (a `memcmp`: the usual case), then in any case.
        let mut authorities = self.authorities.iter();
        scheme == self.scheme
            && (authorities.clone().any(|a| a == authority)
                || authorities.any(|a| a.eq_ignore_ascii_case(authority)))
    }
}

impl<K, P> KeyedOAuth2Layer<K, P>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// How non-empty bodies are kept for a resend after a 401.
    pub fn replay_body<Q>(self, policy: Q) -> KeyedOAuth2Layer<K, Q> {
        KeyedOAuth2Layer {
            shared: self.shared,
            replay: policy,
        }
    }

    /// The options of this layer alone. Each key's policy holds the
    /// options it was made with, so a layer that shares its map (with a
    /// clone, or a service made from it) and is given another option
    /// takes a map of its own (empty, its bounds kept): a clone's options
    /// never reach the original's keys, nor the original's the clone's.
    fn options(&mut self) -> &mut Options {
        if Arc::get_mut(&mut self.shared).is_none() {
            let options = &self.shared.options;
            let caches = KeyMap::new();
            caches.set_bounds(options.max_keys, options.idle_timeout);
            self.shared = Arc::new(Shared {
                caches: Arc::new(caches),
                ..Shared::clone(&self.shared)
            });
        }
        // Unique now: no copy made.
        &mut Arc::make_mut(&mut self.shared).options
    }

    /// Which requests may get a token at all, whatever their key; others
    /// pass through untouched. Without it, each key's token goes only to
    /// the origins its token request names (`Destinations::secure` when it
    /// names none), as [`OAuth2Layer::new`](super::OAuth2Layer::new)'s
    /// does. See [`AuthPolicy::destinations`].
    pub fn destinations(mut self, destinations: Destinations) -> Self {
        let options = self.options();
        options.destinations = destinations;
        options.destinations_chosen = true;
        self
    }

    /// Whether an `Authorization` header the caller set is kept: see
    /// [`AuthPolicy::keep_existing_authorization`].
    pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
        self.options().keep_existing = keep;
        self
    }

    /// Whether a refused token leads to one resend: see
    /// [`AuthPolicy::retry_unauthorized`].
    pub fn retry_unauthorized(mut self, retry: bool) -> Self {
        self.options().retry_unauthorized = retry;
        self
    }

    /// How refetches on 401 back off, per key: see
    /// [`AuthPolicy::unauthorized_backoff`].
    pub fn unauthorized_backoff(mut self, backoff: Backoff) -> Self {
        self.options().unauthorized_backoff = Some(backoff);
        self
    }

    /// Statuses besides 401 that refuse a key's token (a `403` with no
    /// challenge): see [`AuthPolicy::refused_with`].
    pub fn refused_with(mut self, statuses: impl IntoIterator<Item = http::StatusCode>) -> Self {
        self.options().refused_with = statuses.into_iter().collect();
        self
    }

    /// What a request whose key maps to nothing gets (default
    /// [`Unmapped::Error`]).
    pub fn unmapped(mut self, unmapped: Unmapped) -> Self {
        self.options().unmapped = unmapped;
        self
    }

    /// At most this many caches are kept (default 64, at least 1): a new
    /// key beyond it drops the cache used least recently.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.options().max_keys = Some(max_keys);
        self.shared.caches.set_bounds(Some(max_keys), None);
        self
    }

    /// A cache unused this long (default 15 minutes) is dropped when a new
    /// key comes, or on [`KeyedOAuth2Layer::evict_idle`]; never earlier.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.options().idle_timeout = Some(idle);
        self.shared.caches.set_bounds(None, Some(idle));
        self
    }

    /// Drops the caches idle for the idle timeout now; returns how many.
    pub fn evict_idle(&self) -> usize {
        self.shared.caches.evict_idle()
    }

    /// The cache of `key`, if it has one now (for its [`Stats`](crate::cache::Stats)).
    pub fn cache_for(&self, key: &K) -> Option<TokenCache> {
        self.shared.caches.get(key).map(|p| p.cache().clone())
    }

    /// The keys that have a cache now.
    pub fn keys(&self) -> Vec<K> {
        self.shared.caches.keys()
    }
}

impl<K> Shared<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    /// Whether the request may carry a token at all.
    #[inline(always)]
    fn applies_to(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let options = &self.options;
        options.destinations.allows(uri)
            && !(options.keep_existing && headers.contains_key(AUTHORIZATION))
    }

    /// The map's entry (the policy, with its cache) of `key`; `None` when
    /// the key maps to nothing.
    #[inline]
    fn entry_for(&self, key: &K) -> Option<Entry<AuthPolicy>> {
        self.caches
            .entry_or_make(key, |key| Some(self.policy_with((self.make)(key)?)))
    }

    fn policy_with(&self, cache: TokenCache) -> AuthPolicy {
        let options = &self.options;
        // The layer's destinations, though it has checked them already:
        // with DPoP the key's policy resolves an origin-form URI through
        // them (`origin_form_to`), and the proof's `htu` names that origin.
        let policy = AuthPolicy::new(cache);
        let policy = match options.destinations_chosen {
            true => policy.destinations(options.destinations.clone()),
            false => policy,
        };
        let policy = policy
            .keep_existing_authorization(options.keep_existing)
            .retry_unauthorized(options.retry_unauthorized)
            .refused_with(options.refused_with.iter().copied());
        match options.unauthorized_backoff {
            Some(backoff) => policy.unauthorized_backoff(backoff),
            None => policy,
        }
    }
}

impl<K, P: fmt::Debug> fmt::Debug for KeyedOAuth2Layer<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedOAuth2Layer")
            .field("options", &self.shared.options)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl<S, K, P: Clone> Layer<S> for KeyedOAuth2Layer<K, P> {
    type Service = KeyedService<S, K, P>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedService {
            inner,
            shared: Arc::clone(&self.shared),
            replay: self.replay.clone(),
            last: None,
        }
    }
}

/// The middleware built by [`KeyedOAuth2Layer`].
///
/// A service used for many requests remembers the key of its last request
/// with that key's cache, and keeps its own copy of that cache's token, as
/// an [`OAuth2Service`](super::OAuth2Service) does: its next request with
/// the same key (compared with `Eq`) skips the lookup in the map of keys.
/// A clone starts without one. What it remembers holds the key's cache
/// until the service serves another key or is dropped, even once the layer
/// has dropped that cache (which it then no longer uses).
pub struct KeyedService<S, K, P = ReplayEmpty> {
    inner: S,
    shared: Arc<Shared<K>>,
    replay: P,
    last: Option<LastKey<K>>,
}

/// The key a [`KeyedService`] served last, the map's entry for it when it
/// did, and the handle's copy of that entry's token. The three go
/// together: the copy is of this entry's cache alone, and is dropped with
/// it (a copy checked against another cache could match its epoch).
struct LastKey<K> {
    key: K,
    entry: Entry<AuthPolicy>,
    copy: TokenCopy,
}

impl<K> LastKey<K> {
    /// The entry's cached token: the handle's copy while it is current and
    /// fresh, else the cache's (`cache/copy.rs`), as `OAuth2Service::lookup`.
    #[inline(always)]
    fn lookup(&mut self) -> Lookup {
        let cache = self.entry.value().cache();
        if let Some(ready) = self.copy.ready(cache) {
            return ready;
        }
        if self.copy.first_lookup() {
            return cache.lookup();
        }
        self.copy.refill(cache).0
    }
}

impl<S: Clone, K, P: Clone> Clone for KeyedService<S, K, P> {
    fn clone(&self) -> Self {
        KeyedService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            replay: self.replay.clone(),
            last: None,
        }
    }
}

impl<S: fmt::Debug, K, P: fmt::Debug> fmt::Debug for KeyedService<S, K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedService")
            .field("inner", &self.inner)
            .field("options", &self.shared.options)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl<S, K, P> KeyedService<S, K, P> {
    super::define_inner_service_accessors!();
}

impl<S, K, P, B, R> Service<Request<B>> for KeyedService<S, K, P>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    K: Eq + Hash + Clone + Send + Sync + 'static,
    P: ReplayBody<B>,
{
    type Response = Response<R>;
    type Error = ServiceError<S::Error>;
    type Future = KeyedFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ServiceError::Inner)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // As in `OAuth2Service::call`: the instance polled ready is the one
        // called, in place on the hot path (ARCHITECTURE.md, invariant 9).
        let shared = &*self.shared;
        let key = if shared.applies_to(req.uri(), req.headers()) {
            (shared.key)(req.uri(), req.headers())
        } else {
            return KeyedFuture::sent(ResponseFuture::passthrough(self.inner.call(req)));
        };
        let last = match (key, &mut self.last) {
            // The key served last, exactly (`Eq`, not a hash), whose entry
            // the map still holds: never another key's token.
            (Some(key), Some(last)) if last.key == key && shared.caches.in_use(&last.entry) => last,
            (Some(key), last) => match shared.entry_for(&key) {
                Some(entry) => last.insert(LastKey {
                    key,
                    entry,
                    copy: TokenCopy::default(),
                }),
                None => return self.unmapped(req),
            },
            (None, _) => return self.unmapped(req),
        };
        let policy = last.entry.value();
        // With no destinations chosen, the key's token goes only where its
        // own policy sends it (the origins its token request names), as
        // `OAuth2Layer::new`'s does.
        if !shared.options.destinations_chosen && !policy.applies_to(req.uri(), req.headers()) {
            return KeyedFuture::sent(ResponseFuture::passthrough(self.inner.call(req)));
        }
        let lookup = last.lookup();
        let policy = last.entry.value();
        // The copy is taken before the token goes in (see `Replay::new`).
        let kept = kept(policy, &self.replay, &self.inner, &req);
        // Built here, as `OAuth2Service::call` does, so that the request
        // and the future are moved once less.
        let Lookup::Ready(header, generation) = lookup else {
            let policy = policy.clone();
            let future = ResponseFuture::send(&mut self.inner, req, lookup, policy, kept);
            return KeyedFuture::sent(future);
        };
        match policy.authorize(&mut req, header, generation) {
            Ok(proof) => {
                let future = self.inner.call(req);
                let policy = policy.clone();
                KeyedFuture::sent(ResponseFuture::called(
                    future, generation, proof, policy, kept,
                ))
            }
            Err(e) => {
                let policy = policy.clone();
                let future = ResponseFuture::failed(&mut self.inner, req, e, policy, kept);
                KeyedFuture::sent(future)
            }
        }
    }
}

impl<S, K, P> KeyedService<S, K, P> {
    /// A request whose key maps to nothing.
    #[inline(never)]
    fn unmapped<B>(&mut self, req: Request<B>) -> KeyedFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        match self.shared.options.unmapped {
            Unmapped::PassThrough => {
                KeyedFuture::sent(ResponseFuture::passthrough(self.inner.call(req)))
            }
            Unmapped::Error => KeyedFuture::unmapped(),
        }
    }
}

/// What the answers to `req` need of it (a copy for a resend, taken before
/// the token goes in, or where it goes), as `OAuth2Service` keeps.
#[inline]
fn kept<S, B, P>(policy: &AuthPolicy, replay: &P, inner: &S, req: &Request<B>) -> Kept<S, B>
where
    S: Service<Request<B>> + Clone,
    P: ReplayBody<B>,
{
    let copies = policy.keeps_copies();
    let body = copies.then(|| replay.replay_body(req.body())).flatten();
    Kept::of(req, body, inner)
}

pin_project! {
    /// The response future of [`KeyedService`].
    pub struct KeyedFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: KeyedState<S, B>,
    }
}

pin_project! {
    #[project = KeyedStateProj]
    enum KeyedState<S, B>
    where
        S: Service<Request<B>>,
    {
        Sent {
            #[pin]
            future: ResponseFuture<S, B>,
        },
        Unmapped,
    }
}

impl<S, B> KeyedFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline(always)]
    fn sent(future: ResponseFuture<S, B>) -> Self {
        KeyedFuture {
            state: KeyedState::Sent { future },
        }
    }

    fn unmapped() -> Self {
        KeyedFuture {
            state: KeyedState::Unmapped,
        }
    }
}

impl<S, B> fmt::Debug for KeyedFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            KeyedState::Sent { future } => fmt::Debug::fmt(future, f),
            KeyedState::Unmapped => f.write_str("KeyedFuture(Unmapped)"),
        }
    }
}

impl<S, B, R> Future for KeyedFuture<S, B>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Output = Result<Response<R>, ServiceError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            KeyedStateProj::Sent { future } => future.poll(cx),
            KeyedStateProj::Unmapped => {
                Poll::Ready(Err(ServiceError::Token(Error::unmapped_key())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `by_origin` layer of `origins`, and each origin's full match.
    fn by_origin_and_full_matches(
        origins: &[&str],
    ) -> (KeyedOAuth2Layer<usize>, Vec<Destinations>) {
        let layer = KeyedOAuth2Layer::by_origin(origins.iter().map(|o| (o, ())), |()| {
            crate::layer::testing::cache()
        })
        .unwrap();
        let full = origins
            .iter()
            .map(|o| Destinations::origins([o]).unwrap())
            .collect();
        (layer, full)
    }

    // `by_origin`'s key: the first origin the request goes to, whether the
    // request writes it as the origin is written (the shortcut) or not.
    #[test]
    fn by_origin_keys_a_request_by_the_first_origin_it_goes_to_however_written() {
        let origins = [
            "https://api.example.com",
            "https://b.example.com:8443",
            "https://[::1]:8443",
            "http://localhost:8080",
            "https://API.example.COM:443",
            "http://plain.example.com:80",
        ];
        let (layer, full) = by_origin_and_full_matches(&origins);
        let uris = [
            ("https://api.example.com/x", Some(0)),
            ("https://API.Example.com:443/", Some(0)),
            ("https://api.example.com:0443/", Some(0)),
            ("https://api.example.com:/", Some(0)),
            ("HTTPS://api.example.com/", Some(0)),
            ("https://api.example.com:8443/", None),
            ("http://api.example.com/", None),
            ("https://user@api.example.com/", None),
            ("https://api.example.com:443@evil.example/", None),
            ("https://api.example.com.evil.example/", None),
            ("https://evil.example/?https://api.example.com", None),
            ("/v1/items", None),
            ("https://b.example.com:8443/", Some(1)),
            ("https://b.example.com/", None),
            ("https://[::1]:8443/", Some(2)),
            ("https://[::1]/", None),
            ("http://localhost:8080/", Some(3)),
            ("http://LOCALHOST:8080/", Some(3)),
            ("http://localhost/", None),
            ("http://plain.example.com/", Some(5)),
            ("http://plain.example.com:80/", Some(5)),
            ("https://plain.example.com/", None),
        ];
        for (uri, want) in uris {
            let uri: Uri = uri.parse().unwrap();
            let key = (layer.shared.key)(&uri, &HeaderMap::new());
            let by_full_match = full.iter().position(|o| o.allows(&uri));
            assert_eq!((key, by_full_match), (want, want), "{uri}");
        }
    }

    // The shortcut never decides what the full match would not: over every
    // URI built from hostile pieces (userinfo naming the origin, case,
    // trailing dots, default and odd ports, an empty port, `http` for
    // `https`, IPv6 written two ways, percent-encoding, look-alike hosts),
    // parsed or built with an unnormalized scheme, `by_origin`'s key is the
    // first origin the full match allows, and an origin matched as written
    // is one the full match allows. The list holds the same origin written
    // several ways (case, port, leading zero), where the first must win.
    #[test]
    fn by_origin_as_written_never_matches_what_the_full_match_refuses() {
        let origins = [
            "https://api.example.com",
            "https://b.example.com:8443",
            "https://[::1]:8443",
            "http://localhost:8080",
            "https://API.example.COM:443",
            "http://plain.example.com:80",
            "https://[0:0:0:0:0:0:0:1]",
            "https://api.example.com.:443",
            "HTTP://127.0.0.1:80",
            "https://B.example.com:08443",
            "https://Xn--Bcher-kva.example",
        ];
        let (layer, full) = by_origin_and_full_matches(&origins);
        let written: Vec<_> = origins.iter().map(|o| WrittenOrigin::of(o)).collect();
        let schemes = ["https", "http", "HTTPS", "Http", "ftp", "wss"];
        let userinfo = [
            "",
            "user@",
            "user:pw@",
            "api.example.com@",
            "api.example.com:443@",
            "https:@",
            "%61pi.example.com@",
        ];
        let hosts = [
            "api.example.com",
            "API.EXAMPLE.COM",
            "api.example.com.",
            "API.example.com.",
            "api.example.com.evil.example",
            "xapi.example.com",
            "evil.example",
            "api%2eexample.com",
            "b.example.com",
            "B.EXAMPLE.COM",
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
            "[::1%25eth0]",
            "[::ffff:127.0.0.1]",
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1",
            "plain.example.com",
            "xn--bcher-kva.example",
        ];
        let ports = [
            "", ":", ":443", ":0443", ":80", ":080", ":8443", ":08443", ":8080", ":abc", ":99999",
            ":65979", ":65536", ":1", ":+443",
        ];
        let tails = ["/x", "?https://api.example.com/"];
        let (mut as_written, mut by_full, mut parsed) = (0, 0, 0);
        for scheme in schemes {
            for user in userinfo {
                for host in hosts {
                    for port in ports {
                        let authority = format!("{user}{host}{port}");
                        for tail in tails {
                            // Parsed (the scheme normalized when it is
                            // http or https in any case), and built (the
                            // scheme kept as written).
                            let uris = [
                                format!("{scheme}://{authority}{tail}").parse::<Uri>().ok(),
                                Uri::builder()
                                    .scheme(scheme)
                                    .authority(authority.as_str())
                                    .path_and_query(tail)
                                    .build()
                                    .ok(),
                            ];
                            for uri in uris.into_iter().flatten() {
                                parsed += 1;
                                let key = (layer.shared.key)(&uri, &HeaderMap::new());
                                let first = full.iter().position(|o| o.allows(&uri));
                                assert_eq!(key, first, "{uri}");
                                for (w, f) in written.iter().zip(&full) {
                                    assert!(!w.matches(&uri) || f.allows(&uri), "{uri}");
                                }
                                match written.iter().position(|w| w.matches(&uri)) {
                                    Some(_) => as_written += 1,
                                    None if first.is_some() => by_full += 1,
                                    None => {}
                                }
                            }
                        }
                    }
                }
            }
        }
        println!(
            "{parsed} URIs: {as_written} matched as written, {by_full} by the full match alone"
        );
        // Both ways are taken, over many URIs.
        assert!(parsed > 10_000, "{parsed}");
        assert!(as_written > 50 && by_full > 50, "{as_written} {by_full}");
    }
}
