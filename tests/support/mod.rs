//! A scriptable fake authorization server and protected resource server,
//! listening on 127.0.0.1 (port 0), for the integration tests.
//!
//! `/token` is an RFC 6749 token endpoint: it records every request, counts
//! them, checks client credentials, issues `at-N` access tokens (and `rt-N`
//! refresh tokens, rotated when asked) with a configurable `expires_in`,
//! waits a configurable latency, and plays canned answers from a script.
//! Every other path is a protected resource that accepts only tokens this
//! server issued, not revoked, not expired; it answers
//! `401` with `WWW-Authenticate: Bearer error="invalid_token"` otherwise.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A canned answer.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Canned {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status, "application/json", body)
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the token endpoint received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Received {
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCheck {
    /// Accept any client.
    Any,
    /// Require client_secret_basic with these (decoded) credentials.
    Basic,
    /// Require client_secret_post.
    Post,
    /// Accept either.
    BasicOrPost,
}

struct Inner {
    ttl: Option<u64>,
    latency: Duration,
    script: VecDeque<Canned>,
    failing: Option<Canned>,
    received: Vec<Received>,
    issued: HashMap<String, Option<Instant>>,
    revoked: HashSet<String>,
    refresh_tokens: HashSet<String>,
    rotate_refresh: bool,
    issue_refresh: bool,
    next: u64,
    client_id: String,
    client_secret: String,
    client_check: ClientCheck,
    resource_bodies: Vec<(String, Option<String>, Bytes)>,
    reject_all: bool,
    prefix: String,
}

impl Inner {
    /// The one rule for a valid token: issued here, not revoked, not
    /// expired, and the server not told to refuse everything.
    fn accepts(&self, access_token: &str) -> bool {
        !self.reject_all
            && !self.revoked.contains(access_token)
            && matches!(self.issued.get(access_token), Some(exp) if exp.is_none_or(|e| Instant::now() < e))
    }
}

pub struct State {
    inner: Mutex<Inner>,
    pub token_requests: AtomicUsize,
    pub resource_requests: AtomicUsize,
    pub unauthorized: AtomicUsize,
    /// Resource requests are held until this many have arrived (0: none).
    gate: AtomicUsize,
    gate_open: tokio::sync::Notify,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server issuing tokens that live an hour.
    pub async fn start() -> TestServer {
        Self::start_on(0).await
    }

    /// Starts a server on a given 127.0.0.1 port (0: any free one).
    pub async fn start_on(port: u16) -> TestServer {
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                ttl: Some(3600),
                latency: Duration::ZERO,
                script: VecDeque::new(),
                failing: None,
                received: Vec::new(),
                issued: HashMap::new(),
                revoked: HashSet::new(),
                refresh_tokens: HashSet::new(),
                rotate_refresh: false,
                issue_refresh: true,
                next: 0,
                client_id: "client".into(),
                client_secret: "secret".into(),
                client_check: ClientCheck::Any,
                resource_bodies: Vec::new(),
                reject_all: false,
                prefix: String::new(),
            }),
            token_requests: AtomicUsize::new(0),
            resource_requests: AtomicUsize::new(0),
            gate: AtomicUsize::new(0),
            gate_open: tokio::sync::Notify::new(),
            unauthorized: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestServer { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn token_url(&self) -> String {
        self.url("/token")
    }
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.state.inner.lock().unwrap())
    }
    pub fn set_ttl(&self, ttl: Option<u64>) {
        self.with(|i| i.ttl = ttl);
    }
    pub fn set_latency(&self, d: Duration) {
        self.with(|i| i.latency = d);
    }
    pub fn set_client(&self, id: &str, secret: &str, check: ClientCheck) {
        self.with(|i| {
            i.client_id = id.into();
            i.client_secret = secret.into();
            i.client_check = check;
        });
    }
    pub fn set_rotate_refresh(&self, on: bool) {
        self.with(|i| i.rotate_refresh = on);
    }
    pub fn set_issue_refresh(&self, on: bool) {
        self.with(|i| i.issue_refresh = on);
    }
    /// Adds a refresh token the server accepts.
    pub fn add_refresh_token(&self, rt: &str) {
        self.with(|i| {
            i.refresh_tokens.insert(rt.into());
        });
    }
    /// The next token requests are answered with these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Canned>) {
        self.with(|i| i.script.extend(answers));
    }
    /// Every token request is answered with this until cleared.
    pub fn set_failing(&self, answer: Option<Canned>) {
        self.with(|i| i.failing = answer);
    }
    /// Issued tokens are `{prefix}at-N` and `{prefix}rt-N`.
    pub fn set_token_prefix(&self, prefix: &str) {
        self.with(|i| i.prefix = prefix.into());
    }
    /// The resource server accepts this token too (one issued elsewhere).
    pub fn add_valid_token(&self, access_token: &str) {
        self.with(|i| {
            i.issued.insert(access_token.into(), None);
        });
    }
    /// Whether the resource server would accept this access token now.
    pub fn token_is_valid(&self, access_token: &str) -> bool {
        StateHandle::new(self.state.clone()).token_is_valid(access_token)
    }
    /// Holds resource answers until the resource server has received
    /// `total` requests in all (counting those already answered).
    pub fn hold_resource_answers_until(&self, total: usize) {
        self.state.gate.store(total, Ordering::SeqCst);
    }
    /// The resource server refuses every token.
    pub fn set_reject_all(&self, on: bool) {
        self.with(|i| i.reject_all = on);
    }
    pub fn revoke(&self, access_token: &str) {
        self.with(|i| {
            i.revoked.insert(access_token.into());
        });
    }
    pub fn revoke_all(&self) {
        self.with(|i| {
            let all: Vec<String> = i.issued.keys().cloned().collect();
            i.revoked.extend(all);
        });
    }
    pub fn received(&self) -> Vec<Received> {
        self.with(|i| i.received.clone())
    }
    /// (path, Authorization header, body) of each resource request.
    pub fn resource_requests(&self) -> Vec<(String, Option<String>, Bytes)> {
        self.with(|i| i.resource_bodies.clone())
    }
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }
    pub fn resource_count(&self) -> usize {
        self.state.resource_requests.load(Ordering::SeqCst)
    }
    pub fn unauthorized_count(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }
}

