//! A resource server that asks the authorization server about every token:
//! it accepts a bearer token only if introspection (RFC 7662) says it is
//! active, so "revoked" and "expired" are the authorization server's word.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;

use crate::serve::{serve, Serving};
use crate::server::RealServer;

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
}

impl ResourceServer {
    pub async fn start(server: &RealServer) -> ResourceServer {
        let state = Arc::new(ResourceState {
            server: server.clone(),
            requests: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            tokens: Mutex::default(),
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

    /// The distinct access tokens presented so far, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().clone()
    }
}

/// 200 with the token's `client_id` as the body if introspection says the
/// bearer token is active; 401 with RFC 6750 `invalid_token` otherwise.
async fn protected(st: &ResourceState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
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
    if introspection["active"] == true {
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
