//! The fleet's record of 401s: the backoff of refetches-on-401
//! (ARCHITECTURE.md, invariant 6) shared through Redis, so that a fleet
//! whose tokens are all refused costs the token endpoint what one process
//! costs.
//!
//! Each process keeps its own record (`cache/refusals.rs`); this one sits
//! beside the token in Redis, under `…:{fingerprint}:refused` (the token's
//! hash tag):
//!
//! ```text
//! <64 hex: SHA-256 of the refused access token> " " <step number> " " <keep, ms>
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
//! - **Read** with the token by the fleet fetch. While a step runs, a
//!   refetch after a 401 neither deletes the shared token nor fetches: it
//!   takes the token Redis holds and joins the step (the process's 401s
//!   pass through until the fleet's step ends). A process that takes the
//!   very token the step is for, for any reason (it has just started, say),
//!   joins the step too. Either way the process's next step is numbered
//!   from the fleet's.
//! - **Deleted** (compare-and-delete on the hash) when a process that knows
//!   of the step gets an answer other than 401 for that token: the next
//!   401 then gets a new token at once, as in one process.
//!
//! Every write and delete is best-effort and spawned: a 401 never waits for
//! Redis. On any Redis trouble each process falls back to its own record.

use std::time::Duration;

use super::value::TokenHash;
use super::{bump, Inner};
use crate::token::Token;

/// A step of the fleet's backoff, as a fetch found it, for the process's
/// own record (`TokenCache`'s `join_fleet_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetStep {
    /// The fleet's step number: the process's next step is numbered after it.
    pub(crate) number: u32,
    /// How long the step still runs, if this process joins it (its 401s
    /// pass through meanwhile); `None` if it is over or not this process's.
    pub(crate) remaining: Option<Duration>,
}

/// The record read back from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    /// The token whose refusal started the step.
    pub(super) hash: TokenHash,
    pub(super) step: u32,
    /// How long the step still runs; `None` once only its number is kept.
    pub(super) remaining: Option<Duration>,
}

/// The least time a step's number is kept after the step.
const MIN_KEEP: Duration = Duration::from_secs(60);

/// How long a step's number is kept after a step of `delay`.
pub(super) fn keep(delay: Duration) -> Duration {
    delay.max(MIN_KEEP)
}

/// The value recording step `step` for the token `hash`; its TTL is
/// `delay + keep`.
pub(super) fn encode(hash: &TokenHash, step: u32, keep: Duration) -> String {
    format!("{} {step} {}", hash.hex(), keep.as_millis())
}

impl Record {
    /// The record in `value`, whose key has `pttl_ms` to live; `None` for
    /// anything this crate did not write (garbage, no TTL).
    pub(super) fn decode(value: &[u8], pttl_ms: i64) -> Option<Record> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split(' ');
        let hash = TokenHash::from_hex(fields.next()?.as_bytes())?;
        let step: u32 = fields.next()?.parse().ok()?;
        let keep: u64 = fields.next()?.parse().ok()?;
        let pttl = u64::try_from(pttl_ms).ok()?;
        if fields.next().is_some() || step == 0 {
            return None;
        }
        let remaining = pttl
            .checked_sub(keep)
            .filter(|left| *left > 0)
            .map(Duration::from_millis);
        Some(Record {
            hash,
            step,
            remaining,
        })
    }

    /// What a process learns from this record when it takes the token
    /// `taken`: always the step number; the step itself (its remaining
    /// time) if it runs and either it is for `taken` or it is why the
    /// process takes a token it saw refused (`held`).
    pub(super) fn learned(&self, taken: &TokenHash, held: bool) -> FleetStep {
        let joins = held || self.hash == *taken;
        FleetStep {
            number: self.step,
            remaining: self.remaining.filter(|_| joins),
        }
    }

    /// The number alone, for a token this process fetched or took from
    /// another's fetch: nobody has refused it yet.
    pub(super) fn number(&self) -> FleetStep {
        FleetStep {
            number: self.step,
            remaining: None,
        }
    }
}

