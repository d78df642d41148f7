//! Tests of the whole merge: precedence between flag, env, file and default, the seed's
//! environment names, and the messages users see.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: AgentArgs,
}

fn args(flags: &[&str]) -> AgentArgs {
    let argv = std::iter::once("muster").chain(flags.iter().copied());
    Cli::try_parse_from(argv).unwrap().args
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k: &str| map.get(k).cloned()
}

fn file(text: &str) -> FileConfig {
    FileConfig::parse(Path::new("test.json"), text).unwrap()
}

fn merged(flags: &[&str], vars: &[(&str, &str)], text: Option<&str>) -> Result<Config, ConfigError> {
    let f = text.map(file);
    let c = merge(&args(flags), &env(vars), f.as_ref())?;
    c.validate()?;
    Ok(c)
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    // Proves the precedence chain on a scalar, a parsed value and a list, one source at a time.
    let text = Some(r#"{"node":"file","role":"server","join":["file:1"],"retry_interval":"5s"}"#);
    let flags = ["--node", "flag", "--role", "auto", "--join", "flag:1", "--retry-interval", "2s"];
    let vars =
        [("MUSTER_NODE", "env"), ("ROLE", "agent"), ("SERF_JOIN", "env:1"), ("MUSTER_RETRY_INTERVAL", "3s")];

    let c = merged(&flags, &vars, text).unwrap();
    assert_eq!((c.node.as_str(), c.role, c.retry_interval_ms), ("flag", Role::Auto, 2_000));
    assert_eq!(c.join, ["flag:1"]);

    let c = merged(&[], &vars, text).unwrap();
    assert_eq!((c.node.as_str(), c.role, c.retry_interval_ms), ("env", Role::Agent, 3_000));
    assert_eq!(c.join, ["env:1"]);

    let c = merged(&[], &[], text).unwrap();
    assert_eq!((c.node.as_str(), c.role, c.retry_interval_ms), ("file", Role::Server, 5_000));
    assert_eq!(c.join, ["file:1"]);

    let c = merged(&[], &[], None).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.node, default_node_name());
    assert_eq!(c.bind, "0.0.0.0:7946".parse().unwrap());
    assert_eq!(c.http_addr, "0.0.0.0:9999".parse().unwrap());
    assert_eq!(c.cluster, "muster");
    assert_eq!(c.log, LogConfig::default());
}

