//! Running independent jobs on scoped threads.

use rediff_api::error::{Error, Result};

/// Runs `job` on every item, each on its own scoped thread, and returns the
/// results in item order (so callers that combine them stay deterministic).
/// A panicking job becomes an error for that item; one item runs inline.
pub fn map_scoped<T, R, F>(items: &[T], job: F) -> Vec<Result<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    if items.len() <= 1 {
        return items.iter().map(&job).collect();
    }
    std::thread::scope(|scope| {
        let job = &job;
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || job(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::invalid("a worker thread panicked")))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_turns_panics_into_errors() {
        let out = map_scoped(&[1, 2, 3], |&x| Ok(x * 10));
        let out: Vec<i32> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(out, vec![10, 20, 30]);
        let out = map_scoped(&[1, 2], |&x| {
            if x == 2 {
                panic!("boom");
            }
            Ok(x)
        });
        assert_eq!(*out[0].as_ref().unwrap(), 1);
        assert!(out[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("panicked"));
    }
}
