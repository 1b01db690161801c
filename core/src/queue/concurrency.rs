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
//!
//! The limit is the whole cluster's: with N nodes running queue runners
//! (from their heartbeats), each opens at most its share, `limit / N` (at
//! least one), so N nodes together stay under what the destination allows;
//! a `421` seen with `k` connections open here counts as `k * N` open in
//! all. Nodes take a stricter ceiling another node stored (`adopt`).

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
    /// Nodes running a queue runner, this one included (at least 1).
    nodes: i32,
}

impl DestinationLimits {
    pub fn new(cfg: ConcurrencyConfig) -> Self {
        DestinationLimits {
            cfg,
            map: HashMap::new(),
            nodes: 1,
        }
    }

    pub fn set_nodes(&mut self, nodes: i32) {
        self.nodes = nodes.max(1);
    }

    pub fn nodes(&self) -> i32 {
        self.nodes
    }

    /// This node's part of a cluster-wide limit.
    fn share(&self, limit: i32) -> i32 {
        (limit / self.nodes).max(1)
    }

    /// Connections this node may still open to the destination.
    pub fn room(&mut self, domain: &str) -> i32 {
        let st = self.state(domain);
        let (limit, active) = (st.limit, st.active);
        self.share(limit) - active
    }

    /// Takes a ceiling another node stored for the destination when it is
    /// stricter than what this node knows (it saw a `421` we did not).
    pub fn adopt(&mut self, domain: &str, limit: i32, ceiling: i32, since: i64) {
        let Some(s) = self.map.get_mut(domain) else {
            return;
        };
        if s.ceiling.is_none_or(|(c, _)| ceiling < c) {
            s.ceiling = Some((ceiling.max(1), since));
            s.limit = s.limit.min(limit.max(1)).min(ceiling.max(1));
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

    /// Domains with no free connection slot on this node.
    pub fn saturated(&self) -> Vec<String> {
        self.map
            .iter()
            .filter(|(_, s)| s.active >= self.share(s.limit))
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
        let in_flight = in_flight.saturating_mul(self.nodes);
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
    fn two_nodes_each_take_half_of_a_destinations_limit() {
        let mut l = DestinationLimits::new(ConcurrencyConfig::default());
        l.set_nodes(2);
        l.seed("a.test", 2, Some((2, 0)));
        assert_eq!(l.room("a.test"), 1, "half of 2");
        l.acquire("a.test");
        assert_eq!(l.saturated(), vec!["a.test".to_owned()]);
        // A 421 with 2 open here is 4 open in the cluster: ceiling 3.
        l.seed("b.test", 5, None);
        l.pushback("b.test", 2, true, 0);
        assert_eq!(l.state("b.test").ceiling, Some((3, 0)));
        // Another node stored a stricter ceiling: taken; a looser one not.
        l.adopt("b.test", 2, 2, 5);
        assert_eq!(l.state("b.test").ceiling, Some((2, 5)));
        assert_eq!(l.state("b.test").limit, 2);
        l.adopt("b.test", 9, 9, 6);
        assert_eq!(l.state("b.test").ceiling, Some((2, 5)));
        l.set_nodes(0);
        assert_eq!(l.nodes(), 1, "never fewer than this node");
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
