//! The reqwest-middleware counterpart of [`super::OnBehalfLayer`].

use std::fmt;
use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use super::{subject_options, SubjectToken, Subjects};
use crate::reqwest::OAuth2Middleware;
use crate::TokenCache;

/// Adds to each request of a `reqwest_middleware::ClientWithMiddleware` a
/// token exchanged for its caller's token (RFC 8693), one cache per
/// subject, as [`super::OnBehalfLayer`] does for tower. The subject goes
/// in with `RequestBuilder::with_extension(SubjectToken::from_headers(..))`
/// (or [`OnBehalfMiddleware::subject_from`]). A request with no usable
/// subject fails with a middleware error whose
/// [`crate::reqwest::token_error`] is of kind
/// [`ErrorKind::NoSubject`](crate::ErrorKind::NoSubject) or
/// [`ErrorKind::SubjectExpired`](crate::ErrorKind::SubjectExpired).
///
/// ```no_run
/// # async fn example(endpoint: tower_oauth2::TokenEndpoint<tower_oauth2::reqwest::ReqwestTransport>, inbound: http::HeaderMap) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use tower_oauth2::on_behalf::{OnBehalfMiddleware, SubjectToken, ACCESS_TOKEN_TYPE};
/// use tower_oauth2::{TokenCache, TokenRequest};
///
/// let middleware = OnBehalfMiddleware::new(move |subject: &SubjectToken| {
///     let request = TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE)
///         .audience("https://inventory.example.com");
///     TokenCache::builder(endpoint.clone(), request).build()
/// });
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(middleware)
///     .build();
/// let mut request = client.get("https://inventory.example.com/items");
/// if let Some(subject) = SubjectToken::from_headers(&inbound) {
///     request = request.with_extension(subject);
/// }
/// let response = request.send().await?;
/// # let _ = response;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OnBehalfMiddleware {
    subjects: Arc<Subjects>,
}

impl OnBehalfMiddleware {
    /// A middleware whose subjects get their tokens from the cache `make`
    /// gives on a subject's first request: see [`super::OnBehalfLayer::new`].
    pub fn new(make: impl Fn(&SubjectToken) -> TokenCache + Send + Sync + 'static) -> Self {
        OnBehalfMiddleware {
            subjects: Arc::new(Subjects::new(Arc::new(make))),
        }
    }

    subject_options!();
}

impl fmt::Debug for OnBehalfMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfMiddleware")
            .field("subjects", &self.subjects)
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for OnBehalfMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let subjects = &*self.subjects;
        let allowed = http::Uri::try_from(req.url().as_str())
            .is_ok_and(|uri| subjects.options.destinations.allows(&uri));
        if !allowed {
            return next.run(req, extensions).await;
        }
        // `RequestBuilder::with_extension` puts the subject in the
        // middleware's extensions.
        let policy = subjects
            .policy_for(req.headers(), extensions)
            .map_err(reqwest_middleware::Error::middleware)?;
        OAuth2Middleware::from_policy(policy)
            .handle(req, extensions, next)
            .await
    }
}
