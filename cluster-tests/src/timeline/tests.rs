//! Tests of the whole page: what a run's picture contains, that it stays well-formed whatever
//! the run's text, and that a large history is thinned as promised. The part-level tests live
//! next to their parts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::history::Call;
use crate::nemesis::Phase;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// HTML elements that have no end tag.
const VOID: [&str; 3] = ["meta", "br", "hr"];

/// A rough well-formedness check: every tag is closed in order (void HTML elements aside),
/// every `&` starts an entity, and no `<` or `>` is left outside a tag.
fn well_formed(doc: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = doc;
    while let Some(open) = rest.find('<') {
        if rest[..open].contains('>') {
            return Err(format!("stray '>' before {:?}", &rest[open..(open + 40).min(rest.len())]));
        }
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unclosed comment")?;
            rest = &after[end + 3..];
            continue;
        }
        let close = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[1..close];
        if tag.contains('<') {
            return Err(format!("'<' inside tag {tag:?}"));
        }
        rest = &rest[close + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name = tag.split_whitespace().next().ok_or("empty tag")?;
        if !VOID.contains(&name) {
            stack.push(name);
        }
    }
    if rest.contains('>') {
        return Err("stray '>' at the end".into());
    }
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    for (k, _) in doc.match_indices('&') {
        let entity: String = doc[k + 1..].chars().take_while(|c| *c != ';').take(9).collect();
        let known = ["amp", "lt", "gt", "quot", "#39"].contains(&entity.as_str());
        if !known {
            return Err(format!("bare '&' before {:?}", &doc[k..(k + 12).min(doc.len())]));
        }
    }
    Ok(())
}

