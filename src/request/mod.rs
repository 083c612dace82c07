//! Building token requests (RFC 6749 §4, §6; RFC 7523; RFC 8693; RFC 8707).
//!
//! A [`TokenRequest`] names the grant and its parameters; a [`ClientAuth`]
//! says how the client authenticates; a [`TokenUrl`] says where the token
//! endpoint is. [`TokenRequest::build`] puts them together into an
//! `http::Request<Full<Bytes>>`: `POST`, `Content-Type:
//! application/x-www-form-urlencoded`, `Accept: application/json`, and for
//! `client_secret_basic` an `Authorization` header marked sensitive. Nothing
//! here does I/O; [`crate::endpoint::TokenEndpoint`] sends what this builds.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::request::{ClientAuth, TokenRequest, TokenUrl};
//!
//! let url = TokenUrl::new("https://as.example.com/oauth2/token")?;
//! let client = ClientAuth::client_secret_basic("my client", "p@ss:w+rd/%&=?");
//! let request = TokenRequest::client_credentials()
//!     .scope("orders:read orders:write")
//!     .audience("https://api.example.com")
//!     .build(&client, &url)?;
//!
//! assert_eq!(request.method(), "POST");
//! assert_eq!(request.uri(), "https://as.example.com/oauth2/token");
//! assert_eq!(
//!     request.headers()["content-type"],
//!     "application/x-www-form-urlencoded"
//! );
//! // RFC 6749 §2.3.1: id and secret are form-urlencoded, then base64'd.
//! // base64("my+client:p%40ss%3Aw%2Brd%2F%25%26%3D%3F")
//! assert_eq!(
//!     request.headers()["authorization"],
//!     "Basic bXkrY2xpZW50OnAlNDBzcyUzQXclMkJyZCUyRiUyNSUyNiUzRCUzRg=="
//! );
//! assert!(request.headers()["authorization"].is_sensitive());
//! # use http_body_util::BodyExt;
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # let body = rt.block_on(request.into_body().collect()).unwrap().to_bytes();
//! assert_eq!(
//!     body,
//!     "grant_type=client_credentials&scope=orders%3Aread+orders%3Awrite\
//!      &audience=https%3A%2F%2Fapi.example.com"
//! );
//! # Ok::<(), tower_oauth2::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::Full;

use crate::error::Error;
use crate::secret::SecretString;

#[cfg(feature = "jwt")]
mod assertion;
mod body;
mod client_auth;
mod revocation_url;
mod token_url;

#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use assertion::{
    AssertionSettings, JwtClaims, CLIENT_ASSERTION_TYPE, DEFAULT_ASSERTION_LIFETIME,
    MAX_CLIENT_ASSERTION_LIFETIME, MAX_GRANT_ASSERTION_LIFETIME,
};
pub use body::BodyEncoding;
pub use client_auth::ClientAuth;
pub use revocation_url::RevocationUrl;
pub(crate) use token_url::secure_uri;
pub use token_url::TokenUrl;

/// `grant_type` of RFC 7523 (JWT bearer assertion).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `grant_type` of RFC 8693 (token exchange).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

#[derive(Clone)]
enum Value {
    Plain(String),
    /// Names the subject in clear (a `password` grant's `username`): part
    /// of the configuration fingerprint (hashed) and sent as it is, but
    /// never in `Debug`.
    Subject(String),
    Secret(SecretString),
}

impl Value {
    fn expose(&self) -> &str {
        match self {
            Value::Plain(s) | Value::Subject(s) => s,
            Value::Secret(s) => s.expose_secret(),
        }
    }
}

#[derive(Clone)]
struct Param {
    name: Cow<'static, str>,
    value: Value,
}

impl Param {
    fn pair(&self) -> (&str, &str) {
        (&self.name, self.value.expose())
    }

