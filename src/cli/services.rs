//! `muster services …`: the operator's client for a node's gRPC Registry API (tonic, h2c on
//! the node's API address). Also the pieces the other gRPC subcommands share ([`Conn`],
//! [`connect`], [`call`], [`status_error`], [`print_table`]). Every unary call has a deadline;
//! an error becomes `CODE: message` (the gRPC status code name) and exit code 1.

use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

use super::members::{columns, target};
use crate::api::grpc::pb::registry as pb;
use crate::api::grpc::pb::registry::registry_client::RegistryClient;

/// How long a unary call may take, end to end.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long connecting to the node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags every gRPC subcommand takes.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Conn {
    /// API address of a muster node (gRPC; an unspecified IP such as 0.0.0.0 means this host).
    #[arg(
        long,
        env = "MUSTER_ADDR",
        default_value = "127.0.0.1:9999",
        value_name = "HOST:PORT",
        global = true
    )]
    pub addr: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `muster services` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: ServicesCommand,
}

/// The `muster services` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ServicesCommand {
    /// List registered services (one page; by name then id).
    List(ListArgs),
    /// Show one service.
    Get {
        /// The service id.
        id: String,
        /// Read the node's copy as it is instead of a linearizable read.
        #[arg(long)]
        stale: bool,
    },
    /// Register a service.
    Register(RegisterArgs),
    /// Remove a service.
    Deregister {
        /// The service id.
        id: String,
    },
    /// Renew a service's lease.
    Heartbeat {
        /// The service id.
        id: String,
        /// Renew for this many seconds instead of the service's own ttl.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u32>,
    },
    /// Print one line per registry change until Ctrl-C.
    Watch {
        /// First revision to print events for; 0 = only changes from now on.
        #[arg(long, default_value_t = 0, value_name = "R")]
        from_revision: u64,
        /// Only events for services of this type.
        #[arg(long = "type", value_name = "T")]
        service_type: Option<String>,
    },
}

/// `muster services list` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ListArgs {
    /// Only services of this type.
    #[arg(long = "type", value_name = "T")]
    pub service_type: Option<String>,
    /// Only services carrying this tag (repeatable; all must match).
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Only services in this status: active, inactive, expired or unhealthy.
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Page size, 1–100 (the node's default: 50).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Matching services to pass over before the page starts.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub skip: u32,
    /// Read the node's copy as it is instead of a linearizable read.
    #[arg(long)]
    pub stale: bool,
}

/// `muster services register` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RegisterArgs {
    /// Human name.
    #[arg(long)]
    pub name: String,
    /// Service type (e.g. api, mqtt).
    #[arg(long = "type", value_name = "T")]
    pub service_type: String,
    /// Host clients connect to.
    #[arg(long)]
    pub host: String,
    /// Port clients connect to (the node checks the range).
    #[arg(long)]
    pub port: u32,
    /// The id to register under (default: a new UUID chosen by the node).
    #[arg(long)]
    pub id: Option<String>,
    /// A tag (repeatable).
    #[arg(long, value_name = "X")]
    pub tag: Vec<String>,
    /// Lease length in seconds (node default: 300).
    #[arg(long, value_name = "S")]
    pub ttl: Option<u32>,
    /// Protocol (node default: http).
    #[arg(long, value_name = "P")]
    pub protocol: Option<String>,
}

