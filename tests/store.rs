//! Persisted tokens: a rotated refresh token is saved before it is used, a
//! restart picks up the newest one, and a failing store does not fail requests.

use crate::support;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::client::http_client;
use support::token_server::TestServer;
use tower::{Layer, ServiceExt};
use tower_oauth2::store::{ConfigFingerprint, FileStore, StoredToken, TokenStore};
use tower_oauth2::token::Token;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tower-oauth2-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn get(cache: &TokenCache, server: &TestServer) -> StatusCode {
    // The token goes to the test server: some configurations here name
    // another API (`resource`), where `OAuth2Layer::new` would send it.
    let svc = OAuth2Layer::for_origin(cache.clone(), server.url(""))
        .unwrap()
        .layer(http_client());
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
    fn load(&self, fingerprint: &ConfigFingerprint) -> io::Result<Option<StoredToken>> {
        self.file.load(fingerprint)
    }
    fn save(&self, stored: &StoredToken) -> io::Result<()> {
        // A token marked refused after a 401 is no new token: not counted.
        if !stored.access_token_refused() {
            let used = self.server_state.resource_count();
            let token = stored.token();
            let rt = token.refresh_token().unwrap().expose_secret().to_owned();
            self.seen_at_save.lock().unwrap().push((rt, used));
        }
        self.file.save(stored)
    }
}

