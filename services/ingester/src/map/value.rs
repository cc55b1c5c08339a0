//! Attribute access and value-to-string conversion with the OpenTelemetry Collector's rules
//! (pcommon `Value.AsString`): strings as is, integers in decimal, doubles in the shortest form
//! that round-trips, booleans as `true`/`false`, bytes as base64, arrays and maps as JSON.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// `AnyValue` as the OTel Collector renders it in a string column (pcommon `AsString`).
pub fn as_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        // String-table indexes exist only in the profiles signal.
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => {
            if d.is_finite() {
                float_es6(*d)
            } else {
                // Go's encoding/json refuses these; AsString reports it in the value.
                let g = if d.is_nan() {
                    "NaN"
                } else if *d > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                format!("json: unsupported value: {g}")
            }
        }
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::BytesValue(b)) => base64(b),
        Some(v @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            let mut out = String::new();
            go_json(
                &AnyValue {
                    value: Some(v.clone()),
                },
                &mut out,
            );
            out
        }
    }
}

/// A finite double the way Go's `encoding/json` (and pcommon) formats it: the shortest
/// round-trip digits, exponent form below 1e-6 and from 1e21 (`1e-7`, `1e+21`).
fn float_es6(d: f64) -> String {
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}"); // "1e-7", "1.5e21"
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{d}")
    }
}

