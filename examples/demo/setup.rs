//! What the optional flags set up: the client authentication (secrets,
//! signed JWT assertions), the revocation endpoint and the fleet's Redis
//! tier. A flag whose crate feature is not built in says which one to add.

use tower_oauth2::cache::TokenCacheBuilder;
use tower_oauth2::credentials::CredentialSource;
use tower_oauth2::{ClientAuth, TokenEndpoint};

use crate::run::Config;

/// The client authentication `--auth` names.
pub fn client_auth(config: &Config) -> Result<ClientAuth, String> {
    let id = config.client_id.clone();
    if let Some(path) = &config.client_assertion_file {
        let source = CredentialSource::file(path);
        return match config.auth.as_str() {
            "private_key_jwt" => Ok(ClientAuth::client_assertion(id, source)),
            "spiffe_jwt" => Ok(ClientAuth::spiffe_jwt(id, source)),
            other => Err(format!(
                "--client-assertion-file needs --auth private_key_jwt or spiffe_jwt, not {other:?}"
            )),
        };
    }
    if let Some(path) = &config.client_secret_file {
        let source = CredentialSource::file(path);
        return match config.auth.as_str() {
            "basic" => Ok(ClientAuth::client_secret_basic_from(id, source)),
            "post" => Ok(ClientAuth::client_secret_post_from(id, source)),
            "client_secret_jwt" => jwt::client_secret_jwt_from(id, source),
            other => Err(format!(
                "--client-secret-file needs --auth basic, post or client_secret_jwt, not {other:?}"
            )),
        };
    }
    match (config.auth.as_str(), config.client_secret.clone()) {
        ("basic", Some(s)) => Ok(ClientAuth::client_secret_basic(id, s)),
        ("post", Some(s)) => Ok(ClientAuth::client_secret_post(id, s)),
        ("none", _) => Ok(ClientAuth::none(id)),
        ("spiffe_jwt", _) => {
            Err("--auth spiffe_jwt needs --client-assertion-file (the JWT-SVID)".into())
        }
        ("basic" | "post" | "client_secret_jwt", None) => Err(format!(
            "--auth {} needs --client-secret or --client-secret-file (OAUTH2_CLIENT_SECRET, \
             OAUTH2_CLIENT_SECRET_FILE)",
            config.auth
        )),
        ("client_secret_jwt", Some(s)) => jwt::client_secret_jwt(id, s),
        ("private_key_jwt", _) => jwt::private_key_jwt(id, config),
        (other, _) => Err(format!(
            "--auth must be basic, post, none, private_key_jwt, spiffe_jwt or client_secret_jwt, \
             not {other:?}"
        )),
    }
}

#[cfg(feature = "jwt")]
mod jwt {
    use tower_oauth2::credentials::CredentialSource;
    use tower_oauth2::jose::{Algorithm, SigningKey};
    use tower_oauth2::ClientAuth;

    use crate::run::Config;

    pub(super) fn client_secret_jwt(id: String, secret: String) -> Result<ClientAuth, String> {
        ClientAuth::client_secret_jwt(id, secret).map_err(|e| e.to_string())
    }

    pub(super) fn client_secret_jwt_from(
        id: String,
        source: CredentialSource,
    ) -> Result<ClientAuth, String> {
        Ok(ClientAuth::client_secret_jwt_from(id, source))
    }

    /// The key is read now to fail early, and again for every token request
    /// (a rotated key is used without a restart).
    pub(super) fn private_key_jwt(id: String, config: &Config) -> Result<ClientAuth, String> {
        let path = config.key.as_ref().ok_or(
            "--auth private_key_jwt needs --key PATH (a PKCS#8 PEM private key) \
                 or --client-assertion-file PATH",
        )?;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --key {}: {e}", path.display()))?;
        let alg = Algorithm::from_name(&config.key_alg)
            .ok_or_else(|| format!("--key-alg {:?} is not an algorithm", config.key_alg))?;
        SigningKey::from_pem(alg, &pem).map_err(|e| format!("--key {}: {e}", path.display()))?;
        Ok(ClientAuth::private_key_jwt_from(
            id,
            alg,
            config.key_id.clone(),
            CredentialSource::file(path),
        ))
    }
}

#[cfg(not(feature = "jwt"))]
mod jwt {
    use tower_oauth2::ClientAuth;

    use crate::run::Config;

    const NEEDS: &str = "signed JWT client authentication needs the demo built with \
                         `--features jwt` (or `jwt-rsa` for RS256/PS256 keys)";

    pub(super) fn client_secret_jwt(_: String, _: String) -> Result<ClientAuth, String> {
        Err(NEEDS.into())
    }

    pub(super) fn client_secret_jwt_from(
        _: String,
        _: tower_oauth2::credentials::CredentialSource,
    ) -> Result<ClientAuth, String> {
        Err(NEEDS.into())
    }

    pub(super) fn private_key_jwt(_: String, _: &Config) -> Result<ClientAuth, String> {
        Err(NEEDS.into())
    }
}

