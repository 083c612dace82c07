//! The authorization request of the code flow (RFC 6749 §4.1.1) with PKCE
//! (RFC 7636) and `state`, and checking the redirect that comes back.
//!
//! The layer itself never runs this flow (a service has no user to send to a
//! browser); an application does it once to obtain the first refresh token,
//! then hands the refresh token to the layer. `state` and the PKCE verifier
//! come from the operating system's CSPRNG (the `getrandom` crate).
//!
//! # Example
//!
//! ```
//! use tower_oauth2::authorize::AuthorizationRequest;
//! use tower_oauth2::request::{ClientAuth, TokenRequest, TokenUrl};
//!
//! // Step 1: send the user's browser to `auth.url()`.
//! let auth = AuthorizationRequest::new("https://as.example.com/authorize", "my-app")
//!     .redirect_uri("https://client.example.com/cb")
//!     .scope("openid offline_access")
//!     .build()?;
//! assert!(auth.url().starts_with(
//!     "https://as.example.com/authorize?response_type=code&client_id=my-app\
//!      &redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb&scope=openid+offline_access&state="
//! ));
//! assert!(auth.url().contains("&code_challenge_method=S256"));
//!
//! // Step 2: the browser comes back to the redirect URI; check `state`, take the code.
//! let callback = format!("code=SplxlOBeZQQYbYS6WxSbIA&state={}", auth.state());
//! let code = auth.code_from_callback(&callback)?;
//!
//! // Step 3: exchange the code, with the PKCE verifier.
//! let request = TokenRequest::authorization_code(code, "https://client.example.com/cb")
//!     .code_verifier(auth.pkce_verifier().unwrap())
//!     .build(
//!         &ClientAuth::none("my-app"),
//!         &TokenUrl::new("https://as.example.com/token")?,
//!     )?;
//! # let _ = request;
//! # Ok::<(), tower_oauth2::Error>(())
//! ```

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, ErrorResponse};
use crate::secret::SecretString;
use crate::token::ParseError;

pub(crate) fn random_urlsafe(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(Error::random_source)?;
    Ok(URL_SAFE_NO_PAD.encode(&buf))
}

/// A PKCE code verifier (RFC 7636 §4.1). Kept secret until the token request.
#[derive(Clone, Debug)]
pub struct PkceVerifier(SecretString);

impl PkceVerifier {
    /// 32 random bytes, base64url-encoded: 43 characters, 256 bits of entropy.
    pub fn generate() -> Result<Self, Error> {
        Ok(PkceVerifier(SecretString::from(random_urlsafe(32)?)))
    }

    /// A verifier you made yourself; it must be 43 to 128 characters of
    /// `A-Z a-z 0-9 - . _ ~`.
    pub fn new(verifier: impl Into<String>) -> Result<Self, Error> {
        let v = verifier.into();
        let ok_len = (43..=128).contains(&v.len());
        let ok_chars = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !(ok_len && ok_chars) {
            return Err(Error::invalid_authorization_request(
                "PKCE code verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)",
            ));
        }
        Ok(PkceVerifier(SecretString::from(v)))
    }

    /// The S256 `code_challenge`: `BASE64URL(SHA256(verifier))`.
    pub fn challenge_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.expose_secret().as_bytes()))
    }

    /// The verifier itself.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResponseType {
    Code,
    Token,
}

/// Builds an authorization URL.
#[derive(Clone, Debug)]
pub struct AuthorizationRequest {
    endpoint: String,
    client_id: String,
    redirect_uri: Option<String>,
    scopes: Vec<String>,
    state: Option<String>,
    pkce: bool,
    response_type: ResponseType,
    extra: Vec<(String, String)>,
    issuer: Option<String>,
}

impl AuthorizationRequest {
    /// An authorization code request (`response_type=code`) with PKCE S256 and
    /// a random `state`.
    pub fn new(authorization_endpoint: impl Into<String>, client_id: impl Into<String>) -> Self {
        AuthorizationRequest {
            endpoint: authorization_endpoint.into(),
            client_id: client_id.into(),
            redirect_uri: None,
            scopes: Vec::new(),
            state: None,
            pkce: true,
            response_type: ResponseType::Code,
            extra: Vec::new(),
            issuer: None,
        }
    }

    /// The implicit grant (`response_type=token`, RFC 6749 §4.2), for servers
    /// that offer nothing else. It is deprecated (RFC 9700 §2.1.2): the token
    /// travels in the URL. Parse the redirect fragment with
    /// [`crate::token::Token::from_form`] after [`Authorization::check_state`].
    pub fn implicit(
        authorization_endpoint: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        let mut r = Self::new(authorization_endpoint, client_id);
        r.response_type = ResponseType::Token;
        r.pkce = false;
        r
    }

