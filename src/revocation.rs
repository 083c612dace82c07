//! Token revocation (RFC 7009): telling the authorization server that a
//! token is no longer needed, so that it stops working before it expires.
//!
//! A [`TokenEndpoint`] with a revocation endpoint
//! ([`TokenEndpoint::revocation_url`], or the `revocation_endpoint` of
//! discovery metadata, which [`ProviderMetadata::endpoint`] carries over)
//! revokes one token with [`TokenEndpoint::revoke`]:
//! `POST token=…&token_type_hint=…` (RFC 7009 §2.1) with the client's
//! authentication exactly as its token requests send it, over the same
//! exchange (the endpoint's timeout and size limit; redirects are never
//! followed). [`TokenCache::revoke`] revokes everything a cache holds.
//!
//! RFC 7009 §2.2: a 200 means the token is revoked, or was not valid to begin
//! with (already revoked, expired, unknown): both are success, and the body
//! is not read. Any other answer is an [`Error`] for which
//! [`Error::is_revocation`] is true and whose kind is what went wrong:
//! [`ErrorKind::OAuth`](crate::ErrorKind::OAuth) with
//! [`ErrorCode::UnsupportedTokenType`](crate::error::ErrorCode::UnsupportedTokenType)
//! when the server does not revoke tokens of that type,
//! [`ErrorKind::HttpStatus`](crate::ErrorKind::HttpStatus) for a 503, which
//! [`Error::is_retryable`] and whose [`Error::retry_after`] is the server's
//! `Retry-After`, and so on. The token is never in an error or a log line.
//!
//! [`ProviderMetadata::endpoint`]: crate::discovery::ProviderMetadata::endpoint
//! [`TokenCache::revoke`]: crate::TokenCache::revoke
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower_oauth2::revocation::{RevocationUrl, TokenTypeHint};
//! use tower_oauth2::{ClientAuth, SecretString, TokenEndpoint, TokenUrl};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any `Service<http::Request<Full<Bytes>>>` will do; this one checks the
//! // request and answers 200 as RFC 7009 §2.2 says.
//! let http = tower::service_fn(|req: http::Request<Full<Bytes>>| async move {
//!     assert_eq!(req.uri(), "https://as.example.com/revoke");
//!     assert_eq!(req.headers()["authorization"], "Basic c3ZjLWE6c2VjcmV0");
//!     let body = req.into_body().collect().await?.to_bytes();
//!     assert_eq!(body, "token=rt-1&token_type_hint=refresh_token");
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
//! });
//! let endpoint = TokenEndpoint::new(
//!     http,
//!     TokenUrl::new("https://as.example.com/token")?,
//!     ClientAuth::client_secret_basic("svc-a", "secret"),
//! )
//! .revocation_url(RevocationUrl::new("https://as.example.com/revoke")?);
//! let refresh_token = SecretString::from("rt-1");
//! endpoint
//!     .revoke(&refresh_token, Some(TokenTypeHint::RefreshToken))
//!     .await?;
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("docs/revocation.md")]

use std::future::Future;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use tracing::Instrument;

use crate::endpoint::{error_answer, TokenEndpoint};
use crate::error::Error;
use crate::exchange;
use crate::request::{BodyEncoding, ClientAuth, TokenUrl};
use crate::secret::SecretString;
use crate::transport::HttpClient;

pub use crate::request::RevocationUrl;

/// What kind of token is being revoked: the `token_type_hint` of RFC 7009
/// §2.1, which lets the server look in the right place first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// The hint as sent (`access_token`, `refresh_token`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenTypeHint::AccessToken => "access_token",
            TokenTypeHint::RefreshToken => "refresh_token",
        }
    }

    /// The token, as an error names it.
    fn the_token(hint: Option<Self>) -> &'static str {
        match hint {
            Some(TokenTypeHint::AccessToken) => "the access token",
            Some(TokenTypeHint::RefreshToken) => "the refresh token",
            None => "the token",
        }
    }
}

