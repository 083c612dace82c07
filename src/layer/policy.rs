use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, StatusCode, Uri};

use super::destinations::Destinations;
use crate::cache::{Backoff, Lookup, RefusalDecision, Resource, TokenCache};
use crate::challenge::{is_refusal, listed_refusal_kind, refusal_kind, BearerError, RefusalKind};
use crate::proof::ProofKeys;

/// Which requests get a token, and what a response refusing it leads to.
///
/// One value holds the settings every transport of this crate shares (the
/// token cache, which [`Destinations`] get the token, whether an
/// `Authorization` header the caller set is kept, whether a refused token
/// leads to a resend) and makes their decisions: [`crate::OAuth2Layer`] and
/// the reqwest middleware (feature `reqwest`) are built from it and ask it
/// the same questions, so they behave the same. Build one and give it to
/// both to configure them once:
///
/// ```
/// # fn f(cache: tower_oauth2::TokenCache) -> Result<(), tower_oauth2::Error> {
/// use tower_oauth2::layer::{AuthPolicy, Destinations};
/// use tower_oauth2::OAuth2Layer;
///
/// let policy = AuthPolicy::new(cache)
///     .destinations(Destinations::origins(["https://api.example.com"])?)
///     .keep_existing_authorization(true);
/// let layer = OAuth2Layer::from_policy(policy.clone());
/// #[cfg(feature = "reqwest")]
/// let middleware = tower_oauth2::reqwest::OAuth2Middleware::from_policy(policy.clone());
/// assert!(layer.policy().keeps_existing_authorization());
/// # Ok(())
/// # }
/// ```
///
/// It is cheap to clone: the settings sit behind one `Arc`. A request that
/// gets a token costs one reference-count increment (the response future
/// holds a clone), as a clone of the [`TokenCache`] alone would; one that
/// passes through costs none.
#[derive(Clone, Debug)]
pub struct AuthPolicy {
    settings: Arc<Settings>,
}

#[derive(Clone, Debug)]
struct Settings {
    cache: TokenCache,
    keep_existing: bool,
    retry_unauthorized: bool,
    unauthorized_backoff: Backoff,
    /// Statuses besides 401 that refuse the token (`refused_with`).
    refused_with: Arc<[StatusCode]>,
    destinations: Destinations,
    /// The keys the cache's tokens are bound to, if any: each request then
    /// goes with a proof of possession (DPoP), `layer/authorize.rs`.
    proof_key: Option<ProofKeys>,
}

/// What a transport does with the response to a request that carried a
/// token, as [`AuthPolicy::after_response`] decides.
///
/// The enum is where a new rule about refused tokens goes (a DPoP nonce to
/// resend with, `layer/authorize.rs`), so that every transport follows it.
pub(crate) enum AfterResponse {
    /// Not a refusal a new token may fix (an answer for the token, a 401
    /// asking for more scope or for other credentials): the response is the
    /// answer.
    Return,
    /// The token was refused, but so were tokens fetched after a 401
    /// lately: nothing is invalidated or fetched until the backoff has
    /// passed, and the refusal is the answer.
    BackingOff,
    /// The token was refused and is now invalidated, but the request is not
    /// sent again (the retry is off, or no copy of it was kept): the refusal
    /// is the answer.
    ReturnRefusal,
    /// The token was refused and is now invalidated: send the copy once more,
    /// with the newer token already cached (`Lookup::Ready`) or with the one
    /// `TokenCache::wait_for_token` gives (`Lookup::Wait`).
    Resend(Lookup),
    /// A DPoP resource server asked for a nonce and gave a new one: send
    /// the copy once more with the token of the lookup and a proof with
    /// that nonce. Not a refusal of the token: nothing is invalidated or
    /// counted as a retry.
    ResendWithNonce(Lookup),
}

/// A resource server's answer to a request that carried a token, as
/// [`AuthPolicy::after_response`] judges it.
#[derive(Clone, Copy)]
pub(crate) struct ResourceAnswer<'a> {
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    /// The cache generation of the token the request carried.
    pub(crate) sent: u64,
    /// Whether the transport kept a copy of the request to send again.
    pub(crate) resendable: bool,
}

