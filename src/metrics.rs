//! Metrics through the [`metrics`] facade crate (feature `metrics`).
//!
//! Each [`TokenCache`](crate::TokenCache) reports what its
//! [`Stats`](crate::cache::Stats) count to whatever recorder the
//! application installed (`metrics-exporter-prometheus`, an OpenTelemetry
//! bridge, …); with none installed the facade drops them. They are emitted
//! where the counters are bumped, on the slow paths only: a request served
//! with a cached token records nothing.
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | [`oauth2_client_token_requests_total`](TOKEN_REQUESTS_TOTAL) | counter | `cache`, `outcome`, `reason`, `error` | token requests sent to the token endpoint, by outcome |
//! | [`oauth2_client_token_request_duration_seconds`](TOKEN_REQUEST_DURATION_SECONDS) | histogram | `cache` | how long each token request took, answer parsed |
//! | [`oauth2_client_token_expires_in_seconds`](TOKEN_EXPIRES_IN_SECONDS) | gauge | `cache` | the lifetime of the token last cached |
//! | [`oauth2_client_unauthorized_total`](UNAUTHORIZED_TOTAL) | counter | `cache`, `action` | 401 (or gRPC UNAUTHENTICATED) answers, by what was done |
//! | [`oauth2_client_requests_waited_total`](REQUESTS_WAITED_TOTAL) | counter | `cache` | calls that had no valid token and waited for a fetch |
//!
//! Labels, each with a bounded set of values, none a secret or a token:
//!
//! - `cache`: the name given to
//!   [`TokenCacheBuilder::metrics_name`](crate::cache::TokenCacheBuilder::metrics_name),
//!   or else the first 8 hex digits of the cache's
//!   [fingerprint](crate::cache::TokenCacheBuilder::fingerprint) (a hash of
//!   the token URL, client id, grant, scopes and the like, and of the
//!   subject a grant acts for; never a secret in clear), so two caches in
//!   one process are two series either way (one cache per user is one
//!   series per user: name them with `metrics_name` to bound that);
//! - `outcome`: `success` (the token was cached) or `error`;
//! - `reason` (errors only): the [`ErrorKind`] in snake case: `oauth`,
//!   `http_status`, `transport`, `timeout`, `invalid_response`,
//!   `invalid_token` (a token was issued but cannot be used), …;
//! - `error` (`oauth` errors only): the RFC 6749 §5.2 `error` code if it
//!   is one this crate knows ([`ErrorCode`]), else `other`;
//! - `action`: `retried` (the request was resent once with a new token);
//!   `passed_through` (returned as it came: its challenges name other
//!   schemes only) and `backed_off` (returned without a new token during
//!   the 401 backoff, ARCHITECTURE.md invariant 6).
//!
//! Counting: each token request is counted once, when its outcome is
//! known (an error answer at once; a token once it is cached or refused),
//! so the sum over outcomes is [`Stats::token_fetches`](crate::cache::Stats::token_fetches).
//! [`describe`] registers the descriptions and units (Prometheus `# HELP`).
//!
//! # Example
//!
//! ```
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! # fn main() -> Result<(), tower_oauth2::Error> {
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // A recorder for this thread only; the fetch task runs on it too with a
//! // current-thread runtime. An application installs one globally.
//! let _guard = metrics::set_default_local_recorder(&recorder);
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # runtime.block_on(async {
//! # let http = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
//! #         br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
//! #     ))))
//! # });
//! let endpoint = TokenEndpoint::new(
//!     http,
//!     TokenUrl::new("https://as.example.com/token")?,
//!     ClientAuth::client_secret_basic("svc", "secret"),
//! );
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials())
//!     .metrics_name("inventory")
//!     .build();
//! cache.bearer_header().await?;
//! # Ok::<(), tower_oauth2::Error>(())
//! # })?;
//!
//! let requests = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     let key = key.key();
//!     let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
//!     (key.name() == tower_oauth2::metrics::TOKEN_REQUESTS_TOTAL
//!         && labels == [("cache", "inventory"), ("outcome", "success")])
//!     .then_some(value)
//! });
//! assert_eq!(requests, Some(DebugValue::Counter(1)));
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("docs/metrics.md")]

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, SharedString,
    Unit,
};

use crate::error::{Error, ErrorCode, ErrorKind};
use crate::store::ConfigFingerprint;

