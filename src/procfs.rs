//! Readers of Linux `/proc`: a process's resident memory, CPU time and open files. The server's
//! `/metrics` and the load harness (`zaiko-bench`) read these fields through this one
//! module. Where `/proc` is absent (not Linux) every reader returns `None`.

/// Which process to read: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Current,
    Pid(u32),
}

impl Process {
    fn file(self, name: &str) -> Option<String> {
        let path = match self {
            Process::Current => format!("/proc/self/{name}"),
            Process::Pid(pid) => format!("/proc/{pid}/{name}"),
        };
        std::fs::read_to_string(path).ok()
    }
}

/// A `kB` field of the process's `status` in bytes, e.g. `VmRSS:` or `RssFile:`.
pub fn status_bytes(process: Process, field: &str) -> Option<u64> {
    status_kib(&process.file("status")?, field).map(|kib| kib * 1024)
}

/// The process's resident set size in bytes.
pub fn rss_bytes(process: Process) -> Option<u64> {
    status_bytes(process, "VmRSS:")
}

/// User + system CPU seconds the process has used so far.
pub fn cpu_seconds(process: Process) -> Option<f64> {
    stat_cpu_seconds(&process.file("stat")?)
}

/// How many file descriptors the process has open.
pub fn open_fds(process: Process) -> Option<usize> {
    let dir = match process {
        Process::Current => "/proc/self/fd".to_string(),
        Process::Pid(pid) => format!("/proc/{pid}/fd"),
    };
    Some(std::fs::read_dir(dir).ok()?.count())
}

/// The process's soft limit on open files (`Max open files` of `limits`).
pub fn max_open_files(process: Process) -> Option<u64> {
    limits_open_files(&process.file("limits")?)
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
pub fn limits_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The machine's memory in KiB (`MemTotal:` of `/proc/meminfo`).
pub fn mem_total_kib() -> Option<u64> {
    status_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

/// A `kB` field of `/proc/<pid>/status` (or `/proc/meminfo`), e.g. `VmRSS:`.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds from `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`
/// (fields 14 and 15, in clock ticks of 1/100 s, the value of `USER_HZ` on every Linux
/// architecture).
pub fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU time the calling thread has used (`/proc/thread-self/schedstat`; zero where
/// there is none): unlike wall time, it leaves out the time other work held the CPU.
pub fn thread_cpu() -> std::time::Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat").ok().and_then(|s| s.split_whitespace().next()?.parse().ok());
    std::time::Duration::from_nanos(ns.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                40000                files\n";
        assert_eq!(limits_open_files(limits), Some(20000));
        assert_eq!(status_kib("Name:\tzaiko\nVmRSS:\t  12345 kB\n", "VmRSS:"), Some(12345));
        assert_eq!(status_kib("Name:\tzaiko\n", "VmRSS:"), None);
        let stat = "42 (zaiko (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(stat_cpu_seconds(stat), Some(3.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set_and_a_cpu_time() {
        let rss = rss_bytes(Process::Current).expect("VmRSS of this process");
        assert!(rss > 0);
        assert_eq!(rss_bytes(Process::Pid(std::process::id())).map(|b| b > 0), Some(true));
        assert!(cpu_seconds(Process::Current).is_some_and(|s| s >= 0.0));
        assert!(mem_total_kib().is_some_and(|k| k * 1024 >= rss));
    }
}
