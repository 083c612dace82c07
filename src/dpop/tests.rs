use super::*;

use p256::ecdsa::signature::Verifier as _;

/// The P-256 key of src/testdata/p256.jwk.json.
fn key() -> Dpop {
    let jwk = include_str!("../testdata/p256.jwk.json");
    Dpop::from_key(SigningKey::from_jwk(jwk).unwrap()).unwrap()
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The header and claims of `proof`, its signature checked with the key
/// its header carries.
fn open(proof: &HeaderValue) -> (Value, Value) {
    let text = proof.to_str().unwrap();
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode(parts[0]);
    let jwk = serde_json::to_string(&header["jwk"]).unwrap();
    let public = p256::PublicKey::from_jwk_str(&jwk).unwrap();
    let verifying = p256::ecdsa::VerifyingKey::from(public);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    verifying.verify(input.as_bytes(), &signature).unwrap();
    (header, decode(parts[1]))
}

#[test]
fn a_proof_has_the_rfc_9449_header_and_claims() {
    let dpop = key();
    let uri: Uri = "https://API.example.com:8443/v1/orders?page=2#top"
        .parse()
        .unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let proof = dpop.proof(&Method::GET, &uri, Some("at-1")).unwrap();
    assert!(proof.is_sensitive());
    let (header, claims) = open(&proof);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwk: Value = serde_json::from_str(include_str!("../testdata/p256.jwk.json")).unwrap();
    assert_eq!(
        header,
        serde_json::json!({
            "typ": "dpop+jwt",
            "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]},
        })
    );
    // The header's members in this order, nothing else.
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&dpop.inner.header).unwrap()).unwrap();
    assert!(
        text.starts_with(r#"{"typ":"dpop+jwt","alg":"ES256","jwk":{"crv":"P-256","kty":"EC","x":"#)
    );
    let mut names: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["ath", "htm", "htu", "iat", "jti"]);
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "https://api.example.com:8443/v1/orders");
    // RFC 9449 §4.2: base64url(SHA-256("at-1")), computed independently.
    assert_eq!(
        claims["ath"],
        URL_SAFE_NO_PAD.encode(Sha256::digest(b"at-1"))
    );
    let iat = claims["iat"].as_u64().unwrap();
    assert!((before..=after).contains(&iat));
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(claims["jti"].as_str().unwrap())
            .unwrap()
            .len(),
        16
    );
}

#[test]
fn every_proof_has_its_own_jti_and_a_token_request_has_no_ath() {
    let dpop = key();
    let uri: Uri = "https://as.example.com/token".parse().unwrap();
    let (_, a) = open(&dpop.proof(&Method::POST, &uri, None).unwrap());
    let (_, b) = open(&dpop.proof(&Method::POST, &uri, None).unwrap());
    assert_ne!(a["jti"], b["jti"]);
    assert_eq!(a.get("ath"), None);
    assert_eq!(a.get("nonce"), None);
    assert_eq!(a["htm"], "POST");
    assert_eq!(a["htu"], "https://as.example.com/token");
}

#[test]
fn nonces_are_kept_per_origin_and_only_when_well_formed() {
    let dpop = key();
    let token: Uri = "https://as.example.com/token".parse().unwrap();
    let api: Uri = "https://api.example.com/x".parse().unwrap();
    let answer = |nonce: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static(nonce));
        headers
    };
    assert!(dpop.update_nonce(&token, &answer("eyJ7S_zG.eyJH0-Z.HX4w-7v")));
    assert!(!dpop.update_nonce(&token, &answer("eyJ7S_zG.eyJH0-Z.HX4w-7v")));
    assert!(!dpop.update_nonce(&token, &HeaderMap::new()));
    assert!(!dpop.update_nonce(&api, &answer("with \"quote\"")));
    assert!(!dpop.update_nonce(&api, &answer("back\\slash")));
    assert_eq!(dpop.nonce(&api), None);
    let (_, claims) = open(&dpop.proof(&Method::POST, &token, Some("t")).unwrap());
    assert_eq!(claims["nonce"], "eyJ7S_zG.eyJH0-Z.HX4w-7v");
    let (_, claims) = open(&dpop.proof(&Method::GET, &api, Some("t")).unwrap());
    assert_eq!(claims.get("nonce"), None);
    // Same origin, another path and case: the same nonce.
    let same: Uri = "https://AS.example.com/other?q".parse().unwrap();
    assert_eq!(
        dpop.nonce(&same).as_deref(),
        Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
    );
    // A clone shares them.
    assert!(dpop.clone().update_nonce(&api, &answer("n-2")));
    assert_eq!(dpop.nonce(&api).as_deref(), Some("n-2"));
}

