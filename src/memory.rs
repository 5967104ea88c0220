//! Gives back to the system the memory a burst used once it is freed.
//!
//! The C allocator keeps what the program frees for later allocations:
//! after a burst (a fan-out at full speed fills every subscriber's queue)
//! the process would stay at its peak size for good. Every two seconds this
//! task asks the allocator how much memory is in use; when that fell by
//! 8 MiB or more below the most it was since the last trim, the free
//! memory is handed back (`malloc_trim`), so the resident size comes back
//! to what the live state needs within seconds of the burst's end. (The
//! memory in use is the measure, not the free memory: a trim leaves the
//! free memory's figure where it was, so a burst freed after a trim in its
//! middle would not show as more free memory.) Linux with glibc only;
//! elsewhere nothing.

use std::time::Duration;

/// How often the allocator is asked.
const EVERY: Duration = Duration::from_secs(2);

/// A fall of the memory in use worth a trim.
const WORTH: usize = 8 << 20;

/// Starts the task on the current runtime.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut most = in_use();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let used = in_use();
            if used.saturating_add(WORTH) <= most {
                // SAFETY: malloc_trim only walks and releases the
                // allocator's own free lists.
                unsafe { libc::malloc_trim(0) };
                most = in_use();
            } else {
                most = most.max(used);
            }
        }
    });
}

/// Bytes the allocator has handed out and not had back (`mallinfo2`'s
/// `uordblks`, over every arena).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn in_use() -> usize {
    // SAFETY: mallinfo2 reads the allocator's statistics; no arguments.
    unsafe { libc::mallinfo2() }.uordblks
}
