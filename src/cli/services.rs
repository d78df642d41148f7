//! `muster services …`: the operator's client for a node's gRPC Registry API (tonic, h2c on
//! the node's API address): list, get, register, update, deregister, heartbeat, watch,
//! discover, types, tags, expired, cleanup. Also the pieces the other gRPC subcommands share
//! ([`Conn`], [`connect`], [`call`], [`status_error`], [`print_table`]). Every unary call has a
//! deadline; an error becomes `CODE: message` (the gRPC status code name) and exit code 1.

use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};
use tonic::transport::Endpoint;

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
    #[command(flatten)]
    pub secure: super::secure::Secure,
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
    Register(Box<RegisterArgs>),
    /// Change some fields of a service; only the flags given are sent.
    Update(Box<UpdateArgs>),
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
    /// Active services of a type carrying every given tag: what a client should connect to.
    Discover {
        /// Only services of this type.
        #[arg(long = "type", value_name = "T")]
        service_type: Option<String>,
        /// Only services carrying this tag (repeatable; all must match).
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Read the node's copy as it is instead of a linearizable read.
        #[arg(long)]
        stale: bool,
    },
    /// Service types with how many (non-expired) services have each.
    Types {
        /// Read the node's copy as it is instead of a linearizable read.
        #[arg(long)]
        stale: bool,
    },
    /// Tags with how many (non-expired) services carry each.
    Tags {
        /// Read the node's copy as it is instead of a linearizable read.
        #[arg(long)]
        stale: bool,
    },
    /// Services whose lease lapsed and that no cleanup removed yet.
    Expired {
        /// Read the node's copy as it is instead of a linearizable read.
        #[arg(long)]
        stale: bool,
    },
    /// Remove the expired services.
    Cleanup,
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
    /// A metadata entry (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = key_value)]
    pub meta: Vec<(String, String)>,
    #[command(flatten)]
    pub detail: DetailArgs,
}

/// The optional descriptive and health-check fields `register` and `update` both take.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DetailArgs {
    /// Free text (for update: an empty value clears it).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The service's own version (for update: an empty value clears it).
    #[arg(long = "service-version", value_name = "V")]
    pub service_version: Option<String>,
    /// What to check for health: an http(s) URL (2xx passes) or tcp://HOST:PORT (for update: an
    /// empty value clears it).
    #[arg(long, value_name = "URL")]
    pub health_check_url: Option<String>,
    /// Seconds between health checks (default: 60).
    #[arg(long, value_name = "S")]
    pub health_check_interval: Option<u32>,
    /// Seconds a check may take before it fails (default: 5).
    #[arg(long, value_name = "S")]
    pub health_check_timeout: Option<u32>,
    /// Failed checks in a row before the service turns unhealthy (default: 3).
    #[arg(long, value_name = "N")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks in a row before an unhealthy service turns active (default: 2).
    #[arg(long, value_name = "N")]
    pub healthy_threshold: Option<u32>,
}

/// `muster services update` flags: each one given replaces that field; the rest are kept.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct UpdateArgs {
    /// The service id.
    pub id: String,
    /// New human name.
    #[arg(long)]
    pub name: Option<String>,
    /// New service type.
    #[arg(long = "type", value_name = "T")]
    pub service_type: Option<String>,
    /// New host.
    #[arg(long)]
    pub host: Option<String>,
    /// New port.
    #[arg(long)]
    pub port: Option<u32>,
    /// New protocol.
    #[arg(long, value_name = "P")]
    pub protocol: Option<String>,
    /// A tag (repeatable; the tags given replace all the service's tags).
    #[arg(long, value_name = "X", conflicts_with = "clear_tags")]
    pub tag: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub clear_tags: bool,
    /// A metadata entry (repeatable; the entries given replace all the service's metadata).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = key_value, conflicts_with = "clear_meta")]
    pub meta: Vec<(String, String)>,
    /// Remove every metadata entry.
    #[arg(long)]
    pub clear_meta: bool,
    /// New lease length in seconds (applies from the next renewal).
    #[arg(long, value_name = "S")]
    pub ttl: Option<u32>,
    /// active or inactive.
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    #[command(flatten)]
    pub detail: DetailArgs,
}