    /// The redirect URI; the token request must send the same one.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// Adds scopes (space- or comma-separated).
    pub fn scope(mut self, scope: impl AsRef<str>) -> Self {
        self.scopes.extend(
            scope
                .as_ref()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        self
    }

    /// Uses this `state` instead of a random one (it must still be
    /// unguessable: it is the CSRF defence).
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// The authorization server's issuer identifier. The redirect must then
    /// carry the same `iss` (RFC 9207), which defeats mix-up attacks when a
    /// client talks to several servers. Set it for servers that send `iss`
    /// (discovery metadata says `authorization_response_iss_parameter_supported`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Leaves PKCE out (only for servers that reject it).
    pub fn without_pkce(mut self) -> Self {
        self.pkce = false;
        self
    }

    /// Adds a parameter (`prompt`, `login_hint`, `audience`, …).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Builds the URL, drawing `state` and the PKCE verifier.
    pub fn build(self) -> Result<Authorization, Error> {
        let uri: http::Uri = self.endpoint.parse().map_err(|e| {
            Error::invalid_authorization_request(format!(
                "authorization endpoint is not a valid URL ({e})"
            ))
        })?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(Error::invalid_authorization_request(
                "authorization endpoint must be an absolute URL",
            ));
        }
        let state = match self.state {
            Some(s) => s,
            None => random_urlsafe(16)?,
        };
        let pkce = if self.pkce {
            Some(PkceVerifier::generate()?)
        } else {
            None
        };
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair(
            "response_type",
            match self.response_type {
                ResponseType::Code => "code",
                ResponseType::Token => "token",
            },
        );
        q.append_pair("client_id", &self.client_id);
        if let Some(r) = &self.redirect_uri {
            q.append_pair("redirect_uri", r);
        }
        if !self.scopes.is_empty() {
            q.append_pair("scope", &self.scopes.join(" "));
        }
        q.append_pair("state", &state);
        if let Some(v) = &pkce {
            q.append_pair("code_challenge", &v.challenge_s256());
            q.append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &self.extra {
            q.append_pair(k, v);
        }
        let sep = if self.endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}{}", self.endpoint, q.finish());
        Ok(Authorization {
            url,
            state,
            pkce_verifier: pkce,
            issuer: self.issuer,
        })
    }
}

/// A built authorization request: the URL to send the user to, and what to
/// keep until the redirect comes back.
#[derive(Clone)]
pub struct Authorization {
    url: String,
    state: String,
    pkce_verifier: Option<PkceVerifier>,
    issuer: Option<String>,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("url", &self.url)
            .field("pkce_verifier", &self.pkce_verifier)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// The URL to send the user's browser to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `state` sent; keep it (in the user's session) to check the redirect.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The PKCE verifier to send with the code, if PKCE is on.
    pub fn pkce_verifier(&self) -> Option<&PkceVerifier> {
        self.pkce_verifier.as_ref()
    }

