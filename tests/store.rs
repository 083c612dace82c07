//! Persisted tokens: a rotated refresh token is saved before it is used, a
//! restart picks up the newest one, and a failing store does not fail requests.

mod support;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::client::http_client;
use support::token_server::TestServer;
use tower::{Layer, ServiceExt};
use tower_oauth2::store::{FileStore, TokenStore};
use tower_oauth2::token::Token;
use tower_oauth2::{OAuth2Layer, TokenCache};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tower-oauth2-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn get(cache: &TokenCache, server: &TestServer) -> StatusCode {
    let svc = OAuth2Layer::new(cache.clone()).layer(http_client());
    let req = Request::get(server.url("/api"))
        .body(Full::<Bytes>::default())
        .unwrap();
    svc.oneshot(req).await.unwrap().status()
}

/// A FileStore that records, at each save, how many resource requests the
/// server had seen: proof the token was saved before it was used.
struct Witness {
    file: FileStore,
    server_state: Arc<support::token_server::State>,
    seen_at_save: Arc<Mutex<Vec<(String, usize)>>>,
}

impl TokenStore for Witness {
    fn load(&self) -> io::Result<Option<Token>> {
        self.file.load()
    }
    fn save(&self, token: &Token) -> io::Result<()> {
        let used = self.server_state.resource_count();
        let rt = token.refresh_token().unwrap().expose_secret().to_owned();
        self.seen_at_save.lock().unwrap().push((rt, used));
        self.file.save(token)
    }
}

#[tokio::test]
async fn rotated_refresh_tokens_are_saved_before_use_and_survive_a_restart() {
    let dir = temp_dir("rotate");
    let path = dir.join("tokens.json");
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    server.set_rotate_refresh(true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .store(Witness {
            file: FileStore::new(&path),
            server_state: server.state.clone(),
            seen_at_save: seen.clone(),
        })
        .build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    server.revoke("at-1");
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    // rt-1 was saved before at-1 was first sent (0 resource requests then);
    // rt-2 before at-2 (2 requests then: the first, and the 401).
    assert_eq!(
        *seen.lock().unwrap(),
        [("rt-1".to_owned(), 0), ("rt-2".to_owned(), 2)]
    );
    let on_disk = FileStore::new(&path).load().unwrap().unwrap();
    assert_eq!(on_disk.refresh_token().unwrap().expose_secret(), "rt-2");
    assert_eq!(on_disk.access_token().expose_secret(), "at-2");

    // "Restart": a new cache configured with the long-spent seed. The stored
    // access token is still valid, so no fetch is needed at all ...
    let restarted = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .store(FileStore::new(&path))
        .build();
    assert_eq!(get(&restarted, &server).await, StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
    // ... and when one is, it uses the stored refresh token, not the seed.
    server.revoke("at-2");
    assert_eq!(get(&restarted, &server).await, StatusCode::OK);
    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("refresh_token").unwrap())
        .collect();
    assert_eq!(sent, ["rt-seed", "rt-1", "rt-2"]);
    assert_eq!(
        FileStore::new(&path)
            .load()
            .unwrap()
            .unwrap()
            .refresh_token()
            .unwrap()
            .expose_secret(),
        "rt-3"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

struct Broken;

impl TokenStore for Broken {
    fn load(&self) -> io::Result<Option<Token>> {
        Err(io::Error::other("disk on fire"))
    }
    fn save(&self, _: &Token) -> io::Result<()> {
        Err(io::Error::other("disk full"))
    }
}

#[tokio::test]
async fn a_failing_store_is_counted_not_fatal() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .store(Broken)
        .build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    assert_eq!(cache.stats().store_failures, 1);
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn an_expired_stored_token_is_not_used() {
    let dir = temp_dir("expired");
    let path = dir.join("tokens.json");
    std::fs::write(
        &path,
        br#"{"access_token":"at-old","token_type":"Bearer","expires_in":60,"refresh_token":"rt-stored","issued_at_ms":1000}"#,
    )
    .unwrap();
    let server = TestServer::start().await;
    server.add_refresh_token("rt-stored");
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .store(FileStore::new(&path))
        .build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    assert_eq!(
        server.received()[0].param("refresh_token").as_deref(),
        Some("rt-stored")
    );
    assert_eq!(
        server.resource_requests()[0].1.as_deref(),
        Some("Bearer at-1")
    );
    std::fs::remove_dir_all(dir).unwrap();
}
