//! On behalf of the caller: RFC 8693 token exchange per subject.
//!
//! A service that receives a user's token and calls a downstream API must
//! not forward that token (its audience is this service), nor use its own
//! client token (the API would not know the user). It exchanges the user's
//! token at the authorization server for one meant for the downstream API
//! (RFC 8693 §2: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//! `subject_token`, `subject_token_type`, and optionally `actor_token`,
//! `audience`, `resource`, `scope`), and sends that.
//!
//! [`OnBehalfLayer`] does this for every request, and caches the result
//! **per subject**:
//!
//! - the subject token comes from the request: by default a
//!   [`SubjectToken`] in its extensions (put there by the server with one
//!   line, usually [`SubjectToken::from_headers`] of the inbound request),
//!   or anything a function of the headers and extensions gives
//!   ([`OnBehalfLayer::subject_from`]);
//! - each subject gets its own [`TokenCache`], made on the subject's first
//!   request by a function you give (any [`TokenRequest::token_exchange`]
//!   with the options you need: a fleet tier, a store, a backoff), so a
//!   subject has single flight, background refresh and the 401 retry of an
//!   ordinary cache, and a subject the token endpoint refuses
//!   (`invalid_grant`) fails alone: its backoff is its own;
//! - the caches are keyed by a SHA-256 hash of the subject token, never the
//!   token itself; the subject token never appears in `Debug`, logs or
//!   errors. Each cache's [`ConfigFingerprint`](crate::store::ConfigFingerprint)
//!   hashes the subject too, so a [`FileStore`](crate::store::FileStore) or
//!   a Redis fleet tier never gives one subject's token to another;
//! - at most [`max_subjects`](OnBehalfLayer::max_subjects) caches are kept
//!   (default 1024, least recently used dropped first), and a cache unused
//!   for [`idle_timeout`](OnBehalfLayer::idle_timeout) (default 5 min) is
//!   dropped;
//! - when the subject token is a JWT with an `exp` claim (read, not
//!   verified: the authorization server verifies it), the exchanged token is
//!   never sent after that instant: a request whose subject has expired
//!   fails with [`ErrorKind::SubjectExpired`](crate::ErrorKind::SubjectExpired)
//!   without a token request. A subject token that is not a JWT is opaque:
//!   its tokens live as long as the token endpoint says.
//!
//! When a user logs out, [`cache_for`](OnBehalfLayer::cache_for) gives
//! that subject's cache, whose [`TokenCache::revoke`] revokes the token
//! exchanged for it (RFC 7009); no other subject's token is touched, and
//! the subject's next request, if any, exchanges again.
//!
//! A token per subject **and per downstream API** (the keyed form): one
//! layer per API, stacked, each with the API's audience in `make` and its
//! origin in [`destinations`](OnBehalfLayer::destinations); a request to
//! one API passes through the other layers untouched.
//!
//! With a fleet's Redis tier (feature `redis`), give the tier an
//! encryption key (`RedisTier::encryption_key`): a value moved under
//! another subject's key then does not decrypt and is ignored. Without
//! one, Redis is trusted as the token endpoint is: the values are plain
//! JSON naming the configuration they were fetched for, so a value copied
//! as it is under another subject's key is ignored, but whoever can write
//! Redis can rewrite that name and give any subject any token, another
//! subject's included.
//!
//! A service that acts for the user under its own identity adds an RFC
//! 8693 §2.1 actor token in `make`:
//! `.secret_param("actor_token", own_token).param("actor_token_type", ACCESS_TOKEN_TYPE)`
//! (a secret parameter: hashed into the fingerprint, never shown).
//!
//! A request with no subject token fails with
//! [`ErrorKind::NoSubject`](crate::ErrorKind::NoSubject); nothing is sent.
//! So does one whose subject token is empty, longer than
//! [`max_subject_bytes`](OnBehalfLayer::max_subject_bytes), or holds a
//! byte no token has (a control character such as CR or LF, a space,
//! non-ASCII): nothing is sent to the token endpoint, and the token is in
//! no error or log line.
//! Requests that may not carry a token at all (see
//! [`OnBehalfLayer::destinations`]) go out untouched, with no exchange. By
//! default a subject's exchanged token goes only to the origins its token
//! request names (an `audience` that is an absolute URL, `resource`s), as
//! a single cache's does.
//!
//! # Example
//!
//! In an axum (or any tower) handler: the inbound `Authorization` header
//! becomes the outbound request's [`SubjectToken`].
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth2::on_behalf::{OnBehalfLayer, SubjectToken, ACCESS_TOKEN_TYPE};
//! use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//! # async fn example<S>(http_client: S, inbound: http::HeaderMap) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
//! # where
//! #     S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<Full<Bytes>>> + Clone + Send + Sync + 'static,
//! #     S::Future: Send,
//! #     S::Error: std::error::Error + Send + Sync + 'static,
//! # {
//! let endpoint = TokenEndpoint::new(
//!     http_client.clone(),
//!     TokenUrl::new("https://as.example.com/oauth2/token")?,
//!     ClientAuth::client_secret_basic("svc-orders", "s3cret"),
//! );
//! // One cache per subject, each exchanging that subject's token.
//! let layer = OnBehalfLayer::new(move |subject: &SubjectToken| {
//!     let request = TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE)
//!         .audience("https://inventory.example.com")
//!         .scope("inventory:read");
//!     TokenCache::builder(endpoint.clone(), request).build()
//! })
//! .destinations(tower_oauth2::Destinations::origins(["https://inventory.example.com"])?);
//! let client = ServiceBuilder::new().layer(layer).service(http_client);
//!
//! // In the handler, `inbound` being the incoming request's headers:
//! let mut request = http::Request::get("https://inventory.example.com/items").body(Full::default())?;
//! if let Some(subject) = SubjectToken::from_headers(&inbound) {
//!     request.extensions_mut().insert(subject);
//! }
//! let response = client.oneshot(request).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! With feature `reqwest`, `OnBehalfMiddleware` (in this module) does the
//! same for a reqwest-middleware client; the subject goes in with
//! `RequestBuilder::with_extension(subject)`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap};
use sha2::{Digest, Sha256};

