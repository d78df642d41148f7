//! `muster members`: asks a node's `GET /v1/members` and prints the members as JSON or as a
//! table aligned like `serf members` (`NAME  ADDR:PORT  STATUS  TAGS`).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::http;
use super::CliError;
use crate::api::MemberFilter;
use crate::config::defaults;
use crate::membership::MemberInfo;

/// `muster members` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct MembersArgs {
    /// HTTP address of a muster node (an unspecified IP such as 0.0.0.0 means this host).
    #[arg(long, env = "MUSTER_HTTP_ADDR", default_value = "127.0.0.1:9999", value_name = "HOST:PORT")]
    pub http_addr: String,
    /// Print the members as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Only members with this status: none, alive, leaving, left or failed.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only members with this exact tag (repeatable; all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Add protocol versions and incarnation to the table.
    #[arg(long)]
    pub detailed: bool,
    #[command(flatten)]
    pub secure: super::secure::Secure,
}

/// How the members are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Detailed,
    Json,
}

impl MembersArgs {
    fn output(&self) -> Output {
        match (self.json, self.detailed) {
            (true, _) => Output::Json,
            (false, true) => Output::Detailed,
            (false, false) => Output::Table,
        }
    }

    fn filter(&self) -> Result<MemberFilter, CliError> {
        let mut filter = MemberFilter::default();
        if let Some(status) = &self.status {
            filter.add_status(status)?;
        }
        for tag in &self.tag {
            filter.add_tag(tag)?;
        }
        Ok(filter)
    }
}

/// Fetches the members and prints them on stdout.
pub async fn run(args: &MembersArgs) -> Result<(), CliError> {
    let members = fetch(args).await?;
    let text = render(&members, args.output());
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        // `muster members | head` closes the pipe early; that is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Stdout { cause: e }),
        _ => Ok(()),
    }
}

/// Validates the filters, then GETs `/v1/members` with them.
pub async fn fetch(args: &MembersArgs) -> Result<Vec<MemberInfo>, CliError> {
    let filter = args.filter()?;
    let addr = target(&args.http_addr);
    let query = filter.to_query();
    let path = if query.is_empty() { "/v1/members".to_string() } else { format!("/v1/members?{query}") };
    let response =
        http::get_with(&addr, &path, Duration::from_millis(http::DEADLINE_MS), &args.secure).await?;
    if response.status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&response.body).trim().to_string());
        return Err(CliError::Refused { addr, status: response.status, message });
    }
    let mut members: Vec<MemberInfo> =
        serde_json::from_slice(&response.body).map_err(|cause| CliError::BadAnswer { addr, cause })?;
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

/// The address to connect to: an unspecified IP becomes loopback (so `MUSTER_HTTP_ADDR` as the
/// agent's listen address works), a bare `:port` means this host, a missing port becomes 9999.
/// Shared by every CLI command that talks to a node's API.
pub(crate) fn target(http_addr: &str) -> String {
    let s = http_addr.trim().trim_start_matches("http://");
    let loopback = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return SocketAddr::new(loopback(addr.ip()), addr.port()).to_string();
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return SocketAddr::new(loopback(ip), defaults::HTTP_PORT).to_string();
    }
    if let Some(port) = s.strip_prefix(':') {
        return format!("127.0.0.1:{port}");
    }
    match s.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => s.to_string(),
        _ => format!("{s}:{}", defaults::HTTP_PORT),
    }
}

/// The members as text: a JSON array, or aligned columns separated by two spaces.
pub fn render(members: &[MemberInfo], output: Output) -> String {
    if output == Output::Json {
        // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
        let json = serde_json::to_string_pretty(members).unwrap_or_else(|_| "[]".to_string());
        return format!("{json}\n");
    }
    let rows: Vec<Vec<String>> = members.iter().map(|m| row(m, output)).collect();
    columns(&rows)
}

fn row(m: &MemberInfo, output: Output) -> Vec<String> {
    let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut row = vec![
        m.name.clone(),
        SocketAddr::new(m.addr, m.port).to_string(),
        m.status.as_str().to_string(),
        tags.join(","),
    ];
    if output == Output::Detailed {
        let [ml_min, ml_max, ml_cur, serf_min, serf_max, serf_cur] = m.protocol;
        row.push(format!("serf={serf_cur}[{serf_min}-{serf_max}]"));
        row.push(format!("memberlist={ml_cur}[{ml_min}-{ml_max}]"));
        row.push(format!("incarnation={}", m.incarnation));
    }
    row
}

/// Pads every column but the last to its widest cell (by characters), like Go's columnize.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberStatus, Mode};

    fn member(name: &str, addr: &str, status: MemberStatus, tags: &[(&str, &str)]) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            addr: addr.parse().unwrap(),
            port: 7946,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            status,
            protocol: [1, 5, 2, 2, 5, 5],
            incarnation: 3,
            last_seen_ms_ago: 10,
            mode: Mode::Unknown,
        }
    }

    #[test]
    fn table_is_aligned_like_serf_members() {
        // Proves the column layout, tag formatting, IPv6 brackets and trimmed line ends.
        let ms = [
            member("a", "10.0.0.1", MemberStatus::Alive, &[("role", "web"), ("dc", "x")]),
            member("longer-name", "::1", MemberStatus::Failed, &[]),
        ];
        let out = render(&ms, Output::Table);
        assert_eq!(
            out,
            "a            10.0.0.1:7946  alive   dc=x,role=web\n\
             longer-name  [::1]:7946     failed\n"
        );
        let detailed = render(&ms[..1], Output::Detailed);
        assert_eq!(
            detailed,
            "a  10.0.0.1:7946  alive  dc=x,role=web  serf=5[2-5]  memberlist=2[1-5]  incarnation=3\n"
        );
    }

    #[test]
    fn json_output_is_the_member_array() {
        // Proves --json prints exactly what the API serves, parseable back into members.
        let ms = vec![member("a", "10.0.0.1", MemberStatus::Alive, &[])];
        let back: Vec<MemberInfo> = serde_json::from_str(&render(&ms, Output::Json)).unwrap();
        assert_eq!(back, ms);
        assert_eq!(render(&[], Output::Json), "[]\n");
    }

    #[test]
    fn targets_default_the_port_and_map_any_address_to_loopback() {
        // Proves --http-addr forms: full, bare IP, unspecified, :PORT and host names.
        assert_eq!(target("127.0.0.1:9999"), "127.0.0.1:9999");
        assert_eq!(target("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(target("[::]:8080"), "[::1]:8080");
        assert_eq!(target("10.1.2.3"), "10.1.2.3:9999");
        assert_eq!(target(":7000"), "127.0.0.1:7000");
        assert_eq!(target("node1"), "node1:9999");
        assert_eq!(target("node1:80"), "node1:80");
    }

    #[tokio::test]
    async fn bad_filters_fail_before_any_request() {
        // Proves flag validation names the flag, without needing a node to answer.
        let args = |status: Option<&str>, tag: &[&str]| MembersArgs {
            http_addr: "127.0.0.1:1".into(),
            json: false,
            status: status.map(str::to_string),
            tag: tag.iter().map(|t| t.to_string()).collect(),
            detailed: false,
            secure: Default::default(),
        };
        let err = fetch(&args(Some("dead"), &[])).await.unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid value for --status: 'dead' is not one of none, alive, leaving, left, failed"
        );
        let err = fetch(&args(None, &["novalue"])).await.unwrap_err().to_string();
        assert!(err.starts_with("invalid value for --tag:"), "{err}");
    }
}