#[test]
fn a_path_only_uri_has_no_htu() {
    let uri: Uri = "/pkg.Svc/Method".parse().unwrap();
    let err = key().proof(&Method::POST, &uri, Some("t")).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidDestination);
    assert!(
        err.to_string().starts_with("invalid token destination: "),
        "{err}"
    );
}

/// The keys of src/testdata, one per algorithm proofs are signed with.
fn every_key() -> Vec<SigningKey> {
    let ed = SigningKey::from_jwk(include_str!("../testdata/ed25519.jwk.json")).unwrap();
    #[allow(unused_mut)]
    let mut keys = vec![
        SigningKey::from_jwk(include_str!("../testdata/p256.jwk.json")).unwrap(),
        ed.clone(),
        ed.with_algorithm(Algorithm::Ed25519).unwrap(),
    ];
    #[cfg(feature = "jwt-rsa")]
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let pem = include_str!("../testdata/rsa2048.pem");
        keys.push(SigningKey::from_pem(alg, pem).unwrap());
    }
    keys
}

#[test]
fn every_algorithm_signs_proofs_with_its_public_key_in_the_header() {
    let uri: Uri = "https://api.example.com/v1?x=1".parse().unwrap();
    let keys = every_key();
    assert_eq!(keys.len(), alg::SIGNED.len());
    for key in keys {
        let alg = key.algorithm();
        let dpop = Dpop::from_key(key.clone()).unwrap();
        assert_eq!(dpop.algorithm(), alg);
        assert_eq!(dpop.thumbprint(), key.jwk_thumbprint());
        for access_token in [None, Some("at-1")] {
            let proof = dpop.proof(&Method::GET, &uri, access_token).unwrap();
            let text = proof.to_str().unwrap();
            let (input, signature) = text.rsplit_once('.').unwrap();
            let header = decode(input.split('.').next().unwrap());
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["typ"], "dpop+jwt");
            assert_eq!(header["jwk"], key.bare_public_jwk());
            // Checked by RustCrypto, whichever library signed.
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            assert!(key.verify(input.as_bytes(), &signature), "{alg}");
        }
    }
}

#[test]
fn generated_keys_are_of_the_algorithm_asked_for_and_differ() {
    let uri: Uri = "https://api.example.com/".parse().unwrap();
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::Ed25519] {
        let (a, b) = (
            Dpop::generate_with(alg).unwrap(),
            Dpop::generate_with(alg).unwrap(),
        );
        assert_eq!((a.algorithm(), b.algorithm()), (alg, alg));
        assert_ne!(a.thumbprint(), b.thumbprint());
        let proof = a.proof(&Method::GET, &uri, None).unwrap();
        let (input, signature) = proof.to_str().unwrap().rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert!(a.inner.key.verify(input.as_bytes(), &signature));
    }
    assert_eq!(Dpop::generate().unwrap().algorithm(), Algorithm::ES256);
    let err = Dpop::generate_with(Algorithm::HS256).unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unsupported);
    #[cfg(not(feature = "jwt-rsa"))]
    assert_eq!(
        Dpop::generate_with(Algorithm::PS256).unwrap_err().kind(),
        KeyErrorKind::Unsupported
    );
}