impl UpdateArgs {
    /// The request: only the fields whose flags were given.
    fn request(&self) -> anyhow::Result<pb::UpdateRequest> {
        let tags =
            (self.clear_tags || !self.tag.is_empty()).then(|| pb::StringList { values: self.tag.clone() });
        let metadata = (self.clear_meta || !self.meta.is_empty())
            .then(|| pb::StringMap { entries: self.meta.iter().cloned().collect() });
        let status = self.status.as_deref().map(parse_status).transpose()?.map(|s| s as i32);
        Ok(pb::UpdateRequest {
            service_id: self.id.clone(),
            name: self.name.clone(),
            r#type: self.service_type.clone(),
            host: self.host.clone(),
            port: self.port,
            protocol: self.protocol.clone(),
            tags,
            metadata,
            ttl_seconds: self.ttl,
            status,
            health_check_url: self.detail.health_check_url.clone(),
            health_check_interval_seconds: self.detail.health_check_interval,
            health_check_timeout_seconds: self.detail.health_check_timeout,
            health_check_unhealthy_threshold: self.detail.unhealthy_threshold,
            health_check_healthy_threshold: self.detail.healthy_threshold,
            mdns_service_type: None,
            mdns_txt_records: None,
            description: self.detail.description.clone(),
            version: self.detail.service_version.clone(),
        })
    }
}

/// `KEY=VALUE` (the value may contain `=`; the key must not be empty).
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Runs a `muster services` subcommand.
pub async fn run(args: &ServicesArgs) -> anyhow::Result<()> {
    let conn = &args.conn;
    let mut client = RegistryClient::new(connect(&conn.addr, &conn.secure).await?);
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
                metadata: r.meta.iter().cloned().collect(),
                ttl_seconds: r.ttl,
                health_check_url: r.detail.health_check_url.clone(),
                health_check_interval_seconds: r.detail.health_check_interval,
                health_check_timeout_seconds: r.detail.health_check_timeout,
                health_check_unhealthy_threshold: r.detail.unhealthy_threshold,
                health_check_healthy_threshold: r.detail.healthy_threshold,
                description: r.detail.description.clone(),
                version: r.detail.service_version.clone(),
                ..Default::default()
            };
            let resp = call(client.register(request(req))).await?;
            one_service(conn.json, resp.service.as_ref(), Some(resp.revision))
        }
        ServicesCommand::Update(u) => {
            let resp = call(client.update(request(u.request()?))).await?;
            if !resp.changed {
                eprintln!("(nothing changed: the service had these values already)");
            }
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
        ServicesCommand::Discover { service_type, tag, stale } => {
            let req = pb::DiscoverRequest { r#type: service_type.clone(), tags: tag.clone(), stale: *stale };
            let resp = call(client.discover(request(req))).await?;
            services_answer(conn.json, &resp.services, resp.revision)
        }
        ServicesCommand::Types { stale } => {
            let resp = call(client.types(request(pb::TypesRequest { stale: *stale }))).await?;
            counts(conn.json, "TYPE", "types", &resp.counts, resp.revision)
        }
        ServicesCommand::Tags { stale } => {
            let resp = call(client.tags(request(pb::TagsRequest { stale: *stale }))).await?;
            counts(conn.json, "TAG", "tags", &resp.counts, resp.revision)
        }
        ServicesCommand::Expired { stale } => {
            let resp = call(client.expired(request(pb::ExpiredRequest { stale: *stale }))).await?;
            services_answer(conn.json, &resp.services, resp.revision)
        }
        ServicesCommand::Cleanup => {
            let resp = call(client.cleanup(request(pb::CleanupRequest {}))).await?;
            if conn.json {
                return print_json(&json!({"removed_ids": resp.removed_ids, "revision": resp.revision}));
            }
            let n = resp.removed_ids.len();
            let mut text = format!("removed {n} expired service{}\n", if n == 1 { "" } else { "s" });
            text.extend(resp.removed_ids.iter().map(|id| format!("{id}\n")));
            write_stdout(&text)
        }
    }
}

/// A list of services (discover, expired): a table, or JSON with the revision the read saw.
fn services_answer(json: bool, services: &[pb::Service], revision: u64) -> anyhow::Result<()> {
    if json {
        let services: Vec<Value> = services.iter().map(service_json).collect();
        return print_json(&json!({"services": services, "total": services.len(), "revision": revision}));
    }
    print_services(services)
}

/// Names with counts (types, tags), by name: a two-column table, or JSON.
fn counts(
    json: bool,
    header: &str,
    key: &str,
    counts: &std::collections::HashMap<String, u64>,
    revision: u64,
) -> anyhow::Result<()> {
    let sorted: std::collections::BTreeMap<&String, &u64> = counts.iter().collect();
    if json {
        return print_json(&json!({ key: sorted, "revision": revision }));
    }
    let mut rows = vec![vec![header.to_string(), "SERVICES".to_string()]];
    rows.extend(sorted.iter().map(|(name, n)| vec![name.to_string(), n.to_string()]));
    print_table(&rows)
}

/// Follows a watch until Ctrl-C, the stream's end, or an error.
async fn watch(
    client: &mut RegistryClient<super::secure::Chan>,
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
        vec!["HEALTH CHECK".into(), health_check(service)],
        vec!["LAST CHECK".into(), last_check(service.last_health_check.as_ref())],
        vec!["DESCRIPTION".into(), opt(&service.description)],
        vec!["VERSION".into(), opt(&service.version)],
    ];
    if let Some(r) = revision {
        rows.push(vec!["REVISION".into(), r.to_string()]);
    }
    print_table(&rows)
}

