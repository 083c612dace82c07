//! [`Destinations`]: which requests get the token.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use http::Uri;

use crate::error::Error;
use crate::request::TokenRequest;
use crate::url::{self, UnsafeUrl};

/// Which requests get the token.
///
/// A request to any other destination passes through untouched: no token is
/// added (an `Authorization` header the caller set is left as it is) and it
/// is never retried.
///
/// A token for one API lets any other API it reaches replay it, so send
/// it to its API only: [`OAuth2Layer::for_origin`](crate::OAuth2Layer::for_origin)
/// (or [`Destinations::origins`]). When you choose nothing, the layer
/// chooses ([`AuthPolicy::new`](super::AuthPolicy::new)): the origins of
/// the API the token request names (its RFC 8707 `resource`s, or an
/// `audience` that is an absolute URL), or else [`Destinations::secure`],
/// which never sends a token in clear text over a network: it allows
/// `https` to any host and `http` only to loopback, and never a URI with
/// credentials in it (`https://user:pass@host/`). Under that permissive
/// default, the first time the token goes to a second origin is logged at
/// `WARN`, naming both.
///
/// # Origin-form URIs (tonic, `hyper::client::conn`)
///
/// A request whose URI is only a path (`/pkg.Svc/Method`, the origin-form
/// of RFC 9112 §3.2.1) says nothing of where it goes: the inner service
/// decides, a tonic `Channel` by the endpoint it was built for, a
/// `hyper::client::conn` sender by the connection it was handed. Such a
/// request gets **no token** unless you say where those requests go, with
/// [`Destinations::origin_form_to`] (checked by the same rule) or
/// [`Destinations::allow_origin_form`] (on your word). The first one refused
/// is logged at `WARN`, once for a `Destinations` value and its clones.
///
/// ```
/// # fn f() -> Result<(), tower_oauth2::Error> {
/// use tower_oauth2::layer::Destinations;
/// use tower_oauth2::ErrorKind;
///
/// // A tonic channel to https://inventory.internal: its calls get the token.
/// let to_channel = Destinations::secure().origin_form_to("https://inventory.internal")?;
/// // Plain http to another host is refused, as for any other request.
/// let e = Destinations::secure().origin_form_to("http://10.0.0.1:50051").unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidDestination);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Destinations {
    kind: Kind,
    origin_form: OriginForm,
}

#[derive(Clone)]
enum Kind {
    /// `Some` when the layer chose it, no API being named: it watches for
    /// a second origin.
    Secure(Option<Arc<OriginWatch>>),
    Any,
    /// `Some` when the layer chose them, from the API the token request
    /// names: the first request refused is logged.
    Origins(Arc<[Origin]>, Option<Arc<AtomicBool>>),
    Predicate(Arc<dyn Fn(&Uri) -> bool + Send + Sync>),
}

/// The permissive default's watch: the first origin a token went to, and
/// whether a second one was logged (shared by the clones of a
/// `Destinations`, so by every service of a layer).
#[derive(Default)]
struct OriginWatch {
    first: OnceLock<Origin>,
    warned: AtomicBool,
}

impl OriginWatch {
    /// Notes that a token goes to `uri` (absolute, allowed): one relaxed
    /// load once a second origin was logged, else a comparison with the
    /// first origin, allocating nothing.
    #[inline]
    fn note(&self, uri: &Uri) {
        if self.warned.load(Ordering::Relaxed) {
            return;
        }
        match self.first.get() {
            Some(first) if first.matches(uri) => {}
            _ => self.note_new(uri),
        }
    }

    #[cold]
    #[inline(never)]
    fn note_new(&self, uri: &Uri) {
        let Some(origin) = Origin::of(uri) else {
            return;
        };
        let first = self.first.get_or_init(|| origin.clone());
        if *first != origin && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                first = %first,
                second = %origin,
                "the token went to {origin} after {first}: no destination was chosen, and the \
                 default sends it to every https host and loopback port, where any API it \
                 reaches can replay it. Send it to its API only: OAuth2Layer::for_origin(cache, \
                 \"{first}\") (OAuth2Middleware::for_origin for reqwest), or name the API in \
                 the token request (resource, or an audience that is its URL). Logged once."
            );
        }
    }
}

