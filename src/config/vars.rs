//! [`ClientConfig::from_vars`]: the variables read, checked, and named in
//! every error.

use std::path::PathBuf;
use std::time::Duration;

use super::{Auth, ClientConfig, ConfigError, Endpoint, Secret};
use crate::endpoint::DEFAULT_TIMEOUT;
use crate::secret::SecretString;
use crate::TokenUrl;

/// One variable's value without the line breaks at its end: `None` when
/// unset or empty. A value taken from a Kubernetes secret or config map
/// made from a file or with `echo` (`secretKeyRef`, `configMapKeyRef`)
/// ends with one, and no value here may: a client id and secret are
/// visible ASCII and spaces (RFC 6749 Appendix A), the rest URLs, names,
/// numbers and paths.
fn get(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    match lookup(name) {
        Some(v) if v.contains('\u{0}') => Err(ConfigError::new(
            name,
            "expected Unicode text without NUL characters",
        )),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => Ok(Some(crate::credentials::without_line_breaks(&v).to_owned())),
        None => Ok(None),
    }
}

/// A whole number of `unit`s, at least 1.
fn positive(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    unit: &str,
) -> Result<Option<u64>, ConfigError> {
    match get(lookup, name)? {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(ConfigError::new(
                name,
                format!("expected a whole number of {unit}, at least 1"),
            )),
        },
    }
}

/// A variable that only a feature this build lacks reads.
#[cfg(any(not(feature = "redis"), not(feature = "dpop")))]
fn needs_feature(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    feature: &str,
) -> Result<(), ConfigError> {
    match get(lookup, name)? {
        None => Ok(()),
        Some(_) => Err(ConfigError::new(
            name,
            format!("needs tower-oauth2 built with the `{feature}` feature"),
        )),
    }
}

pub(super) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<ClientConfig, ConfigError> {
    let get = |name| get(lookup, name);
    let endpoint = match (get("OAUTH2_TOKEN_URL")?, get("OAUTH2_ISSUER")?) {
        (Some(url), None) => Endpoint::Url(TokenUrl::new(url.trim()).map_err(|_| {
            ConfigError::new(
                "OAUTH2_TOKEN_URL",
                "expected an https URL (http only to a loopback address) with no credentials \
                 or fragment",
            )
        })?),
        // Checked by discovery, which names the issuer's rules.
        (None, Some(issuer)) => Endpoint::Issuer(issuer.trim().to_owned()),
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "OAUTH2_ISSUER",
                "expected only one of OAUTH2_TOKEN_URL and OAUTH2_ISSUER, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "OAUTH2_TOKEN_URL",
                "is not set; expected the token endpoint's URL (or OAUTH2_ISSUER)",
            ))
        }
    };
    let client_id = get("OAUTH2_CLIENT_ID")?.ok_or_else(|| {
        ConfigError::new("OAUTH2_CLIENT_ID", "is not set; expected the client id")
    })?;
    let timeout =
        positive(lookup, "OAUTH2_TIMEOUT", "seconds")?.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    #[cfg(not(feature = "redis"))]
    for name in [
        "OAUTH2_REDIS_URL",
        "OAUTH2_REDIS_KEY",
        "OAUTH2_REDIS_LEASE",
        "OAUTH2_REDIS_TIMEOUT",
    ] {
        needs_feature(lookup, name, "redis")?;
    }
    #[cfg(not(feature = "dpop"))]
    needs_feature(lookup, "OAUTH2_DPOP_KEY_FILE", "dpop")?;
    Ok(ClientConfig {
        endpoint,
        client_id,
        auth: auth(lookup)?,
        scope: get("OAUTH2_SCOPE")?,
        audience: get("OAUTH2_AUDIENCE")?,
        resources: get("OAUTH2_RESOURCE")?
            .map(|r| r.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        timeout,
        dpop_key_file: get("OAUTH2_DPOP_KEY_FILE")?.map(PathBuf::from),
        #[cfg(feature = "redis")]
        redis: redis::tier(lookup)?,
    })
}

