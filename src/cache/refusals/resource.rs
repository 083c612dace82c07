//! [`Resource`]: which resource server an answer came from, as the record
//! of 401s keys it.

use http::uri::{Authority, Scheme};
use http::Uri;

/// The resource server an answer came from, as the record of 401s keys it:
/// `scheme://host:port`, in lower case, the default port filled in. Every
/// path-only (origin-form) URI has one key: they all go over the connection
/// the layer was put on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resource(Option<Box<str>>);

impl Resource {
    /// The resource server `uri` goes to.
    pub(crate) fn of(uri: &Uri) -> Resource {
        Resource::at(uri.scheme(), uri.authority())
    }

    /// The resource server at `scheme` and `authority` (both `None` for a
    /// path-only URI).
    pub(crate) fn at(scheme: Option<&Scheme>, authority: Option<&Authority>) -> Resource {
        let (Some(scheme), Some(authority)) = (scheme, authority) else {
            return Resource(None);
        };
        let scheme = scheme.as_str().to_ascii_lowercase();
        let port = authority.port_u16().or(match scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        });
        let host = authority.host().to_ascii_lowercase();
        let origin = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Resource(Some(origin.into_boxed_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: &str) -> Resource {
        Resource::of(&origin.parse().unwrap())
    }

    #[test]
    fn resources_are_origins_with_the_default_port_filled_in() {
        assert_eq!(
            at("https://API.example.com/x?y"),
            at("https://api.example.com:443/z")
        );
        assert_eq!(at("http://127.0.0.1/x"), at("http://127.0.0.1:80/"));
        assert_ne!(
            at("https://api.example.com/x"),
            at("http://api.example.com/x")
        );
        assert_ne!(at("http://127.0.0.1:1/x"), at("http://127.0.0.1:2/x"));
        assert_eq!(at("/pkg.Svc/Method"), at("/other"));
        assert_ne!(at("/pkg.Svc/Method"), at("https://api.example.com/"));
    }
}
