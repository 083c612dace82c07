//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1) and RFC 6750 §3 bearer
//! errors.
//!
//! The layer reads them on a 401 to decide whether a new token can help:
//! a `Bearer` challenge with `error="invalid_token"` or no error, or no
//! challenge at all → refetch and resend once (unless new tokens were
//! refused lately too: ARCHITECTURE.md, invariant 6); `insufficient_scope`
//! or `invalid_request` → a new token of the same grant will not help;
//! challenges of other schemes only (`Basic realm=…`) → not a refusal of our
//! token. In those two cases the response is returned as it is.
//!
//! The parser takes the header as servers really send it: several challenges
//! in one header, quoted strings with commas and `\` escapes, `token68`
//! credentials, odd spacing and case. It never panics and never allocates
//! more than the header's size.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::challenge::{parse, BearerError};
//!
//! let header = r#"Basic realm="legacy", Bearer realm="api, v2", error="insufficient_scope", scope="orders:write \"admin\"""#;
//! let challenges = parse(header);
//! assert_eq!(challenges.len(), 2);
//! assert_eq!(challenges[1].scheme(), "Bearer");
//! assert_eq!(challenges[1].param("realm"), Some("api, v2"));
//! assert_eq!(challenges[1].param("scope"), Some(r#"orders:write "admin""#));
//! let bearer = tower_oauth2::challenge::bearer_error([header]);
//! assert_eq!(bearer, Some(BearerError::InsufficientScope));
//! ```

use std::fmt;

/// One challenge: an auth scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The auth scheme as sent (`Bearer`, `Basic`, `DPoP` …).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is `Bearer` (case-insensitively).
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }

    /// Whether the scheme is `DPoP` (case-insensitively), RFC 9449 §7.1.
    pub fn is_dpop(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("dpop")
    }

    /// A parameter's value (name compared case-insensitively), unquoted.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `token68` form, if the challenge used it instead of parameters.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }
}

/// The `error` of an RFC 6750 bearer challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// `invalid_token`: expired, revoked, malformed: a new token may help.
    InvalidToken,
    /// `insufficient_scope`: the token lacks a scope; a new one of the same
    /// grant will not help.
    InsufficientScope,
    /// `invalid_request`: the request itself is malformed.
    InvalidRequest,
    /// Any other code.
    Other(String),
}

impl BearerError {
    fn parse(s: &str) -> Self {
        match s {
            "invalid_token" => BearerError::InvalidToken,
            "insufficient_scope" => BearerError::InsufficientScope,
            "invalid_request" => BearerError::InvalidRequest,
            other => BearerError::Other(crate::error::sanitize(other, 100)),
        }
    }

    /// The code as sent (another code as sanitized: control characters and
    /// runs of spaces folded, at most 100 characters).
    pub fn as_str(&self) -> &str {
        match self {
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
            BearerError::InvalidRequest => "invalid_request",
            BearerError::Other(code) => code,
        }
    }
}

