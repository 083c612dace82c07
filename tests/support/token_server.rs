//! A scriptable fake authorization server and protected resource server,
//! listening on 127.0.0.1 (port 0), for the integration tests.
//!
//! `/token` is an RFC 6749 token endpoint: it records every request, counts
//! them, checks client credentials, issues `at-N` access tokens (and `rt-N`
//! refresh tokens, rotated when asked) with a configurable `expires_in`,
//! waits a configurable latency, and plays canned answers from a script.
//! `/revoke` is an RFC 7009 revocation endpoint: it records every request,
//! checks client credentials as `/token` does, revokes the access or
//! refresh token it is given (200 for an unknown one too), or plays canned
//! answers, and can hold its answers until released.
//! Every other path is a protected resource that accepts only tokens this
//! server issued, not revoked, not expired; it answers
//! `401` with `WWW-Authenticate: Bearer error="invalid_token"` otherwise.

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
use tower_oauth2::cache::{Backoff, TokenCacheBuilder};
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

use super::client::{http_client, HttpClient, Received};
use super::dpop;
use super::serve::{serve_on, HttpService, Serving};

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
    /// RFC 6749 §5.2 `invalid_client`, as a 401 with this description.
    pub fn invalid_client(description: &str) -> Self {
        Self::oauth_error(401, "invalid_client", description)
    }
    fn oauth_error(status: u16, code: &str, description: &str) -> Self {
        Self::json(
            status,
            &format!(r#"{{"error":"{code}","error_description":"{description}"}}"#),
        )
    }
}

/// A resource request for `path` bearing `token`, as
/// [`TestServer::path_authorizations`] lists it.
pub fn bearer(path: &str, token: &str) -> (String, Option<String>) {
    (path.to_owned(), Some(format!("Bearer {token}")))
}

/// The error that [`TestServer::failing_invalid_client`] gets: kind, code,
/// description (as `support::client::oauth_error` gives them).
pub const INVALID_CLIENT: (ErrorKind, Option<&ErrorCode>, Option<&str>) = (
    ErrorKind::OAuth,
    Some(&ErrorCode::InvalidClient),
    Some("Client authentication failed"),
);

/// How the token endpoint authenticates clients (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCheck {
    /// Accept any client.
    Any,
    /// Require client_secret_basic with these (decoded) credentials.
    Basic,
    /// Require client_secret_post.
    Post,
    /// Require `client_id`, the `client_assertion_type` set by
    /// [`TestServer::set_assertion_type`] and a `client_assertion` accepted
    /// by [`TestServer::accept_assertion`] (RFC 7521 §4.2).
    Assertion,
}

struct Inner {
    ttl: Option<u64>,
    latency: Duration,
    script: VecDeque<Canned>,
    failing: Option<Canned>,
    received: Vec<Received>,
    issued: HashMap<String, Option<Instant>>,
    revoked: HashSet<String>,
    /// What `/revoke` received, and the answers it plays first.
    revocations: Vec<Received>,
    revocation_script: VecDeque<Canned>,
    refresh_tokens: HashSet<String>,
    rotate_refresh: bool,
    next: u64,
    client_id: String,
    client_secret: String,
    client_check: ClientCheck,
    /// Secrets accepted besides `client_secret` (a rotation under way),
    /// and secrets no longer accepted.
    extra_secrets: HashSet<String>,
    revoked_secrets: HashSet<String>,
    assertion_type: String,
    accepted_assertions: HashSet<String>,
    /// Token requests refused with `invalid_client` by the client check.
    client_refusals: usize,
    resource_bodies: Vec<(String, Option<String>, Bytes)>,
    reject_all: bool,
    /// The `WWW-Authenticate` headers of a resource's 401, one per value.
    challenges: Vec<String>,
    prefix: String,
    /// DPoP (RFC 9449), when turned on: proofs required and checked.
    dpop: Option<DpopRules>,
}