/// `AnyValue` as Go's `encoding/json` marshals pcommon's raw form: compact, map keys sorted,
/// HTML-sensitive characters escaped.
fn go_json(value: &AnyValue, out: &mut String) {
    match &value.value {
        None | Some(Value::StringValueStrindex(_)) => out.push_str("null"),
        Some(Value::StringValue(s)) => go_json_string(s, out),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        Some(Value::DoubleValue(d)) if d.is_finite() => out.push_str(&float_es6(*d)),
        Some(Value::DoubleValue(_)) => out.push_str("null"),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::BytesValue(b)) => go_json_string(&base64(b), out),
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(v, out);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => {
            let mut entries: Vec<&KeyValue> = kv.values.iter().collect();
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            entries.dedup_by(|later, earlier| later.key == earlier.key);
            out.push('{');
            for (i, e) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(&e.key, out);
                out.push(':');
                match &e.value {
                    Some(v) => go_json(v, out),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
    }
}

fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Attributes as the exporter writes a `Map(LowCardinality(String), String)`: values through
/// [`as_string`], keys sorted in byte order (clickhouse-go sorts map entries).
pub fn attribute_map(attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| (kv.key.clone(), as_string(kv.value.as_ref())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, earlier| later.0 == earlier.0);
    out
}

/// [`attribute_map`] taking ownership: string values and keys are moved, not copied (they are
/// most of a GenAI span's bytes).
pub fn attribute_map_owned(attributes: Vec<KeyValue>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = attributes
        .into_iter()
        .map(|kv| {
            let value = match kv.value {
                Some(AnyValue {
                    value: Some(Value::StringValue(s)),
                }) => s,
                other => as_string(other.as_ref()),
            };
            (kv.key, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, earlier| later.0 == earlier.0);
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Read access to a span's (or resource's) attributes by key.
#[derive(Clone, Copy)]
pub struct Attrs<'a>(pub &'a [KeyValue]);

impl<'a> Attrs<'a> {
    pub fn get(&self, key: &str) -> Option<&'a AnyValue> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
    }

    /// The first of `keys` present with a non-empty string value.
    pub fn str(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| match self.get(k)?.value.as_ref()? {
                Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
                Value::IntValue(i) => Some(i.to_string()),
                _ => None,
            })
    }

    /// The first of `keys` present as a non-negative integer (ints, integral doubles and
    /// numeric strings are accepted).
    pub fn uint(&self, keys: &[&str]) -> Option<u64> {
        keys.iter()
            .find_map(|k| match self.get(k)?.value.as_ref()? {
                Value::IntValue(i) => u64::try_from(*i).ok(),
                Value::DoubleValue(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 1e18 => {
                    Some(*d as u64)
                }
                Value::StringValue(s) => s.trim().parse().ok(),
                _ => None,
            })
    }

    /// The first of `keys` present as a number.
    pub fn float(&self, keys: &[&str]) -> Option<f64> {
        keys.iter()
            .find_map(|k| match self.get(k)?.value.as_ref()? {
                Value::DoubleValue(d) if d.is_finite() => Some(*d),
                Value::IntValue(i) => Some(*i as f64),
                Value::StringValue(s) => s.trim().parse().ok().filter(|d: &f64| d.is_finite()),
                _ => None,
            })
    }

    /// The first of `keys` present as a boolean (or "true"/"false").
    pub fn bool(&self, keys: &[&str]) -> Option<bool> {
        keys.iter()
            .find_map(|k| match self.get(k)?.value.as_ref()? {
                Value::BoolValue(b) => Some(*b),
                Value::StringValue(s) => s.trim().parse().ok(),
                _ => None,
            })
    }

    /// String list from an array attribute, a JSON array in a string, or a single string.
    pub fn strings(&self, keys: &[&str]) -> Option<Vec<String>> {
        keys.iter()
            .find_map(|k| match self.get(k)?.value.as_ref()? {
                Value::ArrayValue(a) => Some(
                    a.values
                        .iter()
                        .map(|v| as_string(Some(v)))
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                Value::StringValue(s) if s.trim_start().starts_with('[') => {
                    serde_json::from_str::<Vec<String>>(s).ok()
                }
                Value::StringValue(s) if !s.is_empty() => Some(vec![s.clone()]),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn v(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn collector_string_rules() {
        assert_eq!(as_string(Some(&v(Value::IntValue(-42)))), "-42");
        assert_eq!(as_string(Some(&v(Value::DoubleValue(0.2)))), "0.2");
        assert_eq!(as_string(Some(&v(Value::DoubleValue(3.0)))), "3");
        assert_eq!(as_string(Some(&v(Value::BoolValue(true)))), "true");
        assert_eq!(
            as_string(Some(&v(Value::BytesValue(b"hi!?".to_vec())))),
            "aGkhPw=="
        );
        let arr = v(Value::ArrayValue(ArrayValue {
            values: vec![v(Value::StringValue("stop".into())), v(Value::IntValue(1))],
        }));
        assert_eq!(as_string(Some(&arr)), r#"["stop",1]"#);
        let map = v(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "a".into(),
                value: Some(v(Value::BoolValue(false))),
                key_strindex: 0,
            }],
        }));
        assert_eq!(as_string(Some(&map)), r#"{"a":false}"#);
        assert_eq!(as_string(None), "");
    }

    #[test]
    fn go_float_and_json_rules() {
        assert_eq!(float_es6(1e-7), "1e-7");
        assert_eq!(float_es6(1e21), "1e+21");
        assert_eq!(float_es6(1.5e22), "1.5e+22");
        assert_eq!(float_es6(0.000001), "0.000001");
        assert_eq!(float_es6(-2.5), "-2.5");
        assert_eq!(float_es6(0.0), "0");
        assert_eq!(
            as_string(Some(&v(Value::DoubleValue(f64::NAN)))),
            "json: unsupported value: NaN"
        );
        let map = v(Value::KvlistValue(KeyValueList {
            values: vec![
                KeyValue {
                    key: "z".into(),
                    value: Some(v(Value::DoubleValue(3.0))),
                    key_strindex: 0,
                },
                KeyValue {
                    key: "a".into(),
                    value: Some(v(Value::StringValue("<b>&\"\n".into()))),
                    key_strindex: 0,
                },
            ],
        }));
        assert_eq!(
            as_string(Some(&map)),
            r#"{"a":"\u003cb\u003e\u0026\"\n","z":3}"#
        );
    }

    #[test]
    fn owned_and_borrowed_maps_agree() {
        let attrs = vec![
            KeyValue {
                key: "z".into(),
                value: Some(v(Value::StringValue("moved".into()))),
                key_strindex: 0,
            },
            KeyValue {
                key: "a".into(),
                value: Some(v(Value::DoubleValue(0.5))),
                key_strindex: 0,
            },
            KeyValue {
                key: "a".into(),
                value: Some(v(Value::IntValue(1))),
                key_strindex: 0,
            },
        ];
        assert_eq!(attribute_map_owned(attrs.clone()), attribute_map(&attrs));
    }

    #[test]
    fn attribute_maps_are_sorted_by_key() {
        let attrs = vec![
            KeyValue {
                key: "b".into(),
                value: Some(v(Value::IntValue(2))),
                key_strindex: 0,
            },
            KeyValue {
                key: "A".into(),
                value: Some(v(Value::BoolValue(true))),
                key_strindex: 0,
            },
            KeyValue {
                key: "a".into(),
                value: None,
                key_strindex: 0,
            },
        ];
        assert_eq!(
            attribute_map(&attrs),
            vec![
                ("A".into(), "true".into()),
                ("a".into(), String::new()),
                ("b".into(), "2".into())
            ]
        );
    }
}