use crate::cache::keyed::KeyMap;
use crate::cache::{Backoff, TokenCache};
use crate::error::Error;
use crate::layer::{AuthPolicy, Destinations};
use crate::SecretString;

#[cfg(doc)]
use crate::TokenRequest;

mod layer;
#[cfg(feature = "reqwest")]
mod reqwest;

pub use layer::{OnBehalfFuture, OnBehalfLayer, OnBehalfService};
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use reqwest::OnBehalfMiddleware;

/// `subject_token_type` of an OAuth 2.0 access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `subject_token_type` of a JWT (RFC 8693 §3).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `subject_token_type` of an OpenID Connect ID token (RFC 8693 §3).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Most subjects with a cache at once, by default.
pub const DEFAULT_MAX_SUBJECTS: usize = 1024;
/// How long a subject's cache may go unused before it is dropped, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest subject token taken, by default: 16 KiB, far above any real
/// access token, so a request cannot make the layer hash and send megabytes.
pub const DEFAULT_MAX_SUBJECT_BYTES: usize = 16 * 1024;

/// The token of the caller a request is made on behalf of: the subject of
/// the token exchange. A server puts it in the outbound request's
/// extensions (`request.extensions_mut().insert(subject)`), usually taken
/// from the inbound request with [`SubjectToken::from_headers`].
///
/// Its `Debug` shows no part of the token.
#[derive(Clone)]
pub struct SubjectToken(SecretString);

impl SubjectToken {
    /// A subject token as it is.
    pub fn new(token: impl Into<SecretString>) -> Self {
        SubjectToken(token.into())
    }

    /// The bearer token of an `Authorization: Bearer <token>` header in
    /// `headers` (the inbound request's); `None` when there is none, or
    /// the header is not a bearer token (the scheme is matched without
    /// regard to case, RFC 9110 §11.1).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return None;
        }
        Some(SubjectToken::new(token))
    }

    /// The token, for the token-exchange request's `subject_token`.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectToken(..)")
    }
}

/// The key of a subject's cache: SHA-256 of its token. The token itself is
/// kept nowhere but in its cache's token request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SubjectKey([u8; 32]);

impl SubjectKey {
    fn of(token: &SecretString) -> Self {
        SubjectKey(Sha256::digest(token.expose_secret().as_bytes()).into())
    }
}

/// A subject's cache, and the instant its token stops being usable.
#[derive(Clone)]
struct Entry {
    policy: AuthPolicy,
    not_after: Option<SystemTime>,
}

type SubjectFn = dyn Fn(&HeaderMap, &Extensions) -> Option<SubjectToken> + Send + Sync;
type MakeFn = dyn Fn(&SubjectToken) -> TokenCache + Send + Sync;

