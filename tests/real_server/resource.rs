//! A resource server that asks the authorization server about every token:
//! it accepts a bearer token only if introspection (RFC 7662) says it is
//! active, so "revoked" and "expired" are the authorization server's word.
//! A DPoP-bound token (introspection's `cnf.jkt`) is accepted only as
//! `Authorization: DPoP` with a proof (RFC 9449 §7) of that key for this
//! request (`htm`, `htu`, `ath`, `iat`, unseen `jti`, and the nonce this
//! server asks for, if any).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;

use super::serve::{serve, Serving};
use super::server::RealServer;

pub struct ResourceServer {
    serving: Serving,
    state: Arc<ResourceState>,
}

struct ResourceState {
    server: RealServer,
    requests: AtomicUsize,
    unauthorized: AtomicUsize,
    /// Distinct access tokens presented, in order.
    tokens: Mutex<Vec<String>>,
    /// The nonce DPoP proofs must carry, if any.
    dpop_nonce: Mutex<Option<String>>,
    /// Every DPoP proof `jti` seen, and why each refused proof was refused.
    dpop_seen: Mutex<HashSet<String>>,
    dpop_refusals: Mutex<Vec<String>>,
}

impl ResourceServer {
    pub async fn start(server: &RealServer) -> ResourceServer {
        let state = Arc::new(ResourceState {
            server: server.clone(),
            requests: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            tokens: Mutex::default(),
            dpop_nonce: Mutex::default(),
            dpop_seen: Mutex::default(),
            dpop_refusals: Mutex::default(),
        });
        let st = state.clone();
        let serving = serve(tower::service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(protected(&st, req).await) }
        }))
        .await;
        ResourceServer { serving, state }
    }

    pub fn url(&self, path: &str) -> String {
        self.serving.url(path)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn unauthorized(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }

    /// DPoP proofs must carry `nonce` from now on (`use_dpop_nonce` else).
    pub fn require_dpop_nonce(&self, nonce: &str) {
        *self.state.dpop_nonce.lock().unwrap() = Some(nonce.to_owned());
    }

    /// Why each DPoP proof was refused, in order.
    pub fn dpop_refusals(&self) -> Vec<String> {
        self.state.dpop_refusals.lock().unwrap().clone()
    }

    /// The distinct access tokens presented so far, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().clone()
    }
}

/// 200 with the token's `client_id` as the body if introspection says the
/// bearer token is active; 401 with RFC 6750 `invalid_token` otherwise.
async fn protected(st: &ResourceState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let dpop = authorization
        .and_then(|v| v.strip_prefix("DPoP "))
        .map(str::to_owned);
    if let Some(token) = dpop {
        return dpop_protected(st, &req, &token).await;
    }
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let introspection = match &token {
        Some(token) => {
            {
                let mut seen = st.tokens.lock().unwrap();
                if !seen.contains(token) {
                    seen.push(token.clone());
                }
            }
            st.server.introspect(token).await
        }
        None => Value::Null,
    };
    // A token bound to a key is no bearer token (RFC 9449 §7.2).
    if introspection["active"] == true && introspection["cnf"]["jkt"].is_null() {
        let client_id = introspection["client_id"].as_str().unwrap_or_default();
        return Response::new(Full::from(client_id.to_owned()));
    }
    st.unauthorized.fetch_add(1, Ordering::SeqCst);
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
        .body(Full::default())
        .unwrap()
}

/// A `DPoP` token: its proof checked, then introspected, and the key of the
/// proof must be the one the token is bound to (`cnf.jkt`).
async fn dpop_protected(
    st: &ResourceState,
    req: &Request<Incoming>,
    token: &str,
) -> Response<Full<Bytes>> {
    let host = req.headers().get("host").and_then(|v| v.to_str().ok());
    let htu = format!("http://{}{}", host.unwrap_or_default(), req.uri().path());
    let nonce = st.dpop_nonce.lock().unwrap().clone();
    let expect = super::dpop_proof::Expect {
        htm: req.method().as_str(),
        htu: &htu,
        nonce: nonce.as_deref(),
        access_token: Some(token),
    };
    let checked =
        super::dpop_proof::check(req.headers(), &expect, &mut st.dpop_seen.lock().unwrap());
    let refusal = match checked {
        Ok(proof) => {
            let info = st.server.introspect(token).await;
            if info["active"] == true && info["cnf"]["jkt"] == proof.jkt.as_str() {
                let client_id = info["client_id"].as_str().unwrap_or_default();
                return Response::new(Full::from(client_id.to_owned()));
            }
            format!("not bound to the proof's key: {info}")
        }
        Err(super::dpop_proof::Refused::UseNonce) => "use_dpop_nonce".to_owned(),
        Err(super::dpop_proof::Refused::Invalid(why)) => why,
    };
    st.unauthorized.fetch_add(1, Ordering::SeqCst);
    let error = if refusal == "use_dpop_nonce" {
        "use_dpop_nonce"
    } else {
        "invalid_dpop_proof"
    };
    st.dpop_refusals.lock().unwrap().push(refusal);
    let mut answer = Response::builder().status(StatusCode::UNAUTHORIZED).header(
        WWW_AUTHENTICATE,
        format!(r#"DPoP error="{error}", algs="ES256""#),
    );
    if let Some(nonce) = nonce {
        answer = answer.header("dpop-nonce", nonce);
    }
    answer.body(Full::default()).unwrap()
}