/// What the server asks of DPoP proofs, and what it bound to which key.
#[derive(Default)]
pub struct DpopRules {
    /// The nonce proofs to `/token` must carry (`use_dpop_nonce` otherwise).
    pub token_nonce: Option<String>,
    /// The nonce proofs to resources must carry.
    pub resource_nonce: Option<String>,
    /// The nonce the next resource answer that accepts a token gives in
    /// `DPoP-Nonce`, required from then on.
    pub next_resource_nonce: Option<String>,
    /// Every `jti` seen: one seen again is a replay.
    seen: HashSet<String>,
    /// Access and refresh tokens → the thumbprint of their key.
    bound: HashMap<String, String>,
    /// Why each refused proof was refused, in order.
    pub refusals: Vec<String>,
    /// Every resource request's valid DPoP proof: the token, the
    /// thumbprint of the proof's key, and the one the token is bound to
    /// (its `cnf.jkt`).
    pub proved: Vec<(String, String, Option<String>)>,
    /// The next this many resource requests are answered `use_dpop_nonce`
    /// with a fresh nonce each, whatever their proof (a resource rotating
    /// its nonce faster than the client sends).
    pub forced_challenges: usize,
    /// Nonces issued by forced challenges so far.
    rotations: usize,
}

impl DpopRules {
    /// A forced challenge's fresh nonce, now required, if one is due.
    fn force_challenge(&mut self) -> Option<String> {
        self.forced_challenges = self.forced_challenges.checked_sub(1)?;
        self.rotations += 1;
        let nonce = format!("n-rotated-{}", self.rotations);
        self.resource_nonce = Some(nonce.clone());
        self.refusals.push("resource: UseNonce (rotated)".into());
        Some(nonce)
    }
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            ttl: Some(3600),
            latency: Duration::ZERO,
            script: VecDeque::new(),
            failing: None,
            received: Vec::new(),
            issued: HashMap::new(),
            revoked: HashSet::new(),
            revocations: Vec::new(),
            revocation_script: VecDeque::new(),
            refresh_tokens: HashSet::new(),
            rotate_refresh: false,
            next: 0,
            client_id: "client".into(),
            client_secret: "secret".into(),
            client_check: ClientCheck::Any,
            extra_secrets: HashSet::new(),
            revoked_secrets: HashSet::new(),
            assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            accepted_assertions: HashSet::new(),
            client_refusals: 0,
            resource_bodies: Vec::new(),
            reject_all: false,
            challenges: vec![r#"Bearer realm="test", error="invalid_token""#.into()],
            prefix: String::new(),
            dpop: None,
        }
    }
}

impl Inner {
    /// The one rule for a valid token: issued here, not revoked, not
    /// expired, and the server not told to refuse everything.
    fn accepts(&self, access_token: &str) -> bool {
        !self.reject_all
            && !self.revoked.contains(access_token)
            && matches!(self.issued.get(access_token), Some(exp) if exp.is_none_or(|e| Instant::now() < e))
    }

    /// Whether the request authenticates the configured client.
    fn authenticates(&self, received: &Received) -> bool {
        let secret_ok = |s: &str| {
            (s == self.client_secret || self.extra_secrets.contains(s))
                && !self.revoked_secrets.contains(s)
        };
        let id_ok = |id: Option<&str>| id == Some(self.client_id.as_str());
        match self.client_check {
            ClientCheck::Any => true,
            ClientCheck::Basic => {
                basic_credentials(received).is_some_and(|(id, s)| id_ok(Some(&id)) && secret_ok(&s))
            }
            ClientCheck::Post => {
                id_ok(received.param("client_id").as_deref())
                    && received
                        .param("client_secret")
                        .is_some_and(|s| secret_ok(&s))
            }
            ClientCheck::Assertion => {
                id_ok(received.param("client_id").as_deref())
                    && received.param("client_assertion_type").as_deref()
                        == Some(self.assertion_type.as_str())
                    && received
                        .param("client_assertion")
                        .is_some_and(|a| self.accepted_assertions.contains(&a))
            }
        }
    }

