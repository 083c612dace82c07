//! [`ScriptedTokenEndpoint`]: a token endpoint in process, as a tower
//! service, answering from a script.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use crate::cache::TokenCacheBuilder;
use crate::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// The token URL of [`ScriptedTokenEndpoint::token_endpoint`]: never
/// resolved, since no request leaves the process.
const TOKEN_URL: &str = "https://token-endpoint.test/token";

/// One scripted answer of a [`ScriptedTokenEndpoint`], queued with
/// [`ScriptedTokenEndpoint::queue`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The next token, as the endpoint issues them.
    Token,
    /// An RFC 6749 §5.2 error: `{"error": code}` with `status` (400 for
    /// `invalid_grant`, 401 for `invalid_client`…).
    Error {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code.
        code: String,
    },
    /// `429 Too Many Requests` with `Retry-After` in whole seconds.
    RateLimited {
        /// The `Retry-After` delay.
        retry_after: Duration,
    },
    /// An error status with a body that is not an OAuth2 error (a proxy's
    /// HTML 502 page, say).
    Status(StatusCode),
}

impl Answer {
    /// An RFC 6749 §5.2 error answer.
    pub fn error(status: StatusCode, code: &str) -> Answer {
        Answer::Error {
            status,
            code: code.to_owned(),
        }
    }

    /// A `429` with `Retry-After: retry_after` (whole seconds).
    pub fn rate_limited(retry_after: Duration) -> Answer {
        Answer::RateLimited { retry_after }
    }
}

/// What the endpoint does, behind the handles' shared lock.
#[derive(Debug)]
struct Script {
    expires_in: Option<u64>,
    fixed: Option<String>,
    refresh_tokens: bool,
    rotate: bool,
    /// The refresh token a refresh grant must present (with rotation, the
    /// last one issued).
    valid_refresh: Option<String>,
    queue: VecDeque<Answer>,
    issued: u64,
    grant_types: Vec<String>,
}

/// A token endpoint in process: a tower HTTP service (no network, no
/// port) answering token requests from a script, for testing code that
/// uses [`TokenCache`], [`crate::OAuth2Layer`] or the reqwest middleware.
///
/// By default it issues `at-1`, `at-2`, … (type `Bearer`, `expires_in`
/// 3600) to any client, for any grant. Queue other answers with
/// [`queue`](Self::queue) (errors, `429` with `Retry-After`, bare statuses):
/// they answer the next requests in order, then tokens again. Clones share
/// the script and the counts, so keep one to count
/// ([`requests`](Self::requests), [`grant_types`](Self::grant_types))
/// after giving another to the cache.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use tower_oauth2::testing::{Answer, ScriptedTokenEndpoint};
/// use tower_oauth2::ErrorKind;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoint = ScriptedTokenEndpoint::new().expires_in(Duration::from_secs(300));
/// endpoint.queue(Answer::rate_limited(Duration::from_secs(7)));
/// let cache = endpoint.cache();
///
/// let e = cache.bearer_header().await.unwrap_err();
/// assert_eq!(e.status(), Some(StatusCode::TOO_MANY_REQUESTS));
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
/// // The cache waits the 7 seconds before it asks again...
/// let e = cache.bearer_header().await.unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::NoToken);
/// assert_eq!(endpoint.requests(), 1);
/// // ...unless told to now.
/// cache.refresh_now().await.unwrap();
/// assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
/// assert_eq!(endpoint.requests(), 2);
/// assert_eq!(endpoint.grant_types(), ["client_credentials", "client_credentials"]);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ScriptedTokenEndpoint {
    script: Arc<Mutex<Script>>,
}

impl Default for ScriptedTokenEndpoint {
    fn default() -> Self {
        ScriptedTokenEndpoint::new()
    }
}