/// ring's ECDSA nonces are random, RustCrypto's deterministic (RFC 6979):
/// two signatures of one input tell which library signed.
#[test]
fn with_jwt_ring_ring_signs() {
    let key = SigningKey::from_jwk(include_str!("../testdata/p256.jwk.json")).unwrap();
    let (a, b) = (key.sign(b"input").unwrap(), key.sign(b"input").unwrap());
    assert_eq!(a != b, cfg!(feature = "jwt-ring"));
    assert!(key.verify(b"input", &a) && key.verify(b"input", &b));
}

#[test]
fn the_algorithm_is_chosen_from_the_servers_list() {
    let pick = |offered: &[&str]| choose_algorithm(Some(offered));
    assert_eq!(
        pick(&["PS256", "EdDSA", "ES256"]).unwrap(),
        Algorithm::ES256
    );
    assert_eq!(pick(&["Ed25519", "EdDSA"]).unwrap(), Algorithm::EdDSA);
    assert_eq!(pick(&["Ed25519"]).unwrap(), Algorithm::Ed25519);
    let rsa_only = pick(&["RS256", "PS256"]);
    #[cfg(feature = "jwt-rsa")]
    assert_eq!(rsa_only.unwrap(), Algorithm::PS256);
    #[cfg(not(feature = "jwt-rsa"))]
    assert!(rsa_only
        .unwrap_err()
        .to_string()
        .ends_with("; RS256 and PS256 need the `jwt-rsa` feature)"));
    let err = pick(&["ES512", "HS256", "x\"nope\"-way-too-long-for-a-name"]).unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::NotOffered);
    assert!(
        err.to_string().starts_with(
            "unusable signing key: the server's dpop_signing_alg_values_supported [ES512, HS256] \
             has none of the algorithms DPoP proofs are signed with here (ES256, EdDSA, Ed25519"
        ),
        "{err}"
    );
    assert_eq!(pick(&[]).unwrap_err().kind(), KeyErrorKind::NotOffered);
    assert_eq!(
        choose_algorithm(None::<&[String]>).unwrap(),
        Algorithm::ES256
    );
    assert!(check_offered(Algorithm::EdDSA, Some(&["ES256"])).is_err());
    assert!(check_offered(Algorithm::EdDSA, Some(&["EdDSA"])).is_ok());
    assert!(check_offered(Algorithm::EdDSA, None::<&[&str]>).is_ok());
}

#[test]
fn debug_shows_the_thumbprint_only() {
    let dpop = key();
    assert_eq!(
        format!("{dpop:?}"),
        format!(
            r#"Dpop {{ alg: ES256, thumbprint: "{}", .. }}"#,
            dpop.thumbprint()
        )
    );
    assert_eq!(
        dpop.thumbprint(),
        SigningKey::from_jwk(include_str!("../testdata/p256.jwk.json"))
            .unwrap()
            .jwk_thumbprint()
    );
}

/// The `htu` of a proof for a GET of `uri`.
fn htu_of(dpop: &Dpop, uri: &str) -> String {
    let uri: Uri = uri.parse().unwrap();
    let (_, claims) = open(&dpop.proof(&Method::GET, &uri, Some("t")).unwrap());
    claims["htu"].as_str().unwrap().to_owned()
}

