//! The few operating-system facts a load generator needs: wall-clock microseconds, its own CPU
//! time, the open-files limit, its use of huge pages, another process's CPU time and memory,
//! and a stop flag set by SIGINT/SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_REALTIME in microseconds: the clock records carry, so sender and receiver on one host
/// compare directly.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// User plus system CPU seconds this process has used so far (all threads).
pub fn self_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_SELF)
}

/// User plus system CPU seconds the calling thread has used so far.
pub fn thread_cpu_s() -> f64 {
    rusage_cpu_s(libc::RUSAGE_THREAD)
}

fn rusage_cpu_s(who: libc::c_int) -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer we pass, which is valid and
    // properly aligned; `who` is RUSAGE_SELF or RUSAGE_THREAD, both valid on Linux.
    let rc = unsafe { libc::getrusage(who, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and zeroed is valid anyway).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Stops this process's page faults from taking transparent huge pages from now on, whatever
/// the allocator asks for (`PR_SET_THP_DISABLE`).
pub fn disable_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and the rest zero.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process's page faults may take transparent huge pages (`PR_GET_THP_DISABLE`).
pub fn huge_pages_allowed() -> bool {
    // SAFETY: PR_GET_THP_DISABLE takes no argument.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 0 }
}

/// CPU time (user + system, all threads) of process `pid`, read two ways.
///
/// `/proc/PID/stat` counts every thread the process ever had but in clock ticks (10 ms): at
/// 10 viewers a relay uses about 0.5 s of CPU in an 8 s run, so a tick is 2% of it. The sum of
/// each live thread's `/proc/PID/task/TID/schedstat` is in nanoseconds but loses a thread that
/// exits between two readings. [`CpuReading::seconds_since`] takes the nanoseconds when the two
/// agree within the ticks' rounding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuReading {
    ticks_s: f64,
    threads_ns: Option<u64>,
}

impl CpuReading {
    /// CPU seconds used between `earlier` and this reading.
    pub fn seconds_since(&self, earlier: &CpuReading) -> f64 {
        let ticks = self.ticks_s - earlier.ticks_s;
        match (self.threads_ns, earlier.threads_ns) {
            (Some(now), Some(then)) if now >= then => {
                let precise = (now - then) as f64 / 1e9;
                // utime and stime are each truncated to a tick: at most 2 ticks apart, unless a
                // thread's time left the task list with it.
                if (ticks - precise).abs() <= 3.0 / clock_ticks() {
                    precise
                } else {
                    ticks
                }
            }
            _ => ticks,
        }
    }
}

/// Reads process `pid`'s CPU time (see [`CpuReading`]).
pub fn process_cpu(pid: u32) -> std::io::Result<CpuReading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks_s = parse_proc_stat_cpu(&stat, clock_ticks()).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable /proc/PID/stat")
    })?;
    Ok(CpuReading {
        ticks_s,
        threads_ns: threads_runtime_ns(pid),
    })
}

/// Sum of the first field of every thread's schedstat (time on a CPU, ns); `None` if any is
/// unreadable (no schedstat in this kernel, or a thread gone while listing).
fn threads_runtime_ns(pid: u32) -> Option<u64> {
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        sum += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects; _SC_CLK_TCK is a valid name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15) in seconds. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last ')'.
fn parse_proc_stat_cpu(stat: &str, ticks: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks)
}

/// Resident memory of process `pid` in KiB (VmRSS from /proc/PID/status).
pub fn process_rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no VmRSS"))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set the flag [`stop_requested`] reads, so a run ends cleanly and
/// still prints its summary.
pub fn install_stop_handler() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// True once SIGINT or SIGTERM arrived (after [`install_stop_handler`]).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_nanoseconds_are_taken_unless_a_thread_took_its_time_away() {
        let r = |ticks_s, ns| CpuReading {
            ticks_s,
            threads_ns: Some(ns),
        };
        let ticks = 1.0 / clock_ticks();
        // Within the ticks' rounding: the nanoseconds.
        let used = r(0.52, 523_456_789).seconds_since(&r(0.01, 9_000_000));
        assert!((used - 0.514456789).abs() < 1e-9, "{used}");
        // A thread that used 0.3 s exited in between: only the ticks still count it.
        let used = r(0.82, 523_456_789).seconds_since(&r(0.01, 9_000_000));
        assert!((used - 0.81).abs() < ticks, "{used}");
        let no_schedstat = CpuReading {
            ticks_s: 0.5,
            threads_ns: None,
        };
        assert_eq!(no_schedstat.seconds_since(&r(0.25, 1)), 0.25);
    }

    #[test]
    fn proc_stat_with_odd_command_name() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_proc_stat_cpu(stat, 100.0), Some(3.0));
    }

    #[test]
    fn own_process_figures() {
        let pid = std::process::id();
        let before = process_cpu(pid).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = process_cpu(pid).unwrap().seconds_since(&before);
        assert!((0.15..5.0).contains(&used), "{used} s for a 0.2 s spin");
        assert!(process_rss_kib(pid).unwrap() > 0);
        assert!(self_cpu_s() >= thread_cpu_s());
        assert!(raise_nofile_limit().unwrap() > 0);
    }
}
