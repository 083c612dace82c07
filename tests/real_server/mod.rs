//! tower-oauth2 against a real, third-party authorization server: panva's
//! `oidc-provider` (an OpenID Certified OAuth 2.0 / OpenID Connect server from
//! the npm registry, pinned in `.ci/auth-server/package-lock.json`), with the
//! configuration in `.ci/auth-server/` (clients, token lifetimes, features).
//!
//! Where the server is:
//! - `TOWER_OAUTH2_REAL_AS=http://127.0.0.1:PORT`: a running one (`.ci/run`
//!   starts it and sets this);
//! - otherwise, outside CI, these tests start `node .ci/auth-server/server.mjs`
//!   themselves if `npm ci --prefix .ci/auth-server` has been run, and the
//!   server exits with the test process;
//! - otherwise each test prints `SKIPPED (real authorization server): …` and
//!   returns. In CI (`CI` set) a missing server is a failure, never a skip.
//!
//! The resource server that the layer's requests go to is written here: it
//! accepts a bearer token only if the authorization server's introspection
//! endpoint (RFC 7662) says it is active, so "revoked" and "expired" are the
//! authorization server's word, not this file's.

mod browser;
use crate::support::client;
#[cfg(feature = "jwt")]
mod credentials;
#[cfg(feature = "dpop")]
mod dpop;
use crate::support::dpop as dpop_proof;
#[cfg(feature = "jwt")]
mod jwt;
mod on_behalf;
mod resource;
mod revocation;
use crate::support::serve;
mod server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use tower_oauth2::authorize::{Authorization, AuthorizationRequest, PkceVerifier};
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::layer::ServiceError;
use tower_oauth2::token::Token;
use tower_oauth2::{ClientAuth, OAuth2Service, SecretString, TokenCache, TokenRequest};

use browser::{Browser, Decision};
use client::{exchange, form_request, http_client, layered, oauth_error, HttpClient, Received};
use resource::ResourceServer;
use server::{basic, client_credentials, post, say, server_url, RealServer};

/// `web-app`'s registered redirect URI. Nothing listens there: the test reads
/// the redirect's `Location` as a browser would before following it.
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// How oidc-provider refuses a bad grant: it keeps the reason to itself, and
/// the description is its generic one.
const INVALID_GRANT: (ErrorKind, Option<&ErrorCode>, Option<&str>) = (
    ErrorKind::OAuth,
    Some(&ErrorCode::InvalidGrant),
    Some("grant request is invalid"),
);

type LayerError = ServiceError<hyper_util::client::legacy::Error>;

/// A resource server that trusts `server`, and the layer in front of the
/// tests' client with a cache of tokens for it.
struct Through {
    rs: ResourceServer,
    svc: OAuth2Service<HttpClient>,
}

impl Through {
    async fn start(server: &RealServer, cache: &TokenCache) -> Through {
        let rs = ResourceServer::start(server).await;
        Through {
            rs,
            svc: layered(cache),
        }
    }

    /// A GET of `path` through the layer: the status and body, or the
    /// layer's error.
    async fn get(&self, path: &str) -> Result<(StatusCode, String), LayerError> {
        get(&self.svc, &self.rs.url(path)).await
    }
}

