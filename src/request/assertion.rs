//! Signed JWT assertions (RFC 7523), made fresh for every token request:
//! the client's `client_assertion` (§2.2, OpenID Connect Core §9) and the
//! JWT-bearer grant's `assertion` (§2.1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::jose::{Signer, SigningKey};
use crate::secret::SecretString;

/// `client_assertion_type` of RFC 7523 §2.2.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid unless told otherwise: 60 seconds, enough
/// for the request to arrive, short enough that a captured one is soon useless.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a client assertion may live: 5 minutes.
pub const MAX_CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// The longest a JWT-bearer grant assertion may live: 1 hour (Google's limit
/// for service accounts, the longest any server is known to accept).
pub const MAX_GRANT_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// The claims this crate sets itself; [`JwtClaims::claim`] may not override them.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "jti", "iat", "exp", "scope"];

/// How `private_key_jwt` and `client_secret_jwt` assertions are made: their
/// audience and lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionSettings {
    audience: Option<String>,
    lifetime: Duration,
}

impl Default for AssertionSettings {
    fn default() -> Self {
        AssertionSettings {
            audience: None,
            lifetime: DEFAULT_ASSERTION_LIFETIME,
        }
    }
}

impl AssertionSettings {
    /// The `aud` claim set by [`crate::ClientAuth::assertion_audience`];
    /// `None` means the token endpoint URL.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The time from `iat` to `exp`.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub(super) fn set_audience(&mut self, audience: String) {
        self.audience = Some(audience);
    }

    pub(super) fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = clamp(lifetime, MAX_CLIENT_ASSERTION_LIFETIME);
    }

    /// A fresh client assertion: `iss` = `sub` = the client id, `aud` the
    /// setting or else `token_url`.
    pub(super) fn sign(
        &self,
        signer: Signer<'_>,
        client_id: &str,
        token_url: &str,
    ) -> Result<SecretString, Error> {
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: self.audience.as_deref().unwrap_or(token_url),
            scope: None,
            extra: None,
        };
        claims.sign_fresh(signer, self.lifetime)
    }
}

/// The claims of a JWT-bearer grant assertion (RFC 7523 §3), signed by
/// [`crate::TokenRequest::jwt_bearer_signed`] anew for every request, with
/// a fresh `jti`, `iat` the time of signing and `exp` = `iat` + the lifetime.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth2::request::JwtClaims;
///
/// // A Google-style service account assertion.
/// let claims = JwtClaims::new("svc@project.iam.example", "svc@project.iam.example")
///     .audience("https://oauth2.example.com/token")
///     .scope("https://www.example.com/auth/cloud-platform")
///     .lifetime(Duration::from_secs(600))
///     .claim("tenant", "acme");
/// assert_eq!(claims.lifetime_secs(), 600);
/// ```
#[derive(Clone, PartialEq)]
pub struct JwtClaims {
    issuer: String,
    subject: String,
    audience: Option<String>,
    lifetime: Duration,
    scope: Option<String>,
    extra: Map<String, Value>,
}

