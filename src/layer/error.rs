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

/// `ServiceError<E>` is an error for any displayable `E`, so that with a
/// `BoxError` inner error (tower's `Timeout`, `Buffer`, `BoxCloneService` …)
/// it still converts into a `BoxError` and `?` works. Its
/// [`source`](std::error::Error::source) is the token error, or the inner
/// error when that is a `BoxError`; match [`ServiceError::Inner`] to get any
/// other inner error itself.
impl<E> std::error::Error for ServiceError<E>
where
    E: fmt::Debug + fmt::Display + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Inner(e) => (e as &dyn std::any::Any)
                .downcast_ref::<BoxError>()
                .map(|b| &**b as &(dyn std::error::Error + 'static)),
            ServiceError::Token(e) => Some(e),
        }
    }
}
