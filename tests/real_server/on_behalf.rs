//! OnBehalfLayer against oidc-provider's RFC 8693 token-exchange grant
//! (registered in `.ci/auth-server/server.mjs`): two subjects, each client
//! credentials tokens of another client, exchanged by `svc-exchange`; the
//! resource server (introspection) says whose token each request carried.

use super::*;
use tower::Layer as _;
use tower_oauth2::on_behalf::{OnBehalfLayer, OnBehalfService, SubjectToken, ACCESS_TOKEN_TYPE};
use tower_oauth2::Destinations;

async fn on_behalf(
    svc: &OnBehalfService<HttpClient>,
    url: &str,
    subject: &SecretString,
) -> Result<StatusCode, tower_oauth2::Error> {
    let mut request = client::get(url);
    request
        .extensions_mut()
        .insert(SubjectToken::new(subject.clone()));
    match svc.clone().oneshot(request).await {
        Ok(response) => Ok(response.status()),
        Err(e) => Err(e.token_error().expect("a token error").clone()),
    }
}

#[tokio::test]
async fn real_server_token_exchange_one_exchange_per_subject_each_request_carries_its_subjects_token(
) {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let rs = ResourceServer::start(&server).await;
    // The callers' tokens: svc-basic's and svc-post's.
    let cc = TokenRequest::client_credentials;
    let (alice, _, _) = fetch(&server, basic("svc-basic"), cc()).await;
    let (bob, _, _) = fetch(&server, post("svc-post"), cc()).await;
    let (alice, bob) = (alice.access_token().clone(), bob.access_token().clone());

    let (endpoint, wire) = server.endpoint(basic("svc-exchange"));
    let layer = OnBehalfLayer::new(move |subject: &SubjectToken| {
        let request = TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE)
            .audience("inventory")
            .scope("inventory:read");
        TokenCache::builder(endpoint.clone(), request).build()
    })
    .destinations(Destinations::any());
    let svc = layer.layer(http_client());
    let url = rs.url("/items");

    let whose = |token: String| {
        let server = server.clone();
        async move {
            let info = server.introspect(&token).await;
            assert_eq!(info["active"], Value::Bool(true), "{info}");
            assert_eq!(info["client_id"], "svc-exchange", "{info}");
            info["act_for"].as_str().unwrap_or_default().to_owned()
        }
    };
    for _ in 0..3 {
        assert_eq!(
            on_behalf(&svc, &url, &alice).await.map_err(|e| e.kind()),
            Ok(StatusCode::OK)
        );
    }
    let tokens = rs.tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(whose(tokens[0].clone()).await, "svc-basic");
    for _ in 0..3 {
        assert_eq!(
            on_behalf(&svc, &url, &bob).await.map_err(|e| e.kind()),
            Ok(StatusCode::OK)
        );
    }
    let tokens = rs.tokens();
    assert_eq!(tokens.len(), 2);
    assert_eq!(whose(tokens[1].clone()).await, "svc-post");
    // Alice again: her cached token, no exchange.
    assert_eq!(
        on_behalf(&svc, &url, &alice).await.map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );
    assert_eq!(rs.tokens().len(), 2);
    assert_eq!(rs.requests(), 7);

    // A subject token the server never issued: refused, alone.
    let forged = SecretString::new("not-a-token-of-this-server");
    let err = on_behalf(&svc, &url, &forged).await.expect_err("refused");
    assert_eq!(oauth_error(&err), INVALID_GRANT);
    assert_eq!(
        on_behalf(&svc, &url, &bob).await.map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );

    let sent = wire.sent();
    let subjects: Vec<_> = sent.iter().map(|r| r.param("subject_token")).collect();
    let expose = |s: &SecretString| Some(s.expose_secret().to_owned());
    assert_eq!(
        subjects,
        [
            expose(&alice),
            expose(&bob),
            Some("not-a-token-of-this-server".to_owned())
        ]
    );
    for r in &sent {
        assert_eq!(
            r.param("grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:token-exchange")
        );
        assert_eq!(
            r.param("subject_token_type").as_deref(),
            Some(ACCESS_TOKEN_TYPE)
        );
        assert_eq!(r.param("audience").as_deref(), Some("inventory"));
    }
}
