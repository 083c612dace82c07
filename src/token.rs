//! Access tokens as a token endpoint issues them (RFC 6749 §5.1).
//!
//! A [`Token`] is parsed from the endpoint's JSON body (or, for the providers
//! that still answer that way, a form-encoded body). The access, refresh and ID
//! tokens are [`SecretString`]s: `Debug` on a `Token` shows their presence,
//! never their text.
//!
//! # `expires_in`
//!
//! RFC 6749 says `expires_in` is a number of seconds. Real servers send more
//! than that, and none of it panics:
//!
//! | sent | [`Token::expires_in`] | meaning |
//! | --- | --- | --- |
//! | `3600` | `Some(3600 s)` | expires an hour after the request was sent |
//! | `"3599"` (numeric string) | `Some(3599 s)` | as a number |
//! | `3599.7` | `Some(3599 s)` | fractions are dropped |
//! | absent or `null` | `None` | unknown; the layer applies its configured default lifetime |
//! | `0`, `-5`, `"-5"` | `Some(0 s)` | already expired; the layer refuses to send it |
//! | `1e30`, `u64::MAX` | `Some(u64::MAX s)` | saturates: in practice never expires |
//! | `"abc"`, `true`, `{}` | — | [`ParseError`] |
//!
//! # `issued_at`
//!
//! The lifetime is counted from the moment the token request was *sent*
//! ([`IssuedAt`]), on the monotonic clock, so the time spent on the network
//! counts against it. A wall-clock [`SystemTime`] is kept beside it so a token
//! can be persisted and restored ([`IssuedAt::from_system_time`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth2::token::{Token, TokenType};
//!
//! let body = br#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"bearer",
//!                 "expires_in":"3600","refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA",
//!                 "scope":"read write","example_parameter":"example_value"}"#;
//! let token = Token::try_from(&body[..])?;
//!
//! assert_eq!(token.token_type(), &TokenType::Bearer);
//! assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
//! assert_eq!(token.scopes().collect::<Vec<_>>(), ["read", "write"]);
//! assert_eq!(token.extra()["example_parameter"], "example_value");
//! assert!(!token.is_expired());
//! // Secrets are never printed.
//! assert!(!format!("{token:?}").contains("2YotnFZFEjr1zCsicMWpAA"));
//! # Ok::<(), tower_oauth2::token::ParseError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::clock;
use crate::secret::SecretString;

/// When a token was issued: the moment its request was sent.
///
/// Holds the monotonic [`Instant`], the wall-clock [`SystemTime`] kept for
/// persistence, and the reading of the clock the cache counts expiry on
/// (one that keeps running while the machine is suspended: the
/// [`cache`](crate::cache) module docs, "Time").
#[derive(Debug, Clone, Copy)]
pub struct IssuedAt {
    instant: Instant,
    system: SystemTime,
    clock: clock::Instant,
}

/// The same moment: equal monotonic and wall-clock readings (the cache's
/// clock is derived from them, or read with them).
impl PartialEq for IssuedAt {
    fn eq(&self, other: &Self) -> bool {
        (self.instant, self.system) == (other.instant, other.system)
    }
}

impl Eq for IssuedAt {}

impl IssuedAt {
    /// Now, on every clock. Take it just before sending the token request.
    pub fn now() -> Self {
        IssuedAt {
            instant: Instant::now(),
            system: SystemTime::now(),
            clock: clock::Instant::now(),
        }
    }

    /// From both clocks' readings, taken at the same moment.
    pub fn from_parts(instant: Instant, system: SystemTime) -> Self {
        IssuedAt {
            instant,
            system,
            clock: clock::Instant::from_std(instant),
        }
    }

    /// From a wall-clock time alone (a token restored from storage).
    ///
    /// The monotonic instant is derived from how long ago `system` was. A
    /// time too far in the past for the monotonic clock to represent is taken
    /// as the earliest instant it can represent, and so is a time in the
    /// future (a clock set back since, a file from another machine): such a
    /// token is suspect, and counts as expired. A restored token looks
    /// older, never younger.
    pub fn from_system_time(system: SystemTime) -> Self {
        let now = Instant::now();
        let clock_now = clock::Instant::now();
        let age = SystemTime::now().duration_since(system).ok();
        let instant = age
            .and_then(|age| now.checked_sub(age))
            .unwrap_or_else(|| earliest_instant(now));
        let clock = age
            .and_then(|age| clock_now.checked_sub(age))
            .unwrap_or_else(|| clock::Instant::from_std(instant));
        IssuedAt {
            instant,
            system,
            clock,
        }
    }

