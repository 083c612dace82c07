//! The one rule for where this crate sends a secret (a client secret, a
//! token): `https`, or `http` to a loopback host, and never a URL with
//! credentials (userinfo) in it.
//!
//! [`crate::request::TokenUrl`], the issuer of [`crate::discovery`] and
//! [`crate::layer::Destinations::secure`] (for every request, and for the
//! origin given to [`crate::layer::Destinations::origin_form_to`]) all ask
//! [`check`], so the rule cannot drift between them.

use std::net::IpAddr;

use http::uri::{Authority, Scheme};
use http::Uri;

/// Why a URL is not one a secret may be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnsafeUrl {
    /// No scheme and no host: an origin-form request target (`/path`),
    /// which says nothing of where it goes.
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
/// `http` to loopback. Checked in that order, so [`UnsafeUrl::ClearText`]
/// implies the rest holds (callers that opt in to clear text rely on it),
/// and [`UnsafeUrl::OriginForm`] is known before anything else is looked at.
///
/// It runs for every request through [`crate::layer::Destinations::secure`]:
/// no allocation, no parsing, one scan of the authority for `@`.
#[inline]
pub(crate) fn check(uri: &Uri) -> Result<(), UnsafeUrl> {
    let (scheme, authority) = absolute(uri)?;
    if has_credentials(authority) {
        return Err(UnsafeUrl::Credentials);
    }
    transit(scheme, authority)
}

/// Whether `authority` has a userinfo part (`user[:password]@`); `@` may
/// appear nowhere else in an authority.
#[inline]
pub(crate) fn has_credentials(authority: &Authority) -> bool {
    // Every request's authority is scanned (`Destinations::secure`), and
    // `[u8]::contains` goes byte by byte below 16 bytes, which most hosts
    // are: eight bytes at a time instead, the last eight read again
    // rather than the rest one by one.
    has_at_sign(authority.as_str().as_bytes())
}

#[inline(always)]
fn has_at_sign(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.contains(&b'@');
    }
    let last = bytes.len() - 8;
    bytes.chunks_exact(8).any(has_at) || has_at(&bytes[last..])
}

/// Whether the eight bytes of `chunk` include an `@`: a byte of `x` is
/// zero exactly where `chunk` has one, and `(x − 0x01…) & !x & 0x80…` is
/// not zero exactly when some byte of `x` is zero (the classic "has a zero
/// byte" test).
#[inline(always)]
fn has_at(chunk: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const ATS: u64 = u64::from_ne_bytes([b'@'; 8]);
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    let x = u64::from_ne_bytes(word) ^ ATS;
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

#[inline]
fn absolute(uri: &Uri) -> Result<(&Scheme, &Authority), UnsafeUrl> {
    match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(authority)) => Ok((scheme, authority)),
        (None, None) => Err(UnsafeUrl::OriginForm),
        (None, Some(_)) => Err(UnsafeUrl::NoScheme),
        (Some(_), None) => Err(UnsafeUrl::NoHost),
    }
}

#[inline]
fn transit(scheme: &Scheme, authority: &Authority) -> Result<(), UnsafeUrl> {
    // An exact comparison first: a parsed `https` is always spelled so
    // (only a scheme set by hand may be `HTTPS`, which the second compares).
    let scheme = scheme.as_str();
    let is = |name: &str| scheme == name || scheme.eq_ignore_ascii_case(name);
    if is("https") {
        Ok(())
    } else if !is("http") {
        Err(UnsafeUrl::Scheme)
    } else if is_loopback(authority.host()) {
        Ok(())
    } else {
        Err(UnsafeUrl::ClearText)
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
        let cases: [(&str, Result<(), UnsafeUrl>); 14] = [
            ("https://as.example.com/token", Ok(())),
            ("HTTPS://as.example.com/token", Ok(())),
            ("http://127.0.0.1:8080/t", Ok(())),
            ("http://127.1.2.3/t", Ok(())),
            ("http://localhost/t", Ok(())),
            ("http://LocalHost/t", Ok(())),
            ("http://[::1]:9/t", Ok(())),
            ("http://as.example.com/t", Err(UnsafeUrl::ClearText)),
            ("http://10.0.0.1/t", Err(UnsafeUrl::ClearText)),
            ("ftp://as.example.com/t", Err(UnsafeUrl::Scheme)),
            (
                "https://user:pw@as.example.com/t",
                Err(UnsafeUrl::Credentials),
            ),
            ("http://user@as.example.com/t", Err(UnsafeUrl::Credentials)),
            ("/token", Err(UnsafeUrl::OriginForm)),
            ("as.example.com:443", Err(UnsafeUrl::NoScheme)),
        ];
        for (url, want) in cases {
            assert_eq!(check(&url.parse().unwrap()), want, "{url}");
        }
    }

    #[test]
    fn the_rule_for_requests_refuses_origin_form_first() {
        // An origin-form URI says nothing else about where it goes, so it
        // is told apart from every other refusal (`Destinations` decides it
        // by what it was told of the connection).
        for url in ["/", "/pkg.Svc/Method", "*"] {
            let uri: Uri = url.parse().unwrap();
            assert_eq!(check(&uri), Err(UnsafeUrl::OriginForm), "{url}");
        }
        let with_user: Uri = "https://user@api.example.com/x".parse().unwrap();
        assert!(has_credentials(with_user.authority().unwrap()));
        let plain: Uri = "https://api.example.com/x".parse().unwrap();
        assert!(!has_credentials(plain.authority().unwrap()));
    }

    /// The scan eight bytes at a time answers as `contains` does, for an
    /// `@` at every place in every length around the word size, and for
    /// the bytes next to `@` (and with the high bit set) alone.
    #[test]
    fn the_at_sign_is_found_anywhere_and_nothing_else_is() {
        for len in 0..=40 {
            for fill in [b'a', b'A', b'?', b'`', 0xC0] {
                let plain = vec![fill; len];
                assert!(!has_at_sign(&plain), "{len} {fill:#x}");
                for at in 0..len {
                    let mut with = plain.clone();
                    with[at] = b'@';
                    assert!(has_at_sign(&with), "{len} {fill:#x} {at}");
                }
            }
        }
        let with_user: Uri = "https://user@api.example.com/x".parse().unwrap();
        assert!(has_credentials(with_user.authority().unwrap()));
    }

    #[test]
    fn a_scheme_set_by_hand_is_compared_as_a_string() {
        let upper = Uri::builder()
            .scheme("HTTPS")
            .authority("api.example.com")
            .path_and_query("/")
            .build()
            .unwrap();
        assert_ne!(upper.scheme(), Some(&Scheme::HTTPS));
        assert_eq!(check(&upper), Ok(()));
        let http = Uri::builder()
            .scheme("HTTP")
            .authority("api.example.com")
            .path_and_query("/")
            .build()
            .unwrap();
        assert_eq!(check(&http), Err(UnsafeUrl::ClearText));
    }
}