impl<S: HttpClient> TokenEndpoint<S> {
    /// Revokes `token` at the revocation endpoint (RFC 7009 §2.1), with
    /// `hint` as its `token_type_hint`, authenticating as the token
    /// requests do. A `private_key_jwt` or `client_secret_jwt` assertion
    /// has the same audience as for a token request: the token endpoint URL
    /// unless `ClientAuth::assertion_audience` (feature `jwt`) says
    /// otherwise (OpenID Connect Core §9, RFC 7523 §3).
    ///
    /// `Ok` when the server answers 200: revoked, or not valid anyway
    /// (RFC 7009 §2.2). With no revocation endpoint set, an
    /// [`ErrorKind::NoRevocationEndpoint`](crate::ErrorKind::NoRevocationEndpoint)
    /// error and nothing is sent. Any other failure: see the
    /// [module docs](self).
    ///
    /// A client whose credential is read from a file or callback
    /// ([`ClientAuth::reads_credential`]) reads it for the request, and
    /// after an `invalid_client` answer reads it again and sends the
    /// request once more, as [`TokenEndpoint::request`] does.
    ///
    /// Like [`TokenEndpoint::request`], the future owns what it needs.
    pub fn revoke(
        &self,
        token: &SecretString,
        hint: Option<TokenTypeHint>,
    ) -> impl Future<Output = Result<(), Error>> {
        let span = tracing::debug_span!(
            "oauth2.revocation",
            token_type_hint = hint.map(TokenTypeHint::as_str),
            revocation_url = self.revocation_endpoint().map(tracing::field::display),
            client_id = self.client().client_id(),
            status = tracing::field::Empty,
        );
        let revocation = self.revocation_endpoint().cloned();
        let service = self.get_ref().clone();
        let (client, token_url, limits) =
            (self.client().clone(), self.url().clone(), self.limits());
        let token = token.clone();
        async move {
            let url = revocation.ok_or_else(Error::no_revocation_endpoint)?;
            let sent = Revocation {
                token: &token,
                hint,
                client: &client,
                url: &url,
                token_url: &token_url,
                limits,
            };
            let mut result = sent.read_and_send(service.clone()).await;
            // As for a token request: the refusal may have raced a
            // rotation of the credential's file (RFC 7009 §2.1
            // authenticates the client as RFC 6749 §2.3 does).
            let refusal = result.as_ref().err().and_then(Error::oauth_error);
            if client.reads_credential()
                && refusal.is_some_and(|r| r.error() == &crate::error::ErrorCode::InvalidClient)
            {
                tracing::debug!(
                    "invalid_client with a credential read from a file or callback: \
                     reading it again and sending the revocation once more"
                );
                result = sent.read_and_send(service).await;
            }
            match &result {
                Ok(()) => tracing::debug!("token revoked"),
                Err(e) => tracing::debug!(error = %e, "token revocation failed"),
            }
            let the_token = TokenTypeHint::the_token(hint);
            result.map_err(|e| e.in_revocation(Some((the_token, &url.to_string()))))
        }
        .instrument(span)
    }
}

/// One revocation request: which token, who asks, and where.
struct Revocation<'a> {
    token: &'a SecretString,
    hint: Option<TokenTypeHint>,
    client: &'a ClientAuth,
    url: &'a RevocationUrl,
    /// The audience of a client assertion (OpenID Connect Core §9).
    token_url: &'a TokenUrl,
    limits: exchange::Limits,
}

impl Revocation<'_> {
    /// Builds the request (RFC 7009 §2.1): `POST`, form-encoded `token`
    /// then `token_type_hint`, then the client's parameters as its
    /// authentication method puts them; `Accept: application/json` for an
    /// error's body. Gives with it the client assertion signed for it.
    fn build(&self) -> Result<(Request<Full<Bytes>>, Option<SecretString>), Error> {
        let assertion = self.client.assertion(self.token_url)?;
        let mut params = vec![("token", self.token.expose_secret())];
        if let Some(hint) = self.hint {
            params.push(("token_type_hint", hint.as_str()));
        }
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.uri().clone())
            .header(ACCEPT, "application/json");
        let request = self
            .client
            .authenticate(request, assertion.as_ref(), &mut params);
        let (content_type, body) = BodyEncoding::Form.encode(&params)?;
        let request = request
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| Error::invalid_request(format!("cannot build the HTTP request ({e})")))?;
        Ok((request, assertion))
    }

    /// Reads the client's credential from its file or callback, if it
    /// has one, then [`Revocation::send`] with it.
    async fn read_and_send<S: HttpClient>(&self, service: S) -> Result<(), Error> {
        let client = self.client.read_credential(self.limits.timeout).await?;
        let read = Revocation {
            client: &client,
            ..*self
        };
        read.send(service).await
    }

    async fn send<S: HttpClient>(&self, service: S) -> Result<(), Error> {
        let (request, assertion) = self.build()?;
        // A success's body means nothing (RFC 7009 §2.2): it is not read.
        let answer = exchange::send(service, request, self.limits, |s| !s.is_success()).await?;
        tracing::Span::current().record("status", answer.status.as_u16());
        let client_secrets = self.client.secrets();
        let secrets: Vec<&str> = (client_secrets.iter().map(|s| s.as_ref()))
            .chain(assertion.iter().map(SecretString::expose_secret))
            .chain([self.token.expose_secret()])
            .collect();
        revocation_answer(answer.status, &answer.headers, &answer.body?, &secrets)
    }
}

