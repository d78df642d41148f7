//! Bounds of every field: just inside and just outside each one, for registrations and patches.

use std::collections::BTreeMap;

use super::super::validate;
use super::*;

fn check(mutate: impl FnOnce(&mut NewService)) -> Result<(), RegistryError> {
    let mut new = svc("a");
    mutate(&mut new);
    validate::new_service(&new)
}

#[track_caller]
fn ok(mutate: impl FnOnce(&mut NewService)) {
    assert_eq!(check(mutate), Ok(()));
}

/// Exactly one rule broken, and its message contains `needle`.
#[track_caller]
fn bad(mutate: impl FnOnce(&mut NewService), needle: &str) {
    match check(mutate) {
        Err(RegistryError::InvalidService { violations }) => {
            assert_eq!(violations.len(), 1, "{violations:?}");
            assert!(violations[0].contains(needle), "{:?} lacks {needle:?}", violations[0]);
        }
        other => panic!("expected one violation containing {needle:?}, got {other:?}"),
    }
}

fn map(entries: usize, key_chars: usize, value_chars: usize) -> BTreeMap<String, String> {
    (0..entries).map(|i| (format!("{i:0width$}", width = key_chars), chars('v', value_chars))).collect()
}

#[test]
fn the_default_registration_is_valid_and_the_message_names_field_and_bound() {
    // Proves the baseline passes and a violation renders as `invalid service: <field> <bound> (got n)`.
    ok(|_| {});
    let err = check(|s| s.name.clear()).unwrap_err();
    assert_eq!(err.to_string(), "invalid service: name must be 1–100 characters (got 0)");
}

#[test]
fn id_is_1_to_64_url_safe_characters() {
    // Proves the service_id bounds and character set.
    ok(|s| s.id = sid("550e8400-e29b-41d4-a716-446655440000"));
    ok(|s| s.id = sid(&chars('a', 1)));
    ok(|s| s.id = sid(&chars('a', 64)));
    bad(|s| s.id = sid(""), "service_id must be 1–64 characters (got 0)");
    bad(|s| s.id = sid(&chars('a', 65)), "service_id must be 1–64 characters (got 65)");
    bad(|s| s.id = sid("a/b"), "service_id may contain only");
}

#[test]
fn name_type_and_host_lengths_count_characters() {
    // Proves name 1–100, type 1–50, host 1–255, counted in characters rather than bytes.
    ok(|s| s.name = chars('é', 100));
    bad(|s| s.name = chars('é', 101), "name must be 1–100 characters (got 101)");
    ok(|s| s.name = chars('n', 1));
    ok(|s| s.service_type = chars('t', 1));
    ok(|s| s.service_type = chars('t', 50));
    bad(|s| s.service_type = String::new(), "type must be 1–50 characters (got 0)");
    bad(|s| s.service_type = chars('t', 51), "type must be 1–50 characters (got 51)");
    ok(|s| s.host = chars('h', 1));
    ok(|s| s.host = chars('h', 255));
    bad(|s| s.host = String::new(), "host must be 1–255 characters (got 0)");
    bad(|s| s.host = chars('h', 256), "host must be 1–255 characters (got 256)");
}

#[test]
fn port_is_1_to_65535_and_protocol_at_most_20() {
    // Proves the port range (including just above u16) and the protocol length bound.
    ok(|s| s.port = 1);
    ok(|s| s.port = 65_535);
    bad(|s| s.port = 0, "port must be 1–65535 (got 0)");
    bad(|s| s.port = 65_536, "port must be 1–65535 (got 65536)");
    ok(|s| s.protocol = String::new());
    ok(|s| s.protocol = chars('p', 20));
    bad(|s| s.protocol = chars('p', 21), "protocol must be at most 20 characters (got 21)");
}

#[test]
fn tags_are_counted_after_dedup_and_each_is_1_to_50() {
    // Proves at most 50 distinct tags (duplicates do not count) of 1–50 characters each.
    let distinct = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    ok(|s| s.tags = distinct(50));
    bad(|s| s.tags = distinct(51), "tags must have at most 50 entries after removing duplicates (got 51)");
    ok(|s| {
        s.tags = distinct(50);
        s.tags.push("t0".into());
    });
    ok(|s| s.tags = vec![chars('x', 1), chars('y', 50)]);
    bad(|s| s.tags = vec![String::new()], "tag must be 1–50 characters (got 0)");
    bad(|s| s.tags = vec![chars('y', 51)], "tag must be 1–50 characters (got 51)");
}

#[test]
fn metadata_has_at_most_64_entries_keys_1_to_100_values_up_to_1000() {
    // Proves the metadata entry count, key length and value length bounds.
    ok(|s| s.metadata = map(64, 3, 0));
    bad(|s| s.metadata = map(65, 3, 1), "metadata must have at most 64 entries (got 65)");
    ok(|s| s.metadata = map(1, 100, 1000));
    bad(|s| s.metadata = map(1, 101, 1), "metadata key must be 1–100 characters (got 101)");
    bad(|s| s.metadata = map(1, 3, 1001), "must be at most 1000 characters (got 1001)");
    bad(|s| s.metadata = BTreeMap::from([(String::new(), "v".into())]), "metadata key must be 1–100");
}