/// A GET of `url` through `svc`: the status and body, or the layer's error.
async fn get(
    svc: &OAuth2Service<HttpClient>,
    url: &str,
) -> Result<(StatusCode, String), LayerError> {
    use http_body_util::BodyExt as _;
    let response = svc.clone().oneshot(client::get(url)).await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A token for `request`, straight from the token endpoint as `client`; the
/// one request that fetched it, as sent; and what introspection says of it.
async fn fetch(
    server: &RealServer,
    client: ClientAuth,
    request: TokenRequest,
) -> (Token, Received, Value) {
    let what = format!("{} {}", client.method_name(), request.grant_type());
    let (endpoint, wire) = server.endpoint(client);
    let token = endpoint
        .request(&request)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let sent = wire.sent();
    assert_eq!(sent.len(), 1);
    let info = server
        .introspect(token.access_token().expose_secret())
        .await;
    (token, sent[0].clone(), info)
}

/// The code flow as `client_id` (a client with `REDIRECT_URI`), up to the
/// callback: the user logs in and consents to `offline_access`, so the
/// code's exchange issues a refresh token. The authorization, the
/// callback's query and its code.
async fn consent_to_offline_access(
    server: &RealServer,
    client_id: &str,
) -> (Authorization, String, SecretString) {
    let auth = AuthorizationRequest::new(&server.authorization_endpoint, client_id)
        .redirect_uri(REDIRECT_URI)
        .scope("openid offline_access inventory:read")
        // OpenID Connect issues a refresh token for offline_access only
        // after an explicit consent.
        .param("prompt", "consent")
        .build()
        .unwrap();
    let callback = Browser::new().authorize(&auth, Decision::Allow).await;
    let code = auth.code_from_callback(&callback).expect("a code");
    (auth, callback, code)
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn discovery_advertises_what_this_suite_uses() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let m = &server.metadata;
    let has = |field: &str, value: &str| {
        m[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == value))
    };
    for grant in ["client_credentials", "authorization_code", "refresh_token"] {
        assert!(has("grant_types_supported", grant), "{grant}: {m}");
    }
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(
            has("token_endpoint_auth_methods_supported", method),
            "{method}: {m}"
        );
    }
    assert!(has("code_challenge_methods_supported", "S256"), "{m}");
    assert_eq!(server.issuer, server_url().unwrap());
    // The endpoints are loopback http URLs, which TokenUrl accepts as they are.
    assert_eq!(server.token_url().to_string(), server.token_endpoint);
}

/// [`fetch`]: a client credentials token with the scope `inventory:read`
/// for `client`, a bearer token issued for 300 s with that scope. Gives
/// back the request as it was sent and the token's introspection.
async fn fetch_inventory_read(server: &RealServer, client: ClientAuth) -> (Received, Value) {
    let request = TokenRequest::client_credentials().scope("inventory:read");
    let (token, sent, info) = fetch(server, client, request).await;
    assert!(token.token_type().is_bearer());
    assert_eq!(token.expires_in(), Some(Duration::from_secs(300)));
    assert_eq!(token.scope(), Some("inventory:read"));
    (sent, info)
}

#[tokio::test]
async fn client_credentials_with_client_secret_basic() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let request = TokenRequest::client_credentials().scope("inventory:read inventory:write");
    let (token, sent, info) = fetch(&server, basic("svc-basic"), request).await;
    assert!(token.token_type().is_bearer());
    assert_eq!(token.expires_in(), Some(Duration::from_secs(300)));
    assert_eq!(
        token.scopes().collect::<Vec<_>>(),
        ["inventory:read", "inventory:write"]
    );
    assert!(token.refresh_token().is_none());

    // On the wire: credentials only in the Authorization header.
    let expected = format!(
        "Basic {}",
        STANDARD.encode("svc-basic:basic-secret-4f1c9a7e")
    );
    assert_eq!(sent.authorization(), Some(expected.as_str()));
    assert_eq!(sent.names(), ["grant_type", "scope"]);

    // The server knows the token as svc-basic's, with those scopes.
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "svc-basic", "{info}");
    assert_eq!(info["scope"], "inventory:read inventory:write", "{info}");

    // Through the layer: one token for several requests.
    let (cache, _) = server.cache(
        basic("svc-basic"),
        TokenRequest::client_credentials().scope("inventory:read"),
    );
    let through = Through::start(&server, &cache).await;
    for _ in 0..3 {
        let (status, body) = through.get("/items").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-basic"));
    }
    assert_eq!(cache.stats().token_fetches, 1);
    let rs = &through.rs;
    assert_eq!(
        (rs.requests(), rs.unauthorized(), rs.tokens().len()),
        (3, 0, 1)
    );
}

