//! What the integration tests share: a scriptable fake authorization and
//! resource server ([`token_server::TestServer`]), the HTTP client they send
//! with ([`client`]), the one accept-and-serve loop for servers they write
//! themselves ([`serve`]), a test CA with TLS listeners ([`pki`]), and the
//! crate's logs captured ([`log`]).

pub mod client;
#[allow(dead_code, reason = "only the tests that run the demo as a process")]
pub mod demo_binary;
#[allow(dead_code, reason = "only the DPoP test binaries check proofs")]
pub mod dpop;
pub mod log;
#[allow(dead_code, reason = "only the TLS test binaries serve TLS")]
pub mod pki;
pub mod serve;
pub mod token_server;
