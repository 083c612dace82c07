//! `rediss://` with a private CA (and a client certificate for a Redis that
//! asks for one), and an ACL user and password from the URL, against real
//! redis-servers; and the TLS settings' checks.

use tower_oauth2::fleet::RedisTier;

use super::{fetches_alone, header_of, outage_warnings, tier, two_share_one_token};
use crate::redis_server::{available, RedisServer, TlsPems};
use crate::support::log::capture;
use crate::support::pki::{pki, Pki};
use crate::support::token_server::TestServer;

/// The certificates a TLS redis-server (and redis-cli) of `pki` uses.
pub fn pems(pki: &Pki) -> TlsPems {
    let (node, cli) = (pki.node_cert(), pki.client_cert("redis-cli"));
    TlsPems {
        ca: pki.ca_pem.clone(),
        node_cert: node.cert_pem,
        node_key: node.key_pem,
        cli_cert: cli.cert_pem,
        cli_key: cli.key_pem,
    }
}

/// A tier over `rediss://` trusting `ca`'s certificates.
fn trusting(redis: &RedisServer, ca: &Pki) -> RedisTier {
    tier(&redis.url())
        .tls_ca_certificates(&ca.ca_pem)
        .expect("the test CA")
}

#[tokio::test]
async fn over_rediss_with_a_private_ca_two_caches_share_one_token() {
    if !available() {
        return;
    }
    let pki = pki();
    let redis = RedisServer::start_tls(&pems(&pki), false);
    let server = TestServer::start().await;
    two_share_one_token(&server, || trusting(&redis, &pki)).await;
    assert_eq!(redis.cli(&["DBSIZE"]), "1", "the token, over TLS");
}

#[tokio::test]
async fn a_tier_that_does_not_trust_the_ca_fetches_alone_and_warns_once() {
    if !available() {
        return;
    }
    let logs = capture().everywhere();
    let pki = pki();
    let redis = RedisServer::start_tls(&pems(&pki), false);
    let server = TestServer::start().await;
    let stranger = trusting(&redis, &crate::support::pki::pki());
    let cache = server.client_credentials().redis(stranger.clone()).build();
    let (header, generation) = header_of(&cache).await;
    assert_eq!(header, "Bearer at-1");
    cache.invalidate(generation);
    assert_eq!(header_of(&cache).await.0, "Bearer at-2");
    assert_eq!(stranger.stats().fallbacks, 2);
    assert_eq!(outage_warnings(&logs, redis.port), 1, "once per outage");

    // Mozilla's roots (no CA given) do not hold the test CA either.
    fetches_alone(&server, &tier(&redis.url()), 3).await;
    assert_eq!(outage_warnings(&logs, redis.port), 2, "one more tier");
    assert_eq!(server.token_requests(), 3);
    assert_eq!(redis.cli(&["DBSIZE"]), "0", "nothing reached Redis");
}

#[tokio::test]
async fn a_client_certificate_is_presented_to_a_redis_that_asks_for_one() {
    if !available() {
        return;
    }
    let pki = pki();
    let redis = RedisServer::start_tls(&pems(&pki), true);
    let server = TestServer::start().await;
    let identity = pki.client_cert("fleet");
    let with_cert = || {
        trusting(&redis, &pki)
            .tls_client_certificate(&identity.cert_pem, &identity.key_pem)
            .expect("the client certificate")
    };
    two_share_one_token(&server, with_cert).await;

    // Without one, Redis refuses the handshake: the process fetches alone.
    fetches_alone(&server, &trusting(&redis, &pki), 2).await;
}

