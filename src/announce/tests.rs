//! Unit tests of the pure cores: the type table and RFC 6763 names, TXT building and its
//! limits, subnet matching, the desired records and the diff.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::names::{instance_label_with, service_host_name, service_type};
use super::plan::{desired, node_announcements, plan, Effect, NodeInfo};
use super::resolve::{HostCache, FAILED_TTL, RESOLVED_TTL};
use super::subnet::{host_ip, Subnet};
use super::txt::{service_txt, TXT_RECORD_BYTES_MAX, TXT_STRING_BYTES_MAX};
use crate::registry::{Service, ServiceId, Status};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn svc(id: &str, name: &str, ty: &str, host: &str, port: u16) -> Service {
    Service {
        id: ServiceId::new(id),
        name: name.to_string(),
        service_type: ty.to_string(),
        host: host.to_string(),
        port,
        protocol: "tcp".to_string(),
        tags: vec!["a".to_string(), "b".to_string()],
        metadata: BTreeMap::new(),
        ttl_seconds: 300,
        status: Status::Active,
        health_check_url: None,
        health_check_interval: 60,
        health_check_timeout: 5,
        health_check_unhealthy_threshold: 3,
        health_check_healthy_threshold: 2,
        last_health_check: None,
        mdns_service_type: None,
        mdns_txt_records: BTreeMap::new(),
        description: Some("desc".to_string()),
        version: Some("1.2".to_string()),
        created_at_ms: 1,
        updated_at_ms: 1,
        last_heartbeat_ms: 1,
        expires_at_ms: 1,
    }
}

fn lan() -> Vec<Subnet> {
    vec![Subnet::from_netmask(ip("10.1.2.3"), ip("255.255.255.0")).unwrap()]
}

fn ty(registry: &str, own: Option<&str>) -> Result<String, String> {
    service_type(registry, own, &mut Vec::new()).map(|t| t.domain())
}

#[test]
fn beacon_type_table_and_own_type_wins() {
    // Proves Beacon's table, the `_<t>._tcp` fallback and that `mdns_service_type` wins.
    assert_eq!(ty("mqtt", None).unwrap(), "_mqtt._tcp.local.");
    assert_eq!(ty("http", None).unwrap(), "_http._tcp.local.");
    assert_eq!(ty("https", None).unwrap(), "_https._tcp.local.");
    assert_eq!(ty("iot", None).unwrap(), "_iot._tcp.local.");
    assert_eq!(ty("api", None).unwrap(), "_http._tcp.local.");
    assert_eq!(ty("database", None).unwrap(), "_db._tcp.local.");
    assert_eq!(ty("cache", None).unwrap(), "_cache._tcp.local.");
    assert_eq!(ty("message_queue", None).unwrap(), "_mq._tcp.local.");
    assert_eq!(ty("printer", None).unwrap(), "_printer._tcp.local.");
    assert_eq!(ty("API", None).unwrap(), "_http._tcp.local.");
    assert_eq!(ty("mqtt", Some("_hue._tcp")).unwrap(), "_hue._tcp.local.");
    assert_eq!(ty("mqtt", Some("_coap._udp")).unwrap(), "_coap._udp.local.");
    assert_eq!(ty("mqtt", Some("_hue._tcp.local.")).unwrap(), "_hue._tcp.local.");
}

#[test]
fn type_names_are_made_valid_under_rfc_6763() {
    // Proves `_` and other characters become single hyphens, long names are truncated to 15
    // bytes without a trailing hyphen, digit-only names are refused, and each change is noted.
    let mut notes = Vec::new();
    let t = service_type("home_assistant", None, &mut notes).unwrap();
    assert_eq!(t.domain(), "_home-assistant._tcp.local.");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let mut notes = Vec::new();
    let t = service_type("very_long_service_type_name", None, &mut notes).unwrap();
    assert_eq!(t.name(), "very-long-servi");
    assert!(t.name().len() <= 15);
    assert!(notes.iter().any(|n| n.contains("truncated")), "{notes:?}");
    // Truncation must not leave a trailing hyphen: "abcdefghijklmn-x" → 15 bytes "abcdefghijklmn-".
    assert_eq!(service_type("abcdefghijklmn_xyz", None, &mut Vec::new()).unwrap().name(), "abcdefghijklmn");
    assert_eq!(service_type("__a__b__", None, &mut Vec::new()).unwrap().name(), "a-b");
    assert!(service_type("1234", None, &mut Vec::new()).is_err());
    assert!(service_type("___", None, &mut Vec::new()).is_err());
    // An unusable own type falls back to the table, with a note.
    let mut notes = Vec::new();
    assert_eq!(service_type("cache", Some("mqtt"), &mut notes).unwrap().domain(), "_cache._tcp.local.");
    assert_eq!(notes.len(), 1);
}