#[tokio::test]
async fn client_credentials_with_client_secret_post() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (sent, info) = fetch_inventory_read(&server, post("svc-post")).await;

    // On the wire: no Authorization header; the credentials in the body.
    assert_eq!(sent.authorization(), None);
    assert_eq!(
        sent.names(),
        ["grant_type", "scope", "client_id", "client_secret"]
    );
    assert_eq!(
        sent.param("client_secret").as_deref(),
        Some("post-secret-8b2d6e31")
    );
    assert_eq!(
        (&info["active"], &info["client_id"]),
        (&Value::Bool(true), &Value::from("svc-post"))
    );

    let (cache, _) = server.cache(post("svc-post"), TokenRequest::client_credentials());
    let (status, body) = Through::start(&server, &cache)
        .await
        .get("/items")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-post"));
    assert_eq!(cache.stats().token_fetches, 1);
}

#[tokio::test]
async fn client_id_and_secret_with_reserved_characters() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (_, secret) = client_credentials("svc:reserved basic");
    // `:` `+` `%` (`%2F` and a lone `%`) `&` `=` `?` `#` `/` `"` `\` and a
    // space: each one breaks a client that skips RFC 6749 §2.3.1's
    // form-urlencoding, or encodes the body wrong.
    assert_eq!(secret, r#"r%2Fes:er+ved @&=?#/~"'<>\!$%"#);

    // The server refuses a client that base64s the raw id and secret...
    let raw = format!(
        "Basic {}",
        STANDARD.encode(format!("svc:reserved basic:{secret}"))
    );
    let form = [("grant_type", "client_credentials")];
    let mut naive = form_request(Method::POST, &server.token_endpoint, &form);
    naive
        .headers_mut()
        .insert(AUTHORIZATION, HeaderValue::from_str(&raw).unwrap());
    let (status, _, body) = exchange(&http_client(), naive).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");

    // ...and accepts this crate's, with both methods.
    let request = TokenRequest::client_credentials;
    let (_, sent, info) = fetch(&server, basic("svc:reserved basic"), request()).await;
    let header = sent.authorization().unwrap();
    let decoded = STANDARD
        .decode(header.strip_prefix("Basic ").unwrap())
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let (id, sent_secret) = decoded.split_once(':').unwrap();
    assert_eq!(id, "svc%3Areserved+basic");
    assert!(!sent_secret.contains(':'), "{sent_secret}");
    let form_decode = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    };
    assert_eq!(form_decode(sent_secret), secret);
    assert_eq!(info["client_id"], "svc:reserved basic", "{info}");

    let (_, sent, info) = fetch(&server, post("svc:reserved post"), request()).await;
    assert_eq!(sent.authorization(), None);
    assert_eq!(
        sent.param("client_id").as_deref(),
        Some("svc:reserved post")
    );
    assert_eq!(
        sent.param("client_secret").as_deref(),
        Some(secret.as_str())
    );
    assert_eq!(info["client_id"], "svc:reserved post", "{info}");
}

