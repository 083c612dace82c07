//! JWT client authentication (`private_key_jwt`, `client_secret_jwt`) and
//! the signed JWT-bearer grant against the HTTP token server on 127.0.0.1:
//! the exact form body, a fresh assertion for every token request (through
//! the layer's 401 refetch too), signatures checked with the public key
//! alone, and the assertion scrubbed from error messages.
#![cfg(feature = "jwt")]

use crate::support;

use std::convert::Infallible;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;
use support::client::{http_client, Received};
use support::token_server::TestServer;
use tower::{service_fn, ServiceBuilder, ServiceExt as _};
use tower_oauth2::error::ErrorKind;
use tower_oauth2::jose::{Algorithm, SigningKey};
use tower_oauth2::request::{JwtClaims, CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

const P256_PEM: &str = include_str!("../src/testdata/p256.pem");
const P256_JWK: &str = include_str!("../src/testdata/p256.jwk.json");
const SECRET: &str = "client-secret-for-hs256-32-bytes";

fn p256() -> SigningKey {
    SigningKey::from_pem(Algorithm::ES256, P256_PEM)
        .unwrap()
        .with_key_id("p256-1")
}

/// The verifying key from the public members of the JWK, as a server
/// holding only the client's registered public key would build it.
fn registered_public_key() -> p256::ecdsa::VerifyingKey {
    let jwk: Value = serde_json::from_str(P256_JWK).unwrap();
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend(coordinate("x"));
    sec1.extend(coordinate("y"));
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap()
}

/// `(header, claims, signing input, signature)` of a compact JWS.
fn split(jwt: &str) -> (Value, Value, String, Vec<u8>) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let json = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    (json(parts[0]), json(parts[1]), input, signature)
}

