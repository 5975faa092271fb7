//! CPU time and memory of the processes under test, read from `/proc`: every figure
//! in the report comes with the CPU each process spent while it was measured.

use std::collections::HashMap;
use std::fs;

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// A named process whose CPU time (its own and its descendants', so a PostgreSQL
/// cluster counts its backends) is sampled.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// Parses `name=pid,name=pid`.
pub fn parse_watched(list: &str) -> anyhow::Result<Vec<Watched>> {
    list.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, pid) = part.split_once('=').ok_or_else(|| anyhow::anyhow!("expected name=pid, got {part}"))?;
            Ok(Watched { name: name.to_string(), pid: pid.parse()? })
        })
        .collect()
}

/// CPU seconds (user + system) of `pid` and every process below it.
pub fn cpu_seconds_of_tree(pid: u32) -> f64 {
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(stat) = read_stat(child) {
                parents.entry(stat.ppid).or_default().push(child);
            }
        }
    }
    let mut total = 0.0;
    let mut stack = vec![pid];
    while let Some(next) = stack.pop() {
        if let Some(stat) = read_stat(next) {
            total += stat.cpu_ticks as f64 / TICKS_PER_SEC;
        }
        if let Some(children) = parents.get(&next) {
            stack.extend(children);
        }
    }
    total
}

/// This process's own CPU seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_of_tree(std::process::id())
}

/// Resident memory of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Stat {
    ppid: u32,
    cpu_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // utime, stime, and cutime, cstime: the CPU of children that exited and were
    // waited for (PostgreSQL's backends that closed), each counted once this way.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat { ppid: fields.get(1)?.parse().ok()?, cpu_ticks: tick(11)? + tick(12)? + tick(13)? + tick(14)? })
}

/// CPU use per watched process over one measurement.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CpuUse {
    pub name: String,
    pub cpu_seconds: f64,
    /// Cores busy on average: CPU seconds over wall seconds.
    pub cores: f64,
}

/// A started measurement: CPU counters now, to subtract at the end.
pub struct CpuMeter {
    watched: Vec<Watched>,
    before: Vec<f64>,
    own_before: f64,
    started: std::time::Instant,
}

impl CpuMeter {
    pub fn start(watched: &[Watched]) -> Self {
        Self {
            watched: watched.to_vec(),
            before: watched.iter().map(|w| cpu_seconds_of_tree(w.pid)).collect(),
            own_before: own_cpu_seconds(),
            started: std::time::Instant::now(),
        }
    }

    /// CPU per watched process and the generator's own ("bench"), since `start`.
    pub fn stop(&self) -> Vec<CpuUse> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut uses: Vec<CpuUse> = self
            .watched
            .iter()
            .zip(&self.before)
            .map(|(w, before)| {
                let cpu_seconds = (cpu_seconds_of_tree(w.pid) - before).max(0.0);
                CpuUse { name: w.name.clone(), cpu_seconds, cores: cpu_seconds / wall }
            })
            .collect();
        let own = (own_cpu_seconds() - self.own_before).max(0.0);
        uses.push(CpuUse { name: "bench".into(), cpu_seconds: own, cores: own / wall });
        uses
    }
}

/// The CPU seconds of the process called `name` in `uses` (0 when absent).
pub fn cpu_of(uses: &[CpuUse], name: &str) -> f64 {
    uses.iter().find(|u| u.name == name).map_or(0.0, |u| u.cpu_seconds)
}