    /// The monotonic instant.
    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// The wall-clock time.
    pub fn system_time(&self) -> SystemTime {
        self.system
    }

    /// The instant on the clock the cache counts expiry on.
    pub(crate) fn on_clock(&self) -> clock::Instant {
        self.clock
    }
}

fn earliest_instant(now: Instant) -> Instant {
    // Halve the distance until subtraction succeeds; terminates because
    // `now - 0` always succeeds.
    let mut back = Duration::from_secs(u64::MAX / 2);
    loop {
        if let Some(i) = now.checked_sub(back) {
            return i;
        }
        back /= 2;
    }
}

/// The `token_type` of an access token (RFC 6749 §7.1), compared
/// case-insensitively: `bearer`, `Bearer` and `BEARER` are all [`TokenType::Bearer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenType {
    /// RFC 6750 bearer token.
    Bearer,
    /// Any other type (`DPoP`, `mac`, `N_A` …), as the server spelled it.
    Other(String),
}

impl TokenType {
    /// Parses a `token_type` value.
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("bearer") {
            TokenType::Bearer
        } else {
            TokenType::Other(s.to_owned())
        }
    }

    /// The type's name.
    pub fn as_str(&self) -> &str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::Other(s) => s,
        }
    }

    /// Whether this is a bearer token.
    pub fn is_bearer(&self) -> bool {
        matches!(self, TokenType::Bearer)
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token response that could not be understood.
///
/// The message names the field and what was wrong with it, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    reason: Cow<'static, str>,
}

impl ParseError {
    pub(crate) fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        ParseError {
            reason: reason.into(),
        }
    }

    /// What was wrong, without any value from the response.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid token response: {}", self.reason)
    }
}

impl std::error::Error for ParseError {}

/// An access token with what came with it (RFC 6749 §5.1).
#[derive(Clone)]
pub struct Token {
    access_token: SecretString,
    token_type: TokenType,
    expires_in: Option<u64>,
    refresh_token: Option<SecretString>,
    scope: Option<String>,
    id_token: Option<SecretString>,
    extra: Map<String, Value>,
    issued_at: IssuedAt,
}

const KNOWN_FIELDS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "id_token",
];

impl Token {
    /// A token built by hand (tests, a token restored from storage, a token
    /// obtained some other way), issued now, with no expiry, refresh token or
    /// scope. Set those with the `with_` methods.
    pub fn new(access_token: impl Into<SecretString>, token_type: TokenType) -> Self {
        Token {
            access_token: access_token.into(),
            token_type,
            expires_in: None,
            refresh_token: None,
            scope: None,
            id_token: None,
            extra: Map::new(),
            issued_at: IssuedAt::now(),
        }
    }