fn verify_es256(jwt: &str) -> Value {
    use p256::ecdsa::signature::Verifier as _;
    let (header, claims, input, signature) = split(jwt);
    assert_eq!(header.to_string(), r#"{"alg":"ES256","kid":"p256-1"}"#);
    let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
    registered_public_key()
        .verify(input.as_bytes(), &signature)
        .expect("the signature verifies with the registered public key");
    claims
}

fn verify_hs256(jwt: &str) -> Value {
    use hmac::Mac as _;
    let (header, claims, input, signature) = split(jwt);
    assert_eq!(header.to_string(), r#"{"alg":"HS256"}"#);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    mac.verify_slice(&signature)
        .expect("HS256 with the client secret");
    claims
}

/// The names of the form parameters, in order.
fn names(received: &Received) -> Vec<String> {
    received.form().into_iter().map(|(k, _)| k).collect()
}

/// The names of a JWT's claims, sorted.
fn claim_names(claims: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// Checks a client assertion's claims; gives back its `jti`.
fn check_client_claims(claims: &Value, client_id: &str, aud: &str) -> String {
    assert_eq!(
        claim_names(claims),
        ["aud", "exp", "iat", "iss", "jti", "sub"]
    );
    assert_eq!(claims["iss"], client_id);
    assert_eq!(claims["sub"], client_id);
    assert_eq!(claims["aud"], aud);
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60);
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn private_key_jwt_sends_a_fresh_signed_assertion_each_time() {
    let server = TestServer::start().await;
    let url = TokenUrl::new(&server.token_url()).unwrap();
    let client = ClientAuth::private_key_jwt("svc-orders", p256());
    let endpoint = TokenEndpoint::new(http_client(), url, client);
    let request = TokenRequest::client_credentials().scope("orders:read");
    for _ in 0..2 {
        let token = endpoint.request(&request).await.unwrap();
        assert!(token.access_token().expose_secret().starts_with("at-"));
    }
    let received = server.received();
    assert_eq!(received.len(), 2);
    let mut jtis = Vec::new();
    for r in &received {
        assert_eq!(r.method, "POST");
        assert!(r.headers.get("authorization").is_none());
        assert_eq!(
            r.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            names(r),
            [
                "grant_type",
                "scope",
                "client_id",
                "client_assertion_type",
                "client_assertion"
            ]
        );
        assert_eq!(r.param("grant_type").unwrap(), "client_credentials");
        assert_eq!(r.param("scope").unwrap(), "orders:read");
        assert_eq!(r.param("client_id").unwrap(), "svc-orders");
        assert_eq!(
            r.param("client_assertion_type").unwrap(),
            CLIENT_ASSERTION_TYPE
        );
        let claims = verify_es256(&r.param("client_assertion").unwrap());
        jtis.push(check_client_claims(
            &claims,
            "svc-orders",
            &server.token_url(),
        ));
    }
    assert_ne!(jtis[0], jtis[1]);
}

#[tokio::test]
async fn client_secret_jwt_with_the_issuer_as_audience() {
    let server = TestServer::start().await;
    let url = TokenUrl::new(&server.token_url()).unwrap();
    let issuer = server.url("");
    let client = ClientAuth::client_secret_jwt("svc-hmac", SECRET)
        .unwrap()
        .assertion_audience(&issuer);
    let endpoint = TokenEndpoint::new(http_client(), url, client);
    endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap();
    let received = server.received();
    let r = &received[0];
    assert_eq!(
        names(r),
        [
            "grant_type",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert!(!r.body.contains(SECRET));
    let claims = verify_hs256(&r.param("client_assertion").unwrap());
    check_client_claims(&claims, "svc-hmac", &issuer);
}

#[tokio::test]
async fn signed_jwt_bearer_grant_through_the_layer_signs_again_on_refetch() {
    let server = TestServer::start().await;
    let url = TokenUrl::new(&server.token_url()).unwrap();
    let claims = JwtClaims::new("sa@project.example", "user-7")
        .scope("orders:read")
        .claim("tenant", "acme");
    let grant = TokenRequest::jwt_bearer_signed(claims, p256());
    let endpoint = TokenEndpoint::new(http_client(), url, ClientAuth::none("client-1"));
    let cache = TokenCache::builder(endpoint, grant).build();
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache))
        .service(http_client());
    let get = || {
        Request::get(server.url("/orders"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The server forgets the token: the 401 makes the layer fetch a new one,
    // with a newly signed assertion.
    server.revoke_all();
    let response = svc.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let received = server.received();
    assert_eq!(received.len(), 2);
    let mut jtis = Vec::new();
    for r in &received {
        assert_eq!(names(r), ["grant_type", "assertion", "client_id"]);
        assert_eq!(r.param("grant_type").unwrap(), JWT_BEARER_GRANT);
        assert_eq!(r.param("client_id").unwrap(), "client-1");
        let claims = verify_es256(&r.param("assertion").unwrap());
        assert_eq!(
            claim_names(&claims),
            ["aud", "exp", "iat", "iss", "jti", "scope", "sub", "tenant"]
        );
        assert_eq!(claims["iss"], "sa@project.example");
        assert_eq!(claims["sub"], "user-7");
        assert_eq!(claims["aud"], server.token_url());
        assert_eq!(claims["scope"], "orders:read");
        assert_eq!(claims["tenant"], "acme");
        jtis.push(claims["jti"].clone());
    }
    assert_ne!(jtis[0], jtis[1]);
}

#[tokio::test]
async fn an_echoed_assertion_is_scrubbed_from_the_error() {
    // A gateway that answers 400 with the request body it received.
    let echo = service_fn(|request: Request<Full<Bytes>>| async move {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        Ok::<_, Infallible>(response)
    });
    let url = TokenUrl::new("https://as.example.com/token").unwrap();
    for (client, grant) in [
        (
            ClientAuth::private_key_jwt("svc", p256()),
            TokenRequest::client_credentials(),
        ),
        (
            ClientAuth::client_secret_jwt("svc", SECRET).unwrap(),
            TokenRequest::client_credentials(),
        ),
    ] {
        let endpoint = TokenEndpoint::new(echo, url.clone(), client);
        let err = endpoint.request(&grant).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HttpStatus);
        assert_eq!(
            err.to_string(),
            "token endpoint answered 400 Bad Request with a body that is not an OAuth2 error: \
             \"grant_type=client_credentials&client_id=svc&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion=[redacted]\""
        );
    }
    let grant = TokenRequest::jwt_bearer_signed(JwtClaims::new("i", "s"), p256());
    let endpoint = TokenEndpoint::new(echo, url, ClientAuth::none("c"));
    let err = endpoint.request(&grant).await.unwrap_err();
    assert!(
        err.to_string().ends_with(
            "\"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer\
             &assertion=[redacted]&client_id=c\""
        ),
        "{err}"
    );
}
