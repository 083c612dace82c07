//! Sending token requests and reading the answers.
//!
//! [`TokenEndpoint`] sends a [`TokenRequest`] over any tower HTTP service
//! (a hyper-util client, a test `service_fn`, your own stack with retries or
//! tracing), reads at most [`TokenEndpoint::max_body_bytes`] of the answer
//! within [`TokenEndpoint::timeout`], and returns a [`Token`] or a typed
//! [`Error`]. [`parse_token_response`] is the pure part, for callers with
//! their own transport.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::service_fn;
//! use tower_oauth2::endpoint::TokenEndpoint;
//! use tower_oauth2::request::{ClientAuth, TokenRequest, TokenUrl};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any `Service<http::Request<Full<Bytes>>>` will do; this one answers locally.
//! let http = service_fn(|_req: http::Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
//!         br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
//!     ))))
//! });
//! let endpoint = TokenEndpoint::new(
//!     http,
//!     TokenUrl::new("https://as.example.com/token")?,
//!     ClientAuth::client_secret_basic("svc-a", "secret"),
//! );
//! let token = endpoint.request(&TokenRequest::client_credentials()).await?;
//! assert_eq!(token.access_token().expose_secret(), "at-1");
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::error::{excerpt, redact, Error, ErrorCode, ErrorResponse};
use crate::exchange::{self, retry_after, Limits};
use crate::proof::{ProofKey, ProofKeys};
use crate::request::{ClientAuth, RevocationUrl, TokenRequest, TokenUrl};
use crate::secret::SecretString;
use crate::token::{form_to_map, IssuedAt, ParseError, Token};
use crate::transport::HttpClient;

pub use crate::exchange::{DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT};

/// A token endpoint reached through the HTTP service `S`.
#[derive(Clone, Debug)]
pub struct TokenEndpoint<S> {
    service: S,
    url: TokenUrl,
    client: ClientAuth,
    limits: Limits,
    revocation: Option<RevocationUrl>,
    /// The keys token requests prove possession of, if any (the key now,
    /// which may be rotated): set by DPoP's `TokenEndpoint::dpop`; a cache
    /// built on this endpoint, and its transports, prove them on resource
    /// requests too.
    pub(crate) proof_key: Option<ProofKeys>,
}

impl<S> TokenEndpoint<S> {
    /// The endpoint at `url`, authenticating as `client`, over `service`.
    pub fn new(service: S, url: TokenUrl, client: ClientAuth) -> Self {
        TokenEndpoint {
            service,
            url,
            client,
            limits: Limits::default(),
            revocation: None,
            proof_key: None,
        }
    }

    crate::exchange::limits_options!("one token request");

    /// Time allowed for one exchange ([`TokenEndpoint::timeout`]).
    pub(crate) fn exchange_timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// The token URL.
    pub fn url(&self) -> &TokenUrl {
        &self.url
    }

    /// The client authentication.
    pub fn client(&self) -> &ClientAuth {
        &self.client
    }

    /// The server's revocation endpoint (RFC 7009), where
    /// [`TokenEndpoint::revoke`] and [`crate::TokenCache::revoke`] send
    /// tokens to revoke, with this endpoint's client authentication, timeout
    /// and size limit.
    pub fn revocation_url(mut self, url: RevocationUrl) -> Self {
        self.revocation = Some(url);
        self
    }

    /// The revocation endpoint, if one is set.
    pub fn revocation_endpoint(&self) -> Option<&RevocationUrl> {
        self.revocation.as_ref()
    }