#[test]
fn muster_env_names_beat_the_seed_names_and_blank_env_is_unset() {
    // Proves MUSTER_ROLE wins over ROLE, and that `SERF_JOIN=` (as compose writes it) falls
    // through to the file instead of clearing the list.
    let c = merged(&[], &[("MUSTER_ROLE", "server"), ("ROLE", "agent")], None).unwrap();
    assert_eq!(c.role, Role::Server);
    let c = merged(&[], &[("SERF_JOIN", " "), ("MUSTER_JOIN", "")], Some(r#"{"join":"f"}"#));
    assert_eq!(c.unwrap().join, ["f"]);
}

#[test]
fn serf_join_splits_on_commas() {
    // Proves SERF_JOIN's comma-separated list, with spaces and empty items tolerated.
    let c = merged(&[], &[("SERF_JOIN", "a:7946, b ,,[::1]:8000")], None).unwrap();
    assert_eq!(c.join, ["a:7946", "b", "[::1]:8000"]);
    let c = merged(&["--join", "x,y", "--join", "z"], &[], None).unwrap();
    assert_eq!(c.join, ["x", "y", "z"]);
    let err = merged(&[], &[("SERF_JOIN", "a,b:notaport")], None).unwrap_err();
    assert!(err.to_string().contains("b:notaport"), "{err}");
}

#[test]
fn bad_choice_names_the_flag_the_source_and_the_choices() {
    // Proves the message format users see for a bad enum value from each source.
    let err = merged(&[], &[("ROLE", "x")], None).unwrap_err();
    assert_eq!(err.to_string(), "invalid value 'x' for --role (ROLE): expected one of auto, server, agent");
    let err = merged(&["--discovery", "dns"], &[], None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value 'dns' for --discovery: expected one of auto, mdns, serf, tailscale"
    );
    let err = merged(&[], &[], Some(r#"{"log_time":"unix"}"#)).unwrap_err();
    assert!(err.to_string().contains("for --log-time (config file test.json)"), "{err}");
    let err = merged(&[], &[("LOG_LEVEL", "loud")], None).unwrap_err();
    assert!(err.to_string().contains("--log-level (LOG_LEVEL)"), "{err}");
}

#[test]
fn seed_log_variables_are_read() {
    // Proves LOG_LEVEL/FORMAT/CALLER/TIME/NO_COLOR map onto LogConfig, case-insensitively.
    let vars = [
        ("LOG_LEVEL", "DEBUG"),
        ("LOG_FORMAT", "json"),
        ("LOG_CALLER", "full"),
        ("LOG_TIME", "rfc3339"),
        ("LOG_NO_COLOR", "1"),
    ];
    let c = merged(&[], &vars, None).unwrap();
    let want = LogConfig {
        level: tracing::Level::DEBUG,
        format: LogFormat::Json,
        caller: LogCaller::Full,
        time: LogTime::Rfc3339,
        no_color: true,
    };
    assert_eq!(c.log, want);
}

#[test]
fn tags_come_from_flags_env_or_file_and_bad_ones_are_named() {
    // Proves the three tag syntaxes and that a bad or repeated tag is an error naming --tag.
    let c = merged(&["--tag", "a=1", "--tag", "b=x,y"], &[], None).unwrap();
    let want: BTreeMap<String, String> = [("a".into(), "1".into()), ("b".into(), "x,y".into())].into();
    assert_eq!(c.tags, want);
    let c = merged(&[], &[("MUSTER_TAGS", "a=1, b=x")], None).unwrap();
    assert_eq!(c.tags.get("b").map(String::as_str), Some("x"));
    let c = merged(&[], &[], Some(r#"{"tags":{"a":"1"}}"#)).unwrap();
    assert_eq!(c.tags.get("a").map(String::as_str), Some("1"));

    let err = merged(&["--tag", "=v"], &[], None).unwrap_err();
    assert_eq!(err.to_string(), "invalid value '=v' for --tag: expected KEY=VALUE with a non-empty KEY");
    let err = merged(&[], &[("MUSTER_TAGS", "a=1,novalue")], None).unwrap_err();
    assert!(err.to_string().contains("'novalue' for --tag (MUSTER_TAGS)"), "{err}");
    let err = merged(&["--tag", "a=1", "--tag", "a=2"], &[], None).unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
}

#[test]
fn encrypt_key_comes_from_serf_env_and_bad_lengths_fail() {
    // Proves SERF_ENCRYPT_KEY is read, and a 20-byte key fails naming the flag and the count.
    let key16 = "AAAAAAAAAAAAAAAAAAAAAA==";
    let c = merged(&[], &[("SERF_ENCRYPT_KEY", key16)], None).unwrap();
    assert_eq!(c.encrypt_key.as_deref(), Some(key16));
    let key20 = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let err = merged(&["--encrypt", key20], &[], None).unwrap_err().to_string();
    assert!(err.contains("--encrypt") && err.contains("20 bytes"), "{err}");
    assert!(!err.contains(key20), "the key leaked: {err}");
}

#[test]
fn bare_ips_get_default_ports() {
    // Proves a bare --bind IP gets 7946 and a bare --advertise IP gets the bind port.
    let c = merged(&["--bind", "10.0.0.5:8001", "--advertise", "192.0.2.1"], &[], None).unwrap();
    assert_eq!(c.bind, "10.0.0.5:8001".parse().unwrap());
    assert_eq!(c.advertise, Some("192.0.2.1:8001".parse().unwrap()));
    let c = merged(&["--bind", "10.0.0.5", "--http-addr", "127.0.0.1"], &[], None).unwrap();
    assert_eq!(c.bind, "10.0.0.5:7946".parse().unwrap());
    assert_eq!(c.http_addr, "127.0.0.1:9999".parse().unwrap());
    let err = merged(&["--advertise", "0.0.0.0"], &[], None).unwrap_err();
    assert!(err.to_string().contains("--advertise"), "{err}");
}

#[test]
fn unknown_file_key_is_an_error_naming_it() {
    // Proves a typo in the config file stops the load with the key in the message.
    let err = FileConfig::parse(Path::new("c.json"), r#"{"nod":"a"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown key 'nod'"), "{err}");
}

#[test]
fn load_reads_the_file_named_by_the_env() {
    // Proves Config::load finds MUSTER_CONFIG_FILE, reads it and validates the result.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("muster.json");
    std::fs::write(&path, r#"{"node":"from-file","cluster":"bad.name"}"#).unwrap();
    let path_text = path.display().to_string();
    let err = Config::load(&args(&[]), env(&[("MUSTER_CONFIG_FILE", &path_text)])).unwrap_err();
    assert!(err.to_string().contains("--cluster"), "{err}");
    let c = Config::load(&args(&["--cluster", "good"]), env(&[("MUSTER_CONFIG_FILE", &path_text)])).unwrap();
    assert_eq!((c.node.as_str(), c.cluster.as_str()), ("from-file", "good"));
    assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
    let missing = Config::load(&args(&["--config-file", "/nonexistent/x.json"]), env(&[]));
    assert!(missing.unwrap_err().to_string().contains("/nonexistent/x.json"));
}

#[test]
fn redacted_view_hides_the_key() {
    // Proves neither the log line nor Debug ever print the encryption key.
    let key = "AAAAAAAAAAAAAAAAAAAAAA==";
    let c = Config { encrypt_key: Some(key.into()), ..Config::default() };
    let line = c.redacted().to_string();
    assert!(line.contains("encrypt=<redacted>") && !line.contains(key), "{line}");
    let debug = format!("{c:?}");
    assert!(debug.contains("<redacted>") && !debug.contains(key), "{debug}");
    assert!(Config::default().redacted().to_string().contains("encrypt=none"));
}

#[test]
fn history_max_comes_from_flag_env_or_file_within_its_bounds() {
    // Proves --history-max follows flag > env > file > default, defaults to 10000, and that a
    // value outside 10..=10000000 or not a number stops the node naming the flag and the range.
    let text = Some(r#"{"history_max":300}"#);
    let c = merged(&["--history-max", "20"], &[("MUSTER_HISTORY_MAX", "100")], text).unwrap();
    assert_eq!(c.history_max, 20, "the flag wins");
    assert_eq!(merged(&[], &[("MUSTER_HISTORY_MAX", "100")], text).unwrap().history_max, 100, "env next");
    assert_eq!(merged(&[], &[], text).unwrap().history_max, 300, "then the file");
    assert_eq!(merged(&[], &[], None).unwrap().history_max, 10_000, "then the default");
    assert_eq!(merged(&["--history-max", "10"], &[], None).unwrap().history_max, 10, "10 is allowed");
    let top = merged(&["--history-max", "10000000"], &[], None).unwrap();
    assert_eq!(top.history_max, 10_000_000, "10000000 is allowed");

    let err = merged(&["--history-max", "9"], &[], None).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid --history-max (MUSTER_HISTORY_MAX): must be 10 to 10000000 events (got 9)"),
        "{err}"
    );
    let err = merged(&[], &[("MUSTER_HISTORY_MAX", "10000001")], None).unwrap_err().to_string();
    assert!(err.contains("--history-max") && err.contains("(got 10000001)"), "{err}");
    let err = merged(&[], &[("MUSTER_HISTORY_MAX", "lots")], None).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid value 'lots' for --history-max (MUSTER_HISTORY_MAX): \
         expected a whole number of events from 10 to 10000000"
    );
    let err = merged(&[], &[], Some(r#"{"history_max":-5}"#)).unwrap_err().to_string();
    assert!(err.contains("--history-max (config file test.json)"), "{err}");
    assert!(c.redacted().to_string().contains(" history_max=20 "), "the start-up line shows it");
}

#[test]
fn api_limits_come_from_flags_env_or_file_and_the_burst_follows_the_rate() {
    // Proves the stream and write-rate settings: their defaults (4096, 256, 1000/s, burst
    // 2000), flag > env > file, --write-burst defaulting to twice the effective --write-rate,
    // 0 = unlimited, and errors that name the flag and the allowed range.
    let d = merged(&[], &[], None).unwrap();
    assert_eq!((d.api_streams_max, d.api_streams_per_client_max), (4096, 256));
    assert_eq!((d.write_rate_per_s, d.write_burst), (1000, 2000));
    let text = Some(r#"{"write_rate":50,"api_streams_per_client_max":8}"#);
    let c = merged(&[], &[], text).unwrap();
    assert_eq!((c.write_rate_per_s, c.write_burst, c.api_streams_per_client_max), (50, 100, 8));
    let c = merged(&["--write-rate", "7"], &[("MUSTER_WRITE_BURST", "9")], text).unwrap();
    assert_eq!((c.write_rate_per_s, c.write_burst), (7, 9));
    let c = merged(&["--api-streams-max", "2", "--api-streams-per-client-max", "1"], &[], None).unwrap();
    assert_eq!((c.api_streams_max, c.api_streams_per_client_max), (2, 1));
    let c = merged(&["--write-rate", "0"], &[], None).unwrap();
    assert_eq!((c.write_rate_per_s, c.write_burst), (0, 0), "0 turns the limit off");
    let line = c.redacted().to_string();
    assert!(
        line.contains(" write_rate=0 write_burst=0 ") && line.contains(" api_streams_max=4096 "),
        "{line}"
    );

    let err = merged(&["--api-streams-max", "0"], &[], None).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid --api-streams-max (MUSTER_API_STREAMS_MAX): must be 1 to 1000000 streams (got 0)"
    );
    let err = merged(&["--api-streams-max", "10"], &[], None).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid --api-streams-per-client-max") && err.contains("above --api-streams-max"),
        "{err}"
    );
    let err = merged(&["--write-rate", "10", "--write-burst", "0"], &[], None).unwrap_err().to_string();
    assert!(err.starts_with("invalid --write-burst (MUSTER_WRITE_BURST): must be 1 to 2000000"), "{err}");
    let err = merged(&[], &[("MUSTER_WRITE_RATE", "fast")], None).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid value 'fast' for --write-rate (MUSTER_WRITE_RATE): \
         expected a whole number of writes a second (0 = unlimited)"
    );
    let err = merged(&["--write-rate", "1000001"], &[], None).unwrap_err().to_string();
    assert!(err.contains("must be 0 (unlimited) to 1000000 writes a second (got 1000001)"), "{err}");
}

#[test]
fn supervisor_settings_come_from_flags_env_or_file_and_bad_ones_name_the_flag() {
    // Proves the stack settings: flag > env > file, the defaults (no stack file, Docker's
    // socket, a 10 s stop timeout, no hooks), and clear errors for a stop timeout out of range
    // or not whole seconds and for an empty path.
    let c = merged(&[], &[], None).unwrap();
    assert_eq!((c.stack_file.clone(), c.docker_socket.to_str()), (None, Some("/var/run/docker.sock")));
    assert_eq!((c.stack_stop_timeout_ms, c.hooks.on_promote.clone()), (10_000, None));
    let text = Some(r#"{"stack_file":"/etc/muster/stack.yml","stack_stop_timeout":"30s"}"#);
    let env = [("MUSTER_STACK_FILE", "/srv/stack.yml"), ("MUSTER_ON_DEMOTE", "/bin/demote")];
    let c = merged(&["--on-promote", "/bin/promote", "--docker-socket", "/run/d.sock"], &env, text).unwrap();
    assert_eq!(c.stack_file.as_deref(), Some(std::path::Path::new("/srv/stack.yml")), "env beats file");
    assert_eq!(c.stack_stop_timeout_ms, 30_000, "from the file");
    assert_eq!(c.docker_socket.to_str(), Some("/run/d.sock"));
    assert_eq!(c.hooks.on_promote.as_deref(), Some(std::path::Path::new("/bin/promote")));
    assert_eq!(c.hooks.on_demote.as_deref(), Some(std::path::Path::new("/bin/demote")));
    let line = c.redacted().to_string();
    assert!(
        line.contains(" stack_file=/srv/stack.yml ") && line.contains(" stack_stop_timeout=30s "),
        "{line}"
    );

    for bad in ["0s", "301s", "1500ms"] {
        let err = merged(&["--stack-stop-timeout", bad], &[], None).unwrap_err().to_string();
        assert!(err.contains("--stack-stop-timeout") && err.contains("1s..300s"), "{bad}: {err}");
    }
    let err = merged(&[], &[], Some(r#"{"stack_file":""}"#)).unwrap_err().to_string();
    assert!(err.contains("--stack-file") && err.contains("the path is empty"), "{err}");
}

#[test]
fn exposure_warnings_name_each_unprotected_listener_off_loopback() {
    // Proves the start-up warnings: the defaults (gossip and API on every interface, RPC on
    // loopback) warn about unencrypted gossip and the open API; a key silences the first, an
    // all-loopback node hears nothing, and RPC off loopback warns with or without a token.
    let c = Config::default();
    let w = c.exposure_warnings(false);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with("gossip on 0.0.0.0:7946 is not encrypted") && w[0].contains("--encrypt"),
        "{w:?}"
    );
    assert!(w[1].starts_with("the API on 0.0.0.0:9999 has no TLS"), "{w:?}");
    assert!(w[2].starts_with("the API on 0.0.0.0:9999 takes writes from anyone"), "{w:?}");
    assert_eq!(c.exposure_warnings(true).len(), 2);
    // TLS silences the clear-text warning; tokens (or client certificates) the open-writes one.
    let files = crate::config::TlsFiles { cert: "c".into(), key: "k".into(), ca: "a".into() };
    let tls = Config { tls: Some(files), ..Config::default() };
    let w = tls.exposure_warnings(true);
    assert!(w.len() == 1 && w[0].contains("takes writes from anyone"), "{w:?}");
    let tokens = Config { tokens_file: Some("t".into()), ..tls.clone() };
    assert!(tokens.exposure_warnings(true).is_empty());
    assert!(Config { verify_incoming: true, ..tls }.exposure_warnings(true).is_empty());
    let local = Config {
        bind: "127.0.0.1:7946".parse().unwrap(),
        http_addr: "127.0.0.1:9999".parse().unwrap(),
        ..Config::default()
    };
    assert!(local.exposure_warnings(false).is_empty());
    let rpc = Config { rpc_addr: "10.0.0.5:7373".parse().unwrap(), ..local.clone() };
    let w = rpc.exposure_warnings(false);
    assert!(w.len() == 1 && w[0].contains("it has no --rpc-auth token"), "{w:?}");
    let rpc = Config { rpc_auth: Some("t".into()), ..rpc };
    let w = rpc.exposure_warnings(false);
    assert!(w.len() == 1 && w[0].contains("travels in clear text") && !w[0].contains("\"t\""), "{w:?}");
}

#[test]
fn insecure_gossip_is_a_bool_from_flag_env_or_file() {
    // Proves --insecure-gossip works like the other bool settings: off by default, the bare
    // flag means true, MUSTER_INSECURE_GOSSIP and the file key are read, a bad value names the
    // flag, and the start-up line and --help show it.
    assert!(!merged(&[], &[], None).unwrap().insecure_gossip);
    assert!(merged(&["--insecure-gossip"], &[], None).unwrap().insecure_gossip);
    let off = merged(&["--insecure-gossip=false"], &[("MUSTER_INSECURE_GOSSIP", "1")], None).unwrap();
    assert!(!off.insecure_gossip, "the flag wins");
    assert!(merged(&[], &[("MUSTER_INSECURE_GOSSIP", "yes")], None).unwrap().insecure_gossip);
    assert!(merged(&[], &[], Some(r#"{"insecure_gossip":true}"#)).unwrap().insecure_gossip);
    let err = merged(&[], &[("MUSTER_INSECURE_GOSSIP", "maybe")], None).unwrap_err().to_string();
    assert!(err.contains("--insecure-gossip (MUSTER_INSECURE_GOSSIP)"), "{err}");
    let on = merged(&["--insecure-gossip"], &[], None).unwrap();
    assert!(on.redacted().to_string().contains(" insecure_gossip=true "));
    let help = annotate_help(<Cli as clap::CommandFactory>::command()).render_long_help().to_string();
    assert!(help.contains("[default: false] [env: MUSTER_INSECURE_GOSSIP]"), "{help}");
}

#[test]
fn mdns_announce_is_a_bool_on_by_default() {
    // Proves --mdns-announce is on by default, read from the flag, MUSTER_MDNS_ANNOUNCE and the
    // file key (the flag winning), named in errors, and shown in the start-up line and --help.
    assert!(merged(&[], &[], None).unwrap().mdns_announce);
    let off = merged(&["--mdns-announce=false"], &[("MUSTER_MDNS_ANNOUNCE", "true")], None).unwrap();
    assert!(!off.mdns_announce, "the flag wins");
    assert!(!merged(&[], &[("MUSTER_MDNS_ANNOUNCE", "false")], None).unwrap().mdns_announce);
    assert!(!merged(&[], &[], Some(r#"{"mdns_announce":false}"#)).unwrap().mdns_announce);
    assert!(merged(&["--mdns-announce"], &[("MUSTER_MDNS_ANNOUNCE", "false")], None).unwrap().mdns_announce);
    let err = merged(&[], &[("MUSTER_MDNS_ANNOUNCE", "sometimes")], None).unwrap_err().to_string();
    assert!(err.contains("--mdns-announce (MUSTER_MDNS_ANNOUNCE)"), "{err}");
    assert!(off.redacted().to_string().contains(" mdns_announce=false "), "{}", off.redacted());
    let help = annotate_help(<Cli as clap::CommandFactory>::command()).render_long_help().to_string();
    assert!(help.contains("[default: true] [env: MUSTER_MDNS_ANNOUNCE]"), "{help}");
}
