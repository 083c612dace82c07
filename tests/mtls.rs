//! Feature `rustls`: RFC 8705 mutual TLS against authorization and resource
//! servers on 127.0.0.1 that require client certificates (a CA, server and
//! client certificates made here by rcgen).
//!
//! The test server issues certificate-bound tokens: its token endpoint
//! authenticates the client by the certificate of the connection (the one
//! registered for the `client_id`), keeps an introspection record with
//! `cnf.x5t#S256` = base64url(SHA-256(certificate DER)) (RFC 8705 §3.1,
//! §3.2), and its resource answers 200 only when the connection presents
//! the certificate the token is bound to.
#![cfg(feature = "rustls")]

use crate::support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::client::Received;
use support::pki::{pki, self_signed_client_cert, serve_tls, ClientCert, Frontend, Pki};
use support::serve::serve_connection;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::discovery::Discovery;
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::layer::ServiceError;
use tower_oauth2::tls::{self, ClientIdentity, HttpsClient};
use tower_oauth2::{ClientAuth, TokenRequest};

/// `x5t#S256` of a certificate, computed here independently of the crate.
fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

fn identity(cert: &ClientCert) -> ClientIdentity {
    ClientIdentity::from_pem(&cert.cert_pem, &cert.key_pem).unwrap()
}

/// What the test authorization and resource server saw and issued.
#[derive(Default)]
struct State {
    /// `client_id` → the thumbprint of the certificate registered for it.
    registered: HashMap<String, String>,
    /// Token requests: the listener's name and the request.
    token_requests: Vec<(&'static str, Received)>,
    /// Access token → its introspection record (RFC 7662, RFC 8705 §3.2).
    records: HashMap<String, Value>,
    /// Resource requests: path, `Authorization`, the status answered.
    resource: Vec<(String, Option<String>, u16)>,
    /// The metadata document served at `/.well-known/openid-configuration`.
    metadata: Value,
}

/// The server: one state behind any number of TLS listeners.
#[derive(Clone, Default)]
struct Server(Arc<Mutex<State>>);

/// Which client certificates a listener asks for.
enum ClientCerts {
    /// None (an ordinary TLS server).
    NotAsked,
    /// Required, issued by the test CA.
    FromTheCa,
    /// Required, any certificate (self-signed ones included) whose holder
    /// proves the key in the handshake.
    Any,
}

impl Server {
    fn register(&self, client_id: &str, cert: &ClientCert) {
        let mut state = self.0.lock().unwrap();
        state
            .registered
            .insert(client_id.to_owned(), thumbprint(&cert.der));
    }

    /// A TLS listener called `name` serving this server.
    async fn listen(&self, pki: &Pki, name: &'static str, certs: ClientCerts) -> Frontend {
        let server = self.clone();
        serve_tls(server_config(pki, certs), move |tls| {
            let peer = tls.get_ref().1.peer_certificates();
            let peer = peer.and_then(|chain| chain.first()).map(|c| thumbprint(c));
            let server = server.clone();
            let service = tower::service_fn(move |req: Request<Incoming>| {
                let (server, peer) = (server.clone(), peer.clone());
                async move { Ok::<_, Infallible>(server.handle(name, peer, req).await) }
            });
            serve_connection(tls, service)
        })
        .await
    }

    /// Answers one request that came over listener `name`, on a connection
    /// that presented a certificate with thumbprint `peer`.
    async fn handle(
        &self,
        name: &'static str,
        peer: Option<String>,
        req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let mut state = self.0.lock().unwrap();
        match parts.uri.path() {
            "/.well-known/openid-configuration" => json_response(200, &state.metadata),
            "/token" => {
                let received = Received::new(&parts, &body);
                state.token_requests.push((name, received.clone()));
                token(&mut state, &received, peer)
            }
            path => {
                let authorization = received_authorization(&parts);
                let bearer = authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer "));
                let bound = bearer
                    .and_then(|token| state.records.get(token))
                    .and_then(|record| record["cnf"]["x5t#S256"].as_str());
                let ok = bound.is_some() && bound == peer.as_deref();
                let status = if ok { 200 } else { 401 };
                state
                    .resource
                    .push((path.to_owned(), authorization, status));
                resource_response(ok)
            }
        }
    }

    fn token_requests(&self) -> Vec<(&'static str, Received)> {
        self.0.lock().unwrap().token_requests.clone()
    }

