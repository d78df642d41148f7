//! API tokens (`--tokens-file`): names, scopes and secrets, and the check of a presented
//! secret against a needed scope. A pure core: the file's text comes in, answers go out; the
//! node reads the file (and again on SIGHUP), the API and Serf RPC ask [`Tokens::check`].
//!
//! The file has one token per line, `NAME SCOPE SECRET`, `#` starts a comment:
//!
//! ```text
//! # name      scope     secret
//! deployer    write     kQ3v...
//! ops         operator  Zx8p...
//! ```
//!
//! Scopes nest: `operator` may do what `write` may, `write` what `read` may. Secrets are
//! compared in constant time and never logged or shown; errors name the line, not the secret.
//! Must not import anything of the node.

use std::fmt;

/// The shortest secret accepted: 16 characters (`muster token create` makes 43).
pub const SECRET_LEN_MIN: usize = 16;
/// The longest secret accepted.
pub const SECRET_LEN_MAX: usize = 512;
/// The longest token name.
pub const NAME_LEN_MAX: usize = 64;
/// The most tokens a file may hold.
pub const TOKENS_MAX: usize = 10_000;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Reads: list, get, watch, members, status.
    Read,
    /// Reads and registry writes: register, update, deregister, heartbeat, cleanup.
    Write,
    /// Everything: also leadership transfer, leave, and Serf RPC commands that change the
    /// cluster (force-leave, keys, tags, join, leave).
    Operator,
}

impl Scope {
    pub const CHOICES: &'static [&'static str] = &["read", "write", "operator"];

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "operator" => Some(Scope::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Operator => "operator",
        }
    }

    /// Whether a token of this scope may do what `need` asks.
    pub fn covers(self, need: Scope) -> bool {
        self >= need
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One token. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    secret: Vec<u8>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("scope", &self.scope).finish_non_exhaustive()
    }
}

/// A line of the tokens file that is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Why a call was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this call needs a token with scope {need}: send the header `authorization: Bearer <token>`")]
    Missing { need: Scope },
    #[error("the token is not valid on this node (not in its tokens file)")]
    Unknown,
    #[error("token '{name}' has scope {has}; this call needs {need}")]
    Scope { name: String, has: Scope, need: Scope },
}

impl Denied {
    /// Missing and unknown tokens are authentication failures (401, UNAUTHENTICATED); a
    /// known token with too small a scope is a permission failure (403, PERMISSION_DENIED).
    pub fn is_authentication(&self) -> bool {
        !matches!(self, Denied::Scope { .. })
    }
}

/// The tokens of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    list: Vec<Token>,
}

/// Checks a token name on its own (for `muster token create`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name_ok(name) {
        Ok(())
    } else {
        Err(format!("token name '{name}': use 1 to {NAME_LEN_MAX} of A-Z a-z 0-9 _ - ."))
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn secret_ok(secret: &str) -> bool {
    secret.bytes().all(|b| b.is_ascii_graphic())
}

/// `a == b` in time that depends only on the lengths (a secret's length is not a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Tokens {
    /// Parses a tokens file. Every line is checked; the first bad one is the error.
    pub fn parse(text: &str) -> Result<Tokens, ParseError> {
        let mut list: Vec<Token> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| ParseError { line, reason };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, scope, secret] = fields[..] else {
                return Err(err(format!(
                    "expected `NAME SCOPE SECRET` (3 fields separated by spaces), found {} fields",
                    fields.len()
                )));
            };
            if !name_ok(name) {
                return Err(err(format!(
                    "token name '{name}': use 1 to {NAME_LEN_MAX} of A-Z a-z 0-9 _ - ."
                )));
            }
            let Some(scope) = Scope::parse(scope) else {
                return Err(err(format!(
                    "token '{name}': unknown scope '{scope}'; use one of {}",
                    Scope::CHOICES.join(", ")
                )));
            };
            if secret.len() < SECRET_LEN_MIN || secret.len() > SECRET_LEN_MAX || !secret_ok(secret) {
                return Err(err(format!(
                    "token '{name}': the secret must be {SECRET_LEN_MIN} to {SECRET_LEN_MAX} printable characters \
                     (make one with `muster token create`)"
                )));
            }
            if let Some(other) = list.iter().find(|t| t.name == name) {
                return Err(err(format!("token name '{}' appears twice", other.name)));
            }
            if let Some(other) = list.iter().find(|t| same(&t.secret, secret.as_bytes())) {
                return Err(err(format!("token '{name}' has the same secret as token '{}'", other.name)));
            }
            if list.len() == TOKENS_MAX {
                return Err(err(format!("more than {TOKENS_MAX} tokens")));
            }
            list.push(Token { name: name.to_string(), scope, secret: secret.as_bytes().to_vec() });
        }
        Ok(Tokens { list })
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The token whose secret is `presented`, compared with every token in constant time.
    pub fn find(&self, presented: &str) -> Option<&Token> {
        let mut found = None;
        for t in &self.list {
            if same(&t.secret, presented.as_bytes()) {
                found = Some(t);
            }
        }
        found
    }

    /// Lets a call that needs `need` through with the `presented` secret, or says why not.
    pub fn check(&self, presented: Option<&str>, need: Scope) -> Result<&Token, Denied> {
        let presented = presented.filter(|p| !p.is_empty()).ok_or(Denied::Missing { need })?;
        let token = self.find(presented).ok_or(Denied::Unknown)?;
        if token.scope.covers(need) {
            Ok(token)
        } else {
            Err(Denied::Scope { name: token.name.clone(), has: token.scope, need })
        }
    }
}

