//! `TokenCache::revoke` (RFC 7009) against oidc-provider, its revocation
//! endpoint found by discovery: the server's introspection then reports
//! the revoked tokens inactive, and a later request gets a new token.

use serde_json::Value;
use tower_oauth2::discovery::Discovery;
use tower_oauth2::error::ErrorKind;
use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest};

use super::client::{http_client, Recording};
use super::server::{basic, client_credentials, post, RealServer};
use super::{consent_to_offline_access, Through, REDIRECT_URI};

/// The token endpoint for `client` as discovery describes it (with the
/// server's revocation endpoint), over a client that records what it sends.
async fn discovered(
    server: &RealServer,
    client: ClientAuth,
) -> (TokenEndpoint<Recording>, Recording) {
    let metadata = Discovery::new(http_client())
        .discover(&server.issuer)
        .await
        .expect("discovery");
    let revocation_endpoint = server.metadata["revocation_endpoint"].as_str();
    assert_eq!(metadata.revocation_endpoint(), revocation_endpoint);
    let wire = Recording::default();
    let endpoint = metadata.endpoint(wire.clone(), client);
    assert_eq!(
        endpoint
            .revocation_endpoint()
            .map(ToString::to_string)
            .as_deref(),
        revocation_endpoint
    );
    (endpoint, wire)
}

async fn active(server: &RealServer, token: &str) -> bool {
    let info = server.introspect(token).await;
    match &info["active"] {
        Value::Bool(active) => *active,
        _ => panic!("introspection without active: {info}"),
    }
}

#[tokio::test]
async fn revoked_client_credentials_tokens_are_inactive_and_the_next_request_fetches_anew() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (endpoint, wire) = discovered(&server, basic("svc-revoke-cache")).await;
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let through = Through::start(&server, &cache).await;
    let (status, body) = through.get("/items").await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "svc-revoke-cache"));
    let first = through.rs.tokens()[0].clone();
    assert!(active(&server, &first).await);

    cache.revoke().await.expect("revoked");
    assert!(!active(&server, &first).await);
    let sent = wire.sent();
    assert_eq!(sent.len(), 2, "one token request, one revocation");
    let revocation = &sent[1];
    assert_eq!(
        revocation.uri,
        server.metadata["revocation_endpoint"].as_str().unwrap()
    );
    assert_eq!(
        revocation.form(),
        [
            ("token".to_owned(), first.clone()),
            ("token_type_hint".to_owned(), "access_token".to_owned()),
        ]
    );
    assert_eq!(revocation.authorization(), sent[0].authorization());
    assert!(revocation.authorization().is_some());

    // The next request gets exactly one new token, which is active.
    let (status, _) = through.get("/items").await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let tokens = through.rs.tokens();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[1], first);
    assert!(active(&server, &tokens[1]).await);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.fetch_failures), (2, 0));
    assert_eq!(through.rs.unauthorized(), 0);
    assert_eq!(wire.sent().len(), 3);
}

#[tokio::test]
async fn a_refresh_token_and_its_access_token_are_revoked_in_that_order() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (auth, _, code) = consent_to_offline_access(&server, "web-revoke").await;
    let (endpoint, wire) = discovered(&server, post("web-revoke")).await;
    let exchange = TokenRequest::authorization_code(code, REDIRECT_URI)
        .code_verifier(auth.pkce_verifier().unwrap());
    let issued = endpoint
        .request(&exchange)
        .await
        .expect("the code exchange");
    let rt0 = issued.refresh_token().expect("a refresh token").clone();

    // The cache runs on the refresh token (rotated on its first use).
    let cache = TokenCache::from_refresh_token(endpoint, rt0.clone()).build();
    let token = cache.token().await.expect("a refreshed token");
    let access = token.access_token().expose_secret().to_owned();
    let refresh = token.refresh_token().unwrap().expose_secret().to_owned();
    assert_ne!(refresh, rt0.expose_secret());
    assert!(active(&server, &access).await && active(&server, &refresh).await);

    cache.revoke().await.expect("revoked");
    assert!(!active(&server, &refresh).await, "refresh token revoked");
    assert!(!active(&server, &access).await, "access token revoked");
    let sent = wire.sent();
    assert_eq!(sent.len(), 4, "code exchange, refresh, two revocations");
    let (id, secret) = client_credentials("web-revoke");
    let form = |token: &str, hint: &str| {
        [
            ("token", token),
            ("token_type_hint", hint),
            ("client_id", &id),
            ("client_secret", &secret),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    };
    assert_eq!(sent[2].form(), form(&refresh, "refresh_token"));
    assert_eq!(sent[3].form(), form(&access, "access_token"));
    assert!(sent[2].authorization().is_none() && sent[3].authorization().is_none());

    // Nothing is left to refresh with: the user must authorize again, and
    // no token request is sent.
    let e = cache.bearer_header().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReauthorizationRequired);
    assert_eq!(wire.sent().len(), 4);
}

/// `private_key_jwt`: the revocation request carries a fresh assertion
/// whose audience is the token endpoint (the default) or the issuer (as
/// `ProviderMetadata::jwt_client_auth` sets it); the server takes both.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn private_key_jwt_clients_revoke_with_a_fresh_assertion() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use tower_oauth2::jose::{Algorithm, SigningKey};

    let Some(server) = RealServer::connect().await else {
        return;
    };
    let pem = include_str!("../../src/testdata/p256.pem");
    let key = SigningKey::from_pem(Algorithm::ES256, pem)
        .unwrap()
        .with_key_id("p256-1");
    let client = ClientAuth::private_key_jwt("svc-jwt-revoke", key);
    let to_issuer = client.clone().assertion_audience(server.issuer.clone());
    let audiences = [server.token_endpoint.clone(), server.issuer.clone()];
    for (client, audience) in [client, to_issuer].into_iter().zip(audiences) {
        let (endpoint, wire) = discovered(&server, client).await;
        let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
        let token = cache.token().await.expect("a token");
        let access = token.access_token().expose_secret().to_owned();
        assert!(active(&server, &access).await);
        cache.revoke().await.expect("revoked");
        assert!(!active(&server, &access).await);
        let sent = wire.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[1].names(),
            [
                "token",
                "token_type_hint",
                "client_id",
                "client_assertion_type",
                "client_assertion"
            ]
        );
        let assertion = sent[1].param("client_assertion").unwrap();
        assert_ne!(sent[0].param("client_assertion").unwrap(), assertion);
        let payload = assertion.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).expect("JSON claims");
        assert_eq!(claims["aud"], audience);
        assert_eq!(claims["iss"], "svc-jwt-revoke");
    }
}
