use std::fmt;

use crate::error::{BoxError, Error};

/// The error of an [`OAuth2Service`](super::OAuth2Service): the inner
/// service's own error, kept as it is, or a failure to get a token.
pub enum ServiceError<E> {
    /// The inner service failed.
    Inner(E),
    /// No token could be had (the endpoint's `error`/`error_description`
    /// are in [`Error::oauth_error`]).
    Token(Error),
}

impl<E> ServiceError<E> {
    /// The token error, if this is one.
    pub fn token_error(&self) -> Option<&Error> {
        match self {
            ServiceError::Token(e) => Some(e),
            ServiceError::Inner(_) => None,
        }
    }

    /// The inner service's error, if this is one.
    pub fn inner_error(&self) -> Option<&E> {
        match self {
            ServiceError::Inner(e) => Some(e),
            ServiceError::Token(_) => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for ServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
            ServiceError::Token(e) => f.debug_tuple("Token").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for ServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Inner(e) => fmt::Display::fmt(e, f),
            ServiceError::Token(e) => write!(f, "could not get an access token: {e}"),
        }
    }
}

/// `ServiceError<E>` is an error when `E` is one. [`ServiceError::Inner`]
/// is transparent, as its `Display` is the inner error's: its
/// [`source`](std::error::Error::source) is the inner error's, so the
/// whole chain reaches the caller, each cause once (a hyper-util `client
/// error (Connect)`, then the connect error, then the refused
/// connection's `io::Error`, say). A token failure's source is the
/// [`Error`].
///
/// A `BoxError` is not an error type itself (`Box<dyn Error>` does not
/// implement `Error`), so `ServiceError<BoxError>` (an inner tower
/// `Timeout` or `Buffer`) is not one either: convert it with
/// [`ServiceError::into_box_error`], e.g. with `.map_err(ServiceError::into_box_error)`
/// in a `ServiceBuilder`, or put those layers outside this one. (Rust
/// cannot have both: an error type that is any `E: Error` and
/// `BoxError` too.)
impl<E> std::error::Error for ServiceError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Inner(e) => e.source(),
            ServiceError::Token(e) => Some(e),
        }
    }
}

impl<E: Into<BoxError>> ServiceError<E> {
    /// The error as a `BoxError`: the inner error itself (so a `BoxError`
    /// inner error keeps its whole `source` chain), or the token error.
    /// For stacks whose inner service fails with a `BoxError` (tower's
    /// `Timeout`, `Buffer`), where `?` into a `BoxError` needs it.
    pub fn into_box_error(self) -> BoxError {
        match self {
            ServiceError::Inner(e) => e.into(),
            ServiceError::Token(e) => Box::new(e),
        }
    }
}
