//! Resource servers that refuse a revoked or expired token with `403` and
//! no challenge (django-oauth-toolkit's protected views, some gateways):
//! `AuthPolicy::refused_with` (issue 22, "Operable"). Without it the
//! refused token is sent until its scheduled refresh; with it such an
//! answer counts as a 401 does, bounded by the same backoff, and a `403`
//! whose challenge says `insufficient_scope` is never one. Then the pairs:
//! with the 401 backoff, the keyed layer and the reqwest middleware.

use crate::support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::client::{get, http_client, keyed_by_port};
use support::log::capture;
use support::serve::{serve, Serving};
use support::token_server::{State, TestServer};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_oauth2::cache::Backoff;
use tower_oauth2::OAuth2Layer;

/// Longer than any test runs: counts never depend on the machine's speed.
fn an_hour() -> Backoff {
    let hour = Duration::from_secs(3600);
    Backoff::new(hour, hour)
}

/// How the resource server refuses a token the token server would not
/// accept (revoked, unknown).
#[derive(Clone)]
struct Refusal {
    status: StatusCode,
    challenge: Option<&'static str>,
}

const FORBIDDEN: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    challenge: None,
};

/// A resource server trusting `TestServer`'s tokens: 200 for a token it
/// accepts, else `refusal`. Records the `Authorization` of each request.
struct Resource {
    serving: Serving,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Resource {
    async fn start(tokens: Arc<State>, refusal: Refusal) -> Resource {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let auth = req.headers().get("authorization");
            let auth = auth.and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            record.lock().expect("the record").push(auth.clone());
            let token = auth.strip_prefix("Bearer ").unwrap_or_default();
            let answer = if tokens.accepts(token) {
                Response::new(Full::new(Bytes::from_static(b"ok")))
            } else {
                let mut refused = Response::builder().status(refusal.status);
                if let Some(challenge) = refusal.challenge {
                    refused = refused.header("www-authenticate", challenge);
                }
                refused
                    .body(Full::new(Bytes::from_static(b"forbidden")))
                    .expect("a valid refusal")
            };
            async move { Ok::<_, Infallible>(answer) }
        });
        Resource {
            serving: serve(service).await,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        self.serving.url(path)
    }

    /// The `Authorization` of each request, in order.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("the record").clone()
    }
}

fn bearer(tokens: &[&str]) -> Vec<String> {
    tokens.iter().map(|t| format!("Bearer {t}")).collect()
}

/// The status of `request` sent through `svc` (a clone).
async fn status<S, B>(svc: &S, request: Request<Full<Bytes>>) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    svc.clone()
        .oneshot(request)
        .await
        .expect("an answer")
        .status()
}

/// Two requests to `resource` through `svc`, the token server revoking
/// the first token between them: their statuses.
async fn revoked_between_two_requests<S, B>(
    server: &TestServer,
    resource: &Resource,
    svc: &S,
) -> (StatusCode, StatusCode)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let url = resource.url("/orders");
    let first = status(svc, get(&url)).await;
    server.revoke("at-1");
    (first, status(svc, get(&url)).await)
}

/// [`revoked_between_two_requests`] and a third request: the second and
/// third get the 403 as it came, the token is never replaced.
async fn the_refused_token_stays<S, B>(server: &TestServer, resource: &Resource, svc: &S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let answers = revoked_between_two_requests(server, resource, svc).await;
    assert_eq!(answers, (StatusCode::OK, StatusCode::FORBIDDEN));
    let third = status(svc, get(&resource.url("/orders"))).await;
    assert_eq!(third, StatusCode::FORBIDDEN);
    assert_eq!(resource.seen(), bearer(&["at-1", "at-1", "at-1"]));
    assert_eq!(server.token_requests(), 1);
}

