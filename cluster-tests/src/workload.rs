//! Concurrent registry clients. Each client is one sequential process with its own seeded
//! RNG; it owns the service ids it registers (`c<client>-s<n>`), so every write to an id comes
//! from one process and metadata versions (`v`) of an id only grow. Reads are not owned: about
//! half of the Gets name an id from the run's [`IdPool`] (every id any client registered), so an
//! id's reads overlap its owner's writes. Every call goes to a node chosen at random and is
//! recorded in the [`History`]. Also reads the whole registry of one node (paged) for the checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use muster::api::grpc::pb::registry::{
    registry_client::RegistryClient, DeregisterRequest, GetRequest, ListRequest, RegisterRequest, Service,
    StringMap, UpdateRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::history::{classify, Call, History, Op, Outcome, RunClock, Value};

/// The deadline of one call (sent as grpc-timeout; the client gives up a little later).
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack on top of [`OP_TIMEOUT`] before the client stops waiting itself.
const OP_SLACK: Duration = Duration::from_millis(500);
/// Upper bound on one client's operations, whatever the stop flag says.
const OPS_MAX: usize = 20_000;
/// Page size of List (the API's maximum); the workload's List reads one page of this size.
pub const PAGE: u32 = 100;
/// Pages read before giving up on a full listing (100 × 100 services).
const PAGES_MAX: usize = 100;
/// Service type every workload service has.
pub const SERVICE_TYPE: &str = "ct";
/// Metadata key holding the write version.
const VERSION_KEY: &str = "v";

/// A client's gRPC stubs, one per node, and their names.
#[derive(Clone)]
pub struct Targets {
    pub names: Vec<String>,
    pub channels: Vec<Channel>,
}

/// The version a service carries in its metadata (0 when absent or unreadable).
pub fn version_of(s: &Service) -> u64 {
    s.metadata.get(VERSION_KEY).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn versions(services: &[Service]) -> Vec<(String, u64)> {
    services.iter().map(|s| (s.service_id.clone(), version_of(s))).collect()
}

/// One call with the deadline, its outcome and what it read.
/// What a successful call returned: the read's value, the write's revision.
type Done = (Option<Value>, Option<u64>);

async fn perform(ch: Channel, call: &Call) -> Result<Done, Status> {
    let mut c = RegistryClient::new(ch);
    let fut = async {
        match call {
            Call::Register { id, version } => {
                let mut req = tonic::Request::new(RegisterRequest {
                    service_id: id.clone(),
                    name: format!("ct-{id}"),
                    r#type: SERVICE_TYPE.into(),
                    host: "10.255.0.1".into(),
                    port: 8080,
                    ttl_seconds: Some(3600),
                    metadata: HashMap::from([(VERSION_KEY.to_string(), version.to_string())]),
                    ..Default::default()
                });
                req.set_timeout(OP_TIMEOUT);
                c.register(req).await.map(|r| (None, Some(r.into_inner().revision)))
            }
            Call::Update { id, version } => {
                let mut req = tonic::Request::new(UpdateRequest {
                    service_id: id.clone(),
                    metadata: Some(StringMap {
                        entries: HashMap::from([(VERSION_KEY.to_string(), version.to_string())]),
                    }),
                    ..Default::default()
                });
                req.set_timeout(OP_TIMEOUT);
                c.update(req).await.map(|r| (None, Some(r.into_inner().revision)))
            }
            Call::Deregister { id } => {
                let mut req = tonic::Request::new(DeregisterRequest { service_id: id.clone() });
                req.set_timeout(OP_TIMEOUT);
                c.deregister(req).await.map(|r| (None, Some(r.into_inner().revision)))
            }
            Call::Get { id } => {
                let mut req = tonic::Request::new(GetRequest { service_id: id.clone(), stale: false });
                req.set_timeout(OP_TIMEOUT);
                match c.get(req).await {
                    Ok(r) => {
                        Ok((Some(Value::Version(r.into_inner().service.as_ref().map(version_of))), None))
                    }
                    // A definite "absent" is a read result, not a failure.
                    Err(s) if s.code() == Code::NotFound => Ok((Some(Value::Version(None)), None)),
                    Err(s) => Err(s),
                }
            }
            Call::List => {
                let mut req = tonic::Request::new(ListRequest {
                    r#type: Some(SERVICE_TYPE.into()),
                    limit: Some(PAGE),
                    ..Default::default()
                });
                req.set_timeout(OP_TIMEOUT);
                c.list(req).await.map(|r| (Some(Value::Services(versions(&r.into_inner().services))), None))
            }
        }
    };
    match tokio::time::timeout(OP_TIMEOUT + OP_SLACK, fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("client gave up waiting")),
    }
}

/// Every id any client of the run registered (attempted or acknowledged), in the order they were
/// first used; other clients' Gets pick from it. At most `clients × OPS_MAX` entries.
type IdPool = Arc<Mutex<Vec<String>>>;

/// Percentage of Gets that read an id from the [`IdPool`] instead of one the client owns.
const GET_OTHERS_PERCENT: u32 = 50;

/// What one client knows about an id it owns.
struct Owned {
    id: String,
    /// The last version it asked for (acknowledged or not).
    version: u64,
}

