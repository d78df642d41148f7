//! Runs host commands (`docker`, `nsenter`, `iptables`) with a timeout, so no test hangs on a
//! stuck daemon. Owns process spawning; imports nothing else of this crate.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How often a running command is polled for its exit.
const POLL: Duration = Duration::from_millis(10);

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` and waits at most `timeout`; on timeout the process is killed and an
/// error names the command. Output is collected by two reader threads so a full pipe never
/// blocks the child.
pub fn run_raw(program: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline: at most timeout / POLL iterations.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} {} did not finish within {timeout:?}; killed", args.join(" "));
        }
        thread::sleep(POLL);
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output { success: status.success(), stdout, stderr })
}

/// Like [`run_raw`], but a non-zero exit is an error carrying stderr; returns trimmed stdout.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> Result<String> {
    let out = run_raw(program, args, timeout)?;
    if !out.success {
        bail!("{program} {} failed: {}", args.join(" "), out.stderr.trim());
    }
    Ok(out.stdout.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_timeout_is_killed_and_reported() {
        // Proves the timeout bounds a stuck command instead of waiting for it.
        let started = Instant::now();
        let err = run("sleep", &["5"], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(run("echo", &["hi"], Duration::from_secs(5)).unwrap(), "hi");
        assert!(run("false", &[], Duration::from_secs(5)).is_err());
    }
}
