//! Adaptive connection limits per destination.
//!
//! The outage behind DESIGN.md rule 4 had senders hammering a destination
//! that answered "421 Too many concurrent SMTP connections". Here a
//! destination starts at `initial` connections. A sign of pushback (a `421`,
//! a connection or TLS failure) halves the limit and records a ceiling just
//! below the level at which it happened. Successes grow the limit again by
//! one for every `limit` successes (additive increase), but not past the
//! ceiling until the destination has been quiet for `quiet_secs`. So a
//! destination that allows two connections settles at two instead of
//! oscillating into `421`s.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConcurrencyConfig {
    pub initial: i32,
    pub max: i32,
    pub quiet_secs: i64,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            initial: 5,
            max: 20,
            quiet_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestState {
    pub limit: i32,
    /// (level, since): do not grow to `level + 1` before `since + quiet`.
    pub ceiling: Option<(i32, i64)>,
    pub active: i32,
    successes: i32,
}

/// The limits of all destinations this node delivers to.
#[derive(Debug, Default)]
pub struct DestinationLimits {
    cfg: ConcurrencyConfig,
    map: HashMap<String, DestState>,
}

impl DestinationLimits {
    pub fn new(cfg: ConcurrencyConfig) -> Self {
        DestinationLimits {
            cfg,
            map: HashMap::new(),
        }
    }

    pub fn state(&mut self, domain: &str) -> &mut DestState {
        let initial = self.cfg.initial.clamp(1, self.cfg.max.max(1));
        self.map
            .entry(domain.to_owned())
            .or_insert_with(|| DestState {
                limit: initial,
                ceiling: None,
                active: 0,
                successes: 0,
            })
    }

    /// Seeds a destination from stored state (after a restart), unless this
    /// node already tracks it.
    pub fn seed(&mut self, domain: &str, limit: i32, ceiling: Option<(i32, i64)>) {
        let max = self.cfg.max.max(1);
        self.map
            .entry(domain.to_owned())
            .or_insert_with(|| DestState {
                limit: limit.clamp(1, max),
                ceiling,
                active: 0,
                successes: 0,
            });
    }

    pub fn known(&self, domain: &str) -> bool {
        self.map.contains_key(domain)
    }

    /// Domains with no free connection slot.
    pub fn saturated(&self) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, s)| s.active >= s.limit)
            .map(|(d, _)| d.clone())
            .collect()
    }

    pub fn acquire(&mut self, domain: &str) {
        self.state(domain).active += 1;
    }

    pub fn release(&mut self, domain: &str) {
        let s = self.state(domain);
        s.active = (s.active - 1).max(0);
    }

    /// A sign of pushback while `in_flight` connections (this one included)
    /// were open. `too_many` is a `421` ("too many connections"): only that
    /// tells how many connections the destination allows, and sets a
    /// ceiling. A refused connection or a failed TLS handshake only halves.
    pub fn pushback(&mut self, domain: &str, in_flight: i32, too_many: bool, now: i64) {
        let s = self.state(domain);
        s.successes = 0;
        if in_flight <= 1 || !too_many {
            // A lone connection that failed says nothing about how many the
            // destination allows: halve, but set no ceiling.
            s.limit = (s.limit / 2).max(1);
            return;
        }
        let level = in_flight - 1;
        let level = match s.ceiling {
            Some((c, _)) => c.min(level),
            None => level,
        };
        s.ceiling = Some((level, now));
        s.limit = (s.limit / 2).clamp(1, level);
    }

    pub fn success(&mut self, domain: &str, now: i64) {
        let max = self.cfg.max.max(1);
        let quiet = self.cfg.quiet_secs;
        let s = self.state(domain);
        if let Some((_, since)) = s.ceiling
            && now - since >= quiet
        {
            s.ceiling = None;
        }
        s.successes += 1;
        if s.successes >= s.limit {
            s.successes = 0;
            let cap = s.ceiling.map(|(c, _)| c).unwrap_or(max).min(max);
            if s.limit < cap {
                s.limit += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_five_and_halves_on_pushback() {
        let mut l = DestinationLimits::new(ConcurrencyConfig::default());
        assert_eq!(l.state("a.test").limit, 5);
        l.pushback("a.test", 3, true, 0);
        assert_eq!(l.state("a.test").limit, 2);
        l.pushback("a.test", 2, true, 0);
        assert_eq!(l.state("a.test").limit, 1);
        l.pushback("a.test", 1, true, 0);
        assert_eq!(l.state("a.test").limit, 1, "never below one");
        let mut l = DestinationLimits::new(ConcurrencyConfig::default());
        l.pushback("b.test", 1, true, 0);
        assert_eq!(l.state("b.test").limit, 2, "a lone failure halves...");
        assert_eq!(l.state("b.test").ceiling, None, "...but sets no ceiling");
        l.pushback("b.test", 3, false, 0);
        assert_eq!(l.state("b.test").limit, 1, "refused connections halve...");
        assert_eq!(l.state("b.test").ceiling, None, "...but set no ceiling");
    }

    #[test]
    fn grows_additively_up_to_the_ceiling_until_quiet() {
        let mut l = DestinationLimits::new(ConcurrencyConfig::default());
        // Pushback with 3 open: the destination allows 2.
        l.pushback("a.test", 3, true, 0);
        l.pushback("a.test", 3, true, 0);
        assert_eq!(l.state("a.test").limit, 1);
        for _ in 0..100 {
            l.success("a.test", 10);
        }
        assert_eq!(l.state("a.test").limit, 2, "capped at the ceiling");
        // After an hour without pushback it may probe higher again.
        for _ in 0..100 {
            l.success("a.test", 3600);
        }
        assert!(l.state("a.test").limit > 2);
        for _ in 0..10_000 {
            l.success("a.test", 3600);
        }
        assert_eq!(l.state("a.test").limit, 20, "never above max");
    }

    #[test]
    fn saturated_lists_full_destinations() {
        let mut l = DestinationLimits::new(ConcurrencyConfig {
            initial: 1,
            ..Default::default()
        });
        l.acquire("a.test");
        l.acquire("b.test");
        l.release("b.test");
        assert_eq!(l.saturated(), vec!["a.test".to_owned()]);
    }
}
