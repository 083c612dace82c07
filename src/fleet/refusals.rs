//! The fleet's record of 401s: the backoff of refetches-on-401
//! (ARCHITECTURE.md, invariant 6) shared through Redis, so that a fleet
//! whose tokens are all refused costs the token endpoint what one process
//! costs.
//!
//! Each process keeps its own record (`cache/refusals`); the cache reads
//! and writes the fleet's through [`SharedTier`](crate::tier::SharedTier)
//! (`read`, `start_step`, `end_step`). In Redis it sits beside the token, under `…:{fingerprint}:refused` (the token's
//! hash tag):
//!
//! ```text
//! <64 hex: SHA-256 of the refused access token> " " <step number> " " <keep, ms> [ " " <tag> ]
//! ```
//!
//! with a TTL of the step's delay plus `keep`: the step runs while more
//! than `keep` is left (no clock is compared across machines, only Redis's
//! TTL), and its number is remembered for `keep` after it (the step's
//! delay, at least a minute), so the next step's number continues from it.
//!
//! - **Written** (a Lua script) when a process starts a backoff step,
//!   unless a step at least as far along still runs: the first process to
//!   start a step sets its length for the fleet.
//! - **Read** with the token by the fleet fetch (`cache/fetch/shared.rs`
//!   decides what it means). While a step runs for the
//!   very token this process saw refused, a refetch after a 401 neither
//!   deletes the shared token nor fetches: it takes the token Redis holds
//!   and joins the step (the process's 401s pass through until the fleet's
//!   step ends). A process that takes the very token the step is for, for
//!   any reason (it has just started, say), joins the step too. A step for
//!   any other token is never joined. Either way the process's next step is
//!   numbered from the fleet's.
//! - **Deleted** (compare-and-delete on the hash) when a process that knows
//!   of the step gets an answer other than 401 for that token: the next
//!   401 then gets a new token at once, as in one process.
//!
//! **Anyone who can write the key.** A record holds back refetches, so it
//! is checked before it is believed. With an
//! [`encryption_key`](super::RedisTier::encryption_key) it carries a tag
//! (the AEAD's, over the key name and the fields, `value::Sealer::tag`): a
//! record without a valid one is ignored (counted in `bad_values`) and
//! overwritten by the next step. With or without a key, what a record can
//! impose is capped: a step runs at most [`MAX_STEP`] (the default
//! backoff's maximum), whatever TTL the key has, and, for a process, ends
//! when it first seemed to (a record whose TTL does not fall holds a
//! process back once, not at every read: the cache's side of the tier's
//! contract); a process's own next steps follow its own backoff, which
//! caps them too.
//!
//! Every write and delete is best-effort and spawned: a 401 never waits for
//! Redis. On any Redis trouble each process falls back to its own record.

use std::time::Duration;

use super::value::{Sealer, TokenHash};
use super::{bump, RedisTier};
use crate::store::ConfigFingerprint;
use crate::tier::{StepStarted, TierStep, Unavailable};

/// The longest a step read from Redis runs: the default maximum of
/// [`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff).
/// A record cannot hold a process's 401s back longer, whatever its TTL says.
pub(super) const MAX_STEP: Duration = Duration::from_secs(300);

/// The value recording step `step` for the token `hash`, under the key
/// `key`; its TTL is `delay + keep`. Tagged when the tier has a key.
pub(super) fn encode(
    hash: &TokenHash,
    step: u32,
    keep: Duration,
    key: &str,
    sealer: Option<&Sealer>,
) -> Result<String, String> {
    let fields = format!("{} {step} {}", hash.to_hex(), keep.as_millis());
    match sealer {
        None => Ok(fields),
        Some(sealer) => Ok(format!("{fields} {}", sealer.tag(key, &fields)?)),
    }
}

