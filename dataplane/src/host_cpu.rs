//! How busy the host's CPUs were since the last look, from `/proc/stat`.
//!
//! A core in a flash crowd holds its small sends to leave the CPUs to the joins
//! ([`crate::join_rate`]). That helps only where the CPUs are short: on a host with idle CPU
//! the viewers already served would wait for nothing (BENCHMARKS.md, "A flash crowd's hold
//! only on a busy host"). So a core in a crowd asks how busy the host was over the
//! last tick, and holds only while the host was busy; the relay's cores share one look at
//! `/proc/stat` per tick ([`SharedHostBusy`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The host's CPU time so far, in clock ticks: all of it, and the idle part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    pub total: u64,
    pub idle: u64,
}

/// The first line of `/proc/stat` (`cpu  user nice system idle iowait irq softirq steal …`):
/// idle is `idle` + `iowait`; guest time is already inside user and nice, so it is not added.
pub fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().next()?;
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if v.len() < 5 {
        return None;
    }
    Some(CpuTimes {
        total: v.iter().sum(),
        idle: v[3] + v[4],
    })
}

/// The host's CPU times now; `None` where `/proc/stat` cannot be read.
pub fn read() -> Option<CpuTimes> {
    // The first line is all that is needed: one small read, not the whole per-CPU table.
    use std::io::Read;
    let mut buf = [0u8; 256];
    let n = std::fs::File::open("/proc/stat")
        .and_then(|mut f| f.read(&mut buf))
        .ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    // A first line longer than the buffer would end in a cut number: no figure rather than a
    // wrong one.
    let line = &text[..text.find('\n')?];
    parse(line)
}

/// Looks further apart than this tell the mean over too long a time to say how busy the host
/// is now: the look after them gives no figure.
pub const STALE_US: u64 = 300_000;

/// At most one look per this long for the whole process: every core asks once per 100 ms tick
/// while in a crowd, and on a host of many cores each asking would read `/proc/stat`,
/// whose every line the kernel formats (its interrupt counts summed over every CPU), that
/// many times.
pub const LOOK_EVERY_US: u64 = 90_000;

/// Busy share of the host's CPUs between consecutive looks.
#[derive(Debug, Default)]
pub struct HostBusy {
    /// The last look: when (µs, any monotonic clock) and the times it found.
    last: Option<(u64, CpuTimes)>,
}

impl HostBusy {
    /// The busy fraction (0–1) since the previous look, at `now_us` with the host's times
    /// `now`; `None` on the first look, after a look too long ago (`STALE_US`), if no CPU time
    /// passed, or if the times cannot be read (`now` is `None`).
    pub fn look(&mut self, now_us: u64, now: Option<CpuTimes>) -> Option<f64> {
        let last = std::mem::replace(&mut self.last, now.map(|t| (now_us, t)));
        let ((then_us, last), now) = (last?, now?);
        if now_us.saturating_sub(then_us) > STALE_US {
            return None;
        }
        let total = now.total.checked_sub(last.total).filter(|&t| t > 0)?;
        let idle = now.idle.saturating_sub(last.idle).min(total);
        Some(1.0 - idle as f64 / total as f64)
    }
}

/// Parts per million standing for "not known".
const UNKNOWN: u32 = u32::MAX;

/// The host's busy share as every core of the relay sees it: whichever core asks first after
/// `LOOK_EVERY_US` reads `/proc/stat`, the others take its figure.
#[derive(Debug)]
pub struct SharedHostBusy {
    host: Mutex<HostBusy>,
    /// The last figure, in parts per million, or `UNKNOWN`.
    busy_ppm: AtomicU32,
    looked_at_us: AtomicU64,
}

impl Default for SharedHostBusy {
    fn default() -> Self {
        SharedHostBusy {
            host: Mutex::default(),
            busy_ppm: AtomicU32::new(UNKNOWN),
            looked_at_us: AtomicU64::new(0),
        }
    }
}

