//! CPU time and resident memory of a local process, read from `/proc` (Linux only).
//!
//! CPU time is `utime + stime` of `/proc/<pid>/stat` (fields 14 and 15, in clock ticks);
//! ticks per second come from `getconf CLK_TCK` once at start, and are assumed to be 100 (the
//! Linux value on every common architecture) when `getconf` is unavailable. Resident memory
//! is `VmRSS` of `/proc/<pid>/status`, sampled every second by the load generator to find
//! the peak.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Clock ticks per second assumed when `getconf CLK_TCK` cannot be run.
pub const DEFAULT_CLK_TCK: u64 = 100;

/// Ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_CLK_TCK)
}

/// `utime + stime` (ticks) from the text of `/proc/<pid>/stat`. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU ticks used so far by `pid`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&text)
}

/// Resident memory of `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss_kib(&text)
}

/// Machine-wide CPU time from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Everything but idle and iowait.
    pub busy: u64,
    /// Every field (busy + idle + iowait).
    pub total: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

/// Parses the `cpu` line of `/proc/stat` (user nice system idle iowait irq softirq steal
/// …; guest time is already part of user time, so it is not added again).
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let total: u64 = v.iter().sum();
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
        steal: field(7),
    })
}

/// The machine's CPU times now.
pub fn cpu_times() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// How busy the whole machine was during a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MachineCpu {
    /// Busy share of all CPUs, percent.
    pub busy_percent: f64,
    /// Busy CPU time, seconds.
    pub busy_seconds: f64,
    /// Busy CPU time not spent by the server or the load generator (other processes and the
    /// kernel's work for nobody in particular), seconds: a run where this is large was
    /// disturbed.
    pub other_seconds: f64,
    /// Time stolen by the hypervisor, seconds.
    pub steal_seconds: f64,
}

/// Machine CPU between two readings, given what the measured processes used.
pub fn machine_cpu(
    start: CpuTimes,
    end: CpuTimes,
    ticks_per_second: u64,
    measured_seconds: f64,
) -> MachineCpu {
    let tps = ticks_per_second.max(1) as f64;
    let busy = end.busy.saturating_sub(start.busy) as f64;
    let total = end.total.saturating_sub(start.total) as f64;
    MachineCpu {
        busy_percent: if total > 0.0 {
            100.0 * busy / total
        } else {
            0.0
        },
        busy_seconds: busy / tps,
        other_seconds: (busy / tps - measured_seconds).max(0.0),
        steal_seconds: end.steal.saturating_sub(start.steal) as f64 / tps,
    }
}

/// The machine: CPUs available to this process, kernel release and memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// CPUs (`available_parallelism`, as `nproc`).
    pub cpus: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, KiB.
    pub memory_kib: Option<u64>,
}

impl Machine {
    /// Reads the machine's description.
    pub fn detect() -> Self {
        let memory_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        });
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            memory_kib,
        }
    }
}

/// A process watched during a run: CPU at start, RSS at start and at its peak.
#[derive(Debug)]
pub struct ProcessWatch {
    pid: u32,
    ticks_per_second: u64,
    start_ticks: u64,
    baseline_rss_kib: u64,
    peak_rss_kib: AtomicU64,
}

/// What a process used during a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcessReport {
    /// The process.
    pub pid: u32,
    /// CPU time (user + system) during the run, seconds.
    pub cpu_seconds: f64,
    /// CPU time per second of call, ms (`cpu / Σ call durations`).
    pub cpu_ms_per_call_second: f64,
    /// Average share of one CPU during the run, percent.
    pub cpu_percent_of_one_core: f64,
    /// Resident memory before the first call, KiB.
    pub rss_baseline_kib: u64,
    /// Highest resident memory sampled (once a second), KiB.
    pub rss_peak_kib: u64,
    /// `(peak − baseline) / calls`, KiB.
    pub rss_per_call_kib: f64,
}

impl ProcessWatch {
    /// Starts watching `pid`; `None` when its `/proc` entry cannot be read.
    pub fn start(pid: u32, ticks_per_second: u64) -> Option<Self> {
        let start_ticks = cpu_ticks(pid)?;
        let baseline_rss_kib = rss_kib(pid)?;
        Some(Self {
            pid,
            ticks_per_second: ticks_per_second.max(1),
            start_ticks,
            baseline_rss_kib,
            peak_rss_kib: AtomicU64::new(baseline_rss_kib),
        })
    }