#[test]
fn htu_is_normalized_without_userinfo_default_port_query_or_fragment() {
    // RFC 9449 §4.3 with RFC 3986 §6.2.2 (case) and §6.2.3 (scheme-based):
    // scheme and host lowercase, no userinfo, no default port.
    let dpop = key();
    let cases = [
        (
            "https://user:pa55w0rd@api.example.com/orders",
            "https://api.example.com/orders",
        ),
        ("https://API.example.com:443/x", "https://api.example.com/x"),
        (
            "HTTPS://Api.Example.COM:443/X?q=1#f",
            "https://api.example.com/X",
        ),
        ("http://api.example.com:80/x", "http://api.example.com/x"),
        (
            "http://api.example.com:443/x",
            "http://api.example.com:443/x",
        ),
        (
            "https://api.example.com:80/x",
            "https://api.example.com:80/x",
        ),
        (
            "https://u@api.example.com:8443/x",
            "https://api.example.com:8443/x",
        ),
        ("http://[::1]:80/x", "http://[::1]/x"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://api.example.com", "https://api.example.com/"),
    ];
    for (uri, htu) in cases {
        assert_eq!(htu_of(&dpop, uri), htu, "{uri}");
    }
}

#[test]
fn nonces_are_keyed_by_the_normalized_origin() {
    let dpop = key();
    let answer = {
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        headers
    };
    let with_userinfo: Uri = "https://user:pw@API.example.com:443/a".parse().unwrap();
    assert!(dpop.update_nonce(&with_userinfo, &answer));
    let plain: Uri = "https://api.example.com/b".parse().unwrap();
    assert_eq!(dpop.nonce(&plain).as_deref(), Some("n-1"));
    let other_port: Uri = "https://api.example.com:8443/b".parse().unwrap();
    assert_eq!(dpop.nonce(&other_port), None);
}

#[test]
fn past_the_bound_one_old_origin_is_forgotten_not_all() {
    let dpop = key();
    let answer = |nonce: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_str(nonce).unwrap());
        headers
    };
    let origin = |i: usize| -> Uri { format!("https://api-{i}.example.com/").parse().unwrap() };
    for i in 0..MAX_ORIGINS {
        assert!(dpop.update_nonce(&origin(i), &answer(&format!("n-{i}"))));
    }
    // Origin 0 answers again: it is the most recent now.
    assert!(dpop.update_nonce(&origin(0), &answer("n-0b")));
    // A new origin past the bound: the oldest one (1) goes, no other.
    assert!(dpop.update_nonce(&origin(MAX_ORIGINS), &answer("n-new")));
    assert_eq!(dpop.nonce(&origin(1)), None);
    assert_eq!(dpop.nonce(&origin(0)).as_deref(), Some("n-0b"));
    for i in 2..=MAX_ORIGINS {
        assert!(dpop.nonce(&origin(i)).is_some(), "origin {i} forgotten");
    }
    assert_eq!(dpop.nonces().map.len(), MAX_ORIGINS);
}

#[test]
fn a_token_endpoints_nonce_and_a_resources_at_one_origin_are_kept_apart() {
    let dpop = key();
    let token: Uri = "https://example.com/token".parse().unwrap();
    let api: Uri = "https://example.com/api".parse().unwrap();
    let answer = |nonce: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static(nonce));
        headers
    };
    let (_, to_token) = dpop.proof_at_origin(&Method::POST, &token, None).unwrap();
    assert!(dpop.learn_nonce(&to_token, &answer("as-1")));
    let (_, to_api) = dpop.proof_at_origin(&Method::GET, &api, Some("t")).unwrap();
    assert!(dpop.learn_nonce(&to_api, &answer("rs-1")));
    let nonce_of = |uri: &Uri, token: Option<&str>| {
        let (_, claims) = open(&dpop.proof(&Method::POST, uri, token).unwrap());
        claims["nonce"].clone()
    };
    assert_eq!(nonce_of(&token, None), "as-1");
    assert_eq!(nonce_of(&api, Some("t")), "rs-1");
    assert_eq!(dpop.nonce(&api).as_deref(), Some("rs-1"));
}

