//! Keyed caches (`KeyedOAuth2Layer`) with each other feature. (The reqwest
//! middleware has no keyed form: see ARCHITECTURE.md's matrix.)

use http::{HeaderMap, StatusCode, Uri};
use tower::Layer;
use tower_oauth2::layer::KeyedOAuth2Layer;
use tower_oauth2::store::FileStore;
use tower_oauth2::{TokenCache, TokenEndpoint, TokenRequest};

use super::*;
use crate::support::client::{http_client, keyed_by_port, HttpClient};
use crate::support::token_server::{bearer, TestServer};

/// A layer keyed by API, each API's token asked for with its own
/// `audience` (a name, not a URL: the test's resources all live on the
/// test server's origin), from `endpoint`.
fn by_api(endpoint: TokenEndpoint<HttpClient>) -> KeyedOAuth2Layer<String> {
    KeyedOAuth2Layer::new(api_of, move |api: &String| {
        let request = TokenRequest::client_credentials().audience(api.clone());
        Some(TokenCache::builder(endpoint.clone(), request).build())
    })
}

/// Each key's token is bound to the one DPoP key, each request gets a
/// fresh proof, and a nonce one key's request learned from an origin is
/// sent by the other key's requests to that origin.
#[tokio::test]
async fn pair_keyed_dpop_each_key_sends_its_own_bound_token_and_shares_the_origins_nonce() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    let key = a_key();
    let svc = by_api(server.endpoint().dpop(key)).layer(http_client());
    for path in ["/orders/1", "/billing/1", "/orders/2"] {
        assert_eq!(status(&svc, server.get(path)).await, Ok(StatusCode::OK));
    }
    assert_eq!(
        auths(&server),
        values(&["DPoP at-1", "DPoP at-1", "DPoP at-2", "DPoP at-1"])
    );
    // One nonce round trip for the origin, whichever key.
    assert_eq!(server.dpop_refusals(), ["resource: UseNonce"]);
    assert_eq!(server.token_requests(), 2);
}

/// Path-only requests (tonic's) through a keyed layer told the
/// connection's origin: each key's token goes on its own paths.
#[tokio::test]
async fn pair_keyed_origin_form_each_key_sends_its_token_on_path_only_requests() {
    let server = TestServer::start().await;
    let svc = by_api(server.endpoint())
        .destinations(to_connection(&server))
        .layer(connection(&server).await);
    for path in ["/orders/1", "/billing/1", "/orders/2"] {
        let sent = status(&svc, origin_form_get(&server, path)).await;
        assert_eq!(sent, Ok(StatusCode::OK));
    }
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/2", "at-1"),
        ]
    );
    assert_eq!(server.token_requests(), 2);
}

/// Issue 19, defect 8: keyed layer + DPoP + `origin_form_to`: a path-only
/// request's proof names the `origin_form_to` origin (`htu`), as through
/// `OAuth2Layer`.
#[tokio::test]
async fn pair_keyed_origin_form_with_dpop_path_only_requests_are_proved() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let key = a_key();
    let svc = by_api(server.endpoint().dpop(key))
        .destinations(to_connection(&server))
        .layer(connection(&server).await);
    for path in ["/orders/1", "/billing/1"] {
        let sent = status(&svc, origin_form_get(&server, path)).await;
        assert_eq!(sent, Ok(StatusCode::OK), "{path}");
    }
    assert_eq!(auths(&server), values(&["DPoP at-1", "DPoP at-2"]));
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

/// A key per user, each user's cache from that user's refresh token
/// (rotated): each user's requests carry that user's token, and a user's
/// refused token is replaced with that user's refresh token.
#[tokio::test]
async fn pair_keyed_grants_a_key_per_user_sends_each_user_their_own_token() {
    let server = TestServer::start().await;
    server.set_rotate_refresh(true);
    server.add_refresh_token("rt-alice");
    server.add_refresh_token("rt-bob");
    let endpoint = server.endpoint();
    let layer = KeyedOAuth2Layer::new(
        |_: &Uri, headers: &HeaderMap| Some(headers.get("x-user")?.to_str().ok()?.to_owned()),
        move |user: &String| {
            Some(TokenCache::from_refresh_token(endpoint.clone(), format!("rt-{user}")).build())
        },
    );
    let svc = layer.layer(http_client());
    let as_user = |user: &str| {
        let mut request = server.get("/me");
        let value = http::HeaderValue::from_str(user).expect("a header value");
        request.headers_mut().insert("x-user", value);
        request
    };
    for user in ["alice", "bob", "alice"] {
        assert_eq!(status(&svc, as_user(user)).await, Ok(StatusCode::OK));
    }
    server.revoke("at-1");
    for user in ["alice", "bob"] {
        assert_eq!(status(&svc, as_user(user)).await, Ok(StatusCode::OK));
    }
    assert_eq!(
        auths(&server),
        values(&[
            "Bearer at-1",
            "Bearer at-2",
            "Bearer at-1",
            "Bearer at-1",
            "Bearer at-3",
            "Bearer at-2"
        ])
    );
    // Alice's refetch used her rotated refresh token, never bob's.
    assert_eq!(
        token_params(&server, "refresh_token"),
        some(&["rt-alice", "rt-bob", "rt-1"])
    );
}