/// What `path` holds, loaded as a cache with any configuration would.
fn on_disk(path: &std::path::Path) -> Token {
    let any = ConfigFingerprint::from_bytes([0; 32]);
    FileStore::new(path)
        .load(&any)
        .unwrap()
        .unwrap()
        .into_token()
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
    let stored = on_disk(&path);
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-2");
    assert_eq!(stored.access_token().expose_secret(), "at-2");

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
        on_disk(&path).refresh_token().unwrap().expose_secret(),
        "rt-3"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

struct Broken;

impl TokenStore for Broken {
    fn load(&self, _: &ConfigFingerprint) -> io::Result<Option<StoredToken>> {
        Err(io::Error::other("disk on fire"))
    }
    fn save(&self, _: &StoredToken) -> io::Result<()> {
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
    let server = TestServer::start().await;
    let builder = TokenCache::from_refresh_token(server.endpoint(), "rt-seed");
    std::fs::write(
        &path,
        format!(
            r#"{{"access_token":"at-old","token_type":"Bearer","expires_in":60,"refresh_token":"rt-stored","issued_at_ms":1000,"config_fingerprint":"{}"}}"#,
            builder.fingerprint()
        ),
    )
    .unwrap();
    server.add_refresh_token("rt-stored");
    let cache = builder.store(FileStore::new(&path)).build();
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

// ---- issue 10, defect 3: FileStore's temporary file ----

/// Defect 3: a leftover (or planted) world-readable file at the old fixed
/// temporary path must not make the token file world-readable.
#[cfg(unix)]
#[test]
fn a_planted_temp_file_does_not_widen_the_token_files_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("planted-mode");
    let path = dir.join("t.json");
    let planted = dir.join(".t.json.tmp");
    std::fs::write(&planted, b"left over").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = FileStore::new(&path);
    store.save(&stored_token("rt-1")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Defect 3: a symlink planted at the old fixed temporary path must not
/// redirect the refresh token to the link's target.
#[cfg(unix)]
#[test]
fn a_symlink_planted_at_the_temp_path_is_not_followed() {
    let dir = temp_dir("planted-link");
    let path = dir.join("t.json");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"victim's bytes").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(".t.json.tmp")).unwrap();
    let store = FileStore::new(&path);
    store.save(&stored_token("rt-1")).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim's bytes");
    let back = on_disk(&path);
    assert_eq!(back.refresh_token().unwrap().expose_secret(), "rt-1");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Defect 3: a token file path that is itself a symlink is refused, with a
/// typed error, unless the user opts in.
#[cfg(unix)]
#[test]
fn a_token_path_that_is_a_symlink_is_refused() {
    let dir = temp_dir("path-link");
    let path = dir.join("t.json");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"victim's bytes").unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let store = FileStore::new(&path);
    let e = store.save(&stored_token("rt-1")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim's bytes");
    assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
    assert_eq!(
        e.to_string(),
        format!(
            "{} is a symbolic link; FileStore does not write tokens through one (a link \
             planted there would send the refresh token where it points): give the path \
             of the file itself, or call FileStore::follow_symlink(true) if the link is yours",
            path.display()
        )
    );
    // Opted in: the link's target is replaced, the link kept.
    let store = FileStore::new(&path).follow_symlink(true);
    store.save(&stored_token("rt-1")).unwrap();
    assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
    let back = on_disk(&victim);
    assert_eq!(back.refresh_token().unwrap().expose_secret(), "rt-1");
    std::fs::remove_dir_all(dir).unwrap();
}

fn stored_token(rt: &str) -> StoredToken {
    let token = Token::new("at-1", tower_oauth2::token::TokenType::Bearer)
        .with_expires_in(std::time::Duration::from_secs(3600))
        .with_refresh_token(rt);
    StoredToken::new(token, ConfigFingerprint::from_bytes([0; 32]))
}

// ---- issue 10, defect 5: a stored token belongs to one configuration ----

/// Defect 5: a token stored by one configuration is neither sent nor
/// refreshed by a cache configured differently; the same configuration
/// still uses it.
#[tokio::test]
async fn a_token_stored_under_another_configuration_is_not_used() {
    use tower_oauth2::{ClientAuth, TokenEndpoint, TokenRequest, TokenUrl};
    let dir = temp_dir("fingerprint");
    let path = dir.join("tokens.json");
    let server = TestServer::start().await;
    let endpoint = |url: &str, client: ClientAuth| {
        TokenEndpoint::new(http_client(), TokenUrl::new(url).unwrap(), client)
    };
    let basic = || ClientAuth::client_secret_basic("client", "secret");
    let url = server.token_url();
    let alice = || TokenRequest::password("alice", "pw").scope("read");
    // (what changed, endpoint, request)
    let configs = [
        ("first", endpoint(&url, basic()), alice()),
        ("scope", endpoint(&url, basic()), alice().scope("write")),
        (
            "audience",
            endpoint(&url, basic()),
            alice().audience("api://a"),
        ),
        (
            "resource",
            endpoint(&url, basic()),
            alice().resource("https://r1.example"),
        ),
        (
            "resources",
            endpoint(&url, basic()),
            alice()
                .resource("https://r1.example")
                .resource("https://r2.example"),
        ),
        (
            "username",
            endpoint(&url, basic()),
            TokenRequest::password("bob", "pw").scope("read"),
        ),
        (
            "grant",
            endpoint(&url, basic()),
            TokenRequest::client_credentials().scope("read"),
        ),
        (
            "client id",
            endpoint(&url, ClientAuth::client_secret_basic("other", "secret")),
            alice(),
        ),
        (
            "client auth method",
            endpoint(&url, ClientAuth::client_secret_post("client", "secret")),
            alice(),
        ),
        (
            "token URL",
            endpoint(&format!("{url}?tenant=2"), basic()),
            alice(),
        ),
    ];
    for (n, (changed, endpoint, request)) in configs.into_iter().enumerate() {
        let grant = request.grant_type().to_owned();
        let cache = TokenCache::builder(endpoint, request)
            .store(FileStore::new(&path))
            .build();
        assert_eq!(get(&cache, &server).await, StatusCode::OK, "{changed}");
        let sent = server.received();
        assert_eq!(
            sent.len(),
            n + 1,
            "{changed}: one fetch, with its own grant"
        );
        assert_eq!(sent[n].param("grant_type"), Some(grant), "{changed}");
        let at = format!("Bearer at-{}", n + 1);
        assert_eq!(
            server.resource_requests()[n].1.as_deref(),
            Some(&*at),
            "{changed}"
        );
    }
    // The configuration that stored the token uses it: no fetch.
    let cache = TokenCache::builder(endpoint(&format!("{url}?tenant=2"), basic()), alice())
        .store(FileStore::new(&path))
        .build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    assert_eq!(server.token_requests(), 10);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- issue 10, "Also": a restored token issued in the future ----

/// A restored token whose `issued_at` lies in the future (a clock set
/// back, a file from elsewhere) is suspect: it counts as expired, and its
/// refresh token is used to get a new one.
#[tokio::test]
async fn a_restored_token_issued_in_the_future_counts_as_expired() {
    let dir = temp_dir("future");
    let path = dir.join("tokens.json");
    let server = TestServer::start().await;
    let request = || tower_oauth2::TokenRequest::password("alice", "pw");
    let cache = TokenCache::builder(server.endpoint(), request())
        .store(FileStore::new(&path))
        .build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    // Move issued_at an hour into the future.
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    json["issued_at_ms"] = (now_ms + 3_600_000).into();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();

    let restarted = TokenCache::builder(server.endpoint(), request())
        .store(FileStore::new(&path))
        .build();
    assert_eq!(get(&restarted, &server).await, StatusCode::OK);
    let sent = server.received();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].param("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(sent[1].param("refresh_token").as_deref(), Some("rt-1"));
    assert_eq!(
        server.resource_requests()[1].1.as_deref(),
        Some("Bearer at-2")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- issue 10, defect 6: deadlines on recording a token ----

/// A store whose `save` blocks until the test lets it go (a hung filesystem).
struct Hung {
    release: Mutex<std::sync::mpsc::Receiver<()>>,
    saves: Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenStore for Hung {
    fn load(&self, _: &ConfigFingerprint) -> io::Result<Option<StoredToken>> {
        Ok(None)
    }
    fn save(&self, _: &StoredToken) -> io::Result<()> {
        let _ = self.release.lock().unwrap().recv();
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// Defect 6: a save that never returns does not hold the token back: after
/// the store deadline the token is used, and the failure counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_does_not_hold_the_token_back() {
    let server = TestServer::start().await;
    let (_release, rx) = std::sync::mpsc::channel::<()>();
    let saves = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cache = server
        .client_credentials()
        .store(Hung {
            release: Mutex::new(rx),
            saves: saves.clone(),
        })
        .store_timeout(std::time::Duration::from_millis(200))
        .build();
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), get(&cache, &server)).await;
    assert_eq!(
        got.expect("the token arrives despite the hung store"),
        StatusCode::OK
    );
    assert_eq!(cache.stats().store_failures, 1);
    assert_eq!(saves.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Defect 6: an `on_refresh_token` callback that blocks does not hold the
/// token back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_refresh_token_callback_does_not_hold_the_token_back() {
    let server = TestServer::start().await;
    let (release, rx) = std::sync::mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let cache = TokenCache::builder(
        server.endpoint(),
        tower_oauth2::TokenRequest::password("alice", "pw"),
    )
    .on_refresh_token(move |_| {
        let _ = rx.lock().unwrap().recv();
    })
    .store_timeout(std::time::Duration::from_millis(200))
    .build();
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), get(&cache, &server)).await;
    assert_eq!(
        got.expect("the token arrives despite the callback"),
        StatusCode::OK
    );
    assert_eq!(
        server.resource_requests()[0].1.as_deref(),
        Some("Bearer at-1")
    );
    drop(release);
}

/// Defect 5: a token stored without a fingerprint (by a version before
/// fingerprints) cannot be told apart from another configuration's: its
/// access token is not sent, its refresh token not used.
#[tokio::test]
async fn a_token_stored_without_a_fingerprint_is_not_used() {
    let dir = temp_dir("no-fingerprint");
    let path = dir.join("tokens.json");
    std::fs::write(
        &path,
        br#"{"access_token":"at-old","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-stored","issued_at_ms":4102444800000}"#,
    )
    .unwrap();
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    server.add_refresh_token("rt-stored");
    let builder = TokenCache::from_refresh_token(server.endpoint(), "rt-seed");
    let fingerprint = *builder.fingerprint();
    let cache = builder.store(FileStore::new(&path)).build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    assert_eq!(
        server.received()[0].param("refresh_token").as_deref(),
        Some("rt-seed")
    );
    assert_eq!(
        server.resource_requests()[0].1.as_deref(),
        Some("Bearer at-1")
    );
    // The next save replaced it, with the fingerprint.
    let stored = FileStore::new(&path).load(&fingerprint).unwrap().unwrap();
    assert!(stored.is_for(&fingerprint));
    assert_eq!(stored.token().access_token().expose_secret(), "at-1");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A FileStore whose first save waits until the test lets it go; counts
/// the saves of new tokens that completed.
struct FirstSaveHangs {
    file: FileStore,
    first: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    done: Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenStore for FirstSaveHangs {
    fn load(&self, fingerprint: &ConfigFingerprint) -> io::Result<Option<StoredToken>> {
        self.file.load(fingerprint)
    }
    fn save(&self, stored: &StoredToken) -> io::Result<()> {
        let first = self.first.lock().unwrap().take();
        if let Some(release) = first {
            let _ = release.recv();
        }
        let saved = self.file.save(stored);
        // The mark of a token refused by a 401 is no new token's save.
        if !stored.access_token_refused() {
            self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        saved
    }
}

/// Defect 6: a save that missed its deadline and completes later never puts
/// an older (spent) refresh token over a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_save_never_overwrites_a_newer_token() {
    let dir = temp_dir("late-save");
    let path = dir.join("tokens.json");
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    server.set_rotate_refresh(true);
    let (release, rx) = std::sync::mpsc::channel::<()>();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .store(FirstSaveHangs {
            file: FileStore::new(&path),
            first: Mutex::new(Some(rx)),
            done: done.clone(),
        })
        .store_timeout(std::time::Duration::from_millis(100))
        .build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK); // rt-1: its save hangs
    server.revoke("at-1");
    assert_eq!(get(&cache, &server).await, StatusCode::OK); // rt-2: its save waits its turn
    assert_eq!(cache.stats().store_failures, 2);
    release.send(()).unwrap();
    let both = async {
        while done.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), both)
        .await
        .expect("both saves complete once released");
    let stored = on_disk(&path);
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-2");
    std::fs::remove_dir_all(dir).unwrap();
}

// Issue 19, defect 1: the subject is part of the fingerprint.

/// The fingerprint a cache built from `request` has.
fn fingerprint_of(server: &TestServer, request: TokenRequest) -> ConfigFingerprint {
    *TokenCache::builder(server.endpoint(), request).fingerprint()
}

#[tokio::test]
async fn caches_for_two_subjects_never_share_a_fingerprint() {
    let server = TestServer::start().await;
    let from_rt = |rt: &str| *TokenCache::from_refresh_token(server.endpoint(), rt).fingerprint();
    assert_ne!(from_rt("rt-alice"), from_rt("rt-bob"));
    assert_eq!(from_rt("rt-alice"), from_rt("rt-alice"));
    const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
    let pairs = [
        (
            TokenRequest::token_exchange("subject-alice", ACCESS),
            TokenRequest::token_exchange("subject-bob", ACCESS),
        ),
        (
            TokenRequest::token_exchange("subject", ACCESS).secret_param("actor_token", "actor-a"),
            TokenRequest::token_exchange("subject", ACCESS).secret_param("actor_token", "actor-b"),
        ),
        (
            TokenRequest::jwt_bearer("eyJ.assertion-alice.sig"),
            TokenRequest::jwt_bearer("eyJ.assertion-bob.sig"),
        ),
        (
            TokenRequest::authorization_code("code-alice", "https://app.example/cb"),
            TokenRequest::authorization_code("code-bob", "https://app.example/cb"),
        ),
        (
            TokenRequest::refresh_token("rt-alice"),
            TokenRequest::refresh_token("rt-bob"),
        ),
        (
            TokenRequest::password("alice", "pw"),
            TokenRequest::password("bob", "pw"),
        ),
    ];
    for (alice, bob) in pairs {
        let shown = format!("{alice:?}");
        let a = fingerprint_of(&server, alice.clone());
        assert_ne!(a, fingerprint_of(&server, bob), "{shown}");
        assert_eq!(a, fingerprint_of(&server, alice), "{shown}");
        for secret in ["alice", "bob", "actor-", "code-", "rt-", "eyJ"] {
            assert!(!a.to_string().contains(secret));
        }
    }
}

/// Two users' caches built with one FileStore path (same token URL, client
/// and grant, different refresh tokens): bob's never takes alice's token,
/// nor her refresh token.
#[tokio::test]
async fn a_stored_token_is_never_restored_for_another_subject() {
    let dir = temp_dir("subjects");
    let path = dir.join("tokens.json");
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice");
    server.add_refresh_token("rt-bob");
    let cache_of = |rt: &str| {
        TokenCache::from_refresh_token(server.endpoint(), rt)
            .store(FileStore::new(&path))
            .build()
    };
    let alice = cache_of("rt-alice");
    assert_eq!(alice.bearer_header().await.unwrap(), "Bearer at-1");
    let bob = cache_of("rt-bob");
    assert_eq!(bob.bearer_header().await.unwrap(), "Bearer at-2");
    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("refresh_token").unwrap())
        .collect();
    assert_eq!(sent, ["rt-alice", "rt-bob"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The subject is fixed when the cache is built: the refresh tokens the
/// server rotates to are saved under the fingerprint of the one the cache
/// was built with, and a cache built again from it finds them.
#[tokio::test]
async fn a_rotated_refresh_token_keeps_the_fingerprint() {
    let dir = temp_dir("rotated-fingerprint");
    let path = dir.join("tokens.json");
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    server.set_rotate_refresh(true);
    let builder = TokenCache::from_refresh_token(server.endpoint(), "rt-seed");
    let built_with = *builder.fingerprint();
    // Another refresh token, another subject: the rotation below must not
    // turn the cache's fingerprint into this one.
    let rotated = *TokenCache::from_refresh_token(server.endpoint(), "rt-1").fingerprint();
    assert_ne!(built_with, rotated);
    let cache = builder.store(FileStore::new(&path)).build();
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    server.revoke("at-1");
    assert_eq!(get(&cache, &server).await, StatusCode::OK);
    let stored = FileStore::new(&path).load(&built_with).unwrap().unwrap();
    assert_eq!(stored.fingerprint(), Some(&built_with));
    assert_eq!(
        stored.token().refresh_token().unwrap().expose_secret(),
        "rt-2"
    );
    // Built again from the seed: the stored token is its own.
    let again = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .store(FileStore::new(&path))
        .build();
    assert_eq!(again.bearer_header().await.unwrap(), "Bearer at-2");
    assert_eq!(server.token_requests(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}
