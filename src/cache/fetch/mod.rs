//! One token fetch ([`Fetcher`]): which grant to send (the refresh token
//! when there is one, falling back to the configured grant on
//! `invalid_grant`). Where a new token is recorded before it is used (the
//! [`TokenStore`](crate::store::TokenStore), the `on_refresh_token`
//! callback) is [`Recorder`]'s concern, in `record`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use super::stats::Counters;
use crate::endpoint::TokenEndpoint;
use crate::error::{Error, ErrorCode};
use crate::proof::ProofKey;
use crate::request::TokenRequest;
use crate::secret::SecretString;
use crate::store::ConfigFingerprint;
use crate::token::Token;
use crate::transport::HttpTransport;

mod identity;
mod record;
mod shared;

pub(super) use identity::{Bound, Identity, TierBindings};
pub(super) use record::Recorder;
pub(super) use shared::{FleetStep, TierBinding, TokenCheck};

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub(super) type RefreshTokenCallback = Arc<dyn Fn(&SecretString) + Send + Sync>;

/// Something that can run a token request: [`TokenEndpoint`] over any
/// [`HttpTransport`], its type erased.
pub(super) trait Fetch: Send + Sync + 'static {
    /// `request`, proving `key` (the key the fetch chose: the token is
    /// bound to it) when the endpoint proves one.
    fn fetch(
        &self,
        request: TokenRequest,
        key: Option<ProofKey>,
    ) -> BoxFuture<Result<Token, Error>>;

    /// Whether a revocation endpoint is set ([`TokenEndpoint::revocation_url`]).
    fn can_revoke(&self) -> bool;

    /// [`TokenEndpoint::revoke`].
    fn revoke(
        &self,
        token: SecretString,
        hint: crate::revocation::TokenTypeHint,
    ) -> BoxFuture<Result<(), Error>>;
}

/// The endpoint behind a mutex, so the HTTP service need not be `Sync`
/// (`BoxCloneService` is not): it is only cloned, once per fetch.
struct SharedEndpoint<T>(Mutex<TokenEndpoint<T>>);

impl<T: HttpTransport> Fetch for SharedEndpoint<T> {
    fn fetch(
        &self,
        request: TokenRequest,
        key: Option<ProofKey>,
    ) -> BoxFuture<Result<Token, Error>> {
        let endpoint = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Box::pin(endpoint.request_proving(&request, key))
    }

    fn can_revoke(&self) -> bool {
        let endpoint = self.0.lock().unwrap_or_else(|p| p.into_inner());
        endpoint.revocation_endpoint().is_some()
    }

    fn revoke(
        &self,
        token: SecretString,
        hint: crate::revocation::TokenTypeHint,
    ) -> BoxFuture<Result<(), Error>> {
        let endpoint = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Box::pin(endpoint.revoke(&token, Some(hint)))
    }
}

/// `endpoint`, type-erased for a cache.
pub(super) fn boxed<T: HttpTransport>(endpoint: TokenEndpoint<T>) -> Box<dyn Fetch> {
    Box::new(SharedEndpoint(Mutex::new(endpoint)))
}

/// For [`TokenCache::revoke`](super::TokenCache::revoke): the endpoint, and
/// the refresh token to revoke and then forget.
impl Fetcher {
    pub(super) fn endpoint(&self) -> &dyn Fetch {
        &*self.endpoint
    }

    /// A resource server refused `token` (stored under `fingerprint`): the
    /// store must not restore it (`Recorder::refused`).
    pub(super) fn refused(&self, token: &Token, fingerprint: ConfigFingerprint) {
        self.recorder.refused(token, fingerprint);
    }

    /// [`refused`](Self::refused), waited for (`TokenCache::revoke`).
    pub(super) async fn refused_now(&self, token: &Token, fingerprint: ConfigFingerprint) {
        self.recorder.refused_now(token, fingerprint).await;
    }

    /// A resource server refused `token`: it leaves the shared tier now
    /// (unless the fleet's 401 step runs for it), so that no cache built
    /// later (a keyed layer's evicted key coming back, a new process) takes
    /// it up before this cache's next fetch would have removed it.
    pub(super) async fn tier_refused(&self, token: &Token, fingerprint: ConfigFingerprint) {
        if let Some(tier) = self.tier(fingerprint) {
            tier.refused(token).await;
        }
    }

    /// The configured grant; `None` for a cache built from a refresh token.
    pub(super) fn primary(&self) -> Option<&TokenRequest> {
        self.primary.as_ref()
    }

    /// The refresh token the next fetch would send.
    pub(super) fn refresh_token(&self) -> Option<SecretString> {
        self.refresh().current.clone()
    }

