//! How a request carries its token, for every transport: the
//! `Authorization` header, and when the cache's token endpoint has a proof
//! key (DPoP, RFC 9449: `TokenEndpoint::dpop`) a fresh proof per request
//! beside it, the nonces the resource servers give, and the one resend a
//! refusal asking for a nonce (`use_dpop_nonce`) gets. The scheme is chosen
//! once, when the [`AuthPolicy`] is built (from its cache), and every
//! transport asks these methods, whatever it is: with no proof key they
//! are the bearer path, the same code whether DPoP is built in or not.
//!
//! A proof is made with the key the token it goes with is bound to (the
//! cache's record of its generation), never simply the key now: during a
//! rotation the old token goes on with the old key until the new key's
//! token is cached (`proof.rs`, "Rotation").

use std::borrow::Cow;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};

use super::policy::{AfterResponse, AuthPolicy, ResourceAnswer};
use crate::cache::Resource;
use crate::challenge::asks_dpop_nonce;
use crate::error::Error;
use crate::proof::{ProofKey, ProofKeys, SentProof};

impl AuthPolicy {
    /// Puts `token` (its `Authorization` value, of cache generation
    /// `generation`) on `req`, with the proof it needs when the tokens are
    /// bound to a key. Returns what the answer is judged against: where
    /// the proof went with which nonce (none for a bearer request), for
    /// [`AuthPolicy::after_answer`].
    #[inline(always)]
    pub(crate) fn authorize<B>(
        &self,
        req: &mut Request<B>,
        token: HeaderValue,
        generation: u64,
    ) -> Result<Option<SentProof>, Error> {
        // The bearer path inline, as a transport that set the header itself
        // would have it; a proof is signed out of line.
        if self.proof_key().is_none() {
            req.headers_mut().insert(AUTHORIZATION, token);
            return Ok(None);
        }
        self.authorize_with_proof(req, token, generation)
    }

    #[inline(never)]
    fn authorize_with_proof<B>(
        &self,
        req: &mut Request<B>,
        token: HeaderValue,
        generation: u64,
    ) -> Result<Option<SentProof>, Error> {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        self.authorize_parts(&method, &uri, req.headers_mut(), token, generation)
    }

    /// [`AuthPolicy::authorize`] for a request given in parts (a reqwest
    /// request's). A proof's `htu` and its nonce's origin are the absolute
    /// URI an origin-form `uri` stands for ([`AuthPolicy::resolved`]).
    pub(crate) fn authorize_parts(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        token: HeaderValue,
        generation: u64,
    ) -> Result<Option<SentProof>, Error> {
        let proof = match self.proof_key() {
            Some(keys) => {
                let key = self.bound_key(keys, generation)?;
                let uri = self.resolved(uri);
                (key.prover()).prove_resource_request(method, &uri, &token, headers)?
            }
            None => None,
        };
        headers.insert(AUTHORIZATION, token);
        Ok(proof)
    }

    /// The key token `generation` is bound to. One that is no longer the
    /// key now (rotated, or its file rewritten) starts the new key's token
    /// fetch, in the background: this request still goes with its token
    /// and the key it is bound to.
    fn bound_key(&self, keys: &ProofKeys, generation: u64) -> Result<ProofKey, Error> {
        let cache = self.cache();
        let Some(key) = cache.bound_key(generation) else {
            // Only after many more tokens were cached during this send.
            return Err(Error::invalid_token(
                "the proof key its token is bound to is no longer known (many tokens were \
                 cached while this request was being sent); send the request again",
            ));
        };
        if !keys.is_current(&key) {
            tracing::debug!("the token is bound to a key rotated away; fetching the new key's");
            cache.key_rotated();
        }
        Ok(key)
    }

    /// What to do with the answer to a first send: [`AuthPolicy::after_response`],
    /// and with a proof key the nonce rules first. The answer's nonce is
    /// remembered for the server the proof went to (`proof`, whether or
    /// not the transport kept a copy of the request). A `use_dpop_nonce`
    /// 401 is never a refusal of the token (RFC 9449 §9: the nonce was
    /// stale, not the token): it is resent once with the same token and
    /// the nonce now known, whenever a copy was kept and that nonce is not
    /// the one the proof carried; as no 401 refetch, counted nowhere, and
    /// whether or not the 401 retry is on (a nonce's resend is not that
    /// retry). Otherwise it is returned as it came, and the token stays.
    #[inline(always)]
    pub(crate) fn after_answer(
        &self,
        proof: Option<&SentProof>,
        answer: ResourceAnswer<'_>,
        from: impl FnOnce() -> Resource,
    ) -> AfterResponse {
        if self.proof_key().is_none() {
            return self.after_response(answer, from);
        }
        self.after_answer_with_proof(proof, answer, from)
    }

    #[inline(never)]
    fn after_answer_with_proof(
        &self,
        proof: Option<&SentProof>,
        answer: ResourceAnswer<'_>,
        from: impl FnOnce() -> Resource,
    ) -> AfterResponse {
        let other_nonce = proof.is_some_and(|p| p.learn_nonce(answer.headers));
        if !asks_dpop_nonce(answer.status, answer.headers) {
            return self.after_response(answer, from);
        }
        if !other_nonce {
            tracing::debug!("use_dpop_nonce with no other nonce to send; returned as is");
        } else if answer.resendable {
            tracing::debug!("the resource server asked for a DPoP nonce; resending once with it");
            return AfterResponse::ResendWithNonce(self.cache().lookup());
        } else {
            tracing::debug!(
                "use_dpop_nonce returned as is (no copy to resend); the next request has the nonce"
            );
        }
        AfterResponse::Return
    }