impl<'a> ResourceAnswer<'a> {
    /// The answer to a resend with token generation `sent`: a resend is
    /// never sent again.
    pub(crate) fn to_resend(status: StatusCode, headers: &'a HeaderMap, sent: u64) -> Self {
        let resendable = false;
        ResourceAnswer {
            status,
            headers,
            sent,
            resendable,
        }
    }
}

/// Where a request that carried a token went, kept by a transport until
/// its answer when it keeps no copy of the request (the copy has the URI):
/// the answer is then recorded for that resource server alone
/// (ARCHITECTURE.md, invariant 6). Taking it parses nothing (a reference
/// count on the URI's authority); the origin is only worked out when the
/// record of 401s needs it.
#[derive(Clone, Debug)]
pub(crate) struct SentTo {
    scheme: Option<Scheme>,
    authority: Option<Authority>,
}

impl SentTo {
    /// Where a request to `uri` goes.
    #[inline]
    pub(crate) fn of(uri: &Uri) -> SentTo {
        SentTo {
            scheme: uri.scheme().cloned(),
            authority: uri.authority().cloned(),
        }
    }

    /// The resource server, as the record of 401s keys it.
    pub(crate) fn resource(&self) -> Resource {
        Resource::at(self.scheme.as_ref(), self.authority.as_ref())
    }
}

impl AuthPolicy {
    /// Tokens from `cache`, replacing an `Authorization` header the caller
    /// set, with one resend after a refusal, sent to:
    ///
    /// - the origins of the API the cache's token request names, when it
    ///   names one: its RFC 8707 `resource`s, or an `audience` that is an
    ///   absolute URL (`https://api.example.com/v1` → requests to
    ///   `https://api.example.com` only; the first request elsewhere, which
    ///   goes without a token, is logged at `WARN`);
    /// - else [`Destinations::secure`]: `https` anywhere, `http` to
    ///   loopback; the first time the token goes to a second origin is
    ///   logged at `WARN`, naming both.
    ///
    /// A token for one API lets any other it reaches replay it: prefer
    /// [`AuthPolicy::for_origin`], or set [`AuthPolicy::destinations`].
    pub fn new(cache: TokenCache) -> Self {
        let destinations = Destinations::named_by(cache.token_request());
        AuthPolicy {
            settings: Arc::new(Settings {
                proof_key: cache.proof_key().cloned(),
                cache,
                keep_existing: false,
                retry_unauthorized: true,
                unauthorized_backoff: Backoff::new(
                    Duration::from_secs(1),
                    Duration::from_secs(300),
                ),
                refused_with: Arc::new([]),
                destinations,
            }),
        }
    }

    /// Tokens from `cache` for requests to `origin` only
    /// (`scheme://host[:port]`: the API the token is for), as
    /// [`AuthPolicy::new`] with [`Destinations::origins`]`([origin])`.
    /// Naming an `http` origin is the explicit opt-in to clear text for it.
    ///
    /// An `origin` that is not one (a path, credentials, another scheme)
    /// is an [`ErrorKind::InvalidDestination`](crate::ErrorKind::InvalidDestination)
    /// error.
    pub fn for_origin(cache: TokenCache, origin: impl AsRef<str>) -> Result<Self, crate::Error> {
        let only = Destinations::origins([origin])?;
        Ok(AuthPolicy::new(cache).destinations(only))
    }

    /// Which requests get the token (default: see [`AuthPolicy::new`]);
    /// others pass through untouched.
    pub fn destinations(mut self, destinations: Destinations) -> Self {
        Arc::make_mut(&mut self.settings).destinations = destinations;
        self
    }