/// RFC 7009 §2.2: a 200 is success, whatever its body; a redirect is not
/// followed; an error status is an RFC 6749 §5.2 error (with
/// `unsupported_token_type`, §2.2.1) or an `HttpStatus` error, with its
/// `Retry-After` (a 503's, §2.2.1), and `secrets` scrubbed from excerpts.
fn revocation_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<(), Error> {
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(Error::redirect(status))
    } else {
        Err(error_answer(status, headers, body, secrets))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http::header::AUTHORIZATION;
    use http::{HeaderValue, Response};
    use http_body_util::BodyExt;

    use super::*;
    use crate::error::{ErrorCode, ErrorKind};

    const TOKEN_URL: &str = "https://as.example.com/oauth2/token";
    const URL: &str = "https://as.example.com/oauth2/revoke";
    // base64("APP_KEY:APP_SECRET")
    const BASIC: &str = "Basic QVBQX0tFWTpBUFBfU0VDUkVU";

    fn build(
        client: &ClientAuth,
        token: &str,
        hint: Option<TokenTypeHint>,
    ) -> (http::request::Parts, String) {
        let token = SecretString::from(token);
        let url = RevocationUrl::new(URL).unwrap();
        let token_url = TokenUrl::new(TOKEN_URL).unwrap();
        let revocation = Revocation {
            token: &token,
            hint,
            client,
            url: &url,
            token_url: &token_url,
            limits: exchange::Limits::default(),
        };
        let (request, _) = revocation.build().unwrap();
        let (parts, body) = request.into_parts();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes();
        (parts, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The method, URL and headers every revocation request has, and its
    /// `Authorization` header if any.
    fn check_head(parts: &http::request::Parts) -> Option<&HeaderValue> {
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, URL);
        assert_eq!(parts.headers[ACCEPT], "application/json");
        assert_eq!(
            parts.headers[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        let expected = 2 + usize::from(parts.headers.contains_key(AUTHORIZATION));
        assert_eq!(parts.headers.len(), expected, "{:?}", parts.headers);
        parts.headers.get(AUTHORIZATION)
    }

    #[test]
    fn request_bytes_for_each_client_authentication() {
        let basic = ClientAuth::client_secret_basic("APP_KEY", "APP_SECRET");
        let post = ClientAuth::client_secret_post("APP_KEY", "APP_SECRET");
        let none = ClientAuth::none("APP_KEY");
        let refresh = Some(TokenTypeHint::RefreshToken);
        let access = Some(TokenTypeHint::AccessToken);
        let cases = [
            (
                &basic,
                refresh,
                Some(BASIC),
                "token=rt-1&token_type_hint=refresh_token",
            ),
            (
                &basic,
                access,
                Some(BASIC),
                "token=rt-1&token_type_hint=access_token",
            ),
            (
                &post,
                refresh,
                None,
                "token=rt-1&token_type_hint=refresh_token&client_id=APP_KEY\
                 &client_secret=APP_SECRET",
            ),
            (
                &none,
                access,
                None,
                "token=rt-1&token_type_hint=access_token&client_id=APP_KEY",
            ),
            (&none, None, None, "token=rt-1&client_id=APP_KEY"),
        ];
        for (client, hint, authorization, body) in cases {
            let (parts, got) = build(client, "rt-1", hint);
            let header = check_head(&parts);
            assert_eq!(header.map(|h| h.to_str().unwrap()), authorization);
            assert!(header.is_none_or(HeaderValue::is_sensitive));
            assert_eq!(got, body, "{} {hint:?}", client.method_name());
        }
        // The token is form-encoded like any value.
        let (_, got) = build(&none, "a+b/c=&d e", None);
        assert_eq!(got, "token=a%2Bb%2Fc%3D%26d+e&client_id=APP_KEY");
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn private_key_jwt_signs_an_assertion_for_the_token_endpoint() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;

        use crate::jose::{Algorithm, SigningKey};
        use crate::request::CLIENT_ASSERTION_TYPE;

        let pem = include_str!("testdata/p256.pem");
        let key = SigningKey::from_pem(Algorithm::ES256, pem).unwrap();
        let claims_of = |body: &str| {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            let sent: Vec<(&str, &str)> = pairs[..4]
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                sent,
                [
                    ("token", "rt-1"),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", "svc-jwt"),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ]
            );
            assert_eq!((pairs.len(), pairs[4].0.as_str()), (5, "client_assertion"));
            let jwt: Vec<&str> = pairs[4].1.split('.').collect();
            let input = format!("{}.{}", jwt[0], jwt[1]);
            let signature = URL_SAFE_NO_PAD.decode(jwt[2]).unwrap();
            assert!(key.verify(input.as_bytes(), &signature));
            let payload = URL_SAFE_NO_PAD.decode(jwt[1]).unwrap();
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap()
        };
        let hint = Some(TokenTypeHint::RefreshToken);
        let client = ClientAuth::private_key_jwt("svc-jwt", key.clone());
        let (parts, body) = build(&client, "rt-1", hint);
        assert_eq!(check_head(&parts), None);
        let claims = claims_of(&body);
        assert_eq!(
            (&claims["iss"], &claims["sub"], &claims["aud"]),
            (
                &"svc-jwt".into(),
                &"svc-jwt".into(),
                &serde_json::Value::from(TOKEN_URL)
            )
        );
        let client = client.assertion_audience("https://as.example.com");
        let claims = claims_of(&build(&client, "rt-1", hint).1);
        assert_eq!(claims["aud"], "https://as.example.com");
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Result<(), Error> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let status = StatusCode::from_u16(status).unwrap();
        revocation_answer(status, &map, body.as_bytes(), &["rt-secret-1"])
    }

    #[test]
    fn rfc_7009_answers() {
        // §2.2: 200 whatever the body (revoked, or invalid all along).
        for (status, body) in [(200, ""), (200, "not json"), (200, r#"{"error":"x"}"#)] {
            assert!(answer(status, &[], body).is_ok(), "{status} {body}");
        }
        let json = [("content-type", "application/json")];
        let e = answer(400, &json, r#"{"error":"unsupported_token_type"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OAuth);
        let oauth = e.oauth_error().unwrap();
        assert_eq!(oauth.error(), &ErrorCode::UnsupportedTokenType);
        assert_eq!(oauth.status(), StatusCode::BAD_REQUEST);
        assert!(!e.is_retryable());
        let e = answer(401, &json, r#"{"error":"invalid_client"}"#).unwrap_err();
        assert_eq!(e.oauth_error().unwrap().error(), &ErrorCode::InvalidClient);
        // §2.2.1: 503, with Retry-After.
        let e = answer(503, &[("retry-after", "7")], "<h1>down</h1>").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HttpStatus);
        assert_eq!(e.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let body = r#"{"error":"temporarily_unavailable"}"#;
        let e = answer(503, &[json[0], ("retry-after", "2")], body).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OAuth);
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            answer(307, &[], "").unwrap_err().kind(),
            ErrorKind::Redirect
        );
        // A body that echoes the token shows it scrubbed.
        let e = answer(500, &[], "bad token rt-secret-1").unwrap_err();
        assert_eq!(
            e.in_revocation(None).to_string(),
            "revocation endpoint answered 500 Internal Server Error with a body that is not \
             an OAuth2 error: \"bad token [redacted]\""
        );
    }

    /// An endpoint whose HTTP service answers `status`, `headers` and
    /// `body`, and keeps the requests it gets.
    fn answering(
        status: u16,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
    ) -> (
        TokenEndpoint<impl HttpClient<Future: Send, ResponseBody = Full<Bytes>> + Send + 'static>,
        Arc<Mutex<Vec<String>>>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let http = tower::service_fn(move |req: Request<Full<Bytes>>| {
            log.lock().unwrap().push(req.uri().to_string());
            async move {
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(*name, *value);
                }
                Ok::<_, Infallible>(response.body(Full::from(body)).unwrap())
            }
        });
        let client = ClientAuth::client_secret_basic("svc", "client-s3cret");
        let endpoint = TokenEndpoint::new(http, TokenUrl::new(TOKEN_URL).unwrap(), client);
        (endpoint, seen)
    }

    #[tokio::test]
    async fn errors_say_which_token_and_where_and_never_show_it() {
        let token = SecretString::from("rt-secret-1");
        let refresh = Some(TokenTypeHint::RefreshToken);
        let body = r#"{"error":"unsupported_token_type","error_description":"rt-secret-1?"}"#;
        let (endpoint, seen) = answering(400, &[("content-type", "application/json")], body);

        let e = endpoint.revoke(&token, refresh).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoRevocationEndpoint);
        assert!(!e.is_revocation() && !e.is_retryable());
        assert!(seen.lock().unwrap().is_empty(), "nothing is sent");

        let endpoint = endpoint.revocation_url(RevocationUrl::new(URL).unwrap());
        assert_eq!(endpoint.revocation_endpoint().unwrap().uri(), URL);
        let e = endpoint.revoke(&token, refresh).await.unwrap_err();
        assert_eq!(*seen.lock().unwrap(), [URL]);
        assert!(e.is_revocation());
        assert_eq!(e.kind(), ErrorKind::OAuth);
        assert_eq!(
            e.oauth_error().map(|r| r.error()),
            Some(&ErrorCode::UnsupportedTokenType)
        );
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            e.to_string(),
            "revoking the refresh token at https://as.example.com/oauth2/revoke failed: \
             revocation endpoint answered 400 Bad Request: unsupported_token_type: [redacted]?"
        );
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("rt-secret") && !shown.contains("client-s3cret"));

        let (endpoint, _) = endpoint_503();
        let e = endpoint.revoke(&token, None).await.unwrap_err();
        assert!(e.is_revocation() && e.is_retryable());
        assert_eq!(e.kind(), ErrorKind::HttpStatus);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            e.to_string(),
            "revoking the token at https://as.example.com/oauth2/revoke failed: revocation \
             endpoint answered 503 Service Unavailable with an empty body (retry after 30s)"
        );
    }

    fn endpoint_503() -> (
        TokenEndpoint<impl HttpClient<Future: Send, ResponseBody = Full<Bytes>> + Send + 'static>,
        Arc<Mutex<Vec<String>>>,
    ) {
        let (endpoint, seen) = answering(503, &[("retry-after", "30")], "");
        (
            endpoint.revocation_url(RevocationUrl::new(URL).unwrap()),
            seen,
        )
    }

    #[tokio::test]
    async fn a_success_body_is_not_read_and_the_limits_hold() {
        let token = SecretString::from("at-1");
        let access = Some(TokenTypeHint::AccessToken);
        let url = RevocationUrl::new(URL).unwrap();
        // Larger than the limit: a 200's body is not read, so no error.
        let (endpoint, _) = answering(200, &[], "0123456789abcdef");
        let endpoint = endpoint.revocation_url(url.clone()).max_body_bytes(8);
        endpoint.revoke(&token, access).await.unwrap();
        // An error's body is read within the limit.
        let (endpoint, _) = answering(400, &[], "0123456789abcdef");
        let endpoint = endpoint.revocation_url(url.clone()).max_body_bytes(8);
        let e = endpoint.revoke(&token, access).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BodyTooLarge);
        assert_eq!(
            e.to_string(),
            "revoking the access token at https://as.example.com/oauth2/revoke failed: \
             revocation endpoint's answer is larger than the 8-byte limit"
        );
        // One deadline over the exchange.
        let never = tower::service_fn(|_req: Request<Full<Bytes>>| {
            std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
        });
        let client = ClientAuth::none("svc");
        let endpoint = TokenEndpoint::new(never, TokenUrl::new(TOKEN_URL).unwrap(), client)
            .revocation_url(url)
            .timeout(Duration::from_millis(20));
        let e = endpoint.revoke(&token, access).await.unwrap_err();
        assert!(e.is_timeout() && e.is_retryable() && e.is_revocation());
        assert_eq!(
            e.to_string(),
            "revoking the access token at https://as.example.com/oauth2/revoke failed: \
             revocation endpoint did not answer within 20ms"
        );
    }

    #[test]
    fn hints_as_sent() {
        assert_eq!(TokenTypeHint::AccessToken.as_str(), "access_token");
        assert_eq!(TokenTypeHint::RefreshToken.as_str(), "refresh_token");
    }
}
