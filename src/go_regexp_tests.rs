//! Tests of the `members-filtered` regexp matcher.

use super::*;

fn m(p: &str, t: &str) -> bool {
    Regex::anchored(p).unwrap().is_match(t)
}

#[test]
fn patterns_match_the_whole_text_only() {
    // Proves Serf's ^(..)$ anchoring: a pattern that matches inside the text is not enough.
    assert!(m("web", "web"));
    assert!(!m("web", "web1"));
    assert!(!m("eb", "web"));
    assert!(m("", ""));
    assert!(!m("", "x"));
    assert!(m("^web$", "web"));
}

#[test]
fn the_usual_filter_syntax_works() {
    // Proves the constructs `serf members -tag`/`-name`/`-status` users write.
    assert!(m("w.*", "web") && m("w.*", "w") && !m("w.*", "db"));
    assert!(m("web|db", "db") && !m("web|db", "webdb"));
    assert!(m("(alive|failed)", "failed") && !m("(alive|failed)", "left"));
    assert!(m("node-[0-9]+", "node-42") && !m("node-[0-9]+", "node-"));
    assert!(m(r"node-\d{2,3}", "node-123") && !m(r"node-\d{2,3}", "node-1234"));
    assert!(m(r"10\.0\.\d+\.\d+", "10.0.3.4") && !m(r"10\.0\.\d+\.\d+", "10x0.3.4"));
    assert!(m("[^,]*", "a b") && !m("[^,]*", "a,b"));
    assert!(m("a?b+c*", "bb") && m("(?:ab)+", "abab") && !m("(?:ab)+", "aba"));
    assert!(m("(?P<zone>us|eu)-[a-z]", "eu-w"));
    assert!(m("x{3}", "xxx") && !m("x{3}", "xx") && m("x{2,}", "xxxxx"));
    assert!(m("a{,2}", "a{,2}"), "a brace that is no count is a literal, as in Go");
    assert!(m("[]a]+", "]a]"));
    assert!(m("(a*)*", "aaaa") && m("(a|)+b", "aab"));
    assert!(m("é.", "éñ"));
}

#[test]
fn bad_or_unsupported_patterns_are_refused_with_a_reason() {
    // Proves errors name the pattern and the problem instead of matching something else.
    for p in ["(", "a)", "[a", "*a", "a**", r"\b", "(?i)web", "x{1001}", "x{3,2}", "[z-a]", "\\"] {
        let e = Regex::anchored(p).unwrap_err();
        assert_eq!(e.pattern, p);
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn matching_does_not_blow_up_on_pathological_patterns() {
    // Proves the Pike VM stays linear where a backtracker would take exponential time.
    let re = Regex::anchored("(a*)*(a|aa)*b").unwrap();
    assert!(!re.is_match(&"a".repeat(5000)));
    let re = Regex::anchored("(x+x+)+y").unwrap();
    assert!(!re.is_match(&"x".repeat(3000)));
}

#[test]
fn unanchored_patterns_match_anywhere_like_go_match_string() {
    // Proves a query tag filter's semantics: Go's regexp.MatchString finds the pattern
    // anywhere unless the pattern itself anchors with ^ or $.
    let u = |p: &str, t: &str| Regex::unanchored(p).unwrap().is_match(t);
    assert!(u("eb", "web") && u("web", "web1") && u("", "x") && u("", ""));
    assert!(u("^web$", "web") && !u("^web$", "web1") && !u("^eb", "web") && u("b$", "web"));
    assert!(u("d[0-9]", "node-d7x") && !u("d[0-9]", "node-dx"));
    assert!(!u("db", "web") && !u("x+", ""));
    assert!(u("a|z", "zzz") && u("(?:ab)+$", "xabab"));
}
