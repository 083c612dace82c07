//! The demo's command line: what each flag means, and which run it asks for.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::run::{Config, TokenAt, Until};

/// OAuth2Layer in front of an HTTP client: sends GET requests to a resource
/// server with a bearer token from a token endpoint (the client-credentials
/// grant), and ends with one `summary:` line.
///
/// With no arguments it starts its own token endpoint and resource server on
/// 127.0.0.1 and runs for a few seconds. With flags it speaks `https`,
/// trusting Mozilla's root certificates and those of --ca-file; plain `http`
/// is accepted on loopback only.
#[derive(Parser, Debug)]
#[command(name = "demo")]
pub struct Args {
    /// The token endpoint (RFC 6749 §3.2).
    #[arg(long, value_name = "URL", env = "OAUTH2_TOKEN_URL")]
    pub token_url: Option<String>,

    /// Instead of --token-url: the issuer, whose metadata (OpenID Connect
    /// Discovery, RFC 8414) names the token endpoint.
    #[arg(
        long,
        value_name = "URL",
        env = "OAUTH2_ISSUER",
        conflicts_with = "token_url"
    )]
    pub issuer: Option<String>,

    /// The client id.
    #[arg(long, value_name = "ID", env = "OAUTH2_CLIENT_ID")]
    pub client_id: Option<String>,

    /// The client secret (for --auth basic or post).
    #[arg(
        long,
        value_name = "S",
        env = "OAUTH2_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,

    /// Instead of --client-secret: a file holding the client secret (a
    /// mounted Kubernetes secret), read for every token request so a
    /// rotated secret is used without a restart; a trailing newline is cut.
    #[arg(
        long,
        value_name = "PATH",
        env = "OAUTH2_CLIENT_SECRET_FILE",
        conflicts_with = "client_secret"
    )]
    pub client_secret_file: Option<PathBuf>,

    /// For --auth private_key_jwt or spiffe_jwt: a file holding the client
    /// assertion (a projected service-account token, a SPIFFE JWT-SVID),
    /// read for every token request; nothing is signed by the demo.
    #[arg(long, value_name = "PATH", env = "OAUTH2_CLIENT_ASSERTION_FILE")]
    pub client_assertion_file: Option<PathBuf>,

    /// How the client authenticates: basic (client_secret_basic), post
    /// (client_secret_post), none, private_key_jwt (the JWT of
    /// --client-assertion-file, or one signed with --key; demo built with
    /// `--features jwt`), spiffe_jwt (the JWT-SVID of
    /// --client-assertion-file) or client_secret_jwt (HS256 with the client
    /// secret; `--features jwt`).
    #[arg(
        long,
        value_name = "METHOD",
        env = "OAUTH2_AUTH",
        default_value = "basic"
    )]
    pub auth: String,

    /// The scope to ask for, space-separated.
    #[arg(long, value_name = "\"a b\"", env = "OAUTH2_SCOPE")]
    pub scope: Option<String>,

    /// The resource to GET.
    #[arg(long, value_name = "RESOURCE_URL", env = "DEMO_URL")]
    pub url: Option<String>,

    /// How many requests to send in all.
    #[arg(long, value_name = "N", env = "DEMO_REQUESTS", default_value_t = 20)]
    pub requests: u64,

    /// Instead of --requests: send requests for this long, then stop
    /// (requests in flight finish).
    #[arg(
        long,
        value_name = "SECS",
        env = "DEMO_DURATION",
        conflicts_with = "requests",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub duration: Option<u64>,

    /// How many requests are in flight at once.
    #[arg(long, value_name = "C", env = "DEMO_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u64,

    /// How long each request may take, token fetch included; a request
    /// that takes longer counts as an error.
    #[arg(
        long,
        value_name = "SECS",
        env = "DEMO_TIMEOUT",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: u64,

    /// How long each task pauses between two of its requests, in
    /// milliseconds (0: none).
    #[arg(long, value_name = "MS", env = "DEMO_PAUSE", default_value_t = 0)]
    pub pause: u64,

    /// CA certificates (PEM) to trust besides Mozilla's roots: for servers
    /// with certificates from a private CA.
    #[arg(long, value_name = "PEM", env = "DEMO_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// For --auth private_key_jwt: the private key (PKCS#8 PEM).
    #[arg(long, value_name = "PEM", env = "OAUTH2_KEY_FILE")]
    pub key: Option<PathBuf>,

    /// The key's algorithm: ES256, EdDSA, or RS256/PS256 (`--features jwt-rsa`).
    #[arg(
        long,
        value_name = "ALG",
        env = "OAUTH2_KEY_ALG",
        default_value = "ES256"
    )]
    pub key_alg: String,

    /// The key's `kid`, sent in each assertion's header.
    #[arg(long, value_name = "KID", env = "OAUTH2_KEY_ID")]
    pub key_id: Option<String>,

    /// The RFC 7009 revocation endpoint.
    #[arg(long, value_name = "URL", env = "OAUTH2_REVOCATION_URL")]
    pub revocation_url: Option<String>,

    /// At the end, revoke the tokens at --revocation-url (refresh token
    /// first, then the access token).
    #[arg(long, env = "DEMO_REVOKE_ON_EXIT")]
    pub revoke_on_exit: bool,

    /// Bind tokens to an ephemeral ES256 key with DPoP (RFC 9449): token and
    /// resource requests carry proofs (demo built with `--features dpop`).
    #[arg(long, env = "OAUTH2_DPOP")]
    pub dpop: bool,

    /// Bind tokens with DPoP to the private key in this file (PEM or JWK)
    /// instead of an ephemeral one; the file is read again when it changes,
    /// and a new key gets its own token (demo built with `--features dpop`).
    #[arg(long, value_name = "FILE", env = "OAUTH2_DPOP_KEY_FILE")]
    pub dpop_key_file: Option<PathBuf>,

    /// Share one token with the fleet through this Redis (redis:// or
    /// rediss://; demo built with `--features redis`). OAUTH2_REDIS_KEY
    /// (standard base64 of 32 bytes) encrypts the tokens there.
    #[arg(long, value_name = "URL", env = "OAUTH2_REDIS_URL")]
    pub redis: Option<String>,

    /// Encrypts the tokens in Redis (standard base64 of 32 bytes).
    #[arg(
        long,
        value_name = "BASE64",
        env = "OAUTH2_REDIS_KEY",
        hide_env_values = true
    )]
    pub redis_key: Option<String>,

    /// How long one process's token fetch holds the fleet's lease at most,
    /// in seconds (a holder that dies frees it after this; default: the
    /// token request's timeout + 10 s). Keep it longer than a token request.
    #[arg(
        long,
        value_name = "SECS",
        env = "OAUTH2_REDIS_LEASE",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub redis_lease: Option<u64>,

    /// The deadline on each Redis call, in milliseconds (default 500); past
    /// it the process fetches its own token.
    #[arg(
        long,
        value_name = "MS",
        env = "OAUTH2_REDIS_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub redis_timeout: Option<u64>,
}

