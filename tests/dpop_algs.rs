//! DPoP proofs of every algorithm this build signs with (ES256,
//! EdDSA/Ed25519, and RS256/PS256 with `jwt-rsa`), signed by RustCrypto or
//! by `ring` (`jwt-ring`): accepted by the test token server and by the
//! DPoP-checking resources (each checks the signature with the key in the
//! proof's header and the token's binding to it); the algorithm picked
//! from discovery's `dpop_signing_alg_values_supported`; typed errors for
//! bad keys and servers, none of them showing the key.

#![cfg(feature = "dpop")]

use crate::support;

use http::StatusCode;
use support::client::{get, layered};
use support::dpop;
use support::dpop::{NonceResource, Rotation};
use support::token_server::TestServer;
use tower::ServiceExt as _;
use tower_oauth2::discovery::ProviderMetadata;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::jose::{Algorithm, KeyErrorKind, SigningKey};
use tower_oauth2::{TokenCache, TokenRequest};

const P256: &str = include_str!("../src/testdata/p256.pem");
const ED25519: &str = include_str!("../src/testdata/ed25519.pem");
const RSA2048: &str = include_str!("../src/testdata/rsa2048.pem");
const RSA1024: &str = include_str!("../src/testdata/rsa1024.pem");
const P384: &str = include_str!("../src/testdata/p384.pem");

/// A key of every algorithm proofs are signed with in this build.
fn every_key() -> Vec<SigningKey> {
    let mut keys = vec![
        SigningKey::from_pem(Algorithm::ES256, P256).unwrap(),
        SigningKey::from_pem(Algorithm::EdDSA, ED25519).unwrap(),
        SigningKey::from_pem(Algorithm::Ed25519, ED25519).unwrap(),
    ];
    if cfg!(feature = "jwt-rsa") {
        for alg in [Algorithm::RS256, Algorithm::PS256] {
            keys.push(SigningKey::from_pem(alg, RSA2048).unwrap());
        }
    }
    keys
}

fn dpop_cache(server: &TestServer, key: &Dpop) -> TokenCache {
    let endpoint = server.endpoint().dpop(key.clone());
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
}

#[tokio::test]
async fn proofs_of_every_algorithm_are_accepted_by_the_token_server_and_both_resources() {
    for key in every_key() {
        let alg = key.algorithm();
        let server = TestServer::start().await;
        server.enable_dpop();
        let dpop = Dpop::from_key(key).unwrap();
        assert_eq!(dpop.algorithm(), alg);
        let cache = dpop_cache(&server, &dpop);
        for _ in 0..2 {
            let response = layered(&cache).oneshot(server.get("/api")).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{alg}");
        }
        assert_eq!(server.dpop_refusals(), Vec::<String>::new(), "{alg}");
        assert_eq!(server.token_requests(), 1, "{alg}");
        assert_eq!(
            server.authorizations(),
            vec![Some("DPoP at-1".to_owned()); 2],
            "{alg}"
        );
        let sent = &server.received()[0];
        let proof = dpop::read(sent.headers["dpop"].to_str().unwrap()).unwrap();
        assert_eq!(proof.header["alg"], alg.as_str());
        assert_eq!(proof.jkt, dpop.thumbprint());

        // The resource that rotates its nonce at every answer: the first
        // request meets use_dpop_nonce once, the next carry the nonce.
        let resource = NonceResource::start(Rotation::EveryAnswer).await;
        for _ in 0..3 {
            let response = layered(&cache)
                .oneshot(get(&resource.url("/r")))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{alg}");
        }
        let counts = resource.counts();
        assert_eq!(counts.invalid, Vec::<String>::new(), "{alg}");
        assert_eq!((counts.requests, counts.challenged), (4, 1), "{alg}");
        assert_eq!(cache.stats().token_fetches, 1, "{alg}");
    }
}

#[tokio::test]
async fn the_algorithm_is_picked_from_discovery_and_an_unsupported_list_is_a_typed_error() {
    let metadata = |algs: &str| {
        let doc = format!(
            r#"{{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token"{algs}}}"#
        );
        ProviderMetadata::from_json("https://as.example.com", doc.as_bytes()).unwrap()
    };
    let offered = metadata(r#","dpop_signing_alg_values_supported":["Ed25519","PS512"]"#);
    assert_eq!(
        offered.dpop_signing_alg_values_supported(),
        Some(&["Ed25519".to_owned(), "PS512".to_owned()][..])
    );
    let dpop = offered.dpop().unwrap();
    assert_eq!(dpop.algorithm(), Algorithm::Ed25519);
    // That key works end to end.
    let server = TestServer::start().await;
    server.enable_dpop();
    let cache = dpop_cache(&server, &dpop);
    let response = layered(&cache).oneshot(server.get("/api")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());

    assert_eq!(metadata("").dpop().unwrap().algorithm(), Algorithm::ES256);
    let unsupported = metadata(r#","dpop_signing_alg_values_supported":["ES512","HS256"]"#);
    let err = unsupported.dpop().unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::NotOffered);
    assert!(err.to_string().contains("[ES512, HS256]"), "{err}");
    let es256 = SigningKey::from_pem(Algorithm::ES256, P256).unwrap();
    let err = offered.dpop_with_key(es256.clone()).unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::NotOffered);
    assert!(
        err.to_string().contains("not ES256, the key's algorithm"),
        "{err}"
    );
    assert!(metadata("").dpop_with_key(es256).is_ok());
    // A list of another JSON type is the metadata's error, not a key's.
    let doc = r#"{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token","dpop_signing_alg_values_supported":"ES256"}"#;
    let err = ProviderMetadata::from_json("https://as.example.com", doc.as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .contains("dpop_signing_alg_values_supported is not a list of strings"),
        "{err}"
    );
}