/// The record in `value`, read from the key `key` whose TTL is
/// `pttl_ms`. `None` for anything this crate did not write (garbage, no
/// TTL), and, with a `sealer`, for a record whose tag does not verify.
/// A step runs at most [`MAX_STEP`], whatever the TTL.
pub(super) fn decode(
    value: &[u8],
    pttl_ms: i64,
    key: &str,
    sealer: Option<&Sealer>,
) -> Option<TierStep> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.splitn(4, ' ');
    let hash = TokenHash::from_hex(fields.next()?)?;
    let step: u32 = fields.next()?.parse().ok()?;
    let keep: u64 = fields.next()?.parse().ok()?;
    let pttl = u64::try_from(pttl_ms).ok()?;
    if step == 0 {
        return None;
    }
    match (fields.next(), sealer) {
        (None, None) => {}
        (Some(tag), Some(sealer)) => {
            let signed = &text[..text.len() - tag.len() - 1];
            if !sealer.verify(key, signed, tag) {
                return None;
            }
        }
        // Tagged with no key here, or untagged with one: not this
        // fleet's (as a token value, `value::decode`).
        _ => return None,
    }
    let remaining = pttl
        .checked_sub(keep)
        .filter(|left| *left > 0)
        .map(|left| Duration::from_millis(left).min(MAX_STEP));
    Some(TierStep {
        refused: hash,
        number: step,
        remaining,
    })
}

impl RedisTier {
    /// [`SharedTier::start_step`](crate::tier::SharedTier::start_step): a
    /// record this fleet did not write (its tag does not verify) holds no
    /// step back, and is written over, once.
    pub(super) async fn write_step(
        &self,
        fingerprint: &ConfigFingerprint,
        refused: &TokenHash,
        step: StepStarted,
    ) -> Result<bool, Unavailable> {
        let (keep, number) = (step.keep(), step.number);
        let key = &self.keys(fingerprint).refused;
        let sealer = self.sealer.as_ref();
        let value = match encode(refused, number, keep, key, sealer) {
            Ok(value) => value,
            Err(why) => {
                tracing::warn!(reason = %why, "the backoff step was not shared");
                return Ok(false);
            }
        };
        let ttl = step.delay.saturating_add(keep);
        let mut unless: Option<Vec<u8>> = None;
        loop {
            let retried = unless.is_some();
            let written = self
                .conn
                .record_step(key, value.clone(), number, ttl, unless.take())
                .await
                .map_err(|_| Unavailable)?;
            return Ok(match written {
                None => {
                    bump(&self.stats.steps_shared);
                    tracing::debug!(key = %key, step = number, "the backoff step is the fleet's");
                    true
                }
                Some(found) if sealer.is_some() && !retried && !self.authentic(key, &found) => {
                    bump(&self.stats.bad_values);
                    tracing::warn!(key = %key, "ignoring the value in Redis; it will be overwritten");
                    unless = Some(found);
                    continue;
                }
                Some(_) => {
                    tracing::debug!(key = %key, step = number, "the fleet's backoff step runs already");
                    false
                }
            });
        }
    }

    /// Whether `value` under `key` is a record of this fleet's (its tag
    /// verifies).
    fn authentic(&self, key: &str, value: &[u8]) -> bool {
        // The TTL does not matter here: any positive one.
        decode(value, 1, key, self.sealer.as_ref()).is_some()
    }

