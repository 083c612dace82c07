//! reqwest support (feature `reqwest`): [`OAuth2Middleware`] for
//! [`reqwest_middleware`], and [`ReqwestTransport`] to run the token
//! endpoint over a [`reqwest::Client`].
//!
//! [`OAuth2Middleware`] does for a `reqwest_middleware::ClientWithMiddleware`
//! what [`crate::OAuth2Layer`] does for a tower service, from the same
//! [`TokenCache`]: one cache can serve both, and one token fetch then serves
//! requests of either kind. Both follow an [`AuthPolicy`], with the same
//! options and the same decisions; [`OAuth2Middleware::from_policy`] takes
//! the one a layer uses.
//!
//! - Every request gets `Authorization: Bearer <token>`, marked sensitive. An
//!   `Authorization` header the caller set is **replaced**, unless
//!   [`OAuth2Middleware::keep_existing_authorization`] is on, which sends such
//!   requests untouched (and never retries them).
//! - On a 401, the token that was sent is invalidated (only that generation)
//!   and the request is sent once more with a new token if it can be cloned
//!   (`reqwest::Request::try_clone`: any body but a stream). A streamed body
//!   cannot be resent, so its 401 is returned as it came. The second response
//!   is returned whatever it is. Which 401s a new token may fix, and the
//!   backoff once new tokens are refused too, are the tower layer's rules
//!   (see [`crate::layer`]): [`OAuth2Middleware::unauthorized_backoff`].
//! - With DPoP (feature `dpop`) each request also gets a proof (`DPoP`
//!   header) for its URL. reqwest follows redirects by default and takes
//!   only `Authorization` and cookies off when the origin changes, so build
//!   the client with [`redirect_policy`] (or `Policy::none()`): it stops at
//!   a redirect to another origin. An answer that came from another URL
//!   (a redirect followed) is returned as it is, judged as no answer for
//!   the token or its nonce; from another origin, it is logged (WARN, once).
//! - A failure to get a token is a `reqwest_middleware::Error::Middleware`
//!   wrapping a [`crate::Error`]; [`token_error`] digs it out, with the
//!   endpoint's RFC 6749 `error` and `error_description` in
//!   [`crate::Error::oauth_error`].
//!
//! This crate turns on no TLS backend of reqwest: enable one (`rustls`,
//! `native-tls`) on your own `reqwest` dependency to reach `https` URLs.
//!
//! # Example
//!
//! A reqwest-only setup: the token endpoint is reached through
//! [`ReqwestTransport`], and the API through the middleware.
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tower_oauth2::reqwest::{OAuth2Middleware, ReqwestTransport};
//! use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let addr = serve().await;
//! # let token_url = format!("http://{addr}/token");
//! # let api_url = format!("http://{addr}/orders");
//! let endpoint = TokenEndpoint::new(
//!     ReqwestTransport::new(),
//!     TokenUrl::new(&token_url)?, // e.g. https://as.example.com/oauth2/token
//!     ClientAuth::client_secret_basic("svc-orders", "s3cret"),
//! );
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
//!
//! # let api_origin = format!("http://{addr}");
//! // The token goes to the API it is for (e.g. https://api.example.com) only.
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(OAuth2Middleware::for_origin(cache.clone(), &api_origin)?)
//!     .build();
//! let response = client.get(&api_url).send().await?;
//! // This API echoes the Authorization header it got.
//! assert_eq!(response.text().await?, "Bearer at-1");
//! assert_eq!(cache.stats().token_fetches, 1);
//! # Ok(())
//! # }
//! #
//! # // A token endpoint and an echoing API on 127.0.0.1.
//! # async fn serve() -> std::net::SocketAddr {
//! #     use bytes::Bytes;
//! #     use http_body_util::Full;
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = listener.local_addr().unwrap();
//! #     tokio::spawn(async move {
//! #         loop {
//! #             let (stream, _) = listener.accept().await.unwrap();
//! #             let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
//! #                 let body = if req.uri().path() == "/token" {
//! #                     Bytes::from_static(br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#)
//! #                 } else {
//! #                     Bytes::copy_from_slice(req.headers()["authorization"].as_bytes())
//! #                 };
//! #                 Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
//! #             });
//! #             tokio::spawn(hyper::server::conn::http1::Builder::new()
//! #                 .serve_connection(hyper_util::rt::TokioIo::new(stream), svc));
//! #         }
//! #     });
//! #     addr
//! # }
//! ```
#![doc = include_str!("docs/reqwest.md")]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::reqwest::{Client, Request, Response};
use bytes::Bytes;
use http::Extensions;
use http_body_util::{BodyExt, Full};
use reqwest_middleware::{Middleware, Next};
use tower_service::Service;

use crate::cache::{Lookup, Resource, TokenCache};
use crate::error::{BoxError, Error};
use crate::layer::policy::{delegate_policy_options, AfterResponse, ResourceAnswer};
use crate::layer::AuthPolicy;