    /// The keys token requests prove possession of, if any.
    pub(crate) fn proof_key(&self) -> Option<&ProofKeys> {
        self.proof_key.as_ref()
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// The HTTP service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The HTTP service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// Gives back the HTTP service.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S: HttpClient> TokenEndpoint<S> {
    /// Sends `request` and returns the issued token.
    ///
    /// The token's `issued_at` is taken just before sending. For a
    /// `refresh_token` grant whose answer carries no refresh token, the
    /// token keeps the one that was sent (RFC 6749 §6: the old one stays
    /// valid); when the server rotates it, the token carries the new one.
    ///
    /// The future owns what it needs (a clone of the service and of the
    /// request), so it borrows nothing and is `Send` whenever the service,
    /// its future and its body are, whether or not the service is `Sync`.
    ///
    /// A client whose credential is read from a file or callback
    /// ([`ClientAuth::reads_credential`]) reads it in the future, and after
    /// an `invalid_client` answer (RFC 6749 §5.2, which may have raced a
    /// rotation) reads it again and sends the request once more, never
    /// more often. Other clients never repeat a refused request.
    pub fn request(&self, request: &TokenRequest) -> impl Future<Output = Result<Token, Error>> {
        let key = self.proof_key.as_ref().map(ProofKeys::for_token_request);
        self.request_proving(request, key)
    }

    /// [`TokenEndpoint::request`] proving `key` (a cache's fetch chooses
    /// it once, and names the token with it), if the endpoint proves keys.
    pub(crate) fn request_proving(
        &self,
        request: &TokenRequest,
        key: Option<ProofKey>,
    ) -> impl Future<Output = Result<Token, Error>> {
        // Built now unless the credential must be read (perhaps awaited).
        let built = (!self.client.reads_credential())
            .then(|| request.build_signed(&self.client, &self.url));
        let span = tracing::debug_span!(
            "oauth2.token_request",
            grant_type = request.grant_type(),
            token_url = %self.url,
            client_id = self.client.client_id(),
            status = tracing::field::Empty,
        );
        let service = self.service.clone();
        let sent = Sent {
            client: self.client.clone(),
            url: self.url.clone(),
            request: request.clone(),
            limits: self.limits,
            proof_key: key,
        };
        async move {
            let result = match built {
                Some(built) => sent.exchange(service, built).await,
                None => sent.read_exchange_and_retry(service).await,
            };
            match result {
                Ok(token) => {
                    tracing::debug!(expires_in = ?token.expires_in(), "token issued");
                    Ok(keep_sent_refresh_token(token, &sent.request))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "token request failed");
                    Err(e)
                }
            }
        }
        .instrument(span)
    }
}

/// A built token request, with the assertions signed for it.
type Outgoing = (
    http::Request<http_body_util::Full<bytes::Bytes>>,
    Vec<SecretString>,
);

/// What a token request future owns besides the service (which need not
/// be `Sync`, so it is never borrowed across an `await`): the client, the
/// grant.
#[derive(Clone)]
struct Sent {
    client: ClientAuth,
    url: TokenUrl,
    request: TokenRequest,
    limits: Limits,
    proof_key: Option<ProofKey>,
}

impl Sent {
    /// [`Sent::read_and_exchange`], and once more if the answer is
    /// `invalid_client`: the credential may have been rotated between the
    /// read and the server's check.
    async fn read_exchange_and_retry<S: HttpClient>(&self, service: S) -> Result<Token, Error> {
        let result = self.read_and_exchange(service.clone()).await;
        let refusal = result.as_ref().err().and_then(Error::oauth_error);
        if !refusal.is_some_and(|r| r.error() == &crate::error::ErrorCode::InvalidClient) {
            return result;
        }
        tracing::debug!(
            "invalid_client with a credential read from a file or callback: \
             reading it again and sending the request once more"
        );
        self.read_and_exchange(service).await
    }

    /// One exchange of `built` (with a proof if the endpoint has a key).
    async fn exchange<S: HttpClient>(
        &self,
        service: S,
        built: Result<Outgoing, Error>,
    ) -> Result<Token, Error> {
        if let Some(key) = self.proof_key.clone() {
            return self.with_proofs(service, built, &key).await;
        }
        self.once(service, built?, |_| {}).await
    }