/// Counter: token requests sent to the token endpoint, labelled `cache`,
/// `outcome` (`success`, `error`), and for errors `reason` (and `error`).
pub const TOKEN_REQUESTS_TOTAL: &str = "oauth2_client_token_requests_total";
/// Histogram, seconds: how long each token request took (request built,
/// sent, answer received and parsed), whatever its outcome. Label `cache`.
pub const TOKEN_REQUEST_DURATION_SECONDS: &str = "oauth2_client_token_request_duration_seconds";
/// Gauge, seconds: the lifetime of the token last fetched and cached (its
/// `expires_in`, or
/// [`RefreshPolicy::lifetime_when_unknown`](crate::cache::RefreshPolicy::lifetime_when_unknown)
/// when the token endpoint sent none). Label `cache`.
pub const TOKEN_EXPIRES_IN_SECONDS: &str = "oauth2_client_token_expires_in_seconds";
/// Counter: 401 answers (and gRPC UNAUTHENTICATED) from resource servers,
/// labelled `cache` and `action` (`retried`, `passed_through`, `backed_off`).
pub const UNAUTHORIZED_TOTAL: &str = "oauth2_client_unauthorized_total";
/// Counter: calls that found no valid token and waited for a fetch (as
/// [`Stats::waits`](crate::cache::Stats::waits)). Label `cache`.
pub const REQUESTS_WAITED_TOTAL: &str = "oauth2_client_requests_waited_total";

/// Describes the metrics (description and unit) to the installed recorder:
/// call it once after installing one, so an exporter can print them
/// (Prometheus `# HELP`). The metrics are recorded whether or not it is
/// called.
pub fn describe() {
    describe_counter!(
        TOKEN_REQUESTS_TOTAL,
        Unit::Count,
        "Token requests sent to the token endpoint, by outcome (success: the token was cached) \
         and, for errors, reason."
    );
    describe_histogram!(
        TOKEN_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "How long each token request took, answer received and parsed."
    );
    describe_gauge!(
        TOKEN_EXPIRES_IN_SECONDS,
        Unit::Seconds,
        "The lifetime (expires_in) of the token last fetched and cached."
    );
    describe_counter!(
        UNAUTHORIZED_TOTAL,
        Unit::Count,
        "401 answers from resource servers, by what was done: retried with a new token, \
         passed_through, or backed_off."
    );
    describe_counter!(
        REQUESTS_WAITED_TOTAL,
        Unit::Count,
        "Calls that found no valid token and waited for a token fetch."
    );
}

/// The `cache` label of one cache's metrics: a name the user chose, or a
/// prefix of the configuration's fingerprint. Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub(crate) struct CacheLabel(SharedString);

impl CacheLabel {
    /// Hex digits of the fingerprint in the default label: enough to tell
    /// a process's caches apart, short enough to read on a dashboard.
    const FINGERPRINT_DIGITS: usize = 8;

    /// `name`, or a prefix of `fingerprint` when there is none.
    pub(crate) fn new(name: Option<&str>, fingerprint: &ConfigFingerprint) -> Self {
        let label = match name {
            Some(name) => name.to_owned(),
            None => {
                let mut hex = fingerprint.to_string();
                hex.truncate(Self::FINGERPRINT_DIGITS);
                hex
            }
        };
        CacheLabel(SharedString::from_shared(Arc::from(label)))
    }

    fn value(&self) -> SharedString {
        self.0.clone()
    }
}

impl Default for CacheLabel {
    fn default() -> Self {
        CacheLabel(SharedString::const_str("default"))
    }
}

/// What was done about a 401 (the `action` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unauthorized {
    /// The request was resent once with a new token.
    Retried,
    /// The 401 was returned as it came: its challenges name other schemes
    /// only, so it asks for other credentials than a new token.
    PassedThrough,
    /// The 401 was returned without a new token because too many came for
    /// recent tokens (the 401 backoff).
    BackedOff,
}

impl Unauthorized {
    fn as_str(self) -> &'static str {
        match self {
            Unauthorized::Retried => "retried",
            Unauthorized::PassedThrough => "passed_through",
            Unauthorized::BackedOff => "backed_off",
        }
    }
}

/// One token request's duration, whatever its outcome.
pub(crate) fn record_token_request_duration(cache: &CacheLabel, duration: Duration) {
    histogram!(TOKEN_REQUEST_DURATION_SECONDS, "cache" => cache.value()).record(duration);
}