/// What the tower layer and the reqwest middleware share: the subject
/// caches and the options.
struct Subjects {
    subject: Arc<SubjectFn>,
    make: Arc<MakeFn>,
    caches: Arc<KeyMap<SubjectKey, Entry>>,
    options: Options,
}

// By hand: the functions are shared, not cloned. Clones share the caches
// (see `Subjects::detached` for a clone that must not).
impl Clone for Subjects {
    fn clone(&self) -> Self {
        Subjects {
            subject: Arc::clone(&self.subject),
            make: Arc::clone(&self.make),
            caches: Arc::clone(&self.caches),
            options: self.options.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct Options {
    /// Which requests may get a token at all, looked at before the
    /// subject is: those chosen, else [`Destinations::secure`].
    destinations: Destinations,
    /// Whether `destinations` were chosen. If not, each subject's policy
    /// keeps [`AuthPolicy::new`]'s: the origins its token request names
    /// (an `audience` URL, `resource`s), so an exchanged token, which
    /// acts for the user, goes only to the API it was exchanged for.
    destinations_chosen: bool,
    retry_unauthorized: bool,
    unauthorized_backoff: Option<Backoff>,
    max_subject_bytes: usize,
    /// The caches' bounds, kept to give a detached copy the same.
    max_subjects: usize,
    idle_timeout: Duration,
}

impl Subjects {
    fn new(make: Arc<MakeFn>) -> Self {
        let options = Options {
            destinations: Destinations::secure(),
            destinations_chosen: false,
            retry_unauthorized: true,
            unauthorized_backoff: None,
            max_subject_bytes: DEFAULT_MAX_SUBJECT_BYTES,
            max_subjects: DEFAULT_MAX_SUBJECTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        };
        Subjects {
            subject: Arc::new(|_: &HeaderMap, extensions: &Extensions| {
                extensions.get::<SubjectToken>().cloned()
            }),
            make,
            caches: Self::caches(&options),
            options,
        }
    }

    fn caches(options: &Options) -> Arc<KeyMap<SubjectKey, Entry>> {
        let caches = Arc::new(KeyMap::new());
        caches.set_bounds(Some(options.max_subjects), Some(options.idle_timeout));
        caches
    }

    /// A copy with the same functions and options and caches of its own:
    /// what a layer (or middleware) whose `Subjects` a clone or a built
    /// service shares becomes when an option is set on it. Each subject's
    /// entry holds a policy made with the options of the layer that made
    /// it, so two layers with different options must not share entries: a
    /// clone given `Destinations::any()` would otherwise lend it to the
    /// original for every subject it saw first.
    fn detached(&self) -> Self {
        Subjects {
            caches: Self::caches(&self.options),
            ..self.clone()
        }
    }

    /// The policy (with the cache) of the request's subject.
    ///
    /// # Errors
    ///
    /// [`Error::no_subject`] when the request has no subject token,
    /// [`Error::unusable_subject`] when it cannot be one,
    /// [`Error::subject_expired`] when it is a JWT past its `exp`.
    fn policy_for(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<AuthPolicy, Error> {
        let subject = (self.subject)(headers, extensions).ok_or_else(Error::no_subject)?;
        let token = subject.secret();
        if let Some(why) = unusable(token.expose_secret(), self.options.max_subject_bytes) {
            return Err(Error::unusable_subject(why));
        }
        let key = SubjectKey::of(token);
        let now = SystemTime::now();
        let mut expired = false;
        let entry = self.caches.get_or_make(&key, |_| {
            let not_after = jwt_expiry(token.expose_secret());
            // An expired subject gets no cache, and no token request.
            if not_after.is_some_and(|exp| exp <= now) {
                expired = true;
                return None;
            }
            Some(Entry {
                policy: self.policy_with((self.make)(&subject)),
                not_after,
            })
        });
        match entry {
            // The same token, so the same `exp`: checked at every use, so
            // no exchanged token is sent after its subject expired.
            Some(entry) if entry.not_after.is_none_or(|exp| now < exp) => Ok(entry.policy),
            Some(_) => Err(Error::subject_expired()),
            None if expired => Err(Error::subject_expired()),
            None => Err(Error::no_subject()),
        }
    }

    /// The cache of `subject`, if it has one; not counted as a use.
    fn cache_for(&self, subject: &SubjectToken) -> Option<TokenCache> {
        let entry = self.caches.get(&SubjectKey::of(subject.secret()))?;
        Some(entry.policy.cache().clone())
    }

    fn policy_with(&self, cache: TokenCache) -> AuthPolicy {
        let options = &self.options;
        let policy = AuthPolicy::new(cache).retry_unauthorized(options.retry_unauthorized);
        let policy = if options.destinations_chosen {
            policy.destinations(options.destinations.clone())
        } else {
            policy
        };
        match options.unauthorized_backoff {
            Some(backoff) => policy.unauthorized_backoff(backoff),
            None => policy,
        }
    }
}

/// What keeps `token` from being a subject token, and what to do, for the
/// error (never any of the token); `None` if it can be one: 1 to `max`
/// bytes, each visible ASCII (`0x21..=0x7e`). Every token type RFC 8693
/// §3 names is made of such bytes (an access token is RFC 6750's
/// `b64token`, a JWT or ID token is base64url and dots, a SAML assertion
/// is sent base64url-encoded), so
/// a CR, LF, NUL, space or non-ASCII byte means a subject taken from the
/// wrong place or an injection attempt: it is refused before any exchange
/// rather than sent to the token endpoint (where a log line might show it).
fn unusable(token: &str, max: usize) -> Option<String> {
    if token.is_empty() {
        return Some("is empty".to_owned());
    }
    if token.len() > max {
        return Some(format!(
            "is {} bytes long, longer than `max_subject_bytes` ({max}): raise that limit if \
             such tokens are expected",
            token.len()
        ));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Some(
            "holds a byte no token has (a space, a control character such as CR or LF, or \
             non-ASCII): is it taken from the right place?"
                .to_owned(),
        );
    }
    None
}

/// The `exp` of a JWT (`header.payload.signature`, RFC 7519 §4.1.4), read
/// without verifying the signature: the authorization server verifies the
/// token; the layer only refuses to outlive it. `None` for anything that is
/// not a JWT with a numeric `exp`.
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<f64>,
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        // Five parts: a JWE, whose payload is encrypted.
        return None;
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<Claims>(&payload).ok()?.exp?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)
}

/// The options shared by the layer and the middleware, on a type with a
/// `subjects: Arc<Subjects>` field.
macro_rules! subject_options {
    () => {
        /// The subjects to set an option on: this layer's own, detached
        /// (caches of their own) if a clone or a built service shares them.
        fn subjects_mut(&mut self) -> &mut Subjects {
            if Arc::get_mut(&mut self.subjects).is_none() {
                self.subjects = Arc::new(self.subjects.detached());
            }
            // Unique now: no copy made.
            Arc::make_mut(&mut self.subjects)
        }

        /// Takes the subject token from the request's headers and
        /// extensions with `subject` instead of from a [`SubjectToken`]
        /// extension (`None`: the request has none and fails with
        /// [`ErrorKind::NoSubject`](crate::ErrorKind::NoSubject)).
        ///
        /// Read the subject from the *inbound* request, not from a header
        /// the outbound request carries: a proxy that copies the caller's
        /// `Authorization` onto the outbound request would send the
        /// caller's own token, untouched, on every request the
        /// destinations refuse (those pass through as they came). Put it
        /// in a [`SubjectToken`] extension and drop the header instead.
        pub fn subject_from(
            mut self,
            subject: impl Fn(&http::HeaderMap, &http::Extensions) -> Option<SubjectToken>
                + Send
                + Sync
                + 'static,
        ) -> Self {
            self.subjects_mut().subject = Arc::new(subject);
            self
        }

        /// Which requests may get a token at all; others go untouched,
        /// with no exchange, and need no subject. Name the downstream
        /// API's origin.
        ///
        /// By default, as [`AuthPolicy::new`](crate::AuthPolicy::new)
        /// chooses for a single cache: the origins each subject's token
        /// request names (its `resource`s, an `audience` that is an
        /// absolute URL), else [`Destinations::secure`](crate::Destinations::secure).
        /// A request [`Destinations::secure`](crate::Destinations::secure)
        /// refuses goes untouched; one to an origin the exchange does not
        /// name needs a subject (its cache is made, nothing is exchanged)
        /// and goes without a token.
        pub fn destinations(mut self, destinations: crate::Destinations) -> Self {
            let options = &mut self.subjects_mut().options;
            options.destinations = destinations;
            options.destinations_chosen = true;
            self
        }

        /// Whether a refused token leads to one resend with a new one: see
        /// [`AuthPolicy::retry_unauthorized`](crate::AuthPolicy::retry_unauthorized).
        pub fn retry_unauthorized(mut self, retry: bool) -> Self {
            self.subjects_mut().options.retry_unauthorized = retry;
            self
        }

        /// How refetches on 401 back off, per subject: see
        /// [`AuthPolicy::unauthorized_backoff`](crate::AuthPolicy::unauthorized_backoff).
        pub fn unauthorized_backoff(mut self, backoff: crate::cache::Backoff) -> Self {
            self.subjects_mut().options.unauthorized_backoff = Some(backoff);
            self
        }

        /// The longest subject token taken (default 16 KiB); a longer one
        /// fails with [`ErrorKind::NoSubject`](crate::ErrorKind::NoSubject).
        pub fn max_subject_bytes(mut self, limit: usize) -> Self {
            self.subjects_mut().options.max_subject_bytes = limit;
            self
        }

        /// At most this many subjects have a cache (default 1024, at least
        /// 1): a new subject beyond it drops the one used least recently.
        pub fn max_subjects(mut self, max: usize) -> Self {
            let subjects = self.subjects_mut();
            subjects.options.max_subjects = max;
            subjects.caches.set_bounds(Some(max), None);
            self
        }

        /// A subject's cache unused this long (default 5 minutes) is
        /// dropped when a new subject comes, or on `evict_idle`.
        pub fn idle_timeout(mut self, idle: std::time::Duration) -> Self {
            let subjects = self.subjects_mut();
            subjects.options.idle_timeout = idle;
            subjects.caches.set_bounds(None, Some(idle));
            self
        }

        /// Drops the caches idle for the idle timeout now; returns how many.
        pub fn evict_idle(&self) -> usize {
            self.subjects.caches.evict_idle()
        }

        /// How many subjects have a cache now.
        pub fn subjects(&self) -> usize {
            self.subjects.caches.keys().len()
        }

        /// The cache of `subject`, if it has one now: for its
        /// [`Stats`](crate::cache::Stats), or to
        /// [`revoke`](crate::TokenCache::revoke) the token exchanged for
        /// it when the user logs out (RFC 7009; that subject's next request
        /// exchanges again, no other subject's cache is touched).
        pub fn cache_for(&self, subject: &SubjectToken) -> Option<crate::TokenCache> {
            self.subjects.cache_for(subject)
        }
    };
}
use subject_options;

impl fmt::Debug for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subjects")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(payload))
    }