    /// Reads the client's credential from its file or callback, then one
    /// exchange with it (the secret it read scrubbed from any excerpt).
    async fn read_and_exchange<S: HttpClient>(&self, service: S) -> Result<Token, Error> {
        let sent = Sent {
            client: self.client.read_credential(self.limits.timeout).await?,
            ..self.clone()
        };
        let built = sent.request.build_signed(&sent.client, &sent.url);
        sent.exchange(service, built).await
    }

    /// One exchange of `http_request` (with the assertions signed for it);
    /// `answered` sees the answer's headers.
    async fn once<S: HttpClient>(
        &self,
        service: S,
        (http_request, signed): Outgoing,
        answered: impl FnOnce(&HeaderMap),
    ) -> Result<Token, Error> {
        let issued_at = IssuedAt::now();
        // Every answer's body is read but a redirect's: not read, not
        // followed, the credentials stay here.
        let answer = exchange::send(service, http_request, self.limits, |_| true).await;
        answer.and_then(|answer| {
            tracing::Span::current().record("status", answer.status.as_u16());
            answered(&answer.headers);
            let secrets = self.request.secrets(&self.client);
            let secrets: Vec<&str> = (secrets.iter().map(|s| s.as_ref()))
                .chain(signed.iter().map(SecretString::expose_secret))
                .collect();
            parse(
                answer.status,
                &answer.headers,
                &answer.body?,
                issued_at,
                &secrets,
            )
        })
    }

    /// The request built as `built`, with a proof; once more with a new
    /// proof (and a new client assertion) if the server answers
    /// `use_dpop_nonce` and a nonce other than the one the proof carried
    /// is known now. Every answer's nonce, a token's included, is kept for
    /// the token endpoint's origin, so the next fetch sends it at once.
    async fn with_proofs<S: HttpClient>(
        &self,
        service: S,
        built: Result<Outgoing, Error>,
        key: &ProofKey,
    ) -> Result<Token, Error> {
        let (result, other_nonce) = self.with_proof(service.clone(), built?, key).await;
        let asks_nonce = result
            .as_ref()
            .err()
            .and_then(Error::oauth_error)
            .is_some_and(|r| r.error().as_str() == "use_dpop_nonce");
        if !(asks_nonce && other_nonce) {
            return result;
        }
        tracing::debug!("the token endpoint asked for a DPoP nonce; sending the request once more");
        let built = self.request.build_signed(&self.client, &self.url)?;
        self.with_proof(service, built, key).await.0
    }

    /// One exchange of `built` with a fresh proof; also whether, after its
    /// answer, a proof would carry a nonce other than the one this one did.
    async fn with_proof<S: HttpClient>(
        &self,
        service: S,
        mut built: Outgoing,
        key: &ProofKey,
    ) -> (Result<Token, Error>, bool) {
        let proof = key
            .prover()
            .prove_token_request(self.url.uri(), built.0.headers_mut());
        let sent = match proof {
            Ok(sent) => sent,
            Err(e) => return (Err(e), false),
        };
        let mut other_nonce = false;
        let result = self
            .once(service, built, |h| other_nonce = sent.learn_nonce(h))
            .await;
        (result, other_nonce)
    }
}

/// RFC 6749 §6: an answer to a `refresh_token` grant that carries no refresh
/// token leaves the one that was sent valid, so the token keeps it.
fn keep_sent_refresh_token(mut token: Token, request: &TokenRequest) -> Token {
    if token.refresh_token().is_none() {
        if let Some(sent) = request.sent_refresh_token() {
            token.set_refresh_token(Some(sent.clone()));
        }
    }
    token
}

/// Turns a token endpoint's answer into a token or a typed error.
///
/// - 3xx: [`crate::error::ErrorKind::Redirect`].
/// - 2xx: a JSON object (or a form-encoded body) parsed into a [`Token`];
///   an `error` member makes it an [`crate::error::ErrorKind::OAuth`] error
///   even with status 200; anything else unusable is
///   [`crate::error::ErrorKind::InvalidResponse`].
/// - 4xx/5xx: an RFC 6749 §5.2 body (`error`, or `error_code` as some servers
///   spell it) is an `OAuth` error; any other body is
///   [`crate::error::ErrorKind::HttpStatus`] with a short sanitized excerpt.
///   `Retry-After` is kept on either.
pub fn parse_token_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    issued_at: IssuedAt,
) -> Result<Token, Error> {
    parse(status, headers, body, issued_at, &[])
}