/// A token request that failed: the token endpoint's error (or none came),
/// or a token issued that cannot be used.
pub(crate) fn record_token_request_error(cache: &CacheLabel, error: &Error) {
    let reason = reason(error.kind());
    match error.oauth_error() {
        Some(answer) if error.kind() == ErrorKind::OAuth => counter!(
            TOKEN_REQUESTS_TOTAL,
            "cache" => cache.value(),
            "outcome" => "error",
            "reason" => reason,
            "error" => oauth_error_code(answer.error()),
        )
        .increment(1),
        _ => counter!(
            TOKEN_REQUESTS_TOTAL,
            "cache" => cache.value(),
            "outcome" => "error",
            "reason" => reason,
        )
        .increment(1),
    }
}

/// A token request whose token was cached, with the token's lifetime.
pub(crate) fn record_token_cached(cache: &CacheLabel, lifetime: Duration) {
    counter!(TOKEN_REQUESTS_TOTAL, "cache" => cache.value(), "outcome" => "success").increment(1);
    gauge!(TOKEN_EXPIRES_IN_SECONDS, "cache" => cache.value()).set(lifetime);
}

/// A 401 from a resource server, and what was done about it.
pub(crate) fn record_unauthorized(cache: &CacheLabel, action: Unauthorized) {
    counter!(UNAUTHORIZED_TOTAL, "cache" => cache.value(), "action" => action.as_str())
        .increment(1);
}

/// A call that found no valid token and waits for a fetch.
pub(crate) fn record_wait(cache: &CacheLabel) {
    counter!(REQUESTS_WAITED_TOTAL, "cache" => cache.value()).increment(1);
}

/// The `reason` label: the error's kind in snake case. Every kind is
/// listed, so a new one cannot go out without its label.
fn reason(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::OAuth => "oauth",
        ErrorKind::HttpStatus => "http_status",
        ErrorKind::Redirect => "redirect",
        ErrorKind::Transport => "transport",
        ErrorKind::Timeout => "timeout",
        ErrorKind::WaitTimeout => "wait_timeout",
        ErrorKind::BodyTooLarge => "body_too_large",
        ErrorKind::InvalidResponse => "invalid_response",
        ErrorKind::InvalidRequest => "invalid_request",
        ErrorKind::InvalidDestination => "invalid_destination",
        ErrorKind::RandomSource => "random_source",
        ErrorKind::InvalidToken => "invalid_token",
        ErrorKind::NoToken => "no_token",
        ErrorKind::NoRuntime => "no_runtime",
        ErrorKind::FetchAborted => "fetch_aborted",
        ErrorKind::ReauthorizationRequired => "reauthorization_required",
        ErrorKind::Discovery => "discovery",
        ErrorKind::NoRevocationEndpoint => "no_revocation_endpoint",
        ErrorKind::Revoked => "revoked",
        ErrorKind::UnmappedKey => "unmapped_key",
        ErrorKind::Credential => "credential",
        ErrorKind::NoSubject => "no_subject",
        ErrorKind::SubjectExpired => "subject_expired",
    }
}

/// The `error` label: a known RFC 6749 (or RFC 8628, 8693, 8707) code, or
/// `other`, so what a server sends cannot grow the label's values.
fn oauth_error_code(code: &ErrorCode) -> SharedString {
    match code {
        ErrorCode::Other(_) => SharedString::const_str("other"),
        known => SharedString::from_owned(known.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_oauth_codes_are_their_own_label_and_the_rest_are_other() {
        for wire in ["invalid_client", "invalid_grant", "temporarily_unavailable"] {
            assert_eq!(&*oauth_error_code(&ErrorCode::parse(wire)), wire);
        }
        for unknown in ["at-secret-1", "Invalid_Client", ""] {
            assert_eq!(&*oauth_error_code(&ErrorCode::parse(unknown)), "other");
        }
    }

    #[test]
    fn reasons_are_the_error_kinds_in_snake_case() {
        assert_eq!(reason(ErrorKind::OAuth), "oauth");
        assert_eq!(reason(ErrorKind::HttpStatus), "http_status");
        assert_eq!(reason(ErrorKind::BodyTooLarge), "body_too_large");
        assert_eq!(
            reason(ErrorKind::ReauthorizationRequired),
            "reauthorization_required"
        );
        assert_eq!(reason(ErrorKind::InvalidToken), "invalid_token");
    }

    #[test]
    fn the_default_cache_label_is_a_fingerprint_prefix() {
        let fingerprint = ConfigFingerprint::from_bytes([0xab; 32]);
        assert_eq!(&*CacheLabel::new(None, &fingerprint).value(), "abababab");
        assert_eq!(
            &*CacheLabel::new(Some("inventory"), &fingerprint).value(),
            "inventory"
        );
    }
}
