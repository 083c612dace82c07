//! Poll-ready discipline (ARCHITECTURE.md, invariant: poll-ready
//! discipline): the inner instance that was polled ready is the one called,
//! whether the token is cached (called at once) or not (called later from
//! the response future). A `ConcurrencyLimit` inner service panics when an
//! instance that holds no permit is called, so any slip shows.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::limit::ConcurrencyLimit;
use tower::{service_fn, Service, ServiceExt};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

fn cache(fetches: Arc<AtomicUsize>) -> TokenCache {
    let http = service_fn(move |_req: Request<Full<Bytes>>| {
        let fetches = fetches.clone();
        async move {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
            ))))
        }
    });
    let endpoint = TokenEndpoint::new(
        http,
        TokenUrl::new("https://as.example.com/token").unwrap(),
        ClientAuth::client_secret_basic("svc", "secret"),
    );
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
}

/// A request the default destinations give the token to.
fn request() -> Request<Full<Bytes>> {
    let get = Request::get("https://api.example.com/items");
    get.body(Full::default()).unwrap()
}

#[tokio::test]
async fn the_instance_polled_ready_is_the_one_called() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let api = {
        let calls = calls.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let calls = calls.clone();
            async move {
                assert_eq!(req.headers()["authorization"], "Bearer at-1");
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        })
    };
    let mut svc = tower::Layer::layer(
        &OAuth2Layer::new(cache(fetches.clone())),
        ConcurrencyLimit::new(api, 1),
    );
    // The first call waits for the token (called from the future), the
    // others find it cached (called at once); each on the same service.
    for _ in 0..3 {
        svc.ready().await.unwrap().call(request()).await.unwrap();
    }
    // Clones, each polled ready and called, with the retry copy disabled.
    let mut a = tower::Layer::layer(
        &OAuth2Layer::new(cache(fetches.clone())).retry_unauthorized(false),
        ConcurrencyLimit::new(svc.get_ref().get_ref().clone(), 1),
    );
    let mut b = a.clone();
    for pick_a in [true, false, true] {
        let s = if pick_a { &mut a } else { &mut b };
        s.ready().await.unwrap().call(request()).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