/// Adds OAuth2 bearer tokens to the requests of a
/// `reqwest_middleware::ClientWithMiddleware`. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct OAuth2Middleware {
    policy: AuthPolicy,
}

impl OAuth2Middleware {
    /// A middleware taking its tokens from `cache` (which a
    /// [`crate::OAuth2Layer`] may share). Where the token goes: as for
    /// [`AuthPolicy::new`]; prefer [`OAuth2Middleware::for_origin`].
    pub fn new(cache: TokenCache) -> Self {
        OAuth2Middleware::from_policy(AuthPolicy::new(cache))
    }

    /// A middleware taking its tokens from `cache` for requests to
    /// `origin` (`scheme://host[:port]`) only: others go untouched. See
    /// [`AuthPolicy::for_origin`].
    pub fn for_origin(cache: TokenCache, origin: impl AsRef<str>) -> Result<Self, Error> {
        Ok(OAuth2Middleware::from_policy(AuthPolicy::for_origin(
            cache, origin,
        )?))
    }

    /// A middleware following `policy` (which a [`crate::OAuth2Layer`] may
    /// share).
    pub fn from_policy(policy: AuthPolicy) -> Self {
        OAuth2Middleware { policy }
    }

    delegate_policy_options!();
}

fn token_failure(e: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(e)
}

#[async_trait::async_trait]
impl Middleware for OAuth2Middleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let policy = &self.policy;
        let uri = match http::Uri::try_from(req.url().as_str()) {
            Ok(uri) if policy.applies_to(&uri, req.headers()) => uri,
            _ => return next.run(req, extensions).await,
        };
        // The answers are recorded for the resource server that gave them.
        let from = || Resource::of(&uri);
        let (header, generation) = policy
            .cache()
            .bearer_header_with_generation()
            .await
            .map_err(token_failure)?;
        let method = req.method().clone();
        let headers = req.headers_mut();
        let proof = (policy.authorize_parts(&method, &uri, headers, header, generation))
            .map_err(token_failure)?;
        let replay = copy_for_resend(policy, &req);
        let sent_to = req.url().clone();
        let response = next.clone().run(req, extensions).await?;
        if followed_redirect(policy, &sent_to, &response) {
            return Ok(response);
        }
        let answer = ResourceAnswer {
            status: response.status(),
            headers: response.headers(),
            sent: generation,
            resendable: replay.is_some(),
        };
        let after = policy.after_answer(proof.as_ref(), answer, from);
        let (lookup, mut replay, after_refusal) = match (after, replay) {
            (AfterResponse::Resend(lookup), Some(replay)) => (lookup, replay, true),
            (AfterResponse::ResendWithNonce(lookup), Some(replay)) => (lookup, replay, false),
            _ => return Ok(response),
        };
        // The refusal is not returned, so its connection is not held while
        // a new token is fetched.
        drop(response);
        let (header, generation) = token_for_resend(policy, lookup).await?;
        if after_refusal {
            policy.count_resend();
        }
        let headers = replay.headers_mut();
        let proof = (policy.authorize_parts(&method, &uri, headers, header, generation))
            .map_err(token_failure)?;
        let sent_to = replay.url().clone();
        let response = next.run(replay, extensions).await?;
        if followed_redirect(policy, &sent_to, &response) {
            return Ok(response);
        }
        let answer = ResourceAnswer::to_resend(response.status(), response.headers(), generation);
        policy.after_resend_answer(proof.as_ref(), answer, from);
        Ok(response)
    }
}

/// A copy of `req` to resend after a refusal, if the policy resends and
/// the body can be cloned. Taken before sending, as tower-http's
/// follow_redirect keeps its copy: a streamed body is gone once sent.
fn copy_for_resend(policy: &AuthPolicy, req: &Request) -> Option<Request> {
    // With DPoP a copy is kept for a nonce's resend too, which is not the
    // 401 retry.
    if policy.keeps_copies() {
        req.try_clone()
    } else {
        None
    }
}

/// The token a resend goes with: the one `lookup` found, or the next one
/// fetched.
async fn token_for_resend(
    policy: &AuthPolicy,
    lookup: Lookup,
) -> reqwest_middleware::Result<(http::HeaderValue, u64)> {
    match lookup {
        Lookup::Ready(header, generation) => Ok((header, generation)),
        Lookup::Wait => {
            let cached = policy.cache().wait_for_token().await;
            let cached = cached.map_err(token_failure)?;
            Ok((cached.header.clone(), cached.generation))
        }
    }
}

