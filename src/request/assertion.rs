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
#[derive(Clone, Debug, PartialEq)]
pub struct JwtClaims {
    issuer: String,
    subject: String,
    audience: Option<String>,
    lifetime: Duration,
    scope: Option<String>,
    extra: Map<String, Value>,
}

impl JwtClaims {
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
        self.sign_at(signer, lifetime, now, &jti).map(SecretString::from)
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