#[test]
fn txt_has_beacon_keys_status_and_custom_records() {
    // Proves the TXT keys and values: Beacon's, `status`, then the custom records; standard
    // keys win over a custom one of the same name (ignoring case).
    let mut s = svc("id-1", "broker", "mqtt", "10.1.2.9", 1883);
    s.status = Status::Unhealthy;
    s.mdns_txt_records.insert("room".into(), "kitchen".into());
    s.mdns_txt_records.insert("NAME".into(), "spoof".into());
    let mut notes = Vec::new();
    let txt: BTreeMap<String, String> = service_txt(&s, &mut notes).into_iter().collect();
    assert_eq!(txt["service_id"], "id-1");
    assert_eq!(txt["name"], "broker");
    assert_eq!(txt["type"], "mqtt");
    assert_eq!(txt["protocol"], "tcp");
    assert_eq!(txt["version"], "1.2");
    assert_eq!(txt["tags"], "a,b");
    assert_eq!(txt["description"], "desc");
    assert_eq!(txt["status"], "unhealthy");
    assert_eq!(txt["room"], "kitchen");
    assert!(!txt.contains_key("NAME"));
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[test]
fn txt_strings_and_record_stay_within_dns_limits() {
    // Proves an oversized value is truncated to 255 bytes (at a character boundary), a key
    // that cannot fit is skipped, and the record stops at 1300 bytes, each with a note.
    let mut s = svc("id-1", "broker", "mqtt", "10.1.2.9", 1883);
    s.description = Some("é".repeat(300));
    s.mdns_txt_records.insert("k".repeat(300), "v".into());
    for i in 0..20 {
        s.mdns_txt_records.insert(format!("x{i:02}"), "y".repeat(200));
    }
    let mut notes = Vec::new();
    let txt = service_txt(&s, &mut notes);
    let mut total = 0;
    for (k, v) in &txt {
        let len = k.len() + 1 + v.len();
        assert!(len <= TXT_STRING_BYTES_MAX, "{k} is {len} bytes");
        total += 1 + len;
    }
    assert!(total <= TXT_RECORD_BYTES_MAX, "{total}");
    let desc = &txt.iter().find(|(k, _)| k == "description").unwrap().1;
    assert!(desc.len() <= 255 - "description=".len() && desc.chars().all(|c| c == 'é'));
    assert!(!txt.iter().any(|(k, _)| k.starts_with("kkk")));
    assert!(txt.iter().any(|(k, _)| k == "x00"));
    assert!(!txt.iter().any(|(k, _)| k == "x19"));
    assert!(notes.iter().any(|n| n.contains("truncated")));
    assert!(notes.iter().any(|n| n.contains("1300")));
}

#[test]
fn subnets_match_by_prefix() {
    // Proves subnet matching for IPv4 and IPv6 prefixes, families kept apart, and host parsing.
    let s = Subnet::from_netmask(ip("192.168.7.20"), ip("255.255.254.0")).unwrap();
    assert_eq!(s.prefix_len, 23);
    assert!(s.contains(ip("192.168.6.1")));
    assert!(s.contains(ip("192.168.7.255")));
    assert!(!s.contains(ip("192.168.8.1")));
    assert!(!s.contains(ip("::1")));
    let v6 = Subnet::from_netmask(ip("fd00:1::5"), ip("ffff:ffff:ffff:ffff::")).unwrap();
    assert_eq!(v6.prefix_len, 64);
    assert!(v6.contains(ip("fd00:1::99")));
    assert!(!v6.contains(ip("fd00:2::99")));
    let all = Subnet { addr: ip("10.0.0.1"), prefix_len: 0 };
    assert!(all.contains(ip("8.8.8.8")));
    assert_eq!(host_ip("[fd00::1]"), Some(ip("fd00::1")));
    assert_eq!(host_ip("broker.lan"), None);
}

#[test]
fn only_services_on_my_subnets_in_the_right_status_are_announced() {
    // Proves who announces what: on-subnet hosts (by IP or by a resolved name) in active or
    // unhealthy status; off-subnet, loopback, inactive, expired and unresolved ones are not.
    let mut unhealthy = svc("u", "u", "mqtt", "10.1.2.11", 1);
    unhealthy.status = Status::Unhealthy;
    let mut inactive = svc("i", "i", "mqtt", "10.1.2.12", 1);
    inactive.status = Status::Inactive;
    let mut expired = svc("e", "e", "mqtt", "10.1.2.13", 1);
    expired.status = Status::Expired;
    let services = vec![
        svc("on", "on", "mqtt", "10.1.2.10", 1883),
        svc("off", "off", "mqtt", "10.9.9.9", 1883),
        svc("lo", "lo", "mqtt", "127.0.0.1", 1883),
        svc("named", "named", "http", "broker.lan", 80),
        svc("unres", "unres", "http", "nowhere.lan", 80),
        unhealthy,
        inactive,
        expired,
    ];
    let resolved = BTreeMap::from([("broker.lan".to_string(), vec![ip("10.1.2.50"), ip("10.7.7.7")])]);
    let d = desired(&services, &lan(), &resolved, Vec::new(), &BTreeMap::new(), 100);
    let ids: Vec<String> = d.announcements.values().map(|a| a.service.clone().unwrap().0).collect::<Vec<_>>();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, ["named", "on", "u"]);
    let named = d.announcements.values().find(|a| a.instance == "named").unwrap();
    assert_eq!(named.addrs, vec![ip("10.1.2.50")], "only the on-subnet address");
    assert_eq!(named.service_type, "_http._tcp.local.");
    let on = d.announcements.values().find(|a| a.instance == "on").unwrap();
    assert_eq!(on.fullname(), "on._mqtt._tcp.local.");
    assert_eq!(on.addrs, vec![ip("10.1.2.10")]);
    assert_eq!(on.host_name, "10-1-2-10-on.local.");
    assert!(d.notes.iter().any(|n| n.service == Some(ServiceId::new("lo")) && n.text.contains("loopback")));
}

