//! The one rule for where this crate sends a secret (a client secret, a
//! token): `https`, or `http` to a loopback host, and never a URL with
//! credentials (userinfo) in it.
//!
//! [`crate::request::TokenUrl`], the issuer of [`crate::discovery`] and
//! [`crate::layer::Destinations::secure`] all ask [`check`] (the last through
//! [`is_secure_destination`]), so the rule cannot drift between them.

use std::net::IpAddr;

use http::uri::Authority;
use http::Uri;

/// Why a URL is not one a secret may be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No scheme and no host: an origin-form request target (`/path`).
    OriginForm,
    /// A host but no scheme (`host:443`).
    NoScheme,
    /// A scheme but no host.
    NoHost,
    /// Credentials (`user:pass@`) in the authority.
    Credentials,
    /// `http` to a host that is not loopback: clear text over a network.
    ClearText,
    /// A scheme other than `https` and `http`.
    Scheme,
}

/// Checks `uri` against the rule: absolute, no credentials, and `https` or
/// `http` to loopback. Checked in that order, so [`Refusal::ClearText`]
/// implies the rest holds (callers that opt in to clear text rely on it).
pub(crate) fn check(uri: &Uri) -> Result<(), Refusal> {
    let (scheme, authority) = absolute(uri)?;
    if authority.as_str().contains('@') {
        return Err(Refusal::Credentials);
    }
    transit(scheme, authority)
}

/// The rule of [`crate::layer::Destinations::secure`], run for every request:
/// [`check`]'s scheme and host test, with two exceptions kept for now:
/// origin-form URIs pass (the inner service picks the destination) and
/// credentials in the URI are not looked at. No allocation, no parsing.
#[inline]
pub(crate) fn is_secure_destination(uri: &Uri) -> bool {
    match absolute(uri) {
        Ok((scheme, authority)) => transit(scheme, authority).is_ok(),
        Err(refusal) => refusal == Refusal::OriginForm,
    }
}

#[inline]
fn absolute(uri: &Uri) -> Result<(&str, &Authority), Refusal> {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok((scheme, authority)),
        (None, None) => Err(Refusal::OriginForm),
        (None, Some(_)) => Err(Refusal::NoScheme),
        (Some(_), None) => Err(Refusal::NoHost),
    }
}

#[inline]
fn transit(scheme: &str, authority: &Authority) -> Result<(), Refusal> {
    if scheme.eq_ignore_ascii_case("https") {
        Ok(())
    } else if !scheme.eq_ignore_ascii_case("http") {
        Err(Refusal::Scheme)
    } else if is_loopback(authority.host()) {
        Ok(())
    } else {
        Err(Refusal::ClearText)
    }
}

/// Whether `host` (as [`Authority::host`] gives it) is a loopback host:
/// `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let cases: [(&str, Result<(), Refusal>); 14] = [
            ("https://as.example.com/token", Ok(())),
            ("HTTPS://as.example.com/token", Ok(())),
            ("http://127.0.0.1:8080/t", Ok(())),
            ("http://127.1.2.3/t", Ok(())),
            ("http://localhost/t", Ok(())),
            ("http://LocalHost/t", Ok(())),
            ("http://[::1]:9/t", Ok(())),
            ("http://as.example.com/t", Err(Refusal::ClearText)),
            ("http://10.0.0.1/t", Err(Refusal::ClearText)),
            ("ftp://as.example.com/t", Err(Refusal::Scheme)),
            (
                "https://user:pw@as.example.com/t",
                Err(Refusal::Credentials),
            ),
            ("http://user@as.example.com/t", Err(Refusal::Credentials)),
            ("/token", Err(Refusal::OriginForm)),
            ("as.example.com:443", Err(Refusal::NoScheme)),
        ];
        for (url, want) in cases {
            assert_eq!(check(&url.parse().unwrap()), want, "{url}");
        }
    }

    #[test]
    fn destinations_let_origin_form_and_credentials_through() {
        for (url, allowed) in [
            ("https://api.example.com/x", true),
            ("http://localhost/x", true),
            ("/relative/path", true),
            ("https://user:pw@api.example.com/x", true),
            ("http://user@127.0.0.1/x", true),
            ("http://user@api.example.com/x", false),
            ("http://api.example.com/x", false),
            ("ftp://api.example.com/x", false),
            ("api.example.com:443", false),
        ] {
            assert_eq!(
                is_secure_destination(&url.parse().unwrap()),
                allowed,
                "{url}"
            );
        }
    }
}
