//! What the integration tests share: a scriptable fake authorization and
//! resource server ([`token_server::TestServer`]), the HTTP client they send
//! with ([`client`]), the one accept-and-serve loop for servers they
//! write themselves ([`serve`]), and a test PKI and TLS listener ([`tls`]).

pub mod client;
pub mod serve;
pub mod tls;
pub mod token_server;
