//! The protocol core against a real HTTP token server on 127.0.0.1.

use crate::support;

use std::time::Duration;

use support::client::http_client;
use support::token_server::{Canned, ClientCheck, TestServer};
use tower_oauth2::authorize::PkceVerifier;
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::token::TokenType;
use tower_oauth2::{ClientAuth, TokenEndpoint, TokenRequest, TokenUrl};

const SECRET: &str = "p@ss:w+rd/%&=?";

fn endpoint(
    server: &TestServer,
    client: ClientAuth,
) -> TokenEndpoint<
    impl Clone
        + tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = hyper_util::client::legacy::Error,
        >,
> {
    TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&server.token_url()).unwrap(),
        client,
    )
}

fn auth_styles(id: &str) -> Vec<(ClientAuth, ClientCheck)> {
    vec![
        (
            ClientAuth::client_secret_basic(id, SECRET),
            ClientCheck::Basic,
        ),
        (
            ClientAuth::client_secret_post(id, SECRET),
            ClientCheck::Post,
        ),
        (ClientAuth::none(id), ClientCheck::Any),
    ]
}

fn grants(verifier: &PkceVerifier) -> Vec<(TokenRequest, Vec<(&'static str, String)>)> {
    vec![
        (
            TokenRequest::client_credentials()
                .scope("read write")
                .audience("https://api"),
            vec![
                ("grant_type", "client_credentials".into()),
                ("scope", "read write".into()),
                ("audience", "https://api".into()),
            ],
        ),
        (
            TokenRequest::authorization_code("code-1", "https://client.example.com/cb")
                .code_verifier(verifier),
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", "code-1".into()),
                ("redirect_uri", "https://client.example.com/cb".into()),
                (
                    "code_verifier",
                    verifier.secret().expose_secret().to_owned(),
                ),
            ],
        ),
        (
            TokenRequest::refresh_token("rt-seed").scope("read"),
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", "rt-seed".into()),
                ("scope", "read".into()),
            ],
        ),
        (
            TokenRequest::password("jo hn", "pa&ss"),
            vec![
                ("grant_type", "password".into()),
                ("username", "jo hn".into()),
                ("password", "pa&ss".into()),
            ],
        ),
        (
            TokenRequest::token_exchange("subj", "urn:ietf:params:oauth:token-type:access_token")
                .resource("https://b"),
            vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                ),
                ("subject_token", "subj".into()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token".into(),
                ),
                ("resource", "https://b".into()),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_grant_with_every_auth_style() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    let verifier = PkceVerifier::generate().unwrap();
    let mut sent = 0;
    for id in ["svc a", "clïent"] {
        for (client, check) in auth_styles(id) {
            server.set_client(id, SECRET, check);
            for (request, want_params) in grants(&verifier) {
                let token = endpoint(&server, client.clone())
                    .request(&request)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{} {}: {e}", client.method_name(), request.grant_type())
                    });
                sent += 1;
                assert_eq!(token.access_token().expose_secret(), format!("at-{sent}"));
                assert_eq!(token.token_type(), &TokenType::Bearer);
                assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));

                let got = server.received().pop().unwrap();
                assert_eq!(got.method, "POST");
                assert_eq!(got.uri, "/token");
                assert_eq!(
                    got.headers["content-type"],
                    "application/x-www-form-urlencoded"
                );
                assert_eq!(got.headers["accept"], "application/json");
                let mut want: Vec<(String, String)> = want_params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                match check {
                    ClientCheck::Post => {
                        want.push(("client_id".into(), id.into()));
                        want.push(("client_secret".into(), SECRET.into()));
                        assert!(got.headers.get("authorization").is_none());
                    }
                    ClientCheck::Any => {
                        want.push(("client_id".into(), id.into()));
                        assert!(got.headers.get("authorization").is_none());
                    }
                    _ => assert!(got.headers["authorization"]
                        .to_str()
                        .unwrap()
                        .starts_with("Basic ")),
                }
                assert_eq!(
                    got.form(),
                    want,
                    "{} {}",
                    client.method_name(),
                    request.grant_type()
                );
            }
        }
    }
    assert_eq!(server.token_requests(), sent);
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let server = TestServer::start().await;
    server.set_client("svc", SECRET, ClientCheck::Basic);
    let err = endpoint(
        &server,
        ClientAuth::client_secret_basic("svc", "p@ss:w+rd/%&=!"),
    )
    .request(&TokenRequest::client_credentials())
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OAuth);
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(
        err.oauth_error().unwrap().error(),
        &ErrorCode::InvalidClient
    );
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("p@ss"));
}

