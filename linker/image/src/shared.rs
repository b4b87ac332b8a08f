//! Work shared between threads without a thread pool of our own: the
//! caller posts a job that whichever threads the runtime lends take units
//! of (the runtime's helper thread, `hcr-runtime`'s `helper.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs posted work on the calling thread and, when it can, on another
/// thread at the same time; returns when the work is done and no other
/// thread is inside it (the runtime's helper thread). The work takes its
/// units from a shared counter.
pub type Share<'a> = &'a dyn Fn(&(dyn Fn() + Sync));

/// A [`Share`] that runs the work on the calling thread only.
pub fn alone(work: &(dyn Fn() + Sync)) {
    work();
}

/// Runs `f` on every item, the items taken in order by whichever thread
/// `share` lets run; returns each item's result in item order (`None` for
/// one whose run panicked).
pub fn run_shared<T: Send, R: Send>(
    items: Vec<T>,
    share: Share<'_>,
    f: impl Fn(T) -> R + Sync,
) -> Vec<Option<R>> {
    let jobs: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        let Some(t) = job.lock().ok().and_then(|mut j| j.take()) else {
            continue;
        };
        let r = f(t);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(r);
        }
    };
    share(&work);
    results
        .into_iter()
        .map(|r| r.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order_whichever_thread_runs_them() {
        let two_threads: Share<'_> = &|work| {
            std::thread::scope(|s| {
                s.spawn(work);
                work();
            })
        };
        for share in [two_threads, &alone as Share<'_>] {
            let out = run_shared((0..100u32).collect(), share, |i| i * 3);
            let want: Vec<Option<u32>> = (0..100).map(|i| Some(i * 3)).collect();
            assert_eq!(out, want);
        }
    }
}
