//! Splits a string-form `command:` / `entrypoint:` into words the way compose does (POSIX shell
//! quoting: whitespace separates, `'...'` is literal, `"..."` allows `\"`, `\\`, `\$`, and a
//! backslash outside quotes escapes the next character). No expansion of any kind happens.
//! Must not import anything outside `supervisor`.

/// The words of `text`, or why it cannot be split (an unterminated quote or trailing `\`).
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated single quote in {text:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(format!("unterminated double quote in {text:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated double quote in {text:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(format!("trailing backslash in {text:?}")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_splits_like_compose() {
        // Proves quotes group words, escapes work, and empty quotes make an empty word.
        assert_eq!(split_words("npm  run start").unwrap(), ["npm", "run", "start"]);
        assert_eq!(
            split_words(r#"sh -c 'echo "$HOME" done'"#).unwrap(),
            ["sh", "-c", r#"echo "$HOME" done"#]
        );
        assert_eq!(split_words(r#"echo "a \"b\" \$c" d\ e ''"#).unwrap(), ["echo", r#"a "b" $c"#, "d e", ""]);
        assert_eq!(split_words("   ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        // Proves a broken command line is refused instead of guessed at.
        assert!(split_words("echo 'oops").unwrap_err().contains("unterminated single quote"));
        assert!(split_words("echo \"oops").unwrap_err().contains("unterminated double quote"));
        assert!(split_words("echo oops\\").unwrap_err().contains("trailing backslash"));
    }
}
