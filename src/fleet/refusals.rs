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
//! - **Read** with the token by the fleet fetch. While a step runs for the
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
//! process back once, not at every look: [`bounded`]); a process's own
//! next steps follow its own backoff, which caps them too.
//!
//! Every write and delete is best-effort and spawned: a 401 never waits for
//! Redis. On any Redis trouble each process falls back to its own record.

use std::time::{Duration, Instant};

use super::value::{Sealer, TokenHash};
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

/// The end of the last running step a process read from Redis: the
/// token it is for, its number, and when it ends by this process's clock.
pub(super) type SeenStep = (TokenHash, u32, Instant);

/// `record` as read at `now`, its step's end held to the one this process
/// first saw for that step (`seen`, updated): a record whose TTL does not
/// fall (rewritten, or forged with an hour to live) cannot hold a process
/// back again each time it looks, only once, [`MAX_STEP`] at most. A
/// step with another token or number is a new step.
pub(super) fn bounded(seen: &mut Option<SeenStep>, mut record: Record, now: Instant) -> Record {
    let Some(left) = record.remaining else {
        return record;
    };
    match *seen {
        Some((hash, step, end)) if hash == record.hash && step == record.step => {
            record.remaining = end
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
                .map(|d| d.min(left));
        }
        _ => *seen = Some((record.hash, record.step, now + left)),
    }
    record
}

/// The least time a step's number is kept after the step.
const MIN_KEEP: Duration = Duration::from_secs(60);

/// The longest a step read from Redis runs for this process: the default
/// maximum of [`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff).
/// A record cannot hold a process's 401s back longer, whatever its TTL says.
pub(super) const MAX_STEP: Duration = Duration::from_secs(300);

/// How long a step's number is kept after a step of `delay`.
pub(super) fn keep(delay: Duration) -> Duration {
    delay.max(MIN_KEEP)
}

/// The value recording step `step` for the token `hash`, under the key
/// `key`; its TTL is `delay + keep`. Tagged when the tier has a key.
pub(super) fn encode(
    hash: &TokenHash,
    step: u32,
    keep: Duration,
    key: &str,
    sealer: Option<&Sealer>,
) -> Result<String, String> {
    let fields = format!("{} {step} {}", hash.hex(), keep.as_millis());
    match sealer {
        None => Ok(fields),
        Some(sealer) => Ok(format!("{fields} {}", sealer.tag(key, &fields)?)),
    }
}

