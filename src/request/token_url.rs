//! [`TokenUrl`]: where the token endpoint is.

use std::fmt;

use http::Uri;

use crate::error::Error;
use crate::url::{self, UnsafeUrl};

/// Where the token endpoint is.
///
/// Only `https` URLs are accepted, except on loopback (`localhost`,
/// `127.0.0.0/8`, `[::1]`), where `http` is fine for tests and sidecars;
/// [`TokenUrl::new_allow_http`] opts in to `http` elsewhere. A URL with
/// credentials in it (`https://user:pass@host/`) is refused: they belong in
/// [`crate::request::ClientAuth`].
#[derive(Clone, PartialEq, Eq)]
pub struct TokenUrl {
    uri: Uri,
}

impl TokenUrl {
    /// An absolute token endpoint URL.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::parse(url, false)
    }

    /// Like [`TokenUrl::new`] but accepting `http` to any host. The client
    /// secret and the tokens then cross the network in clear text: use it only
    /// inside a network you trust.
    pub fn new_allow_http(url: &str) -> Result<Self, Error> {
        Self::parse(url, true)
    }

    /// A path joined to a base URL (the "URI appendage" style): the path is
    /// appended to the base's path with exactly one `/` between them, so
    /// `https://as.example.com/tenant` joined with `oauth/token` is
    /// `https://as.example.com/tenant/oauth/token`. If `path` is itself an
    /// absolute URL it is used as it is.
    pub fn join(base: &str, path: &str) -> Result<Self, Error> {
        if path.starts_with("https://") || path.starts_with("http://") {
            return Self::new(path);
        }
        let base = base.trim_end_matches('/');
        let path = path.trim_start_matches('/');
        Self::new(&format!("{base}/{path}"))
    }

    fn parse(url: &str, allow_http: bool) -> Result<Self, Error> {
        let uri = secure_uri(url, allow_http, "token URL", "TokenUrl")?;
        Ok(TokenUrl { uri })
    }

    /// The URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// `url` parsed and checked by [`crate::url::check`], for an endpoint a
/// secret is sent to; `allow_http` lets `http` to any host through. `what`
/// names the URL in the refusal ("token URL"), `type_name` the type whose
/// `new_allow_http` opts in to clear text.
pub(crate) fn secure_uri(
    url: &str,
    allow_http: bool,
    what: &str,
    type_name: &str,
) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::invalid_request(format!("{what} is not a valid URL ({e})")))?;
    let reason = match url::check(&uri) {
        Ok(()) => return Ok(uri),
        // `check` refuses clear text last: the URL is otherwise fine.
        Err(UnsafeUrl::ClearText) if allow_http => return Ok(uri),
        Err(UnsafeUrl::OriginForm | UnsafeUrl::NoScheme) => {
            format!("{what} must be absolute (https://host/path)")
        }
        Err(UnsafeUrl::NoHost) => format!("{what} has no host"),
        Err(UnsafeUrl::Credentials) => {
            format!("{what} must not carry credentials; pass them as ClientAuth")
        }
        Err(UnsafeUrl::ClearText) => format!(
            "{what} must be https (http is accepted only on loopback, \
             or with {type_name}::new_allow_http)"
        ),
        Err(UnsafeUrl::Scheme) => format!("{what} scheme must be https or http"),
    };
    Err(Error::invalid_request(reason))
}

impl fmt::Debug for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenUrl").field(&self.uri).finish()
    }
}

impl fmt::Display for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uri, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls() {
        assert_eq!(
            TokenUrl::new("https://as/token").unwrap().uri(),
            "https://as/token"
        );
        assert_eq!(
            TokenUrl::join("https://as.example.com/tenant/", "/oauth/token")
                .unwrap()
                .uri(),
            "https://as.example.com/tenant/oauth/token"
        );
        assert_eq!(
            TokenUrl::join("https://as.example.com", "token")
                .unwrap()
                .uri(),
            "https://as.example.com/token"
        );
        assert_eq!(
            TokenUrl::join("https://ignored", "https://as/t")
                .unwrap()
                .uri(),
            "https://as/t"
        );
        for ok in [
            "http://127.0.0.1:8080/token",
            "http://localhost/t",
            "http://[::1]:9/t",
            "http://127.1.2.3/t",
        ] {
            assert!(TokenUrl::new(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://as.example.com/token", "must be https"),
            ("/token", "absolute"),
            ("https://user:pw@as/token", "credentials"),
            ("ftp://as/token", "scheme"),
            ("not a url", "not a valid URL"),
        ] {
            let e = TokenUrl::new(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(!e.to_string().contains("pw@"));
        }
        assert!(TokenUrl::new_allow_http("http://as.example.com/token").is_ok());
    }
}
