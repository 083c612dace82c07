//! The demo's own token endpoint and resource server (used with no
//! arguments), on one port of 127.0.0.1: `/token` issues 2-second tokens,
//! every other path accepts only a live one, and the current one can be
//! revoked so the 401 retry shows.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// How long the tokens live, in seconds.
pub const TOKEN_TTL: u64 = 2;

pub struct LocalServer {
    pub addr: SocketAddr,
    started: Instant,
    tokens: Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    next: u64,
    valid: HashMap<String, Instant>,
    revoked: HashSet<String>,
    newest: Option<String>,
}

impl LocalServer {
    pub async fn start() -> Arc<LocalServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let server = Arc::new(LocalServer {
            addr: listener.local_addr().expect("local address"),
            started: Instant::now(),
            tokens: Mutex::new(Tokens::default()),
        });
        let s = server.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let s = s.clone();
            async move { s.handle(req).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    fn log(&self, what: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        crate::progress::println(format_args!("[{secs:>5.2}s] {what}"));
    }

    fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Revokes the newest token: the next request with it gets a 401.
    pub fn revoke_current(&self) {
        let newest = {
            let mut t = self.tokens();
            let newest = t.newest.clone();
            t.revoked.extend(newest.clone());
            newest
        };
        if let Some(newest) = newest {
            self.log(&format!(
                "resource server: revoking {newest} (the next request gets a 401)"
            ));
        }
    }

    async fn handle(&self, req: Request) -> Response {
        if req.uri().path() == "/token" {
            let body = req.into_body().collect().await.map(|c| c.to_bytes());
            return self.token(&body.unwrap_or_default());
        }
        let token = bearer_token(req.headers());
        let ok = token.is_some_and(|tok| {
            let t = self.tokens();
            !t.revoked.contains(tok) && t.valid.get(tok).is_some_and(|exp| Instant::now() < *exp)
        });
        if ok {
            return json(StatusCode::OK, r#"{"orders":[]}"#);
        }
        let who = token.unwrap_or("a request without a token");
        self.log(&format!("resource server: 401 for {who}"));
        let mut r = json(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_token"}"#);
        let challenge = HeaderValue::from_static(r#"Bearer error="invalid_token""#);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        r
    }

    /// `POST /token`: the client-credentials grant, any client.
    fn token(&self, form: &[u8]) -> Response {
        let form: HashMap<String, String> = form_urlencoded::parse(form).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"unsupported_grant_type"}"#,
            );
        }
        let token = {
            let mut t = self.tokens();
            t.next += 1;
            let token = format!("demo-token-{}", t.next);
            let expiry = Instant::now() + Duration::from_secs(TOKEN_TTL);
            t.valid.insert(token.clone(), expiry);
            t.newest = Some(token.clone());
            token
        };
        self.log(&format!(
            "token endpoint: issued {token} (expires_in={TOKEN_TTL})"
        ));
        json(
            StatusCode::OK,
            &format!(
                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{TOKEN_TTL},"scope":"orders:read"}}"#
            ),
        )
    }
}

/// The token of an `Authorization: Bearer` header, if any.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ")
}

fn json(status: StatusCode, body: &str) -> Response {
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    (status, content_type, Body::from(body.to_owned())).into_response()
}
