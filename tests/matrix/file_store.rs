//! `FileStore` with the feature left: the reqwest middleware.

use http::StatusCode;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::TokenCache;

use super::*;
use crate::support::token_server::TestServer;

/// Through the reqwest middleware, rotated refresh tokens are saved before
/// use: a restarted process restores the latest token and spends no token
/// request.
#[tokio::test]
async fn pair_file_store_reqwest_a_restart_restores_the_latest_token() {
    let server = TestServer::start().await;
    server.set_rotate_refresh(true);
    server.add_refresh_token("rt-seed");
    let dir = temp_dir();
    let path = token_file(&dir, "token.json");
    let process = || {
        let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
            .store(FileStore::new(&path))
            .build();
        reqwest_client(OAuth2Middleware::new(cache))
    };
    let first = process();
    assert_eq!(
        reqwest_get(&first, &server.url("/a")).await,
        Ok(StatusCode::OK)
    );
    server.revoke("at-1");
    assert_eq!(
        reqwest_get(&first, &server.url("/b")).await,
        Ok(StatusCode::OK)
    );
    drop(first);
    let restarted = process();
    assert_eq!(
        reqwest_get(&restarted, &server.url("/c")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        token_params(&server, "refresh_token"),
        some(&["rt-seed", "rt-1"])
    );
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-1", "Bearer at-2", "Bearer at-2"])
    );
}