    /// The name, and the value unless it is a secret.
    fn public(&self) -> (&str, Option<&str>) {
        match &self.value {
            Value::Plain(v) | Value::Subject(v) => (&self.name, Some(v)),
            Value::Secret(_) => (&self.name, None),
        }
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Plain(v) => write!(f, "{}={v:?}", self.name),
            Value::Subject(_) => write!(f, "{}=[subject]", self.name),
            Value::Secret(_) => write!(f, "{}=[redacted]", self.name),
        }
    }
}

/// A token request: a grant with its parameters, scopes and extras.
///
/// Parameters are sent in this order: `grant_type`, the grant's own
/// parameters, `scope`, the extra parameters in the order they were added,
/// then the client's (`client_id`, `client_secret`) where the client
/// authentication method puts them in the body.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    grant_type: Cow<'static, str>,
    grant_params: Vec<Param>,
    scopes: Vec<String>,
    extra: Vec<Param>,
    encoding: BodyEncoding,
    /// For [`TokenRequest::jwt_bearer_signed`]: what signs the `assertion`.
    #[cfg(feature = "jwt")]
    /// Boxed: few requests have one, and a cache keeps its request.
    signed_assertion: Option<Box<(JwtClaims, crate::jose::SigningKey)>>,
}

impl TokenRequest {
    fn with_grant(grant_type: impl Into<Cow<'static, str>>, params: Vec<Param>) -> Self {
        TokenRequest {
            grant_type: grant_type.into(),
            grant_params: params,
            scopes: Vec::new(),
            extra: Vec::new(),
            encoding: BodyEncoding::Form,
            #[cfg(feature = "jwt")]
            signed_assertion: None,
        }
    }

    /// `client_credentials` (RFC 6749 §4.4).
    pub fn client_credentials() -> Self {
        Self::with_grant("client_credentials", Vec::new())
    }

    /// `authorization_code` (RFC 6749 §4.1.3). `redirect_uri` must be
    /// identical to the one in the authorization request. Add the PKCE
    /// verifier with [`TokenRequest::code_verifier`].
    pub fn authorization_code(
        code: impl Into<SecretString>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self::with_grant(
            "authorization_code",
            vec![
                secret("code", code.into()),
                plain("redirect_uri", redirect_uri.into()),
            ],
        )
    }

    /// Adds the PKCE `code_verifier` (RFC 7636 §4.5).
    pub fn code_verifier(mut self, verifier: &crate::authorize::PkceVerifier) -> Self {
        self.grant_params
            .push(secret("code_verifier", verifier.secret().clone()));
        self
    }

    /// `refresh_token` (RFC 6749 §6). Narrow the scope with
    /// [`TokenRequest::scope`]; leave it out to keep the original scope.
    pub fn refresh_token(refresh_token: impl Into<SecretString>) -> Self {
        Self::with_grant(
            "refresh_token",
            vec![secret("refresh_token", refresh_token.into())],
        )
    }

    /// `password`, the resource owner password credentials grant (RFC 6749
    /// §4.3). OAuth 2.0 Security BCP (RFC 9700) says not to use it; it is here
    /// for the servers that still need it.
    pub fn password(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self::with_grant(
            "password",
            vec![
                Param {
                    name: Cow::Borrowed("username"),
                    value: Value::Subject(username.into()),
                },
                secret("password", password.into()),
            ],
        )
    }

    /// RFC 7523 JWT bearer assertion grant (`assertion` is a signed JWT).
    /// The same assertion is sent with every request; to have a fresh one
    /// signed each time, use `TokenRequest::jwt_bearer_signed` (feature
    /// `jwt`).
    pub fn jwt_bearer(assertion: impl Into<SecretString>) -> Self {
        Self::with_grant(
            JWT_BEARER_GRANT,
            vec![secret("assertion", assertion.into())],
        )
    }