    /// [`SharedTier::end_step`](crate::tier::SharedTier::end_step).
    pub(super) async fn delete_step(
        &self,
        fingerprint: &ConfigFingerprint,
        accepted: &TokenHash,
    ) -> Result<bool, Unavailable> {
        let key = &self.keys(fingerprint).refused;
        let ended = self
            .conn
            .delete_if_hash(key, &accepted.to_hex())
            .await
            .map_err(|_| Unavailable)?;
        if ended {
            bump(&self.stats.steps_ended);
            tracing::debug!(key = %key, "the token was taken: the fleet's backoff ends");
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "tower-oauth2:t:{fp}:refused";

    fn hash(byte: u8) -> TokenHash {
        let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
        TokenHash::from_hex(&hex).unwrap()
    }

    fn plain(value: &str, pttl: i64) -> Option<TierStep> {
        decode(value.as_bytes(), pttl, KEY, None)
    }

    #[test]
    fn a_record_runs_while_more_than_keep_is_left_then_keeps_its_number() {
        let (h, ms) = (hash(0xab), Duration::from_millis);
        let value = encode(&h, 3, ms(60_000), KEY, None).unwrap();
        assert_eq!(value, format!("{} 3 60000", "ab".repeat(32)));
        let running = plain(&value, 64_000).unwrap();
        assert_eq!(
            running,
            TierStep {
                refused: h,
                number: 3,
                remaining: Some(ms(4000))
            }
        );
        for pttl in [60_000, 59_000, 1] {
            let kept = plain(&value, pttl).unwrap();
            assert_eq!((kept.number, kept.remaining), (3, None), "{pttl}");
        }
    }

    #[test]
    fn a_record_holds_a_step_back_five_minutes_at_most_whatever_its_ttl() {
        let h = hash(1).to_hex();
        let hour = 3_600_000;
        // A forged record: step 1, kept 0 ms, an hour to live; or kept an
        // hour and two hours to live.
        for (value, pttl) in [
            (format!("{h} 1 0"), hour),
            (format!("{h} 1 {hour}"), 2 * hour),
            (format!("{h} 4000000000 1"), i64::MAX),
        ] {
            let record = plain(&value, pttl).unwrap();
            assert_eq!(record.remaining, Some(MAX_STEP), "{value}");
        }
        assert_eq!(MAX_STEP, Duration::from_secs(300));
    }

    #[test]
    fn anything_else_in_the_key_is_no_record() {
        let h = hash(1).to_hex();
        let bad = [
            format!("{h} 3"),
            format!("{h} 3 100 extra"),
            format!("{h} 0 100"),
            format!("{h} -1 100"),
            format!("{h} 3 x"),
            format!("{} 3 100", &h[..63]),
            "garbage".to_owned(),
            String::new(),
        ];
        for value in &bad {
            assert_eq!(plain(value, 5_000), None, "{value:?}");
        }
        let good = format!("{h} 3 100");
        // A key with no TTL (-1) or gone (-2) was not written here.
        for pttl in [-1, -2] {
            assert_eq!(plain(&good, pttl), None);
        }
        assert_eq!(decode(b"\xff\xfe 3 100", 5_000, KEY, None), None);
    }

    #[test]
    fn with_a_key_only_a_record_tagged_with_it_for_this_key_name_counts() {
        let sealer = Sealer::new(&[7; 32]);
        let h = hash(2);
        let value = encode(&h, 2, Duration::from_secs(60), KEY, Some(&sealer)).unwrap();
        let fields = format!("{} 2 60000", h.to_hex());
        assert!(value.starts_with(&format!("{fields} ")), "{value}");
        let decode = |v: &str, key: &str, s: &Sealer| decode(v.as_bytes(), 90_000, key, Some(s));
        let record = decode(&value, KEY, &sealer).unwrap();
        assert_eq!((record.refused, record.number), (h, 2));
        // Untagged (anyone's), tagged by another key, moved to another key
        // name, or with a field changed: ignored.
        let tag = &value[fields.len() + 1..];
        let other = Sealer::new(&[8; 32]);
        assert_eq!(decode(&fields, KEY, &sealer), None);
        assert_eq!(decode(&value, KEY, &other), None);
        assert_eq!(
            decode(&value, "tower-oauth2:t:{other}:refused", &sealer),
            None
        );
        let bumped = format!("{} 9 60000 {tag}", h.to_hex());
        assert_eq!(decode(&bumped, KEY, &sealer), None);
        assert_eq!(decode(&format!("{fields} zz"), KEY, &sealer), None);
        // A tagged record means nothing to a process with no key.
        assert_eq!(plain(&value, 90_000), None);
    }
}