fn parse(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    issued_at: IssuedAt,
    secrets: &[&str],
) -> Result<Token, Error> {
    if status.is_redirection() {
        return Err(Error::redirect(status));
    }
    if !status.is_success() {
        return Err(error_answer(status, headers, body, secrets));
    }
    let map = parse_body(headers, body).map_err(|e| Error::invalid_response(status, e))?;
    if let Some(err) = error_response(&map, status, secrets) {
        return Err(Error::oauth(err));
    }
    Token::from_map(map, issued_at).map_err(|e| Error::invalid_response(status, e))
}

/// An error status's answer (4xx, 5xx) as a typed error: an RFC 6749 §5.2
/// body is an `OAuth` error, any other an `HttpStatus` error with a short
/// excerpt scrubbed of `secrets`; `Retry-After` is kept on either.
pub(crate) fn error_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let response = parse_body(headers, body)
        .ok()
        .and_then(|map| error_response(&map, status, secrets));
    let err = match response {
        Some(err) => Error::oauth(err),
        None => Error::http_status(status, excerpt(body, secrets)),
    };
    err.with_retry_after(retry_after(headers))
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/x-www-form-urlencoded" {
        return Ok(form_to_map(body));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::new("body is JSON but not an object")),
        Err(e) => {
            // Some old servers send a form body labelled text/plain.
            let text_plain = essence == "text/plain";
            let looks_like_form = !body.is_empty()
                && body.contains(&b'=')
                && !body.iter().any(|b| matches!(b, b'{' | b'<' | b' ' | b'\n'));
            if text_plain && looks_like_form {
                Ok(form_to_map(body))
            } else if body.is_empty() {
                Err(ParseError::new("body is empty"))
            } else {
                Err(ParseError::new(format!("body is not valid JSON ({e})")))
            }
        }
    }
}