impl ScriptedTokenEndpoint {
    /// An endpoint issuing `at-1`, `at-2`, … that live an hour.
    pub fn new() -> Self {
        ScriptedTokenEndpoint {
            script: Arc::new(Mutex::new(Script {
                expires_in: Some(3600),
                fixed: None,
                refresh_tokens: false,
                rotate: false,
                valid_refresh: None,
                queue: VecDeque::new(),
                issued: 0,
                grant_types: Vec::new(),
            })),
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tokens' `expires_in` (whole seconds, at least 1).
    pub fn expires_in(self, lifetime: Duration) -> Self {
        self.script().expires_in = Some(lifetime.as_secs().max(1));
        self
    }

    /// Tokens with no `expires_in` (the cache's
    /// [`lifetime_when_unknown`](crate::cache::RefreshPolicy::lifetime_when_unknown)
    /// applies).
    pub fn without_expires_in(self) -> Self {
        self.script().expires_in = None;
        self
    }

    /// Always the same access token, `token`, instead of `at-N`.
    pub fn fixed_token(self, token: &str) -> Self {
        self.script().fixed = Some(token.to_owned());
        self
    }

    /// Issues a refresh token (`rt-N`) with each access token. With
    /// `rotate`, each refresh grant must present the last one issued and
    /// gets a new one (RFC 9700 §4.14.2: a spent one is refused with
    /// `invalid_grant`); without, the first one stays valid and is not
    /// replaced.
    pub fn refresh_tokens(self, rotate: bool) -> Self {
        {
            let mut script = self.script();
            script.refresh_tokens = true;
            script.rotate = rotate;
        }
        self
    }

    /// Queues `answer` for the next request (after those queued before).
    pub fn queue(&self, answer: Answer) -> &Self {
        self.script().queue.push_back(answer);
        self
    }

    /// How many token requests it has answered.
    pub fn requests(&self) -> usize {
        self.script().grant_types.len()
    }

    /// The `grant_type` of each request, in order.
    pub fn grant_types(&self) -> Vec<String> {
        self.script().grant_types.clone()
    }

    /// A [`TokenEndpoint`] over this service (token URL
    /// `https://token-endpoint.test/token`, never resolved;
    /// `client_secret_basic` as `test-client`).
    pub fn token_endpoint(&self) -> TokenEndpoint<ScriptedTokenEndpoint> {
        let url = TokenUrl::new(TOKEN_URL).unwrap_or_else(|_| unreachable!("a valid URL"));
        TokenEndpoint::new(
            self.clone(),
            url,
            ClientAuth::client_secret_basic("test-client", "test-secret"),
        )
    }

    /// A builder of a `client_credentials` cache over this endpoint.
    pub fn cache_builder(&self) -> TokenCacheBuilder {
        TokenCache::builder(self.token_endpoint(), TokenRequest::client_credentials())
    }

    /// A `client_credentials` cache over this endpoint.
    pub fn cache(&self) -> TokenCache {
        self.cache_builder().build()
    }

    /// The answer to a token request with form body `form`.
    fn answer(&self, form: &[u8]) -> Response<Full<Bytes>> {
        let params: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
        let param = |name: &str| params.iter().find(|p| p.0 == name).map(|p| p.1.as_str());
        let mut script = self.script();
        script
            .grant_types
            .push(param("grant_type").unwrap_or_default().to_owned());
        match script.queue.pop_front().unwrap_or(Answer::Token) {
            Answer::Token => {}
            Answer::Error { status, code } => return oauth_error(status, &code),
            Answer::RateLimited { retry_after } => {
                let mut answer = oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
                let secs = retry_after.as_secs().to_string();
                if let Ok(value) = header::HeaderValue::from_str(&secs) {
                    answer.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return answer;
            }
            Answer::Status(status) => {
                let mut answer =
                    Response::new(Full::new(Bytes::from_static(b"<html>error</html>")));
                *answer.status_mut() = status;
                let html = header::HeaderValue::from_static("text/html");
                answer.headers_mut().insert(header::CONTENT_TYPE, html);
                return answer;
            }
        }
        if param("grant_type") == Some("refresh_token")
            && param("refresh_token") != script.valid_refresh.as_deref()
        {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        }
        script.issued += 1;
        let n = script.issued;
        let access_token = script.fixed.clone().unwrap_or_else(|| format!("at-{n}"));
        let mut body = serde_json::json!({ "access_token": access_token, "token_type": "Bearer" });
        if let Some(expires_in) = script.expires_in {
            body["expires_in"] = expires_in.into();
        }
        if script.refresh_tokens && (script.rotate || script.valid_refresh.is_none()) {
            let refresh_token = format!("rt-{n}");
            body["refresh_token"] = refresh_token.clone().into();
            script.valid_refresh = Some(refresh_token);
        }
        json(StatusCode::OK, body.to_string())
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    let content_type = header::HeaderValue::from_static("application/json");
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    answer
}

fn oauth_error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": code }).to_string())
}

impl Service<Request<Full<Bytes>>> for ScriptedTokenEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // A `Full` body is whole already: this never waits.
            let form = request.into_body().collect().await;
            let form = form.map(|c| c.to_bytes()).unwrap_or_default();
            Ok(this.answer(&form))
        })
    }
}
