//! Recording a new token before it is used ([`Recorder`]): the
//! [`TokenStore`] and the `on_refresh_token` callback, each run on a
//! blocking thread within a deadline, so a hung filesystem or a slow
//! callback cannot hold the token back from its waiters.
//!
//! A save (or callback) that misses its deadline goes on in the background.
//! Saves run one at a time in the order the tokens were fetched, and one
//! that only gets its turn after a later one has run is skipped: a late save
//! never puts an older (with rotation, spent) refresh token back over a newer.
//! The same goes for callbacks.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::super::stats::{bump, Counters};
use super::RefreshTokenCallback;
use crate::secret::SecretString;
use crate::store::{ConfigFingerprint, StoredToken, TokenStore};
use crate::token::Token;

/// Where each new token is recorded before it is used.
pub(in crate::cache) struct Recorder {
    store: Option<Arc<dyn TokenStore>>,
    on_refresh_token: Option<RefreshTokenCallback>,
    /// How long a save, or a callback, may hold the token back.
    deadline: Duration,
    saves: InOrder,
    callbacks: InOrder,
}

impl Recorder {
    /// Saves to `store` (under each token's fingerprint), calls
    /// `on_refresh_token`; each may hold a token back at most `deadline`.
    pub(in crate::cache) fn new(
        store: Option<Arc<dyn TokenStore>>,
        on_refresh_token: Option<RefreshTokenCallback>,
        deadline: Duration,
    ) -> Self {
        Recorder {
            store,
            on_refresh_token,
            deadline,
            saves: InOrder::default(),
            callbacks: InOrder::default(),
        }
    }

    /// Saves `token` under `fingerprint`, then hands `new_refresh_token` (a rotated one) to the
    /// callback. Neither failing nor missing the deadline stops the token
    /// from being used: with rotation, the refresh token sent is spent.
    pub(super) async fn record(
        &self,
        token: &Token,
        new_refresh_token: Option<SecretString>,
        fingerprint: ConfigFingerprint,
        counters: &Counters,
    ) {
        if let Some(store) = &self.store {
            let store = store.clone();
            let stored = StoredToken::new(token.clone(), fingerprint);
            let saved = self.saves.run(self.deadline, move || store.save(&stored));
            if let Err(why) = saved.await {
                bump(&counters.store_failures);
                tracing::error!(error = %why, "could not save the new token; it is used anyway");
            }
        }
        if let (Some(callback), Some(new)) = (&self.on_refresh_token, new_refresh_token) {
            tracing::debug!("new refresh token issued; handing it to the application");
            let callback = callback.clone();
            let called = self.callbacks.run(self.deadline, move || {
                callback(&new);
                Ok(())
            });
            if let Err(why) = called.await {
                tracing::error!(
                    error = %why,
                    "the on_refresh_token callback did not complete; the new token is used anyway"
                );
            }
        }
    }
}

impl Recorder {
    /// A resource server refused `token` (a 401): marks it refused in the
    /// store, if the store still holds it, so that a cache built again
    /// never restores it ([`TokenStore::refuse`]). Runs in the background,
    /// in order with the saves and within the deadline: the 401 is never
    /// held back by the store. Outside a Tokio runtime there is nothing to
    /// run it on, and it is skipped (logged).
    pub(in crate::cache) fn refused(&self, token: &Token, fingerprint: ConfigFingerprint) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if self.store.is_some() {
                tracing::debug!("no Tokio runtime: the refused token is not marked in the store");
            }
            return;
        };
        if let Some(marked) = self.mark_refused(token, fingerprint) {
            runtime.spawn(marked);
        }
    }

    /// [`refused`](Self::refused), waited for (within the deadline):
    /// `TokenCache::revoke` returns only once the store says so, since a
    /// process may exit right after it ("revoke on shutdown").
    pub(in crate::cache) async fn refused_now(
        &self,
        token: &Token,
        fingerprint: ConfigFingerprint,
    ) {
        if let Some(marked) = self.mark_refused(token, fingerprint) {
            marked.await;
        }
    }

    fn mark_refused(
        &self,
        token: &Token,
        fingerprint: ConfigFingerprint,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let store = self.store.as_ref()?.clone();
        let access_token = token.access_token().clone();
        let marked = self.saves.run(self.deadline, move || {
            store.refuse(&fingerprint, &access_token)
        });
        Some(async move {
            if let Err(why) = marked.await {
                tracing::warn!(error = %why, "could not mark the refused token in the store");
            }
        })
    }
}

/// Runs blocking jobs one at a time, in the order they were started; a job
/// whose turn comes after a later one's is skipped.
#[derive(Default)]
struct InOrder {
    started: AtomicU64,
    /// The number of the last job that ran; held while a job runs. Made
    /// by the first job: most caches have no store and no callback, and
    /// a keyed layer keeps a cache per key.
    last_run: OnceLock<Arc<Mutex<u64>>>,
}

impl InOrder {
    /// Runs `job` on a blocking thread and waits for it at most `deadline`.
    /// The error says what went wrong, with no secret in it. Its turn is
    /// taken now, when `run` is called, not when the future is first polled.
    fn run(
        &self,
        deadline: Duration,
        job: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let last_run = self.last_run.get_or_init(Arc::default).clone();
        async move { Self::run_as(number, last_run, deadline, job).await }
    }

    async fn run_as(
        number: u64,
        last_run: Arc<Mutex<u64>>,
        deadline: Duration,
        job: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> Result<(), String> {
        let task = tokio::task::spawn_blocking(move || {
            let mut last = last_run.lock().unwrap_or_else(|p| p.into_inner());
            if *last > number {
                tracing::debug!("a newer token was recorded first; this older one is skipped");
                return Ok(());
            }
            *last = number;
            job()
        });
        match tokio::time::timeout(deadline, task).await {
            Ok(Ok(done)) => done.map_err(|e| e.to_string()),
            Ok(Err(e)) if e.is_panic() => Err("it panicked".into()),
            Ok(Err(_)) => Err("it was cancelled (the runtime is shutting down)".into()),
            Err(_) => Err(format!(
                "it did not complete within {deadline:?} (TokenCacheBuilder::store_timeout); \
                 it goes on in the background"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_whose_turn_comes_after_a_newer_ones_is_skipped() {
        let order = InOrder::default();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let job = |name: &'static str| {
            let ran = ran.clone();
            move || {
                ran.lock().unwrap().push(name);
                Ok(())
            }
        };
        let deadline = Duration::from_secs(60);
        order.run(deadline, job("first")).await.unwrap();
        let e = order
            .run(deadline, || Err(io::Error::other("disk full")))
            .await
            .unwrap_err();
        assert_eq!(e, "disk full");
        // As if job 10 had run while this one, number 3, waited its turn.
        *order.last_run.get().unwrap().lock().unwrap() = 10;
        order.run(deadline, job("older")).await.unwrap();
        assert_eq!(*ran.lock().unwrap(), ["first"]);
    }
}