/// Revoking one key's cache revokes that key's token only; the key then
/// gets a new token, the others keep theirs.
#[tokio::test]
async fn pair_keyed_revocation_revoking_one_keys_cache_leaves_the_others_alone() {
    let server = TestServer::start().await;
    let layer = by_api(revocable(&server));
    let svc = layer.layer(http_client());
    for path in ["/orders/1", "/billing/1"] {
        assert_eq!(status(&svc, server.get(path)).await, Ok(StatusCode::OK));
    }
    let orders = layer.cache_for(&"orders".to_owned()).expect("a cache");
    orders.revoke().await.expect("revoked");
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["token=at-1&token_type_hint=access_token"]);
    for path in ["/orders/2", "/billing/2"] {
        assert_eq!(status(&svc, server.get(path)).await, Ok(StatusCode::OK));
    }
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-3", "Bearer at-2"])
    );
    assert_eq!(server.token_requests(), 3);
}

/// One key's resource refuses every token: that key backs off after two
/// tokens; the other key, whose resource accepts, is untouched.
#[tokio::test]
async fn pair_keyed_backoff_one_keys_refusals_cost_that_key_two_tokens() {
    let server = TestServer::start().await;
    let refusing = Refusing::start().await;
    let layer = keyed_by_port(server.endpoint()).unauthorized_backoff(an_hour());
    let svc = layer.layer(http_client());
    for i in 0..5 {
        let refused = status(&svc, crate::support::client::get(&refusing.url("/x"))).await;
        assert_eq!(refused, Ok(StatusCode::UNAUTHORIZED));
        let fine = status(&svc, server.get(&format!("/y/{i}"))).await;
        assert_eq!(fine, Ok(StatusCode::OK));
    }
    // The refusing key: at-1, refused; at-2 (the second token request),
    // refused: the step starts. The accepting key: at-3 throughout.
    let mut expected = values(&["Bearer at-1"]);
    expected.extend(vec!["Bearer at-2".to_owned(); 5]);
    assert_eq!(refusing.seen(), expected);
    assert_eq!(auths(&server), vec!["Bearer at-3".to_owned(); 5]);
    assert_eq!(server.token_requests(), 3);
}

/// Issue 19, defect 14: keyed layer with `max_keys(1)` and a store: a
/// token a resource refused is not restored when its key comes back.
#[tokio::test]
async fn pair_keyed_file_store_a_refused_token_is_not_restored_when_its_key_comes_back() {
    let server = TestServer::start().await;
    let dir = temp_dir();
    let (endpoint, files) = (server.endpoint(), dir.path().to_owned());
    let layer = KeyedOAuth2Layer::new(api_of, move |api: &String| {
        let request = TokenRequest::client_credentials().audience(api.clone());
        let store = FileStore::new(files.join(format!("{api}.json")));
        Some(
            TokenCache::builder(endpoint.clone(), request)
                .store(store)
                .build(),
        )
    })
    .max_keys(1)
    // The 401 comes back as it came: the refused token is dropped, no new
    // one fetched, so the store still holds the refused one.
    .retry_unauthorized(false);
    let svc = layer.layer(http_client());
    let file = dir.path().join("orders.json");
    let marked = until_marked_refused(&file, "at-1");
    let taken_back = "the refused token was restored from the store";
    a_refused_token_is_not_taken_back(&server, &svc, marked, taken_back).await;
}

/// keyed, a layer cloned and the clone given other options (here: no 401
/// retry): each keeps its own, as `OnBehalfLayer` does
/// (`attack_on_behalf_a_clone_given_other_options_does_not_lend_them_to_the_original`).
/// Each key's policy holds the options of the layer that made it, so the
/// clone given an option takes caches of its own: the original's first
/// request fetches its own token, a refusal is resent by the original
/// only, and the clone returns its 401 as its option says.
#[tokio::test]
async fn attack_keyed_a_clone_given_other_options_does_not_lend_them_to_the_original() {
    let server = TestServer::start().await;
    let original = by_api(server.endpoint());
    let no_retry = original.clone().retry_unauthorized(false);
    let (original, no_retry) = (original.layer(http_client()), no_retry.layer(http_client()));
    let get = |path: &str| server.get(path);
    assert_eq!(
        status(&no_retry, get("/orders/1")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        status(&original, get("/orders/2")).await,
        Ok(StatusCode::OK)
    );
    server.revoke("at-1");
    server.revoke("at-2");
    assert_eq!(
        status(&original, get("/orders/3")).await,
        Ok(StatusCode::OK),
        "the clone's retry_unauthorized(false) reached the original"
    );
    assert_eq!(
        status(&no_retry, get("/orders/4")).await,
        Ok(StatusCode::UNAUTHORIZED),
        "the original's retry reached the clone"
    );
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/orders/2", "at-2"),
            bearer("/orders/3", "at-2"),
            bearer("/orders/3", "at-3"),
            bearer("/orders/4", "at-1"),
        ]
    );
}