/// What the command line asks for.
pub enum Mode {
    /// No arguments: the demo's own servers, on 127.0.0.1.
    Local {
        /// How long each request may take.
        timeout: Duration,
    },
    /// Real servers, as the flags name them.
    Remote(Box<Config>),
}

impl Args {
    /// Parses `args` (the program name first); on a usage error, or for
    /// `--help`, prints and exits as clap does.
    pub fn mode_from<I, T>(args: I) -> Mode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Args::command().get_matches_from(args);
        let parsed = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        parsed.into_mode(&matches).unwrap_or_else(|e| e.exit())
    }

    /// Any flag on the command line, or a server named in the environment,
    /// asks for real servers; then `--token-url` (or `--issuer`),
    /// `--client-id` and `--url` are required. (A client secret in the environment alone does not:
    /// the local run ignores it.)
    fn into_mode(self, matches: &ArgMatches) -> Result<Mode, clap::Error> {
        let timeout = Duration::from_secs(self.timeout);
        let from = |id: &str| matches.value_source(id);
        let remote = matches.ids().any(|id| {
            let id = id.as_str();
            from(id) == Some(ValueSource::CommandLine)
                || (["token_url", "issuer", "client_id", "url"].contains(&id)
                    && from(id) == Some(ValueSource::EnvVariable))
        });
        if !remote {
            return Ok(Mode::Local { timeout });
        }
        let need = |value: Option<String>, flag: &str| {
            value.ok_or_else(|| {
                Args::command().error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    format!("{flag} is required with flags"),
                )
            })
        };
        Ok(Mode::Remote(Box::new(Config {
            token_endpoint: match (self.token_url, self.issuer) {
                (_, Some(issuer)) => TokenAt::Issuer(issuer),
                (url, None) => TokenAt::Url(need(url, "--token-url (or --issuer)")?),
            },
            client_id: need(self.client_id, "--client-id")?,
            client_secret: self.client_secret,
            client_secret_file: self.client_secret_file,
            client_assertion_file: self.client_assertion_file,
            auth: self.auth,
            key: self.key,
            key_alg: self.key_alg,
            key_id: self.key_id,
            revocation_url: self.revocation_url,
            revoke_on_exit: self.revoke_on_exit,
            dpop: self.dpop,
            dpop_key_file: self.dpop_key_file,
            redis: self.redis,
            redis_key: self.redis_key,
            redis_lease: self.redis_lease.map(Duration::from_secs),
            redis_timeout: self.redis_timeout.map(Duration::from_millis),
            scope: self.scope,
            url: need(self.url, "--url")?,
            until: match self.duration {
                Some(secs) => Until::Elapsed(Duration::from_secs(secs)),
                None => Until::Requests(self.requests),
            },
            concurrency: self.concurrency.max(1) as usize,
            timeout,
            pause: Duration::from_millis(self.pause),
            ca_file: self.ca_file,
            // The command decides, from where stderr goes.
            progress: false,
        })))
    }
}