#[tokio::test]
async fn refresh_keeps_or_rotates_the_refresh_token() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-old");
    let ep = endpoint(&server, ClientAuth::client_secret_basic("client", "secret"));
    // No rotation: the answer has no refresh_token; the old one is kept.
    let t = ep
        .request(&TokenRequest::refresh_token("rt-old"))
        .await
        .unwrap();
    assert_eq!(t.refresh_token().unwrap().expose_secret(), "rt-old");
    // Rotation: the new one is surfaced, and the old one no longer works.
    server.set_rotate_refresh(true);
    let t = ep
        .request(&TokenRequest::refresh_token("rt-old"))
        .await
        .unwrap();
    assert_eq!(t.refresh_token().unwrap().expose_secret(), "rt-2");
    let err = ep
        .request(&TokenRequest::refresh_token("rt-old"))
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error().unwrap().error(), &ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn odd_answers_become_typed_errors() {
    let server = TestServer::start().await;
    let ep = endpoint(&server, ClientAuth::client_secret_post("client", "secret"));
    let cc = TokenRequest::client_credentials();
    server.script([
        Canned::new(502, "text/html", "<html><h1>502 Bad Gateway</h1></html>"),
        Canned::json(200, r#"{"error":"invalid_scope"}"#),
        Canned::json(200, r#"{"token_type":"Bearer"}"#),
        Canned::json(429, r#"{"error":"slow_down"}"#).header("retry-after", "3"),
        Canned::new(302, "text/plain", "").header("location", "https://elsewhere/token"),
        Canned::new(
            200,
            "application/x-www-form-urlencoded",
            "access_token=form-at&token_type=bearer&expires_in=60",
        ),
    ]);
    let e = ep.request(&cc).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.status().map(|s| s.as_u16())),
        (ErrorKind::HttpStatus, Some(502))
    );
    assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
    assert!(e.is_retryable());
    let e = ep.request(&cc).await.unwrap_err();
    assert_eq!(e.oauth_error().unwrap().error(), &ErrorCode::InvalidScope);
    let e = ep.request(&cc).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    let e = ep.request(&cc).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert!(e.is_retryable());
    let e = ep.request(&cc).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Redirect);
    let t = ep.request(&cc).await.unwrap();
    assert_eq!(t.access_token().expose_secret(), "form-at");
    assert_eq!(server.token_requests(), 6);
}

#[tokio::test]
async fn body_limit_and_timeout() {
    let server = TestServer::start().await;
    server.script([Canned::json(
        200,
        &format!(r#"{{"access_token":"{}"}}"#, "a".repeat(10_000)),
    )]);
    let e = endpoint(&server, ClientAuth::none("c"))
        .max_body_bytes(4096)
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BodyTooLarge);
    assert!(e.to_string().contains("4096-byte limit"), "{e}");

    server.set_latency(Duration::from_secs(30));
    let e = endpoint(&server, ClientAuth::none("c"))
        .timeout(Duration::from_millis(200))
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.is_timeout() && e.is_retryable());
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&format!("http://127.0.0.1:{port}/token")).unwrap(),
        ClientAuth::client_secret_basic("c", "top-secret"),
    );
    let e = ep
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.is_transport() && e.is_retryable());
    assert_eq!(e.to_string(), "could not reach the token endpoint");
}

#[tokio::test]
async fn token_url_joined_from_base() {
    let server = TestServer::start().await;
    let url = TokenUrl::join(&server.url("/"), "token").unwrap();
    let t = TokenEndpoint::new(http_client(), url, ClientAuth::none("c"))
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap();
    assert_eq!(t.access_token().expose_secret(), "at-1");
    assert_eq!(server.received()[0].uri, "/token");
}
