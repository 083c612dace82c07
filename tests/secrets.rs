//! No client secret, access token or refresh token in any `Debug`, `Display`
//! or log line, through a whole fetch → background refresh → 401 → retry
//! cycle and the error paths, with `tracing` captured at TRACE level.

mod support;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_output_of_a_full_cycle_holds_no_secret() {
    let capture = capture();

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
    tokio::time::sleep(Duration::from_millis(1100)).await;
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
    let capture = capture();
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
