//! What the kernel knows about a worker: resident memory and CPU time, read
//! from `/proc` so the figures are the ones an operator would see, not what
//! the process reports about itself.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

/// `VmRSS` of a process, in bytes.
pub fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    kib_field(&status, "VmRSS:").with_context(|| {
        // A process that has exited (a zombie until reaped) has no memory.
        let state = status
            .lines()
            .find(|line| line.starts_with("State:"))
            .unwrap_or("State: unknown");
        format!("no readable VmRSS line in {path} ({state})")
    })
}

/// `Pss` of a process (its private pages plus its share of pages it shares
/// with others, such as the binary's text), in bytes: unlike RSS, the PSS
/// of the workers adds up to what the fleet really occupies.
pub fn proportional_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let rollup = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    kib_field(&rollup, "Pss:").with_context(|| format!("no readable Pss line in {path}"))
}

/// A `Name:   1234 kB` line of a /proc file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    cpu_time_from_stat(&stat).with_context(|| format!("unreadable {path}: {stat:?}"))
}

/// What each thread of a process has done so far, by thread id: its run
/// time (`schedstat`, in nanoseconds, exact where `stat`'s CPU time is
/// sampled at the clock tick and misses short wake-ups) and how many times
/// it went to sleep of its own accord (`voluntary_ctxt_switches`: each is
/// one wake-up after it).
pub fn threads(pid: u32) -> anyhow::Result<BTreeMap<u32, ThreadTimes>> {
    let tasks = format!("/proc/{pid}/task");
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let task = task.with_context(|| format!("reading {tasks}"))?.path();
        let Some(id) = task.file_name().and_then(|id| id.to_str()?.parse().ok()) else {
            continue;
        };
        // A thread that ended meanwhile is left out.
        let (Ok(schedstat), Ok(status)) = (
            std::fs::read_to_string(task.join("schedstat")),
            std::fs::read_to_string(task.join("status")),
        ) else {
            continue;
        };
        let run_ns: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .with_context(|| format!("unreadable {}/schedstat: {schedstat:?}", task.display()))?;
        let sleeps = status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|count| count.trim().parse().ok())
            .with_context(|| format!("no voluntary_ctxt_switches in {}/status", task.display()))?;
        threads.insert(
            id,
            ThreadTimes {
                run: Duration::from_nanos(run_ns),
                sleeps,
            },
        );
    }
    Ok(threads)
}

/// See [`threads`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadTimes {
    pub run: Duration,
    pub sleeps: u64,
}

/// What the threads alive at `after` did since `before` (a thread that
/// started in between counts from its start; one that ended is lost).
pub fn threads_since(
    before: &BTreeMap<u32, ThreadTimes>,
    after: &BTreeMap<u32, ThreadTimes>,
) -> ThreadTimes {
    after
        .iter()
        .fold(ThreadTimes::default(), |total, (id, now)| {
            let then = before.get(id).copied().unwrap_or_default();
            ThreadTimes {
                run: total.run + now.run.saturating_sub(then.run),
                sleeps: total.sleeps + now.sleeps.saturating_sub(then.sleeps),
            }
        })
}

/// What `/proc/stat`'s first line (all cores) says so far: the CPU time
/// all processes used (user, nice and system, which is what the processes'
/// own utime and stime add up to; interrupt time is left out), to tell how
/// much went to processes other than the benchmark's; and the time the
/// hypervisor gave the machine's virtual cores to someone else (steal),
/// which slows everything measured without showing as anyone's CPU.
pub fn machine_cpu_times() -> anyhow::Result<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unreadable /proc/stat line {line:?}"))?;
    let field = |index: usize| fields.get(index).copied().unwrap_or(0);
    let ticks = |count: u64| Duration::from_secs_f64(count as f64 / ticks_per_second());
    // user nice system idle iowait irq softirq steal …
    Ok(MachineCpu {
        processes: ticks(field(0) + field(1) + field(2)),
        stolen: ticks(field(7)),
    })
}

/// See [`machine_cpu_times`].
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    pub processes: Duration,
    pub stolen: Duration,
}

/// CPU time of the benchmark's own process (load generator and fake GitHub).
pub fn own_cpu_time() -> anyhow::Result<Duration> {
    cpu_time(std::process::id())
}

/// Fields 14 and 15 of `/proc/PID/stat` (utime, stime), in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn cpu_time_from_stat(stat: &str) -> anyhow::Result<Duration> {
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .context("no command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3, so field N is fields[N - 3].
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("too few fields");
    };
    let ticks = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second()))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The machine the figures come from, in one line: its CPU model as
/// `/proc/cpuinfo` names it, how many CPUs the benchmark may use and the
/// kernel. The same build can measure twice as fast on another CPU, so a
/// table is compared only with tables of the same machine.
pub fn machine_line() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| cpu_model(&info))
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| "unknown".to_owned(),
        |release| release.trim().to_owned(),
    );
    format!(
        "Machine: CPU `{model}`, {} CPUs, kernel {kernel}",
        usable_cpus()
    )
}

/// How many CPUs this process may run on (at least 1).
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The first `model name` of a `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}