#[tokio::test]
async fn error_responses_are_typed() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (id, secret) = client_credentials("svc-errors");
    let cc = TokenRequest::client_credentials;

    // (client authentication, request, expected status, code, description)
    let cases: Vec<(ClientAuth, TokenRequest, u16, ErrorCode, &str)> = vec![
        (
            ClientAuth::client_secret_basic(&id, "wrong-secret-0000"),
            cc(),
            401,
            ErrorCode::InvalidClient,
            "client authentication failed",
        ),
        (
            ClientAuth::client_secret_post(&id, "wrong-secret-0000"),
            cc(),
            401,
            ErrorCode::InvalidClient,
            "client authentication failed",
        ),
        (
            ClientAuth::client_secret_basic("no-such-client", "wrong-secret-0000"),
            cc(),
            401,
            ErrorCode::InvalidClient,
            "client authentication failed",
        ),
        (
            basic("svc-errors"),
            cc().scope("inventory:write"),
            400,
            ErrorCode::InvalidScope,
            "requested scope is not allowed",
        ),
        (
            basic("svc-errors"),
            TokenRequest::extension("urn:example:params:grant-type:unknown"),
            400,
            ErrorCode::UnsupportedGrantType,
            "unsupported grant_type requested",
        ),
        (
            basic("svc-errors"),
            TokenRequest::refresh_token("not-a-refresh-token"),
            400,
            // oidc-provider's word for a grant type the client is not
            // registered for (RFC 6749 would say unauthorized_client).
            ErrorCode::InvalidRequest,
            "requested grant type is not allowed for this client",
        ),
        (
            basic("svc-errors"),
            cc().resource("https://unknown.example/api"),
            400,
            ErrorCode::InvalidTarget,
            "resource indicator is missing, or unknown",
        ),
        (
            basic("web-app"),
            TokenRequest::authorization_code("not-a-code", REDIRECT_URI),
            400,
            ErrorCode::InvalidGrant,
            "grant request is invalid",
        ),
    ];
    for (client, request, status, code, description) in cases {
        let what = format!("{} {}", client.method_name(), request.grant_type());
        let (endpoint, _) = server.endpoint(client);
        let e = endpoint.request(&request).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OAuth, "{what}: {e}");
        assert_eq!(
            e.status(),
            Some(StatusCode::from_u16(status).unwrap()),
            "{what}: {e}"
        );
        let oauth = e.oauth_error().unwrap();
        assert_eq!(oauth.error(), &code, "{what}: {e}");
        assert_eq!(oauth.error_description(), Some(description), "{what}: {e}");
        assert!(!e.is_retryable(), "{what}: {e}");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("wrong-secret-0000"), "{shown}");
        assert!(!shown.contains(&secret), "{shown}");
    }

    // Through the layer: a bad secret never reaches the resource server, and
    // the caller gets the typed error.
    let client = ClientAuth::client_secret_basic(&id, "wrong-secret-0000");
    let (cache, wire) = server.cache(client, cc());
    let through = Through::start(&server, &cache).await;
    let e = through.get("/items").await.unwrap_err();
    let e = e
        .token_error()
        .expect("a token error, not a transport error");
    assert_eq!(oauth_error(e).1, Some(&ErrorCode::InvalidClient));
    assert_eq!(through.rs.requests(), 0);
    assert_eq!(wire.sent().len(), 1);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.fetch_failures), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_in_the_background() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    // svc-short's tokens live 5 s (clients.json). Keep requests going for a
    // bit more than three lifetimes, from two tasks.
    const RUN: Duration = Duration::from_secs(16);
    let (cache, wire) = server.cache(basic("svc-short"), TokenRequest::client_credentials());
    let Through { rs, svc } = Through::start(&server, &cache).await;
    let first = cache.token().await.expect("svc-short gets a token");
    assert_eq!(first.expires_in(), Some(Duration::from_secs(5)));

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (svc, url) = (svc.clone(), rs.url("/items"));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while start.elapsed() < RUN {
                let (status, body) = get(&svc, &url).await.unwrap();
                statuses.push((status, body));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    assert!(answers.len() > 50, "{} requests", answers.len());
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == StatusCode::OK && b == "svc-short"),
        "every request succeeds first time: {:?}",
        answers.iter().filter(|(s, _)| *s != StatusCode::OK).count()
    );

    let stats = cache.stats();
    // Stale at 3.4-3.75 s of each 5 s lifetime, so 16 s of traffic needs at
    // least three refreshes (at most four), all in the background: only the
    // first token was waited for, no request ever met a refused token.
    assert!((3..=4).contains(&stats.background_refreshes), "{stats:?}");
    assert_eq!(
        stats.token_fetches,
        stats.background_refreshes + 1,
        "{stats:?}"
    );
    assert_eq!(stats.waits, 1, "{stats:?}");
    assert_eq!(
        (stats.fetch_failures, stats.invalidations, stats.retries),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(rs.unauthorized(), 0);
    assert_eq!(rs.requests(), answers.len());
    // Each new token was a real client_credentials request, and each was used.
    let sent = wire.sent();
    assert_eq!(sent.len() as u64, stats.token_fetches);
    assert!(sent
        .iter()
        .all(|s| s.param("grant_type").as_deref() == Some("client_credentials")));
    let used = rs.tokens();
    assert!(
        used.len() as u64 >= stats.token_fetches - 1 && used.len() as u64 <= stats.token_fetches,
        "{} tokens used, {stats:?}",
        used.len()
    );
}

