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
use crate::request::TokenRequest;
use crate::secret::SecretString;
use crate::token::Token;
use crate::transport::HttpTransport;

mod record;

pub(super) use record::Recorder;

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub(super) type RefreshTokenCallback = Arc<dyn Fn(&SecretString) + Send + Sync>;

/// Something that can run a token request: [`TokenEndpoint`] over any
/// [`HttpTransport`], its type erased.
pub(super) trait Fetch: Send + Sync + 'static {
    fn fetch(&self, request: TokenRequest) -> BoxFuture<Result<Token, Error>>;

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
    fn fetch(&self, request: TokenRequest) -> BoxFuture<Result<Token, Error>> {
        let endpoint = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Box::pin(endpoint.request(&request))
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

    /// A resource server refused `token`: the store must not restore it
    /// (`Recorder::refused`).
    pub(super) fn refused(&self, token: &Token) {
        self.recorder.refused(token);
    }

    /// [`refused`](Self::refused), waited for (`TokenCache::revoke`).
    pub(super) async fn refused_now(&self, token: &Token) {
        self.recorder.refused_now(token).await;
    }

    /// A resource server refused `token`: it leaves the fleet's Redis now
    /// (unless the fleet's 401 step runs for it), so that no cache built
    /// later (a keyed layer's evicted key coming back, a new process) takes
    /// it up before this cache's next fetch would have removed it.
    #[cfg(feature = "redis")]
    pub(super) async fn fleet_refused(&self, token: &Token) {
        if let Some((fleet, check)) = &self.fleet {
            fleet.refused(check, token).await;
        }
    }

    /// Whether this cache shares its tokens through the fleet's tier.
    #[cfg(feature = "redis")]
    pub(super) fn has_fleet(&self) -> bool {
        self.fleet.is_some()
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
    /// The fleet's backoff step of refetches-on-401 for it, if Redis holds
    /// a record of one (`fleet/refusals.rs`): for the cache's own record.
    #[cfg(feature = "redis")]
    pub(super) fleet_step: Option<crate::fleet::FleetStep>,
}

/// Where tokens come from, and where each new one is recorded.
pub(super) struct Fetcher {
    endpoint: Box<dyn Fetch>,
    /// The configured grant; `None` for a cache built from a refresh token.
    primary: Option<TokenRequest>,
    refresh: Mutex<RefreshToken>,
    recorder: Recorder,
    /// The fleet's shared tier, and how this cache checks its tokens.
    #[cfg(feature = "redis")]
    fleet: Option<(crate::fleet::Inner, crate::fleet::TokenCheck)>,
}

impl Fetcher {
    pub(super) fn new(
        endpoint: Box<dyn Fetch>,
        primary: Option<TokenRequest>,
        refresh_token: Option<SecretString>,
        recorder: Recorder,
    ) -> Self {
        Fetcher {
            endpoint,
            primary,
            refresh: Mutex::new(RefreshToken {
                current: refresh_token,
                refused: None,
            }),
            recorder,
            #[cfg(feature = "redis")]
            fleet: None,
        }
    }

    /// Gets tokens through the fleet's Redis tier first (`fleet` module).
    #[cfg(feature = "redis")]
    pub(super) fn with_fleet(
        mut self,
        fleet: crate::fleet::Inner,
        check: crate::fleet::TokenCheck,
    ) -> Self {
        self.fleet = Some((fleet, check));
        self
    }

    /// Gets a new token, and records it (store, callback) before it is
    /// used. The refresh token is recorded even if the access token beside
    /// it turns out to be unusable: with rotation, the one sent is spent.
    ///
    /// With the fleet's Redis tier, the token may come from Redis instead
    /// (`dropped`: the cache no longer holds the token being replaced, a
    /// 401 refused it), and is recorded the same way; with it comes what
    /// the fleet's record of 401s says (`Fetched::fleet_step`).
    pub(super) async fn fetch(&self, counters: &Counters, dropped: bool) -> Result<Fetched, Error> {
        #[cfg(feature = "redis")]
        let (token, fleet_step) = match &self.fleet {
            Some((fleet, check)) => {
                let own = self.request_token(counters);
                fleet.fetch(check, dropped, own).await?
            }
            None => (self.request_token(counters).await?, None),
        };
        #[cfg(not(feature = "redis"))]
        let token = {
            let _ = dropped;
            self.request_token(counters).await?
        };
        let rotated = self.note_refresh_token(&token);
        self.recorder.record(&token, rotated, counters).await;
        Ok(Fetched {
            token,
            #[cfg(feature = "redis")]
            fleet_step,
        })
    }

    /// The fleet's tier, when the cache has one.
    #[cfg(feature = "redis")]
    pub(super) fn fleet(&self) -> Option<&crate::fleet::Inner> {
        self.fleet.as_ref().map(|(fleet, _)| fleet)
    }

    fn refresh(&self) -> MutexGuard<'_, RefreshToken> {
        self.refresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the refresh token if there is one, else the configured grant.
    async fn request_token(&self, counters: &Counters) -> Result<Token, Error> {
        let refresh_token = self.refresh().current.clone();
        if let Some(refresh_token) = refresh_token {
            let request = TokenRequest::refresh_token(refresh_token);
            match counters.token_request(self.endpoint.fetch(request)).await {
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
            .token_request(self.endpoint.fetch(primary.clone()))
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