/// `sub` names a user or account in clear: shown as `[subject]`, and the
/// extra claims by name only.
impl std::fmt::Debug for JwtClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtClaims")
            .field("issuer", &self.issuer)
            .field("subject", &format_args!("[subject]"))
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .field("scope", &self.scope)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JwtClaims {
    /// What names the tokens these claims get, for the configuration
    /// fingerprint ([`crate::store::ConfigFingerprint`]): `iss`, `sub`,
    /// `aud`, `scope` and the extra claims. No secret: the signed assertion
    /// is the secret, not its claims.
    pub(crate) fn identity(&self) -> Value {
        serde_json::json!([
            self.issuer,
            self.subject,
            self.audience,
            self.scope,
            self.extra,
        ])
    }

    /// `iss` (who signed the assertion) and `sub` (whom it is about: a
    /// user, a service account, or the client itself). `aud` is the token
    /// endpoint URL unless set with [`JwtClaims::audience`]; the lifetime is
    /// [`DEFAULT_ASSERTION_LIFETIME`].
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        JwtClaims {
            issuer: issuer.into(),
            subject: subject.into(),
            audience: None,
            lifetime: DEFAULT_ASSERTION_LIFETIME,
            scope: None,
            extra: Map::new(),
        }
    }

    /// Sets `aud` (by default the token endpoint URL).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the time from `iat` to `exp`: at least 1 second, at most
    /// [`MAX_GRANT_ASSERTION_LIFETIME`]; a value outside is brought to the
    /// nearer bound.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = clamp(lifetime, MAX_GRANT_ASSERTION_LIFETIME);
        self
    }

    /// Sets a `scope` claim, for servers that take the scope from the
    /// assertion (Google service accounts). The request's own `scope`
    /// parameter is [`crate::TokenRequest::scope`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Adds a claim. Registered claims this crate sets (`iss`, `sub`, `aud`,
    /// `jti`, `iat`, `exp`, `scope`) cannot be added this way: building the
    /// request fails with [`crate::ErrorKind::InvalidRequest`].
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// The lifetime in seconds.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime.as_secs()
    }

    /// A fresh assertion signed by `key`; `aud` is the setting or else `token_url`.
    pub(super) fn sign(&self, key: &SigningKey, token_url: &str) -> Result<SecretString, Error> {
        self.claims(token_url)?
            .sign_fresh(Signer::Key(key), self.lifetime)
    }

    fn claims<'a>(&'a self, token_url: &'a str) -> Result<Claims<'a>, Error> {
        if let Some(name) = REGISTERED.iter().find(|n| self.extra.contains_key(**n)) {
            return Err(Error::invalid_request(format!(
                "claim `{name}` is set by the assertion itself; use the dedicated method"
            )));
        }
        Ok(Claims {
            iss: &self.issuer,
            sub: &self.subject,
            aud: self.audience.as_deref().unwrap_or(token_url),
            scope: self.scope.as_deref(),
            extra: Some(&self.extra),
        })
    }
}

fn clamp(lifetime: Duration, max: Duration) -> Duration {
    lifetime.clamp(Duration::from_secs(1), max)
}

/// The claims but for the per-request ones.
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    scope: Option<&'a str>,
    extra: Option<&'a Map<String, Value>>,
}

/// The claims as sent, in this order.
#[derive(Serialize)]
struct Wire<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(flatten)]
    extra: Option<&'a Map<String, Value>>,
}

