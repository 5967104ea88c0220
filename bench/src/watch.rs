//! Watching the server under test from outside: its resident memory
//! (before, at peak while a run lasts, and how long it takes to come back
//! after) and the CPU time it used, read from `/proc/<pid>` on Linux. This
//! is how the edge and the floor are measured alike, whatever they report
//! of themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The resident size of process `pid` in bytes (`/proc/<pid>/statm`:
/// resident pages × the page size); `None` where unreadable.
#[must_use]
pub fn resident_memory(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The CPU time process `pid` has used in seconds, user and system
/// (`/proc/<pid>/stat`, whose times are in 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from its ')'.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime / 100.0, stime / 100.0))
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf reads a system constant.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

#[cfg(not(target_os = "linux"))]
fn page_size() -> u64 {
    4096
}

/// How often the resident memory is sampled during a run.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A server process being watched during a run.
pub struct Watch {
    pid: u32,
    rss_before: u64,
    cpu_before: (f64, f64),
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

/// What [`Watch::finish`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerUsage {
    /// Resident memory when the watch started, in bytes.
    pub rss_before: u64,
    /// The highest resident memory sampled (every 50 ms) while watched.
    pub rss_peak: u64,
    /// CPU time (user and system) the process used while watched.
    pub cpu_seconds: f64,
    /// The part of it spent in the kernel (system time): on a server that
    /// writes to many sockets, mostly the sockets' own work.
    pub system_seconds: f64,
}

impl Watch {
    /// Starts watching process `pid`; `None` when its `/proc` entry cannot
    /// be read (another platform, or no such process).
    #[must_use]
    pub fn start(pid: u32) -> Option<Self> {
        let rss_before = resident_memory(pid)?;
        let cpu_before = cpu_seconds(pid)?;
        let peak = Arc::new(AtomicU64::new(rss_before));
        let stop = Arc::new(AtomicBool::new(false));
        // A thread of its own: the generator's runtime is single-threaded
        // and busy; 20 reads a second cost it nothing measurable.
        let sampler = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn({
                let (peak, stop) = (peak.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(rss) = resident_memory(pid) {
                            peak.fetch_max(rss, Ordering::Relaxed);
                        }
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                }
            })
            .ok()?;
        Some(Self { pid, rss_before, cpu_before, peak, stop, sampler: Some(sampler) })
    }

    /// Stops watching and says what was used.
    #[must_use]
    pub fn finish(mut self) -> ServerUsage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let cpu = cpu_seconds(self.pid).unwrap_or(self.cpu_before);
        if let Some(rss) = resident_memory(self.pid) {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        ServerUsage {
            rss_before: self.rss_before,
            rss_peak: self.peak.load(Ordering::Relaxed),
            cpu_seconds: (cpu.0 + cpu.1) - (self.cpu_before.0 + self.cpu_before.1),
            system_seconds: cpu.1 - self.cpu_before.1,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits up to `limit` for process `pid`'s resident memory to come back to
/// within 10% (and 1 MiB) of `idle`: the time it took and the figure then,
/// or `None` for the time when it did not.
pub async fn settle(pid: u32, idle: u64, limit: Duration) -> (Option<Duration>, u64) {
    let started = Instant::now();
    let target = idle + (idle / 10).max(1 << 20);
    loop {
        let rss = resident_memory(pid).unwrap_or(0);
        if rss <= target {
            return (Some(started.elapsed()), rss);
        }
        if started.elapsed() >= limit {
            return (None, rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watching_this_process_sees_its_memory_and_cpu() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let watch = Watch::start(std::process::id()).expect("this process has a /proc entry");
        // Some CPU and 64 MiB touched.
        let block: Vec<u8> = (0..64usize << 20).map(|i| i as u8).collect();
        let usage = watch.finish();
        assert!(usage.rss_peak >= usage.rss_before + (32 << 20), "{usage:?}");
        assert!(usage.cpu_seconds >= usage.system_seconds && usage.system_seconds >= 0.0, "{usage:?}");
        drop(block);
        let (_, rss) = settle(std::process::id(), u64::MAX / 2, Duration::from_secs(1)).await;
        assert!(rss > 0);
    }
}
