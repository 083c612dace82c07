use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

/// RFC 8037 Appendix A.1.
const RFC8037_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519",
    "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

const P256_PEM: &str = include_str!("../testdata/p256.pem");
const P256_SEC1_PEM: &str = include_str!("../testdata/p256-sec1.pem");
const P256_DER: &[u8] = include_bytes!("../testdata/p256.der");
const P256_JWK: &str = include_str!("../testdata/p256.jwk.json");
const ED25519_PEM: &str = include_str!("../testdata/ed25519.pem");
const ED25519_JWK: &str = include_str!("../testdata/ed25519.jwk.json");
const RSA_PEM: &str = include_str!("../testdata/rsa2048.pem");
const RSA_PKCS1_PEM: &str = include_str!("../testdata/rsa2048-pkcs1.pem");
const RSA_JWK: &str = include_str!("../testdata/rsa2048.jwk.json");

/// The public members of a JWK exported by another implementation (Node.js).
fn public_members(jwk: &str) -> Value {
    let mut jwk: serde_json::Map<String, Value> = serde_json::from_str(jwk).unwrap();
    jwk.retain(|k, _| ["kty", "crv", "x", "y", "n", "e"].contains(&k.as_str()));
    Value::Object(jwk)
}

fn without_extras(mut jwk: Value) -> Value {
    let map = jwk.as_object_mut().unwrap();
    for name in ["alg", "use", "kid"] {
        map.remove(name);
    }
    jwk
}

fn kind(result: Result<SigningKey, KeyError>) -> KeyErrorKind {
    result.unwrap_err().kind()
}

#[test]
fn ed25519_rfc8037_known_answers() {
    let key = SigningKey::from_jwk(RFC8037_JWK).unwrap();
    assert_eq!(key.algorithm(), Algorithm::EdDSA);
    // A.3: the thumbprint.
    assert_eq!(
        key.jwk_thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    // A.4: the signature of "Example of Ed25519 signing" under {"alg":"EdDSA"}.
    let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let signature = Signer::Key(&key).sign(input.as_bytes()).unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&signature),
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );
    assert!(key.verify(input.as_bytes(), &signature));
}

#[test]
fn hs256_rfc4231_known_answer() {
    // RFC 4231 §4.3, test case 2: HMAC-SHA-256 with the key "Jefe".
    let secret = SecretString::from("Jefe");
    let mac = Signer::Secret(&secret)
        .sign(b"what do ya want for nothing?")
        .unwrap();
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn hs256_secret_must_be_256_bits() {
    let short = SecretString::from("0123456789abcdef0123456789abcde");
    let err = check_hmac_secret(&short).unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::TooShort);
    assert_eq!(
        err.to_string(),
        "unusable signing key: a 31-byte client secret; HS256 needs 32 bytes or more (RFC 7518 §3.2)"
    );
    assert!(check_hmac_secret(&SecretString::from("0123456789abcdef0123456789abcdef")).is_ok());
}

#[test]
fn p256_from_every_form_is_one_key() {
    let from_pem = SigningKey::from_pem(Algorithm::ES256, P256_PEM).unwrap();
    let from_sec1 = SigningKey::from_pem(Algorithm::ES256, P256_SEC1_PEM).unwrap();
    let from_der = SigningKey::from_der(Algorithm::ES256, P256_DER).unwrap();
    let from_jwk = SigningKey::from_jwk(P256_JWK).unwrap();
    let want = public_members(P256_JWK);
    for key in [&from_pem, &from_sec1, &from_der, &from_jwk] {
        assert_eq!(key.algorithm(), Algorithm::ES256);
        assert_eq!(without_extras(key.public_jwk()), want);
        assert_eq!(key.jwk_thumbprint(), from_pem.jwk_thumbprint());
    }
    let mut jwk = from_pem.with_key_id("k-1").public_jwk();
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], "k-1");
    assert!(jwk.as_object_mut().unwrap().remove("d").is_none());
}

