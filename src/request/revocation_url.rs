//! [`RevocationUrl`]: where the revocation endpoint (RFC 7009) is.

use std::fmt;

use http::Uri;

use super::secure_uri;
use crate::error::Error;

/// Where the revocation endpoint is (also at
/// [`crate::revocation::RevocationUrl`]): the same rule as for a
/// [`TokenUrl`](super::TokenUrl) (`https`, or `http` on loopback; no
/// credentials in it), since the client's credentials and the token go
/// there.
#[derive(Clone, PartialEq, Eq)]
pub struct RevocationUrl {
    uri: Uri,
}

impl RevocationUrl {
    /// An absolute revocation endpoint URL.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::parse(url, false)
    }

    /// Like [`RevocationUrl::new`] but accepting `http` to any host. The
    /// client secret and the token then cross the network in clear text:
    /// use it only inside a network you trust.
    pub fn new_allow_http(url: &str) -> Result<Self, Error> {
        Self::parse(url, true)
    }

    fn parse(url: &str, allow_http: bool) -> Result<Self, Error> {
        match secure_uri(url, allow_http, "revocation URL", "RevocationUrl") {
            Ok(uri) => Ok(RevocationUrl { uri }),
            Err(e) => Err(e.in_revocation(None)),
        }
    }

    /// The URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl fmt::Debug for RevocationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RevocationUrl").field(&self.uri).finish()
    }
}

impl fmt::Display for RevocationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uri, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const URL: &str = "https://as.example.com/oauth2/revoke";

    #[test]
    fn revocation_urls_follow_the_token_url_rule() {
        assert_eq!(RevocationUrl::new(URL).unwrap().to_string(), URL);
        assert!(RevocationUrl::new("http://127.0.0.1:8080/revoke").is_ok());
        assert!(RevocationUrl::new_allow_http("http://as.example.com/revoke").is_ok());
        for (bad, why) in [
            (
                "http://as.example.com/revoke",
                "revocation URL must be https (http is accepted only on loopback, or with \
                 RevocationUrl::new_allow_http)",
            ),
            (
                "/revoke",
                "revocation URL must be absolute (https://host/path)",
            ),
            (
                "https://user:pw@as.example.com/revoke",
                "revocation URL must not carry credentials; pass them as ClientAuth",
            ),
            (
                "ftp://as/revoke",
                "revocation URL scheme must be https or http",
            ),
        ] {
            let e = RevocationUrl::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest);
            assert!(e.is_revocation());
            assert_eq!(
                e.to_string(),
                format!("cannot build the revocation request: {why}")
            );
        }
        let debug = format!("{:?}", RevocationUrl::new(URL).unwrap());
        assert_eq!(debug, "RevocationUrl(https://as.example.com/oauth2/revoke)");
    }
}
