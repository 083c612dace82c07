//! [`MtlsEndpointAliases`]: the endpoints a client using mutual TLS is sent
//! to instead (RFC 8705 §5).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::metadata::{token_url, typed, Member};
use crate::error::Error;
use crate::request::TokenUrl;

/// A server's `mtls_endpoint_aliases` (RFC 8705 §5): the endpoints a client
/// that presents a certificate uses instead of the ordinary ones, often on
/// a host of their own where the server asks for client certificates.
///
/// An endpoint with no alias is used as it is. The token endpoint alias is
/// checked like `token_endpoint` (a usable [`TokenUrl`]); the others are
/// kept as the server sent them.
#[derive(Clone, Debug)]
pub struct MtlsEndpointAliases {
    token_endpoint: Option<TokenUrl>,
    revocation_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    other: Map<String, Value>,
}

impl MtlsEndpointAliases {
    /// The token endpoint's alias, if sent.
    pub fn token_endpoint(&self) -> Option<&TokenUrl> {
        self.token_endpoint.as_ref()
    }

    /// The revocation endpoint's alias (RFC 7009), if sent.
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }

    /// The introspection endpoint's alias (RFC 7662), if sent.
    pub fn introspection_endpoint(&self) -> Option<&str> {
        self.introspection_endpoint.as_deref()
    }

    /// Every other alias (`userinfo_endpoint`,
    /// `pushed_authorization_request_endpoint`…), as sent.
    pub fn other(&self) -> &Map<String, Value> {
        &self.other
    }
}

/// `mtls_endpoint_aliases` as serde reads it (see `metadata::Document`).
#[derive(Deserialize)]
pub(super) struct AliasesDocument {
    token_endpoint: Option<Member<String>>,
    revocation_endpoint: Option<Member<String>>,
    introspection_endpoint: Option<Member<String>>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

impl AliasesDocument {
    /// The types of RFC 8705 §5 and a usable token endpoint alias.
    pub(super) fn check(self, url: Option<&str>) -> Result<MtlsEndpointAliases, Error> {
        const KEY: &str = "mtls_endpoint_aliases.token_endpoint";
        let text = |member, key| typed(member, key, "a string", url);
        let token_endpoint = text(self.token_endpoint, KEY)?
            .map(|endpoint| token_url(&endpoint, KEY, url))
            .transpose()?;
        Ok(MtlsEndpointAliases {
            token_endpoint,
            revocation_endpoint: text(
                self.revocation_endpoint,
                "mtls_endpoint_aliases.revocation_endpoint",
            )?,
            introspection_endpoint: text(
                self.introspection_endpoint,
                "mtls_endpoint_aliases.introspection_endpoint",
            )?,
            other: self.other,
        })
    }
}
