//! Per-binding usage that outlives snapshots: the request rate and the day's tokens behind
//! `max_requests_per_minute` and `max_tokens_per_day`. Keyed by (devbox, env var), so a reload or a
//! token rotation does not reset a budget; kept in memory, so a restart does (documented).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Why a binding may not send a request now, and for how many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// `max_requests_per_minute`.
    Rate(u64),
    /// `max_tokens_per_day`.
    Tokens(u64),
}

#[derive(Debug)]
struct Account {
    /// Requests that may start now (a token bucket of `max_requests_per_minute`, refilled evenly over
    /// a minute).
    allowance: f64,
    refilled: Instant,
    /// The UTC day `used` counts for (days since the epoch).
    day: u64,
    used: u64,
}

/// Every binding's account.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: Mutex<HashMap<(String, String), Account>>,
}

const DAY: u64 = 86_400;

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ledger {
    /// Admit one request of binding `(devbox, env)` under its limits, spending one request of its
    /// allowance.
    ///
    /// # Errors
    /// Which limit is reached, and the seconds until the request would be admitted.
    pub fn admit(
        &self,
        devbox: &str,
        env: &str,
        per_minute: Option<u32>,
        per_day: Option<u64>,
    ) -> Result<(), Exceeded> {
        if per_minute.is_none() && per_day.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let secs = unix_secs();
        let mut all = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = all
            .entry((devbox.to_string(), env.to_string()))
            .or_insert_with(|| Account {
                allowance: f64::from(per_minute.unwrap_or(0)),
                refilled: now,
                day: secs / DAY,
                used: 0,
            });
        if a.day != secs / DAY {
            a.day = secs / DAY;
            a.used = 0;
        }
        if let Some(max) = per_day {
            if a.used >= max {
                return Err(Exceeded::Tokens(DAY - secs % DAY));
            }
        }
        if let Some(rpm) = per_minute {
            let rate = f64::from(rpm) / 60.0;
            let cap = f64::from(rpm);
            a.allowance =
                (a.allowance + now.duration_since(a.refilled).as_secs_f64() * rate).min(cap);
            a.refilled = now;
            if a.allowance < 1.0 {
                let wait = ((1.0 - a.allowance) / rate).ceil();
                return Err(Exceeded::Rate(wait.max(1.0) as u64));
            }
            a.allowance -= 1.0;
        }
        Ok(())
    }

    /// Count `tokens` the upstream reported for binding `(devbox, env)` today.
    pub fn spend(&self, devbox: &str, env: &str, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let day = unix_secs() / DAY;
        let mut all = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(a) = all.get_mut(&(devbox.to_string(), env.to_string())) {
            if a.day != day {
                a.day = day;
                a.used = 0;
            }
            a.used = a.used.saturating_add(tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_daily_budget() {
        let l = Ledger::default();
        for _ in 0..3 {
            l.admit("b", "A", Some(3), None).unwrap();
        }
        match l.admit("b", "A", Some(3), None) {
            Err(Exceeded::Rate(s)) => assert!((1..=20).contains(&s), "{s}"),
            other => panic!("{other:?}"),
        }
        // Another binding has its own allowance.
        l.admit("b", "B", Some(3), None).unwrap();
        // Without limits nothing is tracked.
        l.admit("b", "C", None, None).unwrap();
        l.admit("b", "T", None, Some(100)).unwrap();
        l.spend("b", "T", 60);
        l.admit("b", "T", None, Some(100)).unwrap();
        l.spend("b", "T", 60);
        match l.admit("b", "T", None, Some(100)) {
            Err(Exceeded::Tokens(s)) => assert!((1..=DAY).contains(&s)),
            other => panic!("{other:?}"),
        }
    }
}
