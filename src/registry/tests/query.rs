//! Reads: list filters and paging, discover, type and tag counts, expiry candidates, status
//! counts, lookup by endpoint.

use super::*;

/// Six services: (id, name, type, protocol, tags), then a, c made unhealthy/expired below.
fn fixture() -> Registry {
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let rows = [
        ("id-f", "beta", "api", "http", &["eu", "prod"][..]),
        ("id-a", "alpha", "api", "http", &["eu"][..]),
        ("id-c", "gamma", "db", "tcp", &["eu", "prod"][..]),
        ("id-b", "beta", "api", "grpc", &["us", "prod"][..]),
        ("id-e", "delta", "mqtt", "mqtt", &[][..]),
        ("id-d", "alpha", "api", "http", &["prod"][..]),
    ];
    for (id, name, service_type, protocol, tags) in rows {
        let mut new = NewService::new(sid(id), name, service_type, "10.0.0.1", 80);
        new.protocol = protocol.into();
        new.tags = tags.iter().map(|t| t.to_string()).collect();
        new.ttl_seconds = 10;
        register(&mut reg, new, T0);
    }
    renew(&mut reg, &["id-a", "id-b", "id-d", "id-e", "id-f"], T0 + 5_000);
    expire(&mut reg, &["id-c"], T0 + 10_000);
    run(&mut reg, Command::SetHealth { id: sid("id-a"), healthy: false, at_ms: T0 }).unwrap();
    reg
}

fn ids(services: &[Service]) -> Vec<&str> {
    services.iter().map(|s| s.id.as_str()).collect()
}

fn list(reg: &Registry, filter: Filter) -> (Vec<String>, usize) {
    let (page, total) = reg.list(&filter).unwrap();
    (ids(&page).into_iter().map(String::from).collect(), total)
}

#[test]
fn list_sorts_by_name_then_id_and_shows_every_status() {
    // Proves the default list is ordered by (name, id) and includes unhealthy and expired services.
    let reg = fixture();
    let (page, total) = list(&reg, Filter::default());
    assert_eq!(page, ["id-a", "id-d", "id-b", "id-f", "id-e", "id-c"]);
    assert_eq!(total, 6);
}

#[test]
fn list_filters_by_type_protocol_status_and_all_tags() {
    // Proves each filter narrows the list, and tags must all be present.
    let reg = fixture();
    let of = |filter: Filter| list(&reg, filter).0;
    assert_eq!(
        of(Filter { service_type: Some("api".into()), ..Default::default() }),
        ["id-a", "id-d", "id-b", "id-f"]
    );
    assert_eq!(of(Filter { protocol: Some("http".into()), ..Default::default() }), ["id-a", "id-d", "id-f"]);
    assert_eq!(of(Filter { status: Some(Status::Expired), ..Default::default() }), ["id-c"]);
    assert_eq!(of(Filter { status: Some(Status::Unhealthy), ..Default::default() }), ["id-a"]);
    let tags = |t: &[&str]| t.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    assert_eq!(of(Filter { tags: tags(&["prod"]), ..Default::default() }), ["id-d", "id-b", "id-f", "id-c"]);
    assert_eq!(of(Filter { tags: tags(&["eu", "prod"]), ..Default::default() }), ["id-f", "id-c"]);
    assert_eq!(of(Filter { tags: tags(&["eu", "us"]), ..Default::default() }), Vec::<String>::new());
    let combined = Filter {
        service_type: Some("api".into()),
        protocol: Some("http".into()),
        status: Some(Status::Active),
        tags: tags(&["prod"]),
        ..Default::default()
    };
    assert_eq!(of(combined), ["id-d", "id-f"]);
}

#[test]
fn list_pages_with_skip_and_limit_and_reports_the_total() {
    // Proves paging walks the ordered list without gaps or overlaps and total counts all matches.
    let reg = fixture();
    let page = |skip: usize, limit: usize| list(&reg, Filter { skip, limit, ..Default::default() });
    assert_eq!(page(0, 2), (vec!["id-a".into(), "id-d".into()], 6));
    assert_eq!(page(2, 2), (vec!["id-b".into(), "id-f".into()], 6));
    assert_eq!(page(4, 2), (vec!["id-e".into(), "id-c".into()], 6));
    assert_eq!(page(6, 2), (vec![], 6));
    assert_eq!(page(usize::MAX, 100), (vec![], 6));
}

#[test]
fn list_limit_is_1_to_100() {
    // Proves limit bounds on list, with the default of 50.
    let reg = fixture();
    assert_eq!(Filter::default().limit, 50);
    for limit in [1, 100] {
        assert!(reg.list(&Filter { limit, ..Default::default() }).is_ok());
    }
    for limit in [0, 101] {
        let err = reg.list(&Filter { limit, ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), format!("invalid filter: limit must be 1–100 (got {limit})"));
    }
}

#[test]
fn discover_returns_active_services_only() {
    // Proves discover skips unhealthy, inactive and expired services and applies type and tags.
    let mut reg = fixture();
    let patch = ServicePatch { status: Some(Status::Inactive), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("id-b"), patch, now_ms: T0 }).unwrap();
    assert_eq!(ids(&reg.discover(None, &[])), ["id-d", "id-f", "id-e"]);
    assert_eq!(ids(&reg.discover(Some("api"), &[])), ["id-d", "id-f"]);
    assert_eq!(ids(&reg.discover(Some("api"), &["eu".into()])), ["id-f"]);
    assert!(reg.discover(Some("db"), &[]).is_empty());
}

#[test]
fn types_and_tags_count_services_that_are_not_expired() {
    // Proves type and tag counts, with the expired service left out.
    let reg = fixture();
    let types: Vec<(String, usize)> = reg.types().into_iter().collect();
    assert_eq!(types, [("api".into(), 4), ("mqtt".into(), 1)]);
    let tags: Vec<(String, usize)> = reg.tags().into_iter().collect();
    assert_eq!(tags, [("eu".into(), 2), ("prod".into(), 3), ("us".into(), 1)]);
}

#[test]
fn expired_candidates_are_due_and_not_yet_expired() {
    // Proves candidates include expires_at == now, exclude later leases and already expired services.
    let reg = fixture();
    assert!(reg.expired_candidates(T0 + 14_999).is_empty());
    assert_eq!(
        reg.expired_candidates(T0 + 15_000),
        [sid("id-a"), sid("id-b"), sid("id-d"), sid("id-e"), sid("id-f")]
    );
}

#[test]
fn counts_by_status_covers_every_status() {
    // Proves one count per status and a total equal to the registry size.
    let mut reg = fixture();
    let patch = ServicePatch { status: Some(Status::Inactive), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("id-e"), patch, now_ms: T0 }).unwrap();
    let counts = reg.counts_by_status();
    assert_eq!(counts, StatusCounts { active: 3, inactive: 1, expired: 1, unhealthy: 1 });
    assert_eq!(counts.total(), reg.len());
    assert_eq!(Status::ALL.map(|s| counts.get(s)), [3, 1, 1, 1]);
}

#[test]
fn find_by_endpoint_matches_name_host_and_port_of_unexpired_services() {
    // Proves the Beacon-style duplicate lookup picks the smallest id and ignores expired services.
    let reg = fixture();
    assert_eq!(reg.find_by_endpoint("alpha", "10.0.0.1", 80).map(|s| s.id.as_str()), Some("id-a"));
    assert!(reg.find_by_endpoint("gamma", "10.0.0.1", 80).is_none(), "id-c is expired");
    assert!(reg.find_by_endpoint("alpha", "10.0.0.1", 81).is_none());
}