/// Runs a `muster services` subcommand.
pub async fn run(args: &ServicesArgs) -> anyhow::Result<()> {
    let conn = &args.conn;
    let mut client = RegistryClient::new(connect(&conn.addr).await?);
    match &args.command {
        ServicesCommand::List(l) => {
            let status = match &l.status {
                Some(s) => parse_status(s)?,
                None => pb::ServiceStatus::Unspecified,
            };
            let req = pb::ListRequest {
                r#type: l.service_type.clone(),
                tags: l.tag.clone(),
                protocol: None,
                status: status as i32,
                limit: l.limit,
                skip: l.skip,
                stale: l.stale,
            };
            let resp = call(client.list(request(req))).await?;
            if conn.json {
                let services: Vec<Value> = resp.services.iter().map(service_json).collect();
                return print_json(
                    &json!({"services": services, "total": resp.total, "revision": resp.revision}),
                );
            }
            print_services(&resp.services)?;
            let shown = resp.services.len() as u64;
            if resp.total > shown {
                eprintln!("({shown} of {} matching services shown; use --skip/--limit for more)", resp.total);
            }
            Ok(())
        }
        ServicesCommand::Get { id, stale } => {
            let req = pb::GetRequest { service_id: id.clone(), stale: *stale };
            let resp = call(client.get(request(req))).await?;
            one_service(conn.json, resp.service.as_ref(), Some(resp.revision))
        }
        ServicesCommand::Register(r) => {
            let req = pb::RegisterRequest {
                service_id: r.id.clone().unwrap_or_default(),
                name: r.name.clone(),
                r#type: r.service_type.clone(),
                host: r.host.clone(),
                port: r.port,
                protocol: r.protocol.clone(),
                tags: r.tag.clone(),
                ttl_seconds: r.ttl,
                ..Default::default()
            };
            let resp = call(client.register(request(req))).await?;
            one_service(conn.json, resp.service.as_ref(), Some(resp.revision))
        }
        ServicesCommand::Deregister { id } => {
            let req = pb::DeregisterRequest { service_id: id.clone() };
            let resp = call(client.deregister(request(req))).await?;
            one_service(conn.json, resp.service.as_ref(), Some(resp.revision))
        }
        ServicesCommand::Heartbeat { id, ttl } => {
            let req = pb::HeartbeatRequest { service_id: id.clone(), ttl_seconds: *ttl };
            let resp = call(client.heartbeat(request(req))).await?;
            one_service(conn.json, resp.service.as_ref(), None)
        }
        ServicesCommand::Watch { from_revision, service_type } => {
            let req = pb::WatchRequest { start_revision: *from_revision, r#type: service_type.clone() };
            watch(&mut client, req, conn.json).await
        }
    }
}

/// Follows a watch until Ctrl-C, the stream's end, or an error.
async fn watch(
    client: &mut RegistryClient<Channel>,
    req: pb::WatchRequest,
    json: bool,
) -> anyhow::Result<()> {
    // No deadline: a watch runs until the operator stops it.
    let mut stream = client.watch(req).await.map_err(status_error)?.into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let msg = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            msg = stream.message() => msg.map_err(status_error)?,
        };
        let Some(msg) = msg else { return Ok(()) };
        if let Some(oldest) = msg.compacted {
            return Err(anyhow!(
                "OUT_OF_RANGE: the start revision was compacted; the oldest available is {oldest} \
                 (list again, then watch from its revision + 1)"
            ));
        }
        let Some(event) = msg.event else { continue }; // progress notification
        let kind = pb::EventKind::try_from(event.kind).unwrap_or(pb::EventKind::Unspecified);
        let kind = kind.as_str_name().trim_start_matches("EVENT_KIND_").to_string();
        let line = if json {
            let service = event.service.as_ref().map(service_json).unwrap_or(Value::Null);
            json!({"revision": event.revision, "kind": kind, "service": service}).to_string()
        } else {
            let cells = event.service.as_ref().map(service_row).unwrap_or_default();
            format!("{}  {kind}  {}", event.revision, cells.join("  "))
        };
        if let Err(e) = writeln!(std::io::stdout(), "{}", line.trim_end()) {
            return if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e.into()) };
        }
    }
}