#[tokio::test]
async fn a_token_is_not_sent_after_the_servers_whole_second_expiry() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    // oidc-provider sets `exp = floor(now) + ttl`: svc-ten's 10-second token,
    // issued late in a wall-clock second, is refused a little after 9 s.
    // Get one there, send nothing until the server's `exp` has passed, then
    // send a request: the layer must not use the dead token (a 401 and a
    // resend) but wait for a new one.
    let wall = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    while !(600..750).contains(&wall().subsec_millis()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = wall();
    let (cache, _) = server.cache(basic("svc-ten"), TokenRequest::client_credentials());
    let Through { rs, svc } = Through::start(&server, &cache).await;
    let (status, _) = get(&svc, &rs.url("/items")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let first = rs.tokens()[0].clone();
    let exp = server.introspect(&first).await["exp"]
        .as_u64()
        .expect("introspection gives exp");
    let exp = Duration::from_secs(exp);
    // Without the last second kept free, the cache would send the token
    // until 9.5 s after it was sent.
    if exp - sent > Duration::from_millis(9_440) {
        // The server's second ended before it saw the request: the token
        // lives long enough that this run proves nothing. Say so.
        say(&format!(
            "NOTE: a_token_is_not_sent_after_the_servers_whole_second_expiry: the token \
             lives {:?} after it was sent, too long to test the last second",
            exp - sent
        ));
    }
    tokio::time::sleep((exp + Duration::from_millis(50)).saturating_sub(wall())).await;
    let info = server.introspect(&first).await;
    assert_eq!(info["active"], false, "{info}");

    let (status, _) = get(&svc, &rs.url("/items")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.token_fetches,
            stats.waits,
            stats.retries,
            stats.invalidations
        ),
        (2, 2, 0, 0),
        "{stats:?}"
    );
    assert_eq!((rs.requests(), rs.unauthorized()), (2, 0));
}

#[tokio::test]
async fn revoked_token_gets_401_then_one_refetch_then_success() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (cache, _) = server.cache(basic("svc-revoke"), TokenRequest::client_credentials());
    let through = Through::start(&server, &cache).await;
    let rs = &through.rs;

    let (status, body) = through.get("/orders").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-revoke"));
    let before = cache.stats();
    assert_eq!(before.token_fetches, 1);
    let revoked = rs.tokens()[0].clone();

    // RFC 7009: the client revokes its own (cached, still fresh) token.
    server.revoke("svc-revoke", &revoked, "access_token").await;
    let info = server.introspect(&revoked).await;
    assert_eq!(info["active"], false, "{info}");

    // The resource server refuses it; the layer gets one new token and
    // resends once; the caller sees only the success.
    let (status, body) = through.get("/orders").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-revoke"));
    let after = cache.stats();
    assert_eq!(after.token_fetches, before.token_fetches + 1, "{after:?}");
    assert_eq!((after.retries, after.invalidations), (1, 1), "{after:?}");
    assert_eq!((rs.requests(), rs.unauthorized()), (3, 1));
    let tokens = rs.tokens();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[1], revoked);

    // The new token stays in use.
    let (status, _) = through.get("/orders").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cache.stats().token_fetches, after.token_fetches);
    assert_eq!((rs.requests(), rs.unauthorized()), (4, 1));
}

