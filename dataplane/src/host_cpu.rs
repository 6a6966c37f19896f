//! How busy the host's CPUs were since the last look, from `/proc/stat`.
//!
//! A core in a flash crowd holds its small sends to leave the CPUs to the joins
//! ([`crate::join_rate`]). That helps only where the CPUs are short: on a host with idle CPU
//! the viewers already served would wait for nothing (BENCHMARKS.md, "A flash crowd's hold
//! only on a busy host"). So a core looks at the host's CPU time once per tick while viewers
//! join it, and holds only while the host was busy.

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
    parse(std::str::from_utf8(&buf[..n]).ok()?)
}

/// Busy share of the host's CPUs between consecutive looks.
#[derive(Debug, Default)]
pub struct HostBusy {
    last: Option<CpuTimes>,
}

impl HostBusy {
    /// The busy fraction (0–1) since the previous look, `None` on the first look or if no time
    /// passed. `now` is `None` where the times cannot be read.
    pub fn look(&mut self, now: Option<CpuTimes>) -> Option<f64> {
        let (last, now) = (self.last, now);
        self.last = now;
        let (last, now) = (last?, now?);
        let total = now.total.checked_sub(last.total).filter(|&t| t > 0)?;
        let idle = now.idle.saturating_sub(last.idle).min(total);
        Some(1.0 - idle as f64 / total as f64)
    }

    /// No viewers join: the next look starts afresh.
    pub fn forget(&mut self) {
        self.last = None;
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
        assert_eq!(busy.look(t(1000, 800)), None, "the first look");
        assert_eq!(busy.look(t(1200, 820)), Some(0.9));
        assert_eq!(busy.look(t(1200, 820)), None, "no time passed");
        assert_eq!(busy.look(None), None, "unreadable");
        assert_eq!(
            busy.look(t(1400, 1000)),
            None,
            "after an unreadable look, afresh"
        );
        assert_eq!(busy.look(t(1500, 1100)), Some(0.0));
        busy.forget();
        assert_eq!(busy.look(t(1600, 1100)), None);
    }

    #[test]
    fn this_host_can_be_read() {
        let a = read().expect("/proc/stat");
        assert!(a.total >= a.idle && a.total > 0);
    }
}