/// Prints one service (the answer of get/register/deregister/heartbeat).
fn one_service(json: bool, service: Option<&pb::Service>, revision: Option<u64>) -> anyhow::Result<()> {
    let service = service.ok_or_else(|| anyhow!("the node answered without a service"))?;
    if json {
        let mut v = json!({"service": service_json(service)});
        if let Some(r) = revision {
            v["revision"] = json!(r);
        }
        return print_json(&v);
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let mut rows = vec![
        vec!["ID".to_string(), service.service_id.clone()],
        vec!["NAME".into(), service.name.clone()],
        vec!["TYPE".into(), service.r#type.clone()],
        vec!["ADDRESS".into(), address(service)],
        vec!["PROTOCOL".into(), service.protocol.clone()],
        vec!["STATUS".into(), status_name(service.status)],
        vec!["TAGS".into(), service.tags.join(",")],
        vec!["METADATA".into(), pairs(&service.metadata)],
        vec!["TTL".into(), format!("{}s", service.ttl_seconds)],
        vec!["CREATED".into(), service.created_at.clone()],
        vec!["UPDATED".into(), service.updated_at.clone()],
        vec!["LAST HEARTBEAT".into(), service.last_heartbeat.clone()],
        vec!["EXPIRES".into(), service.expires_at.clone()],
        vec!["HEALTH CHECK".into(), opt(&service.health_check_url)],
        vec!["DESCRIPTION".into(), opt(&service.description)],
        vec!["VERSION".into(), opt(&service.version)],
    ];
    if let Some(r) = revision {
        rows.push(vec!["REVISION".into(), r.to_string()]);
    }
    print_table(&rows)
}

const SERVICE_HEADER: [&str; 7] = ["ID", "NAME", "TYPE", "ADDRESS", "STATUS", "TAGS", "EXPIRES"];

fn print_services(services: &[pb::Service]) -> anyhow::Result<()> {
    let mut rows = vec![SERVICE_HEADER.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    rows.extend(services.iter().map(service_row));
    print_table(&rows)
}

fn service_row(s: &pb::Service) -> Vec<String> {
    vec![
        s.service_id.clone(),
        s.name.clone(),
        s.r#type.clone(),
        address(s),
        status_name(s.status),
        if s.tags.is_empty() { "-".into() } else { s.tags.join(",") },
        s.expires_at.clone(),
    ]
}

/// `protocol://host:port` (IPv6 hosts in brackets).
fn address(s: &pb::Service) -> String {
    let host = if s.host.contains(':') { format!("[{}]", s.host) } else { s.host.clone() };
    if s.protocol.is_empty() {
        format!("{host}:{}", s.port)
    } else {
        format!("{}://{host}:{}", s.protocol, s.port)
    }
}

fn pairs(map: &std::collections::HashMap<String, String>) -> String {
    let mut kv: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    kv.sort();
    kv.join(",")
}

/// `ACTIVE`, `EXPIRED`, … (the enum name without its prefix).
fn status_name(status: i32) -> String {
    let s = pb::ServiceStatus::try_from(status).unwrap_or(pb::ServiceStatus::Unspecified);
    s.as_str_name().trim_start_matches("SERVICE_STATUS_").to_string()
}

/// `active`, `ACTIVE` or `SERVICE_STATUS_ACTIVE` (and the other statuses).
fn parse_status(text: &str) -> anyhow::Result<pb::ServiceStatus> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SERVICE_STATUS_") { upper } else { format!("SERVICE_STATUS_{upper}") };
    match pb::ServiceStatus::from_str_name(&name) {
        Some(s) if s != pb::ServiceStatus::Unspecified => Ok(s),
        _ => {
            Err(anyhow!("invalid value for --status: {text:?} (one of active, inactive, expired, unhealthy)"))
        }
    }
}

/// A service as JSON, with the proto's field names.
fn service_json(s: &pb::Service) -> Value {
    json!({
        "service_id": s.service_id,
        "name": s.name,
        "type": s.r#type,
        "host": s.host,
        "port": s.port,
        "protocol": s.protocol,
        "tags": s.tags,
        "metadata": s.metadata,
        "ttl_seconds": s.ttl_seconds,
        "status": status_name(s.status),
        "health_check_url": s.health_check_url,
        "health_check_interval_seconds": s.health_check_interval_seconds,
        "mdns_service_type": s.mdns_service_type,
        "mdns_txt_records": s.mdns_txt_records,
        "description": s.description,
        "version": s.version,
        "created_at_ms": s.created_at_ms,
        "updated_at_ms": s.updated_at_ms,
        "last_heartbeat_ms": s.last_heartbeat_ms,
        "expires_at_ms": s.expires_at_ms,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "last_heartbeat": s.last_heartbeat,
        "expires_at": s.expires_at,
    })
}

/// Opens an h2c channel to the node's API address.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let target = target(addr);
    let endpoint = Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| anyhow!("invalid --addr {addr:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint.connect().await.map_err(|e| {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let cause = if causes.is_empty() { e.to_string() } else { causes.join(": ") };
        anyhow!("UNAVAILABLE: cannot connect to muster node at {target}: {cause}")
    })
}

/// A request carrying the unary deadline (sent to the node as `grpc-timeout`).
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(DEADLINE);
    req
}

/// Awaits a unary call within [`DEADLINE`]; the message, or the status as an error.
pub async fn call<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status_error(status)),
        Err(_) => Err(anyhow!("DEADLINE_EXCEEDED: no answer within {}s", DEADLINE.as_secs())),
    }
}

/// `CODE: message`, with the canonical gRPC code name.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let message = if status.message().is_empty() { status.code().description() } else { status.message() };
    anyhow!("{}: {message}", crate::api::grpc::errors::code_name(status.code()))
}

/// Pretty JSON on stdout.
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    write_stdout(&format!("{text}\n"))
}

/// Rows as columns separated by two spaces, every column but the last padded to its widest
/// cell, like `muster members`.
pub fn print_table(rows: &[Vec<String>]) -> anyhow::Result<()> {
    write_stdout(&columns(rows))
}

/// Writes text on stdout; a closed pipe is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `| head` closes the pipe early; that is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_columns_are_aligned_and_trimmed() {
        // Proves cells pad to the widest in their column and lines carry no trailing spaces.
        let rows = vec![
            vec!["ID".to_string(), "NAME".into(), "TAGS".into()],
            vec!["web-1".into(), "w".into(), String::new()],
        ];
        assert_eq!(columns(&rows), "ID     NAME  TAGS\nweb-1  w\n");
    }

    #[test]
    fn cli_status_parses_and_errors_name_the_code() {
        // Proves --status takes the short and full enum names, and a status error prints its
        // canonical code name and message.
        assert_eq!(parse_status("active").unwrap(), pb::ServiceStatus::Active);
        assert_eq!(parse_status("SERVICE_STATUS_EXPIRED").unwrap(), pb::ServiceStatus::Expired);
        assert!(parse_status("bogus").is_err());
        assert!(parse_status("unspecified").is_err());
        let e = status_error(tonic::Status::not_found("not found: nope"));
        assert_eq!(e.to_string(), "NOT_FOUND: not found: nope");
        assert_eq!(target("0.0.0.0:1234"), "127.0.0.1:1234");
        assert_eq!(target(":77"), "127.0.0.1:77");
        assert_eq!(target("node-a"), "node-a:9999");
    }
}
