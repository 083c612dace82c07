//! The tier on a Redis Cluster: three masters made by `redis-cli --cluster
//! create` on free loopback ports.

use std::time::Duration;

use super::{fetches_alone, header_of, token_key, two_share_one_token};
use crate::redis_server::{available, RedisCluster};
use crate::support::pki::pki;
use crate::support::token_server::TestServer;
use tower_oauth2::fleet::RedisTier;

fn tier(cluster: &RedisCluster) -> RedisTier {
    let urls = cluster.urls();
    RedisTier::cluster(urls.iter().map(String::as_str))
        .expect("cluster URLs")
        .namespace("tests")
        .expect("a namespace")
        .timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_one_token_whose_lock_is_in_its_slot_and_a_401_deletes_it_there() {
    if !available() {
        return;
    }
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let server = TestServer::start().await;
    let (ta, tb) = (tier(&cluster), tier(&cluster));
    let a = server.client_credentials().redis(ta.clone()).build();
    let b = server.client_credentials().redis(tb.clone()).build();
    let (h, ga) = header_of(&a).await;
    assert_eq!(h, "Bearer at-1");
    let (h, gb) = header_of(&b).await;
    assert_eq!(h, "Bearer at-1", "b takes a's token from the cluster");
    assert_eq!(server.token_requests(), 1);
    assert_eq!((ta.stats().leases, tb.stats().shared_hits), (1, 1));

    // The token and its lock hash to one slot (the fingerprint is their
    // hash tag): the lease and the token are on one master.
    let token = token_key(&server.client_credentials());
    let lock = token.replace(":token", ":lock");
    let slot = cluster.cli(&["CLUSTER", "KEYSLOT", &token]);
    assert_eq!(cluster.cli(&["CLUSTER", "KEYSLOT", &lock]), slot);
    let refused = token.replace(":token", ":refused");
    assert_eq!(cluster.cli(&["CLUSTER", "KEYSLOT", &refused]), slot);
    assert!(cluster.cli(&["GET", &token]).contains("at-1"));

    // The 401 compare-and-delete, on the master holding the slot.
    a.invalidate(ga);
    assert_eq!(header_of(&a).await.0, "Bearer at-2");
    assert_eq!(ta.stats().invalidations, 1);
    b.invalidate(gb);
    assert_eq!(
        header_of(&b).await.0,
        "Bearer at-2",
        "the newer token, as it is"
    );
    assert_eq!(tb.stats().invalidations, 0);
    assert_eq!(server.token_requests(), 2);
    assert!(cluster.cli(&["GET", &token]).contains("at-2"));
    assert_eq!((ta.stats().fallbacks, tb.stats().fallbacks), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_rediss_with_a_private_ca_shares_one_token() {
    if !available() {
        return;
    }
    let pki = pki();
    let cluster =
        tokio::task::block_in_place(|| RedisCluster::start_tls(&super::secure::pems(&pki)));
    assert!(cluster.urls()[0].starts_with("rediss://"));
    let server = TestServer::start().await;
    two_share_one_token(&server, || {
        tier(&cluster)
            .tls_ca_certificates(&pki.ca_pem)
            .expect("the test CA")
    })
    .await;
    let token = token_key(&server.client_credentials());
    assert!(cluster.cli(&["GET", &token]).contains("at-1"));

    // Mozilla's roots do not hold the test CA: the process fetches alone.
    fetches_alone(&server, &tier(&cluster), 2).await;
}
