//! State a final remailer keeps between packets, as pure logic: parts of
//! multi-part messages and the packet IDs it has seen. Storing them is the
//! caller's job.

use std::collections::{BTreeMap, HashMap};

use crate::date::SECONDS_PER_DAY;
use crate::unwrap::MAX_PACKET_AGE_DAYS;

/// Conflict between a part and a [`Reassembly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("part number {chunk} is outside 1..={chunks}")]
    ChunkOutOfRange { chunk: u8, chunks: u8 },
    #[error("the part states {got} parts, earlier parts stated {expected}")]
    ChunkCountMismatch { expected: u8, got: u8 },
    #[error("part {chunk} arrived twice with different contents")]
    ConflictingDuplicate { chunk: u8 },
}

/// The parts of one multi-part message (one message ID) received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembly {
    chunks: u8,
    parts: BTreeMap<u8, Vec<u8>>,
}

impl Reassembly {
    /// Starts a message of `chunks` parts.
    pub fn new(chunks: u8) -> Reassembly {
        Reassembly { chunks, parts: BTreeMap::new() }
    }

    /// Adds one part. A repeat of a part with the same bytes is accepted and
    /// changes nothing.
    pub fn add(&mut self, chunk: u8, chunks: u8, payload: &[u8]) -> Result<(), ReassemblyError> {
        if chunks != self.chunks {
            return Err(ReassemblyError::ChunkCountMismatch { expected: self.chunks, got: chunks });
        }
        if chunk == 0 || chunk > chunks {
            return Err(ReassemblyError::ChunkOutOfRange { chunk, chunks });
        }
        match self.parts.get(&chunk) {
            Some(existing) if existing != payload => Err(ReassemblyError::ConflictingDuplicate { chunk }),
            Some(_) => Ok(()),
            None => {
                self.parts.insert(chunk, payload.to_vec());
                Ok(())
            }
        }
    }

    /// Part numbers still missing, in order.
    pub fn missing(&self) -> Vec<u8> {
        (1..=self.chunks).filter(|c| !self.parts.contains_key(c)).collect()
    }

    /// Concatenates the parts in part order into the whole final-hop payload,
    /// or returns `None` while a part is missing. Parse the result with
    /// [`crate::parse_final_payload`].
    pub fn complete_payload(&self) -> Option<Vec<u8>> {
        if self.parts.len() != usize::from(self.chunks) {
            return None;
        }
        Some(self.parts.values().flatten().copied().collect())
    }
}

/// Packet IDs already processed, each with the day (since 1970) it was seen.
///
/// Entries are kept [`ReplayCache::RETENTION_DAYS`] days, longer than the
/// oldest packet timestamp accepted, so an expired entry can only belong to a
/// packet that the timestamp check rejects anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayCache {
    seen: HashMap<[u8; 16], u64>,
}

impl ReplayCache {
    /// Days an entry is kept.
    pub const RETENTION_DAYS: u64 = MAX_PACKET_AGE_DAYS + 2;

    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    /// Records `packet_id` at time `now` (seconds since the epoch). Returns
    /// false, and changes nothing, when the ID is already recorded: the
    /// packet is a replay and must be dropped.
    pub fn check_and_insert(&mut self, packet_id: [u8; 16], now: u64) -> bool {
        if self.seen.contains_key(&packet_id) {
            return false;
        }
        self.seen.insert(packet_id, now / SECONDS_PER_DAY);
        true
    }

    /// Adds an entry read back from storage.
    pub fn insert_entry(&mut self, packet_id: [u8; 16], day: u64) {
        self.seen.insert(packet_id, day);
    }

    /// Drops entries older than the retention period.
    pub fn expire(&mut self, now: u64) {
        let today = now / SECONDS_PER_DAY;
        self.seen.retain(|_, day| *day + Self::RETENTION_DAYS >= today);
    }

    /// Entries as (packet ID, day), for storage.
    pub fn entries(&self) -> impl Iterator<Item = ([u8; 16], u64)> + '_ {
        self.seen.iter().map(|(id, day)| (*id, *day))
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembly_completes_in_part_order() {
        let mut r = Reassembly::new(3);
        r.add(3, 3, b"cc").unwrap();
        r.add(1, 3, b"a").unwrap();
        assert_eq!(r.complete_payload(), None);
        assert_eq!(r.missing(), vec![2]);
        r.add(2, 3, b"bb").unwrap();
        assert_eq!(r.complete_payload().unwrap(), b"abbcc");
    }

    #[test]
    fn reassembly_rejects_inconsistent_parts() {
        let mut r = Reassembly::new(2);
        assert_eq!(r.add(3, 2, b"x"), Err(ReassemblyError::ChunkOutOfRange { chunk: 3, chunks: 2 }));
        assert_eq!(r.add(0, 2, b"x"), Err(ReassemblyError::ChunkOutOfRange { chunk: 0, chunks: 2 }));
        assert_eq!(r.add(1, 3, b"x"), Err(ReassemblyError::ChunkCountMismatch { expected: 2, got: 3 }));
        r.add(1, 2, b"x").unwrap();
        assert_eq!(r.add(1, 2, b"x"), Ok(()));
        assert_eq!(r.add(1, 2, b"y"), Err(ReassemblyError::ConflictingDuplicate { chunk: 1 }));
    }

    #[test]
    fn replay_cache_drops_repeats_until_expiry() {
        let day = SECONDS_PER_DAY;
        let mut cache = ReplayCache::new();
        assert!(cache.check_and_insert([1; 16], 100 * day));
        assert!(!cache.check_and_insert([1; 16], 100 * day + 5));
        cache.expire((100 + ReplayCache::RETENTION_DAYS) * day);
        assert_eq!(cache.len(), 1);
        cache.expire((101 + ReplayCache::RETENTION_DAYS) * day);
        assert!(cache.is_empty());
    }
}