#[test]
fn ed25519_from_pem_and_jwk() {
    let from_pem = SigningKey::from_pem(Algorithm::EdDSA, ED25519_PEM).unwrap();
    let from_jwk = SigningKey::from_jwk(ED25519_JWK).unwrap();
    let want = public_members(ED25519_JWK);
    assert_eq!(without_extras(from_pem.public_jwk()), want);
    assert_eq!(without_extras(from_jwk.public_jwk()), want);
    let renamed = from_pem.with_algorithm(Algorithm::Ed25519).unwrap();
    assert_eq!(renamed.algorithm(), Algorithm::Ed25519);
    assert_eq!(renamed.public_jwk()["alg"], "Ed25519");
}

#[cfg(feature = "jwt-rsa")]
#[test]
fn rsa_from_every_form_is_one_key() {
    let from_pem = SigningKey::from_pem(Algorithm::RS256, RSA_PEM).unwrap();
    let from_pkcs1 = SigningKey::from_pem(Algorithm::PS256, RSA_PKCS1_PEM).unwrap();
    let from_jwk = SigningKey::from_jwk(RSA_JWK).unwrap();
    let want = public_members(RSA_JWK);
    for key in [&from_pem, &from_pkcs1, &from_jwk] {
        assert_eq!(without_extras(key.public_jwk()), want);
    }
    assert_eq!(from_jwk.algorithm(), Algorithm::RS256);
    assert_eq!(from_pkcs1.algorithm(), Algorithm::PS256);
    let input = b"header.payload";
    for key in [from_pem, from_pkcs1] {
        let signature = Signer::Key(&key).sign(input).unwrap();
        assert_eq!(signature.len(), 256);
        assert!(key.verify(input, &signature));
        assert!(!key.verify(b"header.payloaD", &signature));
    }
    // RS256 is deterministic (blinding does not change the result); PS256 is salted.
    let rs = SigningKey::from_pem(Algorithm::RS256, RSA_PEM).unwrap();
    let ps = rs.clone().with_algorithm(Algorithm::PS256).unwrap();
    let sign = |k: &SigningKey| Signer::Key(k).sign(input).unwrap();
    assert_eq!(sign(&rs), sign(&rs));
    assert_ne!(sign(&ps), sign(&ps));
    assert!(!ps.verify(input, &sign(&rs)));
}

#[cfg(feature = "jwt-rsa")]
#[test]
fn rsa_keys_under_2048_bits_are_refused() {
    let pem = include_str!("../testdata/rsa1024.pem");
    let err = SigningKey::from_pem(Algorithm::RS256, pem).unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::TooShort);
    assert_eq!(
        err.to_string(),
        "unusable signing key: a 1024-bit RSA key; RFC 7518 §3.3 requires 2048 bits or more"
    );
}

#[cfg(not(feature = "jwt-rsa"))]
#[test]
fn rsa_needs_the_feature() {
    for result in [
        SigningKey::from_pem(Algorithm::RS256, RSA_PEM),
        SigningKey::from_pem(Algorithm::RS256, RSA_PKCS1_PEM),
        SigningKey::from_jwk(RSA_JWK),
    ] {
        assert_eq!(kind(result), KeyErrorKind::Unsupported);
    }
}

#[test]
fn ecdsa_and_eddsa_signatures_verify() {
    let input = b"eyJhbGciOiJFUzI1NiJ9.e30";
    for key in [
        SigningKey::from_pem(Algorithm::ES256, P256_PEM).unwrap(),
        SigningKey::from_pem(Algorithm::EdDSA, ED25519_PEM).unwrap(),
    ] {
        let signature = Signer::Key(&key).sign(input).unwrap();
        // JWS ES256 is r || s, 64 bytes (RFC 7518 §3.4), not DER.
        assert_eq!(signature.len(), 64);
        assert!(key.verify(input, &signature));
        assert!(!key.verify(b"eyJhbGciOiJFUzI1NiJ9.e31", &signature));
    }
}

