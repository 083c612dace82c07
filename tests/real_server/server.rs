//! Finding or starting the real authorization server, and what the tests
//! ask it directly: discovery, introspection (RFC 7662), revocation
//! (RFC 7009), and the registered clients' credentials.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

use super::client::{exchange, form_request, http_client, HttpClient, Recording};

/// Set by `.ci/run`: the issuer URL of a running server.
const ENV_URL: &str = "TOWER_OAUTH2_REAL_AS";
const SERVER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/auth-server");
/// The clients the server registers, read here too so the two never disagree.
const CLIENTS_JSON: &str = include_str!("../../.ci/auth-server/clients.json");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The server's URL, or why there is none. Decided once per test process.
pub fn server_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var(ENV_URL) {
            if !url.trim().is_empty() {
                return Ok(url.trim().trim_end_matches('/').to_owned());
            }
        }
        if in_ci() {
            // Panics in every test that asks (a OnceLock whose init panics
            // stays empty), so CI shows each one failing.
            panic!(
                "{ENV_URL} is not set and CI is: .ci/run must install and start the \
                 authorization server (.ci/auth-server/) and export {ENV_URL}. \
                 The real-server suite never skips in CI."
            );
        }
        start_local_server()
    })
    .clone()
}

/// Starts `node server.mjs --exit-with-stdin` and keeps it (and the pipe to
/// its standard input) for the life of this process: when the process exits,
/// the pipe closes and the server exits too.
fn start_local_server() -> Result<String, String> {
    static CHILD: OnceLock<Mutex<Child>> = OnceLock::new();
    let dir = Path::new(SERVER_DIR);
    if !dir
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        return Err(format!(
            "oidc-provider is not installed in .ci/auth-server/node_modules. \
             Run `npm ci --prefix .ci/auth-server` (Node.js 20+, npm registry), or start \
             a server yourself and set {ENV_URL}=http://127.0.0.1:PORT"
        ));
    }
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real-authorization-server.log");
    let stderr =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = Command::new("node")
        .args(["server.mjs", "--exit-with-stdin"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run `node` ({e}); install Node.js 20 or newer"))?;
    let url = match first_line(&mut child) {
        Ok(line) => line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
            .ok_or_else(|| format!("the server printed {line:?}, not its URL")),
        Err(why) => Err(why),
    };
    let url = match url {
        Ok(url) => url,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            let mut text = String::new();
            let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
            return Err(format!("{why}; its log ({}):\n{text}", log.display()));
        }
    };
    let _ = CHILD.set(Mutex::new(child));
    say(&format!(
        "started the real authorization server at {url} (log: {})",
        log.display()
    ));
    Ok(url)
}

/// The first line the server prints (its URL), waited for at most 30 s;
/// the rest of its output is drained, so it never writes into a closed pipe.
fn first_line(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = tx.send(reader.read_line(&mut line).map(|_| line));
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(format!("reading the server's output failed: {e}")),
        Err(_) => Err("the server did not start within 30 s".into()),
    }
}

/// One line straight to stderr, in one write: the test harness captures
/// `eprintln!` and shows it only for failing tests.
pub fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// The server as its discovery document (RFC 8414 / OpenID Connect
/// Discovery) describes it.
#[derive(Debug, Clone)]
pub struct RealServer {
    /// The client the tests ask the server with directly.
    http: HttpClient,
    pub issuer: String,
    pub metadata: Value,
    pub token_endpoint: String,
    pub authorization_endpoint: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
}