    /// When `true`, a request that already has an `Authorization` header is
    /// sent as it is (no token added, no resend). Default `false`: the
    /// header is replaced.
    pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
        Arc::make_mut(&mut self.settings).keep_existing = keep;
        self
    }

    /// Whether to get a new token and resend the request once when the
    /// resource server refuses the token (default `true`). With `false` no
    /// copy of a request is kept for a resend, and a refusal still
    /// invalidates the token, so the next request gets a new one. (With
    /// DPoP a copy is kept all the same for a `use_dpop_nonce`'s resend,
    /// which is not this retry: see the `dpop` module.)
    pub fn retry_unauthorized(mut self, retry: bool) -> Self {
        Arc::make_mut(&mut self.settings).retry_unauthorized = retry;
        self
    }

    /// How long refetches on 401 back off once a token fetched because of
    /// a 401 is refused too (default: 1 s, doubling per step up to 5 min,
    /// each multiplied by a random factor in `[0.5, 1)`). Meanwhile the
    /// 401s are returned as they came, nothing invalidated, nothing
    /// fetched; after a step the next 401 gets one new token, and if that
    /// one is refused too, the next step starts. The backoff is kept per
    /// resource server (origin): any answer other than 401 from that
    /// resource for the current token ends it, and another resource that
    /// takes the token ends nothing. So a resource that refuses every
    /// token costs about `log2(seconds) + 2` token requests in its first
    /// minutes, then one per step, whatever the others answer. With the fleet's Redis tier
    /// (feature `redis`, the `fleet` module) the steps are shared, and a
    /// fleet costs that too, not that times its size.
    pub fn unauthorized_backoff(mut self, backoff: Backoff) -> Self {
        Arc::make_mut(&mut self.settings).unauthorized_backoff = backoff;
        self
    }

    /// Statuses besides 401 with which resource servers refuse a revoked
    /// or expired token (default: none). Some answer `403` with no
    /// challenge (django-oauth-toolkit's protected views, some API
    /// gateways), so the token they refuse would be sent until its
    /// scheduled refresh, hours for a long-lived one. An answer with one of
    /// these statuses counts as a 401 does (the token invalidated, one
    /// resend, bounded by the same [`unauthorized_backoff`](Self::unauthorized_backoff))
    /// when it has no challenge at all, or a `Bearer` (or `DPoP`) challenge
    /// whose `error` is `invalid_token`. Never when its challenge says
    /// anything else: a `403` with `error="insufficient_scope"` (RFC 6750
    /// §3.1) is the answer, as are challenges of other schemes.
    /// 401 always counts; statuses outside 400–599 are ignored.
    ///
    /// ```
    /// # fn f(cache: tower_oauth2::TokenCache) -> Result<(), tower_oauth2::Error> {
    /// use http::StatusCode;
    /// use tower_oauth2::OAuth2Layer;
    ///
    /// let layer = OAuth2Layer::for_origin(cache, "https://api.example.com")?
    ///     .refused_with([StatusCode::FORBIDDEN]);
    /// assert_eq!(layer.policy().refusal_statuses(), [StatusCode::FORBIDDEN]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn refused_with(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let mut listed: Vec<StatusCode> = statuses
            .into_iter()
            .filter(|s| {
                (s.is_client_error() || s.is_server_error()) && *s != StatusCode::UNAUTHORIZED
            })
            .collect();
        listed.sort_unstable();
        listed.dedup();
        Arc::make_mut(&mut self.settings).refused_with = listed.into();
        self
    }

    /// The statuses besides 401 that refuse the token
    /// ([`refused_with`](Self::refused_with)).
    pub fn refusal_statuses(&self) -> &[StatusCode] {
        &self.settings.refused_with
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache {
        &self.settings.cache
    }

    /// The same settings behind an `Arc` of their own, for one service
    /// handle that sends many requests: each of its response futures
    /// holds a clone, so the reference count is written per request, and
    /// a count shared by every thread's handles is a cache line they fight
    /// over. (The cache, the destinations' shared parts and the 401 record
    /// stay shared: they are `Arc`s inside.)
    pub(crate) fn for_one_handle(&self) -> AuthPolicy {
        AuthPolicy {
            settings: Arc::new(Settings::clone(&self.settings)),
        }
    }

    /// Whether an `Authorization` header the caller set is kept.
    pub fn keeps_existing_authorization(&self) -> bool {
        self.settings.keep_existing
    }

    /// Which requests get the token.
    pub(crate) fn destination_rule(&self) -> &Destinations {
        &self.settings.destinations
    }

    /// Whether a refused token leads to one resend. A transport keeps a copy
    /// of a request (its body above all) for a resend only when this is true.
    pub fn retries_unauthorized(&self) -> bool {
        self.settings.retry_unauthorized
    }

    /// The key each request proves possession of (DPoP), if the tokens
    /// are bound to one (`layer/authorize.rs`).
    #[inline]
    pub(crate) fn proof_key(&self) -> Option<&ProofKeys> {
        self.settings.proof_key.as_ref()
    }

    /// Whether a request to `uri` with `headers` gets a token. One that does
    /// not passes through untouched: no token, no resend.
    #[inline]
    pub(crate) fn applies_to(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let settings = &*self.settings;
        settings.destinations.allows(uri)
            && !(settings.keep_existing && headers.contains_key(AUTHORIZATION))
    }

    /// What to do with `answer`, the response to a request that carried a
    /// token; `from` names the resource server that answered (only called
    /// on a 401, or when a record of 401s exists).
    ///
    /// Any answer but a 401 (or gRPC's UNAUTHENTICATED) ends that resource
    /// server's backoff for the current token. A 401 whose challenges name other schemes only
    /// (`Basic …`), or whose RFC 6750 challenge says `insufficient_scope` or
    /// `invalid_request`, is not ours to fix with a new token. Any other
    /// refuses the token: it is invalidated here, only that generation (a
    /// newer one already cached is kept, and the resend uses it without a
    /// fetch); unless tokens fetched after a 401 are refused too, and the
    /// refusal passes through ([`AuthPolicy::unauthorized_backoff`]).
    #[inline(always)]
    pub(crate) fn after_response(
        &self,
        answer: ResourceAnswer<'_>,
        from: impl FnOnce() -> Resource,
    ) -> AfterResponse {
        // Inlined up to here: an answer that refuses nothing costs what the
        // check costs, as in a transport that made it itself, and one
        // relaxed load.
        let ResourceAnswer {
            status,
            headers,
            sent,
            resendable,
        } = answer;
        let refusal = if is_refusal(status, headers) {
            refusal_kind(status, headers)
        } else if status.as_u16() >= 400 && self.settings.refused_with.contains(&status) {
            listed_refusal_kind(headers)
        } else {
            self.settings.cache.answered(sent, from);
            return AfterResponse::Return;
        };
        self.after_refusal(refusal, status, sent, resendable, &from())
    }

    /// What the response to a resend ([`ResourceAnswer::to_resend`]) says
    /// about its token; the response is returned whatever it is.
    pub(crate) fn after_resend(&self, answer: ResourceAnswer<'_>, from: impl FnOnce() -> Resource) {
        let _ = self.after_response(answer, from);
    }

    #[cold]
    fn after_refusal(
        &self,
        refusal: RefusalKind,
        status: StatusCode,
        sent: u64,
        resendable: bool,
        from: &Resource,
    ) -> AfterResponse {
        let cache = &self.settings.cache;
        let error = match refusal {
            RefusalKind::Token(error) => error,
            RefusalKind::NotFixable => return AfterResponse::Return,
            RefusalKind::OtherScheme => {
                cache.count_other_scheme();
                tracing::debug!("401 with challenges of other schemes only; returned as is");
                return AfterResponse::Return;
            }
        };
        match cache.refused(sent, from, &self.settings.unauthorized_backoff) {
            RefusalDecision::Refetch | RefusalDecision::Replaced => {}
            RefusalDecision::BackedOff(step) => {
                if let Some(step) = step {
                    warn_backing_off(error.as_ref(), status, step.number, step.delay);
                }
                return AfterResponse::BackingOff;
            }
        }
        if !self.settings.retry_unauthorized || !resendable {
            tracing::debug!("401 returned as is: its request is not sent again");
            return AfterResponse::ReturnRefusal;
        }
        match cache.lookup() {
            Lookup::Ready(header, generation) if generation != sent => {
                AfterResponse::Resend(Lookup::Ready(header, generation))
            }
            _ => AfterResponse::Resend(Lookup::Wait),
        }
    }

    /// Counts a resend after a refusal in [`crate::cache::Stats::retries`]
    /// (its new token goes on with [`AuthPolicy::authorize`]).
    pub(crate) fn count_resend(&self) {
        self.settings.cache.count_retry();
        tracing::debug!("resending the request once with a new token after a 401");
    }
}

