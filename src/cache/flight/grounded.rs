//! [`Grounded`]: the flight slot, held by [`TokenCache::revoke`] while the
//! cache's tokens are revoked, so that no fetch issues a token the
//! revocation would miss (ARCHITECTURE.md, invariant 2).

use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::watch;

use super::Outcome;
use crate::cache::TokenCache;
use crate::error::Error;

/// The flight slot, held by [`TokenCache::revoke`]: while it is held no
/// fetch starts (no token is issued that the revocation would miss), and
/// callers that need a token wait for its release.
pub(in crate::cache) struct Grounded {
    cache: TokenCache,
    tx: watch::Sender<Outcome>,
    revoked: bool,
}

impl TokenCache {
    /// Waits until no fetch is running (the one in progress has landed, its
    /// token and refresh token recorded), then takes the flight slot. With
    /// no Tokio runtime to run the revocation's exchanges on, a
    /// [`crate::ErrorKind::NoRuntime`] error, and nothing is taken.
    pub(in crate::cache) async fn ground(&self) -> Result<Grounded, Error> {
        let runtime = Handle::try_current().map_err(|_| Error::no_runtime())?;
        loop {
            let mut rx = {
                let mut state = self.flight_state();
                match &state.flight {
                    Some(flight) => flight.rx.clone(),
                    None => {
                        let tx = state.take_off(runtime.clone()).0;
                        return Ok(Grounded {
                            cache: self.clone(),
                            tx,
                            revoked: false,
                        });
                    }
                }
            };
            // Landed, or ended without an answer: look again either way.
            let _ = rx.wait_for(Option::is_some).await;
        }
    }
}

impl Grounded {
    /// The revocation succeeded: on release the backoff is cleared too, so
    /// the next caller that needs a token fetches one at once.
    pub(in crate::cache) fn revoked(&mut self) {
        self.revoked = true;
    }
}

impl Drop for Grounded {
    /// Frees the slot, however the revocation ended (done, failed, or its
    /// caller gone), and answers the callers that waited: with the cached
    /// token if it is still there and valid (the revocation failed before
    /// reaching it), otherwise with [`crate::ErrorKind::Revoked`].
    fn drop(&mut self) {
        {
            let mut state = self.cache.flight_state();
            state.flight = None;
            if self.revoked {
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
            }
        }
        let outcome = match self.cache.shared.current.load_full() {
            Some(c) if c.is_valid_at(Instant::now()) => Ok(c),
            _ => Err(Error::revoked()),
        };
        let _ = self.tx.send(Some(outcome));
    }
}