/// The endpoint with an ephemeral ES256 DPoP key when `--dpop` asks for
/// one (RFC 9449): token requests and resource requests then carry proofs.
/// With `--dpop-key-file`, the key in that file (read again when it
/// changes).
pub fn dpop<T>(endpoint: TokenEndpoint<T>, config: &Config) -> Result<TokenEndpoint<T>, String> {
    if let Some(file) = &config.dpop_key_file {
        return dpop_key::from_file(endpoint, file);
    }
    if !config.dpop {
        return Ok(endpoint);
    }
    dpop_key::with_key(endpoint)
}

#[cfg(feature = "dpop")]
mod dpop_key {
    use std::path::Path;

    use tower_oauth2::dpop::{Dpop, DpopKeys};
    use tower_oauth2::TokenEndpoint;

    pub(super) fn with_key<T>(endpoint: TokenEndpoint<T>) -> Result<TokenEndpoint<T>, String> {
        let key = Dpop::generate().map_err(|e| format!("--dpop: {e}"))?;
        println!("demo: DPoP key thumbprint {}", key.thumbprint());
        Ok(endpoint.dpop(key))
    }

    pub(super) fn from_file<T>(
        endpoint: TokenEndpoint<T>,
        file: &Path,
    ) -> Result<TokenEndpoint<T>, String> {
        let keys = DpopKeys::from_file(file).map_err(|e| format!("--dpop-key-file: {e}"))?;
        println!("demo: DPoP key thumbprint {}", keys.current().thumbprint());
        Ok(endpoint.dpop_keys(keys))
    }
}

#[cfg(not(feature = "dpop"))]
mod dpop_key {
    use std::path::Path;

    use tower_oauth2::TokenEndpoint;

    const NEEDS: &str = "--dpop and --dpop-key-file need the demo built with `--features dpop`";

    pub(super) fn with_key<T>(_: TokenEndpoint<T>) -> Result<TokenEndpoint<T>, String> {
        Err(NEEDS.into())
    }

    pub(super) fn from_file<T>(_: TokenEndpoint<T>, _: &Path) -> Result<TokenEndpoint<T>, String> {
        Err(NEEDS.into())
    }
}

/// The endpoint with the revocation endpoint `--revocation-url` names.
pub fn revocation<T>(
    endpoint: TokenEndpoint<T>,
    config: &Config,
) -> Result<TokenEndpoint<T>, String> {
    match &config.revocation_url {
        Some(url) => {
            let url = tower_oauth2::revocation::RevocationUrl::new(url)
                .map_err(|e| format!("--revocation-url: {e}"))?;
            Ok(endpoint.revocation_url(url))
        }
        None if config.revoke_on_exit => {
            Err("--revoke-on-exit needs --revocation-url (the RFC 7009 endpoint)".into())
        }
        None => Ok(endpoint),
    }
}

/// What a fleet member reports at the end: its tier's counters, one
/// `name=value` each.
pub type FleetReport = Box<dyn Fn() -> String + Send + Sync>;

/// The cache joined to the fleet's Redis tier `--redis` names, with the
/// encryption key of `OAUTH2_REDIS_KEY` (standard base64 of 32 bytes), the
/// lease and deadline of `--redis-lease` and `--redis-timeout`.
pub fn fleet(
    builder: TokenCacheBuilder,
    config: &Config,
) -> Result<(TokenCacheBuilder, Option<FleetReport>), String> {
    match &config.redis {
        None => Ok((builder, None)),
        Some(url) => redis::join(builder, url, config).map(|(b, r)| (b, Some(r))),
    }
}

#[cfg(feature = "redis")]
mod redis {
    use base64::Engine as _;
    use tower_oauth2::cache::TokenCacheBuilder;
    use tower_oauth2::fleet::RedisTier;

    use super::FleetReport;
    use crate::run::Config;

    pub(super) fn join(
        builder: TokenCacheBuilder,
        url: &str,
        config: &Config,
    ) -> Result<(TokenCacheBuilder, FleetReport), String> {
        let mut tier = RedisTier::standalone(url).map_err(|e| format!("--redis: {e}"))?;
        if let Some(key) = config.redis_key.as_deref() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| "OAUTH2_REDIS_KEY is not standard base64".to_string())?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| "OAUTH2_REDIS_KEY must hold 32 bytes".to_string())?;
            tier = tier.encryption_key(key);
        }
        if let Some(lease) = config.redis_lease {
            tier = tier.lease(lease);
        }
        if let Some(timeout) = config.redis_timeout {
            tier = tier.timeout(timeout);
        }
        let counters = tier.clone();
        let report = move || {
            let s = counters.stats();
            format!(
                "shared_hits={} leases={} lease_waits={} fallbacks={} published={} invalidations={} bad_values={} \
                 steps_shared={} steps_joined={} steps_ended={}",
                s.shared_hits, s.leases, s.lease_waits, s.fallbacks, s.published, s.invalidations, s.bad_values,
                s.steps_shared, s.steps_joined, s.steps_ended
            )
        };
        Ok((builder.redis(tier), Box::new(report)))
    }
}

#[cfg(not(feature = "redis"))]
mod redis {
    use tower_oauth2::cache::TokenCacheBuilder;

    use super::FleetReport;
    use crate::run::Config;

    pub(super) fn join(
        _: TokenCacheBuilder,
        _: &str,
        _: &Config,
    ) -> Result<(TokenCacheBuilder, FleetReport), String> {
        Err("--redis needs the demo built with `--features redis`".into())
    }
}