#[tokio::test]
async fn an_acl_user_from_the_url_shares_and_a_wrong_password_falls_back_unquoted() {
    if !available() {
        return;
    }
    let logs = capture().everywhere();
    let password = "s3cret-fleet-pw";
    let redis = RedisServer::start_with(&[
        "--user",
        "fleet",
        "on",
        &format!(">{password}"),
        "~*",
        "&*",
        "+@all",
    ]);
    let server = TestServer::start().await;
    let url = format!("redis://fleet:{password}@127.0.0.1:{}", redis.port);
    let _connected = two_share_one_token(&server, || tier(&url)).await;
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert_eq!(clients.matches(" user=fleet ").count(), 2, "{clients}");

    let wrong = "wr0ng-fleet-pw";
    let wrong_url = format!("redis://fleet:{wrong}@127.0.0.1:{}", redis.port);
    let tw = tier(&wrong_url);
    fetches_alone(&server, &tw, 2).await;
    assert_eq!(outage_warnings(&logs, redis.port), 1);
    let text = logs.text();
    for secret in [password, wrong, &url, &wrong_url] {
        assert!(!text.contains(secret), "{secret:?} logged");
        assert!(
            !format!("{tw:?}{:?}", tier(&url)).contains(secret),
            "{secret:?} shown"
        );
    }
}

#[test]
fn tls_settings_are_checked_and_their_errors_quote_no_pem() {
    let pki = pki();
    let identity = pki.client_cert("fleet");
    let other = pki.client_cert("other");
    let tier = || RedisTier::standalone("rediss://127.0.0.1:6380").unwrap();
    let key_body: String = identity
        .key_pem
        .lines()
        .nth(1)
        .unwrap()
        .chars()
        .take(20)
        .collect();
    let broken_key = identity
        .key_pem
        .replacen(&key_body, &format!("!{key_body}"), 1);
    let ca_cases = [
        ("", "no CERTIFICATE block in the certificate PEM"),
        (
            identity.key_pem.as_str(),
            "no CERTIFICATE block in the certificate PEM",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
            "a certificate cannot be read as a trust anchor",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nM!AA\n-----END CERTIFICATE-----\n",
            "a PEM block is not valid base64",
        ),
    ];
    for (pem, detail) in ca_cases {
        let e = tier().tls_ca_certificates(pem).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("unusable Redis CA certificates: {detail}")
        );
    }
    let client_cases = [
        (
            &identity.key_pem,
            &identity.key_pem,
            "no CERTIFICATE block in the certificate PEM",
        ),
        (
            &identity.cert_pem,
            &identity.cert_pem,
            "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block in the key PEM",
        ),
        (
            &identity.cert_pem,
            &broken_key,
            "a PEM block is not valid base64",
        ),
        (
            &identity.cert_pem,
            &other.key_pem,
            "the private key is not the key of the first certificate",
        ),
    ];
    for (cert, key, detail) in client_cases {
        let e = tier().tls_client_certificate(cert, key).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("unusable Redis TLS client certificate: {detail}")
        );
        assert!(!format!("{e:?}").contains(&key_body));
    }
    // TLS settings on a `redis://` URL would never be used.
    let plain = RedisTier::standalone("redis://127.0.0.1:6379").unwrap();
    let e = plain.tls_ca_certificates(&pki.ca_pem).unwrap_err();
    assert_eq!(e.to_string(), "Redis TLS settings need rediss:// URLs");
    let mixed = RedisTier::cluster(["rediss://127.0.0.1:7000", "redis://127.0.0.1:7001"]);
    assert!(mixed.is_err(), "the redis crate refuses mixed TLS modes");
    let cluster = RedisTier::cluster(["rediss://127.0.0.1:7000", "rediss://127.0.0.1:7001"])
        .unwrap()
        .tls_ca_certificates(&pki.ca_pem)
        .unwrap()
        .tls_client_certificate(&identity.cert_pem, &identity.key_pem)
        .unwrap();
    let shown = format!("{cluster:?}");
    assert!(
        shown.contains("kind: \"cluster\", private_ca: true, client_certificate: true"),
        "{shown}"
    );
    assert!(!shown.contains(&key_body), "{shown}");
    // One file holding both, passed twice.
    let both = format!("{}{}", identity.key_pem, identity.cert_pem);
    assert!(tier().tls_client_certificate(&both, &both).is_ok());
}
