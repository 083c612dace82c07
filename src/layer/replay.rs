use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use http_body::Body;

use super::policy::SentTo;
use crate::cache::Resource;

/// Decides whether a request body can be kept for a resend after a 401.
///
/// Asked once per request, before it is sent. Any
/// `Fn(&B) -> Option<B> + Clone` is a policy too.
pub trait ReplayBody<B> {
    /// A copy of `body` to resend, or `None` if it cannot be resent.
    fn replay_body(&self, body: &B) -> Option<B>;
}

/// Resends only empty bodies (`size_hint().exact() == Some(0)`), as
/// `B::default()`: the default, as in tower-http's `follow_redirect`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayEmpty;

impl<B: Body + Default> ReplayBody<B> for ReplayEmpty {
    fn replay_body(&self, body: &B) -> Option<B> {
        (body.size_hint().exact() == Some(0)).then(B::default)
    }
}

/// Resends any body that is `Clone` (like `Full<Bytes>`, whose clone shares
/// the bytes).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayClone;

impl<B: Clone> ReplayBody<B> for ReplayClone {
    fn replay_body(&self, body: &B) -> Option<B> {
        Some(body.clone())
    }
}

/// Never resends: for bodies that have no empty value to resend with
/// (hyper's `Incoming`, in a proxy). A 401 still drops the token, so the
/// next request gets a new one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> ReplayBody<B> for NoReplay {
    fn replay_body(&self, _body: &B) -> Option<B> {
        None
    }
}

impl<B, F> ReplayBody<B> for F
where
    F: Fn(&B) -> Option<B>,
{
    fn replay_body(&self, body: &B) -> Option<B> {
        self(body)
    }
}

/// What a resend after a 401 needs: the request without its token, a copy
/// of its body, and a clone of the inner service to send it with.
pub(crate) struct Replay<S, B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: B,
    service: S,
}

impl<S, B> Replay<S, B> {
    /// A copy of `req` with `body` as its body, to be sent by `service`. It
    /// is taken before the token goes in: the resend gets a new one anyway,
    /// and a request with no other headers then has an empty map to copy
    /// (no allocation).
    pub(crate) fn new(req: &Request<B>, body: B, service: S) -> Self {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            extensions: req.extensions().clone(),
            body,
            service,
        }
    }

    /// Where the request goes.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request to resend (without a token yet) and the service to send
    /// it with.
    pub(crate) fn into_request(self) -> (S, Request<B>) {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        (self.service, req)
    }
}

/// What the answers to a request need of it, besides its token: the copy
/// to resend it, or where it went (the answers are recorded for that
/// resource server, ARCHITECTURE.md invariant 6).
pub(crate) enum Kept<S, B> {
    /// The copy to resend it once (it has the URI).
    Copy(Replay<S, B>),
    /// No copy (the retry is off, the body could not be kept, or the copy
    /// was resent): where the request went.
    SentTo(SentTo),
}

impl<S, B> Kept<S, B> {
    /// What is kept of `req`: a copy with `body` as its body, to be sent by
    /// the clone of `service`, when `body` is `Some`. It is taken before
    /// the token goes in (see [`Replay::new`]).
    #[inline]
    pub(crate) fn of(req: &Request<B>, body: Option<B>, service: &S) -> Self
    where
        S: Clone,
    {
        match body {
            Some(body) => Kept::Copy(Replay::new(req, body, service.clone())),
            None => Kept::SentTo(SentTo::of(req.uri())),
        }
    }

    /// Whether a copy is kept.
    pub(crate) fn has_copy(&self) -> bool {
        matches!(self, Kept::Copy(_))
    }

    /// The copy, if there is one, leaving where it goes in its place.
    pub(crate) fn take_copy(&mut self) -> Option<Replay<S, B>> {
        let Kept::Copy(copy) = self else {
            return None;
        };
        let sent_to = SentTo::of(copy.uri());
        match std::mem::replace(self, Kept::SentTo(sent_to)) {
            Kept::Copy(copy) => Some(copy),
            Kept::SentTo(_) => None,
        }
    }

    /// The resource server the request went to.
    pub(crate) fn resource(&self) -> Resource {
        match self {
            Kept::Copy(copy) => Resource::of(copy.uri()),
            Kept::SentTo(sent_to) => sent_to.resource(),
        }
    }
}