fn error_response(
    map: &Map<String, Value>,
    status: StatusCode,
    secrets: &[&str],
) -> Option<ErrorResponse> {
    let code = match map.get("error").or_else(|| map.get("error_code")) {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) | None => return None,
        // `{"error": {...}}` and the like: still an error, of no known code.
        Some(_) => "unknown_error",
    };
    let text = |k: &str| match map.get(k) {
        Some(Value::String(s)) => Some(redact(s.clone(), secrets)),
        _ => None,
    };
    Some(ErrorResponse::new(
        ErrorCode::parse(&redact(code.to_owned(), secrets)),
        text("error_description").as_deref(),
        text("error_uri").as_deref(),
        status,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::token::TokenType;
    use http::header::RETRY_AFTER;
    use http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    fn run(status: u16, ct: &str, body: &str) -> Result<Token, Error> {
        parse(
            StatusCode::from_u16(status).unwrap(),
            &headers(ct),
            body.as_bytes(),
            IssuedAt::now(),
            &["client-s3cret"],
        )
    }

    #[test]
    fn success_json() {
        let t = run(
            200,
            "application/json;charset=UTF-8",
            r#"{"access_token":"a","token_type":"Bearer","expires_in":60}"#,
        )
        .unwrap();
        assert_eq!(t.token_type(), &TokenType::Bearer);
        assert_eq!(t.expires_in(), Some(Duration::from_secs(60)));
        // Content type is not required to be exact.
        assert!(run(200, "text/html", r#"{"access_token":"a"}"#).is_ok());
    }

    #[test]
    fn success_form() {
        let t = run(
            200,
            "application/x-www-form-urlencoded",
            "access_token=a%26b&token_type=bearer&scope=repo",
        )
        .unwrap();
        assert_eq!(t.access_token().expose_secret(), "a&b");
        assert_eq!(t.scope(), Some("repo"));
        let t = run(200, "text/plain", "access_token=xyz&token_type=bearer").unwrap();
        assert_eq!(t.access_token().expose_secret(), "xyz");
    }

    #[test]
    fn error_in_200_is_an_error() {
        let e = run(
            200,
            "application/json",
            r#"{"error":"invalid_grant","error_description":"expired"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OAuth);
        let r = e.oauth_error().unwrap();
        assert_eq!(
            (r.error(), r.error_description(), r.status()),
            (&ErrorCode::InvalidGrant, Some("expired"), StatusCode::OK)
        );
        // GitHub answers form-encoded errors with 200.
        let e = run(
            200,
            "application/x-www-form-urlencoded",
            "error=bad_verification_code&error_description=The+code+is+wrong",
        )
        .unwrap_err();
        assert_eq!(
            e.oauth_error().unwrap().error(),
            &ErrorCode::Other("bad_verification_code".into())
        );
    }

    #[test]
    fn rfc_error_responses() {
        let e = run(
            400,
            "application/json",
            r#"{"error":"invalid_scope","error_uri":"https://as/e"}"#,
        )
        .unwrap_err();
        let r = e.oauth_error().unwrap();
        assert_eq!(
            (r.error(), r.error_uri(), r.status()),
            (
                &ErrorCode::InvalidScope,
                Some("https://as/e"),
                StatusCode::BAD_REQUEST
            )
        );
        assert!(!e.is_retryable());
        // Seed 003 spells it `error_code`.
        let e = run(
            401,
            "application/json",
            r#"{"error_code":"invalid_client","error_description":"no"}"#,
        )
        .unwrap_err();
        assert_eq!(e.oauth_error().unwrap().error(), &ErrorCode::InvalidClient);
        let e = run(400, "application/json", r#"{"error":{"message":"nested"}}"#).unwrap_err();
        assert_eq!(e.oauth_error().unwrap().error().as_str(), "unknown_error");
    }

    #[test]
    fn echoed_secrets_are_redacted_from_error_fields() {
        let e = run(
            401,
            "application/json",
            r#"{"error":"invalid_client","error_description":"bad secret client-s3cret","error_uri":"https://as/e?s=client-s3cret"}"#,
        )
        .unwrap_err();
        let r = e.oauth_error().unwrap();
        assert_eq!(r.error_description(), Some("bad secret [redacted]"));
        assert_eq!(r.error_uri(), Some("https://as/e?s=[redacted]"));
        assert!(!format!("{e} {e:?}").contains("client-s3cret"));
    }

    #[test]
    fn html_error_page() {
        let e = run(
            502,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1>\n<p>client-s3cret</p></body></html>",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HttpStatus);
        assert_eq!(e.status(), Some(StatusCode::BAD_GATEWAY));
        assert!(e.is_retryable());
        let shown = e.to_string();
        assert_eq!(
            shown,
            "token endpoint answered 502 Bad Gateway with a body that is not an OAuth2 error: \
             \"<html><body><h1>502 Bad Gateway</h1> <p>[redacted]</p></body></html>\""
        );
        let e = run(500, "", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "token endpoint answered 500 Internal Server Error with an empty body"
        );
    }

    #[test]
    fn invalid_success_bodies() {
        for (body, reason) in [
            ("", "body is empty"),
            ("not json", "body is not valid JSON"),
            ("[1,2]", "body is JSON but not an object"),
            (r#"{"token_type":"Bearer"}"#, "`access_token` is missing"),
            (
                r#"{"access_token":"a","expires_in":"abc"}"#,
                "`expires_in` is a string",
            ),
        ] {
            let e = run(200, "application/json", body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{body}");
            assert!(e.to_string().contains(reason), "{body}: {e}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn redirects_are_errors() {
        let e = run(302, "", "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Redirect);
        assert!(e.to_string().contains("not followed"));
    }

    #[test]
    fn retry_after_header() {
        let mut h = headers("application/json");
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let e = parse(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            b"{}",
            IssuedAt::now(),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HttpStatus);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999999999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(86400)));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