#[test]
fn a_nonce_is_worth_a_resend_when_it_is_not_the_one_the_proof_carried() {
    let dpop = key();
    let api: Uri = "https://api.example.com/x".parse().unwrap();
    let answer = |nonce: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static(nonce));
        headers
    };
    // Two requests sent with no nonce; the server rotates, and challenges
    // both with the same new nonce: both are worth a resend, though the
    // second answer brings nothing new to the map.
    let (_, a) = dpop.proof_at_origin(&Method::GET, &api, Some("t")).unwrap();
    let (_, b) = dpop.proof_at_origin(&Method::GET, &api, Some("t")).unwrap();
    assert!(dpop.learn_nonce(&a, &answer("n-1")));
    assert!(dpop.learn_nonce(&b, &answer("n-1")));
    // One sent with n-1 and challenged with n-1 again: no resend.
    let (_, c) = dpop.proof_at_origin(&Method::GET, &api, Some("t")).unwrap();
    assert!(!dpop.learn_nonce(&c, &answer("n-1")));
    // An answer with no nonce, after another answer brought n-2: resend.
    assert!(dpop.update_nonce(&api, &answer("n-2")));
    assert!(dpop.learn_nonce(&c, &HeaderMap::new()));
}

#[test]
fn each_proof_has_its_own_tokens_ath_whatever_the_key_proved_before() {
    // One length: a memo that compared less than the whole token (its
    // length, the key, nothing) would give one token the other's `ath`.
    let (a, b) = ("token-A-of-one-length", "token-B-of-one-length");
    let uri: Uri = "https://api.example.com/v1".parse().unwrap();
    let ath_sent = |dpop: &Dpop, token: &str| {
        let (_, claims) = open(&dpop.proof(&Method::GET, &uri, Some(token)).unwrap());
        claims["ath"].as_str().unwrap().to_owned()
    };
    let ath = |token: &str| URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let keys = DpopKeys::new(key());
    let old = keys.current();
    for token in [a, a, b, a, b, b] {
        assert_eq!(ath_sent(&old, token), ath(token), "{token}");
    }
    assert_eq!(&*old.inner.ath.load_full().unwrap().token, b);
    // A key rotated in proves its own token with its own memo, and the
    // old key's requests still in flight keep theirs.
    keys.rotate(Dpop::generate().unwrap());
    let new = keys.current();
    assert!(new.inner.ath.load().is_none());
    for (dpop, token) in [(&new, a), (&old, b), (&new, a), (&old, a), (&new, b)] {
        assert_eq!(ath_sent(dpop, token), ath(token), "{token}");
    }
    let (header, _) = open(&new.proof(&Method::GET, &uri, Some(a)).unwrap());
    assert_eq!(header["jwk"], new.public_jwk());
}

// The `ath` memo under one key proving several tokens at once, tokens
// that differ only after a long common prefix (and one that is a prefix
// of another): whichever proof stored the memo last, every proof carries
// its own token's `ath`. Nor does the key's `Debug` show a token or an
// `ath` it remembers.
#[test]
fn concurrent_proofs_of_tokens_sharing_a_prefix_each_carry_their_own_ath() {
    let prefix = "eyJ".to_owned() + &"a".repeat(1021);
    let tokens = [
        format!("{prefix}1"),
        format!("{prefix}2"),
        prefix.clone(),
        format!("{prefix}12"),
    ];
    let ath = |token: &str| URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let dpop = key();
    let uri: Uri = "https://api.example.com/v1".parse().unwrap();
    std::thread::scope(|scope| {
        for (i, token) in tokens.iter().enumerate() {
            let (dpop, uri, want) = (&dpop, &uri, ath(token));
            scope.spawn(move || {
                for n in 0..2_000 {
                    assert_eq!(dpop.ath(token).ath, want, "token {i}, call {n}");
                    if n % 500 == 0 {
                        let proof = dpop.proof(&Method::GET, uri, Some(token)).unwrap();
                        let (_, claims) = open(&proof);
                        assert_eq!(claims["ath"], want.as_str(), "token {i}, proof {n}");
                    }
                }
            });
        }
    });
    let shown = format!("{dpop:?}");
    for token in &tokens {
        assert!(!shown.contains(&ath(token)), "{shown}");
    }
    assert!(!shown.contains(&prefix[..16]), "{shown}");
}
