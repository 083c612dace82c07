//! DPoP (RFC 9449) on resource requests, for every transport: the
//! `Authorization: DPoP <token>` header with a fresh proof (`ath` included)
//! per request, the nonces the resource servers give, and the one resend a
//! `use_dpop_nonce` refusal gets. Taken only when the cache's endpoint
//! sends proofs ([`crate::TokenEndpoint::dpop`]): the bearer path does not
//! come here.

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::policy::{AfterResponse, AuthPolicy};
use crate::cache::Resource;
use crate::challenge::asks_dpop_nonce;
use crate::dpop::{Origin, DPOP};
use crate::error::Error;

impl AuthPolicy {
    /// Puts `token` (its `Authorization` value) on a `method` request to
    /// `uri`, with a proof for it when it is a `DPoP` token (a server that
    /// issued a bearer token instead gets the token alone). Returns the
    /// origin the request goes to, if it names one: its answer's nonce is
    /// remembered for it ([`AuthPolicy::after_dpop_response`]).
    pub(crate) fn authorize_dpop(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        token: HeaderValue,
    ) -> Result<Option<Origin>, Error> {
        let origin = match (self.cache().dpop(), dpop_token(&token)) {
            (Some(dpop), Some(access_token)) => {
                let uri = self.resolved(uri);
                let (proof, origin) = dpop.proof_at_origin(method, &uri, Some(access_token))?;
                headers.insert(DPOP, proof);
                Some(origin)
            }
            (dpop, _) => {
                headers.remove(DPOP);
                dpop.and_then(|_| Origin::of(&self.resolved(uri)).ok())
            }
        };
        headers.insert(AUTHORIZATION, token);
        Ok(origin)
    }

    /// [`AuthPolicy::after_response`] with DPoP: the answer's `DPoP-Nonce`
    /// is remembered for `origin` (the one [`AuthPolicy::authorize_dpop`]
    /// named, whether or not the transport kept a copy of the request), and
    /// a 401 asking for a nonce is resent once with the new one, with the
    /// same token, as no 401 refetch and not counted as one. A
    /// `use_dpop_nonce` not resent (no new nonce, no copy, the retry off)
    /// is returned as it came; the token stays.
    pub(crate) fn after_dpop_response(
        &self,
        origin: Option<&Origin>,
        status: StatusCode,
        headers: &HeaderMap,
        sent: u64,
        resendable: bool,
        from: impl FnOnce() -> Resource,
    ) -> AfterResponse {
        let new_nonce = self.learn_nonce(origin, headers);
        if !asks_dpop_nonce(status, headers) {
            return self.after_response(status, headers, sent, resendable, from);
        }
        if !new_nonce {
            tracing::debug!("use_dpop_nonce with no new nonce to send; returned as is");
        } else if resendable && self.retries_unauthorized() {
            tracing::debug!("the resource server asked for a DPoP nonce; resending once with it");
            return AfterResponse::ResendWithNonce(self.cache().lookup());
        } else {
            tracing::debug!(
                "use_dpop_nonce returned as is (not resent); the next request has the nonce"
            );
        }
        AfterResponse::Return
    }

    /// [`AuthPolicy::after_resend`] with DPoP: the answer's `DPoP-Nonce` is
    /// remembered for `origin` too.
    pub(crate) fn after_dpop_resend(
        &self,
        origin: Option<&Origin>,
        status: StatusCode,
        headers: &HeaderMap,
        sent: u64,
        from: impl FnOnce() -> Resource,
    ) {
        self.learn_nonce(origin, headers);
        self.after_resend(status, headers, sent, from);
    }

    /// Remembers the `DPoP-Nonce` in `headers` for `origin`; whether it was new.
    fn learn_nonce(&self, origin: Option<&Origin>, headers: &HeaderMap) -> bool {
        match (self.cache().dpop(), origin) {
            (Some(dpop), Some(origin)) => dpop.update_origin_nonce(origin, headers),
            _ => false,
        }
    }

    /// `uri`, or for an origin-form one (`/pkg.Svc/Method`, as tonic and
    /// `hyper::client::conn` send) the absolute URI at the origin that
    /// [`Destinations::origin_form_to`](super::Destinations::origin_form_to)
    /// named: the proof's `htu` and the nonce's origin.
    fn resolved<'a>(&self, uri: &'a Uri) -> Cow<'a, Uri> {
        match self.destination_rule().absolute(uri) {
            Some(absolute) => Cow::Owned(absolute),
            None => Cow::Borrowed(uri),
        }
    }
}

/// The access token of a `DPoP <token>` header value.
fn dpop_token(header: &HeaderValue) -> Option<&str> {
    let bytes = header.as_bytes();
    let scheme = bytes.get(..5)?;
    if !scheme.eq_ignore_ascii_case(b"DPoP ") {
        return None;
    }
    std::str::from_utf8(&bytes[5..]).ok()
}