    /// Sets the lifetime, counted from [`Token::issued_at`].
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in.as_secs());
        self
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<SecretString>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets the granted scope (space-delimited, RFC 6749 §3.3).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets when the token was issued.
    pub fn with_issued_at(mut self, issued_at: IssuedAt) -> Self {
        self.issued_at = issued_at;
        self
    }

    /// Parses a JSON token response body (RFC 6749 §5.1).
    ///
    /// `issued_at` should be when the request was sent. A body carrying an
    /// `error` member is rejected: it is an error response (§5.2), which
    /// [`crate::endpoint::parse_token_response`] turns into a typed error.
    pub fn from_json(body: &[u8], issued_at: IssuedAt) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            // serde_json's syntax errors give a category and a position,
            // never the input text.
            ParseError::new(format!("body is not valid JSON ({e})"))
        })?;
        match value {
            Value::Object(map) => Self::from_map(map, issued_at),
            _ => Err(ParseError::new("body is JSON but not an object")),
        }
    }

    /// Parses an `application/x-www-form-urlencoded` token response body,
    /// as some older providers send, or an implicit-grant redirect fragment.
    pub fn from_form(body: &[u8], issued_at: IssuedAt) -> Result<Self, ParseError> {
        let map = form_to_map(body);
        Self::from_map(map, issued_at)
    }

    pub(crate) fn from_map(
        mut map: Map<String, Value>,
        issued_at: IssuedAt,
    ) -> Result<Self, ParseError> {
        if map.contains_key("error") {
            return Err(ParseError::new(
                "response carries an `error` member: it is an error response",
            ));
        }
        let access_token = match map.remove("access_token") {
            Some(Value::String(s)) if !s.is_empty() => SecretString::from(s),
            Some(Value::String(_)) => {
                return Err(ParseError::new("`access_token` is empty"));
            }
            Some(_) => return Err(ParseError::new("`access_token` is not a string")),
            None => return Err(ParseError::new("`access_token` is missing")),
        };
        let token_type = match map.remove("token_type") {
            Some(Value::String(s)) => TokenType::parse(&s),
            // RFC 6749 makes `token_type` REQUIRED; the few servers that omit
            // it issue bearer tokens.
            None | Some(Value::Null) => TokenType::Bearer,
            Some(_) => return Err(ParseError::new("`token_type` is not a string")),
        };
        let expires_in = match map.remove("expires_in") {
            Some(v) => parse_expires_in(&v)?,
            None => None,
        };
        let refresh_token = optional_string(&mut map, "refresh_token")?.map(SecretString::from);
        let id_token = optional_string(&mut map, "id_token")?.map(SecretString::from);
        let scope = match map.remove("scope") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            // A few providers send a JSON array of scopes.
            Some(Value::Array(items)) => {
                let mut scopes = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => scopes.push(s),
                        _ => return Err(ParseError::new("`scope` array holds a non-string")),
                    }
                }
                Some(scopes.join(" "))
            }
            Some(_) => return Err(ParseError::new("`scope` is not a string")),
        };
        debug_assert!(KNOWN_FIELDS.iter().all(|k| !map.contains_key(*k)));
        // A map emptied by the removals above still holds its first node
        // (632 bytes with serde_json's BTreeMap), kept as long as the token
        // is cached: a new, empty map allocates nothing.
        let extra = if map.is_empty() { Map::new() } else { map };
        Ok(Token {
            access_token,
            token_type,
            expires_in,
            refresh_token,
            scope,
            id_token,
            extra,
            issued_at,
        })
    }

    /// The access token. Expose it only to send it.
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The token type.
    pub fn token_type(&self) -> &TokenType {
        &self.token_type
    }

    /// The lifetime the server gave, or `None` if it gave none (see the
    /// module docs for how odd values are read).
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    /// The refresh token, if the server issued one.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.refresh_token.as_ref()
    }

    pub(crate) fn set_refresh_token(&mut self, refresh_token: Option<SecretString>) {
        self.refresh_token = refresh_token;
    }

    /// The granted scope as sent (space-delimited), if the server sent one.
    ///
    /// RFC 6749 §5.1: absent means the scope requested was granted.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// The OpenID Connect ID token, if one was issued (not validated here).
    pub fn id_token(&self) -> Option<&SecretString> {
        self.id_token.as_ref()
    }

    /// Response members this type has no field for, kept as sent.
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// When the token was issued.
    pub fn issued_at(&self) -> IssuedAt {
        self.issued_at
    }

    /// When the token expires on the monotonic clock, or `None` when that is
    /// unknown (`expires_in` absent) or too far away to represent.
    pub fn expires_at(&self) -> Option<Instant> {
        let secs = self.expires_in?;
        self.issued_at
            .instant
            .checked_add(Duration::from_secs(secs))
    }

    /// When the token expires on the wall clock (for persistence), with the
    /// same `None` cases as [`Token::expires_at`].
    pub fn expires_at_system_time(&self) -> Option<SystemTime> {
        let secs = self.expires_in?;
        self.issued_at.system.checked_add(Duration::from_secs(secs))
    }

    /// Whether the token has expired by `now`. A token with no known expiry
    /// never expires by this measure.
    pub fn is_expired_at(&self, now: Instant) -> bool {
        match self.expires_in {
            None => false,
            Some(_) => match self.expires_at() {
                Some(at) => now >= at,
                None => false,
            },
        }
    }

    /// Whether the token has expired now, counting the time this machine
    /// was suspended since it was issued (on Linux; as the cache counts it).
    pub fn is_expired(&self) -> bool {
        let Some(secs) = self.expires_in else {
            return false;
        };
        self.issued_at
            .clock
            .checked_add(Duration::from_secs(secs))
            .is_some_and(|at| clock::Instant::now() >= at)
    }

    /// How long the token remains valid after `now`: `None` if its expiry is
    /// unknown, zero if it has expired.
    pub fn remaining_at(&self, now: Instant) -> Option<Duration> {
        self.expires_in?;
        match self.expires_at() {
            Some(at) => Some(at.saturating_duration_since(now)),
            None => Some(Duration::from_secs(u64::MAX)),
        }
    }
}

impl TryFrom<&[u8]> for Token {
    type Error = ParseError;

