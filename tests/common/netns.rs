//! A network of our own for mDNS tests: two network namespaces joined by a veth pair on
//! 10.251.<net>.0/24, multicast routed, removed on drop. Needs root and iproute2.

use std::process::Command;

/// Namespaces `a` (10.251.<net>.1) and `b` (10.251.<net>.2).
pub struct VethPair {
    pub a: String,
    pub b: String,
    hosts_dir: Option<String>,
}

/// Runs `ip ARGS`; panics with ip's stderr when it fails.
pub fn ip(args: &[&str]) {
    let out =
        Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sets `/proc/sys/<key>` to `value` inside namespace `ns`; panics when it fails.
fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{key}");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", "printf %s \"$1\" > \"$2\"", "sh", value, &path])
        .output()
        .unwrap_or_else(|e| panic!("cannot set {path}: {e}"));
    assert!(out.status.success(), "setting {path} in {ns} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl VethPair {
    /// Names start with `prefix` and this process' id, so parallel runs do not meet. `hosts_a`:
    /// the hosts file `ip netns exec` shows inside `a` (kept in `/etc/netns/<a>/hosts`).
    pub fn new(prefix: &str, net: u8, hosts_a: Option<&str>) -> VethPair {
        let p = format!("{prefix}{}", std::process::id() % 100_000);
        let (a, b) = (format!("{p}a"), format!("{p}b"));
        let hosts_dir = hosts_a.map(|hosts| {
            let dir = format!("/etc/netns/{a}");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(format!("{dir}/hosts"), hosts).unwrap();
            dir
        });
        let pair = VethPair { a: a.clone(), b: b.clone(), hosts_dir };
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        ip(&["link", "add", &format!("{p}x"), "type", "veth", "peer", "name", &format!("{p}y")]);
        ip(&["link", "set", &format!("{p}x"), "netns", &a]);
        ip(&["link", "set", &format!("{p}y"), "netns", &b]);
        for (ns, dev, host) in [(&a, format!("{p}x"), 1), (&b, format!("{p}y"), 2)] {
            // No duplicate address detection: the IPv6 link-local address is usable as soon as
            // the link is up. While it is tentative, sending to ff02::fb fails, and the Go mDNS
            // client gives up its whole query (IPv4 included) on that error.
            sysctl(ns, &format!("net/ipv6/conf/{dev}/accept_dad"), "0");
            ip(&["-n", ns, "addr", "add", &format!("10.251.{net}.{host}/24"), "dev", &dev]);
            ip(&["-n", ns, "link", "set", &dev, "up", "multicast", "on"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", &dev]);
        }
        pair
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if let Some(dir) = &self.hosts_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
