//! One HTTP exchange with an authorization server, shared by the token
//! endpoint ([`crate::endpoint`]) and discovery ([`crate::discovery`]): send
//! over any tower HTTP service, read a bounded body, all within one deadline,
//! and never follow a redirect.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, RETRY_AFTER};
use http::{HeaderMap, Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower::ServiceExt;

use crate::error::{BoxError, Error};
use crate::transport::HttpClient;

/// Default limit on a token response body: 256 KiB, far above any real
/// token response (a large one with an ID token is a few KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default time allowed for the whole exchange, answer body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an exchange may take, and how much of an answer it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// From sending to the last body byte: a slow-drip server cannot hold
    /// a caller longer.
    pub(crate) timeout: Duration,
    /// The largest body read; reading stops there.
    pub(crate) max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The public `timeout` and `max_body_bytes` options of a type whose
/// `limits` field is a [`Limits`] (the token endpoint, discovery): one
/// wording of what the limits mean. `$what` names one exchange.
macro_rules! limits_options {
    ($what:literal) => {
        #[doc = concat!("Time allowed for ", $what, ", from sending to the last body byte")]
        /// (default 30 s). A slow-drip server cannot hold a caller longer.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.limits.timeout = timeout;
            self
        }

        #[doc = concat!("Largest body read in ", $what, " (default 256 KiB); a larger one is a")]
        /// [`crate::ErrorKind::BodyTooLarge`] error, and reading stops there.
        pub fn max_body_bytes(mut self, limit: usize) -> Self {
            self.limits.max_body_bytes = limit;
            self
        }
    };
}
pub(crate) use limits_options;

/// An answer, with its body read within the limits.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The whole body, or why it could not be read (too large, a transport
    /// failure). Empty for an answer whose body was not read.
    pub(crate) body: Result<Bytes, Error>,
}

/// Sends `request` over `service` and reads the answer, all within
/// `limits.timeout` (or an [`crate::ErrorKind::Timeout`] error).
///
/// The body of a redirect is not read, nor that of a status for which
/// `read_body` says no. Nothing here follows a redirect: it would carry the
/// client's credentials (or the discovery of its token endpoint) elsewhere,
/// so each caller refuses it in its own words.
pub(crate) async fn send<S: HttpClient>(
    service: S,
    request: Request<Full<Bytes>>,
    limits: Limits,
    read_body: impl FnOnce(StatusCode) -> bool,
) -> Result<Answer, Error> {
    let exchange = async {
        let response = service.oneshot(request).await.map_err(Error::transport)?;
        let (parts, body) = response.into_parts();
        let body = if parts.status.is_redirection() || !read_body(parts.status) {
            Ok(Bytes::new())
        } else {
            read_limited(body, &parts.headers, limits.max_body_bytes).await
        };
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(limits.timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(Error::timeout(limits.timeout)))
}

/// Reads at most `limit` bytes of `body`, refusing at once a larger
/// declared `Content-Length`.
async fn read_limited<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::body_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Error::body_too_large(limit)),
        Err(e) => Err(Error::transport(e)),
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3),
/// capped at a day so a hostile value cannot park the client for years.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(24 * 3600);
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use http::Response;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that fails if read, or never ends.
    struct Tripwire {
        pending: bool,
    }

    impl Body for Tripwire {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.pending {
                Poll::Pending
            } else {
                Poll::Ready(Some(Err(std::io::Error::other("the body was read"))))
            }
        }
    }

    async fn answer(status: u16, pending: bool, read_body: bool) -> Result<Answer, Error> {
        let service = tower::service_fn(move |_req: Request<Full<Bytes>>| async move {
            let mut response = Response::new(Tripwire { pending });
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        });
        let limits = Limits {
            timeout: Duration::from_millis(50),
            max_body_bytes: 10,
        };
        send(service, Request::new(Full::default()), limits, |_| {
            read_body
        })
        .await
    }

    #[tokio::test]
    async fn a_redirect_or_a_skipped_body_is_not_read() {
        for (status, read_body) in [(302, true), (307, true), (404, false), (200, false)] {
            let a = answer(status, false, read_body).await.unwrap();
            assert_eq!(a.status.as_u16(), status);
            assert_eq!(a.body.unwrap(), Bytes::new(), "{status}");
        }
        let a = answer(200, false, true).await.unwrap();
        let e = a.body.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Transport);
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "the body was read"
        );
    }

    #[tokio::test]
    async fn one_deadline_covers_the_body() {
        let e = answer(200, true, true).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.to_string(), "token endpoint did not answer within 50ms");
        // A redirect's body is not waited for.
        assert_eq!(answer(301, true, true).await.unwrap().status, 301);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from_static("11"));
        let e = read_limited(Tripwire { pending: true }, &headers, 10)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BodyTooLarge);
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from_static("10"));
        let full = |b: &'static [u8]| Full::new(Bytes::from_static(b));
        let body = read_limited(full(b"0123456789"), &headers, 10).await;
        assert_eq!(body.unwrap(), "0123456789");
        let none = HeaderMap::new();
        let body = read_limited(full(b"0123456789a"), &none, 10).await;
        assert_eq!(body.unwrap_err().kind(), ErrorKind::BodyTooLarge);
    }
}