impl SharedHostBusy {
    /// How busy the host's CPUs were over about the last 100 ms, at `now_us` (the relay's
    /// clock); `None` if not known. `read` gives the host's times (`read` in production).
    pub fn busy(&self, now_us: u64, read: impl FnOnce() -> Option<CpuTimes>) -> Option<f64> {
        let due = |at: u64| now_us.saturating_sub(at) >= LOOK_EVERY_US;
        // A core that finds another looking takes the last figure, unless that is stale too.
        if due(self.looked_at_us.load(Ordering::Acquire))
            && let Ok(mut host) = self.host.try_lock()
            && due(self.looked_at_us.load(Ordering::Acquire))
        {
            let busy = host.look(now_us, read());
            let ppm = busy.map_or(UNKNOWN, |b| (b * 1e6) as u32);
            self.busy_ppm.store(ppm, Ordering::Relaxed);
            self.looked_at_us.store(now_us, Ordering::Release);
        }
        if now_us.saturating_sub(self.looked_at_us.load(Ordering::Acquire)) > STALE_US {
            return None;
        }
        match self.busy_ppm.load(Ordering::Relaxed) {
            UNKNOWN => None,
            ppm => Some(f64::from(ppm) / 1e6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_idle_and_iowait_of_the_first_line() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(
            parse(stat),
            Some(CpuTimes {
                total: 1000,
                idle: 840
            })
        );
        assert_eq!(parse("cpu0 1 2 3 4 5\n"), None, "not the summary line");
        assert_eq!(parse("cpu  1 2 x 4 5\n"), None);
        assert_eq!(parse("cpu  1 2 3\n"), None, "too few fields");
    }

    #[test]
    fn busy_is_the_share_not_idle_between_two_looks() {
        let mut busy = HostBusy::default();
        let t = |total, idle| Some(CpuTimes { total, idle });
        assert_eq!(busy.look(0, t(1000, 800)), None, "the first look");
        assert_eq!(busy.look(100_000, t(1200, 820)), Some(0.9));
        assert_eq!(busy.look(200_000, t(1200, 820)), None, "no time passed");
        assert_eq!(busy.look(300_000, None), None, "unreadable");
        assert_eq!(
            busy.look(400_000, t(1400, 1000)),
            None,
            "after an unreadable look"
        );
        assert_eq!(busy.look(500_000, t(1500, 1100)), Some(0.0));
        assert_eq!(
            busy.look(500_000 + STALE_US + 1, t(1600, 1100)),
            None,
            "the mean over too long a time"
        );
        assert_eq!(busy.look(600_000 + STALE_US, t(1700, 1110)), Some(0.9));
    }

    #[test]
    fn the_cores_share_one_look_per_interval() {
        let shared = SharedHostBusy::default();
        let reads = std::cell::Cell::new(0u64);
        let read = || {
            reads.set(reads.get() + 1);
            Some(CpuTimes {
                total: 1000 * reads.get(),
                idle: 500 * reads.get(),
            })
        };
        assert_eq!(shared.busy(100_000, read), None, "the first look");
        assert_eq!(
            shared.busy(150_000, read),
            None,
            "another core, same interval"
        );
        assert_eq!(reads.get(), 1);
        assert_eq!(shared.busy(190_000, read), Some(0.5));
        assert_eq!(
            shared.busy(200_000, read),
            Some(0.5),
            "the figure of that look"
        );
        assert_eq!(reads.get(), 2);
        // Another core looking (the lock held) long after the last look: no stale figure.
        {
            let _looking = shared.host.lock().unwrap();
            assert_eq!(shared.busy(190_000 + STALE_US + 1, read), None, "stale");
            assert_eq!(reads.get(), 2);
        }
        assert_eq!(
            shared.busy(190_000 + STALE_US + 1, read),
            None,
            "the look after a pause"
        );
        assert_eq!(reads.get(), 3);
    }

    #[test]
    fn this_host_can_be_read() {
        let a = read().expect("/proc/stat");
        assert!(a.total >= a.idle && a.total > 0);
    }
}
