//! A small Go-`regexp` matcher. Serf's `members-filtered` matches tags, status and name
//! against patterns anchored as `^(?:pattern)$`; a query's tag filter matches anywhere in the
//! tag's value (Go's `regexp.MatchString`).
//!
//! Supports the RE2 subset such filters use: literals, `.`, classes (`[a-z]`, `[^,]`, `\d`,
//! `\w`, `\s` and their negations), groups (`(..)`, `(?:..)`, `(?P<n>..)`), alternation,
//! `* + ?`, `{n}`, `{n,}`, `{n,m}` (lazy forms too), and `^`/`$` at the text's ends. Anything
//! else (flags, `\b`, Unicode classes, backreferences) is refused with a message rather than
//! guessed at. Matching is a Pike VM over a compiled program: linear in the text, never
//! backtracking. Pure; imports nothing from the crate.

/// Go's RE2 refuses repeat counts above this.
const REPEAT_MAX: u32 = 1000;
/// Compiled programs larger than this are refused.
const PROGRAM_MAX: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regexp {pattern:?}: {reason}")]
pub struct RegexError {
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    Cat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32> },
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled pattern: matching the whole text, or (unanchored) anywhere in it.
#[derive(Debug, Clone)]
pub struct Regex {
    prog: Vec<Inst>,
    anywhere: bool,
}

impl Regex {
    /// Compiles `pattern` to match anywhere in a text, like Go's `regexp.MatchString`.
    pub fn unanchored(pattern: &str) -> Result<Regex, RegexError> {
        Ok(Regex { anywhere: true, ..Regex::anchored(pattern)? })
    }

    /// Compiles `pattern` to match whole texts only, like Serf's `^pattern$`.
    pub fn anchored(pattern: &str) -> Result<Regex, RegexError> {
        let fail = |reason: String| RegexError { pattern: pattern.to_string(), reason };
        let mut p = Parser { chars: pattern.chars().collect(), pos: 0 };
        let node = p.alt().map_err(fail)?;
        if p.pos < p.chars.len() {
            return Err(fail(format!("unexpected ) at offset {}", p.pos)));
        }
        let mut prog = Vec::new();
        compile(&node, &mut prog).map_err(fail)?;
        prog.push(Inst::Match);
        Ok(Regex { prog, anywhere: false })
    }

    /// Whether `text` matches: the whole of it, or for an unanchored pattern any part.
    pub fn is_match(&self, text: &str) -> bool {
        let n = self.prog.len();
        let chars: Vec<char> = text.chars().collect();
        let (mut cur, mut next) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut seen = vec![usize::MAX; n];
        self.add(&mut cur, &mut seen, 0, 0, chars.len());
        for (i, &c) in chars.iter().enumerate() {
            if self.anywhere {
                // A match may start here, and one that already ended needs no more text.
                self.add(&mut cur, &mut seen, 0, i, chars.len());
                if cur.iter().any(|&pc| matches!(self.prog[pc], Inst::Match)) {
                    return true;
                }
            }
            next.clear();
            for &pc in &cur {
                let ok = match &self.prog[pc] {
                    Inst::Char(want) => *want == c,
                    Inst::Any => c != '\n',
                    Inst::Class(class) => class.matches(c),
                    _ => false,
                };
                if ok {
                    self.add(&mut next, &mut seen, pc + 1, i + 1, chars.len());
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if cur.is_empty() && !self.anywhere {
                return false;
            }
        }
        if self.anywhere {
            self.add(&mut cur, &mut seen, 0, chars.len(), chars.len());
        }
        cur.iter().any(|&pc| matches!(self.prog[pc], Inst::Match))
    }

    /// Adds the thread at `pc` and everything reachable without consuming input at `pos`.
    fn add(&self, list: &mut Vec<usize>, seen: &mut [usize], pc: usize, pos: usize, len: usize) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if seen[pc] == pos {
                continue;
            }
            seen[pc] = pos;
            match self.prog[pc] {
                Inst::Jmp(to) => stack.push(to),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Start if pos == 0 => stack.push(pc + 1),
                Inst::End if pos == len => stack.push(pc + 1),
                Inst::Start | Inst::End => {}
                _ => list.push(pc),
            }
        }
    }
}