    /// Parses a JSON token response, taking "issued at" as now.
    fn try_from(body: &[u8]) -> Result<Self, Self::Error> {
        Token::from_json(body, IssuedAt::now())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Extra members are shown by name only: a provider may put anything
        // in them, secrets included.
        let extra: Vec<&str> = self.extra.keys().map(String::as_str).collect();
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token)
            .field("extra", &extra)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

fn optional_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, ParseError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        // An empty refresh token is as good as none.
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::new(format!("`{name}` is not a string"))),
    }
}

/// Reads `expires_in` as the module docs describe.
pub(crate) fn parse_expires_in(value: &Value) -> Result<Option<u64>, ParseError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if n.as_i64().is_some() {
                // Negative integer: already expired.
                Ok(Some(0))
            } else {
                Ok(Some(saturating_secs(n.as_f64().unwrap_or(0.0))))
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(u) = s.parse::<u64>() {
                return Ok(Some(u));
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Some(saturating_secs(f))),
                _ => Err(ParseError::new(
                    "`expires_in` is a string that is not a number",
                )),
            }
        }
        _ => Err(ParseError::new(
            "`expires_in` is neither a number nor a numeric string",
        )),
    }
}

fn saturating_secs(f: f64) -> u64 {
    if f.is_nan() || f <= 0.0 {
        0
    } else if f >= u64::MAX as f64 {
        u64::MAX
    } else {
        f as u64
    }
}

