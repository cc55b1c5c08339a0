//! Stored prompt / completion JSON -> plain `{role, content}` messages, and the normalised
//! hashes used for deduplication and for matching "the same prompt".
//!
//! `llm_calls.input_messages` / `output_messages` hold what the SDK sent, in one of these shapes
//! (see the ingester's `map/genai.rs`):
//! - GenAI semantic conventions: `[{"role": "user", "parts": [{"type": "text", "content": "…"}]}]`,
//!   optionally wrapped as `{"system_instructions": [...parts], "messages": [...]}`;
//! - OpenAI-style: `[{"role": "user", "content": "…"}]`, content also as
//!   `[{"type": "text", "text": "…"}]` (indexed OpenLLMetry / OpenInference attributes become this);
//! - a plain string (`input.value` / `output.value`), or anything else that is not JSON.
//!
//! Text parts are joined with a newline; other parts (tool calls, tool results, images) are kept
//! as their compact JSON so nothing is silently lost.

use serde::Serialize;
use serde_json::Value;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// Parses stored message JSON; messages without a role get `default_role`. Empty or blank input
/// gives no messages.
pub fn parse(raw: &str, default_role: &str) -> Vec<Message> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => from_value(&v, default_role),
        Err(_) => vec![Message::new(default_role, raw)],
    }
}

fn from_value(v: &Value, default_role: &str) -> Vec<Message> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|m| message(m, default_role))
            .collect(),
        Value::Object(map) if map.contains_key("messages") => {
            let mut out = Vec::new();
            if let Some(system) = map.get("system_instructions") {
                let content = content_text(system);
                if !content.is_empty() {
                    out.push(Message::new("system", content));
                }
            }
            out.extend(from_value(&map["messages"], default_role));
            out
        }
        Value::Null => Vec::new(),
        other => message(other, default_role).into_iter().collect(),
    }
}

fn message(m: &Value, default_role: &str) -> Option<Message> {
    let (role, content) = match m {
        Value::Object(map) => {
            let role = map
                .get("role")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .unwrap_or(default_role);
            let content = match (map.get("parts"), map.get("content")) {
                (Some(parts), _) => content_text(parts),
                (None, Some(content)) => content_text(content),
                (None, None) => String::new(),
            };
            (role, content)
        }
        other => (default_role, content_text(other)),
    };
    (!content.is_empty()).then(|| Message::new(role, content))
}

/// The text of a content value: a string, or parts / content items joined by newlines.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(parts) => parts
            .iter()
            .map(part_text)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        other => part_text(other),
    }
}

fn part_text(p: &Value) -> String {
    match p {
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).unwrap_or("text");
            let text = map
                .get("content")
                .or_else(|| map.get("text"))
                .and_then(Value::as_str);
            match (kind, text) {
                ("text", Some(t)) => t.to_string(),
                _ => p.to_string(),
            }
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The completion: the first non-empty output message's content (the first choice when a call
/// asked for several).
pub fn completion(raw: &str) -> Option<String> {
    parse(raw, "assistant")
        .into_iter()
        .map(|m| m.content)
        .find(|c| !c.is_empty())
}

/// The normalisation applied before hashing: Unicode whitespace runs become one space, leading
/// and trailing whitespace is dropped; roles are lower-cased. Case and punctuation are kept
/// ("Yes." and "yes" are different answers).
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A 128-bit hash (xxh3) of normalised messages and optional extra texts, for exact
/// deduplication and for matching calls with the same prompt.
pub fn hash(messages: &[Message], extra: &[&str]) -> u128 {
    let mut h = twox_hash::xxhash3_128::Hasher::new();
    for m in messages {
        h.write(m.role.to_lowercase().as_bytes());
        h.write(b"\x1f");
        h.write(normalise(&m.content).as_bytes());
        h.write(b"\x1e");
    }
    for e in extra {
        h.write(b"\x1d");
        h.write(normalise(e).as_bytes());
    }
    h.finish_128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semconv_parts() {
        let raw = r#"[{"role": "system", "parts": [{"content": "Be brief.", "type": "text"}]}, {"role": "user", "parts": [{"content": "What is the capital of France?", "type": "text"}]}]"#;
        assert_eq!(
            parse(raw, "user"),
            vec![
                Message::new("system", "Be brief."),
                Message::new("user", "What is the capital of France?")
            ]
        );
        let out = r#"[{"role": "assistant", "parts": [{"content": "Paris.", "type": "text"}], "finish_reason": "stop"}]"#;
        assert_eq!(completion(out).as_deref(), Some("Paris."));
    }

    #[test]
    fn system_instructions_wrapper_and_tool_calls() {
        let raw = r#"{"system_instructions": [{"type": "text", "content": "Be kind."}], "messages": [{"role": "user", "parts": [{"type": "text", "content": "Hi"}, {"type": "tool_call", "name": "f", "arguments": {"x": 1}}]}]}"#;
        let m = parse(raw, "user");
        assert_eq!(m[0], Message::new("system", "Be kind."));
        assert_eq!(m[1].role, "user");
        assert!(m[1].content.starts_with("Hi\n{"), "{}", m[1].content);
        assert!(m[1].content.contains(r#""name":"f""#));
    }

    #[test]
    fn openai_and_indexed_shapes() {
        assert_eq!(
            parse(r#"[{"content":"Hi","role":"user"}]"#, "user"),
            vec![Message::new("user", "Hi")]
        );
        assert_eq!(
            parse(
                r#"[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]"#,
                "user"
            ),
            vec![Message::new("user", "a\nb")]
        );
        // No role: the default.
        assert_eq!(
            parse(r#"[{"content":"Hello"}]"#, "assistant"),
            vec![Message::new("assistant", "Hello")]
        );
    }

    #[test]
    fn plain_strings_and_empty() {
        assert_eq!(
            parse("just text", "user"),
            vec![Message::new("user", "just text")]
        );
        assert_eq!(
            parse(r#""a json string""#, "user"),
            vec![Message::new("user", "a json string")]
        );
        assert!(parse("", "user").is_empty());
        assert!(parse("  ", "user").is_empty());
        assert!(parse("[]", "user").is_empty());
        assert_eq!(completion(""), None);
        assert_eq!(completion(r#"[{"role":"assistant","parts":[]}]"#), None);
    }

    #[test]
    fn hash_ignores_whitespace_and_role_case_only() {
        let a = [Message::new("user", "Hello   world\n")];
        let b = [Message::new("User", " Hello world")];
        let c = [Message::new("user", "hello world")];
        assert_eq!(hash(&a, &["x"]), hash(&b, &["x "]));
        assert_ne!(hash(&a, &["x"]), hash(&c, &["x"]));
        assert_ne!(hash(&a, &["x"]), hash(&a, &["y"]));
        // Message boundaries matter.
        let split = [Message::new("user", "Hello"), Message::new("user", "world")];
        assert_ne!(hash(&a, &[]), hash(&split, &[]));
    }
}