    /// Issues a token for an authenticated request, or refuses its grant.
    fn issue(&mut self, received: &Received, jkt: Option<&str>) -> Canned {
        let grant = received.param("grant_type").unwrap_or_default();
        let mut new_refresh = false;
        match grant.as_str() {
            "client_credentials" => {}
            "password" | "authorization_code" => new_refresh = true,
            "refresh_token" => {
                let rt = received.param("refresh_token").unwrap_or_default();
                let bound = self.dpop.as_ref().and_then(|d| d.bound.get(&rt));
                if !self.refresh_tokens.contains(&rt) || bound.map(String::as_str) != jkt {
                    return Canned::oauth_error(
                        400,
                        "invalid_grant",
                        "refresh token is invalid or revoked",
                    );
                }
                if self.rotate_refresh {
                    self.refresh_tokens.remove(&rt);
                    new_refresh = true;
                }
            }
            _ if grant.starts_with("urn:") => {}
            _ => return Canned::oauth_error(400, "unsupported_grant_type", "unknown grant"),
        }
        self.next += 1;
        let n = self.next;
        let at = format!("{}at-{n}", self.prefix);
        let expiry = self.ttl.map(|t| Instant::now() + Duration::from_secs(t));
        self.issued.insert(at.clone(), expiry);
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        let mut fields = vec![
            format!(r#""access_token":"{at}""#),
            format!(r#""token_type":"{token_type}""#),
        ];
        self.bind(&at, jkt);
        if let Some(t) = self.ttl {
            fields.push(format!(r#""expires_in":{t}"#));
        }
        if new_refresh {
            let rt = format!("{}rt-{n}", self.prefix);
            self.refresh_tokens.insert(rt.clone());
            self.bind(&rt, jkt);
            fields.push(format!(r#""refresh_token":"{rt}""#));
        }
        if let Some(scope) = received.param("scope") {
            fields.push(format!(r#""scope":"{scope}""#));
        }
        Canned::json(200, &format!("{{{}}}", fields.join(",")))
    }
}

impl Inner {
    fn bind(&mut self, token: &str, jkt: Option<&str>) {
        if let (Some(dpop), Some(jkt)) = (self.dpop.as_mut(), jkt) {
            dpop.bound.insert(token.to_owned(), jkt.to_owned());
        }
    }

    /// A token request's proof: `Ok(None)` with DPoP off, the key's
    /// thumbprint, or the refusal to answer.
    fn token_proof(&mut self, received: &Received) -> Result<Option<String>, Canned> {
        let Some(dpop) = self.dpop.as_mut() else {
            return Ok(None);
        };
        let htu = format!("http://{}/token", host(&received.headers));
        let expect = dpop::Expect {
            htm: "POST",
            htu: &htu,
            nonce: dpop.token_nonce.as_deref(),
            access_token: None,
        };
        let with_nonce = |c: Canned, nonce: &Option<String>| match nonce {
            Some(n) => c.header("dpop-nonce", n),
            None => c,
        };
        match dpop::check(&received.headers, &expect, &mut dpop.seen) {
            Ok(proof) => Ok(Some(proof.jkt)),
            Err(refused) => {
                dpop.refusals.push(format!("token: {refused:?}"));
                let code = match refused {
                    dpop::Refused::UseNonce => "use_dpop_nonce",
                    dpop::Refused::Invalid(_) => "invalid_dpop_proof",
                };
                let answer = Canned::oauth_error(400, code, "DPoP proof refused");
                Err(with_nonce(answer, &dpop.token_nonce))
            }
        }
    }

    /// Whether a resource request carries `token` as this server requires:
    /// a bound token as `DPoP` with a valid proof of its key, another as
    /// `Bearer`. `Err` is the challenge to refuse it with.
    fn resource_proof(
        &mut self,
        parts: &http::request::Parts,
        auth: Option<&str>,
    ) -> Result<String, String> {
        let bearer = auth.and_then(|a| a.strip_prefix("Bearer "));
        let (Some(dpop), Some(token)) = (
            self.dpop.as_mut(),
            auth.and_then(|a| a.strip_prefix("DPoP ")),
        ) else {
            // A token bound to a key is no bearer token (RFC 9449 §7.2).
            let bound = |t: &str| self.dpop.as_ref().is_some_and(|d| d.bound.contains_key(t));
            return match bearer {
                Some(t) if !bound(t) => Ok(t.to_owned()),
                _ => Err(r#"DPoP error="invalid_token", algs="ES256""#.into()),
            };
        };
        let htu = format!("http://{}{}", host(&parts.headers), parts.uri.path());
        let expect = dpop::Expect {
            htm: parts.method.as_str(),
            htu: &htu,
            nonce: dpop.resource_nonce.as_deref(),
            access_token: Some(token),
        };
        let refused = match dpop::check(&parts.headers, &expect, &mut dpop.seen) {
            Ok(proof) => {
                let bound = dpop.bound.get(token).cloned();
                let proved = (token.to_owned(), proof.jkt.clone(), bound.clone());
                dpop.proved.push(proved);
                if bound.as_ref() == Some(&proof.jkt) {
                    return Ok(token.to_owned());
                }
                "another key".to_owned()
            }
            Err(dpop::Refused::UseNonce) => {
                dpop.refusals.push("resource: UseNonce".into());
                return Err(r#"DPoP error="use_dpop_nonce", algs="ES256""#.into());
            }
            Err(dpop::Refused::Invalid(why)) => why,
        };
        dpop.refusals.push(format!("resource: {refused}"));
        Err(r#"DPoP error="invalid_dpop_proof", algs="ES256""#.into())
    }
}

fn host(headers: &http::HeaderMap) -> String {
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    host.unwrap_or_default().to_owned()
}

/// HTTP Basic credentials, each form-decoded after base64 (RFC 6749 §2.3.1).
fn basic_credentials(received: &Received) -> Option<(String, String)> {
    let encoded = received.authorization()?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (id, secret) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    let decode = |x: &str| {
        form_urlencoded::parse(format!("x={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// The server's state, shared with resource servers that tests write
/// themselves and that trust this server.
pub struct State {
    inner: Mutex<Inner>,
    pub(crate) token_requests: AtomicUsize,
    resource_requests: AtomicUsize,
    unauthorized: AtomicUsize,
    /// Resource requests are held until this many have arrived (0: none).
    gate: AtomicUsize,
    gate_open: tokio::sync::Notify,
    /// Revocation answers are held while this is true.
    revocations_held: std::sync::atomic::AtomicBool,
    revocations_released: tokio::sync::Notify,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the test server's state")
    }

    /// Whether this server's resources would accept `access_token` (issued
    /// here, not revoked, not expired).
    pub fn accepts(&self, access_token: &str) -> bool {
        self.lock().accepts(access_token)
    }

    /// How many requests the resource server has received so far.
    pub fn resource_count(&self) -> usize {
        self.resource_requests.load(Ordering::SeqCst)
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    _serving: Serving,
}

impl TestServer {
    /// Starts a server issuing tokens that live an hour.
    pub async fn start() -> TestServer {
        Self::start_on(0).await
    }

    /// Starts a server on a given 127.0.0.1 port (0: any free one).
    pub async fn start_on(port: u16) -> TestServer {
        let state = Arc::new(State {
            inner: Mutex::new(Inner::default()),
            token_requests: AtomicUsize::new(0),
            resource_requests: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            gate: AtomicUsize::new(0),
            gate_open: tokio::sync::Notify::new(),
            revocations_held: std::sync::atomic::AtomicBool::new(false),
            revocations_released: tokio::sync::Notify::new(),
        });
        let serving = serve_on(port, service(state.clone())).await;
        TestServer {
            addr: serving.addr,
            state,
            _serving: serving,
        }
    }

    /// The server as a tower service, to serve on another listener (a TLS
    /// one, say): same state, same counters.
    pub fn service(&self) -> impl HttpService<Body = Full<Bytes>> {
        service(self.state.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    /// A GET of `path` on this server, with an empty body.
    pub fn get(&self, path: &str) -> Request<Full<Bytes>> {
        super::client::get(&self.url(path))
    }
    pub fn token_url(&self) -> String {
        self.url("/token")
    }
    /// This server's revocation endpoint (RFC 7009).
    pub fn revocation_url(&self) -> tower_oauth2::revocation::RevocationUrl {
        tower_oauth2::revocation::RevocationUrl::new(&self.url("/revoke"))
            .expect("a loopback revocation URL")
    }
    /// This server's token endpoint, as client `client` with secret
    /// `secret` in `client_secret_basic`.
    pub fn endpoint(&self) -> TokenEndpoint<HttpClient> {
        self.endpoint_over(http_client())
    }
    /// [`Self::endpoint`] reached over `http`.
    pub fn endpoint_over<T>(&self, http: T) -> TokenEndpoint<T> {
        TokenEndpoint::new(
            http,
            TokenUrl::new(&self.token_url()).expect("a loopback token URL"),
            ClientAuth::client_secret_basic("client", "secret"),
        )
    }
    /// Answers every token request with `invalid_client` (see
    /// [`INVALID_CLIENT`]) from now on, and returns a cache for this server
    /// that waits a minute after a failed fetch before the next.
    pub fn failing_invalid_client(&self) -> TokenCache {
        self.set_failing(Some(Canned::invalid_client(INVALID_CLIENT.2.unwrap())));
        let minute = Duration::from_secs(60);
        self.client_credentials()
            .backoff(Backoff::new(minute, minute))
            .build()
    }
    /// A cache of client-credentials tokens from [`Self::endpoint`].
    pub fn client_credentials(&self) -> TokenCacheBuilder {
        TokenCache::builder(self.endpoint(), TokenRequest::client_credentials())
    }
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.state.lock())
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
    /// Accepts `secret` too, besides the one [`Self::set_client`] set (a
    /// rotation: the new secret is registered before it is handed out).
    pub fn accept_secret(&self, secret: &str) {
        self.with(|i| {
            i.revoked_secrets.remove(secret);
            i.extra_secrets.insert(secret.into());
        });
    }
    /// No longer accepts `secret`.
    pub fn revoke_secret(&self, secret: &str) {
        self.with(|i| i.revoked_secrets.insert(secret.into()));
    }
    /// The `client_assertion_type` [`ClientCheck::Assertion`] requires.
    pub fn set_assertion_type(&self, assertion_type: &str) {
        self.with(|i| i.assertion_type = assertion_type.into());
    }
    /// Accepts `assertion` as a client assertion ([`ClientCheck::Assertion`]).
    pub fn accept_assertion(&self, assertion: &str) {
        self.with(|i| i.accepted_assertions.insert(assertion.into()));
    }
    /// No longer accepts `assertion`.
    pub fn revoke_assertion(&self, assertion: &str) {
        self.with(|i| i.accepted_assertions.remove(assertion));
    }
    /// Token requests refused with `invalid_client` by the client check.
    pub fn client_refusals(&self) -> usize {
        self.with(|i| i.client_refusals)
    }
    pub fn set_rotate_refresh(&self, on: bool) {
        self.with(|i| i.rotate_refresh = on);
    }
    /// Adds a refresh token the server accepts.
    pub fn add_refresh_token(&self, rt: &str) {
        self.with(|i| {
            i.refresh_tokens.insert(rt.into());
        });
    }
    /// Accepts `rt` as a refresh token bound to the DPoP key of thumbprint
    /// `jkt` (a public client's, RFC 9449 §5): refreshed only with a proof
    /// of that key. Needs [`TestServer::enable_dpop`] first.
    pub fn add_refresh_token_bound_to(&self, rt: &str, jkt: &str) {
        self.with(|i| {
            i.refresh_tokens.insert(rt.into());
            i.bind(rt, Some(jkt));
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
    /// Holds resource answers until the resource server has received
    /// `total` requests in all (counting those already answered).
    pub fn hold_resource_answers_until(&self, total: usize) {
        self.state.gate.store(total, Ordering::SeqCst);
    }
    /// The resource server refuses every token.
    pub fn set_reject_all(&self, on: bool) {
        self.with(|i| i.reject_all = on);
    }
    /// The resource's 401s carry these `WWW-Authenticate` headers (none:
    /// no challenge), instead of `Bearer realm="test", error="invalid_token"`.
    pub fn set_challenges(&self, challenges: &[&str]) {
        self.with(|i| i.challenges = challenges.iter().map(|c| (*c).to_owned()).collect());
    }
    /// Turns DPoP on: token requests need a valid proof and get `DPoP`
    /// tokens bound to its key; resources need `DPoP` and a proof of that key.
    pub fn enable_dpop(&self) {
        self.with(|i| i.dpop = Some(DpopRules::default()));
    }
    /// The nonces proofs must carry at `/token` and at the resources.
    pub fn set_dpop_nonces(&self, token: Option<&str>, resource: Option<&str>) {
        self.with(|i| {
            let rules = i.dpop.get_or_insert_with(DpopRules::default);
            rules.token_nonce = token.map(str::to_owned);
            rules.resource_nonce = resource.map(str::to_owned);
        });
    }
    /// The next resource answer that accepts a token gives `next` in
    /// `DPoP-Nonce` (RFC 9449 §8.2: any answer may), and proofs to the
    /// resources must carry it from then on.
    pub fn rotate_resource_nonce(&self, next: &str) {
        self.with(|i| {
            let rules = i.dpop.get_or_insert_with(DpopRules::default);
            rules.next_resource_nonce = Some(next.to_owned());
        });
    }
    /// The next `n` resource requests are answered 401 `use_dpop_nonce`
    /// with a fresh `DPoP-Nonce` each, whatever their proof.
    pub fn force_resource_nonce_challenges(&self, n: usize) {
        self.with(|i| {
            i.dpop
                .get_or_insert_with(DpopRules::default)
                .forced_challenges = n
        });
    }
    /// Every resource request's valid DPoP proof: (token, the proof's key
    /// thumbprint, the thumbprint the token is bound to).
    pub fn dpop_proofs(&self) -> Vec<(String, String, Option<String>)> {
        self.with(|i| {
            i.dpop
                .as_ref()
                .map(|d| d.proved.clone())
                .unwrap_or_default()
        })
    }

    /// Why each DPoP proof was refused, in order.
    pub fn dpop_refusals(&self) -> Vec<String> {
        self.with(|i| {
            i.dpop
                .as_ref()
                .map(|d| d.refusals.clone())
                .unwrap_or_default()
        })
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
    /// The revocation requests received so far, in order.
    pub fn revocations(&self) -> Vec<Received> {
        self.with(|i| i.revocations.clone())
    }
    /// The next revocation requests are answered with these, in order.
    pub fn script_revocations(&self, answers: impl IntoIterator<Item = Canned>) {
        self.with(|i| i.revocation_script.extend(answers));
    }
    /// Holds revocation answers (after recording the request) until called
    /// with `false`.
    pub fn hold_revocations(&self, hold: bool) {
        self.state.revocations_held.store(hold, Ordering::SeqCst);
        if !hold {
            self.state.revocations_released.notify_waiters();
        }
    }
    /// Whether the token endpoint still takes this refresh token.
    pub fn is_refresh_token_valid(&self, refresh_token: &str) -> bool {
        self.with(|i| i.refresh_tokens.contains(refresh_token))
    }
    /// (path, Authorization header, body) of each resource request.
    pub fn resource_requests(&self) -> Vec<(String, Option<String>, Bytes)> {
        self.with(|i| i.resource_bodies.clone())
    }
    /// The path and Authorization header of each resource request.
    pub fn path_authorizations(&self) -> Vec<(String, Option<String>)> {
        self.with(|i| {
            let requests = i.resource_bodies.iter();
            requests.map(|(p, a, _)| (p.clone(), a.clone())).collect()
        })
    }
    /// The Authorization header of each resource request.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.with(|i| {
            i.resource_bodies
                .iter()
                .map(|(_, a, _)| a.clone())
                .collect()
        })
    }
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }
    pub fn resource_count(&self) -> usize {
        self.state.resource_count()
    }
    pub fn unauthorized_count(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }
}

fn service(state: Arc<State>) -> impl HttpService<Body = Full<Bytes>> {
    tower::service_fn(move |req| handle(state.clone(), req))
}

fn respond(c: Canned) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(c.status);
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(Bytes::from(c.body)))
        .expect("a valid canned answer")
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
        return Ok(respond(token(&st, Received::new(&parts, &body)).await));
    }
    if parts.uri.path() == "/revoke" {
        return Ok(respond(revocation(&st, Received::new(&parts, &body)).await));
    }
    Ok(resource(&st, parts, body).await)
}

async fn resource(st: &State, parts: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
    st.resource_requests.fetch_add(1, Ordering::SeqCst);
    // Hold answers until the gate's count of requests has arrived, so that
    // concurrent requests really are in flight together.
    loop {
        let open = st.gate_open.notified();
        let gate = st.gate.load(Ordering::SeqCst);
        if gate == 0 || st.resource_count() >= gate {
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
    let (challenges, nonce) = {
        let mut i = st.lock();
        i.resource_bodies
            .push((parts.uri.path().to_owned(), auth.clone(), body.clone()));
        if let Some(nonce) = i.dpop.as_mut().and_then(DpopRules::force_challenge) {
            let challenge = r#"DPoP error="use_dpop_nonce", algs="ES256""#;
            return refuse(st, vec![challenge.to_owned()], Some(nonce));
        }
        let token = i.resource_proof(&parts, auth.as_deref());
        if token.as_deref().is_ok_and(|t| i.accepts(t)) {
            let mut answer = Response::new(Full::new(body));
            let rules = i.dpop.as_mut();
            if let Some(next) = rules.and_then(|r| r.next_resource_nonce.take()) {
                let value = http::HeaderValue::from_str(&next).expect("a valid nonce");
                answer.headers_mut().insert("dpop-nonce", value);
                i.dpop.get_or_insert_with(DpopRules::default).resource_nonce = Some(next);
            }
            return answer;
        }
        let nonce = i.dpop.as_ref().and_then(|d| d.resource_nonce.clone());
        match token {
            Err(challenge) if i.dpop.is_some() => (vec![challenge], nonce),
            _ => (i.challenges.clone(), nonce),
        }
    };
    refuse(st, challenges, nonce)
}

/// A 401 with these challenges and this `DPoP-Nonce`, counted.
fn refuse(st: &State, challenges: Vec<String>, nonce: Option<String>) -> Response<Full<Bytes>> {
    st.unauthorized.fetch_add(1, Ordering::SeqCst);
    let mut refusal = Response::builder().status(StatusCode::UNAUTHORIZED);
    for challenge in challenges {
        refusal = refusal.header("www-authenticate", challenge);
    }
    if let Some(nonce) = nonce {
        refusal = refusal.header("dpop-nonce", nonce);
    }
    refusal
        .body(Full::new(Bytes::from_static(b"unauthorized")))
        .expect("a valid 401")
}

async fn token(st: &State, received: Received) -> Canned {
    st.token_requests.fetch_add(1, Ordering::SeqCst);
    let latency = {
        let mut i = st.lock();
        i.received.push(received.clone());
        i.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut i = st.lock();
    if let Some(c) = i.script.pop_front().or_else(|| i.failing.clone()) {
        return c;
    }
    if received.method != "POST" {
        return Canned::oauth_error(405, "invalid_request", "POST only");
    }
    if !i.authenticates(&received) {
        i.client_refusals += 1;
        return Canned::oauth_error(401, "invalid_client", "Client authentication failed")
            .header("www-authenticate", "Basic realm=\"token\"");
    }
    match i.token_proof(&received) {
        Ok(jkt) => i.issue(&received, jkt.as_deref()),
        Err(refusal) => refusal,
    }
}

/// RFC 7009 §2: records the request, waits while answers are held, then
/// plays a scripted answer, or authenticates the client and revokes the
/// token (an access or a refresh token; an unknown one is fine too).
async fn revocation(st: &State, received: Received) -> Canned {
    st.lock().revocations.push(received.clone());
    loop {
        let released = st.revocations_released.notified();
        if !st.revocations_held.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    let mut i = st.lock();
    if let Some(c) = i.revocation_script.pop_front() {
        return c;
    }
    if received.method != "POST" {
        return Canned::oauth_error(405, "invalid_request", "POST only");
    }
    if !i.authenticates(&received) {
        return Canned::oauth_error(401, "invalid_client", "Client authentication failed");
    }
    let Some(token) = received.param("token") else {
        return Canned::oauth_error(400, "invalid_request", "token is missing");
    };
    if !i.refresh_tokens.remove(&token) && i.issued.contains_key(&token) {
        i.revoked.insert(token);
    }
    Canned::new(200, "text/plain", "")
}
