use std::fmt;
use std::sync::Arc;

use http::Uri;

use crate::error::Error;

/// Which requests get the token.
///
/// A request to any other destination passes through untouched: no token is
/// added (an `Authorization` header the caller set is left as it is) and it
/// is never retried.
///
/// The default, [`Destinations::secure`], never sends a token in clear text
/// over a network: it allows `https` to any host, `http` only to loopback,
/// and requests with no scheme and host in their URI (the inner service
/// then picks the destination, e.g. a connection you opened yourself).
#[derive(Clone)]
pub struct Destinations(Kind);

#[derive(Clone)]
enum Kind {
    Secure,
    Any,
    Origins(Arc<[Origin]>),
    Predicate(Arc<dyn Fn(&Uri) -> bool + Send + Sync>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

fn origin_of(uri: &Uri) -> Option<Origin> {
    let https = match uri.scheme_str()? {
        s if s.eq_ignore_ascii_case("https") => true,
        s if s.eq_ignore_ascii_case("http") => false,
        _ => return None,
    };
    let authority = uri.authority()?;
    Some(Origin {
        https,
        host: authority.host().to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
    })
}

impl Destinations {
    /// `https` anywhere, `http` to loopback, and scheme-less URIs (the default).
    pub fn secure() -> Self {
        Destinations(Kind::Secure)
    }

    /// Every request, whatever its destination, `http` included.
    pub fn any() -> Self {
        Destinations(Kind::Any)
    }

    /// Only these origins (`scheme://host[:port]`, default ports filled in;
    /// host compared case-insensitively). Listing an `http` origin is the
    /// explicit opt-in to clear text for it.
    pub fn origins<I, S>(origins: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for o in origins {
            let o = o.as_ref();
            let uri: Uri = o.parse().map_err(|e| {
                Error::invalid_destination(format!("destination {o:?} is not a URL ({e})"))
            })?;
            let origin = origin_of(&uri).ok_or_else(|| {
                Error::invalid_destination(format!(
                    "destination {o:?} must be an http or https origin such as https://api.example.com"
                ))
            })?;
            if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
                return Err(Error::invalid_destination(format!(
                    "destination {o:?} must be an origin, without a path"
                )));
            }
            out.push(origin);
        }
        Ok(Destinations(Kind::Origins(out.into())))
    }

    /// Requests for which `allow(uri)` is true.
    pub fn predicate(allow: impl Fn(&Uri) -> bool + Send + Sync + 'static) -> Self {
        Destinations(Kind::Predicate(Arc::new(allow)))
    }

    #[inline]
    pub(crate) fn allows(&self, uri: &Uri) -> bool {
        match &self.0 {
            Kind::Secure => crate::url::is_secure_destination(uri),
            Kind::Any => true,
            Kind::Origins(list) => origin_of(uri).is_some_and(|o| list.contains(&o)),
            Kind::Predicate(f) => f(uri),
        }
    }
}

impl Default for Destinations {
    fn default() -> Self {
        Destinations::secure()
    }
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Secure => f.write_str("Destinations::secure()"),
            Kind::Any => f.write_str("Destinations::any()"),
            Kind::Origins(o) => f.debug_tuple("Destinations::origins").field(o).finish(),
            Kind::Predicate(_) => f.write_str("Destinations::predicate(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(d: &Destinations, uri: &str) -> bool {
        d.allows(&uri.parse().unwrap())
    }

    #[test]
    fn secure_default() {
        let d = Destinations::default();
        assert!(allows(&d, "https://api.example.com/x"));
        assert!(allows(&d, "HTTPS://api.example.com/x"));
        assert!(allows(&d, "http://127.0.0.1:8080/x"));
        assert!(allows(&d, "http://localhost/x"));
        assert!(allows(&d, "http://[::1]:9/x"));
        assert!(allows(&d, "/relative/path"));
        assert!(!allows(&d, "http://api.example.com/x"));
        assert!(!allows(&d, "http://10.0.0.1/x"));
        assert!(!allows(&d, "ftp://api.example.com/x"));
        assert!(!allows(&d, "api.example.com:443"));
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let d =
            Destinations::origins(["https://API.example.com", "http://inventory:8080"]).unwrap();
        assert!(allows(&d, "https://api.example.com/orders?x=1"));
        assert!(allows(&d, "https://api.example.com:443/orders"));
        assert!(allows(&d, "http://inventory:8080/items"));
        assert!(!allows(&d, "http://api.example.com/orders"));
        assert!(!allows(&d, "https://api.example.com:8443/orders"));
        assert!(!allows(&d, "https://api.example.com.evil.test/orders"));
        assert!(!allows(&d, "http://inventory/items"));
        assert!(!allows(&d, "/relative"));
        for bad in ["https://a/path", "a.example.com", "not a url"] {
            let e = Destinations::origins([bad]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidDestination, "{bad}");
        }
    }

    #[test]
    fn any_and_predicate() {
        assert!(allows(&Destinations::any(), "http://anything/x"));
        let d = Destinations::predicate(|u| u.path().starts_with("/api/"));
        assert!(allows(&d, "http://x/api/a"));
        assert!(!allows(&d, "http://x/other"));
        assert_eq!(format!("{d:?}"), "Destinations::predicate(..)");
    }
}
