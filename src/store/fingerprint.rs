//! [`ConfigFingerprint`]: names the configuration a token was fetched with.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::request::{ClientAuth, TokenRequest, TokenUrl};

/// Versions the canonical encoding: a new field (a DPoP key thumbprint, a
/// namespace) means a new version, so no two encodings ever collide.
const ENCODING: &str = "tower-oauth2 config fingerprint v1";
/// The encoding of a fingerprint with a DPoP key ([`ConfigFingerprint::with_dpop_key`]).
const DPOP_ENCODING: &str = "tower-oauth2 config fingerprint v1 + DPoP key";
/// The encoding of a fingerprint whose grant names a subject: the same
/// parts as [`ENCODING`]'s, then the subject's digest. A grant with no
/// subject (`client_credentials`) keeps the plain encoding, so its stored
/// tokens stay valid.
const SUBJECT_ENCODING: &str = "tower-oauth2 config fingerprint v1 + subject";
/// Separates the subject's digest from every other SHA-256 of the same
/// values (the fleet's token hash, a DPoP `ath`): the digest of a token
/// here is of no use as its hash anywhere else, and the reverse.
const SUBJECT_DOMAIN: &str = "tower-oauth2 subject v1";

/// Names the configuration that fetches a token: a SHA-256 of the token
/// URL, the client id, the client authentication method, the grant type
/// and its non-secret parameters (a `password` grant's `username`, say),
/// the scopes, and the extra parameters (`audience`, every `resource`).
///
/// Two caches whose fingerprints are equal ask the same token endpoint for
/// the same kind of token as the same client, so a token one of them stored
/// may be used by the other; when they differ, it may not (see
/// [`crate::store`]). No secret goes into it (a secret parameter counts by
/// its name only), so it may be logged, used as a key in a shared store, or
/// as a metrics label.
///
/// [`Display`](fmt::Display) gives 64 lowercase hex digits, which
/// [`ConfigFingerprint::from_hex`] reads back. The value is stable within a
/// major version of this crate; if it ever changes, a stored token is
/// ignored once and a new one fetched.
///
/// What is hashed is the JSON array `["tower-oauth2 config fingerprint v1",
/// token URL, client id, client authentication method, [grant type, [grant
/// parameters in order], [scopes sorted], [extra parameters sorted]]]`,
/// each parameter `[name, value]` with a secret's value `null`.
///
/// # The subject
///
/// A grant that acts for someone carries the secret that says who: a
/// refresh token, an authorization code, a token-exchange `subject_token`
/// or `actor_token`, a pre-made JWT-bearer `assertion`. Two caches that
/// differ only in it get tokens for different subjects, so the fingerprint
/// holds a digest of it: the array above, with first string
/// `"tower-oauth2 config fingerprint v1 + subject"`, gets one more element,
/// the hex SHA-256 of `["tower-oauth2 subject v1", [[name, value], …]]`
/// over every secret grant and extra parameter, sorted (the `password`
/// grant's `password` excepted: its subject is its `username`, hashed in
/// clear above, and a password chosen by a person must not be checkable
/// against guesses by anyone who can read a key name). The secret itself is
/// never part of a key, a label or a log line; the values hashed are
/// server-issued secrets, so checking a guess against a fingerprint is as
/// hard as guessing the token. A signed JWT-bearer grant
/// (`TokenRequest::jwt_bearer_signed`, feature `jwt`) is named by its claims
/// (`sub` among them) and its key's public thumbprint instead.
///
/// The subject is fixed when the fingerprint is made, that is when the
/// cache is built: a refresh token the server rotates later does not move
/// it (the cache keeps the fingerprint of the refresh token it was built
/// with), so the rotated token is saved under the same key.
///
/// # Example
///
/// ```
/// use tower_oauth2::store::ConfigFingerprint;
/// use tower_oauth2::{ClientAuth, TokenRequest, TokenUrl};
///
/// let url = TokenUrl::new("https://as.example.com/token")?;
/// let client = ClientAuth::client_secret_basic("svc", "secret");
/// let read = ConfigFingerprint::new(&url, &client, &TokenRequest::client_credentials().scope("read"));
/// let write = ConfigFingerprint::new(&url, &client, &TokenRequest::client_credentials().scope("write"));
/// assert_ne!(read, write);
///
/// // The secret is not part of it.
/// let rotated = ClientAuth::client_secret_basic("svc", "new secret");
/// assert_eq!(read, ConfigFingerprint::new(&url, &rotated, &TokenRequest::client_credentials().scope("read")));
///
/// let hex = read.to_string();
/// assert_eq!(hex.len(), 64);
/// assert_eq!(ConfigFingerprint::from_hex(&hex), Some(read));
/// # Ok::<(), tower_oauth2::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigFingerprint([u8; 32]);

