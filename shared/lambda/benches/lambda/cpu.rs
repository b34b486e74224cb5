//! CPU time from Linux's /proc: what given processes and the whole machine have used.

use std::time::{Duration, Instant};

/// CPU time used so far by each process given (none for one that is not there to read) and
/// by the whole machine, and when it was read.
pub(super) struct Cpu {
    at: Instant,
    processes: [Option<Duration>; 3],
    machine: Duration,
}

/// The CPU time used between two readings, and the wall time between them.
pub(super) struct CpuUsed {
    pub(super) processes: [Option<Duration>; 3],
    machine: Duration,
    wall: Duration,
}

/// Linux's unit of CPU time in /proc (USER_HZ = 100): plenty over a run of seconds.
const TICK_MS: u64 = 10;

impl Cpu {
    pub(super) fn read(pids: [Option<u32>; 3]) -> Cpu {
        Cpu {
            at: Instant::now(),
            processes: pids.map(|pid| pid.and_then(Cpu::process)),
            machine: Cpu::machine().0,
        }
    }

    pub(super) fn since(&self, before: &Cpu) -> CpuUsed {
        let mut processes = self.processes;
        for (now, then) in processes.iter_mut().zip(before.processes) {
            *now = now.zip(then).map(|(now, then)| now.saturating_sub(then));
        }
        CpuUsed {
            processes,
            machine: self.machine.saturating_sub(before.machine),
            wall: self.at - before.at,
        }
    }

    /// What process `pid` has used, all its threads, user and system.
    fn process(pid: u32) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces:
        // utime and stime, fields 14 and 15 of the line, are the 12th and 13th of these.
        let mut fields = stat[stat.rfind(')')? + 2..].split(' ').skip(11);
        let mut ticks = || fields.next()?.parse::<u64>().ok();
        Some(Duration::from_millis((ticks()? + ticks()?) * TICK_MS))
    }

    /// What the whole machine has spent busy since it booted (all but idle, I/O wait and
    /// steal: time a hypervisor gave elsewhere), and how many CPUs it has.
    pub(super) fn machine() -> (Duration, usize) {
        let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .expect("the cpu line")
            .split_whitespace()
            .map(|field| field.parse().expect("ticks"))
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is within user).
        let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
        let cpus = stat
            .lines()
            .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
            .count();
        (Duration::from_millis(busy * TICK_MS), cpus)
    }
}

impl CpuUsed {
    /// The CPUs kept busy on average: by the processes read, and by the whole machine.
    pub(super) fn busy(&self) -> (f64, f64) {
        let wall = self.wall.as_secs_f64();
        let processes: Duration = self.processes.iter().flatten().sum();
        (
            processes.as_secs_f64() / wall,
            self.machine.as_secs_f64() / wall,
        )
    }
}