    #[test]
    fn the_exp_of_a_jwt_is_read_and_anything_else_has_none() {
        assert_eq!(
            jwt_expiry(&jwt(r#"{"sub":"u","exp":1700000000}"#)),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"u"}"#)), None);
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":-1}"#)), None);
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1e300}"#)), None);
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.b"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
        assert_eq!(jwt_expiry("a.b.c.d.e"), None);
    }

    #[test]
    fn a_bearer_header_is_the_subject_and_nothing_else_is() {
        let mut headers = HeaderMap::new();
        assert!(SubjectToken::from_headers(&headers).is_none());
        headers.insert(AUTHORIZATION, "Basic dXNlcjpw".parse().unwrap());
        assert!(SubjectToken::from_headers(&headers).is_none());
        headers.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        let subject = SubjectToken::from_headers(&headers).unwrap();
        assert_eq!(subject.secret().expose_secret(), "abc");
        assert_eq!(format!("{subject:?}"), "SubjectToken(..)");
        headers.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(SubjectToken::from_headers(&headers).is_none());
    }

    fn is_token_shaped(token: &str, max: usize) -> bool {
        unusable(token, max).is_none()
    }

    #[test]
    fn only_visible_ascii_within_the_limit_is_a_subject_token() {
        assert!(is_token_shaped("eyJ.a-b_c~d+e/f=", 16));
        assert!(is_token_shaped(&"x".repeat(16), 16));
        assert!(!is_token_shaped(&"x".repeat(17), 16));
        for bad in ["", "a b", "a\tb", "a\r\nb", "a\0", "a\u{7f}", "\u{e9}"] {
            assert!(!is_token_shaped(bad, 16), "{bad:?}");
        }
    }

    #[test]
    fn two_tokens_sharing_a_prefix_have_different_keys() {
        let long = "x".repeat(4096);
        let a = SubjectKey::of(&SecretString::new(format!("{long}a")));
        let b = SubjectKey::of(&SecretString::new(format!("{long}b")));
        assert!(a != b);
    }
}