    /// RFC 7523 §2.1 JWT bearer assertion grant with an assertion this crate
    /// signs: each time the request is built (every token fetch), `claims`
    /// are signed with `key` with a new `jti`, `iat` now and `exp` after the
    /// claims' lifetime. `aud` is the token endpoint URL unless the claims
    /// set it.
    ///
    /// ```
    /// use tower_oauth2::jose::{Algorithm, SigningKey};
    /// use tower_oauth2::request::{JwtClaims, TokenRequest, JWT_BEARER_GRANT};
    ///
    /// # let key = SigningKey::from_jwk(r#"{"kty":"OKP","crv":"Ed25519",
    /// #   "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    /// #   "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)?;
    /// let claims = JwtClaims::new("svc@project.example", "svc@project.example")
    ///     .scope("storage.read");
    /// let request = TokenRequest::jwt_bearer_signed(claims, key);
    /// assert_eq!(request.grant_type(), JWT_BEARER_GRANT);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_bearer_signed(claims: JwtClaims, key: crate::jose::SigningKey) -> Self {
        let mut request = Self::with_grant(JWT_BEARER_GRANT, Vec::new());
        request.signed_assertion = Some(Box::new((claims, key)));
        request
    }

    /// RFC 8693 token exchange: `subject_token` of type `subject_token_type`
    /// (a URI such as `urn:ietf:params:oauth:token-type:access_token`). Add
    /// `actor_token`, `requested_token_type` … as parameters.
    pub fn token_exchange(
        subject_token: impl Into<SecretString>,
        subject_token_type: impl Into<String>,
    ) -> Self {
        Self::with_grant(
            TOKEN_EXCHANGE_GRANT,
            vec![
                secret("subject_token", subject_token.into()),
                plain("subject_token_type", subject_token_type.into()),
            ],
        )
    }

    /// Any extension grant (RFC 6749 §4.5): an absolute URI `grant_type`, with
    /// its parameters added by [`TokenRequest::param`] and
    /// [`TokenRequest::secret_param`].
    pub fn extension(grant_type: impl Into<String>) -> Self {
        Self::with_grant(grant_type.into(), Vec::new())
    }

    /// Adds scopes. Takes one or several space-separated scope tokens;
    /// call it as often as you like.
    pub fn scope(mut self, scope: impl AsRef<str>) -> Self {
        self.scopes
            .extend(scope.as_ref().split_whitespace().map(str::to_owned));
        self
    }

    /// Adds scopes from a list.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for s in scopes {
            self = self.scope(s);
        }
        self
    }

    /// Adds an `audience` parameter (Auth0, Okta, RFC 8693).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.extra.push(plain("audience", audience.into()));
        self
    }

    /// Adds a `resource` indicator (RFC 8707); repeat for several.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.extra.push(plain("resource", resource.into()));
        self
    }

    /// Gives back the spare room of its lists: a cache keeps its request
    /// as long as it lives (one per key of a keyed layer, one per subject
    /// of a token exchange), and a list grown by one push holds four.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.grant_params.shrink_to_fit();
        self.scopes.shrink_to_fit();
        self.extra.shrink_to_fit();
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push(plain_owned(name.into(), value.into()));
        self
    }

    /// Adds a parameter whose value is a secret (an assertion, an actor token):
    /// it is sent, but never printed.
    pub fn secret_param(mut self, name: impl Into<String>, value: impl Into<SecretString>) -> Self {
        self.extra.push(Param {
            name: Cow::Owned(name.into()),
            value: Value::Secret(value.into()),
        });
        self
    }

    /// Chooses the body encoding (form by default).
    pub fn encoding(mut self, encoding: BodyEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The `grant_type`.
    pub fn grant_type(&self) -> &str {
        &self.grant_type
    }

    /// The values of the extra parameters named `name` that are not
    /// secrets (`resource`, `audience`: the API a token is for).
    pub(crate) fn plain_params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.extra.iter().filter_map(move |p| match &p.value {
            Value::Plain(v) if p.name == name => Some(v.as_str()),
            _ => None,
        })
    }

    /// The refresh token this request sends, if it is a `refresh_token` grant.
    pub(crate) fn sent_refresh_token(&self) -> Option<&SecretString> {
        if self.grant_type != "refresh_token" {
            return None;
        }
        self.grant_params
            .iter()
            .find_map(|p| match (&*p.name, &p.value) {
                ("refresh_token", Value::Secret(s)) => Some(s),
                _ => None,
            })
    }

    /// Every secret this request sends, to scrub from error excerpts.
    pub(crate) fn secrets<'a>(&'a self, client: &'a ClientAuth) -> Vec<Cow<'a, str>> {
        let mut out: Vec<Cow<'a, str>> = self
            .grant_params
            .iter()
            .chain(&self.extra)
            .filter_map(|p| match &p.value {
                Value::Secret(s) => Some(Cow::Borrowed(s.expose_secret())),
                Value::Plain(_) | Value::Subject(_) => None,
            })
            .collect();
        out.extend(client.secrets());
        out
    }

    /// Builds the HTTP request.
    ///
    /// Fails with [`crate::error::ErrorKind::InvalidRequest`] if a scope holds a
    /// character RFC 6749 §3.3 forbids, an extra parameter would override one
    /// this request sets itself (`grant_type`, `client_id`, `client_secret`,
    /// `scope`, and `client_assertion`, `client_assertion_type` for the JWT
    /// client authentication methods), the `grant_type` is empty, or an
    /// assertion cannot be signed.
    ///
    /// A client secret or assertion from a file
    /// ([`crate::credentials::CredentialSource::file`]) is read here, so
    /// this can fail with [`crate::error::ErrorKind::Credential`]; one from a
    /// callback cannot be awaited here and fails with `InvalidRequest`
    /// (`TokenEndpoint::request` reads it).
    pub fn build(
        &self,
        client: &ClientAuth,
        url: &TokenUrl,
    ) -> Result<Request<Full<Bytes>>, Error> {
        self.build_signed(client, url).map(|(request, _)| request)
    }

    /// Builds the HTTP request, and gives with it the assertions signed
    /// for it (to scrub from error excerpts: they are sent, but are not in
    /// [`TokenRequest::secrets`]).
    pub(crate) fn build_signed(
        &self,
        client: &ClientAuth,
        url: &TokenUrl,
    ) -> Result<(Request<Full<Bytes>>, Vec<SecretString>), Error> {
        // A secret or assertion from a file is read here, for this request.
        let client = &*client.read_credential_now()?;
        self.check(client)?;
        let grant_assertion = self.grant_assertion(url)?;
        let client_assertion = client.assertion(url)?;
        let scope = self.scopes.join(" ");
        let mut params = self.params(&scope, grant_assertion.as_ref());
        let request = Request::builder()
            .method(Method::POST)
            .uri(url.uri().clone())
            .header(ACCEPT, body::JSON);
        let request = client.authenticate(request, client_assertion.as_ref(), &mut params);
        let (content_type, body) = self.encoding.encode(&params)?;
        let request = request
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| Error::invalid_request(format!("cannot build the HTTP request ({e})")))?;
        let signed = grant_assertion
            .into_iter()
            .chain(client_assertion)
            .collect();
        Ok((request, signed))
    }

    /// A fresh `assertion` for [`TokenRequest::jwt_bearer_signed`].
    #[cfg(feature = "jwt")]
    fn grant_assertion(&self, url: &TokenUrl) -> Result<Option<SecretString>, Error> {
        match self.signed_assertion.as_deref() {
            Some((claims, key)) => claims.sign(key, &url.to_string()).map(Some),
            None => Ok(None),
        }
    }

    #[cfg(not(feature = "jwt"))]
    fn grant_assertion(&self, _: &TokenUrl) -> Result<Option<SecretString>, Error> {
        Ok(None)
    }

    /// The checks of [`TokenRequest::build`].
    fn check(&self, client: &ClientAuth) -> Result<(), Error> {
        if self.grant_type.is_empty() {
            return Err(Error::invalid_request("grant_type is empty"));
        }
        for s in &self.scopes {
            if let Some(c) = s.chars().find(|c| !is_scope_char(*c)) {
                return Err(Error::invalid_request(format!(
                    "scope {s:?} holds {c:?}, which RFC 6749 §3.3 does not allow in a scope"
                )));
            }
        }
        let reserved = ["grant_type", "client_id", "client_secret", "scope"];
        let assertion = ["client_assertion", "client_assertion_type"];
        let is_reserved = |name: &str| {
            reserved.contains(&name) || (client.sends_assertion() && assertion.contains(&name))
        };
        match self.extra.iter().find(|p| is_reserved(&p.name)) {
            Some(p) => Err(Error::invalid_request(format!(
                "parameter `{}` is set by the request itself; use the dedicated method",
                p.name
            ))),
            None => Ok(()),
        }
    }

    /// The values that say *whose* token this request gets, for the
    /// subject part of [`crate::store::ConfigFingerprint`]: every secret
    /// parameter (a refresh token, an authorization code and its PKCE
    /// verifier, a token-exchange `subject_token` or `actor_token`, a
    /// pre-made JWT-bearer `assertion`, any secret extension parameter), as
    /// `(name, value)` in the order they are sent, the grant's own first.
    /// Two caches that differ only in one of these act for different
    /// subjects, so they must never share a stored or fleet token.
    ///
    /// Left out: the `password` grant's `password`. Its subject is its
    /// `username`, which is part of [`TokenRequest::identity`] already; a
    /// password is chosen by a person, so a hash of it in a key name could
    /// be checked against guesses offline.
    pub(crate) fn subject_params(&self) -> Vec<(&str, &SecretString)> {
        let is_password = |name: &str| self.grant_type == "password" && name == "password";
        self.grant_params
            .iter()
            .chain(&self.extra)
            .filter_map(|p| match &p.value {
                Value::Secret(s) if !is_password(&p.name) => Some((&*p.name, s)),
                _ => None,
            })
            .collect()
    }

    /// Which tokens this request asks for, as the canonical JSON value that
    /// [`crate::store::ConfigFingerprint`] hashes: `[grant_type, grant
    /// parameters in order, scopes sorted, extra parameters sorted]`, each
    /// parameter `[name, value]` with a secret's value left out (`null`),
    /// so no secret is ever part of it. Scopes and extras are sorted because
    /// their order does not change the token (several `resource`s, RFC 8707).
    pub(crate) fn identity(&self) -> serde_json::Value {
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut extra: Vec<_> = self.extra.iter().map(Param::public).collect();
        extra.sort_unstable();
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
        let mut identity = serde_json::json!([
            &*self.grant_type,
            self.grant_params
                .iter()
                .map(Param::public)
                .collect::<Vec<_>>(),
            scopes,
            extra,
        ]);
        // A signed JWT-bearer grant: the claims and the signing key's
        // public thumbprint (RFC 7638) name the token, not the assertion.
        #[cfg(feature = "jwt")]
        if let (Some((claims, key)), Some(parts)) =
            (self.signed_assertion.as_deref(), identity.as_array_mut())
        {
            parts.push(claims.identity());
            parts.push(key.jwk_thumbprint().into());
        }
        identity
    }

    /// The parameters in the order they are sent, but for the client's own;
    /// `scope` is the scopes joined, `assertion` the signed grant assertion.
    fn params<'a>(
        &'a self,
        scope: &'a str,
        assertion: Option<&'a SecretString>,
    ) -> Vec<(&'a str, &'a str)> {
        let mut params = Vec::with_capacity(5 + self.grant_params.len() + self.extra.len());
        params.push(("grant_type", &*self.grant_type));
        if let Some(assertion) = assertion {
            params.push(("assertion", assertion.expose_secret()));
        }
        params.extend(self.grant_params.iter().map(Param::pair));
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        params.extend(self.extra.iter().map(Param::pair));
        params
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_char(c: char) -> bool {
    matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

fn plain(name: &'static str, value: String) -> Param {
    Param {
        name: Cow::Borrowed(name),
        value: Value::Plain(value),
    }
}

fn plain_owned(name: String, value: String) -> Param {
    Param {
        name: Cow::Owned(name),
        value: Value::Plain(value),
    }
}

fn secret(name: &'static str, value: SecretString) -> Param {
    Param {
        name: Cow::Borrowed(name),
        value: Value::Secret(value),
    }
}

#[cfg(test)]
mod tests {
    use super::body::FORM;
    use super::*;
    use crate::authorize::PkceVerifier;
    use crate::error::ErrorKind;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use http::header::AUTHORIZATION;
    use http_body_util::BodyExt;

    const URL: &str = "https://server.example.com/token";

    fn body_of(req: Request<Full<Bytes>>) -> (http::request::Parts, String) {
        let (parts, body) = req.into_parts();
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes();
        (parts, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Builds `request` for `client` and checks every header and the body.
    fn check(request: &TokenRequest, client: &ClientAuth, auth_header: Option<&str>, body: &str) {
        let url = TokenUrl::new(URL).unwrap();
        let (parts, got) = body_of(request.build(client, &url).unwrap());
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, URL);
        let mut names: Vec<_> = parts.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        let want_names: &[&str] = if auth_header.is_some() {
            &["accept", "authorization", "content-type"]
        } else {
            &["accept", "content-type"]
        };
        assert_eq!(names, want_names);
        assert_eq!(parts.headers[ACCEPT], "application/json");
        assert_eq!(parts.headers[CONTENT_TYPE], FORM);
        if let Some(a) = auth_header {
            assert_eq!(parts.headers[AUTHORIZATION], a);
            assert!(parts.headers[AUTHORIZATION].is_sensitive());
        }
        assert_eq!(got, body);
    }

    fn basic() -> ClientAuth {
        ClientAuth::client_secret_basic("APP_KEY", "APP_SECRET")
    }
    fn post() -> ClientAuth {
        ClientAuth::client_secret_post("APP_KEY", "APP_SECRET")
    }
    fn none() -> ClientAuth {
        ClientAuth::none("APP_KEY")
    }
    // base64("APP_KEY:APP_SECRET")
    const BASIC: &str = "Basic QVBQX0tFWTpBUFBfU0VDUkVU";

    #[test]
    fn mutual_tls_methods_send_the_client_id_and_no_secret() {
        let r = TokenRequest::client_credentials().scope("inventory:read");
        for (client, method) in [
            (ClientAuth::tls_client_auth("svc orders"), "tls_client_auth"),
            (
                ClientAuth::self_signed_tls_client_auth("svc orders"),
                "self_signed_tls_client_auth",
            ),
        ] {
            // No Authorization header (check looks at every header).
            check(
                &r,
                &client,
                None,
                "grant_type=client_credentials&scope=inventory%3Aread&client_id=svc+orders",
            );
            assert_eq!(client.method_name(), method);
            assert_eq!(client.client_id(), "svc orders");
            assert!(client.is_mutual_tls());
            assert!(client.secrets().is_empty());
            assert!(!client.sends_assertion());
        }
        for other in [basic(), post(), none()] {
            assert!(!other.is_mutual_tls(), "{other:?}");
        }
    }

    #[test]
    fn client_credentials_every_auth_style() {
        // Seed 004: grant_type=client_credentials&client_id=[APP_KEY]&client_secret=[APP_SECRET]
        let r = TokenRequest::client_credentials();
        check(
            &r,
            &post(),
            None,
            "grant_type=client_credentials&client_id=APP_KEY&client_secret=APP_SECRET",
        );
        check(&r, &basic(), Some(BASIC), "grant_type=client_credentials");
        check(
            &r,
            &none(),
            None,
            "grant_type=client_credentials&client_id=APP_KEY",
        );
        let r = TokenRequest::client_credentials()
            .scope("read write")
            .scope("admin")
            .audience("https://api.example.com/")
            .resource("https://a.example/")
            .resource("https://b.example/");
        check(
            &r,
            &basic(),
            Some(BASIC),
            "grant_type=client_credentials&scope=read+write+admin&audience=https%3A%2F%2Fapi.example.com%2F\
             &resource=https%3A%2F%2Fa.example%2F&resource=https%3A%2F%2Fb.example%2F",
        );
    }

    #[test]
    fn authorization_code_every_auth_style() {
        // Seed 004 step 2 (its sample encodes the dots too; the decoded values are equal).
        let r =
            TokenRequest::authorization_code("CODE_FROM_STEP1", "https://client.example.com/cb");
        check(
            &r,
            &post(),
            None,
            "grant_type=authorization_code&code=CODE_FROM_STEP1&redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb\
             &client_id=APP_KEY&client_secret=APP_SECRET",
        );
        check(
            &r,
            &basic(),
            Some(BASIC),
            "grant_type=authorization_code&code=CODE_FROM_STEP1&redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb",
        );
        let v = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        let r = r.code_verifier(&v);
        check(
            &r,
            &none(),
            None,
            "grant_type=authorization_code&code=CODE_FROM_STEP1&redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb\
             &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk&client_id=APP_KEY",
        );
    }

    #[test]
    fn refresh_token_every_auth_style() {
        // Seed 004: grant_type=refresh_token&refresh_token=[REFRESH_TOKEN]&client_id=..&client_secret=..
        let r = TokenRequest::refresh_token("tGzv3JOkF0XG5Qx2TlKWIA");
        check(&r, &post(), None, "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&client_id=APP_KEY&client_secret=APP_SECRET");
        check(
            &r,
            &basic(),
            Some(BASIC),
            "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA",
        );
        check(&r.clone().scope("read"), &none(), None, "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&scope=read&client_id=APP_KEY");
        assert_eq!(
            r.sent_refresh_token().unwrap().expose_secret(),
            "tGzv3JOkF0XG5Qx2TlKWIA"
        );
        assert!(TokenRequest::client_credentials()
            .sent_refresh_token()
            .is_none());
    }

    #[test]
    fn password_every_auth_style() {
        // Seed 004: grant_type=password&username=[USERNAME]&password=[PASSWORD]&client_id=..&client_secret=..
        let r = TokenRequest::password("johndoe", "A3ddj3w");
        check(&r, &post(), None, "grant_type=password&username=johndoe&password=A3ddj3w&client_id=APP_KEY&client_secret=APP_SECRET");
        check(
            &r,
            &basic(),
            Some(BASIC),
            "grant_type=password&username=johndoe&password=A3ddj3w",
        );
        check(
            &r,
            &none(),
            None,
            "grant_type=password&username=johndoe&password=A3ddj3w&client_id=APP_KEY",
        );
    }

    #[test]
    fn extension_grants_every_auth_style() {
        let r = TokenRequest::jwt_bearer("eyJhbGciOiJFUzI1NiJ9.eyJpc3Mi.sig");
        check(
            &r,
            &basic(),
            Some(BASIC),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=eyJhbGciOiJFUzI1NiJ9.eyJpc3Mi.sig",
        );
        let r =
            TokenRequest::token_exchange("subj", "urn:ietf:params:oauth:token-type:access_token")
                .audience("svc-b")
                .secret_param("actor_token", "act");
        check(
            &r,
            &post(),
            None,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=subj\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&audience=svc-b\
             &actor_token=act&client_id=APP_KEY&client_secret=APP_SECRET",
        );
        let r = TokenRequest::extension("urn:ietf:params:oauth:grant-type:device_code")
            .param("device_code", "GmRh");
        check(&r, &none(), None, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=GmRh&client_id=APP_KEY");
        // private_key_jwt client authentication through parameters.
        let r = TokenRequest::client_credentials()
            .param(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .secret_param("client_assertion", "eyJ.a.b");
        check(
            &r,
            &none(),
            None,
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion=eyJ.a.b&client_id=APP_KEY",
        );
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        // RFC 6749 §2.3.1, with the reserved characters many clients get wrong.
        let cases = [
            (
                "my client",
                "p@ss:w+rd/%&=?",
                "my+client:p%40ss%3Aw%2Brd%2F%25%26%3D%3F",
            ),
            ("clïent-ü", "sécret", "cl%C3%AFent-%C3%BC:s%C3%A9cret"),
            (
                "s6BhdRkqt3",
                "7Fjfp0ZBr1KtDRbnfVdmIw",
                "s6BhdRkqt3:7Fjfp0ZBr1KtDRbnfVdmIw",
            ),
        ];
        for (id, secret, encoded) in cases {
            let v = ClientAuth::basic_authorization(id, &SecretString::from(secret));
            assert_eq!(v, format!("Basic {}", STANDARD.encode(encoded)), "{id}");
            assert!(v.is_sensitive());
        }
        // RFC 6749 §2.3.1's own example.
        assert_eq!(
            ClientAuth::basic_authorization("s6BhdRkqt3", &SecretString::from("gX1fBat3bV")),
            "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"
        );
        // client_secret_post sends the same values form-encoded in the body.
        check(
            &TokenRequest::client_credentials(),
            &ClientAuth::client_secret_post("my client", "p@ss:w+rd/%&=?"),
            None,
            "grant_type=client_credentials&client_id=my+client&client_secret=p%40ss%3Aw%2Brd%2F%25%26%3D%3F",
        );
    }

    #[test]
    fn json_body_encoding() {
        // Seed 003's example posts JSON.
        let req =
            TokenRequest::authorization_code("oiweicnewdh32fhoi3hf3ihfo2ih3f2o3as", "https://c/cb")
                .encoding(BodyEncoding::Json)
                .build(&post(), &TokenUrl::new(URL).unwrap())
                .unwrap();
        let (parts, body) = body_of(req);
        assert_eq!(parts.headers[CONTENT_TYPE], "application/json");
        assert_eq!(
            body,
            r#"{"client_id":"APP_KEY","client_secret":"APP_SECRET","code":"oiweicnewdh32fhoi3hf3ihfo2ih3f2o3as","grant_type":"authorization_code","redirect_uri":"https://c/cb"}"#
        );
    }

    #[test]
    fn json_body_keeps_repeated_parameters_as_an_array() {
        // RFC 8707 §2: `resource` may be sent several times; in JSON the
        // values become one array, in the order they were added.
        let req = TokenRequest::client_credentials()
            .resource("https://a.example/")
            .audience("svc")
            .resource("https://b.example/")
            .encoding(BodyEncoding::Json)
            .build(&basic(), &TokenUrl::new(URL).unwrap())
            .unwrap();
        let (_, body) = body_of(req);
        assert_eq!(
            body,
            r#"{"audience":"svc","grant_type":"client_credentials","resource":["https://a.example/","https://b.example/"]}"#
        );
    }

    #[test]
    fn invalid_requests() {
        let url = TokenUrl::new(URL).unwrap();
        let e = TokenRequest::client_credentials()
            .scope("a\"b")
            .build(&basic(), &url)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.to_string().contains("RFC 6749 §3.3"), "{e}");
        let e = TokenRequest::client_credentials()
            .param("client_secret", "x")
            .build(&basic(), &url)
            .unwrap_err();
        assert!(e.to_string().contains("`client_secret`"), "{e}");
        assert!(TokenRequest::extension("").build(&basic(), &url).is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let r = TokenRequest::password("alice", "pw-SECRET")
            .secret_param("actor_token", "ACTOR-SECRET")
            .param("plain", "visible");
        let c = ClientAuth::client_secret_post("id", "CLIENT-SECRET");
        let shown = format!("{r:?} {c:?} {:?}", TokenRequest::refresh_token("RT-SECRET"));
        for s in ["pw-SECRET", "ACTOR-SECRET", "CLIENT-SECRET", "RT-SECRET"] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        assert!(
            shown.contains("visible") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("username=[subject]"), "{shown}");
        let secrets = r.secrets(&c);
        assert_eq!(secrets, ["pw-SECRET", "ACTOR-SECRET", "CLIENT-SECRET"]);
        let basic = ClientAuth::client_secret_basic("id", "hunter22");
        let cc = TokenRequest::client_credentials();
        let secrets = cc.secrets(&basic);
        assert_eq!(secrets, ["hunter22", &STANDARD.encode("id:hunter22")[..]]);
    }
}
