//! What the integration tests share: a scriptable fake authorization and
//! resource server ([`token_server::TestServer`]), the HTTP client they send
//! with ([`client`]), the one accept-and-serve loop for servers they
//! write themselves ([`serve`]), and the crate's logs captured ([`log`]).

pub mod client;
pub mod log;
pub mod serve;
pub mod token_server;