#[test]
fn ttl_is_10_to_86400_and_health_check_interval_1_to_3600() {
    // Proves both second-valued ranges at each edge.
    ok(|s| s.ttl_seconds = 10);
    ok(|s| s.ttl_seconds = 86_400);
    bad(|s| s.ttl_seconds = 9, "ttl must be 10–86400 seconds (got 9)");
    bad(|s| s.ttl_seconds = 86_401, "ttl must be 10–86400 seconds (got 86401)");
    ok(|s| s.health_check_interval = 1);
    ok(|s| s.health_check_interval = 3_600);
    bad(|s| s.health_check_interval = 0, "health_check_interval must be 1–3600 seconds (got 0)");
    bad(|s| s.health_check_interval = 3_601, "health_check_interval must be 1–3600 seconds (got 3601)");
}

#[test]
fn health_check_timeout_is_1_to_60_and_thresholds_1_to_20() {
    // Proves the anti-flap thresholds and the timeout at each edge, in a registration and a patch.
    ok(|s| s.health_check_timeout = 1);
    ok(|s| s.health_check_timeout = 60);
    bad(|s| s.health_check_timeout = 0, "health_check_timeout must be 1–60 seconds (got 0)");
    bad(|s| s.health_check_timeout = 61, "health_check_timeout must be 1–60 seconds (got 61)");
    ok(|s| s.health_check_unhealthy_threshold = 20);
    bad(
        |s| s.health_check_unhealthy_threshold = 0,
        "health_check_unhealthy_threshold must be 1–20 checks in a row (got 0)",
    );
    bad(
        |s| s.health_check_healthy_threshold = 21,
        "health_check_healthy_threshold must be 1–20 checks in a row (got 21)",
    );
    let patch = ServicePatch {
        health_check_healthy_threshold: Some(0),
        health_check_timeout: Some(99),
        ..Default::default()
    };
    let err = validate::patch(&patch).unwrap_err().to_string();
    assert!(
        err.contains("health_check_timeout must be 1–60")
            && err.contains("health_check_healthy_threshold must be 1–20"),
        "{err}"
    );
}

#[test]
fn health_check_targets_parse_http_https_and_tcp() {
    // Proves what the checker will dial for each accepted URL, and that tcp:// needs a port.
    use crate::registry::validate::{check_target, CheckTarget};
    let http = |tls, host: &str, port, path: &str| CheckTarget::Http {
        tls,
        host: host.into(),
        port,
        path: path.into(),
    };
    assert_eq!(check_target("http://10.0.0.1:8080/health"), Some(http(false, "10.0.0.1", 8080, "/health")));
    assert_eq!(check_target("HTTPS://svc.local"), Some(http(true, "svc.local", 443, "/")));
    assert_eq!(check_target("http://h?x=1#frag"), Some(http(false, "h", 80, "/?x=1")));
    assert_eq!(check_target("http://[::1]:81/a"), Some(http(false, "::1", 81, "/a")));
    assert_eq!(check_target("tcp://db:5432"), Some(CheckTarget::Tcp { host: "db".into(), port: 5432 }));
    assert_eq!(check_target("tcp://db"), None, "tcp needs a port");
    assert_eq!(check_target("tcp://db:5432/x"), None, "tcp takes no path");
    assert_eq!(check_target("http://h:0/"), None);
    assert_eq!(check_target("http://h:99999/"), None);
    assert_eq!(check_target("http://user@h/"), None);
    ok(|s| s.health_check_url = Some("tcp://10.0.0.7:1883".into()));
    bad(|s| s.health_check_url = Some("tcp://10.0.0.7".into()), "or tcp://HOST:PORT");
}

#[test]
fn health_check_url_is_http_or_https_with_a_host_up_to_500() {
    // Proves the scheme, host and length rules of health_check_url.
    let url = |len: usize| format!("http://h/{}", chars('p', len - "http://h/".len()));
    ok(|s| s.health_check_url = None);
    ok(|s| s.health_check_url = Some("http://10.0.0.1:8080/health".into()));
    ok(|s| s.health_check_url = Some("HTTPS://svc.local/health?x=1".into()));
    ok(|s| s.health_check_url = Some(url(500)));
    bad(|s| s.health_check_url = Some(url(501)), "health_check_url must be at most 500 characters (got 501)");
    bad(|s| s.health_check_url = Some("ftp://h/x".into()), "http:// or https:// URL with a host");
    bad(|s| s.health_check_url = Some("http://".into()), "http:// or https:// URL with a host");
    bad(|s| s.health_check_url = Some("http:///path".into()), "with a host");
    bad(|s| s.health_check_url = Some("http://h/a b".into()), "with a host");
}

