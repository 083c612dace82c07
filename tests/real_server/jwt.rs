//! JWT client authentication (`private_key_jwt` with every algorithm the
//! server takes, `client_secret_jwt`) and the signed JWT-bearer grant
//! against oidc-provider. The clients' public keys in clients.json are the
//! halves of the test keys in src/testdata/.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::StatusCode;
use serde_json::Value;
use tower_oauth2::discovery::Discovery;
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::jose::{Algorithm, SigningKey};
use tower_oauth2::request::{JwtClaims, CLIENT_ASSERTION_TYPE};
use tower_oauth2::{ClientAuth, TokenRequest};

use super::client::{http_client, oauth_error};
use super::server::{basic, client_credentials, RealServer};
use super::{fetch_inventory_read, Through, INVALID_GRANT};

const P256: &str = include_str!("../../src/testdata/p256.pem");
const P256_UNREGISTERED: &str = include_str!("../../src/testdata/p256-unregistered.pem");
const ED25519: &str = include_str!("../../src/testdata/ed25519.pem");
#[cfg(feature = "jwt-rsa")]
const RSA: &str = include_str!("../../src/testdata/rsa2048.pem");

fn key(alg: Algorithm, pem: &str, kid: &str) -> SigningKey {
    SigningKey::from_pem(alg, pem).unwrap().with_key_id(kid)
}

/// The claims of a sent JWT.
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A client credentials token for `client` ([`fetch_inventory_read`]):
/// active for that client by introspection, and sent with a client
/// assertion only. Gives back the assertion's claims.
async fn fetch_with_assertion(server: &RealServer, client: ClientAuth) -> Value {
    let id = client.client_id().to_owned();
    let (sent, info) = fetch_inventory_read(server, client).await;
    assert_eq!(sent.authorization(), None);
    assert_eq!(
        sent.names(),
        [
            "grant_type",
            "scope",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert_eq!(sent.param("client_id").as_deref(), Some(id.as_str()));
    assert_eq!(
        sent.param("client_assertion_type").as_deref(),
        Some(CLIENT_ASSERTION_TYPE)
    );
    assert_eq!(
        (&info["active"], &info["client_id"]),
        (&Value::Bool(true), &Value::from(id))
    );
    claims_of(&sent.param("client_assertion").unwrap())
}

#[tokio::test]
async fn private_key_jwt_with_every_algorithm() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let methods = server.metadata["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("\"private_key_jwt\""), "{methods}");
    #[allow(unused_mut, reason = "RSA clients only with jwt-rsa")]
    let mut clients = vec![
        ("svc-jwt-es256", key(Algorithm::ES256, P256, "p256-1")),
        ("svc-jwt-eddsa", key(Algorithm::EdDSA, ED25519, "ed25519-1")),
        (
            "svc-jwt-ed25519",
            key(Algorithm::Ed25519, ED25519, "ed25519-1"),
        ),
    ];
    #[cfg(feature = "jwt-rsa")]
    clients.extend([
        ("svc-jwt-rs256", key(Algorithm::RS256, RSA, "rsa-1")),
        ("svc-jwt-ps256", key(Algorithm::PS256, RSA, "rsa-1")),
    ]);
    for (id, key) in clients {
        let sent = fetch_with_assertion(&server, ClientAuth::private_key_jwt(id, key)).await;
        assert_eq!(
            (&sent["iss"], &sent["sub"]),
            (&Value::from(id), &Value::from(id))
        );
        assert_eq!(sent["aud"], server.token_endpoint.as_str());
    }

    // Through the layer, which fetches once for several requests.
    let client =
        ClientAuth::private_key_jwt("svc-jwt-es256", key(Algorithm::ES256, P256, "p256-1"));
    let (cache, wire) = server.cache(client, TokenRequest::client_credentials());
    let through = Through::start(&server, &cache).await;
    for _ in 0..3 {
        let (status, body) = through.get("/items").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-jwt-es256"));
    }
    assert_eq!((cache.stats().token_fetches, wire.sent().len()), (1, 1));
}

#[tokio::test]
async fn client_secret_jwt_with_hs256() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (id, secret) = client_credentials("svc-jwt-hs256");
    let client = ClientAuth::client_secret_jwt(&id, secret.as_str()).unwrap();
    let sent = fetch_with_assertion(&server, client).await;
    assert_eq!(sent["iss"], id.as_str());
    assert_eq!(sent["aud"], server.token_endpoint.as_str());
}

#[tokio::test]
async fn private_key_jwt_from_discovery_with_the_issuer_as_audience() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let metadata = Discovery::new(http_client())
        .discover(&server.issuer)
        .await
        .unwrap();
    let key = key(Algorithm::ES256, P256, "p256-1");
    let client = metadata
        .jwt_client_auth(ClientAuth::private_key_jwt("svc-jwt-issuer", key))
        .unwrap();
    let sent = fetch_with_assertion(&server, client).await;
    assert_eq!(sent["aud"], server.issuer.as_str());
    // What jwt_client_auth checked: the method and the algorithm are listed.
    let algs = &metadata.other()["token_endpoint_auth_signing_alg_values_supported"];
    assert!(
        algs.as_array()
            .is_some_and(|a| a.iter().any(|v| v == "ES256")),
        "{algs}"
    );
    let methods = metadata.token_endpoint_auth_methods_supported().unwrap();
    assert!(
        methods.iter().any(|m| m == "client_secret_jwt"),
        "{methods:?}"
    );
}

