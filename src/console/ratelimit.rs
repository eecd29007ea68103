//! A per-address limit on sign-in attempts (token bucket), sans-IO: the caller passes the time.
//! Bounded: past [`MAX_ADDRESSES`] tracked addresses, full buckets are forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;

/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct RateLimit {
    per_minute: f64,
    buckets: HashMap<IpAddr, (f64, i64)>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute: f64::from(per_minute.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one attempt for `addr` at `now_ms`; false when its bucket is empty.
    pub fn allow(&mut self, addr: IpAddr, now_ms: i64) -> bool {
        let per_ms = self.per_minute / 60_000.0;
        let capacity = self.per_minute;
        if self.buckets.len() >= MAX_ADDRESSES && !self.buckets.contains_key(&addr) {
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + (now_ms - *at).max(0) as f64 * per_ms < capacity
            });
            if self.buckets.len() >= MAX_ADDRESSES {
                // Every tracked address is mid-burst: refuse newcomers rather than grow.
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(addr).or_insert((capacity, now_ms));
        *tokens = (*tokens + (now_ms - *at).max(0) as f64 * per_ms).min(capacity);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_off_and_refills_over_time() {
        let mut limit = RateLimit::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limit.allow(a, 0) && limit.allow(a, 1) && limit.allow(a, 2));
        assert!(!limit.allow(a, 3), "fourth attempt in a minute");
        assert!(limit.allow(b, 3), "another address is not affected");
        assert!(limit.allow(a, 20_003), "a third of a minute refills one");
        assert!(!limit.allow(a, 20_004));
    }
}