/// What origin-form requests get, decided when the value is built so that a
/// request costs one comparison.
#[derive(Clone)]
enum OriginForm {
    /// No token. The flag says whether that was logged already.
    Refused(Arc<AtomicBool>),
    /// The token: they go to this origin, which the rule allowed.
    To(Origin),
    /// The token, on the word of the user ([`Destinations::allow_origin_form`]),
    /// or because every destination is allowed ([`Destinations::any`]).
    Allowed,
}

/// `scheme://host:port` with the default port filled in and the host in
/// lower case.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `uri`, if it is an absolute `http` or `https` URI.
    fn of(uri: &Uri) -> Option<Origin> {
        let https = uri.scheme_str().and_then(is_https)?;
        let authority = uri.authority()?;
        Some(Origin {
            https,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default_port(https)),
        })
    }

    /// Whether `uri` (absolute, without credentials) is at this origin,
    /// without allocating.
    fn matches(&self, uri: &Uri) -> bool {
        let (Some(https), Some(authority)) = (uri.scheme_str().and_then(is_https), uri.authority())
        else {
            return false;
        };
        https == self.https
            && authority.port_u16().unwrap_or(default_port(https)) == self.port
            && authority.host().eq_ignore_ascii_case(&self.host)
            && !url::has_credentials(authority)
    }

    /// Parses an origin a user wrote (`https://host[:port]`, no path, no
    /// credentials); `what` names it in the error.
    fn parse(text: &str, what: &str) -> Result<(Origin, Uri), Error> {
        let invalid = |why: &str| Error::invalid_destination(format!("{what} {text:?} {why}"));
        let uri: Uri = text
            .parse()
            .map_err(|e| invalid(&format!("is not a URL ({e})")))?;
        let (Some(https), Some(authority)) = (uri.scheme_str().and_then(is_https), uri.authority())
        else {
            return Err(invalid(
                "must be an http or https origin such as https://api.example.com",
            ));
        };
        if url::has_credentials(authority) {
            return Err(invalid("must not carry credentials"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(invalid("must be an origin, without a path"));
        }
        let origin = Origin {
            https,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default_port(https)),
        };
        Ok((origin, uri))
    }
}