/// The ops plot of a page (the legend has op swatches too).
fn plotted(page: &str) -> &str {
    page.find(r#"<g class="ops">"#).map_or("", |k| &page[k..])
}

fn ev(t_ns: u64, phase: Phase, fault: &str, nodes: &[&str], ok: bool) -> Event {
    Event {
        t_ns,
        phase,
        fault: fault.into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        detail: String::new(),
        ok,
    }
}

fn sample(t_ns: u64, node: &str, leader: Option<&str>, term: Option<u64>, error: Option<&str>) -> Sample {
    Sample { t_ns, node: node.into(), leader: leader.map(Into::into), term, error: error.map(Into::into) }
}

fn op(client: usize, node: &str, call: Call, invoke_ns: u64, took_ns: u64, outcome: Outcome) -> Op {
    Op {
        client,
        node: node.into(),
        call,
        invoke_ns,
        complete_ns: invoke_ns + took_ns,
        outcome,
        code: None,
        error: None,
        value: None,
        revision: None,
    }
}

fn verdict(checker: &str, ok: bool, explanation: &str, violations: &[&str]) -> Verdict {
    Verdict {
        checker: checker.into(),
        ok,
        explanation: explanation.into(),
        violations: violations.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn the_well_formedness_check_rejects_broken_markup() {
    // Proves the checker used below can fail: unclosed, crossed and stray markup and bare ampersands are caught.
    assert!(well_formed("<p><b>x</b><br></p>").is_ok());
    assert!(well_formed("<p><b>x</p></b>").is_err());
    assert!(well_formed("<p>x").is_err());
    assert!(well_formed("<p>a > b</p>").is_err());
    assert!(well_formed("<p>a & b</p>").is_err());
    assert!(well_formed("<p title=\"<x>\">a</p>").is_err());
}

#[test]
fn a_small_run_shows_its_faults_leaders_ops_and_verdicts() {
    // Proves the page carries each input: fault labels with tooltips, a node's leader segment, an unknown op's tooltip, the verdicts and counts.
    let faults = vec![
        ev(S, Phase::Start, "isolate", &["n2"], true),
        ev(4 * S, Phase::Heal, "partition", &["n1", "n2", "n3"], true),
        ev(5 * S, Phase::Start, "kill", &["n1"], false),
        ev(6 * S, Phase::Heal, "restart", &["n3"], true),
    ];
    let leaders = vec![
        sample(0, "n1", Some("n1"), Some(2), None),
        sample(0, "n2", Some("n1"), Some(2), None),
        sample(2 * S, "n2", None, None, Some("no answer within 400ms")),
        sample(3 * S, "n2", Some("n3"), Some(3), None),
    ];
    let mut unknown =
        op(1, "n2", Call::Register { id: "c1-s1".into(), version: 1 }, 2 * S, 3 * S, Outcome::Unknown);
    unknown.code = Some("DEADLINE_EXCEEDED".into());
    let ops = vec![
        op(0, "n1", Call::Get { id: "c0-s1".into() }, S / 2, 3 * MS, Outcome::Ok),
        unknown,
        op(2, "n3", Call::List, 5 * S, 40 * MS, Outcome::Fail),
    ];
    let verdicts = vec![
        verdict("converged", true, "ok: 3 nodes", &[]),
        verdict("lost", false, "1 violation", &["c9 gone"]),
    ];
    let page = html("seed 7", &ops, &faults, &leaders, &verdicts);
    well_formed(&page).unwrap();
    for want in [
        "<title>seed 7</title>",
        r#"<span class="bad">FAIL</span> seed 7"#,
        ">isolate n2</text>",
        "isolate n2 1.000s → 4.000s",
        ">kill n1 ✗</text>",
        "kill n1 (FAILED) 5.000s → never healed",
        ">restart n3</text>",
        "n2 follows leader n1 (term 2)",
        "n2 did not answer: no answer within 400ms",
        "n2 follows leader n3 (term 3)",
        "n2: term 2 → 3 at 3.000s",
        "register c1-s1 v1 · client 1 → n2 · unknown DEADLINE_EXCEEDED\ninvoked 2.000s · completed 5.000s · took 3.00s",
        "get c0-s1 · client 0 → n1 · ok",
        "list · client 2 → n3 · fail",
        r#"<td class="bad">FAIL</td><td>1 violation<details><summary>1 violation(s) listed</summary><ul><li>c9 gone</li>"#,
        "3 ops (1 ok, 1 fail, 1 unknown; 1 writes, 2 reads)",
        "4 nemesis events in 3 faults (1 failed actions)",
    ] {
        assert!(page.contains(want), "missing {want:?} in:\n{page}");
    }
    assert_eq!(plotted(&page).matches(r#"<g class="op unknown">"#).count(), 1);
    assert!(!page.contains("every 1th"), "no subsample note for a small run");
}

#[test]
fn text_from_the_run_is_escaped_everywhere_it_appears() {
    // Proves markup in a title, node names, errors and verdicts is shown as text and the page stays well-formed.
    let evil = "<script>alert('x')</script> & \"q\" \u{1}";
    let mut bad = op(0, evil, Call::Get { id: evil.into() }, 0, MS, Outcome::Fail);
    bad.error = Some(evil.into());
    bad.code = Some(evil.into());
    let mut split = ev(S, Phase::Start, "split", &[evil], false);
    split.detail = evil.into();
    let leaders = vec![sample(0, evil, Some(evil), Some(1), None), sample(S, "n1", None, None, Some(evil))];
    let page = html(evil, &[bad], &[split], &leaders, &[verdict(evil, false, evil, &[evil])]);
    well_formed(&page).unwrap();
    assert!(!page.contains("<script>"));
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot; \u{FFFD}"));
}

#[test]
fn a_large_history_is_thinned_but_keeps_every_non_ok_op_and_says_so() {
    // Proves the page stays bounded for a long run: the note is shown and every unknown op still has its own element.
    let ops: Vec<Op> = (0..(OPS_DRAWN_MAX as u64 + 5_000))
        .map(|k| {
            let outcome = if k % 500 == 0 { Outcome::Unknown } else { Outcome::Ok };
            op(0, "n1", Call::Get { id: format!("c0-s{k}") }, k * MS, 2 * MS, outcome)
        })
        .collect();
    let unknown = ops.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    let page = html("big", &ops, &[], &[], &[]);
    assert!(page.contains(&format!("The history has {} ops", ops.len())), "no note");
    assert_eq!(plotted(&page).matches(r#"<g class="op unknown">"#).count(), unknown);
    assert!(plotted(&page).matches("<g class=\"op ").count() <= OPS_DRAWN_MAX);
    assert!(page.len() < 8_000_000, "{} bytes", page.len());
    assert!(page.contains("No checker ran."));
    assert!(page.contains("no leadership samples"));
}

/// A 22 s run shaped like the smoke test's: leader isolated, a node killed and started again,
/// one paused, one restarted; four clients, three nodes polled every 250 ms.
fn synthetic_run(seed: u64) -> (Vec<Op>, Vec<Event>, Vec<Sample>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let all = ["n1", "n2", "n3"];
    let faults = vec![
        ev(2 * S, Phase::Start, "isolate", &["n1"], true),
        ev(7 * S, Phase::Heal, "partition", &all, true),
        ev(9 * S, Phase::Start, "kill", &["n2"], true),
        ev(12 * S, Phase::Heal, "kill", &["n2"], true),
        ev(14 * S, Phase::Start, "pause", &["n3"], true),
        ev(17 * S, Phase::Heal, "pause", &["n3"], true),
        ev(19 * S, Phase::Heal, "restart", &["n1"], true),
        ev(22 * S, Phase::Heal, "partition", &all, true),
    ];
    // What each node believes at time t: (leader, term) or no answer.
    let belief = |node: &str, t: u64| -> Result<(Option<&'static str>, u64), &'static str> {
        let s = t as f64 / 1e9;
        match (node, s) {
            ("n1", s) if (2.0..7.0).contains(&s) => Ok((Some("n1"), 2)),
            (_, s) if s < 2.0 => Ok((Some("n1"), 2)),
            (_, s) if s < 3.4 => Ok((None, 3)),
            ("n2", s) if (9.0..12.0).contains(&s) => Err("UNAVAILABLE: connect error"),
            ("n3", s) if (14.0..17.0).contains(&s) => Err("no answer within 400ms"),
            (_, s) if s < 9.0 => Ok((Some("n2"), 3)),
            (_, s) if s < 10.6 => Ok((None, 4)),
            _ => Ok((Some("n3"), 4)),
        }
    };
    let mut leaders = Vec::new();
    for k in 0..88u64 {
        for (i, node) in all.iter().enumerate() {
            let t = k * 250 * MS + i as u64 * 3 * MS;
            leaders.push(match belief(node, t) {
                Ok((leader, term)) => sample(t, node, leader, Some(term), None),
                Err(e) => sample(t, node, None, None, Some(e)),
            });
        }
    }
    let mut ops = Vec::new();
    for client in 0..4 {
        let mut t = rng.random_range(0..50) * MS;
        let mut n = 0;
        while t < 21 * S {
            let node = all[rng.random_range(0..3)];
            let write = rng.random_bool(0.6);
            n += 1;
            let call = if write {
                Call::Update { id: format!("c{client}-s{}", n % 5), version: n }
            } else {
                Call::Get { id: format!("c{client}-s{}", n % 5) }
            };
            let s = t as f64 / 1e9;
            let trouble = (2.0..3.4).contains(&s) || (9.0..10.6).contains(&s) || (14.0..17.0).contains(&s);
            let (outcome, took, code) = match (trouble, write, rng.random_range(0..10)) {
                (true, true, 0..=3) => (Outcome::Unknown, 3 * S, Some("DEADLINE_EXCEEDED")),
                (true, _, 0..=6) => (Outcome::Fail, rng.random_range(1..30) * MS, Some("UNAVAILABLE")),
                _ => (Outcome::Ok, rng.random_range(1_500..12_000) * 1_000, None),
            };
            let mut o = op(client, node, call, t, took, outcome);
            o.code = code.map(Into::into);
            ops.push(o);
            t += took + rng.random_range(20..60) * MS;
        }
    }
    ops.sort_by_key(|o| (o.invoke_ns, o.client));
    (ops, faults, leaders)
}

#[test]
fn a_run_shaped_like_the_smoke_test_renders_well_formed_and_small() {
    // Proves a realistic run (hundreds of ops, every fault kind, leadership moving twice) gives a well-formed page of modest size with every lane and fault.
    let (ops, faults, leaders) = synthetic_run(7);
    let page = html("smoke-like run", &ops, &faults, &leaders, &[verdict("converged", true, "ok", &[])]);
    well_formed(&page).unwrap();
    for want in [
        ">isolate n1</text>",
        ">kill n2</text>",
        ">pause n3</text>",
        ">restart n1</text>",
        ">heal partition</text>",
    ] {
        assert!(page.contains(want), "missing {want}");
    }
    for node in ["n1", "n2", "n3"] {
        assert!(page.contains(&format!(">{node} sees</text>")), "no lane for {node}");
    }
    assert!(page.contains("n1: term 2 → 3"), "n1's term change after the heal is marked");
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
}

#[test]
#[ignore = "writes a demo page to the temp dir for a look: cargo test -p cluster-tests --lib -- --ignored demo"]
fn demo_page_of_a_synthetic_run() {
    // Proves nothing by itself: writes $TMPDIR/muster-timeline-demo.html from a synthetic run to read or open.
    let (ops, faults, leaders) = synthetic_run(7);
    let verdicts = vec![
        verdict("no-acknowledged-write-lost", true, "ok: 20 ids against 3 node listings", &[]),
        verdict(
            "converged",
            false,
            "1 violation(s) while checking 3 nodes; first: n3 lists 19 services, n1 20",
            &["n3 lists 19 services, n1 20"],
        ),
    ];
    let page = html("synthetic run, seed 7", &ops, &faults, &leaders, &verdicts);
    well_formed(&page).unwrap();
    let path = std::env::temp_dir().join("muster-timeline-demo.html");
    std::fs::write(&path, &page).unwrap();
    eprintln!("wrote {} ({} bytes)", path.display(), page.len());
}