#[test]
fn mdns_service_type_is_a_dns_sd_type() {
    // Proves `_name._tcp|_udp` with a 1–63 character name, and nothing else.
    ok(|s| s.mdns_service_type = Some("_http._tcp".into()));
    ok(|s| s.mdns_service_type = Some("_x._udp".into()));
    ok(|s| s.mdns_service_type = Some(format!("_{}._tcp", chars('m', 63))));
    bad(|s| s.mdns_service_type = Some(format!("_{}._tcp", chars('m', 64))), "name of 1–63");
    bad(|s| s.mdns_service_type = Some("_._tcp".into()), "mdns_service_type must look like");
    bad(|s| s.mdns_service_type = Some("http".into()), "mdns_service_type must look like");
    bad(|s| s.mdns_service_type = Some("_http._sctp".into()), "mdns_service_type must look like");
}

#[test]
fn txt_records_have_at_most_64_entries_each_fitting_255_bytes() {
    // Proves the TXT record count, key rule and key=value byte bound.
    let entry = |key: &str, value_len: usize| BTreeMap::from([(key.to_owned(), chars('v', value_len))]);
    ok(|s| s.mdns_txt_records = map(64, 2, 1));
    bad(|s| s.mdns_txt_records = map(65, 2, 1), "mdns_txt_records must have at most 64 entries (got 65)");
    ok(|s| s.mdns_txt_records = entry("k", 253));
    bad(|s| s.mdns_txt_records = entry("k", 254), "must fit in 255 bytes as key=value (got 256)");
    bad(|s| s.mdns_txt_records = entry("a=b", 1), "key must be 1–100 characters without '='");
    bad(|s| s.mdns_txt_records = entry("", 1), "key must be 1–100 characters without '='");
}

#[test]
fn description_up_to_500_and_version_up_to_50() {
    // Proves the free-text bounds.
    ok(|s| s.description = Some(chars('d', 500)));
    bad(|s| s.description = Some(chars('d', 501)), "description must be at most 500 characters (got 501)");
    ok(|s| s.version = Some(chars('v', 50)));
    bad(|s| s.version = Some(chars('v', 51)), "version must be at most 50 characters (got 51)");
}

#[test]
fn every_violation_is_reported_at_once() {
    // Proves a registration breaking three rules gets three messages, in field order.
    let err = check(|s| {
        s.name.clear();
        s.port = 0;
        s.ttl_seconds = 9;
    })
    .unwrap_err();
    let RegistryError::InvalidService { violations } = err else { panic!("{err:?}") };
    assert_eq!(
        violations,
        [
            "name must be 1–100 characters (got 0)",
            "port must be 1–65535 (got 0)",
            "ttl must be 10–86400 seconds (got 9)"
        ]
    );
}

#[test]
fn patches_use_the_same_bounds_and_only_allow_settable_statuses() {
    // Proves patch fields are checked like registrations, and status may only become active or inactive.
    let patch_err = |p: ServicePatch| validate::patch(&p).unwrap_err().to_string();
    assert_eq!(validate::patch(&ServicePatch::default()), Ok(()));
    assert!(patch_err(ServicePatch { name: Some(String::new()), ..Default::default() })
        .contains("name must be 1–100"));
    assert!(
        patch_err(ServicePatch { port: Some(65_536), ..Default::default() }).contains("port must be 1–65535")
    );
    assert!(
        patch_err(ServicePatch { ttl_seconds: Some(86_401), ..Default::default() }).contains("ttl must be")
    );
    let long = Some(Some(chars('d', 501)));
    assert!(patch_err(ServicePatch { description: long, ..Default::default() }).contains("description"));
    for status in [Status::Expired, Status::Unhealthy] {
        let msg = patch_err(ServicePatch { status: Some(status), ..Default::default() });
        assert!(msg.contains(&format!("active or inactive only (got {status})")), "{msg}");
    }
    for status in [Status::Active, Status::Inactive] {
        assert_eq!(validate::patch(&ServicePatch { status: Some(status), ..Default::default() }), Ok(()));
    }
    assert_eq!(validate::patch(&ServicePatch { health_check_url: Some(None), ..Default::default() }), Ok(()));
}

#[test]
fn command_argument_bounds() {
    // Proves the bounds on heartbeat TTL overrides, lease extensions and list page sizes.
    assert!(validate::ttl_seconds(10).is_ok() && validate::ttl_seconds(86_400).is_ok());
    assert!(validate::ttl_seconds(9).is_err() && validate::ttl_seconds(86_401).is_err());
    assert!(validate::extend_by_ms(1).is_ok() && validate::extend_by_ms(86_400_000).is_ok());
    assert!(validate::extend_by_ms(0).is_err() && validate::extend_by_ms(86_400_001).is_err());
    assert!(validate::list_limit(1).is_ok() && validate::list_limit(100).is_ok());
    assert_eq!(validate::list_limit(0), Err("limit must be 1–100 (got 0)".into()));
    assert!(validate::list_limit(101).is_err());
}
