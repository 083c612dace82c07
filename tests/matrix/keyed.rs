//! Keyed caches (`KeyedOAuth2Layer`) with each other feature. (The reqwest
//! middleware has no keyed form: see ARCHITECTURE.md's matrix.)

use http::{HeaderMap, StatusCode, Uri};
use tower::Layer;
use tower_oauth2::layer::KeyedOAuth2Layer;
use tower_oauth2::store::FileStore;
use tower_oauth2::{TokenCache, TokenEndpoint, TokenRequest};

use super::*;
use crate::redis_server::RedisServer;
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

/// Sends `request` through `svc` itself, not a clone (polled ready, then
/// called, as a connection's or a worker's service is): the handle keeps
/// its last key and a copy of that key's token between requests.
async fn on_handle<S, B>(svc: &mut S, request: Request<Full<Bytes>>) -> Result<StatusCode, String>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Display,
{
    let ready = svc.ready().await.map_err(|e| e.to_string())?;
    let response = ready.call(request).await;
    response.map(|r| r.status()).map_err(|e| e.to_string())
}

/// keyed × revocation, with handles that hold a copy of the revoked
/// token (each has sent it more than once, its last key the revoked
/// one): after `cache_for(key).revoke()` neither sends it again; the key
/// gets one new token, the other key keeps its own.
#[tokio::test]
async fn pair_keyed_revocation_no_handle_sends_the_revoked_token_it_copied() {
    let server = TestServer::start().await;
    let layer = by_api(revocable(&server));
    let (mut one, mut two) = (layer.layer(http_client()), layer.layer(http_client()));
    let before = [
        "/orders/1",
        "/orders/2",
        "/orders/3",
        "/billing/1",
        "/orders/4",
        "/orders/5",
    ];
    for path in before {
        assert_eq!(
            on_handle(&mut one, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    for path in ["/orders/6", "/orders/7", "/orders/8"] {
        assert_eq!(
            on_handle(&mut two, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    let orders = layer.cache_for(&"orders".to_owned()).expect("a cache");
    orders.revoke().await.expect("revoked");
    for path in ["/orders/9", "/orders/10", "/billing/2", "/orders/11"] {
        assert_eq!(
            on_handle(&mut one, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    for path in ["/orders/12", "/orders/13"] {
        assert_eq!(
            on_handle(&mut two, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    let mut sent: Vec<_> = before
        .iter()
        .map(|p| {
            bearer(
                p,
                if p.contains("billing") {
                    "at-2"
                } else {
                    "at-1"
                },
            )
        })
        .collect();
    sent.extend(["/orders/6", "/orders/7", "/orders/8"].map(|p| bearer(p, "at-1")));
    sent.extend([
        bearer("/orders/9", "at-3"),
        bearer("/orders/10", "at-3"),
        bearer("/billing/2", "at-2"),
        bearer("/orders/11", "at-3"),
        bearer("/orders/12", "at-3"),
        bearer("/orders/13", "at-3"),
    ]);
    assert_eq!(server.path_authorizations(), sent);
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["token=at-1&token_type_hint=access_token"]);
    assert_eq!(server.token_requests(), 3);
}

/// keyed × fleet, with a handle holding a copy of a token another process
/// then got refused: process two's 401 for `orders`' token makes it fetch
/// the fleet's next one; process one's handle, whose copy is of the
/// refused token, gets its 401, takes the new token from Redis (no token
/// request) and sends only that from then on; `billing`'s token is the
/// fleet's one throughout.
#[tokio::test]
async fn pair_fleet_keyed_one_handle_takes_the_token_another_process_fetched_after_a_401() {
    if !crate::redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let process = || keyed_fleet_process(&server, &redis);
    let (mut one, mut two) = (process(), process());
    for path in [
        "/orders/1",
        "/billing/1",
        "/orders/2",
        "/orders/3",
        "/orders/4",
    ] {
        assert_eq!(
            on_handle(&mut one, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    for path in ["/orders/5", "/billing/2"] {
        assert_eq!(
            on_handle(&mut two, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    server.revoke("at-1");
    assert_eq!(
        on_handle(&mut two, server.get("/orders/6")).await,
        Ok(StatusCode::OK)
    );
    for path in ["/orders/7", "/orders/8", "/orders/9", "/billing/3"] {
        assert_eq!(
            on_handle(&mut one, server.get(path)).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/2", "at-1"),
            bearer("/orders/3", "at-1"),
            bearer("/orders/4", "at-1"),
            bearer("/orders/5", "at-1"),
            bearer("/billing/2", "at-2"),
            bearer("/orders/6", "at-1"),
            bearer("/orders/6", "at-3"),
            bearer("/orders/7", "at-1"),
            bearer("/orders/7", "at-3"),
            bearer("/orders/8", "at-3"),
            bearer("/orders/9", "at-3"),
            bearer("/billing/3", "at-2"),
        ]
    );
    assert_eq!(
        token_params(&server, "audience"),
        some(&["orders", "billing", "orders"])
    );
}

/// keyed × grants with a subject (token exchange, as `OnBehalfLayer`
/// does, here keyed by the caller's header), one handle serving users in
/// turn: each request carries its own user's exchanged token, the
/// handle's copy of one user's token never going with another's request,
/// and a refused token of one user is replaced with a new exchange of
/// that user's subject token only.
#[tokio::test]
async fn pair_keyed_grants_one_handle_serving_users_in_turn_sends_each_their_own_token() {
    let server = TestServer::start().await;
    let endpoint = server.endpoint();
    let layer = KeyedOAuth2Layer::new(
        |_: &Uri, headers: &HeaderMap| Some(headers.get("x-user")?.to_str().ok()?.to_owned()),
        move |user: &String| {
            let request = TokenRequest::token_exchange(format!("st-{user}"), ACCESS_TOKEN_TYPE);
            Some(TokenCache::builder(endpoint.clone(), request).build())
        },
    );
    let mut svc = layer.layer(http_client());
    let as_user = |user: &str| {
        let mut request = server.get(&format!("/me/{user}"));
        let value = http::HeaderValue::from_str(user).expect("a header value");
        request.headers_mut().insert("x-user", value);
        request
    };
    let turns = [
        "alice", "bob", "alice", "alice", "alice", "bob", "bob", "alice", "alice",
    ];
    for user in turns {
        assert_eq!(on_handle(&mut svc, as_user(user)).await, Ok(StatusCode::OK));
    }
    server.revoke("at-1");
    for user in ["alice", "alice", "bob", "alice", "alice"] {
        assert_eq!(on_handle(&mut svc, as_user(user)).await, Ok(StatusCode::OK));
    }
    let token = |user: &str| if user == "alice" { "at-1" } else { "at-2" };
    let mut sent: Vec<_> = turns
        .iter()
        .map(|u| bearer(&format!("/me/{u}"), token(u)))
        .collect();
    sent.extend([
        bearer("/me/alice", "at-1"),
        bearer("/me/alice", "at-3"),
        bearer("/me/alice", "at-3"),
        bearer("/me/bob", "at-2"),
        bearer("/me/alice", "at-3"),
        bearer("/me/alice", "at-3"),
    ]);
    assert_eq!(server.path_authorizations(), sent);
    assert_eq!(
        token_params(&server, "subject_token"),
        some(&["st-alice", "st-bob", "st-alice"])
    );
}

/// keyed, attacked: with no destinations chosen, a key's token goes only
/// to the API its token request names (here its `resource`), as
/// `OAuth2Layer::new`'s and `OnBehalfLayer`'s do: a request its key
/// function maps to `orders` but sent to another origin goes without a
/// token, and costs no token request.
#[tokio::test]
async fn attack_keyed_a_keys_token_goes_only_to_the_api_its_token_request_names() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let (endpoint, api) = (server.endpoint(), server.url("/"));
    let layer = KeyedOAuth2Layer::new(api_of, move |_: &String| {
        let request = TokenRequest::client_credentials().resource(api.clone());
        Some(TokenCache::builder(endpoint.clone(), request).build())
    });
    let svc = layer.layer(http_client());
    assert_eq!(
        status(&svc, server.get("/orders/1")).await,
        Ok(StatusCode::OK)
    );
    // The other API refuses whatever it gets (no token of its own issuing).
    let elsewhere = status(&svc, other.get("/orders/2")).await;
    assert_eq!(elsewhere, Ok(StatusCode::UNAUTHORIZED));
    assert_eq!(
        other.path_authorizations(),
        [("/orders/2".to_owned(), None)],
        "orders' token went to an origin its token request does not name"
    );
    // A key first used elsewhere fetches nothing.
    let elsewhere = status(&svc, other.get("/billing/1")).await;
    assert_eq!(elsewhere, Ok(StatusCode::UNAUTHORIZED));
    assert_eq!(server.token_requests(), 1);
    assert_eq!(other.authorizations(), [None, None]);
}