    /// Checks the `state` of a redirect's query or fragment (without the
    /// leading `?` or `#`), and turns an `error` in it into a typed error.
    pub fn check_state(&self, query: &str) -> Result<(), Error> {
        let mut state = None;
        let mut error = None;
        let mut description = None;
        let mut uri = None;
        let mut iss = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "state" => state = Some(v.into_owned()),
                "error" => error = Some(v.into_owned()),
                "error_description" => description = Some(v.into_owned()),
                "error_uri" => uri = Some(v.into_owned()),
                "iss" => iss = Some(v.into_owned()),
                _ => {}
            }
        }
        let same = state.as_deref().map(SecretString::from)
            == Some(SecretString::from(self.state.as_str()));
        if !same {
            return Err(Error::invalid_response(
                StatusCode::FOUND,
                ParseError::new(
                    "the redirect's `state` does not match the one sent (possible CSRF)",
                ),
            ));
        }
        if let Some(expected) = &self.issuer {
            if iss.as_deref() != Some(expected.as_str()) {
                return Err(Error::invalid_response(
                    StatusCode::FOUND,
                    ParseError::new(
                        "the redirect's `iss` is missing or names another authorization server \
                         (RFC 9207; possible mix-up attack)",
                    ),
                ));
            }
        }
        if let Some(code) = error {
            return Err(Error::oauth(ErrorResponse::new(
                ErrorCode::parse(&code),
                description.as_deref(),
                uri.as_deref(),
                StatusCode::FOUND,
            )));
        }
        Ok(())
    }

    /// Checks a code-flow redirect's query and returns the authorization code.
    pub fn code_from_callback(&self, query: &str) -> Result<SecretString, Error> {
        self.check_state(query)?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "code")
            .map(|(_, v)| SecretString::from(v.into_owned()))
            .ok_or_else(|| {
                Error::invalid_response(
                    StatusCode::FOUND,
                    ParseError::new("the redirect carries neither `code` nor `error`"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn rfc7636_appendix_b() {
        let v = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(
            v.challenge_s256(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn malformed_inputs_name_the_authorization_request() {
        let e = PkceVerifier::new("short").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            e.to_string(),
            "cannot build the authorization request: PKCE code verifier must be 43 to 128 \
             characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)"
        );
        let e = AuthorizationRequest::new("/authorize", "c")
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            e.to_string(),
            "cannot build the authorization request: authorization endpoint must be an \
             absolute URL"
        );
    }

    #[test]
    fn generated_values_are_random_and_valid() {
        let a = PkceVerifier::generate().unwrap();
        let b = PkceVerifier::generate().unwrap();
        assert_eq!(a.secret().len(), 43);
        assert_ne!(a.secret(), b.secret());
        assert!(PkceVerifier::new(a.secret().expose_secret()).is_ok());
        assert!(PkceVerifier::new("short").is_err());
        assert!(PkceVerifier::new("a".repeat(42) + "!").is_err());
        let s1 = AuthorizationRequest::new("https://a/x", "c")
            .build()
            .unwrap();
        let s2 = AuthorizationRequest::new("https://a/x", "c")
            .build()
            .unwrap();
        assert_ne!(s1.state(), s2.state());
        assert_eq!(s1.state().len(), 22);
    }

    #[test]
    fn seed_authorization_url() {
        // Seed 004, step 1 (with our state and no PKCE, to compare bytes).
        let a = AuthorizationRequest::new("https://server.example.com/authorize", "APP_KEY")
            .redirect_uri("https://client.example.com/cb")
            .scope("read,write")
            .state("RANDOM_STRING")
            .without_pkce()
            .build()
            .unwrap();
        assert_eq!(
            a.url(),
            "https://server.example.com/authorize?response_type=code&client_id=APP_KEY\
             &redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb&scope=read+write&state=RANDOM_STRING"
        );
        // The seed spells the dots as %2E; both decode to the same URI.
        let seed: Vec<_> =
            form_urlencoded::parse(b"redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb")
                .collect();
        assert_eq!(seed[0].1, "https://client.example.com/cb");
        assert!(a.pkce_verifier().is_none());
    }

    #[test]
    fn pkce_and_extras_in_url() {
        let a = AuthorizationRequest::new("https://as/authorize?tenant=t1", "c")
            .state("s")
            .param("prompt", "consent")
            .build()
            .unwrap();
        let challenge = a.pkce_verifier().unwrap().challenge_s256();
        assert_eq!(
            a.url(),
            format!(
                "https://as/authorize?tenant=t1&response_type=code&client_id=c&state=s\
                 &code_challenge={challenge}&code_challenge_method=S256&prompt=consent"
            )
        );
        let i = AuthorizationRequest::implicit("https://as/authorize", "c")
            .state("s")
            .build()
            .unwrap();
        assert_eq!(
            i.url(),
            "https://as/authorize?response_type=token&client_id=c&state=s"
        );
        assert!(AuthorizationRequest::new("/relative", "c").build().is_err());
    }

    #[test]
    fn callback_checks_the_issuer_when_told_to() {
        let a = AuthorizationRequest::new("https://as/authorize", "c")
            .state("xyz")
            .issuer("https://as.example.com")
            .build()
            .unwrap();
        let ok = a.code_from_callback("code=abc&state=xyz&iss=https%3A%2F%2Fas.example.com");
        assert_eq!(ok.unwrap().expose_secret(), "abc");
        for bad in [
            "code=abc&state=xyz",
            "code=abc&state=xyz&iss=https%3A%2F%2Fevil.example",
        ] {
            let e = a.code_from_callback(bad).unwrap_err();
            assert!(e.to_string().contains("RFC 9207"), "{e}");
        }
        // Without `issuer`, `iss` is not required.
        let b = AuthorizationRequest::new("https://as/authorize", "c")
            .state("s")
            .build()
            .unwrap();
        assert!(b.code_from_callback("code=abc&state=s").is_ok());
    }

    #[test]
    fn callback_checks_state_and_errors() {
        let a = AuthorizationRequest::new("https://as/authorize", "c")
            .state("xyz")
            .build()
            .unwrap();
        assert_eq!(
            a.code_from_callback("code=abc%2B1&state=xyz")
                .unwrap()
                .expose_secret(),
            "abc+1"
        );
        let e = a.code_from_callback("code=abc&state=other").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidResponse);
        assert!(e.to_string().contains("CSRF"), "{e}");
        let e = a.code_from_callback("code=abc").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidResponse);
        let e = a
            .code_from_callback("error=access_denied&error_description=User+said+no&state=xyz")
            .unwrap_err();
        assert_eq!(e.oauth_error().unwrap().error(), &ErrorCode::AccessDenied);
        assert_eq!(
            e.oauth_error().unwrap().error_description(),
            Some("User said no")
        );
        let e = a.code_from_callback("state=xyz").unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