impl ConfigFingerprint {
    /// The fingerprint of tokens fetched from `url` as `client` with `request`.
    pub fn new(url: &TokenUrl, client: &ClientAuth, request: &TokenRequest) -> Self {
        let configuration = (
            url.uri().to_string(),
            client.client_id(),
            client.method_name(),
            request.identity(),
        );
        let canonical = match subject_digest(request) {
            None => serde_json::json!([
                ENCODING,
                configuration.0,
                configuration.1,
                configuration.2,
                configuration.3,
            ]),
            Some(subject) => serde_json::json!([
                SUBJECT_ENCODING,
                configuration.0,
                configuration.1,
                configuration.2,
                configuration.3,
                subject,
            ]),
        };
        // Serializing a `Value` (string keys, no floats) cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        ConfigFingerprint(Sha256::digest(&bytes).into())
    }

    /// This fingerprint for tokens bound to the DPoP key whose RFC 7638
    /// thumbprint is `thumbprint` (see `dpop::Dpop::thumbprint`, feature
    /// `dpop`): a token stored or shared by a cache with another key (or
    /// with none) is not used with this one. The hash of
    /// `["tower-oauth2 config fingerprint v1 + DPoP key", fingerprint hex,
    /// thumbprint]`; a cache without DPoP keeps the plain fingerprint.
    pub fn with_dpop_key(self, thumbprint: &str) -> Self {
        let canonical = serde_json::json!([DPOP_ENCODING, self.to_string(), thumbprint]);
        // Serializing an array of strings cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        ConfigFingerprint(Sha256::digest(&bytes).into())
    }

    /// A fingerprint from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ConfigFingerprint(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads the 64 hex digits that [`Display`](fmt::Display) writes (either
    /// case); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let digits = hex.as_bytes();
        if digits.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            *byte = u8::try_from(high << 4 | low).ok()?;
        }
        Some(ConfigFingerprint(bytes))
    }
}