    fn resource(&self) -> Vec<(String, Option<String>, u16)> {
        self.0.lock().unwrap().resource.clone()
    }
}

/// The token endpoint: the client named by `client_id` is the one whose
/// registered certificate the connection presented (RFC 8705 §2); the
/// token is bound to it.
fn token(state: &mut State, received: &Received, peer: Option<String>) -> Response<Full<Bytes>> {
    let client_id = received.param("client_id").unwrap_or_default();
    let registered = state.registered.get(&client_id);
    let Some(peer) = peer.filter(|p| Some(p) == registered) else {
        return json_response(401, &json!({"error": "invalid_client"}));
    };
    let access_token = format!("at-{}", state.records.len() + 1);
    let record = json!({
        "active": true,
        "client_id": client_id,
        "token_type": "Bearer",
        "cnf": {"x5t#S256": peer},
    });
    state.records.insert(access_token.clone(), record);
    json_response(
        200,
        &json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}),
    )
}

fn received_authorization(parts: &http::request::Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?;
    Some(value.to_str().unwrap().to_owned())
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::from(body.to_string()))
        .unwrap()
}

fn resource_response(ok: bool) -> Response<Full<Bytes>> {
    let response = Response::builder();
    if ok {
        return response.body(Full::from("ok")).unwrap();
    }
    response
        .status(401)
        .header(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
        .body(Full::default())
        .unwrap()
}

fn server_config(pki: &Pki, certs: ClientCerts) -> ServerConfig {
    let provider = Arc::new(ring::default_provider());
    let verifier: Arc<dyn ClientCertVerifier> = match certs {
        ClientCerts::NotAsked => return pki.server_config(None, &[b"h2", b"http/1.1"]),
        ClientCerts::FromTheCa => {
            WebPkiClientVerifier::builder_with_provider(Arc::new(pki.roots()), provider)
                .build()
                .unwrap()
        }
        ClientCerts::Any => Arc::new(AnyCertificate(provider)),
    };
    pki.server_config(Some(verifier), &[b"h2", b"http/1.1"])
}

/// Requires a client certificate, any certificate, and checks only that
/// the client holds its key (the handshake signature): for self-signed
/// certificates, which the token endpoint matches against the registered
/// one (RFC 8705 §2.2).
#[derive(Debug)]
struct AnyCertificate(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl ClientCertVerifier for AnyCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, tokio_rustls::rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

fn get_with_token(url: &str, token: &str) -> Request<Full<Bytes>> {
    let mut request = get(url);
    let value = format!("Bearer {token}").parse().unwrap();
    request.headers_mut().insert(AUTHORIZATION, value);
    request
}

/// Sends `request` with `https` and reads the status and body.
async fn send(https: &HttpsClient, request: Request<Full<Bytes>>) -> (StatusCode, String) {
    let response = https.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The one token request seen: listener, `Authorization`, body.
fn only_token_request(server: &Server) -> (&'static str, Option<String>, String) {
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (listener, request) = &requests[0];
    let authorization = request.authorization().map(str::to_owned);
    (listener, authorization, request.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_fetched_with_tls_client_auth_is_bound_to_the_certificate() {
    let pki = pki();
    let cert = pki.client_cert("svc-orders");
    let server = Server::default();
    server.register("svc-orders", &cert);
    let mtls = server.listen(&pki, "mtls", ClientCerts::FromTheCa).await;

    let id = identity(&cert);
    assert_eq!(id.certificate_thumbprint(), thumbprint(&cert.der));
    let (oauth2, https) = tls::client_credentials_layer_with(
        tls::https_client_with_identity(&id, pki.roots()),
        &mtls.url("/token"),
        ClientAuth::tls_client_auth("svc-orders"),
        ["inventory:read"],
    )
    .unwrap();
    let client = ServiceBuilder::new().layer(oauth2).service(https.clone());
    let response = client.oneshot(get(&mtls.url("/items/1"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // client_id in the body, no secret, no Authorization header: the
    // certificate in the handshake was the proof.
    assert_eq!(
        only_token_request(&server),
        (
            "mtls",
            None,
            "grant_type=client_credentials&scope=inventory%3Aread&client_id=svc-orders".to_owned()
        )
    );
    // The token is bound to the certificate, and the resource accepted it
    // over a connection presenting that certificate.
    assert_eq!(
        server.0.lock().unwrap().records["at-1"],
        json!({
            "active": true,
            "client_id": "svc-orders",
            "token_type": "Bearer",
            "cnf": {"x5t#S256": thumbprint(&cert.der)},
        })
    );
    let bearer = Some("Bearer at-1".to_owned());
    assert_eq!(
        server.resource(),
        [("/items/1".to_owned(), bearer.clone(), 200)]
    );

    // The same token over a connection with another certificate (from the
    // same CA) is refused: it is bound to the first one.
    let other = tls::https_client_with_identity(&identity(&pki.client_cert("other")), pki.roots());
    let answer = send(&other, get_with_token(&mtls.url("/items/2"), "at-1")).await;
    assert_eq!(answer, (StatusCode::UNAUTHORIZED, String::new()));
    // And the first client's own connection still gets in with it.
    let answer = send(&https, get_with_token(&mtls.url("/items/3"), "at-1")).await;
    assert_eq!(answer, (StatusCode::OK, "ok".to_owned()));
    assert_eq!(
        server.resource(),
        [
            ("/items/1".to_owned(), bearer.clone(), 200),
            ("/items/2".to_owned(), bearer.clone(), 401),
            ("/items/3".to_owned(), bearer, 200),
        ]
    );
    assert_eq!((mtls.accepted(), mtls.refused()), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_certificate_the_handshake_fails_with_a_typed_transport_error() {
    let pki = pki();
    let server = Server::default();
    server.register("svc-orders", &pki.client_cert("svc-orders"));
    let mtls = server.listen(&pki, "mtls", ClientCerts::FromTheCa).await;

    // Trusts the server, presents no certificate.
    let (oauth2, https) = tls::client_credentials_layer_with(
        tls::https_client_with_roots(pki.roots()),
        &mtls.url("/token"),
        ClientAuth::tls_client_auth("svc-orders"),
        ["inventory:read"],
    )
    .unwrap();
    let client = ServiceBuilder::new().layer(oauth2).service(https);
    let err = client
        .oneshot(get(&mtls.url("/items/1")))
        .await
        .unwrap_err();
    let ServiceError::Token(e) = &err else {
        panic!("expected a token error, got {err:?}");
    };
    assert_eq!(e.kind(), ErrorKind::Transport);
    assert!(e.is_transport() && e.is_retryable());
    assert_eq!(e.to_string(), "could not reach the token endpoint");
    // The HTTP client's error is kept as the cause. Its words vary: in TLS
    // 1.3 the client finishes its side of the handshake before the server
    // refuses it, so the refusal arrives as the request goes out, and
    // hyper-util reports the server's alert (CertificateRequired), or only
    // that the connection closed, depending on which it sees first.
    assert!(std::error::Error::source(e).is_some());

    // The server refused the handshake; no HTTP request reached it.
    mtls.wait_for_a_refusal().await;
    assert_eq!((mtls.accepted(), mtls.refused()), (0, 1));
    assert!(server.token_requests().is_empty());
    assert!(server.resource().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_tls_client_auth_with_the_registered_certificate() {
    let pki = pki();
    let cert = self_signed_client_cert("svc-orders");
    let server = Server::default();
    server.register("svc-orders", &cert);
    let mtls = server.listen(&pki, "mtls", ClientCerts::Any).await;
    let layer = |cert: &ClientCert| {
        let https = tls::https_client_with_identity(&identity(cert), pki.roots());
        let (oauth2, https) = tls::client_credentials_layer_with(
            https,
            &mtls.url("/token"),
            ClientAuth::self_signed_tls_client_auth("svc-orders"),
            None::<&str>,
        )
        .unwrap();
        ServiceBuilder::new().layer(oauth2).service(https)
    };

    let response = layer(&cert)
        .oneshot(get(&mtls.url("/items/1")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        only_token_request(&server),
        (
            "mtls",
            None,
            "grant_type=client_credentials&client_id=svc-orders".to_owned()
        )
    );

    // Another self-signed certificate gets through TLS, but it is not the
    // one registered for svc-orders: the token endpoint's answer is a
    // typed invalid_client error.
    let err = layer(&self_signed_client_cert("svc-orders"))
        .oneshot(get(&mtls.url("/items/2")))
        .await
        .unwrap_err();
    let ServiceError::Token(e) = &err else {
        panic!("expected a token error, got {err:?}");
    };
    assert_eq!(e.kind(), ErrorKind::OAuth);
    let code = e.oauth_error().map(|r| r.error());
    assert_eq!(code, Some(&ErrorCode::InvalidClient));
    assert_eq!(server.token_requests().len(), 2);
    assert_eq!(
        server.resource(),
        [("/items/1".to_owned(), Some("Bearer at-1".to_owned()), 200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sends_mutual_tls_clients_to_the_mtls_endpoint_alias() {
    let pki = pki();
    let cert = pki.client_cert("svc-orders");
    let server = Server::default();
    server.register("svc-orders", &cert);
    // The ordinary host asks for no certificate; the alias host requires one.
    let plain = server.listen(&pki, "plain", ClientCerts::NotAsked).await;
    let mtls = server.listen(&pki, "mtls", ClientCerts::FromTheCa).await;
    let issuer = plain.url("");
    server.0.lock().unwrap().metadata = json!({
        "issuer": issuer,
        "token_endpoint": plain.url("/token"),
        "token_endpoint_auth_methods_supported": ["tls_client_auth", "client_secret_basic"],
        "tls_client_certificate_bound_access_tokens": true,
        "mtls_endpoint_aliases": {"token_endpoint": mtls.url("/token")},
    });

    let https = tls::https_client_with_identity(&identity(&cert), pki.roots());
    let metadata = Discovery::new(https.clone())
        .discover(&issuer)
        .await
        .unwrap();
    let alias = metadata.mtls_endpoint_aliases().unwrap().token_endpoint();
    assert_eq!(alias.unwrap().to_string(), mtls.url("/token"));
    let secret = ClientAuth::client_secret_basic("svc-orders", "s3cret");
    let ordinary = metadata.endpoint(https.clone(), secret);
    assert_eq!(ordinary.url().to_string(), plain.url("/token"));

    let endpoint = metadata.endpoint(https, ClientAuth::tls_client_auth("svc-orders"));
    assert_eq!(endpoint.url().to_string(), mtls.url("/token"));
    let token = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-1");
    // The token request went to the alias, with the certificate.
    assert_eq!(
        only_token_request(&server),
        (
            "mtls",
            None,
            "grant_type=client_credentials&client_id=svc-orders".to_owned()
        )
    );
    assert_eq!((plain.accepted(), plain.refused()), (1, 0));
    assert_eq!((mtls.accepted(), mtls.refused()), (1, 0));
}

/// A client identity kept in files and renewed on disk (as cert-manager
/// does): the next TLS connection presents the new certificate, and the
/// token fetched over it is bound to it. Files caught half-written (a new
/// certificate beside the old key) leave the last good identity in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_renewed_in_its_files_is_presented_from_the_next_connection() {
    let pki = pki();
    let server = Server::default();
    let dir = std::env::temp_dir().join(format!("tower-oauth2-mtls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    // A new file each time (a rename), as a Kubernetes volume update does.
    let replace = |path: &std::path::Path, content: &str| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    let first = pki.client_cert("svc-orders");
    replace(&cert_file, &first.cert_pem);
    replace(&key_file, &first.key_pem);
    server.register("svc-orders", &first);
    let identity = tls::IdentityFiles::new(&cert_file, &key_file).unwrap();
    let https = tls::https_client_with_identity_files(&identity, pki.roots());
    let endpoint_at = |frontend: &Frontend| {
        tower_oauth2::TokenEndpoint::new(
            https.clone(),
            tower_oauth2::TokenUrl::new(&frontend.url("/token")).unwrap(),
            ClientAuth::tls_client_auth("svc-orders"),
        )
    };
    let request = TokenRequest::client_credentials();

    let one = server.listen(&pki, "one", ClientCerts::FromTheCa).await;
    let token = endpoint_at(&one).request(&request).await.unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-1");

    // Renewed: the server knows the new certificate only.
    let renewed = pki.client_cert("svc-orders");
    replace(&cert_file, &renewed.cert_pem);
    replace(&key_file, &renewed.key_pem);
    server.register("svc-orders", &renewed);
    let two = server.listen(&pki, "two", ClientCerts::FromTheCa).await;
    let token = endpoint_at(&two).request(&request).await.unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-2");

    // Half-written: a third certificate beside the renewed key. The renewed
    // identity is still presented, and still accepted.
    replace(&cert_file, &pki.client_cert("svc-orders").cert_pem);
    let three = server.listen(&pki, "three", ClientCerts::FromTheCa).await;
    let token = endpoint_at(&three).request(&request).await.unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-3");

    let bound = |t: &str| server.0.lock().unwrap().records[t]["cnf"]["x5t#S256"].clone();
    assert_eq!(bound("at-1"), json!(thumbprint(&first.der)));
    assert_eq!(bound("at-2"), json!(thumbprint(&renewed.der)));
    assert_eq!(bound("at-3"), json!(thumbprint(&renewed.der)));
    let names: Vec<&str> = server.token_requests().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["one", "two", "three"]);
    let _ = std::fs::remove_dir_all(&dir);
}
