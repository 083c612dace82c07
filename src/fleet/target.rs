//! Where the tier's Redis is: its URLs, parsed; the TLS settings for
//! `rediss://` (a private CA, a client certificate), checked when given;
//! and the redis crate's client made from them.

use redis::cluster::ClusterClient;
use redis::{
    Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates,
};
use rustls::RootCertStore;

use super::{ConfigError, RedisTier};
use crate::pem;

/// The tier's Redis and the client made for it.
#[derive(Clone)]
pub(super) struct Target {
    nodes: Nodes,
    /// Set only when every node's URL is `rediss://`.
    tls: Option<TlsCertificates>,
    client: RedisClient,
}

/// The parsed URLs (the redis crate's clients do not give them back).
#[derive(Clone)]
enum Nodes {
    Standalone(Box<ConnectionInfo>),
    Cluster(Vec<ConnectionInfo>),
}

/// The redis crate's client: a description, no connection.
#[derive(Clone)]
pub(super) enum RedisClient {
    Standalone(Box<Client>),
    Cluster(Box<ClusterClient>),
}

impl Target {
    pub(super) fn standalone(url: &str) -> Result<Self, ConfigError> {
        let info = url.into_connection_info().map_err(|e| bad_url(&e))?;
        Self::new(Nodes::Standalone(Box::new(info)), None)
    }

    pub(super) fn cluster<'a>(
        urls: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        let infos = urls
            .into_iter()
            .map(|url| url.into_connection_info().map_err(|e| bad_url(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(Nodes::Cluster(infos), None)
    }

    fn new(nodes: Nodes, tls: Option<TlsCertificates>) -> Result<Self, ConfigError> {
        let client = match &nodes {
            Nodes::Standalone(info) => RedisClient::Standalone(Box::new(
                match &tls {
                    None => Client::open((**info).clone()),
                    Some(certs) => Client::build_with_tls((**info).clone(), certs.clone()),
                }
                .map_err(|e| bad_url(&e))?,
            )),
            Nodes::Cluster(infos) => {
                let mut builder = ClusterClient::builder(infos.clone())
                    .connection_timeout(RedisTier::DEFAULT_TIMEOUT)
                    .response_timeout(RedisTier::DEFAULT_TIMEOUT)
                    .retries(1);
                if let Some(certs) = &tls {
                    builder = builder.certs(certs.clone());
                }
                RedisClient::Cluster(Box::new(builder.build().map_err(|e| bad_url(&e))?))
            }
        };
        Ok(Target { nodes, tls, client })
    }

    pub(super) fn client(&self) -> &RedisClient {
        &self.client
    }

    pub(super) fn kind(&self) -> &'static str {
        match self.nodes {
            Nodes::Standalone(_) => "standalone",
            Nodes::Cluster(_) => "cluster",
        }
    }

    /// The nodes' `host:port`s, for logs (no user, no password).
    pub(super) fn addr(&self) -> String {
        match &self.nodes {
            Nodes::Standalone(info) => info.addr().to_string(),
            Nodes::Cluster(infos) => infos
                .iter()
                .map(|i| i.addr().to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// What the TLS settings add to the URLs, for `Debug`.
    pub(super) fn tls(&self) -> (bool, bool) {
        let tls = self.tls.as_ref();
        (
            tls.is_some_and(|t| t.root_cert.is_some()),
            tls.is_some_and(|t| t.client_tls.is_some()),
        )
    }

    /// Trusts only the CA certificates in `pem`.
    pub(super) fn trusting(self, pem: &[u8]) -> Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        for cert in pem::certificates(pem).map_err(|p| bad_ca(&p.detail()))? {
            roots
                .add(cert)
                .map_err(|_| bad_ca("a certificate cannot be read as a trust anchor"))?;
        }
        self.with_tls(|tls| tls.root_cert = Some(pem.to_vec()))
    }

    /// Presents the certificate chain in `cert_pem` with the key in
    /// `key_pem`, checked to be its key.
    pub(super) fn presenting(self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ConfigError> {
        let bad = |p: pem::Problem| {
            ConfigError(format!(
                "unusable Redis TLS client certificate: {}",
                p.detail()
            ))
        };
        let chain = pem::certificates(cert_pem).map_err(bad)?;
        pem::certified_key(chain, pem::private_key(key_pem).map_err(bad)?).map_err(bad)?;
        self.with_tls(|tls| {
            tls.client_tls = Some(ClientTlsConfig {
                client_cert: cert_pem.to_vec(),
                client_key: key_pem.to_vec(),
            });
        })
    }

    /// The client remade with changed TLS settings; they need `rediss://`
    /// URLs (a `redis://` node would be reached without TLS).
    fn with_tls(self, change: impl FnOnce(&mut TlsCertificates)) -> Result<Self, ConfigError> {
        let infos = match &self.nodes {
            Nodes::Standalone(info) => std::slice::from_ref(&**info),
            Nodes::Cluster(infos) => infos.as_slice(),
        };
        if !infos
            .iter()
            .all(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }))
        {
            return Err(ConfigError(
                "Redis TLS settings need rediss:// URLs".to_owned(),
            ));
        }
        let mut tls = self.tls.unwrap_or(TlsCertificates {
            client_tls: None,
            root_cert: None,
        });
        change(&mut tls);
        Self::new(self.nodes, Some(tls))
    }
}

fn bad_url(e: &redis::RedisError) -> ConfigError {
    // The kind only: the redis crate's detail may quote the URL.
    ConfigError(format!("not a usable Redis URL ({:?})", e.kind()))
}

fn bad_ca(detail: &str) -> ConfigError {
    ConfigError(format!("unusable Redis CA certificates: {detail}"))
}