impl RealServer {
    /// The server, or `None` after printing why the running test (named
    /// after its thread, as the test harness names it) is skipped.
    pub async fn connect() -> Option<RealServer> {
        let base = match server_url() {
            Ok(url) => url,
            Err(why) => {
                let test = std::thread::current().name().unwrap_or("?").to_owned();
                say(&format!(
                    "SKIPPED (real authorization server): {test}: {why}"
                ));
                return None;
            }
        };
        let http = http_client();
        let url = format!("{base}/.well-known/openid-configuration");
        let (status, _, body) = send(&http, Method::GET, &url, &[], None).await;
        assert_eq!(status, StatusCode::OK, "discovery at {url}: {body}");
        let metadata: Value = serde_json::from_str(&body).expect("discovery is JSON");
        let field = |name: &str| {
            metadata[name]
                .as_str()
                .unwrap_or_else(|| panic!("discovery has no {name}: {metadata}"))
                .to_owned()
        };
        Some(RealServer {
            http,
            issuer: field("issuer"),
            token_endpoint: field("token_endpoint"),
            authorization_endpoint: field("authorization_endpoint"),
            introspection_endpoint: field("introspection_endpoint"),
            revocation_endpoint: field("revocation_endpoint"),
            metadata,
        })
    }

    pub fn token_url(&self) -> TokenUrl {
        TokenUrl::new(&self.token_endpoint).expect("a loopback http URL is accepted")
    }

    /// A token endpoint whose HTTP client records what goes on the wire.
    pub fn endpoint(&self, client: ClientAuth) -> (TokenEndpoint<Recording>, Recording) {
        let recording = Recording::default();
        let endpoint = TokenEndpoint::new(recording.clone(), self.token_url(), client);
        (endpoint, recording)
    }

    /// A cache of `request` tokens for `client`, whose token endpoint
    /// client records what goes on the wire.
    pub fn cache(&self, client: ClientAuth, request: TokenRequest) -> (TokenCache, Recording) {
        let (endpoint, wire) = self.endpoint(client);
        (TokenCache::builder(endpoint, request).build(), wire)
    }

    /// RFC 7662 introspection, as the resource server's client.
    pub async fn introspect(&self, token: &str) -> Value {
        let body = self
            .post_as("resource-server", &self.introspection_endpoint, token, &[])
            .await;
        serde_json::from_str(&body).expect("introspection answers JSON")
    }

    /// RFC 7009 revocation, as the client that owns the token.
    pub async fn revoke(&self, client_id: &str, token: &str, hint: &str) {
        let hint = [("token_type_hint", hint)];
        self.post_as(client_id, &self.revocation_endpoint, token, &hint)
            .await;
    }

    /// POSTs `token` (and `more`) to `url` as `client_id`; the body of the
    /// 200 it must answer.
    async fn post_as(
        &self,
        client_id: &str,
        url: &str,
        token: &str,
        more: &[(&str, &str)],
    ) -> String {
        let (id, secret) = client_credentials(client_id);
        let form: Vec<(&str, &str)> = [("token", token)]
            .into_iter()
            .chain(more.iter().copied())
            .collect();
        let (status, _, body) =
            send(&self.http, Method::POST, url, &form, Some((&id, &secret))).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        body
    }
}

/// A registered client's id and secret, from clients.json.
pub fn client_credentials(client_id: &str) -> (String, String) {
    let all: Value = serde_json::from_str(CLIENTS_JSON).expect("clients.json is JSON");
    let client = all["clients"]
        .as_array()
        .expect("clients.json has a clients array")
        .iter()
        .find(|c| c["client_id"] == client_id)
        .unwrap_or_else(|| panic!("{client_id} is not in clients.json"));
    let secret = client["client_secret"].as_str().expect("a client secret");
    (client_id.to_owned(), secret.to_owned())
}

/// A registered client with `client_secret_basic`.
pub fn basic(client_id: &str) -> ClientAuth {
    let (id, secret) = client_credentials(client_id);
    ClientAuth::client_secret_basic(id, secret)
}

/// A registered client with `client_secret_post`.
pub fn post(client_id: &str) -> ClientAuth {
    let (id, secret) = client_credentials(client_id);
    ClientAuth::client_secret_post(id, secret)
}

/// One plain HTTP exchange: a GET, or a POST of a form, optionally with HTTP
/// Basic credentials (RFC 6749 §2.3.1 encoding). Status, headers, body text.
pub async fn send(
    http: &HttpClient,
    method: Method,
    url: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = form_request(method, url, form);
    if let Some((id, secret)) = basic {
        let value = ClientAuth::basic_authorization(id, &secret.into());
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    exchange(http, request).await
}