/// The private key's base64 lines (PEM) and its `d` (JWK): what no message
/// and no `Debug` may show.
fn secrets_of(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect()
}

#[test]
fn bad_keys_get_typed_errors_and_no_message_or_debug_shows_a_key() {
    let mut shown = Vec::new();
    let mut expect = |result: Result<SigningKey, tower_oauth2::jose::KeyError>, kind| {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        shown.push(format!("{err} {err:?}"));
    };
    // A key file of the wrong type for the algorithm.
    expect(
        SigningKey::from_pem(Algorithm::ES256, ED25519),
        KeyErrorKind::AlgorithmMismatch,
    );
    expect(
        SigningKey::from_pem(Algorithm::EdDSA, P256),
        KeyErrorKind::AlgorithmMismatch,
    );
    let rsa_for_es256 = if cfg!(feature = "jwt-rsa") {
        KeyErrorKind::AlgorithmMismatch
    } else {
        KeyErrorKind::Unsupported
    };
    expect(
        SigningKey::from_pem(Algorithm::ES256, RSA2048),
        rsa_for_es256,
    );
    // An RSA key too short (RFC 7518 §3.3), without jwt-rsa unsupported.
    let short = if cfg!(feature = "jwt-rsa") {
        KeyErrorKind::TooShort
    } else {
        KeyErrorKind::Unsupported
    };
    expect(SigningKey::from_pem(Algorithm::RS256, RSA1024), short);
    expect(
        SigningKey::from_pem(Algorithm::ES256, P384),
        KeyErrorKind::Unsupported,
    );
    // The canary: a JWK whose `d` does not go with its `x`.
    let canary = "CANARYCANARYCANARYCANARYCANARYCANARYCANARY";
    let jwk = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","d":"{canary}","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}"#
    );
    expect(SigningKey::from_jwk(&jwk), KeyErrorKind::Unparseable);

    let mut secrets: Vec<String> = [P256, ED25519, RSA2048, RSA1024, P384]
        .iter()
        .flat_map(|pem| secrets_of(pem))
        .collect();
    secrets.push(canary.to_owned());
    for jwk in [
        include_str!("../src/testdata/p256.jwk.json"),
        include_str!("../src/testdata/ed25519.jwk.json"),
        include_str!("../src/testdata/rsa2048.jwk.json"),
    ] {
        let jwk: serde_json::Value = serde_json::from_str(jwk).unwrap();
        for member in ["d", "p", "q", "dp", "dq", "qi"] {
            if let Some(value) = jwk[member].as_str() {
                secrets.push(value.to_owned());
            }
        }
        if cfg!(feature = "jwt-rsa") || jwk["kty"] != "RSA" {
            let key = SigningKey::from_jwk(&jwk.to_string()).unwrap();
            let dpop = Dpop::from_key(key.clone()).unwrap();
            shown.push(format!("{key:?} {dpop:?}"));
        }
    }
    for key in every_key() {
        let dpop = Dpop::from_key(key.clone()).unwrap();
        shown.push(format!("{key:?} {dpop:?} {dpop:#?}"));
    }
    for text in &shown {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{text}");
        }
        assert!(!text.contains("CANARY"), "{text}");
    }
}

/// dpop × file_store, for every algorithm: a stored token bound to a key
/// is restored by a cache with that key (whatever name its algorithm goes
/// by: the thumbprint names the key, not the `alg`), never by a cache with
/// another key.
#[tokio::test]
async fn pair_dpop_file_store_a_token_bound_to_a_key_of_any_algorithm_is_restored_by_that_key_only()
{
    use tower_oauth2::store::FileStore;
    let keys = every_key();
    let server = TestServer::start().await;
    server.enable_dpop();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let mut expected = Vec::new();
    let mut fetched = 0;
    for (i, key) in keys.iter().enumerate() {
        // Ed25519 follows EdDSA, PS256 follows RS256: the same key.
        let same_key_as_before = i > 0 && key.jwk_thumbprint() == keys[i - 1].jwk_thumbprint();
        if !same_key_as_before {
            fetched += 1;
        }
        // Built twice: the second cache reads what the first saved.
        for _ in 0..2 {
            let dpop = Dpop::from_key(key.clone()).unwrap();
            let cache = TokenCache::builder(
                server.endpoint().dpop(dpop),
                TokenRequest::client_credentials(),
            )
            .store(FileStore::new(&path))
            .build();
            let response = layered(&cache).oneshot(server.get("/a")).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{}", key.algorithm());
            expected.push(Some(format!("DPoP at-{fetched}")));
        }
    }
    assert_eq!(server.authorizations(), expected);
    assert_eq!(server.token_requests(), fetched);
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}
