//! The REST API's request bodies, decoded and validated exactly as the handlers do, then carried
//! on as the registrar and the state machine carry them. The first byte picks the route:
//! - 0: `POST /api/v1/services/register`: axum's `Json::<NewService>::from_bytes` (what the
//!   `Json` extractor runs once the content type is JSON), a random id when none is given,
//!   `validate::new_service`;
//! - 1: `PUT /api/v1/services/{id}`: `Json::<ServicePatch>`, `validate::patch`;
//! - 2: the query parameters' pure checks (`?status=`, `?ttl=`, `?limit=`): `Status::parse`,
//!   `validate::ttl_seconds`, `validate::list_limit` (the query structs are the handlers' own).
//!
//! An accepted body becomes the raft command the registrar proposes; it must survive the log's
//! JSON encoding unchanged, and a registration must then apply on an empty registry.
#![no_main]

use axum::Json;
use libfuzzer_sys::fuzz_target;
use muster::consensus::Machine;
use muster::fuzzing::random_service_id;
use muster::registry::{validate, Command, NewService, Outcome, Registry, ServiceId, ServicePatch, Status};
use muster::replicated::{decode_answer, encode_command, RegistryMachine};

/// The leader's clock when it proposes (unix ms, 2025-01-01).
const NOW_MS: u64 = 1_735_689_600_000;
const HISTORY_MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else { return };
    match route % 3 {
        0 => register(body),
        1 => update(body),
        _ => query(body),
    }
});

/// The command as the state machine reads it back from the log.
fn through_the_log(cmd: &Command) -> Command {
    let bytes = encode_command(cmd);
    match serde_json::from_slice::<Command>(&bytes) {
        Ok(back) => back,
        Err(e) => panic!("an accepted {} does not decode from the log: {e}", cmd.name()),
    }
}

fn register(body: &[u8]) {
    let Ok(Json(mut new)) = Json::<NewService>::from_bytes(body) else { return };
    if new.id.as_str().is_empty() {
        new.id = ServiceId(random_service_id());
    }
    if validate::new_service(&new).is_err() {
        return;
    }
    let cmd = Command::Register { service: new, now_ms: NOW_MS };
    assert_eq!(through_the_log(&cmd), cmd, "the log's JSON changed a registration");
    let mut machine = RegistryMachine::new(Registry::new(HISTORY_MAX));
    match decode_answer(&machine.apply(1, &encode_command(&cmd))) {
        Ok(applied) => assert!(
            matches!(applied.outcome, Outcome::Registered { .. }),
            "a valid registration applied as {:?}",
            applied.outcome
        ),
        Err(e) => panic!("a valid registration was refused by apply: {e}"),
    }
}

fn update(body: &[u8]) {
    let Ok(Json(patch)) = Json::<ServicePatch>::from_bytes(body) else { return };
    if validate::patch(&patch).is_err() {
        return;
    }
    let id = ServiceId::new("3f2a0c8e-5b7d-4e1a-9c6f-2d8b4a1e7c3d");
    let cmd = Command::Update { id: id.clone(), patch, now_ms: NOW_MS + 1 };
    assert_eq!(through_the_log(&cmd), cmd, "the log's JSON changed an update");
    let mut machine = RegistryMachine::new(Registry::new(HISTORY_MAX));
    let existing = NewService::new(id, "camera", "http", "10.1.0.5", 8080);
    let register = Command::Register { service: existing, now_ms: NOW_MS };
    let _ = decode_answer(&machine.apply(1, &encode_command(&register)));
    let _ = decode_answer(&machine.apply(2, &encode_command(&cmd)));
}

fn query(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let _ = Status::parse(&text);
    if let Ok(n) = text.parse::<u32>() {
        let _ = validate::ttl_seconds(n);
    }
    if let Ok(n) = text.parse::<usize>() {
        let _ = validate::list_limit(n);
    }
}
