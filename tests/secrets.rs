//! No client secret, access token or refresh token in any `Debug`, `Display`
//! or log line, through a whole fetch → background refresh → 401 → retry
//! cycle and the error paths, with `tracing` captured at TRACE level.

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::client::http_client;
use support::log::capture;
use support::token_server::{Canned, TestServer};
use tower::{Layer, ServiceExt};
use tower_oauth2::authorize::{AuthorizationRequest, PkceVerifier};
use tower_oauth2::cache::{Backoff, RefreshPolicy};
use tower_oauth2::endpoint::parse_token_response;
use tower_oauth2::layer::{Destinations, ReplayClone, ServiceError};
use tower_oauth2::token::{IssuedAt, Token};
use tower_oauth2::{
    ClientAuth, OAuth2Layer, OAuth2Service, SecretString, TokenCache, TokenEndpoint, TokenRequest,
    TokenUrl,
};

const CLIENT_SECRET: &str = "CLIENTSECRET-p@ss:w+rd/%&=?";
const PREFIX: &str = "TOPSECRET-";

/// Every spelling of a secret that must never show up.
fn forbidden() -> Vec<String> {
    let encoded: String = form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("client:{encoded}"));
    vec![
        CLIENT_SECRET.into(),
        encoded,
        basic,
        "CLIENTSECRET".into(),
        PREFIX.into(),
        "PASSWORD-xyz".into(),
        "ASSERTION-xyz".into(),
        "CODE-xyz".into(),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for f in forbidden() {
        assert!(!text.contains(&f), "{what} shows a secret ({f:?}):\n{text}");
    }
}

fn endpoint(server: &TestServer) -> TokenEndpoint<support::client::HttpClient> {
    TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&server.token_url()).unwrap(),
        ClientAuth::client_secret_basic("client", CLIENT_SECRET),
    )
}