/// The node's current tokens, replaced whole when the file is read again (SIGHUP).
#[derive(Debug, Default)]
pub struct SharedTokens {
    current: std::sync::RwLock<std::sync::Arc<Tokens>>,
}

impl SharedTokens {
    pub fn new(tokens: Tokens) -> SharedTokens {
        SharedTokens { current: std::sync::RwLock::new(std::sync::Arc::new(tokens)) }
    }

    pub fn current(&self) -> std::sync::Arc<Tokens> {
        std::sync::Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn replace(&self, tokens: Tokens) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(tokens);
    }
}

/// The secret of an `authorization` header value: `Bearer <secret>` (the scheme in any case).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// A fresh secret: 32 random bytes in URL-safe base64 without padding (43 characters).
pub fn generate_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# name scope secret\n\
        reader   read      rrrrrrrrrrrrrrrrrrrr\n\
        \n\
        deployer write     wwwwwwwwwwwwwwwwwwww   # CI\n\
        ops      operator  oooooooooooooooooooo\n";

    #[test]
    fn parses_names_scopes_and_comments() {
        // Proves comments and blank lines are skipped and each line becomes one token.
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.find("wwwwwwwwwwwwwwwwwwww").unwrap().name, "deployer");
        assert_eq!(t.find("oooooooooooooooooooo").unwrap().scope, Scope::Operator);
        assert!(t.find("wwwwwwwwwwwwwwwwwww").is_none(), "a prefix is not the secret");
        assert!(t.find("wwwwwwwwwwwwwwwwwwwww").is_none(), "a longer string is not the secret");
    }

    #[test]
    fn check_tells_missing_unknown_and_scope_apart() {
        // Proves the three refusals and that scopes nest.
        let t = Tokens::parse(FILE).unwrap();
        assert_eq!(t.check(None, Scope::Read), Err(Denied::Missing { need: Scope::Read }));
        assert_eq!(t.check(Some(""), Scope::Write), Err(Denied::Missing { need: Scope::Write }));
        assert_eq!(t.check(Some("nope-nope-nope-nope"), Scope::Read), Err(Denied::Unknown));
        let denied = t.check(Some("rrrrrrrrrrrrrrrrrrrr"), Scope::Write).unwrap_err();
        assert_eq!(denied, Denied::Scope { name: "reader".into(), has: Scope::Read, need: Scope::Write });
        assert_eq!(denied.to_string(), "token 'reader' has scope read; this call needs write");
        assert!(!denied.is_authentication() && Denied::Unknown.is_authentication());
        assert_eq!(t.check(Some("wwwwwwwwwwwwwwwwwwww"), Scope::Read).unwrap().name, "deployer");
        assert_eq!(t.check(Some("oooooooooooooooooooo"), Scope::Write).unwrap().name, "ops");
        assert!(t.check(Some("wwwwwwwwwwwwwwwwwwww"), Scope::Operator).is_err());
    }

    #[test]
    fn bad_lines_name_the_line_and_never_the_secret() {
        // Proves every malformed line is refused with its number, and no message shows a secret.
        let cases: &[(&str, &str)] = &[
            ("a read", "line 1: expected `NAME SCOPE SECRET` (3 fields separated by spaces), found 2 fields"),
            ("a admin sssssssssssssssssssss", "line 1: token 'a': unknown scope 'admin'; use one of read, write, operator"),
            ("a read short", "line 1: token 'a': the secret must be 16 to 512 printable characters (make one with `muster token create`)"),
            ("b@d read sssssssssssssssssssss", "line 1: token name 'b@d': use 1 to 64 of A-Z a-z 0-9 _ - ."),
            ("a read sssssssssssssssssssss\na write ttttttttttttttttttttt", "line 2: token name 'a' appears twice"),
            ("a read sssssssssssssssssssss\nb write sssssssssssssssssssss", "line 2: token 'b' has the same secret as token 'a'"),
        ];
        for (text, want) in cases {
            let err = Tokens::parse(text).unwrap_err().to_string();
            assert_eq!(&err, want, "{text}");
            assert!(!err.contains("sssss") && !err.contains("short"), "{err}");
        }
        assert!(format!("{:?}", Tokens::parse(FILE).unwrap()).contains("deployer"));
        assert!(!format!("{:?}", Tokens::parse(FILE).unwrap()).contains("wwww"), "Debug hides secrets");
    }

    #[test]
    fn bearer_header_and_generated_secrets() {
        // Proves the header parsing and that generated secrets are valid and distinct.
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(Tokens::parse(&format!("x write {a}")).is_ok());
    }
}
