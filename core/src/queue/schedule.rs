//! When to try again, when to warn the sender, when to give up.
//!
//! RFC 5321 §4.5.4.1: the retry interval should be at least 30 minutes (we
//! start lower, as Postfix and mox do, because most deferrals are greylisting
//! that clears in minutes) and the give-up time at least 4-5 days.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrySchedule {
    /// Delay before the first retry.
    pub first_retry_secs: i64,
    /// Each later interval is the previous one times this factor...
    pub factor: i64,
    /// ...up to this cap.
    pub max_interval_secs: i64,
    /// Up to this share of an interval is added at random, so that entries
    /// deferred together do not all come back in the same second.
    pub jitter_percent: i64,
    /// A "delayed" DSN goes to the sender once an entry is this old.
    pub delayed_dsn_after_secs: i64,
    /// An entry this old is given up and bounced.
    pub give_up_after_secs: i64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            first_retry_secs: 300,
            factor: 2,
            max_interval_secs: 3600,
            jitter_percent: 20,
            delayed_dsn_after_secs: 4 * 3600,
            give_up_after_secs: 5 * 24 * 3600,
        }
    }
}

impl RetrySchedule {
    /// The interval after the `attempts`-th failed attempt (1 = the first),
    /// before jitter.
    pub fn base_interval(&self, attempts: i32) -> i64 {
        let mut d = self.first_retry_secs.max(1);
        for _ in 1..attempts.max(1) {
            d = d.saturating_mul(self.factor.max(1));
            if d >= self.max_interval_secs {
                break;
            }
        }
        d.min(self.max_interval_secs.max(1))
    }

    /// The next attempt time after the `attempts`-th failure. `rand01` is
    /// in [0, 1) and is passed in so tests can pin it.
    pub fn next_attempt(&self, now: i64, attempts: i32, rand01: f64) -> i64 {
        let base = self.base_interval(attempts);
        let jitter = (base as f64 * self.jitter_percent.max(0) as f64 / 100.0 * rand01) as i64;
        now + base + jitter
    }

    pub fn expired(&self, created_at: i64, now: i64) -> bool {
        now - created_at >= self.give_up_after_secs
    }

    pub fn delayed_dsn_due(&self, created_at: i64, now: i64) -> bool {
        now - created_at >= self.delayed_dsn_after_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_five_minutes_to_an_hour() {
        let s = RetrySchedule::default();
        let got: Vec<i64> = (1..=7).map(|a| s.base_interval(a)).collect();
        assert_eq!(got, vec![300, 600, 1200, 2400, 3600, 3600, 3600]);
        assert_eq!(s.base_interval(1000), 3600);
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let s = RetrySchedule::default();
        assert_eq!(s.next_attempt(1000, 1, 0.0), 1300);
        assert_eq!(s.next_attempt(1000, 1, 0.999_999), 1000 + 300 + 59);
    }

    #[test]
    fn delay_warning_at_four_hours_and_give_up_at_five_days() {
        let s = RetrySchedule::default();
        assert!(!s.delayed_dsn_due(0, 4 * 3600 - 1));
        assert!(s.delayed_dsn_due(0, 4 * 3600));
        assert!(!s.expired(0, 5 * 86400 - 1));
        assert!(s.expired(0, 5 * 86400));
    }
}
