//! Compose-style `${VAR}` interpolation over the string values of a parsed YAML tree.
//!
//! Interpolation runs after YAML parsing, over string *values* only (never keys, never numbers),
//! so a substituted value can never change the file's structure or inject YAML. Forms:
//! `$$` (a literal `$`), `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty),
//! `${VAR-default}` (unset), `${VAR:?message}` / `${VAR?message}` (an error with the message),
//! `${VAR:+alt}` / `${VAR+alt}` (alt when set). Defaults, messages and alternatives are
//! themselves interpolated, nested at most [`DEPTH_MAX`] deep. An unset variable without a
//! default is an error naming the variable and where it appears (compose's strict mode).
//! Must not import anything outside `supervisor`.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::error::ComposeError;
use super::keys::{describe, key_text};

/// How deep `${A:-${B:-${C}}}` may nest.
pub const DEPTH_MAX: usize = 8;

/// Replaces every interpolation in every string value under `value`; `path` is where `value`
/// sits in the file (for error messages) and is restored before returning.
pub fn interpolate_tree(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
    path: &mut Vec<String>,
) -> Result<(), ComposeError> {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = interpolate(s, vars, path)?;
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                let r = interpolate_tree(item, vars, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(key_text(k));
                let r = interpolate_tree(v, vars, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, vars, path),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Interpolates one string found at `path`.
pub fn interpolate(
    text: &str,
    vars: &BTreeMap<String, String>,
    path: &[String],
) -> Result<String, ComposeError> {
    expand(text, vars, path, 0)
}

fn syntax(path: &[String], reason: String) -> ComposeError {
    ComposeError::BadInterpolation { location: describe(path), reason }
}

fn expand(
    text: &str,
    vars: &BTreeMap<String, String>,
    path: &[String],
    depth: usize,
) -> Result<String, ComposeError> {
    if depth > DEPTH_MAX {
        return Err(syntax(path, format!("defaults nest more than {DEPTH_MAX} deep in {text:?}")));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = closing_brace(inner) else {
                return Err(syntax(path, format!("unterminated `${{` in {text:?}")));
            };
            out.push_str(&braced(&inner[..end], vars, path, depth)?);
            rest = &inner[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(syntax(
                    path,
                    format!("`$` must be followed by a variable name or `{{` in {text:?}; write `$$` for a literal `$`"),
                ));
            }
            out.push_str(&lookup(&after[..len], vars, path)?);
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Length of the variable name at the start of `s` (`[A-Za-z_][A-Za-z0-9_]*`), 0 if none.
fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {
            bytes.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count()
        }
        _ => 0,
    }
}

/// Index of the `}` closing a `${` whose body starts `s`, skipping nested `${...}` and `$$`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'$', Some(b'$')) => i += 2,
            (b'$', Some(b'{')) => {
                open += 1;
                i += 2;
            }
            (b'}', _) if open == 0 => return Some(i),
            (b'}', _) => {
                open -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn lookup(name: &str, vars: &BTreeMap<String, String>, path: &[String]) -> Result<String, ComposeError> {
    vars.get(name)
        .cloned()
        .ok_or_else(|| ComposeError::UnsetVariable { variable: name.to_string(), location: describe(path) })
}

/// The body of `${...}`: a name, then nothing or one operator and its argument.
fn braced(
    body: &str,
    vars: &BTreeMap<String, String>,
    path: &[String],
    depth: usize,
) -> Result<String, ComposeError> {
    let len = name_len(body);
    if len == 0 {
        return Err(syntax(path, format!("`${{{body}}}` does not start with a variable name")));
    }
    let (name, op) = body.split_at(len);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let arg = |n: usize| expand(&op[n..], vars, path, depth + 1);
    if op.is_empty() {
        return lookup(name, vars, path);
    }
    match (op.as_bytes()[0], op.as_bytes().get(1)) {
        (b':', Some(b'-')) => {
            if set_nonempty {
                Ok(value.cloned().unwrap_or_default())
            } else {
                arg(2)
            }
        }
        (b'-', _) => match value {
            Some(v) => Ok(v.clone()),
            None => arg(1),
        },
        (b':', Some(b'?')) if !set_nonempty => Err(required(name, arg(2)?, path)),
        (b'?', _) if value.is_none() => Err(required(name, arg(1)?, path)),
        (b':', Some(b'?')) | (b'?', _) => Ok(value.cloned().unwrap_or_default()),
        (b':', Some(b'+')) => {
            if set_nonempty {
                arg(2)
            } else {
                Ok(String::new())
            }
        }
        (b'+', _) => {
            if value.is_some() {
                arg(1)
            } else {
                Ok(String::new())
            }
        }
        _ => Err(syntax(
            path,
            format!("`${{{body}}}`: after the name expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`"),
        )),
    }
}

fn required(name: &str, message: String, path: &[String]) -> ComposeError {
    ComposeError::RequiredVariable { variable: name.to_string(), message, location: describe(path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("HOST", "10.0.0.5"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(text: &str) -> Result<String, ComposeError> {
        interpolate(text, &vars(), &["services".into(), "web".into(), "image".into()])
    }

    #[test]
    fn every_form_substitutes_like_compose() {
        // Proves each supported form, including set-but-empty handling and `$$`.
        assert_eq!(run("http://${HOST}:$PORT/").unwrap(), "http://10.0.0.5:8080/");
        assert_eq!(run("${MISSING:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${EMPTY-dflt}").unwrap(), "");
        assert_eq!(run("${MISSING-dflt}").unwrap(), "dflt");
        assert_eq!(run("${HOST:+yes}|${EMPTY:+yes}|${EMPTY+yes}|${MISSING+yes}").unwrap(), "yes||yes|");
        assert_eq!(run("cost $$5 and $${HOST}").unwrap(), "cost $5 and ${HOST}");
        assert_eq!(run("${MISSING:-${ALSO:-${HOST}}}").unwrap(), "10.0.0.5");
        assert_eq!(run("${HOST:?never shown}").unwrap(), "10.0.0.5");
    }

    #[test]
    fn unset_and_required_variables_name_the_variable_and_place() {
        // Proves strict mode: an unset variable without default and `:?` are errors with context.
        let unset = run("${NOPE}").unwrap_err().to_string();
        assert!(unset.contains("variable NOPE is not set (service web, key image)"), "{unset}");
        let bare = run("$NOPE").unwrap_err().to_string();
        assert!(bare.contains("variable NOPE is not set"), "{bare}");
        let req = run("${EMPTY:?set EMPTY to the broker url}").unwrap_err().to_string();
        assert!(
            req.contains("required variable EMPTY is missing a value: set EMPTY to the broker url"),
            "{req}"
        );
        assert!(run("${EMPTY?msg}").is_ok());
    }

    #[test]
    fn malformed_templates_are_refused() {
        // Proves syntax errors are reported rather than passed through literally.
        for bad in ["${HOST", "${}", "${1X}", "cost $5", "trailing $", "${HOST:x}"] {
            let err = run(bad).unwrap_err();
            assert!(matches!(err, ComposeError::BadInterpolation { .. }), "{bad}: {err}");
        }
        let deep = format!("{}x{}", "${A:-".repeat(DEPTH_MAX + 2), "}".repeat(DEPTH_MAX + 2));
        assert!(matches!(run(&deep).unwrap_err(), ComposeError::BadInterpolation { .. }));
    }
}