#[test]
fn names_shared_on_one_type_get_the_short_id_and_the_cap_holds() {
    // Proves two services of one name and type get unique instances (the older keeps the plain
    // name), the node's own records come first, and the cap leaves out the newest.
    let mut a = svc("aaaaaaaa-1111", "broker", "mqtt", "10.1.2.10", 1);
    a.created_at_ms = 5;
    let mut b = svc("bbbbbbbb-2222", "Broker", "mqtt", "10.1.2.11", 1);
    b.created_at_ms = 9;
    let c = svc("cccc", "other", "mqtt", "10.1.2.12", 1);
    let d = desired(&[b.clone(), a.clone()], &lan(), &BTreeMap::new(), Vec::new(), &BTreeMap::new(), 10);
    let mut names: Vec<&str> = d.announcements.values().map(|x| x.instance.as_str()).collect();
    names.sort();
    assert_eq!(names, ["Broker (bbbbbbbb)", "broker"]);
    assert_eq!(instance_label_with(&"x".repeat(80), "abc").len(), 63);
    let d = desired(&[a, b, c], &lan(), &BTreeMap::new(), Vec::new(), &BTreeMap::new(), 2);
    assert_eq!(d.announcements.len(), 2);
    assert_eq!(d.over_cap, 1);
    assert!(d.announcements.values().all(|x| x.instance != "Broker (bbbbbbbb)"), "newest left out");
    assert_eq!(service_host_name("Broker.LAN", "ab-cd"), "broker-lan-abcd.local.");
}

