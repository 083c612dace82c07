//! Client assertions read from a file (and a callback) for every token
//! request, against oidc-provider (issue 21): `private_key_jwt` assertions
//! signed by the test, written to a file that is rewritten between
//! requests; a replayed assertion refused with `invalid_client`, read again
//! and sent once more.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use serde_json::Value;
use tower_oauth2::credentials::{CredentialSource, JWT_BEARER_ASSERTION_TYPE};
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::jose::{Algorithm, SigningKey};
use tower_oauth2::{ClientAuth, SecretString, TokenRequest};

use super::client::Received;
use super::server::RealServer;

const P256: &str = include_str!("../../src/testdata/p256.pem");
const CLIENT: &str = "svc-jwt-es256";

/// A fresh `private_key_jwt` assertion for `CLIENT` (new `jti`, 60 s),
/// as the crate signs it, taken from the body of a request built with it.
async fn signed_assertion(server: &RealServer) -> String {
    let key = SigningKey::from_pem(Algorithm::ES256, P256)
        .expect("the test key")
        .with_key_id("p256-1");
    let request = TokenRequest::client_credentials()
        .build(
            &ClientAuth::private_key_jwt(CLIENT, key),
            &server.token_url(),
        )
        .expect("a signed request");
    let body = request
        .into_body()
        .collect()
        .await
        .expect("a full body")
        .to_bytes();
    form_urlencoded::parse(&body)
        .find(|(name, _)| name == "client_assertion")
        .map(|(_, value)| value.into_owned())
        .expect("a client assertion")
}

/// A file of its own for one test, removed at the end.
struct File(PathBuf);

impl File {
    fn new(name: &str) -> File {
        let path =
            std::env::temp_dir().join(format!("tower-oauth2-real-{name}-{}", std::process::id()));
        File(path)
    }
    /// Replaces the content at once (written beside, renamed over).
    fn write(&self, content: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, content).expect("write the assertion");
        std::fs::rename(&tmp, &self.0).expect("rename it over the old one");
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn assertions_sent(sent: &[Received]) -> Vec<Option<String>> {
    sent.iter().map(|r| r.param("client_assertion")).collect()
}

#[tokio::test]
async fn a_private_key_jwt_assertion_from_a_file_that_is_rewritten() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let file = File::new("assertion");
    let first = signed_assertion(&server).await;
    file.write(&first);
    let client = ClientAuth::client_assertion(CLIENT, CredentialSource::file(file.path()));
    let (endpoint, wire) = server.endpoint(client);
    let request = TokenRequest::client_credentials().scope("inventory:read");

    let token = endpoint.request(&request).await.expect("a token");
    let info = server
        .introspect(token.access_token().expose_secret())
        .await;
    assert_eq!(
        (&info["active"], &info["client_id"]),
        (&Value::Bool(true), &Value::from(CLIENT))
    );
    let sent = wire.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].param("client_assertion_type").as_deref(),
        Some(JWT_BEARER_ASSERTION_TYPE)
    );
    assert_eq!(sent[0].param("client_id").as_deref(), Some(CLIENT));

    // Rewritten: the next request sends the new assertion.
    let second = signed_assertion(&server).await;
    file.write(&second);
    endpoint.request(&request).await.expect("a second token");
    assert_eq!(
        assertions_sent(&wire.sent()),
        [Some(first.clone()), Some(second.clone())]
    );

    // Not rewritten: the used assertion is refused (its `jti` was seen),
    // read again, sent once more, refused again: two requests, no more.
    let err = endpoint
        .request(&request)
        .await
        .expect_err("a replayed assertion");
    assert_eq!(err.kind(), ErrorKind::OAuth);
    assert_eq!(
        err.oauth_error().map(|r| r.error()),
        Some(&ErrorCode::InvalidClient)
    );
    assert_eq!(
        assertions_sent(&wire.sent()),
        [
            Some(first),
            Some(second.clone()),
            Some(second.clone()),
            Some(second)
        ]
    );
}

#[tokio::test]
async fn a_refused_assertion_is_read_again_and_the_request_sent_once_more() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    // The callback gives a used assertion, then a fresh one.
    let used = signed_assertion(&server).await;
    let file = File::new("used");
    file.write(&used);
    let (once, _) = server.endpoint(ClientAuth::client_assertion(
        CLIENT,
        CredentialSource::file(file.path()),
    ));
    once.request(&TokenRequest::client_credentials())
        .await
        .expect("the assertion's one use");
    let fresh = signed_assertion(&server).await;
    let queue = Arc::new(Mutex::new(vec![fresh.clone(), used.clone()]));
    let calls = Arc::new(AtomicUsize::new(0));
    let (q, c) = (queue.clone(), calls.clone());
    let source = CredentialSource::callback(move || {
        c.fetch_add(1, Ordering::SeqCst);
        let next = q.lock().expect("the queue").pop();
        async move { next.map(SecretString::from).ok_or_else(|| "no more".into()) }
    });
    let (endpoint, wire) = server.endpoint(ClientAuth::client_assertion(CLIENT, source));
    let token = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .expect("a token with the assertion read again");
    assert!(!token.access_token().expose_secret().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(assertions_sent(&wire.sent()), [Some(used), Some(fresh)]);
}

/// `private_key_jwt` with the key read from a PEM file for every token
/// request: a key the server does not know is refused (read again, sent
/// once more, refused again); the file rewritten with the registered key
/// is used from the next request; a file without a key is a typed error
/// and nothing is sent.
#[tokio::test]
async fn a_private_key_from_a_file_that_is_rotated() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let file = File::new("key");
    file.write(include_str!("../../src/testdata/p256-unregistered.pem"));
    let client = ClientAuth::private_key_jwt_from(
        CLIENT,
        Algorithm::ES256,
        Some("p256-1".to_owned()),
        CredentialSource::file(file.path()),
    );
    assert_eq!(client.method_name(), "private_key_jwt");
    let (endpoint, wire) = server.endpoint(client);
    let request = TokenRequest::client_credentials().scope("inventory:read");
    let err = endpoint
        .request(&request)
        .await
        .expect_err("a key the server does not know");
    assert_eq!(
        err.oauth_error().map(|r| r.error()),
        Some(&ErrorCode::InvalidClient)
    );
    assert_eq!(wire.sent().len(), 2);

    file.write(P256);
    let token = endpoint.request(&request).await.expect("a token");
    let info = server
        .introspect(token.access_token().expose_secret())
        .await;
    assert_eq!(info["client_id"], CLIENT);
    assert_eq!(wire.sent().len(), 3);

    file.write("not a key CANARY");
    let err = endpoint.request(&request).await.expect_err("no key");
    assert_eq!(err.kind(), ErrorKind::Credential);
    assert_eq!(
        err.credential_failure(),
        Some(tower_oauth2::error::CredentialFailure::NotAKey)
    );
    assert!(!format!("{err} {err:?}").contains("CANARY"), "{err}");
    assert_eq!(wire.sent().len(), 3);
}
