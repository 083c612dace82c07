//! Helpers for the unit tests of this module.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;

use crate::cache::RefreshPolicy;
use crate::proof::ProofKey;
use crate::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// A cache whose token endpoint answers `at-1`, `at-2`, … in turn.
pub(crate) fn cache() -> TokenCache {
    cache_with_policy(RefreshPolicy::default())
}

/// [`cache`] with the refresh policy `policy`.
pub(crate) fn cache_with_policy(policy: RefreshPolicy) -> TokenCache {
    cache_with(policy, None)
}

/// [`cache`] whose endpoint has the proof key `proof_key`.
pub(crate) fn cache_with(policy: RefreshPolicy, proof_key: Option<ProofKey>) -> TokenCache {
    let issued = Arc::new(AtomicU32::new(0));
    let http = tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        let n = issued.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let body =
                format!(r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":300}}"#);
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
        }
    });
    let mut endpoint = TokenEndpoint::new(
        http,
        TokenUrl::new("https://as.example.com/token").unwrap(),
        ClientAuth::client_secret_basic("svc", "secret"),
    );
    endpoint.proof_key = proof_key.map(crate::proof::ProofKeys::fixed);
    TokenCache::builder(endpoint, TokenRequest::client_credentials())
        .refresh_policy(policy)
        .build()
}