#[test]
fn wrong_key_type_for_the_algorithm() {
    let cases = [
        (Algorithm::RS256, P256_PEM, "a P-256 key cannot sign RS256"),
        (Algorithm::EdDSA, P256_PEM, "a P-256 key cannot sign EdDSA"),
        (Algorithm::HS256, P256_PEM, "a P-256 key cannot sign HS256"),
        (
            Algorithm::ES256,
            ED25519_PEM,
            "an Ed25519 key cannot sign ES256",
        ),
        (
            Algorithm::PS256,
            ED25519_PEM,
            "an Ed25519 key cannot sign PS256",
        ),
    ];
    for (alg, pem, message) in cases {
        let err = SigningKey::from_pem(alg, pem).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::AlgorithmMismatch, "{alg}");
        assert_eq!(err.to_string(), format!("unusable signing key: {message}"));
    }
    #[cfg(feature = "jwt-rsa")]
    {
        let err = SigningKey::from_pem(Algorithm::ES256, RSA_PEM).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unusable signing key: an RSA key cannot sign ES256"
        );
    }
    let es = SigningKey::from_pem(Algorithm::ES256, P256_PEM).unwrap();
    assert_eq!(
        es.with_algorithm(Algorithm::PS256).unwrap_err().kind(),
        KeyErrorKind::AlgorithmMismatch
    );
    // A JWK whose `alg` does not fit its key, or is unknown.
    let mut jwk: Value = serde_json::from_str(P256_JWK).unwrap();
    jwk["alg"] = json!("EdDSA");
    assert_eq!(
        kind(SigningKey::from_jwk(&jwk.to_string())),
        KeyErrorKind::AlgorithmMismatch
    );
    jwk["alg"] = json!("ES384");
    assert_eq!(
        kind(SigningKey::from_jwk(&jwk.to_string())),
        KeyErrorKind::AlgorithmMismatch
    );
}

#[test]
fn unusable_pem_and_der() {
    let encrypted = include_str!("../testdata/p256-encrypted.pem");
    let public = include_str!("../testdata/p256-public.pem");
    let p384 = include_str!("../testdata/p384.pem");
    let es = Algorithm::ES256;
    assert_eq!(
        kind(SigningKey::from_pem(es, encrypted)),
        KeyErrorKind::Unsupported
    );
    assert_eq!(
        kind(SigningKey::from_pem(es, p384)),
        KeyErrorKind::Unsupported
    );
    assert_eq!(
        kind(SigningKey::from_pem(es, public)),
        KeyErrorKind::Unparseable
    );
    assert_eq!(
        kind(SigningKey::from_pem(es, "")),
        KeyErrorKind::Unparseable
    );
    assert_eq!(
        kind(SigningKey::from_pem(es, "not a key")),
        KeyErrorKind::Unparseable
    );
    let truncated = &P256_PEM[..P256_PEM.len() - 60];
    assert_eq!(
        kind(SigningKey::from_pem(es, truncated)),
        KeyErrorKind::Unparseable
    );
    assert_eq!(
        kind(SigningKey::from_der(es, b"\x30\x03\x02\x01")),
        KeyErrorKind::Unparseable
    );
    assert_eq!(
        kind(SigningKey::from_der(Algorithm::EdDSA, &P256_DER[1..])),
        KeyErrorKind::Unparseable
    );
    let err = SigningKey::from_pem(es, public).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unusable signing key: a PEM `PUBLIC KEY`, not a private key"
    );
}