pub(crate) fn form_to_map(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Token, ParseError> {
        Token::try_from(body.as_bytes())
    }

    #[test]
    fn rfc6749_example_response() {
        // RFC 6749 §5.1.
        let t = parse(
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example",
                "expires_in":3600,"refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA",
                "example_parameter":"example_value"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token().expose_secret(), "2YotnFZFEjr1zCsicMWpAA");
        assert_eq!(t.token_type(), &TokenType::Other("example".into()));
        assert_eq!(t.expires_in(), Some(Duration::from_secs(3600)));
        assert_eq!(
            t.refresh_token().unwrap().expose_secret(),
            "tGzv3JOkF0XG5Qx2TlKWIA"
        );
        assert_eq!(t.scope(), None);
        assert_eq!(t.extra().len(), 1);
        assert_eq!(t.extra()["example_parameter"], "example_value");
    }

    #[test]
    fn token_type_is_case_insensitive() {
        for tt in ["bearer", "Bearer", "BEARER", "bEaReR"] {
            let t = parse(&format!(r#"{{"access_token":"a","token_type":"{tt}"}}"#)).unwrap();
            assert_eq!(t.token_type(), &TokenType::Bearer, "{tt}");
            assert!(t.token_type().is_bearer());
        }
        let t = parse(r#"{"access_token":"a","token_type":"DPoP"}"#).unwrap();
        assert_eq!(t.token_type().as_str(), "DPoP");
        assert!(!t.token_type().is_bearer());
        let t = parse(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.token_type(), &TokenType::Bearer);
    }

    #[test]
    fn expires_in_variants() {
        let cases: &[(&str, Option<u64>)] = &[
            ("3600", Some(3600)),
            ("\"3599\"", Some(3599)),
            ("\" 42 \"", Some(42)),
            ("3599.7", Some(3599)),
            ("\"12.5\"", Some(12)),
            ("null", None),
            ("\"\"", None),
            ("0", Some(0)),
            ("-5", Some(0)),
            ("\"-5\"", Some(0)),
            ("-1.5", Some(0)),
            ("1e30", Some(u64::MAX)),
            ("18446744073709551615", Some(u64::MAX)),
            ("184467440737095516150", Some(u64::MAX)),
            ("-184467440737095516150", Some(0)),
        ];
        for (raw, want) in cases {
            let t = parse(&format!(
                r#"{{"access_token":"a","token_type":"Bearer","expires_in":{raw}}}"#
            ))
            .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(t.expires_in().map(|d| d.as_secs()), *want, "{raw}");
            // Expiry arithmetic never panics.
            let _ = (
                t.expires_at(),
                t.expires_at_system_time(),
                t.is_expired(),
                t.remaining_at(Instant::now()),
            );
        }
        let t = parse(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.expires_in(), None);
    }

    #[test]
    fn expires_in_rejected() {
        for raw in ["\"abc\"", "true", "{}", "[1]", "\"NaN\"", "\"inf\""] {
            let err = parse(&format!(r#"{{"access_token":"a","expires_in":{raw}}}"#)).unwrap_err();
            assert!(err.reason().contains("expires_in"), "{raw}: {err}");
        }
    }

    #[test]
    fn expiry_arithmetic() {
        let issued = IssuedAt::now();
        let t = Token::new("a", TokenType::Bearer)
            .with_expires_in(Duration::from_secs(60))
            .with_issued_at(issued);
        let at = issued.instant() + Duration::from_secs(60);
        assert_eq!(t.expires_at(), Some(at));
        assert!(!t.is_expired_at(at - Duration::from_millis(1)));
        assert!(t.is_expired_at(at));
        assert_eq!(
            t.remaining_at(issued.instant() + Duration::from_secs(15)),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            t.remaining_at(at + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            t.expires_at_system_time(),
            Some(issued.system_time() + Duration::from_secs(60))
        );

        let zero = Token::new("a", TokenType::Bearer).with_expires_in(Duration::ZERO);
        assert!(zero.is_expired());

        let huge = parse(r#"{"access_token":"a","expires_in":1e30}"#).unwrap();
        assert!(!huge.is_expired());
        assert_eq!(huge.expires_at(), None);
        assert_eq!(
            huge.remaining_at(Instant::now()),
            Some(Duration::from_secs(u64::MAX))
        );

        let unknown = Token::new("a", TokenType::Bearer);
        assert!(!unknown.is_expired());
        assert_eq!(unknown.remaining_at(Instant::now()), None);
    }

    #[test]
    fn missing_or_bad_access_token() {
        assert_eq!(
            parse(r#"{"token_type":"Bearer"}"#).unwrap_err().reason(),
            "`access_token` is missing"
        );
        assert_eq!(
            parse(r#"{"access_token":""}"#).unwrap_err().reason(),
            "`access_token` is empty"
        );
        let err = parse(r#"{"access_token":12345678}"#).unwrap_err();
        assert_eq!(err.reason(), "`access_token` is not a string");
        assert!(!err.to_string().contains("12345678"));
        assert!(parse("[]").unwrap_err().reason().contains("not an object"));
        assert!(parse("<html>")
            .unwrap_err()
            .reason()
            .contains("not valid JSON"));
        assert!(parse("").unwrap_err().reason().contains("not valid JSON"));
        assert!(parse(r#"{"error":"invalid_grant"}"#)
            .unwrap_err()
            .reason()
            .contains("error"));
    }

    #[test]
    fn scope_id_token_and_refresh_token() {
        let t = parse(
            r#"{"access_token":"a","scope":["read","write"],"id_token":"eyJ.x.y","refresh_token":""}"#,
        )
        .unwrap();
        assert_eq!(t.scope(), Some("read write"));
        assert_eq!(t.id_token().unwrap().expose_secret(), "eyJ.x.y");
        assert!(t.refresh_token().is_none(), "empty refresh token is none");
        assert!(t.extra().is_empty());
        assert!(parse(r#"{"access_token":"a","scope":5}"#).is_err());
        assert!(parse(r#"{"access_token":"a","scope":[5]}"#).is_err());
        assert!(parse(r#"{"access_token":"a","refresh_token":5}"#).is_err());
    }

    #[test]
    fn form_encoded_response() {
        let t = Token::from_form(
            b"access_token=abc%2Bdef&token_type=bearer&expires_in=3600&scope=user%2Crepo",
            IssuedAt::now(),
        )
        .unwrap();
        assert_eq!(t.access_token().expose_secret(), "abc+def");
        assert_eq!(t.token_type(), &TokenType::Bearer);
        assert_eq!(t.expires_in(), Some(Duration::from_secs(3600)));
        assert_eq!(t.scope(), Some("user,repo"));
    }

    #[test]
    fn debug_hides_secrets() {
        let t = parse(
            r#"{"access_token":"AT-secret","refresh_token":"RT-secret","id_token":"ID-secret",
                "token_type":"Bearer","custom":"X-secret"}"#,
        )
        .unwrap();
        let shown = format!("{t:?} {t:#?}");
        for s in ["AT-secret", "RT-secret", "ID-secret", "X-secret"] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        assert!(shown.contains("custom"));
    }

    #[test]
    fn issued_at_from_system_time() {
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let i = IssuedAt::from_system_time(an_hour_ago);
        let age = i.instant().elapsed();
        assert!(age >= Duration::from_secs(3600), "{age:?}");
        assert_eq!(i.system_time(), an_hour_ago);
        let future = IssuedAt::from_system_time(SystemTime::now() + Duration::from_secs(3600));
        assert!(future.instant() <= Instant::now());
        // Issued in the future: suspect, as old as can be, so expired.
        let a_century = Duration::from_secs(100 * 365 * 86_400);
        assert!(
            future.instant().elapsed() > a_century,
            "{:?}",
            future.instant().elapsed()
        );
        // Far past: never panics.
        let _ = IssuedAt::from_system_time(SystemTime::UNIX_EPOCH);
    }
}
