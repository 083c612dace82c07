//! The 401 backoff with each other feature: a resource that refuses every
//! token costs two token requests (then one per step, an hour here), and
//! refused tokens do not come back.

use http::StatusCode;
use tower::Layer;
use tower_oauth2::layer::AuthPolicy;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::OAuth2Layer;

use super::*;
use crate::support::client::http_client;
use crate::support::token_server::TestServer;

/// Path-only requests (tonic's) to a resource refusing every token: two
/// tokens, then the refusals pass through.
#[tokio::test]
async fn pair_backoff_origin_form_an_always_refusing_resource_costs_two_tokens() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let layer =
        OAuth2Layer::new(server.client_credentials().build()).unauthorized_backoff(an_hour());
    let svc = over_connection(&server, layer).await;
    for _ in 0..5 {
        let sent = status(&svc, origin_form_get(&server, "/pkg.Svc/Call")).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    let mut expected = values(&["Bearer at-1"]);
    expected.extend(vec!["Bearer at-2".to_owned(); 5]);
    assert_eq!(auths(&server), expected);
    assert_eq!(server.token_requests(), 2);
}

/// Issue 19, defect 14: tokens the resource refused are not restored from
/// the token file by a restarted process.
#[tokio::test]
async fn pair_backoff_file_store_a_refused_token_is_not_restored_after_a_restart() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let dir = temp_dir();
    let path = token_file(&dir, "token.json");
    let process = || {
        let cache = server
            .client_credentials()
            .store(FileStore::new(&path))
            .build();
        OAuth2Layer::new(cache)
            .unauthorized_backoff(an_hour())
            .layer(http_client())
    };
    let first = process();
    for i in 0..2 {
        let sent = status(&first, server.get(&format!("/r/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    drop(first);
    // Before the restart: the mark must name the last token refused.
    until_marked_refused(&path, "at-2").await;
    // The resource accepts new tokens again; the refused ones stay refused.
    server.set_reject_all(false);
    server.revoke("at-1");
    server.revoke("at-2");
    let restarted = process();
    assert_eq!(
        status(&restarted, server.get("/after")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-2", "Bearer at-3"]),
        "a refused token was restored and sent"
    );
    assert_eq!(server.token_requests(), 3);
}

/// Issue 19, defect 15, through the reqwest middleware: resource X refuses
/// every token, resource Y accepts it. Y's answers do not end X's backoff:
/// X costs two tokens, whatever Y answers, and Y keeps its token.
#[tokio::test]
async fn pair_backoff_reqwest_an_accepting_resource_does_not_defeat_the_backoff() {
    let server = TestServer::start().await;
    let x = Refusing::start().await;
    let cache = server.client_credentials().build();
    let policy = AuthPolicy::new(cache).unauthorized_backoff(an_hour());
    let client = reqwest_client(OAuth2Middleware::from_policy(policy));
    for i in 0..10 {
        let refused = reqwest_get(&client, &x.url(&format!("/x/{i}"))).await;
        assert_eq!(refused, Ok(StatusCode::UNAUTHORIZED));
        let fine = reqwest_get(&client, &server.url(&format!("/y/{i}"))).await;
        assert_eq!(fine, Ok(StatusCode::OK));
    }
    assert_eq!(
        server.token_requests(),
        2,
        "each 401 of X after an answer of Y fetched a token"
    );
    let mut expected = values(&["Bearer at-1"]);
    expected.extend(vec!["Bearer at-2".to_owned(); 10]);
    assert_eq!(x.seen(), expected);
    assert_eq!(auths(&server), vec!["Bearer at-2".to_owned(); 10]);
}

/// backoff × reqwest, a redirect followed to another origin: reqwest's
/// default policy follows it, taking `Authorization` off, so the other
/// origin's 401 answers a request that carried no token. It says nothing
/// of the token (as with DPoP, where the proof named another URL): the
/// token is not invalidated, no token is fetched, nothing is resent, and
/// the 401 is the answer. (In a fleet, such an invalidation would also
/// remove the fleet's token from Redis.)
#[tokio::test]
async fn pair_backoff_reqwest_a_401_from_the_origin_a_redirect_led_to_refuses_no_token() {
    let server = TestServer::start().await;
    let elsewhere = Refusing::start().await;
    let moved = redirecting_to(elsewhere.url("/moved")).await;
    let cache = server.client_credentials().build();
    let policy = AuthPolicy::new(cache.clone()).unauthorized_backoff(an_hour());
    let client = reqwest_client(OAuth2Middleware::from_policy(policy));
    for i in 0..3 {
        let answer = reqwest_get(&client, &moved.url(&format!("/api/{i}"))).await;
        assert_eq!(answer, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(elsewhere.seen(), ["-", "-", "-"], "a request was resent");
    let stats = cache.stats();
    assert_eq!(
        (server.token_requests(), stats.invalidations),
        (1, 0),
        "another origin's 401 to a request without the token refused the token"
    );
}
