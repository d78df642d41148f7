//! The JSON config file: one object whose keys are the flag names with '_' for '-', e.g.
//! `{"node":"a","join":["h:7946"],"tags":{"k":"v"},"retry_interval":"5s"}`.
//! Values are kept as text here and parsed by `merge` like flags and env values; an unknown key
//! is an error that names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::args::SETTINGS;
use super::ConfigError;

/// Larger files are rejected: a config is a few hundred bytes.
const FILE_MAX_BYTES: u64 = 1024 * 1024;

/// Keys whose value is a list: a JSON array, or a string split like the environment variable.
const LIST_KEYS: &[&str] = &["join", "retry_join", "tag"];

/// One value from the file, still as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileValue {
    Scalar(String),
    List(Vec<String>),
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    path: PathBuf,
    values: BTreeMap<&'static str, FileValue>,
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let read_err = |cause| ConfigError::ReadFile { path: path.to_path_buf(), cause };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > FILE_MAX_BYTES {
            return Err(ConfigError::FileSyntax {
                path: path.to_path_buf(),
                reason: format!("the file has {len} bytes; at most {FILE_MAX_BYTES} are read"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        FileConfig::parse(path, &text)
    }

    /// Parses `text`; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        let syntax = |reason: String| ConfigError::FileSyntax { path: path.to_path_buf(), reason };
        let object = match serde_json::from_str::<Value>(text).map_err(|e| syntax(e.to_string()))? {
            Value::Object(object) => object,
            other => return Err(syntax(format!("found {}", kind(&other)))),
        };
        let mut values = BTreeMap::new();
        for (key, value) in object {
            let canonical = canonical_key(&key).ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
                known: known_keys(),
            })?;
            let value_err = |reason: String| ConfigError::FileValue {
                path: path.to_path_buf(),
                key: key.clone(),
                reason,
            };
            if values.contains_key(canonical) {
                return Err(value_err(format!("repeats '{canonical}'")));
            }
            if let Some(v) = convert(canonical, &value).map_err(value_err)? {
                values.insert(canonical, v);
            }
        }
        Ok(FileConfig { path: path.to_path_buf(), values })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn get(&self, key: &str) -> Option<&FileValue> {
        self.values.get(key)
    }
}

/// The settings-table key for a file key; `tags` is accepted for `tag`. `config_file` cannot
/// be set from inside a config file.
fn canonical_key(key: &str) -> Option<&'static str> {
    let key = if key == "tags" { "tag" } else { key };
    SETTINGS.iter().map(|s| s.key).find(|k| *k == key && *k != "config_file")
}

fn known_keys() -> String {
    let keys: Vec<&str> = SETTINGS
        .iter()
        .map(|s| if s.key == "tag" { "tags" } else { s.key })
        .filter(|k| *k != "config_file")
        .collect();
    keys.join(", ")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string, number or boolean as text.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Converts one file value; `null` means "not set".
fn convert(key: &'static str, v: &Value) -> Result<Option<FileValue>, String> {
    if v.is_null() {
        return Ok(None);
    }
    if !LIST_KEYS.contains(&key) {
        return scalar_text(v)
            .map(|s| Some(FileValue::Scalar(s)))
            .ok_or_else(|| format!("expects a string, found {}", kind(v)));
    }
    match v {
        Value::String(s) => Ok(Some(FileValue::Scalar(s.clone()))),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                scalar_text(item).ok_or_else(|| format!("expects an array of strings, found {}", kind(item)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Some(FileValue::List(items))),
        Value::Object(map) if key == "tag" => map
            .iter()
            .map(|(k, val)| {
                if k.contains('=') {
                    return Err(format!("has a tag key '{k}' containing '='"));
                }
                scalar_text(val)
                    .map(|val| format!("{k}={val}"))
                    .ok_or_else(|| format!("expects tag '{k}' to be a string, found {}", kind(val)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Some(FileValue::List(items))),
        other => Err(format!("expects an array or a comma-separated string, found {}", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(Path::new("muster.json"), text)
    }

    #[test]
    fn values_of_every_shape_are_read() {
        // Proves scalars, lists, a tag object and null (unset) are all understood.
        let f = parse(
            r#"{"node":"a","retry_max":3,"log_no_color":true,"join":["h:7946","i"],
                "retry_join":"x,y","tags":{"k":"v","n":1},"advertise":null}"#,
        )
        .unwrap();
        assert_eq!(f.get("node"), Some(&FileValue::Scalar("a".into())));
        assert_eq!(f.get("retry_max"), Some(&FileValue::Scalar("3".into())));
        assert_eq!(f.get("log_no_color"), Some(&FileValue::Scalar("true".into())));
        assert_eq!(f.get("join"), Some(&FileValue::List(vec!["h:7946".into(), "i".into()])));
        assert_eq!(f.get("retry_join"), Some(&FileValue::Scalar("x,y".into())));
        assert_eq!(f.get("tag"), Some(&FileValue::List(vec!["k=v".into(), "n=1".into()])));
        assert_eq!(f.get("advertise"), None);
    }

    #[test]
    fn unknown_key_is_named() {
        // Proves a typo in the file is an error that names the key and the file.
        let err = parse(r#"{"node":"a","retry_intervall":"5s"}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown key 'retry_intervall'"), "{msg}");
        assert!(msg.contains("muster.json"), "{msg}");
        assert!(msg.contains("retry_interval"), "{msg}");
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        // Proves non-objects, wrong value types, config_file and duplicate tag keys fail.
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
        assert!(parse(r#"{"node":["a"]}"#).is_err());
        assert!(parse(r#"{"join":{"a":"b"}}"#).is_err());
        assert!(parse(r#"{"config_file":"x.json"}"#).is_err());
        assert!(parse(r#"{"tag":["a=b"],"tags":{"c":"d"}}"#).is_err());
    }
}