fn compile(node: &Node, prog: &mut Vec<Inst>) -> Result<(), String> {
    if prog.len() > PROGRAM_MAX {
        return Err(format!("pattern too large (more than {PROGRAM_MAX} steps)"));
    }
    match node {
        Node::Empty => {}
        Node::Char(c) => prog.push(Inst::Char(*c)),
        Node::Any => prog.push(Inst::Any),
        Node::Class(c) => prog.push(Inst::Class(c.clone())),
        Node::Start => prog.push(Inst::Start),
        Node::End => prog.push(Inst::End),
        Node::Cat(nodes) => {
            for n in nodes {
                compile(n, prog)?;
            }
        }
        Node::Alt(nodes) => {
            let mut jumps = Vec::new();
            for (i, n) in nodes.iter().enumerate() {
                if i + 1 < nodes.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(n, prog)?;
                    jumps.push(prog.len());
                    prog.push(Inst::Jmp(0));
                    let here = prog.len();
                    prog[split] = Inst::Split(split + 1, here);
                } else {
                    compile(n, prog)?;
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jmp(end);
            }
        }
        Node::Repeat { node, min, max } => {
            for _ in 0..*min {
                compile(node, prog)?;
            }
            match max {
                None => {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(node, prog)?;
                    prog.push(Inst::Jmp(split));
                    let end = prog.len();
                    prog[split] = Inst::Split(split + 1, end);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(prog.len());
                        prog.push(Inst::Split(prog.len() + 1, 0));
                        compile(node, prog)?;
                    }
                    let end = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, end);
                    }
                }
            }
        }
    }
    Ok(())
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn alt(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.cat()?];
        while self.eat('|') {
            branches.push(self.cat()?);
        }
        Ok(if branches.len() == 1 { branches.remove(0) } else { Node::Alt(branches) })
    }

    fn cat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.repeat(atom)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.remove(0),
            _ => Node::Cat(items),
        })
    }

    fn repeat(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some(op @ ('*' | '+' | '?')) => {
                self.pos += 1;
                match op {
                    '*' => (0, None),
                    '+' => (1, None),
                    _ => (0, Some(1)),
                }
            }
            Some('{') => match self.counts()? {
                Some(range) => range,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.eat('?'); // lazy or greedy: the same for a yes/no match
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            return Err(format!("invalid nested repetition operator at offset {}", self.pos));
        }
        if matches!(atom, Node::Start | Node::End) {
            return Err("missing argument to repetition operator".to_string());
        }
        Ok(Node::Repeat { node: Box::new(atom), min, max })
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor, consumed; None (nothing consumed) for a literal `{`.
    fn counts(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let Some(close) = rest.find('}') else { return Ok(None) };
        let inner = &rest[1..close];
        let num = |s: &str| {
            s.parse::<u32>().ok().filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        let range = match inner.split_once(',') {
            None => num(inner).map(|n| (n, Some(n))),
            Some((a, "")) => num(a).map(|n| (n, None)),
            Some((a, b)) => num(a).zip(num(b)).map(|(a, b)| (a, Some(b))),
        };
        let Some((min, max)) = range else { return Ok(None) };
        if min > REPEAT_MAX || max.is_some_and(|m| m > REPEAT_MAX || m < min) {
            return Err(format!("invalid repeat count {{{inner}}}"));
        }
        self.pos += inner.chars().count() + 2;
        Ok(Some((min, max)))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let at = self.pos;
        let Some(c) = self.peek() else { return Err("unexpected end of pattern".to_string()) };
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                if self.eat('?') {
                    if self.eat(':') {
                    } else if self.eat('P') && self.eat('<') {
                        while !self.eat('>') {
                            if self.peek().is_none() {
                                return Err("unterminated group name".to_string());
                            }
                            self.pos += 1;
                        }
                    } else {
                        return Err(format!(
                            "unsupported group syntax at offset {at} (flags are not supported)"
                        ));
                    }
                }
                let inner = self.alt()?;
                if !self.eat(')') {
                    return Err("missing closing )".to_string());
                }
                inner
            }
            ')' => return Err(format!("unexpected ) at offset {at}")),
            '[' => Node::Class(self.class()?),
            '*' | '+' | '?' => return Err(format!("missing argument to repetition operator at offset {at}")),
            '\\' => match self.escape()? {
                Esc::Char(c) => Node::Char(c),
                Esc::Class(class) => Node::Class(class),
            },
            c => Node::Char(c),
        })
    }

    fn escape(&mut self) -> Result<Esc, String> {
        let Some(c) = self.peek() else { return Err("trailing backslash at end of expression".to_string()) };
        self.pos += 1;
        let class =
            |negated: bool, ranges: &[(char, char)]| Esc::Class(Class { negated, ranges: ranges.to_vec() });
        const DIGIT: &[(char, char)] = &[('0', '9')];
        const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        const SPACE: &[(char, char)] = &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];
        Ok(match c {
            'd' => class(false, DIGIT),
            'D' => class(true, DIGIT),
            'w' => class(false, WORD),
            'W' => class(true, WORD),
            's' => class(false, SPACE),
            'S' => class(true, SPACE),
            't' => Esc::Char('\t'),
            'n' => Esc::Char('\n'),
            'r' => Esc::Char('\r'),
            'f' => Esc::Char('\x0c'),
            'v' => Esc::Char('\x0b'),
            c if c.is_ascii_punctuation() => Esc::Char(c),
            c => return Err(format!("unsupported escape sequence \\{c}")),
        })
    }

    fn class(&mut self) -> Result<Class, String> {
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else { return Err("missing closing ]".to_string()) };
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = match c {
                '\\' => match self.escape()? {
                    Esc::Char(c) => c,
                    Esc::Class(class) if !class.negated => {
                        ranges.extend(class.ranges);
                        continue;
                    }
                    Esc::Class(_) => return Err("negated classes inside [] are not supported".to_string()),
                },
                '[' if self.peek() == Some(':') => {
                    return Err("POSIX classes like [:alpha:] are not supported".to_string())
                }
                c => c,
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let Some(hi) = self.peek() else { return Err("missing closing ]".to_string()) };
                self.pos += 1;
                let hi = if hi == '\\' {
                    match self.escape()? {
                        Esc::Char(c) => c,
                        Esc::Class(_) => return Err("invalid character class range".to_string()),
                    }
                } else {
                    hi
                };
                if hi < lo {
                    return Err(format!("invalid character class range {lo}-{hi}"));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Class { negated, ranges })
    }
}

enum Esc {
    Char(char),
    Class(Class),
}

#[cfg(test)]
#[path = "go_regexp_tests.rs"]
mod tests;