    /// Forgets `revoked`, if it is still the refresh token the next fetch
    /// would send: a cache built from a refresh token then needs the user
    /// to authorize again; another falls back to its configured grant.
    pub(super) fn forget_refresh_token(&self, revoked: &SecretString) {
        let mut refresh = self.refresh();
        if refresh.current.as_ref() == Some(revoked) {
            refresh.current = None;
        }
    }
}

/// The refresh token the next fetch sends, if any.
struct RefreshToken {
    current: Option<SecretString>,
    /// The token endpoint's refusal of the last refresh token, kept when
    /// there is no other grant: every later fetch fails with it.
    refused: Option<Error>,
}

/// A new token, and what came with it.
pub(super) struct Fetched {
    pub(super) token: Token,
    /// The fleet's backoff step of refetches-on-401 for it, if the shared
    /// tier holds a record of one: for the cache's own record.
    pub(super) fleet_step: Option<FleetStep>,
    /// The key it is bound to, and the fingerprint it was fetched under.
    pub(super) bound: Bound,
}

/// Where tokens come from, and where each new one is recorded.
pub(super) struct Fetcher {
    endpoint: Box<dyn Fetch>,
    /// The configured grant; `None` for a cache built from a refresh token.
    primary: Option<TokenRequest>,
    refresh: Mutex<RefreshToken>,
    recorder: Recorder,
    /// The fleet's shared tier, bound to this cache (under each
    /// fingerprint its tokens are fetched under).
    /// Boxed: most caches have none, and a keyed layer keeps a cache per
    /// key.
    tier: Option<Box<TierBindings>>,
    /// What names the tokens: the fingerprint of each fetch's key.
    identity: Identity,
}

impl Fetcher {
    pub(super) fn new(
        endpoint: Box<dyn Fetch>,
        primary: Option<TokenRequest>,
        refresh_token: Option<SecretString>,
        recorder: Recorder,
        identity: Identity,
    ) -> Self {
        Fetcher {
            endpoint,
            primary,
            refresh: Mutex::new(RefreshToken {
                current: refresh_token,
                refused: None,
            }),
            recorder,
            tier: None,
            identity,
        }
    }

    /// What names the tokens.
    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Gets tokens through the fleet's shared tier first (`shared`).
    pub(super) fn with_tier(mut self, tier: TierBindings) -> Self {
        self.tier = Some(Box::new(tier));
        self
    }

    /// Gets a new token, and records it (store, callback) before it is
    /// used. The refresh token is recorded even if the access token beside
    /// it turns out to be unusable: with rotation, the one sent is spent.
    ///
    /// With the fleet's shared tier, the token may come from it instead
    /// (`dropped`: the cache no longer holds the token being replaced, a
    /// 401 refused it), and is recorded the same way; with it comes what
    /// the fleet's record of 401s says (`Fetched::fleet_step`).
    ///
    /// The key the token request proves is chosen once, here: the tier
    /// and the store see the fingerprint of that key, and the token is
    /// bound to it (`identity`).
    pub(super) async fn fetch(&self, counters: &Counters, dropped: bool) -> Result<Fetched, Error> {
        let bound = self.identity.for_token_request();
        let key = &bound.key;
        let (token, fleet_step) = match self.tier(bound.fingerprint) {
            Some(tier) => {
                use tracing::Instrument;
                // `source`: whether this process's own token request ran
                // (as the lease holder, or alone), else the token came
                // from the shared tier (the `cache` module docs list the
                // spans).
                let span = tracing::debug_span!(
                    "oauth2.fleet_fetch",
                    token_cached = !dropped,
                    source = tracing::field::Empty,
                );
                let requested = std::sync::atomic::AtomicBool::new(false);
                let own = async {
                    requested.store(true, std::sync::atomic::Ordering::Relaxed);
                    self.request_token(counters, key).await
                };
                let fetched = tier.fetch(dropped, own).instrument(span.clone()).await;
                let source = match requested.load(std::sync::atomic::Ordering::Relaxed) {
                    true => "token_endpoint",
                    false => "tier",
                };
                span.record("source", source);
                fetched?
            }
            None => (self.request_token(counters, key).await?, None),
        };
        let rotated = self.note_refresh_token(&token);
        (self.recorder)
            .record(&token, rotated, bound.fingerprint, counters)
            .await;
        Ok(Fetched {
            token,
            fleet_step,
            bound,
        })
    }

    /// The fleet's shared tier under `fingerprint`, when the cache has one.
    pub(super) fn tier(&self, fingerprint: ConfigFingerprint) -> Option<Arc<TierBinding>> {
        Some(self.tier.as_ref()?.for_key(fingerprint))
    }

