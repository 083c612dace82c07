//! [`FetchesPaused`]: the flight slot, held by [`TokenCache::revoke`] while the
//! cache's tokens are revoked, so that no fetch issues a token the
//! revocation would miss (ARCHITECTURE.md, invariant 2).

use tokio::runtime::Handle;

use crate::cache::TokenCache;
use crate::clock::Instant;
use crate::error::Error;

/// The flight slot, held by [`TokenCache::revoke`]: while it is held no
/// fetch starts (no token is issued that the revocation would miss), and
/// callers that need a token wait for its release.
pub(in crate::cache) struct FetchesPaused {
    cache: TokenCache,
    /// Its flight id.
    id: u64,
    revoked: bool,
}

impl TokenCache {
    /// Waits until no fetch is running (the one in progress has ended, its
    /// token and refresh token recorded), then takes the flight slot. A
    /// stalled flight (module docs of `flight/mod.rs`) is taken over at once:
    /// its late token, if it ever comes, is not cached, so not revoked
    /// either. With no Tokio runtime to run the revocation's exchanges on,
    /// a [`crate::ErrorKind::NoRuntime`] error; after the wait timeout, a
    /// [`crate::ErrorKind::WaitTimeout`] error; nothing is taken then.
    pub(in crate::cache) async fn pause_fetches(&self) -> Result<FetchesPaused, Error> {
        let runtime = Handle::try_current().map_err(|_| Error::no_runtime())?;
        let wait = self.flight_state().wait_timeout;
        match tokio::time::timeout(wait, self.pause_fetches_when_idle(&runtime)).await {
            Ok(paused) => Ok(paused),
            Err(_elapsed) => {
                tracing::warn!(
                    wait = ?wait,
                    "gave up waiting for the token fetch in progress; nothing was revoked"
                );
                Err(Error::wait_timeout(wait))
            }
        }
    }

    async fn pause_fetches_when_idle(&self, runtime: &Handle) -> FetchesPaused {
        loop {
            let mut rx = {
                let mut state = self.flight_state();
                match state.running(Some(runtime), Instant::now()) {
                    Some(flight) => flight.tx.subscribe(),
                    None => {
                        let id = state.begin(runtime.clone(), true).0;
                        return FetchesPaused {
                            cache: self.clone(),
                            id,
                            revoked: false,
                        };
                    }
                }
            };
            // Ended, with or without an answer: check again either way.
            let _ = rx.wait_for(Option::is_some).await;
        }
    }
}

impl FetchesPaused {
    /// The revocation succeeded: on release the backoff is cleared too, so
    /// the next caller that needs a token fetches one at once.
    pub(in crate::cache) fn revoked(&mut self) {
        self.revoked = true;
    }
}

impl Drop for FetchesPaused {
    /// Frees the slot, however the revocation ended (done, failed, or its
    /// caller gone), and answers the callers that waited: with the cached
    /// token if it is still there and valid (the revocation failed before
    /// reaching it), otherwise with [`crate::ErrorKind::Revoked`].
    fn drop(&mut self) {
        let tx = {
            let mut state = self.cache.flight_state();
            // Taken over (held past the fetch limit): nothing to free.
            let Some(tx) = state.end(self.id) else {
                return;
            };
            if self.revoked {
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
            }
            tx
        };
        let outcome = match self.cache.shared.current.load_full() {
            Some(c) if c.is_valid_at(Instant::now()) => Ok(c),
            _ => Err(Error::revoked()),
        };
        let _ = tx.send(Some(outcome));
    }
}