/// [`revoked_between_two_requests`]: the second request's refusal gets a
/// new token and one resend, which succeeds.
async fn a_new_token_and_one_resend<S, B>(server: &TestServer, resource: &Resource, svc: &S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let answers = revoked_between_two_requests(server, resource, svc).await;
    assert_eq!(answers, (StatusCode::OK, StatusCode::OK));
    assert_eq!(resource.seen(), bearer(&["at-1", "at-1", "at-2"]));
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn without_the_opt_in_a_403_is_the_answer_and_the_refused_token_stays() {
    let server = TestServer::start().await;
    let resource = Resource::start(server.state.clone(), FORBIDDEN).await;
    let layer = OAuth2Layer::new(server.client_credentials().build());
    let svc = layer.layer(http_client());
    the_refused_token_stays(&server, &resource, &svc).await;
}

#[tokio::test]
async fn with_the_opt_in_a_403_with_no_challenge_gets_a_new_token_and_one_resend() {
    let server = TestServer::start().await;
    let resource = Resource::start(server.state.clone(), FORBIDDEN).await;
    let layer =
        OAuth2Layer::new(server.client_credentials().build()).refused_with([StatusCode::FORBIDDEN]);
    assert_eq!(layer.policy().refusal_statuses(), [StatusCode::FORBIDDEN]);
    let svc = layer.layer(http_client());
    a_new_token_and_one_resend(&server, &resource, &svc).await;
    let stats = layer.cache().stats();
    assert_eq!((stats.invalidations, stats.retries), (1, 1));
}

#[tokio::test]
async fn a_403_asking_for_scope_is_never_a_refusal_of_the_token() {
    let server = TestServer::start().await;
    let scope = Refusal {
        status: StatusCode::FORBIDDEN,
        challenge: Some(r#"Bearer error="insufficient_scope", scope="orders:write""#),
    };
    let resource = Resource::start(server.state.clone(), scope).await;
    let layer =
        OAuth2Layer::new(server.client_credentials().build()).refused_with([StatusCode::FORBIDDEN]);
    let svc = layer.layer(http_client());
    the_refused_token_stays(&server, &resource, &svc).await;
    assert_eq!(layer.cache().stats().invalidations, 0);
}

#[tokio::test]
async fn a_listed_status_with_an_invalid_token_challenge_is_a_refusal() {
    // Esri's 498 "Invalid Token", with an RFC 6750 challenge.
    let invalid_token = StatusCode::from_u16(498).expect("a status");
    let server = TestServer::start().await;
    let refusal = Refusal {
        status: invalid_token,
        challenge: Some(r#"Bearer error="invalid_token""#),
    };
    let resource = Resource::start(server.state.clone(), refusal).await;
    // 403 is not listed here, 200 and 401 are not kept.
    let layer = OAuth2Layer::new(server.client_credentials().build()).refused_with([
        StatusCode::OK,
        invalid_token,
        StatusCode::UNAUTHORIZED,
        invalid_token,
    ]);
    assert_eq!(layer.policy().refusal_statuses(), [invalid_token]);
    let svc = layer.layer(http_client());
    a_new_token_and_one_resend(&server, &resource, &svc).await;
}

#[tokio::test]
async fn pair_forbidden_backoff_an_always_forbidding_resource_costs_two_tokens_and_one_warn_line() {
    let logs = capture();
    let server = TestServer::start().await;
    // Accepts nothing, whoever issued it.
    server.set_reject_all(true);
    let resource = Resource::start(server.state.clone(), FORBIDDEN).await;
    let layer = OAuth2Layer::new(server.client_credentials().build())
        .refused_with([StatusCode::FORBIDDEN])
        .unauthorized_backoff(an_hour());
    let svc = layer.layer(http_client());
    let url = resource.url("/always-forbidden");
    for _ in 0..5 {
        assert_eq!(status(&svc, get(&url)).await, StatusCode::FORBIDDEN);
    }
    // at-1 refused: at-2, resent, refused too: the step starts; then the
    // 403s pass through with at-2, nothing invalidated.
    assert_eq!(
        resource.seen(),
        bearer(&["at-1", "at-2", "at-2", "at-2", "at-2", "at-2"])
    );
    assert_eq!(server.token_requests(), 2);
    // The resend's refusal (which starts the step) and the four after it.
    assert_eq!(layer.cache().stats().unauthorized_backed_off, 5);
    let warned = logs
        .text()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("status=403"))
        .count();
    assert_eq!(warned, 1, "{}", logs.text());
}

#[tokio::test]
async fn pair_forbidden_keyed_each_keys_forbidden_token_is_replaced_for_that_key_only() {
    let server = TestServer::start().await;
    let a = Resource::start(server.state.clone(), FORBIDDEN).await;
    let b = Resource::start(server.state.clone(), FORBIDDEN).await;
    let layer = keyed_by_port(server.endpoint()).refused_with([StatusCode::FORBIDDEN]);
    let svc = layer.layer(http_client());
    assert_eq!(status(&svc, get(&a.url("/x"))).await, StatusCode::OK);
    assert_eq!(status(&svc, get(&b.url("/x"))).await, StatusCode::OK);
    // a's token is revoked: a gets a new one, b keeps its own.
    server.revoke("at-1");
    assert_eq!(status(&svc, get(&a.url("/x"))).await, StatusCode::OK);
    assert_eq!(status(&svc, get(&b.url("/x"))).await, StatusCode::OK);
    assert_eq!(a.seen(), bearer(&["at-1", "at-1", "at-3"]));
    assert_eq!(b.seen(), bearer(&["at-2", "at-2"]));
    assert_eq!(server.token_requests(), 3);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn pair_forbidden_reqwest_a_403_with_no_challenge_gets_a_new_token_and_one_resend() {
    use tower_oauth2::reqwest::OAuth2Middleware;

    let server = TestServer::start().await;
    let resource = Resource::start(server.state.clone(), FORBIDDEN).await;
    let scope = Refusal {
        status: StatusCode::FORBIDDEN,
        challenge: Some(r#"Bearer error="insufficient_scope""#),
    };
    let scoped = Resource::start(server.state.clone(), scope).await;
    let middleware = OAuth2Middleware::new(server.client_credentials().build())
        .refused_with([StatusCode::FORBIDDEN]);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let send = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.expect("an answer").status() }
    };
    assert_eq!(send(resource.url("/x")).await, StatusCode::OK);
    server.revoke("at-1");
    assert_eq!(send(resource.url("/x")).await, StatusCode::OK);
    assert_eq!(resource.seen(), bearer(&["at-1", "at-1", "at-2"]));
    // Asking for scope: the answer, with no new token.
    server.revoke("at-2");
    assert_eq!(send(scoped.url("/x")).await, StatusCode::FORBIDDEN);
    assert_eq!(scoped.seen(), bearer(&["at-2"]));
    assert_eq!(server.token_requests(), 2);
}