#[tokio::test]
async fn an_assertion_signed_with_another_key_is_invalid_client() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    // The same kid and algorithm as the registered key, another key.
    let wrong = key(Algorithm::ES256, P256_UNREGISTERED, "p256-1");
    let (id, secret) = client_credentials("svc-jwt-hs256");
    let cases = [
        ClientAuth::private_key_jwt("svc-jwt-wrong-key", wrong.clone()),
        // An algorithm the client did not register.
        ClientAuth::private_key_jwt(
            "svc-jwt-wrong-key",
            key(Algorithm::EdDSA, ED25519, "p256-1"),
        ),
        // Another client's secret.
        ClientAuth::client_secret_jwt(&id, "0123456789abcdef0123456789abcdef").unwrap(),
    ];
    assert_ne!(secret, "0123456789abcdef0123456789abcdef");
    for client in cases {
        let what = format!("{client:?}");
        let (endpoint, _) = server.endpoint(client);
        let e = endpoint
            .request(&TokenRequest::client_credentials())
            .await
            .unwrap_err();
        assert_eq!(
            oauth_error(&e),
            (
                ErrorKind::OAuth,
                Some(&ErrorCode::InvalidClient),
                Some("client authentication failed")
            ),
            "{what}: {e}"
        );
        assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED));
        assert!(!e.is_retryable(), "{e}");
    }
}

#[tokio::test]
async fn jwt_bearer_grant_with_an_assertion_signed_each_time() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let claims = JwtClaims::new("svc-jwt-bearer", "user-42").audience(&server.issuer);
    let request = TokenRequest::jwt_bearer_signed(claims, key(Algorithm::ES256, P256, "p256-1"))
        .scope("inventory:read");
    let (endpoint, wire) = server.endpoint(basic("svc-jwt-bearer"));
    // The server refuses a replayed jti: two tokens, two assertions.
    for _ in 0..2 {
        let token = endpoint.request(&request).await.unwrap();
        assert_eq!(token.scope(), Some("inventory:read"));
        let info = server
            .introspect(token.access_token().expose_secret())
            .await;
        assert_eq!(
            (&info["active"], &info["client_id"]),
            (&Value::Bool(true), &Value::from("svc-jwt-bearer"))
        );
    }
    let sent = wire.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].names(), ["grant_type", "assertion", "scope"]);
    let jtis: Vec<Value> = sent
        .iter()
        .map(|r| claims_of(&r.param("assertion").unwrap())["jti"].clone())
        .collect();
    assert_ne!(jtis[0], jtis[1]);

    // An assertion from a key the server does not know.
    let claims = JwtClaims::new("svc-jwt-bearer", "user-42");
    let wrong =
        TokenRequest::jwt_bearer_signed(claims, key(Algorithm::ES256, P256_UNREGISTERED, "p256-1"));
    let e = endpoint.request(&wrong).await.unwrap_err();
    assert_eq!(oauth_error(&e), INVALID_GRANT, "{e}");
}

/// A deployment's variables alone, against the real server: the issuer
/// (discovered), and the JWT methods with their secret or key from files
/// (`client_secret_jwt` from a secret file, `private_key_jwt` from a key
/// file): each gets a token the server issued to that client.
#[tokio::test]
async fn from_variables_the_issuer_and_jwt_credentials_from_files() {
    use tower_oauth2::config::ClientConfig;
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tower-oauth2-config-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hmac_id, hmac_secret) = client_credentials("svc-jwt-hs256");
    let secret_file = dir.join("client-secret");
    std::fs::write(&secret_file, format!("{hmac_secret}\n")).unwrap();
    let key_file = dir.join("key.pem");
    std::fs::write(&key_file, P256).unwrap();
    let (secret_file, key_file) = (
        secret_file.to_string_lossy().into_owned(),
        key_file.to_string_lossy().into_owned(),
    );
    let clients: [(&str, Vec<(&str, &str)>); 2] = [
        (
            hmac_id.as_str(),
            vec![
                ("OAUTH2_AUTH", "client_secret_jwt"),
                ("OAUTH2_CLIENT_SECRET_FILE", secret_file.as_str()),
            ],
        ),
        (
            "svc-jwt-es256",
            vec![
                ("OAUTH2_KEY_FILE", key_file.as_str()),
                ("OAUTH2_KEY_ID", "p256-1"),
            ],
        ),
    ];
    for (client_id, more) in clients {
        let mut vars = vec![
            ("OAUTH2_ISSUER", server.issuer.as_str()),
            ("OAUTH2_CLIENT_ID", client_id),
        ];
        vars.extend(more);
        let config = ClientConfig::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("a complete configuration");
        assert!(config.token_url().is_none());
        let config = config.discover(http_client()).await.expect("the metadata");
        assert_eq!(
            config.token_url().map(|u| u.to_string()),
            Some(server.token_endpoint.clone())
        );
        let cache = config.cache(http_client()).expect("a token endpoint");
        let token = cache.token().await.expect("a token");
        let active = server
            .introspect(token.access_token().expose_secret())
            .await;
        assert_eq!(active["client_id"], client_id, "{active}");
        assert_eq!(cache.stats().token_fetches, 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
