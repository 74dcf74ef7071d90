//! The circuit breaker: when items keep failing the same persistent way
//! (same status and class: a wrong path, a template that rejects content
//! lists, a bad key), every further item would fail too and pay its whole
//! backoff. After `after` such items in a row the breaker trips and the run
//! stops with one message naming the likely cause.

use std::sync::Mutex;

use crate::failure::{CallError, Persistence};

/// Counts same-failure streaks across items (in completion order).
#[derive(Debug)]
pub(crate) struct Breaker {
    after: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Items that got a chat completion back.
    successes: usize,
    /// The failure of the current streak: (status, kind).
    last: Option<(Option<u16>, &'static str)>,
    streak: usize,
    /// The message it tripped with.
    tripped: Option<String>,
}

impl Breaker {
    /// A breaker tripping after `after` items in a row (0: never).
    pub fn new(after: usize) -> Self {
        Self {
            after,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The trip message, once tripped.
    pub fn tripped(&self) -> Option<String> {
        self.state().tripped.clone()
    }

    /// An item got a chat completion: the streak ends.
    pub fn success(&self) {
        let mut s = self.state();
        s.successes += 1;
        s.last = None;
        s.streak = 0;
    }

    /// An item failed with `e` (after its retries). Returns the message the
    /// run stops with when this failure trips the breaker; `cause` says what
    /// to fix.
    pub fn failure(&self, e: &CallError, cause: impl FnOnce() -> String) -> Option<String> {
        let mut s = self.state();
        let persistent = match e.persistence {
            Persistence::Setup => true,
            Persistence::Startup => s.successes == 0,
            Persistence::Transient => false,
        };
        if self.after == 0 || !persistent || s.tripped.is_some() {
            if !persistent {
                s.last = None;
                s.streak = 0;
            }
            return None;
        }
        let signature = (e.status, e.kind);
        if s.last == Some(signature) {
            s.streak += 1;
        } else {
            s.last = Some(signature);
            s.streak = 1;
        }
        if s.streak < self.after {
            return None;
        }
        let which = if s.successes == 0 { "first" } else { "last" };
        let message = format!(
            "the {which} {} requests all failed the same way ({}): {}",
            s.streak,
            e.message,
            cause()
        );
        s.tripped = Some(message.clone());
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> CallError {
        CallError::http(status, "{\"detail\":\"Not Found\"}", None)
    }

    #[test]
    fn trips_after_n_same_persistent_failures_in_a_row() {
        let b = Breaker::new(3);
        assert!(b.failure(&http(404), || "c".into()).is_none());
        assert!(b.failure(&http(404), || "c".into()).is_none());
        let m = b.failure(&http(404), || "fix the path".into()).unwrap();
        assert!(
            m.contains("first 3") && m.contains("HTTP 404") && m.contains("fix the path"),
            "{m}"
        );
        assert_eq!(b.tripped(), Some(m));
    }

    #[test]
    fn a_success_a_different_failure_or_a_transient_one_breaks_the_streak() {
        let b = Breaker::new(2);
        b.failure(&http(404), String::new);
        b.success();
        assert!(b.failure(&http(404), String::new).is_none());
        assert!(b.failure(&http(401), String::new).is_none());
        assert!(b.failure(&http(503), String::new).is_none());
        assert!(b.failure(&http(401), String::new).is_none());
        assert!(b
            .failure(&http(401), String::new)
            .unwrap()
            .contains("last 2"));
    }

    #[test]
    fn transient_failures_and_a_zero_limit_never_trip() {
        let b = Breaker::new(1);
        for _ in 0..10 {
            assert!(b.failure(&http(503), String::new).is_none());
            assert!(b.failure(&http(429), String::new).is_none());
        }
        let off = Breaker::new(0);
        assert!(off.failure(&http(404), String::new).is_none());
    }

    #[test]
    fn startup_failures_trip_only_before_any_success() {
        let refused = || CallError {
            kind: "connection-refused",
            status: None,
            message: "connection refused".into(),
            retry: true,
            persistence: Persistence::Startup,
            retry_after: None,
        };
        let b = Breaker::new(2);
        b.failure(&refused(), String::new);
        assert!(b.failure(&refused(), String::new).is_some());
        let b = Breaker::new(2);
        b.success();
        b.failure(&refused(), String::new);
        assert!(b.failure(&refused(), String::new).is_none());
    }
}
