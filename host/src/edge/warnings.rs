//! Repeated identical warnings, rate-limited: a flood of bad tokens or
//! refused origins writes one line per kind every few seconds (with how many
//! were held back), not one per request.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One line per kind this often.
const INTERVAL: Duration = Duration::from_secs(10);
/// Most kinds remembered; past it the table starts over.
const MAX_KINDS: usize = 1024;

#[derive(Default)]
pub(super) struct Warnings {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Warnings {
    /// Whether to write the warning of `kind` now, and how many of its kind
    /// were held back since the last one written.
    pub(super) fn admit(&self, kind: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match seen.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < INTERVAL => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let suppressed = *held;
                *last = now;
                *held = 0;
                Some(suppressed)
            }
            None => {
                if seen.len() >= MAX_KINDS {
                    seen.clear();
                }
                seen.insert(kind.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval() {
        let w = Warnings::default();
        assert_eq!(w.admit("bad token"), Some(0));
        for _ in 0..1000 {
            assert_eq!(w.admit("bad token"), None);
        }
        assert_eq!(w.admit("refused origin"), Some(0), "kinds are separate");
        // After the interval the next one is written with the count held back.
        if let Some((last, _)) = w
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut("bad token")
        {
            *last -= INTERVAL;
        }
        assert_eq!(w.admit("bad token"), Some(1000));
    }
}