#[test]
fn unusable_jwks() {
    let p256: Value = serde_json::from_str(P256_JWK).unwrap();
    let with = |name: &str, value: Value| {
        let mut jwk = p256.clone();
        jwk[name] = value;
        SigningKey::from_jwk(&jwk.to_string())
    };
    let mut public = p256.clone();
    public.as_object_mut().unwrap().remove("d");
    let cases = [
        (
            SigningKey::from_jwk(&public.to_string()),
            KeyErrorKind::Unsupported,
        ),
        (with("crv", json!("P-384")), KeyErrorKind::Unsupported),
        (with("kty", json!("oct")), KeyErrorKind::Unsupported),
        (with("kty", json!("XYZ")), KeyErrorKind::Unsupported),
        (with("x", json!(p256["y"])), KeyErrorKind::Unparseable),
        (
            with("d", json!("not base64url!")),
            KeyErrorKind::Unparseable,
        ),
        (with("d", json!(1)), KeyErrorKind::Unparseable),
        (with("alg", json!(["ES256"])), KeyErrorKind::Unparseable),
        (SigningKey::from_jwk("[]"), KeyErrorKind::Unparseable),
        (SigningKey::from_jwk("{"), KeyErrorKind::Unparseable),
        (SigningKey::from_jwk("{}"), KeyErrorKind::Unparseable),
    ];
    for (i, (result, want)) in cases.into_iter().enumerate() {
        assert_eq!(kind(result), want, "case {i}");
    }
    let mut ed: Value = serde_json::from_str(ED25519_JWK).unwrap();
    ed["x"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert_eq!(
        kind(SigningKey::from_jwk(&ed.to_string())),
        KeyErrorKind::Unparseable
    );
    ed["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 31]));
    assert_eq!(
        kind(SigningKey::from_jwk(&ed.to_string())),
        KeyErrorKind::Unparseable
    );
}

#[test]
fn key_material_is_never_shown() {
    let jwk: Value = serde_json::from_str(P256_JWK).unwrap();
    let d = jwk["d"].as_str().unwrap();
    let key = SigningKey::from_jwk(P256_JWK).unwrap().with_key_id("kid-1");
    let shown = format!("{key:?} {key:#?} {}", key.public_jwk());
    assert!(!shown.contains(d), "{shown}");
    assert_eq!(
        format!("{key:?}"),
        r#"SigningKey { alg: ES256, kid: Some("kid-1"), key: "[redacted]" }"#
    );
    // An error about a bad `x` names the member, not its value or `d`.
    let mut bad = jwk.clone();
    bad["x"] = jwk["y"].clone();
    let err = SigningKey::from_jwk(&bad.to_string()).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(d) && !shown.contains(jwk["y"].as_str().unwrap()),
        "{shown}"
    );
}

#[test]
fn compact_serialization_has_exact_header_and_claims() {
    let key = SigningKey::from_jwk(RFC8037_JWK).unwrap().with_key_id("k1");
    let jwt = Signer::Key(&key).sign_jwt(&json!({"iss": "a"})).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |s: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    assert_eq!(decode(parts[0]), r#"{"alg":"EdDSA","kid":"k1"}"#);
    assert_eq!(decode(parts[1]), r#"{"iss":"a"}"#);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert!(key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature));

    let secret = SecretString::from("0123456789abcdef0123456789abcdef");
    let jwt = Signer::Secret(&secret).sign_jwt(&json!({})).unwrap();
    assert!(jwt.starts_with("eyJhbGciOiJIUzI1NiJ9.e30."), "{jwt}");
}

#[test]
fn algorithm_names() {
    for (alg, name) in [
        (Algorithm::HS256, "HS256"),
        (Algorithm::RS256, "RS256"),
        (Algorithm::PS256, "PS256"),
        (Algorithm::ES256, "ES256"),
        (Algorithm::EdDSA, "EdDSA"),
        (Algorithm::Ed25519, "Ed25519"),
    ] {
        assert_eq!(alg.as_str(), name);
        assert_eq!(alg.to_string(), name);
        assert_eq!(Algorithm::from_name(name), Some(alg));
    }
    assert_eq!(Algorithm::from_name("none"), None);
    assert_eq!(Algorithm::from_name("es256"), None);
}