fn node_info(mode: Option<&str>) -> NodeInfo {
    NodeInfo {
        node: "n1".into(),
        cluster: "home".into(),
        version: "0.1.0".into(),
        api_port: 9999,
        addrs: vec![ip("10.1.2.3"), ip("127.0.0.1")],
        tls: true,
        mode: mode.map(str::to_string),
    }
}

#[test]
fn the_node_is_announced_as_muster_and_beacon() {
    // Proves the node's own records: both types, the API port, the TXT keys, loopback dropped,
    // and nothing at all without a usable address.
    let node = node_announcements(&node_info(Some("server")), &mut Vec::new());
    let types: Vec<&str> = node.iter().map(|a| a.service_type.as_str()).collect();
    assert_eq!(types, ["_muster._tcp.local.", "_beacon._tcp.local."]);
    for a in &node {
        assert_eq!(a.port, 9999);
        assert_eq!(a.addrs, vec![ip("10.1.2.3")]);
        let txt: BTreeMap<_, _> = a.txt.iter().cloned().collect();
        assert_eq!(txt["node"], "n1");
        assert_eq!(txt["cluster"], "home");
        assert_eq!(txt["version"], "0.1.0");
        assert_eq!(txt["api"], "grpc,rest,ws");
        assert_eq!(txt["tls"], "on");
        assert_eq!(txt["mode"], "server");
    }
    let unknown = node_announcements(&node_info(None), &mut Vec::new());
    assert!(unknown[0].txt.iter().all(|(k, _)| k != "mode"));
    let mut lo = node_info(None);
    lo.addrs = vec![ip("127.0.0.1")];
    assert!(node_announcements(&lo, &mut Vec::new()).is_empty());
}