impl fmt::Display for BearerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` of the first `Bearer` challenge found in these header values,
/// if any.
pub fn bearer_error<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<BearerError> {
    headers
        .into_iter()
        .flat_map(parse)
        .find(Challenge::is_bearer)
        .and_then(|c| c.param("error").map(BearerError::parse))
}

/// Whether a response refuses the token it carried at all: a 401, or gRPC's
/// UNAUTHENTICATED (status 16, usually in a trailers-only HTTP 200). Any
/// other answer is an answer for the token. This runs on every response.
#[inline]
pub(crate) fn is_refusal(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    // A `HeaderName` made once: looking up by `&str` would parse (and
    // lowercase) the name on every response.
    static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    status == http::StatusCode::UNAUTHORIZED
        || headers
            .get(&GRPC_STATUS)
            .is_some_and(|v| v.as_bytes() == b"16")
}

/// What a refusal ([`is_refusal`]) says about the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    /// A 401 whose bearer challenge says `insufficient_scope` or
    /// `invalid_request`: a new token of the same grant cannot fix it.
    NotFixable,
    /// A 401 whose challenges name other schemes only (`Basic realm=…`):
    /// it asks for credentials of another kind, not for a new token.
    OtherScheme,
    /// The token was refused in a way a new one may fix: a 401 with a
    /// `Bearer` challenge (its `error`, if any) or a `DPoP` one, or with no
    /// challenge at all; or gRPC's UNAUTHENTICATED.
    Token(Option<BearerError>),
}

/// What the refusal `status` and `headers` says (every `WWW-Authenticate`
/// header, every challenge in each).
pub(crate) fn refusal_kind(status: http::StatusCode, headers: &http::HeaderMap) -> RefusalKind {
    if status != http::StatusCode::UNAUTHORIZED {
        return RefusalKind::Token(None);
    }
    judge_challenges(headers, |error| match error {
        Some(BearerError::InsufficientScope | BearerError::InvalidRequest) => {
            RefusalKind::NotFixable
        }
        error => RefusalKind::Token(error),
    })
}

/// The kind of refusal the `WWW-Authenticate` challenges in `headers`
/// make: no challenge at all refuses the token; a `Bearer` or `DPoP` one
/// (RFC 9449 §7.1: it carries the same errors) is what `ours` says of its
/// `error`; only other schemes ask for other credentials.
fn judge_challenges(
    headers: &http::HeaderMap,
    ours: impl FnOnce(Option<BearerError>) -> RefusalKind,
) -> RefusalKind {
    let challenges: Vec<Challenge> = headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse)
        .collect();
    let bearer_or_dpop = |c: &&Challenge| c.is_bearer() || c.is_dpop();
    if let Some(challenge) = challenges.iter().find(bearer_or_dpop) {
        return ours(challenge.param("error").map(BearerError::parse));
    }
    if challenges.is_empty() {
        RefusalKind::Token(None)
    } else {
        RefusalKind::OtherScheme
    }
}

/// What an answer with a status the user counts as a refusal
/// ([`crate::layer::AuthPolicy::refused_with`], a 403 say) says about the
/// token: with no challenge at all, or a `Bearer`/`DPoP` challenge whose
/// `error` is `invalid_token`, the token was refused; any other challenge
/// (RFC 6750 §3.1: a 403's is `insufficient_scope`) asks for something a
/// new token of the same grant cannot give, and other schemes ask for
/// other credentials.
pub(crate) fn listed_refusal_kind(headers: &http::HeaderMap) -> RefusalKind {
    judge_challenges(headers, |error| match error {
        Some(BearerError::InvalidToken) => RefusalKind::Token(Some(BearerError::InvalidToken)),
        _ => RefusalKind::NotFixable,
    })
}

/// Whether a response asks for a DPoP nonce: a 401 with a `DPoP` challenge
/// whose `error` is `use_dpop_nonce` (RFC 9449 §9). Resending with the
/// server's `DPoP-Nonce` fixes it; a new token does not.
pub fn asks_dpop_nonce(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    status == http::StatusCode::UNAUTHORIZED
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse)
            .any(|c| c.is_dpop() && c.param("error") == Some("use_dpop_nonce"))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        // tchars are ASCII, so this slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            self.i += 1;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        (!t.is_empty()).then(|| t.to_owned())
    }
    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    /// Looks ahead: is the next thing `token BWS "="` (a parameter) rather
    /// than the scheme of the next challenge?
    fn at_param(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while matches!(self.s.get(j), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            j += 1;
        }
        if self.s.get(j) != Some(&b'=') {
            return false;
        }
        // `token68` may end in '=': a param has a value after the '='.
        let mut k = j;
        while self.s.get(k) == Some(&b'=') {
            k += 1;
        }
        k == j + 1
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges.
///
/// Malformed parts are skipped, never fatal: what can be read is returned.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        c.skip_ws_and_commas();
        if c.peek().is_none() {
            break;
        }
        let scheme = c.token().to_owned();
        if scheme.is_empty() {
            // Not a token: skip one byte and resynchronise.
            c.i += 1;
            continue;
        }
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        c.skip_ws();
        if !c.at_param() && c.peek().is_some_and(|b| b != b',') {
            challenge.token68 = c.token68();
        }
        loop {
            c.skip_ws_and_commas();
            if !c.at_param() {
                break;
            }
            let name = c.token().to_owned();
            c.skip_ws();
            c.i += 1; // '='
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.quoted()
            } else {
                c.token().to_owned()
            };
            challenge.params.push((name, value));
        }
        out.push(challenge);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, v: &str) -> (String, String) {
        (name.into(), v.into())
    }

    #[test]
    fn a_listed_status_refuses_the_token_with_no_challenge_or_invalid_token_only() {
        let kind = |challenges: &[&'static str]| {
            let mut headers = http::HeaderMap::new();
            for c in challenges {
                headers.append(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(c),
                );
            }
            listed_refusal_kind(&headers)
        };
        assert_eq!(kind(&[]), RefusalKind::Token(None));
        let invalid = Some(BearerError::InvalidToken);
        assert_eq!(
            kind(&[r#"Bearer error="invalid_token""#]),
            RefusalKind::Token(invalid.clone())
        );
        assert_eq!(
            kind(&[r#"DPoP algs="ES256", error="invalid_token""#]),
            RefusalKind::Token(invalid)
        );
        // RFC 6750 §3.1: a 403's challenge says what a new token cannot fix.
        for never in [
            r#"Bearer error="insufficient_scope", scope="orders:write""#,
            r#"Bearer realm="api""#,
            r#"Bearer error="invalid_request""#,
        ] {
            assert_eq!(kind(&[never]), RefusalKind::NotFixable, "{never}");
        }
        assert_eq!(
            kind(&[
                r#"Basic realm="admin""#,
                r#"Bearer error="insufficient_scope""#
            ]),
            RefusalKind::NotFixable
        );
        assert_eq!(kind(&[r#"Basic realm="admin""#]), RefusalKind::OtherScheme);
    }

    #[test]
    fn rfc6750_examples() {
        let c = parse(r#"Bearer realm="example""#);
        assert_eq!(
            c,
            [Challenge {
                scheme: "Bearer".into(),
                token68: None,
                params: vec![p("realm", "example")]
            }]
        );
        let c = parse(
            r#"Bearer realm="example",
                   error="invalid_token",
                   error_description="The access token expired""#,
        );
        assert_eq!(
            c[0].params,
            [
                p("realm", "example"),
                p("error", "invalid_token"),
                p("error_description", "The access token expired")
            ]
        );
    }

    #[test]
    fn several_challenges_commas_and_escapes() {
        let c = parse(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple", Bearer error="insufficient_scope",scope="a, b""#,
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].scheme(), "Newauth");
        assert_eq!(
            c[0].params,
            [
                p("realm", "apps"),
                p("type", "1"),
                p("title", r#"Login to "apps""#)
            ]
        );
        assert_eq!(c[1].params, [p("realm", "simple")]);
        assert!(c[2].is_bearer());
        assert_eq!(c[2].param("ERROR"), Some("insufficient_scope"));
        assert_eq!(c[2].param("scope"), Some("a, b"));
    }

    #[test]
    fn token68_and_bare_schemes() {
        let c = parse("Negotiate abc+/def==, Bearer, DPoP algs=\"ES256\"");
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].token68(), Some("abc+/def=="));
        assert!(c[1].is_bearer() && c[1].params.is_empty() && c[1].token68().is_none());
        assert_eq!(c[2].param("algs"), Some("ES256"));
        assert_eq!(parse("bearer")[0].scheme(), "bearer");
    }

    #[test]
    fn malformed_input_never_panics() {
        for h in [
            "",
            ",,,",
            "=",
            "Bearer =",
            "Bearer realm=",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\\",
            "\"quoted\" Bearer",
            "Bearer error = \"invalid_token\"",
            "Bearer  ,  error=x",
            "é Bearer error=x",
            "Bearer a=b=c",
            "Bearer ==== ,",
        ] {
            let _ = parse(h);
        }
        assert_eq!(
            parse("Bearer error = \"invalid_token\"")[0].param("error"),
            Some("invalid_token")
        );
        assert_eq!(
            parse("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
        assert_eq!(
            bearer_error(["é Bearer error=x"]),
            Some(BearerError::Other("x".into()))
        );
    }

    fn refusal_of(status: u16, challenges: &[&'static str]) -> RefusalKind {
        let mut headers = http::HeaderMap::new();
        for c in challenges {
            headers.append("www-authenticate", http::HeaderValue::from_static(c));
        }
        refusal_kind(http::StatusCode::from_u16(status).unwrap(), &headers)
    }

    #[test]
    fn a_refusal_is_ours_unless_every_challenge_names_another_scheme() {
        use BearerError::*;
        let cases: [(&[&str], RefusalKind); 12] = [
            (&[], RefusalKind::Token(None)),
            (&[""], RefusalKind::Token(None)),
            (
                &[r#"Bearer error="invalid_token""#],
                RefusalKind::Token(Some(InvalidToken)),
            ),
            (&[r#"Bearer realm="x""#], RefusalKind::Token(None)),
            (&[r#"Basic realm="x""#], RefusalKind::OtherScheme),
            (
                &[r#"Basic realm="x", Negotiate"#, "Digest nonce=1"],
                RefusalKind::OtherScheme,
            ),
            (
                &[r#"Basic realm="x""#, r#"Negotiate, bearer error="x y""#],
                RefusalKind::Token(Some(Other("x y".into()))),
            ),
            (
                &[r#"Basic realm="x", DPoP algs="ES256""#],
                RefusalKind::Token(None),
            ),
            (
                &[r#"Basic realm="x""#, r#"Bearer error="insufficient_scope""#],
                RefusalKind::NotFixable,
            ),
            (&["Bearer error=invalid_request"], RefusalKind::NotFixable),
            // RFC 9449 §7.1: DPoP challenges carry the same errors.
            (
                &[r#"DPoP algs="ES256", error="insufficient_scope""#],
                RefusalKind::NotFixable,
            ),
            (
                &[r#"DPoP error="invalid_token", algs="ES256""#],
                RefusalKind::Token(Some(BearerError::InvalidToken)),
            ),
        ];
        for (challenges, want) in cases {
            assert_eq!(refusal_of(401, challenges), want, "{challenges:?}");
        }
        // gRPC's UNAUTHENTICATED carries no challenge to read.
        assert_eq!(
            refusal_of(200, &[r#"Basic realm="x""#]),
            RefusalKind::Token(None)
        );
    }

    #[test]
    fn only_a_401_or_grpc_unauthenticated_is_a_refusal() {
        let grpc = |status: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-status", http::HeaderValue::from_static(status));
            headers
        };
        let empty = http::HeaderMap::new();
        assert!(is_refusal(http::StatusCode::UNAUTHORIZED, &empty));
        assert!(is_refusal(http::StatusCode::OK, &grpc("16")));
        assert!(!is_refusal(http::StatusCode::OK, &grpc("7")));
        assert!(!is_refusal(http::StatusCode::OK, &empty));
        assert!(!is_refusal(http::StatusCode::FORBIDDEN, &empty));
    }

    #[test]
    fn a_bearer_error_shows_as_its_code() {
        assert_eq!(BearerError::InvalidToken.to_string(), "invalid_token");
        assert_eq!(
            BearerError::InsufficientScope.as_str(),
            "insufficient_scope"
        );
        assert_eq!(BearerError::InvalidRequest.as_str(), "invalid_request");
        let other = bearer_error(["Bearer error=\"x\ty\""]).unwrap();
        assert_eq!(other.to_string(), "x y");
    }

    #[test]
    fn bearer_error_across_headers() {
        assert_eq!(
            bearer_error(["Basic realm=x", "Bearer error=\"invalid_token\""]),
            Some(BearerError::InvalidToken)
        );
        assert_eq!(bearer_error(["Bearer realm=x"]), None);
        assert_eq!(bearer_error(["Basic realm=x"]), None);
        assert_eq!(
            bearer_error(["Bearer error=invalid_request"]),
            Some(BearerError::InvalidRequest)
        );
        assert_eq!(bearer_error(Vec::<&str>::new()), None);
    }

    #[test]
    fn use_dpop_nonce_is_read_from_dpop_challenges_of_401s_only() {
        let headers = |values: &[&'static str]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                map.append(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(v),
                );
            }
            map
        };
        let asks = headers(&[
            r#"Bearer realm="x""#,
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        ]);
        assert!(asks_dpop_nonce(http::StatusCode::UNAUTHORIZED, &asks));
        assert!(!asks_dpop_nonce(http::StatusCode::BAD_REQUEST, &asks));
        let bearer = headers(&[r#"Bearer error="use_dpop_nonce""#]);
        assert!(!asks_dpop_nonce(http::StatusCode::UNAUTHORIZED, &bearer));
        let other = headers(&[r#"DPoP error="invalid_dpop_proof""#]);
        assert!(!asks_dpop_nonce(http::StatusCode::UNAUTHORIZED, &other));
    }
}