/// `Some(true)` for `https`, `Some(false)` for `http` (in any case), `None`
/// for another scheme.
fn is_https(scheme: &str) -> Option<bool> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(true)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl Destinations {
    fn new(kind: Kind, origin_form: OriginForm) -> Self {
        Destinations { kind, origin_form }
    }

    fn refusing_origin_form(kind: Kind) -> Self {
        Destinations::new(kind, OriginForm::Refused(Arc::default()))
    }

    /// `https` anywhere and `http` to loopback, without credentials in the
    /// URI (the default when the token request names no API). Origin-form
    /// URIs get no token until [`Destinations::origin_form_to`] or
    /// [`Destinations::allow_origin_form`] says where they go.
    pub fn secure() -> Self {
        Destinations::refusing_origin_form(Kind::Secure(None))
    }

    /// What a layer uses when the user chose nothing: the origins of the
    /// API `request` names (its `resource`s, its `audience` if that is an
    /// absolute URL; those a token may go to by [`Destinations::secure`]'s
    /// rule), else [`Destinations::secure`] watching for a second origin.
    pub(crate) fn named_by(request: Option<&TokenRequest>) -> Self {
        let mut named: Vec<Origin> = Vec::new();
        let values = request
            .into_iter()
            .flat_map(|r| r.plain_params("resource").chain(r.plain_params("audience")));
        for value in values {
            let Ok(uri) = value.parse::<Uri>() else {
                continue;
            };
            let origin = url::check(&uri).ok().and_then(|()| Origin::of(&uri));
            if let Some(origin) = origin.filter(|o| !named.contains(o)) {
                named.push(origin);
            }
        }
        if named.is_empty() {
            let watch = Arc::new(OriginWatch::default());
            return Destinations::refusing_origin_form(Kind::Secure(Some(watch)));
        }
        let refused = Some(Arc::new(AtomicBool::new(false)));
        Destinations::refusing_origin_form(Kind::Origins(named.into(), refused))
    }

    /// Every request, whatever its destination: `http` to any host,
    /// credentials in the URI and origin-form URIs included.
    pub fn any() -> Self {
        Destinations::new(Kind::Any, OriginForm::Allowed)
    }

    /// Only these origins (`scheme://host[:port]`, default ports filled in;
    /// host compared case-insensitively), never with credentials in the URI.
    /// Listing an `http` origin is the explicit opt-in to clear text for it.
    /// Origin-form URIs get no token until [`Destinations::origin_form_to`]
    /// names one of these origins (or [`Destinations::allow_origin_form`]).
    ///
    /// An entry that is not such an origin is refused with
    /// [`ErrorKind::InvalidDestination`](crate::ErrorKind::InvalidDestination).
    pub fn origins<I, S>(origins: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|o| Origin::parse(o.as_ref(), "destination").map(|(origin, _)| origin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Destinations::refusing_origin_form(Kind::Origins(
            list.into(),
            None,
        )))
    }

    /// Requests for which `allow(uri)` is true. It is asked about every
    /// request, origin-form ones included (`uri.scheme().is_none()`): it
    /// decides those too, so [`Destinations::origin_form_to`] and
    /// [`Destinations::allow_origin_form`] do not apply to it.
    pub fn predicate(allow: impl Fn(&Uri) -> bool + Send + Sync + 'static) -> Self {
        Destinations::new(Kind::Predicate(Arc::new(allow)), OriginForm::Allowed)
    }

    /// Origin-form requests (`/pkg.Svc/Method`) go to `origin`
    /// (`scheme://host[:port]`, as a tonic `Endpoint` or the connection you
    /// opened was given), and get the token if a request to `origin` would.
    ///
    /// - [`Destinations::secure`]: `origin` must be `https`, or `http` to
    ///   loopback, as for any request.
    /// - [`Destinations::origins`]: `origin` must be one of the listed ones.
    /// - [`Destinations::any`]: any `http` or `https` origin (origin-form
    ///   requests get the token there anyway).
    /// - [`Destinations::predicate`]: refused; the predicate decides
    ///   origin-form URIs itself.
    ///
    /// An `origin` refused (or not an origin: a path, credentials, another
    /// scheme) is an [`ErrorKind::InvalidDestination`](crate::ErrorKind::InvalidDestination)
    /// error, raised here rather than by a request that would leak.
    ///
    /// The layer cannot see the connection: if the inner service sends
    /// origin-form requests anywhere else than `origin`, the token goes
    /// there too. Give each channel or connection a layer of its own.
    ///
    /// With DPoP, the proofs of origin-form requests name `origin` and the
    /// request's path as their `htu`.
    pub fn origin_form_to(self, origin: impl AsRef<str>) -> Result<Self, Error> {
        let text = origin.as_ref();
        let (origin, uri) = Origin::parse(text, "origin")?;
        let refused = |why: &str| {
            Error::invalid_destination(format!("origin {text:?} for origin-form requests {why}"))
        };
        match &self.kind {
            Kind::Secure(_) => match url::check(&uri) {
                Ok(()) => {}
                Err(_) => {
                    return Err(refused(
                        "is neither https nor http to loopback: the token would cross the \
                         network in clear text (Destinations::any() sends it anyway)",
                    ))
                }
            },
            Kind::Origins(list, _) if !list.contains(&origin) => {
                return Err(refused("is not one of the listed origins"))
            }
            Kind::Origins(..) | Kind::Any => {}
            Kind::Predicate(_) => {
                return Err(refused(
                    "does not apply to Destinations::predicate, which decides \
                     origin-form URIs itself",
                ))
            }
        }
        Ok(Destinations::new(self.kind, OriginForm::To(origin)))
    }

    /// Origin-form requests (`/pkg.Svc/Method`) get the token, wherever the
    /// inner service sends them: **you guarantee** that the connection they
    /// go over is TLS or to loopback (for [`Destinations::origins`]: to one
    /// of the listed origins). Prefer [`Destinations::origin_form_to`],
    /// which checks the origin. No effect on [`Destinations::any`] (they
    /// get it already) and [`Destinations::predicate`] (which decides them).
    pub fn allow_origin_form(self) -> Self {
        Destinations::new(self.kind, OriginForm::Allowed)
    }

    /// Whether a request to `uri` gets the token: no allocation, no
    /// parsing; for an origin-form URI one comparison decided at
    /// construction.
    #[inline(always)]
    pub(crate) fn allows(&self, uri: &Uri) -> bool {
        match &self.kind {
            Kind::Secure(watch) => match url::check(uri) {
                Ok(()) => {
                    if let Some(watch) = watch {
                        watch.note(uri);
                    }
                    true
                }
                Err(UnsafeUrl::OriginForm) => self.allows_origin_form(),
                Err(_) => false,
            },
            Kind::Any => true,
            Kind::Origins(list, named) => {
                if is_origin_form(uri) {
                    self.allows_origin_form()
                } else if list.iter().any(|o| o.matches(uri)) {
                    true
                } else {
                    if let Some(warned) = named {
                        if !warned.load(Ordering::Relaxed) {
                            warn_not_named(warned, list, uri);
                        }
                    }
                    false
                }
            }
            Kind::Predicate(f) => f(uri),
        }
    }

    /// The absolute URI that an origin-form `uri` stands for, when
    /// [`Destinations::origin_form_to`] named the connection's origin
    /// (a DPoP proof's `htu` and a nonce's origin need one); `None` for
    /// any other URI or rule.
    pub(crate) fn absolute(&self, uri: &Uri) -> Option<Uri> {
        let OriginForm::To(origin) = &self.origin_form else {
            return None;
        };
        if !is_origin_form(uri) {
            return None;
        }
        let scheme = if origin.https { "https" } else { "http" };
        let authority = if origin.port == default_port(origin.https) {
            origin.host.clone()
        } else {
            format!("{}:{}", origin.host, origin.port)
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .ok()
    }

    #[inline]
    fn allows_origin_form(&self) -> bool {
        match &self.origin_form {
            OriginForm::Refused(warned) => {
                if !warned.load(Ordering::Relaxed) {
                    warn_once(warned);
                }
                false
            }
            OriginForm::To(_) | OriginForm::Allowed => true,
        }
    }
}

fn is_origin_form(uri: &Uri) -> bool {
    uri.scheme().is_none() && uri.authority().is_none()
}

/// Logs the first origin-form request refused (`warned` is shared by a
/// `Destinations` and its clones, so by every service of a layer).
#[cold]
fn warn_once(warned: &AtomicBool) {
    if !warned.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "a request with a path-only (origin-form) URI was sent without a token: \
             the layer cannot tell where it goes (tonic and hyper::client::conn send \
             such URIs). Say where with Destinations::secure().origin_form_to(\"https://host:port\"), \
             or Destinations::secure().allow_origin_form() if the connection is TLS or \
             loopback. Logged once."
        );
    }
}