/// `http://h/health every 10s (timeout 5s; unhealthy after 3, active after 2)`, or empty.
fn health_check(s: &pb::Service) -> String {
    match &s.health_check_url {
        None => String::new(),
        Some(url) => format!(
            "{url} every {}s (timeout {}s; unhealthy after {}, active after {})",
            s.health_check_interval_seconds,
            s.health_check_timeout_seconds,
            s.health_check_unhealthy_threshold,
            s.health_check_healthy_threshold
        ),
    }
}

/// `2026-12-01T04:10:00.000Z passed in 3 ms (2 in a row)` or `... failed in 5 ms (3 in a row): why`.
fn last_check(c: Option<&pb::HealthCheck>) -> String {
    let Some(c) = c else { return String::new() };
    if c.ok {
        format!("{} passed in {} ms ({} in a row)", c.at, c.latency_ms, c.consecutive_successes)
    } else {
        let why = c.error.as_deref().unwrap_or("");
        format!("{} failed in {} ms ({} in a row): {why}", c.at, c.latency_ms, c.consecutive_failures)
    }
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
        "health_check_timeout_seconds": s.health_check_timeout_seconds,
        "health_check_unhealthy_threshold": s.health_check_unhealthy_threshold,
        "health_check_healthy_threshold": s.health_check_healthy_threshold,
        "last_health_check": s.last_health_check.as_ref().map(|c| json!({
            "at_ms": c.at_ms,
            "at": c.at,
            "ok": c.ok,
            "latency_ms": c.latency_ms,
            "error": c.error,
            "consecutive_failures": c.consecutive_failures,
            "consecutive_successes": c.consecutive_successes,
        })),
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

/// Opens a channel to the node's API address: h2c, or TLS with `--ca-cert`; every call
/// carries `--token`.
pub async fn connect(addr: &str, secure: &super::secure::Secure) -> anyhow::Result<super::secure::Chan> {
    let target = target(addr);
    let failed = |e: tonic::transport::Error| {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let cause = if causes.is_empty() { e.to_string() } else { causes.join(": ") };
        anyhow!("UNAVAILABLE: cannot connect to muster node at {target}: {cause}")
    };
    let channel = match secure.tls(&target, &[b"h2"])? {
        Some(tls) => crate::tls::dial::TlsDial::fixed(tls.config, tls.server_name, CONNECT_TIMEOUT)
            .connect(&target)
            .await
            .map_err(failed)?,
        None => Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| anyhow!("invalid --addr {addr:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(failed)?,
    };
    super::secure::with_auth(channel, secure)
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

    #[test]
    fn cli_update_sends_only_the_flags_given() {
        // Proves `services update` leaves unset every field whose flag is absent, replaces
        // tags/metadata only when given (or cleared), and parses KEY=VALUE and --status.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            update: UpdateArgs,
        }
        let parse = |argv: &[&str]| {
            let cli =
                <Cli as clap::Parser>::try_parse_from(std::iter::once("update").chain(argv.iter().copied()));
            cli.map(|c| c.update)
        };
        let only_port = parse(&["web-1", "--port", "81"]).unwrap().request().unwrap();
        let want = pb::UpdateRequest { service_id: "web-1".into(), port: Some(81), ..Default::default() };
        assert_eq!(only_port, want, "only the port is sent");
        let req = parse(&[
            "x",
            "--tag",
            "a",
            "--tag",
            "b",
            "--meta",
            "k=v=w",
            "--status",
            "inactive",
            "--description",
            "",
        ])
        .unwrap()
        .request()
        .unwrap();
        assert_eq!(req.tags, Some(pb::StringList { values: vec!["a".into(), "b".into()] }));
        assert_eq!(req.metadata.unwrap().entries.get("k").map(String::as_str), Some("v=w"));
        assert_eq!(req.status, Some(pb::ServiceStatus::Inactive as i32));
        assert_eq!(
            (req.description.as_deref(), req.name),
            (Some(""), None),
            "an empty description clears it"
        );
        let cleared = parse(&["x", "--clear-tags", "--clear-meta"]).unwrap().request().unwrap();
        assert_eq!((cleared.tags.unwrap().values.len(), cleared.metadata.unwrap().entries.len()), (0, 0));
        assert!(parse(&["x", "--meta", "novalue"]).is_err(), "KEY=VALUE is required");
        assert!(parse(&["x", "--tag", "a", "--clear-tags"]).is_err(), "--tag and --clear-tags conflict");
        assert!(parse(&["x", "--status", "bogus"]).unwrap().request().is_err());
    }
}