impl Claims<'_> {
    /// Signs with a random `jti` (128 bits) and `iat` now.
    fn sign_fresh(&self, signer: Signer<'_>, lifetime: Duration) -> Result<SecretString, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::invalid_request("the system clock is before 1970"))?
            .as_secs();
        let jti = crate::authorize::random_urlsafe(16)?;
        self.sign_at(signer, lifetime, now, &jti)
            .map(SecretString::from)
    }

    fn sign_at(
        &self,
        signer: Signer<'_>,
        lifetime: Duration,
        iat: u64,
        jti: &str,
    ) -> Result<String, Error> {
        signer.sign_jwt(&Wire {
            iss: self.iss,
            sub: self.sub,
            aud: self.aud,
            jti,
            iat,
            exp: iat.saturating_add(lifetime.as_secs()),
            scope: self.scope,
            extra: self.extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::error::ErrorKind;
    use crate::jose::{Algorithm, KeyErrorKind};
    use crate::request::{ClientAuth, TokenRequest, TokenUrl, JWT_BEARER_GRANT};

    const URL: &str = "https://as.example.com/oauth2/token";
    const SECRET: &str = "a-client-secret-of-32-bytes-long";

    fn p256() -> SigningKey {
        SigningKey::from_pem(Algorithm::ES256, include_str!("../../tests/data/p256.pem")).unwrap()
    }

    fn ed25519() -> SigningKey {
        SigningKey::from_pem(
            Algorithm::EdDSA,
            include_str!("../../tests/data/ed25519.pem"),
        )
        .unwrap()
    }

    /// The header and claims JSON texts, and whether the signature verifies.
    fn open(jwt: &str, signer: Signer<'_>) -> (String, String, bool) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let text = |s: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let verified = match signer {
            Signer::Key(key) => key.verify(input.as_bytes(), &signature),
            Signer::Secret(_) => signer.sign(input.as_bytes()).unwrap() == signature,
        };
        (text(parts[0]), text(parts[1]), verified)
    }

    /// The form body's pairs.
    fn form(request: http::Request<http_body_util::Full<bytes::Bytes>>) -> Vec<(String, String)> {
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(request.into_body().collect())
            .unwrap()
            .to_bytes();
        form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn names_of(pairs: &[(String, String)]) -> Vec<&str> {
        pairs.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn claims_of(jwt: &str) -> serde_json::Value {
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn client_assertion_exact_header_and_claims() {
        let es = p256().with_key_id("key-2024");
        let ed = ed25519();
        let secret = SecretString::from(SECRET);
        let cases = [
            (Signer::Key(&es), r#"{"alg":"ES256","kid":"key-2024"}"#),
            (Signer::Key(&ed), r#"{"alg":"EdDSA"}"#),
            (Signer::Secret(&secret), r#"{"alg":"HS256"}"#),
        ];
        let claims = Claims {
            iss: "svc-orders",
            sub: "svc-orders",
            aud: URL,
            scope: None,
            extra: None,
        };
        for (signer, header) in cases {
            let jwt = claims
                .sign_at(signer, DEFAULT_ASSERTION_LIFETIME, 1_700_000_000, "jti-1")
                .unwrap();
            let (got_header, got_claims, verified) = open(&jwt, signer);
            assert_eq!(got_header, header);
            assert_eq!(
                got_claims,
                r#"{"iss":"svc-orders","sub":"svc-orders","aud":"https://as.example.com/oauth2/token","jti":"jti-1","iat":1700000000,"exp":1700000060}"#
            );
            assert!(verified, "{header}");
        }
    }

    #[cfg(feature = "jwt-rsa")]
    #[test]
    fn client_assertion_rs256_and_ps256() {
        let pem = include_str!("../../tests/data/rsa2048.pem");
        for alg in [Algorithm::RS256, Algorithm::PS256] {
            let key = SigningKey::from_pem(alg, pem).unwrap();
            let jwt = AssertionSettings::default()
                .sign(Signer::Key(&key), "svc", URL)
                .unwrap();
            let (header, _, verified) = open(jwt.expose_secret(), Signer::Key(&key));
            assert_eq!(header, format!(r#"{{"alg":"{alg}"}}"#));
            assert!(verified, "{alg}");
        }
    }

    #[test]
    fn private_key_jwt_body_and_a_fresh_assertion_per_request() {
        let key = p256();
        let client = ClientAuth::private_key_jwt("svc-orders", key.clone());
        assert_eq!(client.method_name(), "private_key_jwt");
        assert_eq!(client.client_id(), "svc-orders");
        let url = TokenUrl::new(URL).unwrap();
        let request = TokenRequest::client_credentials().scope("orders:read");
        let mut jtis = Vec::new();
        for _ in 0..2 {
            let before = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let (built, signed) = request.build_signed(&client, &url).unwrap();
            let after = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(built.headers().get(http::header::AUTHORIZATION).is_none());
            let pairs = form(built);
            let names = names_of(&pairs);
            assert_eq!(
                names,
                [
                    "grant_type",
                    "scope",
                    "client_id",
                    "client_assertion_type",
                    "client_assertion"
                ]
            );
            assert_eq!(pairs[0].1, "client_credentials");
            assert_eq!(pairs[1].1, "orders:read");
            assert_eq!(pairs[2].1, "svc-orders");
            assert_eq!(pairs[3].1, CLIENT_ASSERTION_TYPE);
            let jwt = &pairs[4].1;
            assert_eq!(signed.len(), 1);
            assert_eq!(signed[0].expose_secret(), jwt);
            let (header, _, verified) = open(jwt, Signer::Key(&key));
            assert_eq!(header, r#"{"alg":"ES256"}"#);
            assert!(verified);
            let claims = claims_of(jwt);
            let mut names: Vec<&str> = claims
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            names.sort_unstable();
            assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "sub"]);
            assert_eq!(claims["iss"], "svc-orders");
            assert_eq!(claims["sub"], "svc-orders");
            assert_eq!(claims["aud"], URL);
            let iat = claims["iat"].as_u64().unwrap();
            assert!((before..=after).contains(&iat));
            assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60);
            // 16 random bytes, base64url.
            let jti = claims["jti"].as_str().unwrap();
            assert_eq!(URL_SAFE_NO_PAD.decode(jti).unwrap().len(), 16);
            jtis.push(jti.to_owned());
        }
        assert_ne!(jtis[0], jtis[1]);
    }

    #[test]
    fn client_secret_jwt_signs_with_the_secret_and_never_sends_it() {
        let client = ClientAuth::client_secret_jwt("svc-hmac", SECRET).unwrap();
        assert_eq!(client.method_name(), "client_secret_jwt");
        let url = TokenUrl::new(URL).unwrap();
        let built = TokenRequest::client_credentials()
            .build(&client, &url)
            .unwrap();
        let pairs = form(built);
        let names = names_of(&pairs);
        assert_eq!(
            names,
            [
                "grant_type",
                "client_id",
                "client_assertion_type",
                "client_assertion"
            ]
        );
        assert!(pairs.iter().all(|(_, v)| !v.contains(SECRET)));
        let secret = SecretString::from(SECRET);
        let (header, _, verified) = open(&pairs[3].1, Signer::Secret(&secret));
        assert_eq!(header, r#"{"alg":"HS256"}"#);
        assert!(verified);
        let other = SecretString::from("another-client-secret-of-32-byte");
        assert!(!open(&pairs[3].1, Signer::Secret(&other)).2);

        let err = ClientAuth::client_secret_jwt("svc", "too short").unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::TooShort);
        assert!(!err.to_string().contains("too short"));
    }

    #[test]
    fn assertion_audience_and_lifetime() {
        let url = TokenUrl::new(URL).unwrap();
        let client = ClientAuth::private_key_jwt("svc", p256())
            .assertion_audience("https://as.example.com")
            .assertion_lifetime(Duration::from_secs(120));
        let jwt = form(
            TokenRequest::client_credentials()
                .build(&client, &url)
                .unwrap(),
        )
        .pop()
        .unwrap()
        .1;
        let claims = claims_of(&jwt);
        assert_eq!(claims["aud"], "https://as.example.com");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            120
        );
        let ClientAuth::PrivateKeyJwt { assertion, .. } = &client else {
            panic!("{client:?}");
        };
        assert_eq!(assertion.audience(), Some("https://as.example.com"));
        // At most 5 minutes, at least 1 second.
        for (asked, got) in [(3600, 300), (300, 300), (0, 1)] {
            let client = ClientAuth::client_secret_jwt("svc", SECRET)
                .unwrap()
                .assertion_lifetime(Duration::from_secs(asked));
            let ClientAuth::ClientSecretJwt { assertion, .. } = &client else {
                panic!("{client:?}");
            };
            assert_eq!(assertion.lifetime(), Duration::from_secs(got));
        }
        // No effect on methods that send no assertion.
        let basic = ClientAuth::client_secret_basic("svc", "s").assertion_audience("x");
        assert_eq!(basic.method_name(), "client_secret_basic");
    }

    #[test]
    fn jwt_bearer_signed_exact_claims_and_body() {
        let key = ed25519().with_key_id("sa-key");
        let claims = JwtClaims::new("sa@project.example", "user@example.com")
            .scope("storage.read storage.write")
            .claim("tenant", "acme")
            .claim("n", 3)
            .lifetime(Duration::from_secs(600));
        let c = claims.claims(URL).unwrap();
        let jwt = c
            .sign_at(Signer::Key(&key), claims.lifetime, 1_700_000_000, "j")
            .unwrap();
        let (header, body, verified) = open(&jwt, Signer::Key(&key));
        assert_eq!(header, r#"{"alg":"EdDSA","kid":"sa-key"}"#);
        let extras = if body.contains(r#""tenant":"acme","n":3"#) {
            r#""tenant":"acme","n":3"#
        } else {
            r#""n":3,"tenant":"acme""#
        };
        assert_eq!(
            body,
            format!(
                r#"{{"iss":"sa@project.example","sub":"user@example.com","aud":"https://as.example.com/oauth2/token","jti":"j","iat":1700000000,"exp":1700000600,"scope":"storage.read storage.write",{extras}}}"#
            )
        );
        assert!(verified);

        let request = TokenRequest::jwt_bearer_signed(claims, key.clone()).scope("storage.read");
        let url = TokenUrl::new(URL).unwrap();
        let client = ClientAuth::none("client-1");
        let first = form(request.build(&client, &url).unwrap());
        let names = names_of(&first);
        assert_eq!(names, ["grant_type", "assertion", "scope", "client_id"]);
        assert_eq!(first[0].1, JWT_BEARER_GRANT);
        assert_eq!(first[2].1, "storage.read");
        assert!(open(&first[1].1, Signer::Key(&key)).2);
        let second = form(request.build(&client, &url).unwrap());
        assert_ne!(
            claims_of(&first[1].1)["jti"],
            claims_of(&second[1].1)["jti"]
        );
        // Default audience is the token endpoint URL; a set one replaces it.
        let audience = JwtClaims::new("i", "s").audience("https://as.example.com");
        let built = TokenRequest::jwt_bearer_signed(audience, key)
            .build(&client, &url)
            .unwrap();
        assert_eq!(
            claims_of(&form(built)[1].1)["aud"],
            "https://as.example.com"
        );
    }

    #[test]
    fn reserved_claims_and_parameters_are_refused() {
        let url = TokenUrl::new(URL).unwrap();
        let none = ClientAuth::none("c");
        for name in REGISTERED {
            let claims = JwtClaims::new("i", "s").claim(name, "x");
            let err = TokenRequest::jwt_bearer_signed(claims, p256())
                .build(&none, &url)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest);
            assert!(
                err.to_string().contains(&format!("claim `{name}`")),
                "{err}"
            );
        }
        let jwt_client = ClientAuth::private_key_jwt("c", p256());
        for name in ["client_assertion", "client_assertion_type"] {
            let request = TokenRequest::client_credentials().param(name, "x");
            let err = request.build(&jwt_client, &url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest);
            // Other methods leave them to the caller, as before.
            assert!(request.build(&none, &url).is_ok());
        }
        assert_eq!(
            JwtClaims::new("i", "s")
                .lifetime(Duration::from_secs(7200))
                .lifetime_secs(),
            3600
        );
    }

    #[test]
    fn keys_and_secrets_are_never_shown() {
        let client = ClientAuth::client_secret_jwt("svc", SECRET).unwrap();
        let key_client = ClientAuth::private_key_jwt("svc", p256());
        let request = TokenRequest::jwt_bearer_signed(JwtClaims::new("i", "s"), p256());
        let shown = format!("{client:?} {key_client:?} {request:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        let jwk: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/p256.jwk.json")).unwrap();
        assert!(!shown.contains(jwk["d"].as_str().unwrap()), "{shown}");
        assert!(shown.contains("[redacted]"));
        // The secret is scrubbed from error excerpts, like client_secret_post's.
        let request = TokenRequest::client_credentials();
        assert_eq!(request.secrets(&client), [SECRET]);
    }
}