/// Whether `a` and `b` are one origin (scheme, host, port). (reqwest
/// takes `Authorization` off a redirect to another host or port, not to
/// another scheme.)
fn same_origin(a: &::reqwest::Url, b: &::reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether the answer to a request sent to `sent` came from elsewhere:
/// the client followed a redirect, and the answer is not judged (no
/// token invalidated, nothing resent, no nonce learned). With DPoP the
/// proof named `sent`, so any other URL's answer says nothing of this
/// token or of this origin's nonce. A bearer token does not go to another
/// host or port (reqwest takes `Authorization` off), so another origin's
/// 401 answers a request that carried no token: taken for a refusal, it
/// would throw the token away (and a fleet's, from Redis) and fetch one
/// per request that only the 401 backoff bounds. A proof that went to
/// another origin is a WARN, once per process, naming the origins only (a
/// path or query may hold secrets).
fn followed_redirect(policy: &AuthPolicy, sent: &::reqwest::Url, response: &Response) -> bool {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let to = response.url();
    if sent == to {
        return false;
    }
    let with_proof = policy.proof_key().is_some();
    if same_origin(sent, to) {
        // A bearer token went there too: its answer is the origin's.
        if with_proof {
            tracing::debug!("a redirect was followed; its answer is not judged");
        }
        return with_proof;
    }
    if !with_proof {
        tracing::debug!("a redirect to another origin was followed; its answer is not judged");
        return true;
    }
    if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    tracing::warn!(
        from = %sent.origin().ascii_serialization(),
        to = %to.origin().ascii_serialization(),
        "the reqwest client followed a redirect to another origin with the request's DPoP \
         proof (not its token); build the client with \
         redirect(tower_oauth2::reqwest::redirect_policy())"
    );
    true
}

/// A redirect policy for the `reqwest::Client` under an
/// [`OAuth2Middleware`]: redirects within the request's origin are
/// followed (at most 10), one to another origin is not: the 3xx is the
/// answer, and the request the caller sends there goes through the
/// middleware again, which gives it a token only if its destinations
/// allow. reqwest's default policy follows a redirect anywhere and takes
/// only `Authorization` (and cookies) off when the origin changes: a DPoP
/// proof (`DPoP` header) would go on. (A DPoP proof names one URL: a
/// resource that redirects within its origin may refuse it at the new
/// one; the middleware returns such an answer as it came, judging nothing
/// by it. `Policy::none()` leaves every redirect to the caller.)
///
/// ```
/// let client = reqwest::Client::builder()
///     .redirect(tower_oauth2::reqwest::redirect_policy())
///     .build()?;
/// # Ok::<(), reqwest::Error>(())
/// ```
pub fn redirect_policy() -> ::reqwest::redirect::Policy {
    ::reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if !same_origin(first, attempt.url()) {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The token error inside a `reqwest_middleware::Error`, if it is one: the
/// [`OAuth2Middleware`] could not get a token.
///
/// ```
/// # fn f(err: reqwest_middleware::Error) {
/// if let Some(e) = tower_oauth2::reqwest::token_error(&err) {
///     eprintln!("no access token: {e} (retryable: {})", e.is_retryable());
/// }
/// # }
/// ```
pub fn token_error(err: &reqwest_middleware::Error) -> Option<&Error> {
    match err {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
        _ => None,
    }
}

/// A tower HTTP service over a [`reqwest::Client`], so a
/// [`crate::TokenEndpoint`] (and [`crate::discovery`]) can run over reqwest.
///
/// It takes `http::Request<Full<Bytes>>` and answers
/// `http::Response<reqwest::Body>`. Redirects must not be followed: a
/// token request carries credentials (`client_secret_post`, a refresh token,
/// an authorization code) that a 307 would send on to wherever it points.
/// [`ReqwestTransport::new`] builds a client that does not follow them;
/// with [`ReqwestTransport::from_client`], build yours with
/// `redirect(reqwest::redirect::Policy::none())`. If a client does follow
/// one, the answer is refused with an error (the request has been sent on by
/// then: configure the client right).
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: Client,
}

impl ReqwestTransport {
    /// A transport over a new `reqwest::Client` that follows no redirects.
    ///
    /// # Panics
    ///
    /// If reqwest cannot build a client (its TLS backend fails to
    /// initialize), as `reqwest::Client::new` does.
    pub fn new() -> Self {
        let client = Client::builder()
            .redirect(::reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest cannot build a client");
        ReqwestTransport { client }
    }

    /// A transport over `client`, which must not follow redirects (see the
    /// type's docs).
    pub fn from_client(client: Client) -> Self {
        ReqwestTransport { client }
    }

    /// The reqwest client.
    pub fn get_ref(&self) -> &Client {
        &self.client
    }

    /// Gives back the reqwest client.
    pub fn into_inner(self) -> Client {
        self.client
    }
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        ReqwestTransport::new()
    }
}

impl Service<http::Request<Full<Bytes>>> for ReqwestTransport {
    type Response = http::Response<::reqwest::Body>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // A `Full` body is one chunk, ready at once; as `Bytes` reqwest
            // sends it with a Content-Length.
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let request = Request::try_from(http::Request::from_parts(
                parts,
                ::reqwest::Body::from(body),
            ))?;
            let sent_to = request.url().clone();
            let response = client.execute(request).await?;
            if response.url() != &sent_to {
                return Err(BoxError::from(
                    "the reqwest client followed a redirect, which a ReqwestTransport's \
                     client must not do: build it with redirect(reqwest::redirect::Policy::none())",
                ));
            }
            Ok(http::Response::from(response))
        })
    }
}
