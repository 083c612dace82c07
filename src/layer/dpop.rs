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
use crate::dpop::{ProofTarget, DPOP};
use crate::error::Error;

impl AuthPolicy {
    /// Puts `token` (its `Authorization` value) on a `method` request to
    /// `uri`, with a proof for it when it is a `DPoP` token (a server that
    /// issued a bearer token instead gets the token alone, and no nonce is
    /// learned from its answers). Returns where the proof went with which
    /// nonce: its answer's nonce is remembered for that origin, and judged
    /// against the one sent ([`AuthPolicy::after_dpop_response`]).
    pub(crate) fn authorize_dpop(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        token: HeaderValue,
    ) -> Result<Option<ProofTarget>, Error> {
        let target = match (self.cache().dpop(), dpop_token(&token)) {
            (Some(dpop), Some(access_token)) => {
                let uri = self.resolved(uri);
                let (proof, target) = dpop.proof_at_origin(method, &uri, Some(access_token))?;
                headers.insert(DPOP, proof);
                Some(target)
            }
            _ => {
                headers.remove(DPOP);
                None
            }
        };
        headers.insert(AUTHORIZATION, token);
        Ok(target)
    }

    /// [`AuthPolicy::after_response`] with DPoP: the answer's `DPoP-Nonce`
    /// is remembered for the origin the proof went to (`target`, from
    /// [`AuthPolicy::authorize_dpop`], whether or not the transport kept a
    /// copy of the request). A `use_dpop_nonce` 401 is never a refusal of
    /// the token (RFC 9449 §9: the nonce was stale, not the token): it is
    /// resent once with the same token and the nonce now known, whenever a
    /// copy was kept and that nonce is not the one the proof carried; as no
    /// 401 refetch, counted nowhere, and whether or not the 401 retry is on
    /// (a nonce's resend is not that retry). Otherwise it is returned as
    /// it came, and the token stays.
    pub(crate) fn after_dpop_response(
        &self,
        target: Option<&ProofTarget>,
        status: StatusCode,
        headers: &HeaderMap,
        sent: u64,
        resendable: bool,
        from: impl FnOnce() -> Resource,
    ) -> AfterResponse {
        let other_nonce = self.learn_nonce(target, headers);
        if !asks_dpop_nonce(status, headers) {
            return self.after_response(status, headers, sent, resendable, from);
        }
        if !other_nonce {
            tracing::debug!("use_dpop_nonce with no other nonce to send; returned as is");
        } else if resendable {
            tracing::debug!("the resource server asked for a DPoP nonce; resending once with it");
            return AfterResponse::ResendWithNonce(self.cache().lookup());
        } else {
            tracing::debug!(
                "use_dpop_nonce returned as is (no copy to resend); the next request has the nonce"
            );
        }
        AfterResponse::Return
    }

    /// [`AuthPolicy::after_resend`] with DPoP: the answer's `DPoP-Nonce` is
    /// remembered too, and a `use_dpop_nonce` (the nonce rotated again
    /// meanwhile) says nothing about the token: it is returned, nothing
    /// invalidated, counted or ended.
    pub(crate) fn after_dpop_resend(
        &self,
        target: Option<&ProofTarget>,
        status: StatusCode,
        headers: &HeaderMap,
        sent: u64,
        from: impl FnOnce() -> Resource,
    ) {
        self.learn_nonce(target, headers);
        if asks_dpop_nonce(status, headers) {
            tracing::debug!("a resend met use_dpop_nonce again; returned as is, the token kept");
            return;
        }
        self.after_resend(status, headers, sent, from);
    }

    /// Remembers the `DPoP-Nonce` in `headers` for the origin of `target`;
    /// whether a proof made now would carry another nonce than it did.
    fn learn_nonce(&self, target: Option<&ProofTarget>, headers: &HeaderMap) -> bool {
        match (self.cache().dpop(), target) {
            (Some(dpop), Some(target)) => dpop.learn_nonce(target, headers),
            _ => false,
        }
    }

    /// Whether a transport keeps a copy of a request to resend it: for the
    /// 401 retry, or for a DPoP nonce's resend, which is not that retry.
    #[inline]
    pub(crate) fn keeps_copies(&self) -> bool {
        self.retries_unauthorized() || self.uses_dpop()
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
