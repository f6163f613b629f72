//! The activity feed: every [`Activity`] announced on any replica, numbered once by the bus
//! (a [`FeedId`], increasing) and delivered live to every replica's subscribers, with the
//! latest entries kept so that a client that lost its connection can resume after the last id
//! it saw ([`Bus::replay`](crate::Bus::replay)).
//!
//! The feed is advisory like the rest of the bus: an activity that cannot be announced (the
//! backend is down, the outgoing queue is full) is dropped and counted in
//! `switchyard_activity_dropped_total`; the source of truth stays in the database.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use switchyard_types::{Activity, Error};

/// How many entries the feed keeps for [`Bus::replay`](crate::Bus::replay) (Redis trims
/// approximately, so it may keep a few more).
pub const RETAINED: usize = 10_000;
/// The most entries one replay returns.
pub const MAX_REPLAY: usize = 1_000;
/// Capacity of each replica's live channel: a subscriber further behind than this lags.
pub const LIVE_CAPACITY: usize = 4_096;

/// The place of an entry in the feed: `milliseconds-sequence`, as Redis stream ids are.
/// Ordered; later entries have greater ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FeedId {
    /// Unix milliseconds when it was numbered (never less than the previous entry's).
    pub ms: u64,
    /// Order among the entries of one millisecond.
    pub seq: u64,
}

impl FeedId {
    /// The id after `self` at `now_ms`: `now_ms-0` when the clock moved on, else the next
    /// sequence number in `self`'s millisecond (a clock that went back is not followed).
    pub fn next(self, now_ms: u64) -> FeedId {
        if now_ms > self.ms {
            FeedId { ms: now_ms, seq: 0 }
        } else {
            FeedId {
                ms: self.ms,
                seq: self.seq.saturating_add(1),
            }
        }
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for FeedId {
    type Err = Error;

    /// Parses `ms-seq` (both decimal); anything else is `InvalidArgument` on `last_event_id`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::invalid("last_event_id", "must look like 1733050000000-0");
        let (ms, seq) = s.split_once('-').ok_or_else(invalid)?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse::<u64>().map_err(|_| invalid())
        };
        Ok(FeedId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

/// One numbered activity.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    /// Its place in the feed.
    pub id: FeedId,
    /// What happened.
    pub activity: Activity,
    /// The entry as the edges send it, once encoded ([`FeedEntry::encoded`]).
    encoded: OnceLock<Bytes>,
}

impl FeedEntry {
    /// Entry `id`, for `activity`.
    pub fn new(id: FeedId, activity: Activity) -> Self {
        FeedEntry {
            id,
            activity,
            encoded: OnceLock::new(),
        }
    }

    /// The entry as the edges send it: encoded by `encode` for the first caller, and the same
    /// bytes for every later one, so an entry fanned out to many watchers is encoded once.
    pub fn encoded(&self, encode: impl FnOnce(&FeedEntry) -> Bytes) -> Bytes {
        self.encoded.get_or_init(|| encode(self)).clone()
    }
}

/// Entries are equal when their ids and activities are, encoded or not.
impl PartialEq for FeedEntry {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.activity == other.activity
    }
}

/// The answer to a replay.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replay {
    /// Entries after the requested id, oldest first (at most [`MAX_REPLAY`]).
    pub entries: Vec<Arc<FeedEntry>>,
    /// False when entries after the requested id may be missing: it is older than what the
    /// feed keeps (or unknown to it). The client should reload the state it shows.
    pub complete: bool,
}

/// The latest entries, in order: the local bus's whole feed, and the shape of a replay for
/// both buses.
#[derive(Debug)]
pub(crate) struct Ring {
    entries: VecDeque<Arc<FeedEntry>>,
    capacity: usize,
    last: FeedId,
}

impl Ring {
    /// An empty ring keeping at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Ring {
            entries: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            last: FeedId::default(),
        }
    }

    /// Numbers `activity` after the last entry, keeps it and returns it.
    pub(crate) fn push(&mut self, activity: Activity) -> Arc<FeedEntry> {
        self.last = self.last.next(unix_millis());
        let entry = Arc::new(FeedEntry::new(self.last, activity));
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Arc::clone(&entry));
        entry
    }

    /// The entries after `after` (at most `limit`); complete only when `after` is still kept.
    pub(crate) fn replay(&self, after: FeedId, limit: usize) -> Replay {
        let Ok(at) = self.entries.binary_search_by_key(&after, |e| e.id) else {
            return Replay {
                entries: Vec::new(),
                complete: false,
            };
        };
        Replay {
            entries: self
                .entries
                .iter()
                .skip(at + 1)
                .take(limit)
                .cloned()
                .collect(),
            complete: true,
        }
    }
}

/// Milliseconds since the Unix epoch on the system clock (0 before the epoch).
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Counts an activity that could not be announced.
pub(crate) fn count_dropped(reason: &'static str) {
    metrics::counter!("switchyard_activity_dropped_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_types::{JobId, TenantId};

    fn activity(percent: u8) -> Activity {
        Activity::job_progress(
            &TenantId::parse("acme").expect("tenant"),
            JobId::new(),
            1,
            percent,
        )
    }

    #[test]
    fn ids_print_parse_and_order() {
        let id: FeedId = "1733050000000-7".parse().expect("parse");
        assert_eq!(
            id,
            FeedId {
                ms: 1733050000000,
                seq: 7
            }
        );
        assert_eq!(id.to_string(), "1733050000000-7");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<FeedId>().is_err(), "{bad:?}");
        }
        assert!(id.next(id.ms) > id);
        assert_eq!(id.next(id.ms - 5), FeedId { ms: id.ms, seq: 8 });
        assert_eq!(
            id.next(id.ms + 1),
            FeedId {
                ms: id.ms + 1,
                seq: 0
            }
        );
    }

    #[test]
    fn a_ring_replays_after_a_kept_id_and_reports_a_gap_otherwise() {
        let mut ring = Ring::new(3);
        let ids: Vec<FeedId> = (0..5).map(|i| ring.push(activity(i)).id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // Kept: 2, 3, 4.
        let replay = ring.replay(ids[2], 10);
        assert!(replay.complete);
        let got: Vec<FeedId> = replay.entries.iter().map(|e| e.id).collect();
        assert_eq!(got, ids[3..].to_vec());
        assert_eq!(ring.replay(ids[2], 1).entries.len(), 1);
        assert!(ring.replay(ids[4], 10).complete);
        assert!(ring.replay(ids[4], 10).entries.is_empty());
        // Evicted, or never seen: a gap.
        assert!(!ring.replay(ids[1], 10).complete);
        assert!(!ring.replay(FeedId::default(), 10).complete);
    }

    #[test]
    fn an_entry_is_encoded_once_for_every_caller() {
        let entry = FeedEntry::new(FeedId { ms: 1, seq: 0 }, activity(5));
        let plain = entry.clone();
        let calls = std::cell::Cell::new(0);
        let encode = |e: &FeedEntry| {
            calls.set(calls.get() + 1);
            Bytes::from(e.id.to_string())
        };
        let first = entry.encoded(encode);
        let second = entry.encoded(encode);
        assert_eq!(calls.get(), 1, "encoded once");
        assert_eq!(
            (first.as_ref(), second.as_ref()),
            (&b"1-0"[..], &b"1-0"[..])
        );
        assert_eq!(first.as_ptr(), second.as_ptr(), "the same bytes, shared");
        assert_eq!(entry, plain, "equality ignores the encoding");
        assert_ne!(entry, FeedEntry::new(FeedId { ms: 1, seq: 1 }, activity(5)));
    }
}