fn respond(c: Canned) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(c.status);
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(Bytes::from(c.body))).unwrap()
}

fn oauth_error(status: u16, code: &str, description: &str) -> Canned {
    Canned::json(
        status,
        &format!(r#"{{"error":"{code}","error_description":"{description}"}}"#),
    )
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if parts.uri.path() == "/token" {
        return Ok(token(&st, parts, body).await);
    }
    st.resource_requests.fetch_add(1, Ordering::SeqCst);
    // Hold answers until the gate's count of requests has arrived, so that
    // concurrent requests really are in flight together.
    loop {
        let open = st.gate_open.notified();
        let gate = st.gate.load(Ordering::SeqCst);
        if gate == 0 || st.resource_requests.load(Ordering::SeqCst) >= gate {
            st.gate_open.notify_waiters();
            break;
        }
        open.await;
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ok = {
        let mut i = st.inner.lock().unwrap();
        i.resource_bodies
            .push((parts.uri.path().to_owned(), auth.clone(), body.clone()));
        auth.as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| i.accepts(t))
    };
    if ok {
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = StatusCode::OK;
        Ok(resp)
    } else {
        st.unauthorized.fetch_add(1, Ordering::SeqCst);
        Ok(Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                r#"Bearer realm="test", error="invalid_token""#,
            )
            .body(Full::new(Bytes::from_static(b"unauthorized")))
            .unwrap())
    }
}