/// The id a Get reads: one from the pool ([`GET_OTHERS_PERCENT`] of the time) or one the client
/// owns. `owned` is not empty.
fn get_target(rng: &mut StdRng, owned: &[Owned], pool: &IdPool) -> String {
    let from_pool = rng.random_range(0..100) < GET_OTHERS_PERCENT;
    // Draw both numbers whatever the pool holds, so the client's own sequence of draws does not
    // depend on how far the other clients got.
    let pick: usize = rng.random_range(0..usize::MAX);
    if from_pool {
        if let Some(id) = pool.lock().ok().and_then(|p| p.get(pick % p.len().max(1)).cloned()) {
            return id;
        }
    }
    owned[pick % owned.len()].id.clone()
}

/// Runs `clients` clients until `stop` is set (each also stops after [`OPS_MAX`] operations),
/// recording into `history`. Client `c` uses the seed `seed + c`.
pub async fn run(
    targets: Targets,
    clients: usize,
    seed: u64,
    clock: RunClock,
    history: History,
    stop: Arc<AtomicBool>,
) {
    let pool: IdPool = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (targets, history, stop, pool) = (targets.clone(), history.clone(), stop.clone(), pool.clone());
        let rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
        tasks.push(tokio::spawn(async move { client(c, targets, rng, clock, history, pool, stop).await }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn client(
    c: usize,
    targets: Targets,
    mut rng: StdRng,
    clock: RunClock,
    history: History,
    pool: IdPool,
    stop: Arc<AtomicBool>,
) {
    let mut owned: Vec<Owned> = Vec::new();
    let mut next_id = 0usize;
    for _ in 0..OPS_MAX {
        if stop.load(Ordering::Relaxed) || targets.channels.is_empty() {
            break;
        }
        let roll: u32 = rng.random_range(0..100);
        let call = if owned.is_empty() || roll < 30 {
            next_id += 1;
            let id = format!("c{c}-s{next_id}");
            owned.push(Owned { id: id.clone(), version: 1 });
            if let Ok(mut pool) = pool.lock() {
                pool.push(id.clone());
            }
            Call::Register { id, version: 1 }
        } else if roll < 55 {
            let k = rng.random_range(0..owned.len());
            owned[k].version += 1;
            Call::Update { id: owned[k].id.clone(), version: owned[k].version }
        } else if roll < 65 {
            let k = rng.random_range(0..owned.len());
            Call::Deregister { id: owned.swap_remove(k).id }
        } else if roll < 85 {
            Call::Get { id: get_target(&mut rng, &owned, &pool) }
        } else {
            Call::List
        };
        let n = rng.random_range(0..targets.channels.len());
        let invoke_ns = clock.now_ns();
        let res = perform(targets.channels[n].clone(), &call).await;
        let complete_ns = clock.now_ns();
        let (outcome, code, error, (value, revision)) = match res {
            Ok(done) => (Outcome::Ok, None, None, done),
            Err(status) => {
                let (outcome, code) = classify(&status, call.is_write());
                let msg: String = status.message().chars().take(200).collect();
                (outcome, Some(code), Some(msg), (None, None))
            }
        };
        history.push(Op {
            client: c,
            node: targets.names[n].clone(),
            call,
            invoke_ns,
            complete_ns,
            outcome,
            code,
            error,
            value,
            revision,
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..50))).await;
    }
}

/// Every workload service on one node, id → version, read page by page (`stale`: the node's
/// own copy; otherwise linearizable). Fails if the listing changes size under it.
pub async fn read_all(ch: Channel, stale: bool) -> Result<BTreeMap<String, u64>> {
    read_all_at(ch, stale).await.map(|(_, all)| all)
}

/// [`read_all`] and the registry revision its first page saw.
pub async fn read_all_at(ch: Channel, stale: bool) -> Result<(u64, BTreeMap<String, u64>)> {
    let mut c = RegistryClient::new(ch);
    let mut all = BTreeMap::new();
    let mut total = None;
    for page in 0..PAGES_MAX {
        let skip = u32::try_from(page)? * PAGE;
        let mut req = tonic::Request::new(ListRequest {
            r#type: Some(SERVICE_TYPE.into()),
            limit: Some(PAGE),
            skip,
            stale,
            ..Default::default()
        });
        req.set_timeout(OP_TIMEOUT);
        let resp = tokio::time::timeout(OP_TIMEOUT + OP_SLACK, c.list(req))
            .await
            .map_err(|_| anyhow!("List took over {OP_TIMEOUT:?}"))??
            .into_inner();
        match total {
            None => total = Some((resp.total, resp.revision)),
            Some((t, _)) if t != resp.total => {
                bail!("the listing changed from {t} to {} services while paging", resp.total)
            }
            Some(_) => {}
        }
        let got = resp.services.len();
        all.extend(versions(&resp.services));
        if got < PAGE as usize || all.len() as u64 >= resp.total {
            let revision = total.map_or(resp.revision, |(_, r)| r);
            return Ok((revision, all));
        }
    }
    bail!("more than {} services listed", PAGES_MAX * PAGE as usize)
}