    /// Whether the cache has a shared tier.
    pub(super) fn has_tier(&self) -> bool {
        self.tier.is_some()
    }

    fn refresh(&self) -> MutexGuard<'_, RefreshToken> {
        self.refresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the refresh token if there is one, else the configured grant.
    async fn request_token(
        &self,
        counters: &Counters,
        key: &Option<ProofKey>,
    ) -> Result<Token, Error> {
        let refresh_token = self.refresh().current.clone();
        if let Some(refresh_token) = refresh_token {
            let mut request = TokenRequest::refresh_token(refresh_token);
            // RFC 8707 §2.2: the same resources as the grant it refreshes,
            // so the new token is for the same API (a refresh token issued
            // for several could get one for any). No scope: RFC 6749 §6
            // then grants the scope granted before, which may be narrower
            // than the one asked for.
            for resource in self.primary.iter().flat_map(|p| p.plain_params("resource")) {
                request = request.resource(resource.to_owned());
            }
            match counters
                .token_request(self.endpoint.fetch(request, key.clone()))
                .await
            {
                Err(e) if e.oauth_error().map(|r| r.error()) == Some(&ErrorCode::InvalidGrant) => {
                    self.refresh_token_refused(e)?
                }
                answer => return answer,
            }
        }
        let Some(primary) = &self.primary else {
            let refusal = self.refresh().refused.clone();
            return Err(Error::reauthorization_required(refusal));
        };
        counters
            .token_request(self.endpoint.fetch(primary.clone(), key.clone()))
            .await
    }

    /// Drops a refused refresh token (`invalid_grant`: revoked, expired or
    /// spent), so the configured grant is sent instead. With none, the user
    /// must authorize again: `refusal` answers this fetch and every later one.
    fn refresh_token_refused(&self, refusal: Error) -> Result<(), Error> {
        let mut refresh = self.refresh();
        refresh.current = None;
        if self.primary.is_some() {
            tracing::debug!("refresh token refused; falling back to the original grant");
            return Ok(());
        }
        refresh.refused = Some(refusal.clone());
        Err(Error::reauthorization_required(Some(refusal)))
    }

    /// Makes the token's refresh token the one the next fetch sends; returns
    /// it if it is new (the server rotated it).
    fn note_refresh_token(&self, token: &Token) -> Option<SecretString> {
        let new = token.refresh_token()?;
        let mut refresh = self.refresh();
        if refresh.current.as_ref() == Some(new) {
            return None;
        }
        refresh.current = Some(new.clone());
        Some(new.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;

    use crate::cache::{Backoff, TokenCache};
    use crate::error::{ErrorCode, ErrorKind};
    use crate::{ClientAuth, TokenEndpoint, TokenUrl};

    #[tokio::test(start_paused = true)]
    async fn a_refused_refresh_token_with_no_other_grant_asks_the_user_to_authorize_again() {
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let http = tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .status(400)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(
                            br#"{"error":"invalid_grant","error_description":"revoked"}"#,
                        )))
                        .unwrap(),
                )
            }
        });
        let endpoint = TokenEndpoint::new(
            http,
            TokenUrl::new("https://as.example.com/token").unwrap(),
            ClientAuth::client_secret_basic("svc", "secret"),
        );
        let backoff = Duration::from_millis(200);
        let cache = TokenCache::from_refresh_token(endpoint, "rt-seed")
            .backoff(Backoff::new(backoff, backoff))
            .build();

        let e = cache.bearer_header().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReauthorizationRequired);
        assert!(e.is_reauthorization_required() && !e.is_retryable());
        assert_eq!(
            e.oauth_error().map(|r| r.error()),
            Some(&ErrorCode::InvalidGrant)
        );
        assert_eq!(
            e.to_string(),
            "the refresh token was refused and there is no other grant: the user must \
             authorize again (token endpoint answered 400 Bad Request: invalid_grant: revoked)"
        );
        // Within the backoff: the same cause, at once.
        let e = cache.bearer_header().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoToken);
        assert!(e.is_reauthorization_required());
        // After it: still the refusal, and no refresh token is sent again.
        tokio::time::advance(backoff + Duration::from_millis(50)).await;
        let e = cache.bearer_header().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReauthorizationRequired);
        assert_eq!(
            e.oauth_error().and_then(|r| r.error_description()),
            Some("revoked")
        );
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!(
            (stats.token_fetches, stats.fetch_failures, stats.fail_fast),
            (1, 2, 1),
            "{stats:?}"
        );
    }
}