async fn token(st: &State, parts: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
    st.token_requests.fetch_add(1, Ordering::SeqCst);
    let received = Received {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let latency = {
        let mut i = st.inner.lock().unwrap();
        i.received.push(received.clone());
        i.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut i = st.inner.lock().unwrap();
    if let Some(c) = i.script.pop_front() {
        return respond(c);
    }
    if let Some(c) = i.failing.clone() {
        return respond(c);
    }
    if received.method != "POST" {
        return respond(oauth_error(405, "invalid_request", "POST only"));
    }
    // Client authentication (RFC 6749 §2.3.1): form-decode after base64.
    let basic = received
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let dec = |x: &str| {
                form_urlencoded::parse(format!("x={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, dec(secret)?))
        });
    let post = match (received.param("client_id"), received.param("client_secret")) {
        (Some(id), Some(secret)) => Some((id, secret)),
        _ => None,
    };
    let want = (i.client_id.clone(), i.client_secret.clone());
    let authenticated = match i.client_check {
        ClientCheck::Any => true,
        ClientCheck::Basic => basic.as_ref() == Some(&want),
        ClientCheck::Post => post.as_ref() == Some(&want),
        ClientCheck::BasicOrPost => basic.as_ref() == Some(&want) || post.as_ref() == Some(&want),
    };
    if !authenticated {
        return respond(
            oauth_error(401, "invalid_client", "Client authentication failed")
                .header("www-authenticate", "Basic realm=\"token\""),
        );
    }
    let grant = received.param("grant_type").unwrap_or_default();
    let mut new_refresh = None;
    match grant.as_str() {
        "client_credentials" | "password" | "authorization_code" => {
            if grant != "client_credentials" && i.issue_refresh {
                new_refresh = Some(true);
            }
        }
        "refresh_token" => {
            let rt = received.param("refresh_token").unwrap_or_default();
            if !i.refresh_tokens.contains(&rt) {
                return respond(oauth_error(
                    400,
                    "invalid_grant",
                    "refresh token is invalid or revoked",
                ));
            }
            if i.rotate_refresh {
                i.refresh_tokens.remove(&rt);
                new_refresh = Some(true);
            }
        }
        _ if grant.starts_with("urn:") => {}
        _ => return respond(oauth_error(400, "unsupported_grant_type", "unknown grant")),
    }
    i.next += 1;
    let n = i.next;
    let at = format!("{}at-{n}", i.prefix);
    let expiry = i.ttl.map(|t| Instant::now() + Duration::from_secs(t));
    i.issued.insert(at.clone(), expiry);
    let mut fields = vec![
        format!(r#""access_token":"{at}""#),
        r#""token_type":"Bearer""#.to_owned(),
    ];
    if let Some(t) = i.ttl {
        fields.push(format!(r#""expires_in":{t}"#));
    }
    if new_refresh.is_some() {
        let rt = format!("{}rt-{n}", i.prefix);
        i.refresh_tokens.insert(rt.clone());
        fields.push(format!(r#""refresh_token":"{rt}""#));
    }
    if let Some(scope) = received.param("scope") {
        fields.push(format!(r#""scope":"{scope}""#));
    }
    respond(Canned::json(200, &format!("{{{}}}", fields.join(","))))
}

/// A handle on a server's state that outlives borrows of the server (for
/// services started beside it, such as a gRPC server).
#[derive(Clone)]
pub struct StateHandle(Arc<State>);

impl StateHandle {
    pub fn new(state: Arc<State>) -> Self {
        StateHandle(state)
    }
    pub fn token_is_valid(&self, access_token: &str) -> bool {
        self.0.accepts(access_token)
    }
}

/// The hyper-util client type the tests use.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A hyper-util HTTP/2 (prior knowledge) client: many concurrent requests
/// share one connection.
pub fn http2_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A hyper-util HTTP/1 client over plain TCP.
pub fn http_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// Another listener of a [`TestServer`] (see [`TestServer::serve_also`]);
/// it stops when dropped.
pub struct Frontend {
    pub addr: SocketAddr,
    /// Connections `accept` turned into a stream (TLS handshakes done).
    pub accepted: Arc<AtomicUsize>,
    /// Connections `accept` failed on (TLS handshakes refused).
    pub refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Frontend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Frontend {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl TestServer {
    /// Serves this server's token endpoint and resources (same state, same
    /// counters) on one more listener on 127.0.0.1 (port 0), over whatever
    /// `accept` makes of each TCP connection: a TLS stream, say.
    pub async fn serve_also<F, Fut, IO>(&self, accept: F) -> Frontend
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<IO>> + Send + 'static,
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (st, acc, rej) = (self.state.clone(), accepted.clone(), refused.clone());
        let accept = Arc::new(accept);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, acc, rej, accept) = (st.clone(), acc.clone(), rej.clone(), accept.clone());
                tokio::spawn(async move {
                    let io = match accept(stream).await {
                        Ok(io) => io,
                        Err(_) => {
                            rej.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    acc.fetch_add(1, Ordering::SeqCst);
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Frontend {
            addr,
            accepted,
            refused,
            task,
        }
    }
}

impl State {
    /// Whether this server's resources would accept `access_token` (issued
    /// here, not revoked, not expired): for resource servers that tests
    /// write themselves (an axum app, say) and that trust this server.
    pub fn accepts(&self, access_token: &str) -> bool {
        self.inner.lock().unwrap().accepts(access_token)
    }
}