/// The one log line of a backoff step, with the refusal's RFC 6750 `error`
/// (sanitized), never a token.
fn warn_backing_off(error: Option<&BearerError>, status: StatusCode, step: u32, delay: Duration) {
    tracing::warn!(
        error = error.map_or("(none)", BearerError::as_str),
        step,
        backoff = ?delay,
        status = status.as_u16(),
        "the resource server refused a token fetched because of a 401: new tokens do not help; \
         its 401s are returned as they come, with no new token, until the backoff has passed"
    );
}

// By hand: `Lookup` holds the token, which is not shown.
impl fmt::Debug for AfterResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AfterResponse::Return => f.write_str("Return"),
            AfterResponse::BackingOff => f.write_str("BackingOff"),
            AfterResponse::ReturnRefusal => f.write_str("ReturnRefusal"),
            AfterResponse::Resend(Lookup::Ready(_, generation)) => {
                write!(f, "Resend(cached generation {generation})")
            }
            AfterResponse::Resend(Lookup::Wait) => f.write_str("Resend(after a fetch)"),
            AfterResponse::ResendWithNonce(_) => f.write_str("ResendWithNonce"),
        }
    }
}

/// The options of a transport that holds an [`AuthPolicy`] in a field
/// `policy`, each delegating to the policy: every transport has the same
/// options, with the same names and meaning.
macro_rules! delegate_policy_options {
    () => {
        /// Which requests get the token: see
        /// [`AuthPolicy::destinations`](crate::layer::AuthPolicy::destinations).
        pub fn destinations(mut self, destinations: $crate::layer::Destinations) -> Self {
            self.policy = self.policy.destinations(destinations);
            self
        }

        /// Whether an `Authorization` header the caller set is kept: see
        /// [`AuthPolicy::keep_existing_authorization`](crate::layer::AuthPolicy::keep_existing_authorization).
        pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
            self.policy = self.policy.keep_existing_authorization(keep);
            self
        }

        /// Whether a refused token leads to one resend: see
        /// [`AuthPolicy::retry_unauthorized`](crate::layer::AuthPolicy::retry_unauthorized).
        pub fn retry_unauthorized(mut self, retry: bool) -> Self {
            self.policy = self.policy.retry_unauthorized(retry);
            self
        }

        /// How long refetches on 401 back off once new tokens are refused
        /// too: see
        /// [`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff).
        pub fn unauthorized_backoff(mut self, backoff: $crate::cache::Backoff) -> Self {
            self.policy = self.policy.unauthorized_backoff(backoff);
            self
        }

        /// Statuses besides 401 that refuse the token (a `403` with no
        /// challenge): see
        /// [`AuthPolicy::refused_with`](crate::layer::AuthPolicy::refused_with).
        pub fn refused_with(
            mut self,
            statuses: impl IntoIterator<Item = ::http::StatusCode>,
        ) -> Self {
            self.policy = self.policy.refused_with(statuses);
            self
        }

        /// The token cache.
        pub fn cache(&self) -> &$crate::TokenCache {
            self.policy.cache()
        }

        /// The settings and decisions this uses.
        pub fn policy(&self) -> &$crate::layer::AuthPolicy {
            &self.policy
        }
    };
}

