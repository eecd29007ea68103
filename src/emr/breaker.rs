//! A circuit breaker (sans-IO: fed outcomes and `Instant`s). After `threshold` consecutive
//! failures it opens: calls fail at once for `cooldown`, so a caller hears the fallback instead of
//! waiting out a timeout on every turn. Then one trial call is let through (half-open); its
//! success closes the breaker, its failure opens it again.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    state: BreakerState,
    trial_in_flight: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            state: BreakerState::Closed,
            trial_in_flight: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call go out now?
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now < until => false,
            BreakerState::Open { .. } | BreakerState::HalfOpen => {
                self.state = BreakerState::HalfOpen;
                if self.trial_in_flight {
                    false
                } else {
                    self.trial_in_flight = true;
                    true
                }
            }
        }
    }

    pub fn record_success(&mut self) {
        self.failures = 0;
        self.trial_in_flight = false;
        self.state = BreakerState::Closed;
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.trial_in_flight = false;
        self.failures = self.failures.saturating_add(1);
        if self.state == BreakerState::HalfOpen || self.failures >= self.threshold {
            self.state = BreakerState::Open {
                until: now + self.cooldown,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_one_trial() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.record_failure(t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t0));
        b.record_failure(t0);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert!(!b.allow(t0 + Duration::from_secs(29)));
        // Cooldown over: exactly one trial goes out.
        let t1 = t0 + Duration::from_secs(31);
        assert!(b.allow(t1));
        assert!(!b.allow(t1));
        b.record_failure(t1);
        assert!(!b.allow(t1 + Duration::from_secs(1)));
        let t2 = t1 + Duration::from_secs(31);
        assert!(b.allow(t2));
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t2));
    }

    #[test]
    fn success_resets_the_count() {
        let t = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.record_failure(t);
        b.record_success();
        b.record_failure(t);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