#[test]
fn plan_withdraws_gone_records_then_announces_new_and_changed_ones() {
    // Proves the diff: a deregistered or expired service is withdrawn, a changed port or
    // status is announced again, a renamed type withdraws the old name, unchanged is no step.
    let a = svc("a", "a", "mqtt", "10.1.2.10", 1883);
    let b = svc("b", "b", "mqtt", "10.1.2.11", 1883);
    let c = svc("c", "c", "mqtt", "10.1.2.12", 1883);
    let none = BTreeMap::new();
    let before = desired(&[a.clone(), b.clone(), c.clone()], &lan(), &none, Vec::new(), &BTreeMap::new(), 10)
        .announcements;
    let first = plan(&BTreeMap::new(), &before);
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|e| matches!(e, Effect::Announce(_))));
    assert!(plan(&before, &before).is_empty(), "no change, no step");

    let mut b2 = b.clone();
    b2.port = 8883;
    let mut c2 = c.clone();
    c2.mdns_service_type = Some("_secure-mqtt._tcp".into());
    let mut a2 = a.clone();
    a2.status = Status::Expired;
    let after = desired(&[a2, b2, c2], &lan(), &none, Vec::new(), &BTreeMap::new(), 10).announcements;
    let steps = plan(&before, &after);
    let withdrawn: Vec<&str> = steps
        .iter()
        .filter_map(|e| match e {
            Effect::Withdraw { fullname, .. } => Some(fullname.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(withdrawn, ["a._mqtt._tcp.local.", "c._mqtt._tcp.local."]);
    let announced: Vec<(String, u16)> = steps
        .iter()
        .filter_map(|e| match e {
            Effect::Announce(x) => Some((x.fullname(), x.port)),
            _ => None,
        })
        .collect();
    assert_eq!(
        announced,
        [("b._mqtt._tcp.local.".to_string(), 8883), ("c._secure-mqtt._tcp.local.".to_string(), 1883)]
    );
    // Withdrawals come before announcements.
    let first_announce = steps.iter().position(|e| matches!(e, Effect::Announce(_))).unwrap();
    assert!(steps[..first_announce].iter().all(|e| matches!(e, Effect::Withdraw { .. })));

    let mut b3 = b.clone();
    b3.status = Status::Unhealthy;
    let unhealthy = desired(&[b3], &lan(), &none, Vec::new(), &BTreeMap::new(), 10).announcements;
    let prev = desired(&[b], &lan(), &none, Vec::new(), &BTreeMap::new(), 10).announcements;
    match plan(&prev, &unhealthy).as_slice() {
        [Effect::Announce(x)] => assert!(x.txt.contains(&("status".to_string(), "unhealthy".to_string()))),
        other => panic!("unexpected steps {other:?}"),
    }
}

#[test]
fn host_cache_looks_up_due_names_and_keeps_results_for_a_while() {
    // Proves the lookup cache: new names are due, in-flight ones are not, results hold for
    // their time limit (failures shorter), and forgotten names leave.
    let t0 = Instant::now();
    let mut c = HostCache::default();
    let wanted = ["a.lan".to_string(), "b.lan".to_string()].into_iter().collect();
    assert_eq!(c.due(&wanted, t0, 1), ["a.lan"]);
    c.started("a.lan");
    assert_eq!(c.due(&wanted, t0, 8), ["b.lan"]);
    assert!(c.store("a.lan", Some(vec![ip("10.1.2.7")]), t0));
    assert!(c.store("b.lan", None, t0));
    assert!(c.due(&wanted, t0 + Duration::from_secs(1), 8).is_empty());
    assert_eq!(c.due(&wanted, t0 + FAILED_TTL, 8), ["b.lan"]);
    assert_eq!(c.due(&wanted, t0 + RESOLVED_TTL, 8), ["a.lan", "b.lan"]);
    assert!(!c.store("a.lan", Some(vec![ip("10.1.2.7")]), t0 + RESOLVED_TTL), "same answer, no change");
    assert_eq!(c.resolved()["a.lan"], vec![ip("10.1.2.7")]);
    c.retain(&["b.lan".to_string()].into_iter().collect());
    assert!(!c.resolved().contains_key("a.lan"));
}

#[test]
fn a_shared_name_stays_with_its_service_when_the_other_goes() {
    // Proves instance names are sticky: when the older of two same-named services goes, its
    // name is withdrawn (not handed to the other, which keeps its suffixed name); and a name
    // that does move to another service is withdrawn before it is announced again.
    let mut a = svc("aaaaaaaa-1", "broker", "mqtt", "10.1.2.10", 1);
    a.created_at_ms = 1;
    let mut b = svc("bbbbbbbb-2", "broker", "mqtt", "10.1.2.11", 1);
    b.created_at_ms = 2;
    let none = BTreeMap::new();
    let both =
        desired(&[a.clone(), b.clone()], &lan(), &none, Vec::new(), &BTreeMap::new(), 10).announcements;
    let only_b = desired(&[b.clone()], &lan(), &none, Vec::new(), &both, 10).announcements;
    let names: Vec<&str> = only_b.values().map(|x| x.instance.as_str()).collect();
    assert_eq!(names, ["broker (bbbbbbbb)"]);
    match plan(&both, &only_b).as_slice() {
        [Effect::Withdraw { fullname, service }] => {
            assert_eq!(fullname, "broker._mqtt._tcp.local.");
            assert_eq!(service.as_ref().unwrap().as_str(), "aaaaaaaa-1");
        }
        other => panic!("unexpected steps {other:?}"),
    }
    // A fresh start (nothing announced) gives b the plain name; a renamed service drops its
    // old suffixed name.
    let fresh = desired(&[b.clone()], &lan(), &none, Vec::new(), &BTreeMap::new(), 10).announcements;
    assert_eq!(fresh.values().next().unwrap().instance, "broker");
    let mut renamed = b.clone();
    renamed.name = "mosquitto".into();
    let after = desired(&[renamed], &lan(), &none, Vec::new(), &only_b, 10).announcements;
    assert_eq!(after.values().next().unwrap().instance, "mosquitto");
    // The plain name moving from a to b: withdrawn first, then announced.
    let steps = plan(&desired(&[a], &lan(), &none, Vec::new(), &BTreeMap::new(), 10).announcements, &fresh);
    assert!(
        matches!(steps.as_slice(), [Effect::Withdraw { .. }, Effect::Announce(x)] if x.instance == "broker")
    );
}
