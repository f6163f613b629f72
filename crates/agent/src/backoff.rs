//! Reconnect delays: exponential with full jitter (a uniformly random delay between zero and
//! the current ceiling), so a fleet of agents that lost the same replica does not come back in
//! lockstep.

use std::time::Duration;

use rand::Rng;

/// The ceiling of the first delay.
const START: Duration = Duration::from_millis(200);
/// The largest ceiling: no agent waits longer than this between reconnect attempts.
pub const CAP: Duration = Duration::from_secs(10);

/// Delays between failed connection attempts.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Failures since the last reset.
    failures: u32,
}

impl Backoff {
    /// The ceiling of the next delay: 200 ms doubled per failure, at most 10 s.
    fn ceiling(&self) -> Duration {
        // 2^6 * 200 ms already exceeds the cap, so the shift never overflows.
        START.saturating_mul(1 << self.failures.min(6)).min(CAP)
    }

    /// The delay before the next attempt, drawn uniformly from `0..=ceiling`; each call raises
    /// the ceiling for the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }

    /// Starts over from the first ceiling (after a session that got a `Welcome`).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_200_ms_up_to_10_s() {
        let mut backoff = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay();
        }
        assert_eq!(
            ceilings,
            [
                200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000
            ]
        );
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_are_jittered() {
        let mut backoff = Backoff::default();
        for _ in 0..8 {
            backoff.next_delay();
        }
        let delays: Vec<_> = (0..200).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= CAP), "capped at 10 s");
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "jittered, not a fixed delay");
        assert!(
            delays.iter().any(|d| *d < CAP / 2) && delays.iter().any(|d| *d > CAP / 2),
            "full jitter spreads over the whole range"
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_delay();
        }
        assert_eq!(backoff.ceiling(), START * 32);
        backoff.reset();
        assert_eq!(backoff.ceiling(), START);
        assert!(backoff.next_delay() <= START);
    }
}