    /// What the answer to a resend says about its token ([`AuthPolicy::after_resend`]);
    /// the answer is returned whatever it is. With a proof key its nonce
    /// is remembered too, and a `use_dpop_nonce` (the nonce rotated again
    /// meanwhile) says nothing about the token: nothing is invalidated,
    /// counted or ended.
    #[inline]
    pub(crate) fn after_resend_answer(
        &self,
        proof: Option<&SentProof>,
        answer: ResourceAnswer<'_>,
        from: impl FnOnce() -> Resource,
    ) {
        if self.proof_key().is_some() {
            if let Some(proof) = proof {
                proof.learn_nonce(answer.headers);
            }
            if asks_dpop_nonce(answer.status, answer.headers) {
                tracing::debug!(
                    "a resend met use_dpop_nonce again; returned as is, the token kept"
                );
                return;
            }
        }
        self.after_resend(answer, from);
    }

    /// Whether a transport keeps a copy of a request to resend it: for the
    /// 401 retry, or for a nonce's resend, which is not that retry.
    #[inline]
    pub(crate) fn keeps_copies(&self) -> bool {
        self.retries_unauthorized() || self.proof_key().is_some()
    }

    /// With a proof key, why a request to `uri` cannot be proved: a
    /// path-only URI that no origin stands for (origin-form allowed by
    /// [`Destinations::allow_origin_form`](super::Destinations::allow_origin_form),
    /// not `origin_form_to`) names no `htu`. Asked before a token is fetched
    /// for a request, which would fail once it came (RFC 9449 §4.2).
    pub(crate) fn unprovable(&self, uri: &Uri) -> Option<Error> {
        self.proof_key()?;
        let uri = self.resolved(uri);
        let absolute = uri.scheme().is_some() && uri.authority().is_some();
        (!absolute).then(|| {
            Error::invalid_destination(
                "a proof of possession needs the request's absolute URI (scheme and host); \
                 a path-only URI names none: name the connection's origin with \
                 Destinations::origin_form_to",
            )
        })
    }

    /// `uri`, or for an origin-form one (`/pkg.Svc/Method`, as tonic and
    /// `hyper::client::conn` send) the absolute URI at the origin that
    /// [`Destinations::origin_form_to`](super::Destinations::origin_form_to)
    /// named: a proof names the absolute URI.
    fn resolved<'a>(&self, uri: &'a Uri) -> Cow<'a, Uri> {
        match self.destination_rule().absolute(uri) {
            Some(absolute) => Cow::Owned(absolute),
            None => Cow::Borrowed(uri),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Response, StatusCode};
    use http_body_util::Full;
    use tower::{service_fn, Layer, ServiceExt};

    use super::*;
    use crate::cache::RefreshPolicy;
    use crate::layer::testing::cache_with;
    use crate::proof::{ProofAnswered, Prover};
    use crate::OAuth2Layer;

    /// A proof scheme of the tests, built with or without DPoP: proof `n`
    /// is the header `x-proof: n`; an answer with `x-new-nonce` brings
    /// another nonce.
    #[derive(Default)]
    struct Numbered(AtomicU32);

    struct Answered;

    impl ProofAnswered for Answered {
        fn learn_nonce(&self, headers: &HeaderMap) -> bool {
            headers.contains_key("x-new-nonce")
        }
    }

    impl Prover for Arc<Numbered> {
        fn thumbprint(&self) -> &str {
            "numbered"
        }

        fn prove_resource_request(
            &self,
            _: &Method,
            uri: &Uri,
            _: &HeaderValue,
            headers: &mut HeaderMap,
        ) -> Result<Option<SentProof>, Error> {
            assert_eq!(
                uri, "https://api.example.com/x",
                "the absolute URI is proved"
            );
            let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            headers.insert("x-proof", HeaderValue::from(n));
            Ok(Some(SentProof::new(Answered)))
        }

        fn prove_token_request(&self, _: &Uri, _: &mut HeaderMap) -> Result<SentProof, Error> {
            Ok(SentProof::new(Answered))
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// The one set of states carries any scheme: a nonce's refusal is
    /// resent once with a new proof, counted as no retry, nothing
    /// invalidated, the retry off.
    #[tokio::test]
    async fn a_proof_scheme_resends_a_nonce_refusal_once_through_the_same_states() {
        let prover = Arc::new(Numbered::default());
        let key = ProofKey::new(prover.clone());
        let cache = cache_with(RefreshPolicy::default(), Some(key));
        let api = service_fn(|req: Request<Full<Bytes>>| async move {
            let proof = req.headers()["x-proof"].clone();
            let mut answer = Response::new(Full::new(Bytes::new()));
            if proof == "1" {
                *answer.status_mut() = StatusCode::UNAUTHORIZED;
                let challenge = r#"DPoP error="use_dpop_nonce""#;
                answer
                    .headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static(challenge));
                answer
                    .headers_mut()
                    .insert("x-new-nonce", HeaderValue::from_static("n"));
            }
            answer.headers_mut().insert("x-proof-seen", proof);
            Ok::<_, Infallible>(answer)
        });
        let layer = OAuth2Layer::for_origin(cache.clone(), "https://api.example.com")
            .unwrap()
            .retry_unauthorized(false);
        let request = Request::get("https://api.example.com/x").body(Full::default());
        let answer = layer.layer(api).oneshot(request.unwrap()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["x-proof-seen"], "2");
        let stats = cache.stats();
        assert_eq!(
            (stats.token_fetches, stats.retries, stats.invalidations),
            (1, 0, 0)
        );
    }
}