    /// Samples resident memory (keeps the peak).
    pub fn sample(&self) {
        if let Some(rss) = rss_kib(self.pid) {
            self.peak_rss_kib.fetch_max(rss, Ordering::Relaxed);
        }
    }

    /// The process's usage since [`ProcessWatch::start`], `wall_seconds` after it, over
    /// `calls` calls lasting `call_seconds` in total. `None` when the process is gone.
    pub fn finish(
        &self,
        wall_seconds: f64,
        calls: u64,
        call_seconds: f64,
    ) -> Option<ProcessReport> {
        self.sample();
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.start_ticks);
        Some(usage(
            self.pid,
            ticks as f64 / self.ticks_per_second as f64,
            wall_seconds,
            self.baseline_rss_kib,
            self.peak_rss_kib.load(Ordering::Relaxed),
            calls,
            call_seconds,
        ))
    }
}

/// The figures of a [`ProcessReport`] from raw measurements.
pub fn usage(
    pid: u32,
    cpu_seconds: f64,
    wall_seconds: f64,
    rss_baseline_kib: u64,
    rss_peak_kib: u64,
    calls: u64,
    call_seconds: f64,
) -> ProcessReport {
    let per = |value: f64, by: f64| if by > 0.0 { value / by } else { 0.0 };
    ProcessReport {
        pid,
        cpu_seconds,
        cpu_ms_per_call_second: per(cpu_seconds * 1000.0, call_seconds),
        cpu_percent_of_one_core: per(cpu_seconds * 100.0, wall_seconds),
        rss_baseline_kib,
        rss_peak_kib,
        rss_per_call_kib: per(
            rss_peak_kib.saturating_sub(rss_baseline_kib) as f64,
            calls as f64,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_parse() {
        let stat = "4242 (odd) name (x)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    731 262 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(993));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
        let status = "Name:\tstateset-voice\nVmPeak:\t  900 kB\nVmRSS:\t   51236 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(51236));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(rss_kib(pid).is_some_and(|r| r > 0));
        let watch = ProcessWatch::start(pid, clock_ticks_per_second()).expect("watch");
        let report = watch.finish(1.0, 2, 10.0).expect("report");
        assert!(report.cpu_seconds >= 0.0);
        assert!(report.rss_peak_kib >= report.rss_baseline_kib);
        assert!(Machine::detect().cpus >= 1);
    }

    #[test]
    fn proc_stat_gives_busy_and_total_time() {
        let text = "cpu  630159 0 91855 880692 7417 0 5925 119 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let t = parse_proc_stat(text).expect("cpu line");
        assert_eq!(t.total, 630159 + 91855 + 880692 + 7417 + 5925 + 119);
        assert_eq!(t.busy, 630159 + 91855 + 5925 + 119);
        assert_eq!(t.steal, 119);
        assert_eq!(parse_proc_stat("intr 1 2\n"), None);
        assert!(cpu_times().is_some_and(|t| t.total > 0));
        let start = CpuTimes {
            busy: 1000,
            total: 2000,
            steal: 0,
        };
        let end = CpuTimes {
            busy: 1300,
            total: 2400,
            steal: 10,
        };
        let m = machine_cpu(start, end, 100, 2.5);
        assert_eq!(m.busy_percent, 75.0);
        assert_eq!(m.busy_seconds, 3.0);
        assert_eq!(m.other_seconds, 0.5);
        assert_eq!(m.steal_seconds, 0.1);
    }

    #[test]
    fn usage_divides_by_calls_and_call_seconds() {
        let r = usage(7, 3.0, 60.0, 10_000, 30_000, 100, 6000.0);
        assert_eq!(r.cpu_ms_per_call_second, 0.5);
        assert_eq!(r.cpu_percent_of_one_core, 5.0);
        assert_eq!(r.rss_per_call_kib, 200.0);
        let idle = usage(7, 0.0, 0.0, 10, 5, 0, 0.0);
        assert_eq!(idle.cpu_ms_per_call_second, 0.0);
        assert_eq!(idle.rss_per_call_kib, 0.0);
    }
}