/// The hex digest of the values that say whose token `request` gets (see
/// [`ConfigFingerprint`], "The subject"), or `None` for a grant with none.
fn subject_digest(request: &TokenRequest) -> Option<String> {
    let mut params: Vec<(&str, &str)> = request
        .subject_params()
        .into_iter()
        .map(|(name, value)| (name, value.expose_secret()))
        .collect();
    if params.is_empty() {
        return None;
    }
    params.sort_unstable();
    let canonical = serde_json::json!([SUBJECT_DOMAIN, params]);
    // Serializing arrays of strings cannot fail.
    let digest = Sha256::digest(serde_json::to_vec(&canonical).unwrap_or_default());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

impl fmt::Display for ConfigFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ConfigFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigFingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dpop_key_makes_another_fingerprint() {
        let plain = ConfigFingerprint::from_bytes([7; 32]);
        let a = plain.with_dpop_key("thumb-a");
        assert_ne!(a, plain);
        assert_ne!(a, plain.with_dpop_key("thumb-b"));
        assert_eq!(a, plain.with_dpop_key("thumb-a"));
        let canonical = format!(
            r#"["tower-oauth2 config fingerprint v1 + DPoP key","{}","thumb-a"]"#,
            "07".repeat(32)
        );
        let expected: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        assert_eq!(a.as_bytes(), &expected);
    }

    fn url(s: &str) -> TokenUrl {
        TokenUrl::new(s).unwrap()
    }

    #[test]
    fn the_encoding_is_pinned() {
        // A change here changes every stored token's fingerprint: stored
        // tokens are then ignored once. Change it only on purpose.
        let fp = ConfigFingerprint::new(
            &url("https://as.example.com/token"),
            &ClientAuth::client_secret_basic("svc", "secret"),
            &TokenRequest::client_credentials()
                .scope("write read read")
                .resource("https://b.example")
                .audience("api")
                .resource("https://a.example"),
        );
        let canonical = br#"["tower-oauth2 config fingerprint v1","https://as.example.com/token","svc","client_secret_basic",["client_credentials",[],["read","write"],[["audience","api"],["resource","https://a.example"],["resource","https://b.example"]]]]"#;
        assert_eq!(fp.as_bytes(), &<[u8; 32]>::from(Sha256::digest(canonical)));
    }

    #[test]
    fn client_secrets_and_passwords_count_by_name_only_and_order_of_sets_does_not_matter() {
        let u = url("https://as.example.com/token");
        let client = ClientAuth::client_secret_post("svc", "s1");
        let a = TokenRequest::password("alice", "pw-1")
            .scope("a b")
            .resource("r1")
            .resource("r2");
        let b = TokenRequest::password("alice", "pw-2")
            .scope("b a")
            .resource("r2")
            .resource("r1");
        let other_secret = ClientAuth::client_secret_post("svc", "s2");
        assert_eq!(
            ConfigFingerprint::new(&u, &client, &a),
            ConfigFingerprint::new(&u, &other_secret, &b)
        );
        let bob = TokenRequest::password("bob", "pw-1").scope("a b");
        assert_ne!(
            ConfigFingerprint::new(&u, &client, &a),
            ConfigFingerprint::new(&u, &client, &bob)
        );
    }

    /// Issue 19, defect 1: the values that make a token someone's.
    #[test]
    fn every_subject_makes_another_fingerprint_and_none_is_in_it() {
        let u = url("https://as.example.com/token");
        let client = ClientAuth::client_secret_basic("svc", "secret");
        let fp = |request: TokenRequest| ConfigFingerprint::new(&u, &client, &request);
        const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
        let pairs = [
            (
                TokenRequest::refresh_token("rt-alice"),
                TokenRequest::refresh_token("rt-bob"),
            ),
            (
                TokenRequest::token_exchange("subject-alice", ACCESS),
                TokenRequest::token_exchange("subject-bob", ACCESS),
            ),
            (
                TokenRequest::token_exchange("subject", ACCESS)
                    .secret_param("actor_token", "actor-a"),
                TokenRequest::token_exchange("subject", ACCESS)
                    .secret_param("actor_token", "actor-b"),
            ),
            (
                TokenRequest::jwt_bearer("eyJ.assertion-alice.sig"),
                TokenRequest::jwt_bearer("eyJ.assertion-bob.sig"),
            ),
            (
                TokenRequest::authorization_code("code-alice", "https://app.example/cb"),
                TokenRequest::authorization_code("code-bob", "https://app.example/cb"),
            ),
            (
                TokenRequest::extension("urn:example:grant").secret_param("user_token", "ut-a"),
                TokenRequest::extension("urn:example:grant").secret_param("user_token", "ut-b"),
            ),
        ];
        for (alice, bob) in pairs {
            let shown = format!("{alice:?}");
            let (a, b) = (fp(alice.clone()), fp(bob));
            assert_ne!(a, b, "{shown}");
            // Stable: the same subject, the same fingerprint.
            assert_eq!(a, fp(alice), "{shown}");
        }
        // The grant with no subject keeps the fingerprint it always had.
        assert_ne!(
            fp(TokenRequest::refresh_token("rt-alice")),
            fp(TokenRequest::client_credentials())
        );
    }

    #[test]
    fn the_subject_encoding_is_pinned() {
        // The digest of the subject, then the configuration with it.
        let subject =
            br#"["tower-oauth2 subject v1",[["actor_token","act-1"],["subject_token","subj-1"]]]"#;
        let subject: String = Sha256::digest(subject)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let fp = ConfigFingerprint::new(
            &url("https://as.example.com/token"),
            &ClientAuth::client_secret_basic("svc", "secret"),
            &TokenRequest::token_exchange("subj-1", "urn:t").secret_param("actor_token", "act-1"),
        );
        let canonical = format!(
            r#"["tower-oauth2 config fingerprint v1 + subject","https://as.example.com/token","svc","client_secret_basic",["{grant}",[["subject_token",null],["subject_token_type","urn:t"]],[],[["actor_token",null]]],"{subject}"]"#,
            grant = crate::request::TOKEN_EXCHANGE_GRANT,
        );
        assert_eq!(
            fp.as_bytes(),
            &<[u8; 32]>::from(Sha256::digest(canonical.as_bytes()))
        );
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn a_signed_jwt_bearer_grant_is_named_by_its_claims_and_key() {
        use crate::jose::{Algorithm, SigningKey};
        use crate::request::JwtClaims;
        let key = |pem: &str| SigningKey::from_pem(Algorithm::ES256, pem).unwrap();
        let p256 = include_str!("../../tests/data/p256.pem");
        let other = include_str!("../../tests/data/p256-unregistered.pem");
        let (u, c) = (url("https://as.example/token"), ClientAuth::none("svc"));
        let fp = |claims: JwtClaims, pem: &str| {
            ConfigFingerprint::new(&u, &c, &TokenRequest::jwt_bearer_signed(claims, key(pem)))
        };
        let base = fp(JwtClaims::new("svc", "alice"), p256);
        assert_eq!(base, fp(JwtClaims::new("svc", "alice"), p256));
        for changed in [
            fp(JwtClaims::new("svc", "bob"), p256),
            fp(JwtClaims::new("other", "alice"), p256),
            fp(JwtClaims::new("svc", "alice").scope("write"), p256),
            fp(
                JwtClaims::new("svc", "alice").audience("https://as.example"),
                p256,
            ),
            fp(JwtClaims::new("svc", "alice"), other),
        ] {
            assert_ne!(base, changed);
        }
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let fp = ConfigFingerprint::from_bytes([0xab; 32]);
        let hex = fp.to_string();
        assert_eq!(hex, "ab".repeat(32));
        assert_eq!(format!("{fp:?}"), format!("ConfigFingerprint({hex})"));
        assert_eq!(ConfigFingerprint::from_hex(&hex.to_uppercase()), Some(fp));
        for bad in [
            "",
            "ab",
            &"ab".repeat(33),
            &format!("{}zz", "ab".repeat(31)),
            &"é".repeat(32),
        ] {
            assert_eq!(ConfigFingerprint::from_hex(bad), None, "{bad:?}");
        }
    }
}