#[tokio::test(start_paused = true)]
async fn trace_output_of_a_full_cycle_holds_no_secret() {
    let capture = capture().everywhere();

    let server = TestServer::start().await;
    server.set_token_prefix(PREFIX);
    server.set_ttl(Some(2));
    server.set_client(
        "client",
        CLIENT_SECRET,
        support::token_server::ClientCheck::Basic,
    );
    let cache = TokenCache::builder(endpoint(&server), TokenRequest::client_credentials())
        .refresh_policy(RefreshPolicy::default().max_fraction(0.5).jitter(0.0))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .build();
    let svc = OAuth2Layer::new(cache.clone())
        .replay_body(ReplayClone)
        .layer(http_client());
    let get = || {
        Request::get(server.url("/api"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // Fetch.
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    // Background refresh (stale after 1 s).
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    // Wait until the background refresh has stored its token (not merely
    // started), so the revocation below covers every token issued so far.
    for _ in 0..250 {
        let current = cache.token().await.unwrap();
        if current.access_token().expose_secret().ends_with("at-2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.stats().background_refreshes, 1);
    // 401 → refetch → retry.
    server.revoke_all();
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(cache.stats().retries, 1);
    // Every token refused: the one fetched because of the 401 is refused
    // too, and refetches back off, with one WARN line.
    server.set_reject_all(true);
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(cache.stats().unauthorized_backed_off, 1);
    // An answer other than 401 for the current token ends the backoff.
    server.set_reject_all(false);
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    // A failing fetch whose error page echoes the client secret.
    server.script([Canned::new(
        500,
        "text/html",
        format!("<h1>boom</h1> you sent {CLIENT_SECRET}"),
    )]);
    server.revoke_all();
    let err = svc.clone().oneshot(get()).await.unwrap_err();
    assert_clean("ServiceError Display", &err.to_string());
    assert_clean("ServiceError Debug", &format!("{err:?}"));
    assert!(err.to_string().contains("[redacted]"), "{err}");

    // A refresh-token cache with rotation, logging its callback.
    server.add_refresh_token("TOPSECRET-seed");
    server.set_rotate_refresh(true);
    let revocable = endpoint(&server).revocation_url(server.revocation_url());
    let rt_cache = TokenCache::from_refresh_token(revocable, "TOPSECRET-seed")
        .on_refresh_token(|rt| {
            tracing::info!(len = rt.len(), "application saw a new refresh token")
        })
        .build();
    rt_cache.bearer_header().await.unwrap();
    // Revocation (RFC 7009), first answered with a page echoing the token.
    let token = rt_cache.token().await.unwrap();
    let refresh_token = token.refresh_token().unwrap().expose_secret();
    server.script_revocations([Canned::new(
        500,
        "text/html",
        format!("cannot revoke {refresh_token}"),
    )]);
    let err = rt_cache.revoke().await.unwrap_err();
    assert_clean("revocation error", &format!("{err} {err:?}"));
    assert!(err.to_string().contains("[redacted]"), "{err}");
    rt_cache.revoke().await.unwrap();
    assert_clean(
        "TokenCache Debug",
        &format!("{rt_cache:?} {cache:?} {svc:?}"),
    );

    let logs = capture.text();
    // The capture works: the events are there.
    for expected in [
        "oauth2.token_request",
        "token issued",
        "token cached",
        "token invalidated",
        "resending the request once",
        "token fetch failed",
        "new refresh token issued",
        "oauth2.revocation",
        "token revocation failed",
        "token revoked",
        "new tokens do not help",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the trace output:\n{logs}"
        );
    }
    let backing_off: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("new tokens do not help"))
        .collect();
    assert_eq!(backing_off.len(), 1, "{logs}");
    for field in ["WARN", r#"error="invalid_token""#, "step=1"] {
        assert!(backing_off[0].contains(field), "{}", backing_off[0]);
    }
    assert_clean("TRACE output", &logs);
}

#[tokio::test]
async fn debug_and_display_of_every_public_type() {
    let capture = capture().everywhere();
    let mut shown = Vec::new();
    let secret = SecretString::from(CLIENT_SECRET);
    shown.push(format!("{secret:?}"));
    for client in [
        ClientAuth::client_secret_basic("client", CLIENT_SECRET),
        ClientAuth::client_secret_post("client", CLIENT_SECRET),
        ClientAuth::none("client"),
    ] {
        shown.push(format!("{client:?} {client:#?}"));
    }
    let verifier = PkceVerifier::generate().unwrap();
    for req in [
        TokenRequest::client_credentials().secret_param("client_assertion", "ASSERTION-xyz"),
        TokenRequest::authorization_code("CODE-xyz", "https://c/cb").code_verifier(&verifier),
        TokenRequest::refresh_token("TOPSECRET-rt"),
        TokenRequest::password("alice", "PASSWORD-xyz"),
        TokenRequest::jwt_bearer("ASSERTION-xyz"),
        TokenRequest::token_exchange(
            "TOPSECRET-subject",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
    ] {
        shown.push(format!("{req:?}"));
    }
    assert!(!format!("{verifier:?}").contains(verifier.secret().expose_secret()));
    let auth = AuthorizationRequest::new("https://as/authorize", "client")
        .build()
        .unwrap();
    assert!(!format!("{auth:?}").contains(auth.pkce_verifier().unwrap().secret().expose_secret()));

    let body = format!(
        r#"{{"access_token":"{PREFIX}at","refresh_token":"{PREFIX}rt","id_token":"{PREFIX}id","token_type":"Bearer","expires_in":60,"x_secret":"{PREFIX}x"}}"#
    );
    let token = Token::try_from(body.as_bytes()).unwrap();
    shown.push(format!("{token:?} {token:#?}"));

    let server = TestServer::start().await;
    server.set_token_prefix(PREFIX);
    let ep = endpoint(&server);
    shown.push(format!("{ep:?}"));
    let builder = TokenCache::builder(ep.clone(), TokenRequest::password("alice", "PASSWORD-xyz"));
    shown.push(format!("{builder:?}"));
    let cache = builder.build();
    let layer = OAuth2Layer::new(cache.clone()).destinations(Destinations::any());
    shown.push(format!("{layer:?}"));
    let svc: OAuth2Service<_> = OAuth2Service::new(http_client(), cache.clone());
    shown.push(format!("{svc:?} {:?}", cache.stats()));
    #[cfg(feature = "reqwest")]
    shown.push(format!(
        "{:?}",
        tower_oauth2::reqwest::OAuth2Middleware::new(cache.clone())
    ));
    // The cache after it has fetched a token (and so holds secrets).
    cache.bearer_header().await.unwrap();
    shown.push(format!("{cache:?} {svc:?} {layer:?}"));

    // Errors of every kind that can carry server text.
    let echo = format!("{CLIENT_SECRET} {PREFIX}rt");
    for (status, ct, body) in [
        (
            401u16,
            "application/json",
            format!(r#"{{"error":"invalid_client","error_description":"{echo}"}}"#),
        ),
        (502, "text/html", format!("<p>{echo}</p>")),
        (
            200,
            "application/json",
            format!(r#"{{"access_token":12345,"note":"{echo}"}}"#),
        ),
    ] {
        server.script([Canned::new(status, ct, body)]);
        let e = ep
            .request(&TokenRequest::refresh_token(format!("{PREFIX}rt")))
            .await
            .unwrap_err();
        shown.push(format!("{e} {e:?}"));
        let wrapped: ServiceError<std::io::Error> = ServiceError::Token(e);
        shown.push(format!("{wrapped} {wrapped:?}"));
    }
    let e = parse_token_response(
        StatusCode::OK,
        &Default::default(),
        br#"{"access_token":"TOPSECRET-a\r\nb","expires_in":"TOPSECRET"}"#,
        IssuedAt::now(),
    )
    .unwrap_err();
    shown.push(format!("{e} {e:?}"));

    for s in &shown {
        assert_clean("Debug/Display", s);
    }
    assert_clean("TRACE output", &capture.text());
}

/// Issue 19, defect 10: a private JWK that cannot be read, in every shape
/// a vault or a typo makes, never has its private key in the error.
#[cfg(feature = "jwt")]
#[test]
fn a_malformed_jwk_never_shows_its_private_key() {
    use tower_oauth2::jose::SigningKey;
    // A well-formed base64url `d` (32 bytes), recognisable anywhere.
    const D: &str = "CANARYd0PRIVATEd0KEYd0CANARYd0PRIVATEd0KEY";
    const NUMBER: &str = "98765432109876543210987654321";
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let ed25519 = format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A","x":"{x}"}}"#);
    let shapes = [
        // A JWK encoded twice (a vault's JSON string holding the JSON).
        serde_json::to_string(&ed25519).unwrap(),
        // ...and three times.
        serde_json::to_string(&serde_json::to_string(&ed25519).unwrap()).unwrap(),
        format!("[{ed25519}]"),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":{NUMBER},"x":"{x}"}}"#),
        NUMBER.to_owned(),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":{{"k":"{D}"}},"x":"{x}"}}"#),
        format!(r#"{{"kty":"XYZ","d":"{D}A"}}"#),
        format!(r#"{{"kty":"{D}","d":"{D}A"}}"#),
        format!(r#"{{"kty":"EC","crv":"{D}","d":"{D}A"}}"#),
        format!(r#"{{"kty":"OKP","crv":"{D}","d":"{D}A"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A"}}"#),
        format!(r#"{{"kty":"EC","crv":"P-256","d":"{D}A"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}!!","x":"{x}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}AAAA","x":"{x}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A","x":"{x}","alg":"{D}"}}"#),
        format!(r#"{{"kty":"RSA","n":"AQAB","e":"AQAB","d":"{D}A","p":"{D}B","q":"{D}C"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A","x":"{x}""#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A\u0001","x":"{x}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A\q","x":"{x}"}}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A","x":"{x}"}} {D}"#),
        format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}A","{D}":1,"x":"{x}"}}"#),
    ];
    for jwk in shapes {
        let e = SigningKey::from_jwk(&jwk).unwrap_err();
        let shown = format!("{e} | {e:?}");
        for canary in ["CANARY", NUMBER] {
            assert!(
                !shown.contains(canary),
                "the error shows the private key ({canary}): {shown}\nfor {jwk}"
            );
        }
    }
}

#[cfg(feature = "redis")]
use crate::redis_server;

/// Issue 19's acceptance test: caches whose grants carry every kind of
/// secret (client secret, refresh token, token-exchange subject and actor
/// tokens, a pre-made assertion, a private key; access tokens the server
/// issues), and a subject's name, each with a FileStore and the fleet's
/// Redis tier, through fetches, 401s, refusals marked in the store, failed
/// fetches, a failed save and a Redis outage: no canary in a Redis key, a
/// file name, a log line, an error or a `Debug`.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_subject_in_keys_file_names_logs_errors_or_debug() {
    use tower_oauth2::store::FileStore;
    if !redis_server::available() {
        return;
    }
    let capture = capture().everywhere();
    let mut redis = redis_server::RedisServer::start();
    let server = TestServer::start().await;
    // Access and refresh tokens the server issues: CANARY-AT-at-1, …
    server.set_token_prefix("CANARY-AT-");
    server.add_refresh_token("CANARY-RT-seed");
    server.set_rotate_refresh(true);
    const CLIENT: &str = "CANARY-CLIENT-SECRET";
    const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
    let dir = std::env::temp_dir().join(format!("tower-oauth2-canary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tier = tower_oauth2::fleet::RedisTier::standalone(&redis.url())
        .unwrap()
        .namespace("canary")
        .unwrap()
        .timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(10));
    let endpoint = |client: ClientAuth| {
        TokenEndpoint::new(
            http_client(),
            TokenUrl::new(&server.token_url()).unwrap(),
            client,
        )
    };
    // Each cache, and the secrets its token requests send.
    let basic = || ClientAuth::client_secret_basic("client", CLIENT);
    #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
    let mut builders = vec![
        (
            TokenCache::from_refresh_token(endpoint(basic()), "CANARY-RT-seed"),
            vec![CLIENT],
        ),
        (
            TokenCache::builder(
                endpoint(ClientAuth::client_secret_post("client", CLIENT)),
                TokenRequest::token_exchange("CANARY-SUBJECT-TOKEN", ACCESS)
                    .secret_param("actor_token", "CANARY-ACTOR-TOKEN"),
            ),
            vec![CLIENT, "CANARY-SUBJECT-TOKEN", "CANARY-ACTOR-TOKEN"],
        ),
        (
            TokenCache::builder(
                endpoint(basic()),
                TokenRequest::jwt_bearer("CANARY-ASSERTION"),
            ),
            vec![CLIENT, "CANARY-ASSERTION"],
        ),
        (
            TokenCache::builder(
                endpoint(basic()),
                TokenRequest::password("CANARY-SUBJECT-NAME", "CANARY-PASSWORD"),
            ),
            vec![CLIENT, "CANARY-PASSWORD"],
        ),
    ];
    #[cfg(feature = "jwt")]
    let private_key = {
        let jwk = include_str!("../src/testdata/p256.jwk.json");
        let d: serde_json::Value = serde_json::from_str(jwk).unwrap();
        let key = tower_oauth2::jose::SigningKey::from_jwk(jwk).unwrap();
        builders.push((
            TokenCache::builder(
                endpoint(ClientAuth::private_key_jwt("client", key)),
                TokenRequest::client_credentials(),
            ),
            vec![],
        ));
        d["d"].as_str().unwrap().to_owned()
    };
    let mut shown = Vec::new();
    let mut caches = Vec::new();
    for (n, (builder, secrets)) in builders.into_iter().enumerate() {
        let builder = builder
            .store(FileStore::new(dir.join(format!("cache-{n}.json"))))
            .redis(tier.clone())
            .backoff(Backoff::new(
                Duration::from_millis(10),
                Duration::from_millis(10),
            ));
        shown.push(format!("{builder:?}"));
        caches.push((builder.build(), secrets));
    }
    // A save that fails: its path's directory does not exist.
    let failing = TokenCache::builder(
        endpoint(basic()),
        TokenRequest::token_exchange("CANARY-SUBJECT-TOKEN-2", ACCESS),
    )
    .store(FileStore::new(dir.join("missing").join("tokens.json")))
    .redis(tier.clone())
    .build();
    caches.push((failing, vec![CLIENT, "CANARY-SUBJECT-TOKEN-2"]));

    let get = |path: &str| {
        Request::get(server.url(path))
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    for (cache, _) in &caches {
        let svc = OAuth2Layer::new(cache.clone()).layer(http_client());
        assert_eq!(
            svc.clone().oneshot(get("/api")).await.unwrap().status(),
            StatusCode::OK
        );
        // Refused: invalidated, marked refused in the store, refetched.
        server.revoke_all();
        assert_eq!(
            svc.clone().oneshot(get("/api")).await.unwrap().status(),
            StatusCode::OK
        );
        shown.push(format!(
            "{cache:?} {svc:?} {:?}",
            cache.token().await.unwrap()
        ));
    }
    // One key per cache, whatever its subject, holding none of it.
    let keys = redis.cli(&["KEYS", "*"]);
    let token_keys = keys.lines().filter(|k| k.ends_with(":token")).count();
    assert_eq!(token_keys, caches.len(), "{keys}");
    // With Redis gone, a failed fetch whose error page echoes every secret
    // the cache sent.
    server.revoke_all();
    redis.stop();
    for (cache, secrets) in &caches {
        // A cache holding a refresh token sends it, and the client's secret.
        let token = cache.token().await.unwrap();
        let echo: Vec<&str> = match token.refresh_token() {
            Some(rt) => vec![CLIENT, rt.expose_secret()],
            None => secrets.clone(),
        };
        server.set_failing(Some(Canned::new(
            500,
            "text/html",
            format!("<p>{}</p>", echo.join(" ")),
        )));
        let svc = OAuth2Layer::new(cache.clone()).layer(http_client());
        let e = svc.oneshot(get("/api")).await.unwrap_err();
        shown.push(format!("{e} {e:?}"));
    }
    server.set_failing(None);
    shown.push(format!("{tier:?} {:?}", tier.stats()));

    // Every file name on the disk.
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        names.push(entry.unwrap().file_name().to_string_lossy().into_owned());
    }
    let logs = capture.text();
    assert!(logs.contains("could not save the new token"), "{logs}");
    let mut canaries = vec!["CANARY".to_owned(), CLIENT.to_owned()];
    #[cfg(feature = "jwt")]
    canaries.push(private_key);
    for canary in &canaries {
        for (what, text) in [
            ("a Redis key", keys.clone()),
            ("a file name", names.join("\n")),
            ("a log line", logs.clone()),
            ("an error or Debug", shown.join("\n")),
        ] {
            assert!(
                !text.contains(canary.as_str()),
                "{canary} in {what}:\n{text}"
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