impl Record {
    /// The record in `value`, read from the key `key` whose TTL is
    /// `pttl_ms`. `None` for anything this crate did not write (garbage, no
    /// TTL), and, with a `sealer`, for a record whose tag does not verify.
    /// A step runs at most [`MAX_STEP`], whatever the TTL.
    pub(super) fn decode(
        value: &[u8],
        pttl_ms: i64,
        key: &str,
        sealer: Option<&Sealer>,
    ) -> Option<Record> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.splitn(4, ' ');
        let hash = TokenHash::from_hex(fields.next()?.as_bytes())?;
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
        Some(Record {
            hash,
            step,
            remaining,
        })
    }

    /// What a process learns from this record when it takes the token
    /// `taken`: always the step number; the step itself (its remaining
    /// time) if it runs and it is for `taken`. A step for another token is
    /// never joined: a record naming a token nobody sent must not hold back
    /// a refetch.
    pub(super) fn learned(&self, taken: &TokenHash) -> FleetStep {
        FleetStep {
            number: self.step,
            remaining: self.remaining.filter(|_| self.hash == *taken),
        }
    }

    /// Whether the step runs for the token `refused`.
    pub(super) fn runs_for(&self, refused: Option<TokenHash>) -> bool {
        self.remaining.is_some() && Some(self.hash) == refused
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
        let key = &self.refused_key;
        let sealer = self.sealer.as_ref();
        let value = match encode(&TokenHash::of(refused), step, keep, key, sealer) {
            Ok(value) => value,
            Err(why) => {
                tracing::warn!(reason = %why, "the backoff step was not shared");
                return;
            }
        };
        let ttl = delay.saturating_add(keep);
        let mut unless: Option<Vec<u8>> = None;
        loop {
            let retried = unless.is_some();
            let written = self
                .conn
                .record_step(key, value.clone(), step, ttl, unless.take())
                .await;
            match written {
                Ok(None) => {
                    bump(&self.stats.steps_shared);
                    tracing::debug!(key = %key, step, "the backoff step is the fleet's");
                }
                // A record this fleet did not write (its tag does not
                // verify) holds no step back: written over, once.
                Ok(Some(found)) if sealer.is_some() && !retried && !self.authentic(&found) => {
                    bump(&self.stats.bad_values);
                    tracing::warn!(key = %key, "ignoring the value in Redis; it will be overwritten");
                    unless = Some(found);
                    continue;
                }
                Ok(Some(_)) => {
                    tracing::debug!(key = %key, step, "the fleet's backoff step runs already");
                }
                Err(_) => {}
            }
            return;
        }
    }

    /// Whether `value` is a record of this fleet's (its tag verifies).
    fn authentic(&self, value: &[u8]) -> bool {
        // The TTL does not matter here: any positive one.
        Record::decode(value, 1, &self.refused_key, self.sealer.as_ref()).is_some()
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

    const KEY: &str = "tower-oauth2:t:{fp}:refused";

    fn hash(byte: u8) -> TokenHash {
        let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
        TokenHash::from_hex(hex.as_bytes()).unwrap()
    }

    fn plain(value: &str, pttl: i64) -> Option<Record> {
        Record::decode(value.as_bytes(), pttl, KEY, None)
    }

    #[test]
    fn a_record_runs_while_more_than_keep_is_left_then_keeps_its_number() {
        let (h, ms) = (hash(0xab), Duration::from_millis);
        let value = encode(&h, 3, ms(60_000), KEY, None).unwrap();
        assert_eq!(value, format!("{} 3 60000", "ab".repeat(32)));
        let running = plain(&value, 64_000).unwrap();
        assert_eq!(
            running,
            Record {
                hash: h,
                step: 3,
                remaining: Some(ms(4000))
            }
        );
        for pttl in [60_000, 59_000, 1] {
            let kept = plain(&value, pttl).unwrap();
            assert_eq!((kept.step, kept.remaining), (3, None), "{pttl}");
        }
    }

    #[test]
    fn a_record_holds_a_step_back_five_minutes_at_most_whatever_its_ttl() {
        let h = hash(1).hex();
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
    fn a_step_ends_when_it_first_seemed_to_whatever_the_record_says_later() {
        let (s, t0) = (Duration::from_secs, Instant::now());
        let record = |hash, step, left: Option<u64>| Record {
            hash,
            step,
            remaining: left.map(s),
        };
        let mut seen = None;
        // A forged record keeps saying 5 min (an hour's TTL, capped).
        assert_eq!(
            bounded(&mut seen, record(hash(1), 1, Some(300)), t0).remaining,
            Some(s(300))
        );
        let later = bounded(&mut seen, record(hash(1), 1, Some(300)), t0 + s(100));
        assert_eq!(later.remaining, Some(s(200)));
        for after in [300, 301, 3000] {
            let over = bounded(&mut seen, record(hash(1), 1, Some(300)), t0 + s(after));
            assert_eq!(over.remaining, None, "{after}");
        }
        // A record that says less than it first did is taken at its word.
        let mut seen = None;
        bounded(&mut seen, record(hash(1), 1, Some(60)), t0);
        assert_eq!(
            bounded(&mut seen, record(hash(1), 1, Some(10)), t0 + s(1)).remaining,
            Some(s(10))
        );
        // The next step, or a step for another token, is a step of its own.
        for (h, n) in [(hash(1), 2), (hash(2), 1)] {
            let next = bounded(&mut seen, record(h, n, Some(120)), t0 + s(100));
            assert_eq!(next.remaining, Some(s(120)));
        }
        // A record whose step is over changes nothing.
        let before = seen;
        assert_eq!(
            bounded(&mut seen, record(hash(3), 9, None), t0).remaining,
            None
        );
        assert_eq!(seen, before);
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
            assert_eq!(plain(value, 5_000), None, "{value:?}");
        }
        let good = format!("{h} 3 100");
        // A key with no TTL (-1) or gone (-2) was not written here.
        for pttl in [-1, -2] {
            assert_eq!(plain(&good, pttl), None);
        }
        assert_eq!(Record::decode(b"\xff\xfe 3 100", 5_000, KEY, None), None);
    }

    #[test]
    fn with_a_key_only_a_record_tagged_with_it_for_this_key_name_counts() {
        let sealer = Sealer::new(&[7; 32]);
        let h = hash(2);
        let value = encode(&h, 2, Duration::from_secs(60), KEY, Some(&sealer)).unwrap();
        let fields = format!("{} 2 60000", h.hex());
        assert!(value.starts_with(&format!("{fields} ")), "{value}");
        let decode =
            |v: &str, key: &str, s: &Sealer| Record::decode(v.as_bytes(), 90_000, key, Some(s));
        let record = decode(&value, KEY, &sealer).unwrap();
        assert_eq!((record.hash, record.step), (h, 2));
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
        let bumped = format!("{} 9 60000 {tag}", h.hex());
        assert_eq!(decode(&bumped, KEY, &sealer), None);
        assert_eq!(decode(&format!("{fields} zz"), KEY, &sealer), None);
        // A tagged record means nothing to a process with no key.
        assert_eq!(plain(&value, 90_000), None);
    }

    #[test]
    fn the_number_is_kept_at_least_a_minute_and_as_long_as_the_step() {
        let s = Duration::from_secs;
        assert_eq!(keep(s(1)), s(60));
        assert_eq!(keep(s(300)), s(300));
    }

    #[test]
    fn a_process_joins_a_running_step_only_for_the_token_it_is_for() {
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
        assert_eq!(running.learned(&refused), joined);
        assert!(running.runs_for(Some(refused)));
        // Another token: its number only, and a refetch after a 401 for
        // that other token is not held back.
        assert_eq!(running.learned(&newer), numbered);
        assert!(!running.runs_for(Some(newer)));
        assert!(!running.runs_for(None));
        assert_eq!(running.number(), numbered);
        // A step that is over: its number only.
        let over = Record {
            remaining: None,
            ..running
        };
        assert_eq!(over.learned(&refused), numbered);
        assert!(!over.runs_for(Some(refused)));
    }
}
