//! Connection caps for the accept loops, and rate-limited reports of what
//! they reject.
//!
//! A connection past a cap is accepted and closed at once: leaving it in
//! the listen backlog would let the backlog fill and stall honest clients
//! behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Open connections, in total and by uid.
#[derive(Default)]
pub struct ConnectionCounts {
    inner: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// The reason a connection was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    TooManyConnections,
    TooManyForUid,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooManyConnections => "too-many-connections",
            Rejection::TooManyForUid => "too-many-connections-for-uid",
        }
    }
}

/// A place in the counts, given back when dropped.
pub struct Slot {
    counts: Arc<ConnectionCounts>,
    uid: u32,
}

impl ConnectionCounts {
    /// Takes a slot for `uid` unless that would exceed `max_total` or
    /// `max_per_uid`.
    pub fn acquire(self: &Arc<Self>, uid: u32, max_total: usize, max_per_uid: usize) -> Result<Slot, Rejection> {
        let mut counts = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.total >= max_total {
            return Err(Rejection::TooManyConnections);
        }
        let for_uid = counts.by_uid.entry(uid).or_insert(0);
        if *for_uid >= max_per_uid {
            return Err(Rejection::TooManyForUid);
        }
        *for_uid += 1;
        counts.total += 1;
        Ok(Slot { counts: Arc::clone(self), uid })
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.total -= 1;
        if let Some(for_uid) = counts.by_uid.get_mut(&self.uid) {
            *for_uid -= 1;
            if *for_uid == 0 {
                counts.by_uid.remove(&self.uid);
            }
        }
    }
}

/// Lets one report through per interval and counts the ones held back, so
/// a flood of rejections or accept errors cannot flood the log.
pub struct RateLimit {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> Self {
        RateLimit { interval, state: Mutex::new((None, 0)) }
    }

    /// Returns `Some(suppressed)` when a report is due now, with the number
    /// held back since the last one; `None` when this one is held back.
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, suppressed) = &mut *state;
        match last {
            Some(at) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_uid() {
        let counts = Arc::new(ConnectionCounts::default());
        let first = counts.acquire(1, 3, 2).unwrap();
        let _second = counts.acquire(1, 3, 2).unwrap();
        assert_eq!(counts.acquire(1, 3, 2).err(), Some(Rejection::TooManyForUid));
        let _third = counts.acquire(2, 3, 2).unwrap();
        assert_eq!(counts.acquire(3, 3, 2).err(), Some(Rejection::TooManyConnections));

        drop(first);
        assert_eq!(counts.total(), 2);
        assert!(counts.acquire(1, 3, 2).is_ok());
    }

    #[test]
    fn rate_limit_counts_suppressed_reports() {
        let limit = RateLimit::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(limit.check(start), Some(0));
        assert_eq!(limit.check(start + Duration::from_millis(10)), None);
        assert_eq!(limit.check(start + Duration::from_millis(20)), None);
        assert_eq!(limit.check(start + Duration::from_secs(2)), Some(2));
    }
}