/// Logs the first request that got no token because it does not go to the
/// API the token request names (`warned`: shared by the clones).
#[cold]
fn warn_not_named(warned: &AtomicBool, named: &[Origin], uri: &Uri) {
    if !warned.swap(true, Ordering::Relaxed) {
        let to = Origin::of(uri).map_or_else(
            || "a URI that is no http(s) origin".into(),
            |o| o.to_string(),
        );
        tracing::warn!(
            to = %to,
            named = ?named,
            "a request to {to} was sent without a token: the token request names its API \
             ({named:?}, by resource or audience), and the token goes only there unless you \
             choose otherwise (OAuth2Layer::for_origin, or .destinations(Destinations::origins(..))). \
             Logged once."
        );
    }
}

impl Default for Destinations {
    fn default() -> Self {
        Destinations::secure()
    }
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin_form_by_default = match &self.kind {
            Kind::Secure(_) => {
                f.write_str("Destinations::secure()")?;
                false
            }
            Kind::Any => {
                f.write_str("Destinations::any()")?;
                true
            }
            Kind::Origins(list, _) => {
                f.write_str("Destinations::origins(")?;
                f.debug_list().entries(list.iter()).finish()?;
                f.write_str(")")?;
                false
            }
            Kind::Predicate(_) => return f.write_str("Destinations::predicate(..)"),
        };
        match &self.origin_form {
            OriginForm::To(origin) => write!(f, ".origin_form_to({origin:?})"),
            OriginForm::Allowed if !origin_form_by_default => f.write_str(".allow_origin_form()"),
            OriginForm::Allowed | OriginForm::Refused(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn allows(d: &Destinations, uri: &str) -> bool {
        d.allows(&uri.parse().unwrap())
    }

    fn invalid(result: Result<Destinations, Error>) -> String {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidDestination, "{e}");
        e.to_string()
    }

    #[test]
    fn secure_default() {
        let d = Destinations::default();
        assert!(allows(&d, "https://api.example.com/x"));
        assert!(allows(&d, "HTTPS://api.example.com/x"));
        assert!(allows(&d, "http://127.0.0.1:8080/x"));
        assert!(allows(&d, "http://localhost/x"));
        assert!(allows(&d, "http://[::1]:9/x"));
        assert!(!allows(&d, "https://user:pw@api.example.com/x"));
        assert!(!allows(&d, "https://user@api.example.com/x"));
        assert!(!allows(&d, "http://user@127.0.0.1/x"));
        assert!(!allows(&d, "/relative/path"));
        assert!(!allows(&d, "/pkg.Svc/Method"));
        assert!(!allows(&d, "http://api.example.com/x"));
        assert!(!allows(&d, "http://10.0.0.1/x"));
        assert!(!allows(&d, "ftp://api.example.com/x"));
        assert!(!allows(&d, "api.example.com:443"));
        assert_eq!(format!("{d:?}"), "Destinations::secure()");
    }

    #[test]
    fn origin_form_to_a_secure_origin() {
        for origin in [
            "https://inventory.internal",
            "https://inventory.internal:8443/",
            "http://127.0.0.1:50051",
            "http://localhost",
            "http://[::1]:50051",
        ] {
            let d = Destinations::secure().origin_form_to(origin).unwrap();
            assert!(allows(&d, "/pkg.Svc/Method"), "{origin}");
            // Absolute URIs still follow the rule.
            assert!(allows(&d, "https://api.example.com/x"), "{origin}");
            assert!(!allows(&d, "http://api.example.com/x"), "{origin}");
            assert!(!allows(&d, "https://user@api.example.com/x"), "{origin}");
        }
        let d = Destinations::secure()
            .origin_form_to("https://Inventory.internal")
            .unwrap();
        assert_eq!(
            format!("{d:?}"),
            r#"Destinations::secure().origin_form_to("https://inventory.internal:443")"#
        );
    }

    #[test]
    fn origin_form_to_refuses_what_the_rule_refuses() {
        assert_eq!(
            invalid(Destinations::secure().origin_form_to("http://10.0.0.1:50051")),
            "invalid token destination: origin \"http://10.0.0.1:50051\" for origin-form \
             requests is neither https nor http to loopback: the token would cross the \
             network in clear text (Destinations::any() sends it anyway)"
        );
        assert_eq!(
            invalid(Destinations::secure().origin_form_to("https://user:pw@a.example.com")),
            "invalid token destination: origin \"https://user:pw@a.example.com\" must not \
             carry credentials"
        );
        for bad in [
            "http://inventory.internal",
            "https://a.example.com/prefix",
            "/pkg.Svc/Method",
            "a.example.com:443",
            "ftp://a.example.com",
            "not a url",
        ] {
            invalid(Destinations::secure().origin_form_to(bad));
        }
    }

    #[test]
    fn allow_origin_form_is_the_users_word() {
        let d = Destinations::secure().allow_origin_form();
        assert!(allows(&d, "/pkg.Svc/Method"));
        assert!(!allows(&d, "http://api.example.com/x"));
        assert_eq!(
            format!("{d:?}"),
            "Destinations::secure().allow_origin_form()"
        );
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let d =
            Destinations::origins(["https://API.example.com", "http://inventory:8080"]).unwrap();
        assert!(allows(&d, "https://api.example.com/orders?x=1"));
        assert!(allows(&d, "https://api.example.com:443/orders"));
        assert!(allows(&d, "HTTPS://Api.Example.Com/orders"));
        assert!(allows(&d, "http://inventory:8080/items"));
        assert!(!allows(&d, "http://api.example.com/orders"));
        assert!(!allows(&d, "https://api.example.com:8443/orders"));
        assert!(!allows(&d, "https://api.example.com.evil.test/orders"));
        assert!(!allows(&d, "https://user@api.example.com/orders"));
        assert!(!allows(&d, "http://inventory/items"));
        assert!(!allows(&d, "/relative"));
        assert_eq!(
            format!("{d:?}"),
            r#"Destinations::origins(["https://api.example.com:443", "http://inventory:8080"])"#
        );
        for bad in [
            "https://a/path",
            "a.example.com",
            "not a url",
            "https://user@a.example.com",
        ] {
            invalid(Destinations::origins([bad]));
        }
    }

    #[test]
    fn origins_take_origin_form_only_to_a_listed_origin() {
        let list = || Destinations::origins(["https://api.example.com", "http://inventory:8080"]);
        let d = list()
            .unwrap()
            .origin_form_to("http://inventory:8080")
            .unwrap();
        assert!(allows(&d, "/items"));
        assert!(allows(&d, "https://api.example.com/orders"));
        assert!(!allows(&d, "https://other.example.com/orders"));
        assert_eq!(
            invalid(list().unwrap().origin_form_to("https://other.example.com")),
            "invalid token destination: origin \"https://other.example.com\" for \
             origin-form requests is not one of the listed origins"
        );
        // Listing an http origin opted in to clear text for it already.
        invalid(list().unwrap().origin_form_to("http://inventory:8081"));
    }

    #[test]
    fn any_and_predicate() {
        let any = Destinations::any();
        for uri in ["http://anything/x", "/pkg.Svc/Method", "https://u@a/x"] {
            assert!(allows(&any, uri), "{uri}");
        }
        // `any` takes any origin, http to another host included.
        let to = Destinations::any()
            .origin_form_to("http://10.0.0.1:50051")
            .unwrap();
        assert!(allows(&to, "/pkg.Svc/Method"));
        assert_eq!(
            format!("{to:?}"),
            r#"Destinations::any().origin_form_to("http://10.0.0.1:50051")"#
        );

        let d = Destinations::predicate(|u| u.path().starts_with("/api/"));
        assert!(allows(&d, "http://x/api/a"));
        assert!(!allows(&d, "http://x/other"));
        // The predicate decides origin-form URIs itself.
        assert!(allows(&d, "/api/a"));
        assert!(!allows(&d, "/other"));
        assert_eq!(format!("{d:?}"), "Destinations::predicate(..)");
        invalid(d.origin_form_to("https://api.example.com"));
    }

    #[test]
    fn a_refused_origin_form_request_is_marked_logged_for_every_clone() {
        let d = Destinations::secure();
        let clone = d.clone();
        let OriginForm::Refused(warned) = &d.origin_form else {
            panic!("secure() refuses origin-form URIs");
        };
        assert!(!warned.load(Ordering::Relaxed));
        assert!(!allows(&clone, "/x"));
        assert!(warned.load(Ordering::Relaxed));
        // A value built separately logs on its own.
        let OriginForm::Refused(other) = &Destinations::secure().origin_form else {
            panic!("secure() refuses origin-form URIs");
        };
        assert!(!other.load(Ordering::Relaxed));
    }

    #[test]
    fn the_api_a_token_request_names_is_where_the_token_goes_by_default() {
        let named = |request: TokenRequest| Destinations::named_by(Some(&request));
        let cc = TokenRequest::client_credentials;
        let d = named(
            cc().resource("https://API.example.com/v1")
                .audience("https://api.example.com"),
        );
        assert_eq!(
            format!("{d:?}"),
            r#"Destinations::origins(["https://api.example.com:443"])"#
        );
        assert!(allows(&d, "https://api.example.com/orders"));
        assert!(!allows(&d, "https://other.example.com/orders"));
        let two = named(
            cc().resource("https://a.example")
                .resource("http://127.0.0.1:8081/x"),
        );
        assert!(allows(&two, "http://127.0.0.1:8081/y"));
        assert!(allows(&two, "https://a.example/y"));
        assert!(!allows(&two, "http://127.0.0.1:8082/y"));
        // Names that are no URL a token may go to: the permissive default.
        for request in [
            cc(),
            cc().audience("svc-b"),
            cc().resource("api://a"),
            cc().resource("http://api.example.com"),
            cc().resource("https://user@api.example.com"),
        ] {
            let d = named(request);
            assert_eq!(format!("{d:?}"), "Destinations::secure()");
            assert!(allows(&d, "https://anywhere.example/x"));
        }
        let d = Destinations::named_by(None);
        assert!(allows(&d, "https://anywhere.example/x"));
    }

    #[test]
    fn the_permissive_default_notes_a_second_origin_once() {
        let d = Destinations::named_by(None);
        let Kind::Secure(Some(watch)) = &d.kind else {
            panic!("the permissive default watches");
        };
        assert!(allows(&d, "https://a.example/x"));
        assert!(allows(&d, "https://A.example:443/y"));
        assert!(!watch.warned.load(Ordering::Relaxed));
        assert!(allows(&d.clone(), "https://b.example/x"));
        assert!(watch.warned.load(Ordering::Relaxed));
        assert_eq!(
            format!("{:?}", watch.first.get()),
            r#"Some("https://a.example:443")"#
        );
        // Chosen explicitly, `secure()` watches nothing.
        assert!(matches!(Destinations::secure().kind, Kind::Secure(None)));
    }
}
