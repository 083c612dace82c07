//! The tracing spans the `cache` module docs list ("Logs and tracing
//! spans"): their names and fields, exactly, and no secret in any of them,
//! through a fetch, a 401 and its refetch, a revocation and (feature
//! `redis`) a fleet sharing one token. Every span's opening and closing is
//! captured with its fields as recorded at the end (`support::log`
//! records `FmtSpan::NEW | CLOSE`), at TRACE.

#[cfg(feature = "redis")]
use crate::redis_server;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use support::client::{get, layered};
use support::log::capture;
use support::token_server::{ClientCheck, TestServer};
use tower::ServiceExt;
use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// The canaries: the client secret and every token's prefix.
const SECRET: &str = "CANARY-secret-7f3a";
const PREFIX: &str = "CANARY-token-";

/// Every `oauth2.*` span in `logs`, with the names of the fields it was
/// seen with (a field not yet recorded is not shown, so the union).
fn spans(logs: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rest = logs;
    while let Some(at) = rest.find("oauth2.") {
        rest = &rest[at..];
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_owned();
        rest = &rest[name_end..];
        if !rest.starts_with('{') {
            continue;
        }
        let fields = found.entry(name).or_default();
        // `k=v k="quoted v"`, up to the closing brace.
        let (mut quoted, mut key, mut in_key, mut end) = (false, String::new(), true, 0);
        for (i, c) in rest[1..].char_indices() {
            match c {
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    end = i + 1;
                    break;
                }
                ' ' if !quoted => in_key = true,
                '=' if in_key && !quoted => {
                    fields.insert(std::mem::take(&mut key));
                    in_key = false;
                }
                c if in_key => key.push(c),
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    found
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn cache_for(server: &TestServer) -> tower_oauth2::cache::TokenCacheBuilder {
    let endpoint = TokenEndpoint::new(
        support::client::http_client(),
        TokenUrl::new(&server.token_url()).expect("a token URL"),
        ClientAuth::client_secret_basic("client", SECRET),
    )
    .revocation_url(server.revocation_url());
    TokenCache::builder(endpoint, TokenRequest::client_credentials())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_have_their_documented_names_and_fields_and_carry_no_secret() {
    // A multi-thread runtime and the fleet's own threads: every thread's
    // lines (the canaries are this test's alone).
    let logs = capture().everywhere();
    let server = TestServer::start().await;
    server.set_client("client", SECRET, ClientCheck::Basic);
    server.set_token_prefix(PREFIX);
    let cache = cache_for(&server).build();
    let client = layered(&cache);
    let url = server.url("/orders");
    let ok = client.clone().oneshot(get(&url)).await.expect("an answer");
    assert_eq!(ok.status(), 200);
    // A 401 for the token: a new one, the request sent again.
    server.revoke(&format!("{PREFIX}at-1"));
    let ok = client.clone().oneshot(get(&url)).await.expect("an answer");
    assert_eq!(ok.status(), 200);
    cache.revoke().await.expect("revoked");
    assert_eq!(server.token_requests(), 2);

    #[cfg(feature = "redis")]
    fleet(&server).await;

    let text = logs.text();
    assert!(!text.contains("CANARY"), "a secret in the logs:\n{text}");
    let found = spans(&text);
    assert_eq!(found["oauth2.fetch"], set(&["background"]), "{text}");
    assert_eq!(
        found["oauth2.token_request"],
        set(&["client_id", "grant_type", "status", "token_url"]),
        "{text}"
    );
    assert_eq!(
        found["oauth2.revocation"],
        set(&["client_id", "revocation_url", "status", "token_type_hint"]),
        "{text}"
    );
    assert!(text.contains("oauth2.token_request{grant_type=\"client_credentials\""));
    assert!(text.contains("oauth2.revocation{token_type_hint=\"access_token\""));
    #[cfg(feature = "redis")]
    {
        assert_eq!(
            found["oauth2.fleet_fetch"],
            set(&["source", "token_cached"]),
            "{text}"
        );
        for seen in [
            // a's first token, through the lease; b's, from Redis.
            "oauth2.fleet_fetch{token_cached=false source=\"token_endpoint\"}",
            "oauth2.fleet_fetch{token_cached=false source=\"tier\"}",
            // a's refresh, with its token still cached.
            "oauth2.fleet_fetch{token_cached=true source=\"token_endpoint\"}",
        ] {
            assert!(text.contains(seen), "no {seen}:\n{text}");
        }
    }
    let expected: BTreeSet<&str> = [
        "oauth2.fetch",
        "oauth2.token_request",
        "oauth2.revocation",
        #[cfg(feature = "redis")]
        "oauth2.fleet_fetch",
    ]
    .into();
    assert_eq!(
        found.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
}

/// Two processes of a fleet: the first fetches through the lease, the
/// second takes its token from Redis, then the first refreshes its
/// token.
#[cfg(feature = "redis")]
async fn fleet(server: &TestServer) {
    if !redis_server::available() {
        return;
    }
    let redis = redis_server::RedisServer::start();
    let tier = || {
        tower_oauth2::fleet::RedisTier::standalone(&redis.url())
            .expect("a Redis URL")
            .namespace("spans")
            .expect("a namespace")
            .timeout(std::time::Duration::from_secs(2))
    };
    let before = server.token_requests();
    let a = cache_for(server).redis(tier()).build();
    let b = cache_for(server).redis(tier()).build();
    let url = server.url("/orders");
    let ok = layered(&a).oneshot(get(&url)).await.expect("an answer");
    assert_eq!(ok.status(), 200);
    let ok = layered(&b).oneshot(get(&url)).await.expect("an answer");
    assert_eq!(ok.status(), 200);
    assert_eq!(server.token_requests(), before + 1, "b took a's token");
    a.refresh_now().await.expect("a new token");
    assert_eq!(server.token_requests(), before + 2);
}