pub(crate) use delegate_policy_options;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::testing::cache;
    use http::{HeaderValue, Request};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    /// The generation of the token the cache holds, fetched if need be.
    async fn generation_of(policy: &AuthPolicy) -> u64 {
        let (_, generation) = policy
            .cache()
            .bearer_header_with_generation()
            .await
            .unwrap();
        generation
    }

    /// The resource server the answers come from.
    /// `status` and `headers` answering a request sent with token
    /// generation `sent`, of which a copy was kept.
    fn answer(status: StatusCode, headers: &HeaderMap, sent: u64) -> ResourceAnswer<'_> {
        let resendable = true;
        ResourceAnswer {
            status,
            headers,
            sent,
            resendable,
        }
    }

    fn api() -> Resource {
        Resource::of(&Uri::from_static("https://api.example.com/"))
    }

    fn is_resend_after_fetch(after: &AfterResponse) -> bool {
        matches!(after, AfterResponse::Resend(Lookup::Wait))
    }

    #[test]
    fn applies_to_allowed_destinations_unless_a_kept_header_is_set() {
        let policy = AuthPolicy::new(cache());
        let https: Uri = "https://api.example.com/x".parse().unwrap();
        let clear: Uri = "http://api.example.com/x".parse().unwrap();
        let own = headers(&[("authorization", "Basic abc")]);
        assert!(policy.applies_to(&https, &HeaderMap::new()));
        assert!(!policy.applies_to(&clear, &HeaderMap::new()));
        assert!(policy.applies_to(&https, &own));
        let keep = policy.clone().keep_existing_authorization(true);
        assert!(!keep.applies_to(&https, &own));
        assert!(keep.applies_to(&https, &HeaderMap::new()));
        let any = keep.destinations(Destinations::any());
        assert!(any.applies_to(&clear, &HeaderMap::new()));
        assert!(any.keeps_existing_authorization());
        // The clone taken before the changes kept its own settings.
        assert!(!policy.keeps_existing_authorization());
        assert!(policy.retries_unauthorized());
    }

    #[tokio::test]
    async fn only_a_refusal_a_new_token_may_fix_invalidates_it() {
        let policy = AuthPolicy::new(cache());
        let sent = generation_of(&policy).await;
        let answers = [
            (StatusCode::OK, headers(&[])),
            (StatusCode::FORBIDDEN, headers(&[])),
            (
                StatusCode::UNAUTHORIZED,
                headers(&[("www-authenticate", r#"Bearer error="insufficient_scope""#)]),
            ),
            (StatusCode::OK, headers(&[("grpc-status", "7")])),
        ];
        for (status, headers) in answers {
            let after = policy.after_response(answer(status, &headers, sent), api);
            assert!(matches!(after, AfterResponse::Return), "{status} {after:?}");
        }
        assert_eq!(policy.cache().stats().invalidations, 0);

        let unauthenticated = headers(&[("grpc-status", "16")]);
        let after = policy.after_response(answer(StatusCode::OK, &unauthenticated, sent), api);
        assert!(is_resend_after_fetch(&after), "{after:?}");
        assert_eq!(policy.cache().stats().invalidations, 1);
    }

    #[tokio::test]
    async fn a_refused_token_is_resent_with_a_newer_one_without_a_fetch() {
        let policy = AuthPolicy::new(cache());
        let refused = headers(&[("www-authenticate", r#"Bearer error="invalid_token""#)]);
        let first = generation_of(&policy).await;
        let after = policy.after_response(answer(StatusCode::UNAUTHORIZED, &refused, first), api);
        assert!(is_resend_after_fetch(&after), "{after:?}");
        let second = generation_of(&policy).await;
        // A late 401 for the first token: the second is kept and used.
        let after = policy.after_response(answer(StatusCode::UNAUTHORIZED, &refused, first), api);
        let AfterResponse::Resend(Lookup::Ready(header, generation)) = after else {
            panic!("expected a resend with the cached token, got {after:?}");
        };
        assert_eq!(
            (header.to_str().unwrap(), generation),
            ("Bearer at-2", second)
        );
        let stats = policy.cache().stats();
        assert_eq!((stats.token_fetches, stats.invalidations), (2, 1));
    }

    #[tokio::test]
    async fn a_refusal_is_returned_when_the_request_cannot_be_resent() {
        for (policy, resendable) in [
            (AuthPolicy::new(cache()).retry_unauthorized(false), false),
            (AuthPolicy::new(cache()).retry_unauthorized(false), true),
            (AuthPolicy::new(cache()), false),
        ] {
            let sent = generation_of(&policy).await;
            let after = policy.after_response(
                ResourceAnswer {
                    status: StatusCode::UNAUTHORIZED,
                    headers: &HeaderMap::new(),
                    sent,
                    resendable,
                },
                api,
            );
            assert!(matches!(after, AfterResponse::ReturnRefusal), "{after:?}");
            assert_eq!(policy.cache().stats().invalidations, 1);
        }
    }

    #[tokio::test]
    async fn a_401_naming_other_schemes_only_is_passed_through_and_counted() {
        let policy = AuthPolicy::new(cache());
        let sent = generation_of(&policy).await;
        let basic = headers(&[
            ("www-authenticate", r#"Basic realm="x""#),
            ("www-authenticate", "Negotiate, Digest nonce=1"),
        ]);
        let after = policy.after_response(answer(StatusCode::UNAUTHORIZED, &basic, sent), api);
        assert!(matches!(after, AfterResponse::Return), "{after:?}");
        let stats = policy.cache().stats();
        assert_eq!(
            (stats.invalidations, stats.unauthorized_other_scheme),
            (0, 1)
        );
        // A DPoP challenge is ours, as a Bearer one is.
        let dpop = headers(&[("www-authenticate", r#"Basic realm="x", DPoP algs="ES256""#)]);
        let after = policy.after_response(answer(StatusCode::UNAUTHORIZED, &dpop, sent), api);
        assert!(is_resend_after_fetch(&after), "{after:?}");
    }

    #[tokio::test]
    async fn a_token_fetched_after_a_refusal_and_refused_too_backs_off() {
        let policy = AuthPolicy::new(cache());
        let unauthenticated = headers(&[("grpc-status", "16")]);
        let refused =
            |sent| policy.after_response(answer(StatusCode::OK, &unauthenticated, sent), api);
        let first = generation_of(&policy).await;
        assert!(is_resend_after_fetch(&refused(first)));
        let second = generation_of(&policy).await;
        // The resend's refusal starts a backoff: nothing more is invalidated.
        policy.after_resend(
            ResourceAnswer::to_resend(StatusCode::OK, &unauthenticated, second),
            api,
        );
        let after = refused(second);
        assert!(matches!(after, AfterResponse::BackingOff), "{after:?}");
        // An answer for the first token, no longer current, changes nothing.
        policy.after_response(answer(StatusCode::OK, &HeaderMap::new(), first), api);
        let after = refused(second);
        assert!(matches!(after, AfterResponse::BackingOff), "{after:?}");
        let stats = policy.cache().stats();
        assert_eq!(
            (
                stats.token_fetches,
                stats.invalidations,
                stats.unauthorized_backed_off
            ),
            (2, 1, 3)
        );
        // One for the current token ends it: its next refusal gets a new one.
        let forbidden = StatusCode::FORBIDDEN;
        policy.after_response(answer(forbidden, &HeaderMap::new(), second), api);
        assert!(is_resend_after_fetch(&refused(second)));
        assert_eq!(policy.cache().stats().invalidations, 2);
    }

    #[test]
    fn unauthorized_backoff_is_one_second_doubling_to_five_minutes_unless_set() {
        let policy = AuthPolicy::new(cache());
        let default = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(policy.settings.unauthorized_backoff, default);
        let minute = Duration::from_secs(60);
        let layer = crate::OAuth2Layer::from_policy(policy)
            .unauthorized_backoff(Backoff::new(minute, minute));
        let set = layer.policy().settings.unauthorized_backoff;
        assert_eq!(set, Backoff::new(minute, minute));
    }

    #[test]
    fn a_resend_carries_the_new_token_and_is_counted() {
        let policy = AuthPolicy::new(cache());
        let mut copy = Request::new(());
        *copy.headers_mut() = headers(&[("authorization", "Bearer at-1"), ("x-trace", "t-1")]);
        policy.count_resend();
        let proof = policy.authorize(&mut copy, HeaderValue::from_static("Bearer at-2"), 2);
        assert!(proof.unwrap().is_none());
        let copy = copy.headers();
        assert_eq!(copy["authorization"], "Bearer at-2");
        assert_eq!(copy["x-trace"], "t-1");
        assert_eq!(copy.len(), 2);
        assert_eq!(policy.cache().stats().retries, 1);
    }
}