impl Inner {
    /// Records in Redis that this process started backoff step `step`
    /// (lasting `delay`) because `refused` was refused, unless a step at
    /// least as far along runs already. Best-effort.
    pub(crate) async fn share_step(&self, refused: &Token, step: u32, delay: Duration) {
        let keep = keep(delay);
        let value = encode(&TokenHash::of(refused), step, keep);
        let ttl = delay.saturating_add(keep);
        match self
            .conn
            .record_step(&self.refused_key, value, step, ttl)
            .await
        {
            Ok(true) => {
                bump(&self.stats.steps_shared);
                tracing::debug!(key = %self.refused_key, step, "the backoff step is the fleet's");
            }
            Ok(false) => {
                tracing::debug!(key = %self.refused_key, step, "the fleet's backoff step runs already");
            }
            Err(_) => {}
        }
    }

    /// Ends the fleet's backoff if it is for `accepted` (a resource server
    /// answered this process other than 401 for it). Best-effort.
    pub(crate) async fn end_steps(&self, accepted: &Token) {
        let hash = TokenHash::of(accepted).hex();
        if let Ok(true) = self.conn.delete_if_hash(&self.refused_key, &hash).await {
            bump(&self.stats.steps_ended);
            tracing::debug!(key = %self.refused_key, "the token was taken: the fleet's backoff ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> TokenHash {
        let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
        TokenHash::from_hex(hex.as_bytes()).unwrap()
    }

    #[test]
    fn a_record_runs_while_more_than_keep_is_left_then_keeps_its_number() {
        let (h, ms) = (hash(0xab), Duration::from_millis);
        let value = encode(&h, 3, ms(60_000));
        assert_eq!(value, format!("{} 3 60000", "ab".repeat(32)));
        let running = Record::decode(value.as_bytes(), 64_000).unwrap();
        assert_eq!(
            running,
            Record {
                hash: h,
                step: 3,
                remaining: Some(ms(4000))
            }
        );
        for pttl in [60_000, 59_000, 1] {
            let kept = Record::decode(value.as_bytes(), pttl).unwrap();
            assert_eq!((kept.step, kept.remaining), (3, None), "{pttl}");
        }
    }

    #[test]
    fn anything_else_in_the_key_is_no_record() {
        let h = hash(1).hex();
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
            assert_eq!(Record::decode(value.as_bytes(), 5_000), None, "{value:?}");
        }
        let good = format!("{h} 3 100");
        // A key with no TTL (-1) or gone (-2) was not written here.
        for pttl in [-1, -2] {
            assert_eq!(Record::decode(good.as_bytes(), pttl), None);
        }
        assert_eq!(Record::decode(b"\xff\xfe 3 100", 5_000), None);
    }

    #[test]
    fn the_number_is_kept_at_least_a_minute_and_as_long_as_the_step() {
        let s = Duration::from_secs;
        assert_eq!(keep(s(1)), s(60));
        assert_eq!(keep(s(300)), s(300));
    }

    #[test]
    fn a_process_joins_a_running_step_for_its_token_or_the_one_it_saw_refused() {
        let (refused, newer) = (hash(1), hash(2));
        let left = Some(Duration::from_secs(4));
        let running = Record {
            hash: refused,
            step: 2,
            remaining: left,
        };
        let joined = FleetStep {
            number: 2,
            remaining: left,
        };
        let numbered = FleetStep {
            number: 2,
            remaining: None,
        };
        // The token the step is for: joined, however it was taken.
        assert_eq!(running.learned(&refused, false), joined);
        assert_eq!(running.learned(&refused, true), joined);
        // A newer token: joined only if the step is why it was taken.
        assert_eq!(running.learned(&newer, true), joined);
        assert_eq!(running.learned(&newer, false), numbered);
        assert_eq!(running.number(), numbered);
        // A step that is over: its number only.
        let over = Record {
            remaining: None,
            ..running
        };
        assert_eq!(over.learned(&refused, true), numbered);
    }
}