#[tokio::test]
async fn authorization_code_with_pkce_then_rotating_refresh_tokens() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (auth, callback, code) = consent_to_offline_access(&server, "web-app").await;
    // RFC 9207: the server names itself in the redirect.
    assert!(
        form_urlencoded::parse(callback.as_bytes()).any(|(k, v)| k == "iss" && v == server.issuer),
        "{callback}"
    );

    let (endpoint, wire) = server.endpoint(basic("web-app"));
    let exchange = |verifier: &PkceVerifier| {
        let request = TokenRequest::authorization_code(code.clone(), REDIRECT_URI);
        let request = request.code_verifier(verifier);
        let endpoint = endpoint.clone();
        async move { endpoint.request(&request).await }
    };
    // PKCE is checked: the code with a wrong verifier is refused, the same
    // code with the right one (below) is not.
    let wrong = PkceVerifier::new("a".repeat(43)).unwrap();
    let e = exchange(&wrong).await.unwrap_err();
    assert_eq!(oauth_error(&e), INVALID_GRANT, "{e}");

    let verifier = auth.pkce_verifier().unwrap();
    let token = exchange(verifier)
        .await
        .expect("the code exchange succeeds");
    assert!(token.token_type().is_bearer());
    assert!(token.id_token().is_some());
    assert_eq!(token.expires_in(), Some(Duration::from_secs(300)));
    let scopes: Vec<&str> = token.scopes().collect();
    assert!(scopes.contains(&"offline_access"), "{scopes:?}");
    let rt0 = token
        .refresh_token()
        .expect("a refresh token for offline_access")
        .expose_secret()
        .to_owned();
    let sent = &wire.sent()[1];
    assert_eq!(
        sent.param("grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(
        sent.param("code_verifier").as_deref(),
        Some(verifier.secret().expose_secret())
    );

    // The layer runs on the refresh token; each refresh rotates it.
    let rotated = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = rotated.clone();
    let (refreshing, wire) = server.endpoint(basic("web-app"));
    let cache = TokenCache::from_refresh_token(refreshing, rt0.clone())
        .on_refresh_token(move |rt| seen.lock().unwrap().push(rt.expose_secret().to_owned()))
        .build();
    let through = Through::start(&server, &cache).await;
    let rs = &through.rs;

    let (status, body) = through.get("/me").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web-app"));
    // A second refresh, now: drop the current token.
    let (_, generation) = cache.bearer_header_with_generation().await.unwrap();
    cache.invalidate(generation);
    let (status, _) = through.get("/me").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let rotated = rotated.lock().unwrap().clone();
    assert_eq!(rotated.len(), 2, "one new refresh token per refresh");
    assert!(rotated[0] != rt0 && rotated[1] != rt0 && rotated[0] != rotated[1]);
    // Each refresh sent the newest refresh token: rt0, then the one it got.
    let sent: Vec<String> = wire
        .sent()
        .iter()
        .map(|s| {
            s.param("refresh_token")
                .as_deref()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(sent, [rt0.clone(), rotated[0].clone()]);
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.fetch_failures),
        (2, 0),
        "{stats:?}"
    );
    assert_eq!(rs.tokens().len(), 2);

    // The rotated-out refresh token is refused. oidc-provider treats its
    // reuse as theft and revokes the whole grant (RFC 9700 §4.14.2).
    let reuse = TokenRequest::refresh_token(rt0);
    let e = endpoint.request(&reuse).await.unwrap_err();
    assert_eq!(oauth_error(&e), INVALID_GRANT, "{e}");

    // So the layer's access token is now refused, and so is its newest
    // refresh token: the caller gets the typed invalid_grant (the user must
    // authorize again), after one refresh attempt and no resend.
    let e = through.get("/me").await.unwrap_err();
    let e = e.token_error().expect("a token error");
    assert_eq!(oauth_error(e).1, INVALID_GRANT.1, "{e}");
    let stats = cache.stats();
    assert_eq!(
        (
            stats.token_fetches,
            stats.fetch_failures,
            stats.invalidations,
            stats.retries
        ),
        (3, 1, 2, 0),
        "{stats:?}"
    );
    assert_eq!(rs.unauthorized(), 1);

    // And the code itself was single-use.
    let e = exchange(verifier).await.unwrap_err();
    assert_eq!(oauth_error(&e).1, INVALID_GRANT.1, "{e}");
}

#[tokio::test]
async fn denied_consent_comes_back_as_access_denied() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let auth = AuthorizationRequest::new(&server.authorization_endpoint, "web-app")
        .redirect_uri(REDIRECT_URI)
        .scope("openid inventory:read")
        .build()
        .unwrap();
    let callback = Browser::new().authorize(&auth, Decision::Deny).await;
    let e = auth.code_from_callback(&callback).unwrap_err();
    let denied = (
        ErrorKind::OAuth,
        Some(&ErrorCode::AccessDenied),
        Some("End-User aborted interaction"),
    );
    assert_eq!(oauth_error(&e), denied, "{e}");
    // A redirect whose state is not ours is refused before anything else.
    let forged = callback.replace(auth.state(), "forged-state");
    let e = auth.code_from_callback(&forged).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{e}");
}
