//! tower-http's `FollowRedirect` with the layer. Outside it (the order
//! `src/docs/layer.md` recommends), every hop goes through the layer: the
//! token goes only where the destinations allow, and a DPoP proof is made
//! for the hop's own URI. Inside it, the hops never pass the layer: what
//! the first request carried follows them.

use crate::support;

use http::StatusCode;
use support::client::{get, http_client};
use support::redirect::{recording, redirecting};
use support::token_server::TestServer;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::follow_redirect::FollowRedirectLayer;
use tower_oauth2::layer::Destinations;
use tower_oauth2::{OAuth2Layer, TokenCache};

/// The layer under `FollowRedirect`, giving the token to `origins` only.
fn following(
    cache: &TokenCache,
    origins: &[String],
) -> tower_http::follow_redirect::FollowRedirect<
    tower_oauth2::OAuth2Service<support::client::HttpClient>,
> {
    let destinations = Destinations::origins(origins).unwrap();
    ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(OAuth2Layer::new(cache.clone()).destinations(destinations))
        .service(http_client())
}

/// Follows redirects to the API (the token goes on) and to an origin the
/// destinations do not list (the token, and a proof, stay home); returns
/// what that origin got.
async fn follow_both(
    server: &TestServer,
    cache: &TokenCache,
) -> Vec<(Option<String>, Option<String>)> {
    let (elsewhere, landed) = recording().await;
    let to_api = redirecting(server.url("/api/orders?page=2")).await;
    let away = redirecting(elsewhere.url("/landing")).await;
    let svc = following(cache, &[server.url(""), to_api.url(""), away.url("")]);
    let response = svc
        .clone()
        .oneshot(get(&to_api.url("/start")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = svc.oneshot(get(&away.url("/start"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let landed = landed.lock().unwrap().clone();
    landed
}

#[tokio::test]
async fn outside_the_layer_each_hop_gets_the_token_only_where_it_may_go() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let landed = follow_both(&server, &cache).await;
    assert_eq!(
        server.authorizations(),
        vec![Some("Bearer at-1".to_owned())]
    );
    assert_eq!(landed, vec![(None, None)]);
    assert_eq!(server.token_requests(), 1);
}

#[cfg(feature = "dpop")]
mod dpop {
    use super::*;
    use tower_oauth2::dpop::Dpop;
    use tower_oauth2::TokenRequest;

    fn dpop_cache(server: &TestServer) -> TokenCache {
        let endpoint = server.endpoint().dpop(Dpop::generate().unwrap());
        TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
    }

    /// The server checks every proof's `htu` against the URI it was sent
    /// to: a proof made for the first hop would be refused there.
    #[tokio::test]
    async fn outside_the_layer_each_hop_gets_a_proof_for_its_own_uri() {
        let server = TestServer::start().await;
        server.enable_dpop();
        let cache = dpop_cache(&server);
        let landed = follow_both(&server, &cache).await;
        assert_eq!(server.authorizations(), vec![Some("DPoP at-1".to_owned())]);
        assert_eq!(server.dpop_refusals(), Vec::<String>::new());
        assert_eq!(landed, vec![(None, None)]);
        assert_eq!(server.token_requests(), 1);
    }

    /// What the docs warn of: under the layer, tower-http's standard policy
    /// takes `Authorization` off at another origin, not the `DPoP` proof.
    #[tokio::test]
    async fn inside_the_layer_the_first_hops_proof_follows_to_another_origin() {
        let server = TestServer::start().await;
        server.enable_dpop();
        let cache = dpop_cache(&server);
        let (elsewhere, landed) = recording().await;
        let away = redirecting(elsewhere.url("/landing")).await;
        let svc = ServiceBuilder::new()
            .layer(OAuth2Layer::new(cache.clone()))
            .layer(FollowRedirectLayer::new())
            .service(http_client());
        let response = svc.oneshot(get(&away.url("/start"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let landed = landed.lock().unwrap().clone();
        assert_eq!(landed.len(), 1);
        assert_eq!(landed[0].1, None);
        let proof =
            support::dpop::read(landed[0].0.as_deref().expect("the proof followed")).unwrap();
        assert_eq!(proof.claims["htu"], away.url("/start"));
    }
}