fn auth(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Auth, ConfigError> {
    let get = |name| get(lookup, name);
    let secret = || -> Result<Option<Secret>, ConfigError> {
        match (
            get("OAUTH2_CLIENT_SECRET")?,
            get("OAUTH2_CLIENT_SECRET_FILE")?,
        ) {
            (Some(s), None) => Ok(Some(Secret::Value(SecretString::from(s)))),
            (None, Some(f)) => Ok(Some(Secret::File(PathBuf::from(f)))),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ConfigError::new(
                "OAUTH2_CLIENT_SECRET_FILE",
                "expected only one of OAUTH2_CLIENT_SECRET and OAUTH2_CLIENT_SECRET_FILE, not \
                 both",
            )),
        }
    };
    let assertion_file = get("OAUTH2_CLIENT_ASSERTION_FILE")?;
    let key_file = get("OAUTH2_KEY_FILE")?;
    let default = if assertion_file.is_some() || key_file.is_some() {
        "private_key_jwt"
    } else {
        "basic"
    };
    let auth = get("OAUTH2_AUTH")?;
    let method = auth.as_deref().map(str::trim).unwrap_or(default);
    let needs_secret = |method: &str| {
        ConfigError::new(
            "OAUTH2_CLIENT_SECRET",
            format!("is not set; OAUTH2_AUTH={method} expects it or OAUTH2_CLIENT_SECRET_FILE"),
        )
    };
    Ok(match method {
        "basic" | "post" => Auth::Secret {
            post: method == "post",
            secret: secret()?.ok_or_else(|| needs_secret(method))?,
        },
        "none" => Auth::None,
        "client_secret_jwt" => {
            let secret = secret()?.ok_or_else(|| needs_secret(method))?;
            #[cfg(feature = "jwt")]
            {
                Auth::SecretJwt(secret)
            }
            #[cfg(not(feature = "jwt"))]
            {
                let _ = secret;
                return Err(ConfigError::new(
                    "OAUTH2_AUTH",
                    "client_secret_jwt needs tower-oauth2 built with the `jwt` feature",
                ));
            }
        }
        "private_key_jwt" | "spiffe_jwt" => match (assertion_file, key_file) {
            (Some(file), None) => Auth::Assertion {
                spiffe: method == "spiffe_jwt",
                file: PathBuf::from(file),
            },
            (None, Some(file)) if method == "private_key_jwt" => key(lookup, PathBuf::from(file))?,
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "OAUTH2_KEY_FILE",
                    "expected only one of OAUTH2_CLIENT_ASSERTION_FILE (an assertion made \
                     elsewhere) and OAUTH2_KEY_FILE (a key that signs one), not both",
                ))
            }
            _ => {
                return Err(ConfigError::new(
                    "OAUTH2_CLIENT_ASSERTION_FILE",
                    format!("is not set; OAUTH2_AUTH={method} expects the assertion's file"),
                ))
            }
        },
        _ => {
            return Err(ConfigError::new(
                "OAUTH2_AUTH",
                "expected basic, post, none, client_secret_jwt, private_key_jwt or spiffe_jwt",
            ))
        }
    })
}

#[cfg(feature = "jwt")]
fn key(lookup: &dyn Fn(&str) -> Option<String>, file: PathBuf) -> Result<Auth, ConfigError> {
    use crate::jose::Algorithm;
    let algorithm = match get(lookup, "OAUTH2_KEY_ALG")? {
        None => Algorithm::ES256,
        Some(name) => match Algorithm::from_name(name.trim()) {
            Some(Algorithm::HS256) | None => {
                return Err(ConfigError::new(
                    "OAUTH2_KEY_ALG",
                    "expected ES256, EdDSA, RS256 or PS256",
                ))
            }
            Some(alg @ (Algorithm::RS256 | Algorithm::PS256)) if !cfg!(feature = "jwt-rsa") => {
                return Err(ConfigError::new(
                    "OAUTH2_KEY_ALG",
                    format!("{alg} needs tower-oauth2 built with the `jwt-rsa` feature"),
                ))
            }
            Some(alg) => alg,
        },
    };
    Ok(Auth::Key {
        file,
        algorithm,
        key_id: get(lookup, "OAUTH2_KEY_ID")?.map(|k| k.trim().to_owned()),
    })
}

#[cfg(not(feature = "jwt"))]
fn key(_: &dyn Fn(&str) -> Option<String>, _: PathBuf) -> Result<Auth, ConfigError> {
    Err(ConfigError::new(
        "OAUTH2_KEY_FILE",
        "needs tower-oauth2 built with the `jwt` feature (it signs the assertions)",
    ))
}

#[cfg(feature = "redis")]
mod redis {
    use std::time::Duration;

    use base64::Engine as _;

    use super::{get, positive, ConfigError};
    use crate::fleet::RedisTier;

    /// The Redis tier the variables name, if any. A URL may hold a
    /// password: no error quotes it.
    pub(super) fn tier(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<RedisTier>, ConfigError> {
        let Some(urls) = get(lookup, "OAUTH2_REDIS_URL")? else {
            for name in [
                "OAUTH2_REDIS_KEY",
                "OAUTH2_REDIS_LEASE",
                "OAUTH2_REDIS_TIMEOUT",
            ] {
                if get(lookup, name)?.is_some() {
                    return Err(ConfigError::new(
                        name,
                        "is set, but OAUTH2_REDIS_URL is not: expected the Redis URL too",
                    ));
                }
            }
            return Ok(None);
        };
        let urls: Vec<&str> = urls.split_whitespace().collect();
        let tier = match urls.as_slice() {
            [one] => RedisTier::standalone(one),
            nodes => RedisTier::cluster(nodes.iter().copied()),
        }
        .map_err(|e| {
            ConfigError::new(
                "OAUTH2_REDIS_URL",
                format!("expected redis:// or rediss:// URLs, space-separated ({e})"),
            )
        })?;
        let mut tier = tier;
        if let Some(key) = get(lookup, "OAUTH2_REDIS_KEY")? {
            let key: [u8; 32] = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    ConfigError::new("OAUTH2_REDIS_KEY", "expected standard base64 of 32 bytes")
                })?;
            tier = tier.encryption_key(key);
        }
        if let Some(secs) = positive(lookup, "OAUTH2_REDIS_LEASE", "seconds")? {
            tier = tier.lease(Duration::from_secs(secs));
        }
        if let Some(ms) = positive(lookup, "OAUTH2_REDIS_TIMEOUT", "milliseconds")? {
            tier = tier.timeout(Duration::from_millis(ms));
        }
        Ok(Some(tier))
    }
}
