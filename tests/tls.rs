//! Feature `rustls`: the one-line HTTPS client and layer against a token
//! endpoint and a resource server speaking TLS on 127.0.0.1, with a CA and a
//! server certificate made by rcgen (`support::pki`).
#![cfg(feature = "rustls")]

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Full;
use support::pki::{pki, tls_servers};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::error::ErrorKind;
use tower_oauth2::layer::ServiceError;
use tower_oauth2::{tls, ClientAuth};

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_from_a_tls_token_endpoint_reaches_a_tls_resource_server() {
    let pki = pki();
    let (server, token_tls, resource_tls) = tls_servers(&pki).await;
    let token_url = format!("https://127.0.0.1:{}/token", token_tls.port());
    // The certificate's DNS name, not its IP address, is checked here.
    let resource = |path: &str| format!("https://localhost:{}{path}", resource_tls.port());

    let (oauth2, https) = tls::client_credentials_layer_with(
        tls::https_client_with_roots(pki.roots()),
        &token_url,
        ClientAuth::client_secret_basic("svc-orders", "s3cret"),
        ["inventory:read"],
    )
    .unwrap();
    let cache = oauth2.cache().clone();
    let client = ServiceBuilder::new().layer(oauth2).service(https);

    // One request opens both connections; then 20 at once share them.
    let first = client
        .clone()
        .oneshot(get(&resource("/items/0")))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // ALPN chose HTTP/2 with the resource server.
    assert_eq!(first.version(), Version::HTTP_2);
    let tasks: Vec<_> = (1..=20)
        .map(|i| {
            let req = get(&resource(&format!("/items/{i}")));
            tokio::spawn(client.clone().oneshot(req))
        })
        .collect();
    for t in tasks {
        let response = t.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_2);
    }

    // The token endpoint was asked once, over TLS, with the client's
    // credentials in client_secret_basic form.
    assert_eq!(server.token_requests(), 1);
    let received = server.received();
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].uri, "/token");
    let sent = (received[0].authorization(), received[0].body.as_str());
    let basic = "Basic c3ZjLW9yZGVyczpzM2NyZXQ="; // svc-orders:s3cret
    let form = "grant_type=client_credentials&scope=inventory%3Aread";
    assert_eq!(sent, (Some(basic), form));

    // Every resource request carried the issued token, exactly.
    let mut seen = server.resource_requests();
    seen.sort_by_key(|(path, _, _)| path[7..].parse::<u32>().unwrap());
    let expected: Vec<_> = (0..=20)
        .map(|i| {
            (
                format!("/items/{i}"),
                Some("Bearer at-1".to_owned()),
                Bytes::new(),
            )
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(server.unauthorized_count(), 0);

    // All of it went through the TLS listeners: one handshake each (the 20
    // concurrent requests were multiplexed on the one HTTP/2 connection).
    assert_eq!((token_tls.accepted(), token_tls.refused()), (1, 0));
    assert_eq!((resource_tls.accepted(), resource_tls.refused()), (1, 0));
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_ca_gets_a_typed_transport_error() {
    let pki = pki();
    let (server, token_tls, resource_tls) = tls_servers(&pki).await;
    let token_url = format!("https://127.0.0.1:{}/token", token_tls.port());

    // The one-liner trusts Mozilla's roots, which do not include the test CA.
    let (oauth2, https) = tls::client_credentials_layer(
        &token_url,
        ClientAuth::client_secret_basic("svc-orders", "s3cret"),
        ["inventory:read"],
    )
    .unwrap();
    let client = ServiceBuilder::new().layer(oauth2).service(https);
    let url = format!("https://localhost:{}/items/1", resource_tls.port());

    let err = client.oneshot(get(&url)).await.unwrap_err();
    let ServiceError::Token(e) = &err else {
        panic!("expected a token error, got {err:?}");
    };
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.is_transport() && e.is_retryable());
    // The cause is the certificate check, and it is kept in the error.
    let chain = format!("{e:?}");
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "{chain}"
    );

    // The handshake was refused before any HTTP: nothing reached either side.
    // (The server notices the client's alert after the client has returned:
    // wait for it, at most 10 s.)
    for _ in 0..1000 {
        if token_tls.refused() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!((token_tls.accepted(), token_tls.refused()), (0, 1));
    assert_eq!(server.token_requests(), 0);
    assert_eq!(server.resource_count(), 0);
    assert_eq!(resource_tls.accepted() + resource_tls.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_client_never_sends_the_token_over_plain_http() {
    let pki = pki();
    let (server, token_tls, _resource_tls) = tls_servers(&pki).await;
    let token_url = format!("https://127.0.0.1:{}/token", token_tls.port());
    let (oauth2, https) = tls::client_credentials_layer_with(
        tls::https_client_with_roots(pki.roots()),
        &token_url,
        ClientAuth::client_secret_basic("svc-orders", "s3cret"),
        None::<&str>,
    )
    .unwrap();
    let client = ServiceBuilder::new().layer(oauth2).service(https);

    // The test server's plain-HTTP listener.
    let err = client
        .oneshot(get(&server.url("/items/1")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::Inner(_)),
        "expected the client's own error, got {err:?}"
    );
    // The token was fetched over TLS (no scope asked) but never sent.
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.received()[0].body, "grant_type=client_credentials");
    assert_eq!(server.resource_count(), 0);
}
