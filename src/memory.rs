//! Gives back to the system the memory a burst used once it is freed.
//!
//! The C allocator keeps what the program frees for later allocations:
//! after a burst (a fan-out at full speed fills every subscriber's queue)
//! the process would stay at its peak size for good. Every two seconds this
//! task asks the allocator how much free memory it holds; when that grew by
//! 8 MiB or more since the last look, it is handed back (`malloc_trim`), so
//! the resident size comes back to what the live state needs within
//! seconds of the burst's end. Linux with glibc only; elsewhere nothing.

use std::time::Duration;

/// How often the allocator is asked.
const EVERY: Duration = Duration::from_secs(2);

/// Free memory held by the allocator that is worth a trim.
const WORTH: usize = 8 << 20;

/// Starts the task on the current runtime.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut free_after_last = free_held();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let free = free_held();
            if free >= free_after_last + WORTH {
                // SAFETY: malloc_trim only walks and releases the
                // allocator's own free lists.
                unsafe { libc::malloc_trim(0) };
                free_after_last = free_held();
            } else {
                // Memory reused since: the next burst counts from here.
                free_after_last = free_after_last.min(free);
            }
        }
    });
}

/// Bytes the allocator holds free (`mallinfo2`'s `fordblks`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn free_held() -> usize {
    // SAFETY: mallinfo2 reads the allocator's statistics; no arguments.
    unsafe { libc::mallinfo2() }.fordblks
}
