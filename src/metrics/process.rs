//! The process' own numbers, read from Linux's `/proc` at scrape time: resident memory and
//! start time. Elsewhere (or when `/proc` cannot be read) the families are left out.

/// Clock ticks per second in `/proc/<pid>/stat` (the kernel's `USER_HZ`, 100 on every Linux
/// architecture muster is built for).
const USER_HZ: f64 = 100.0;

/// `VmRSS` of `/proc/self/status` (kB) in bytes.
pub fn resident_memory_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss_bytes(&status)
}

/// Unix seconds at which this process started: the boot time (`btime` of `/proc/stat`) plus
/// the process' start in ticks after boot (field 22 of `/proc/self/stat`).
pub fn start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    Some(parse_btime(&boot)? + parse_start_ticks(&stat)? / USER_HZ)
}

fn parse_vm_rss_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

fn parse_btime(stat: &str) -> Option<f64> {
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// Field 22 (`starttime`), counted after the command name, which may hold spaces and parens.
fn parse_start_ticks(stat: &str) -> Option<f64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: starttime is the 20th of those.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        // Proves the three parsers on real-shaped lines, including a command name with spaces
        // and a parenthesis, and that this process' own files read on Linux.
        assert_eq!(parse_vm_rss_bytes("Name:\tx\nVmRSS:\t   2048 kB\n"), Some(2_097_152.0));
        assert_eq!(parse_btime("cpu 1 2\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000.0));
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194304 100 0 0 0 5 3 0 0 20 0 4 0 12345 1000 50";
        assert_eq!(parse_start_ticks(stat), Some(12345.0));
        if cfg!(target_os = "linux") {
            assert!(resident_memory_bytes().is_some_and(|b| b > 0.0));
            let start = start_time_seconds().unwrap_or(0.0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            assert!(start > now - 3_600.0 && start <= now + 1.0, "start {start}, now {now}");
        }
    }
}
