//! What the integration tests share: a scriptable fake authorization and
//! resource server ([`token_server::TestServer`]), the HTTP client they send
//! with ([`client`]), the one accept-and-serve loop for servers they write
//! themselves ([`serve`]), a test CA with TLS listeners ([`pki`]), and the
//! crate's logs captured ([`log`]).

pub mod client;
pub mod demo_binary;
pub mod demo_process;
pub mod dpop;
pub mod log;
pub mod pki;
pub mod redirect;
pub mod serve;
pub mod token_server;
