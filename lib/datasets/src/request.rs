//! What to export: filters, shape, format and options, parsed from `name=value` parameters (the
//! HTTP query string; the CLI turns its flags into the same pairs) with errors that name the
//! parameter at fault.

use std::collections::BTreeSet;
use std::fmt;

use flywheel_store::CallFilter;

/// Dataset shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Chat messages plus the completion as the last assistant message.
    Sft,
    /// Prompt, chosen and rejected answers (TRL-style).
    Preference,
    /// Input, output and every feedback and signal attached.
    Eval,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Preference => "preference",
            Self::Eval => "eval",
        }
    }
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Parquet,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

pub use flywheel_store::{FeedbackFilter, FeedbackValue};

/// Where preference pairs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PairSource {
    /// A regenerated (discarded) answer vs the answer kept after it.
    Regenerate,
    /// Positive vs negative feedback on calls with the same prompt.
    Feedback,
    /// The user's edited text vs the original answer.
    Edit,
}

impl PairSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regenerate => "regenerate",
            Self::Feedback => "feedback",
            Self::Edit => "edit",
        }
    }
}

/// Options of the `preference` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceOptions {
    pub sources: BTreeSet<PairSource>,
    /// Feedback name that rates answers (default `thumbs`).
    pub feedback_name: String,
    /// A score at least this is positive (default 1: a boolean `true`).
    pub positive_min: f64,
    /// A score at most this is negative (default 0: a boolean `false`).
    pub negative_max: f64,
}

impl Default for PreferenceOptions {
    fn default() -> Self {
        Self {
            sources: [
                PairSource::Regenerate,
                PairSource::Feedback,
                PairSource::Edit,
            ]
            .into(),
            feedback_name: "thumbs".to_string(),
            positive_min: 1.0,
            negative_max: 0.0,
        }
    }
}

/// One export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub project: String,
    /// Unix nanoseconds, inclusive.
    pub from: Option<i64>,
    /// Unix nanoseconds, exclusive.
    pub to: Option<i64>,
    pub models: Vec<String>,
    pub feedback: Option<FeedbackFilter>,
    pub signal: Option<String>,
    pub conversation: Option<String>,
    pub shape: Shape,
    pub format: Format,
    pub redact: bool,
    pub dedup: bool,
    pub limit: Option<u64>,
    pub preference: PreferenceOptions,
}

impl ExportRequest {
    /// The calls this export reads: its project and filters.
    pub fn call_filter(&self) -> CallFilter {
        CallFilter {
            project: self.project.clone(),
            from: self.from,
            to: self.to,
            models: self.models.clone(),
            conversation: self.conversation.clone(),
            feedback: self.feedback.clone(),
            signal: self.signal.clone(),
        }
    }
}

impl ExportRequest {
    /// Defaults: every call of `project`, `sft`, JSONL, redaction and deduplication on.
    pub fn new(project: &str) -> Self {
        Self {
            project: project.to_string(),
            from: None,
            to: None,
            models: Vec::new(),
            feedback: None,
            signal: None,
            conversation: None,
            shape: Shape::Sft,
            format: Format::Jsonl,
            redact: true,
            dedup: true,
            limit: None,
            preference: PreferenceOptions::default(),
        }
    }
}

/// A bad parameter: HTTP 400 / CLI usage error naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{param}`: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

fn bad(param: &str, message: impl fmt::Display) -> ParamError {
    ParamError {
        param: param.to_string(),
        message: message.to_string(),
    }
}

/// Every accepted parameter (`project` is the caller's business: the API takes it from the key).
pub const PARAMS: &[&str] = &[
    "shape",
    "format",
    "from",
    "to",
    "model",
    "feedback",
    "feedback_value",
    "feedback_min",
    "feedback_max",
    "feedback_label",
    "signal",
    "conversation",
    "redact",
    "dedup",
    "limit",
    "pair_sources",
    "pair_feedback",
    "positive_min",
    "negative_max",
];

/// Parses `pairs` for `project`. Models may repeat or be comma-separated; every other parameter
/// may appear once.
pub fn parse<I, K, V>(project: &str, pairs: I) -> Result<ExportRequest, ParamError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut req = ExportRequest::new(project);
    let mut seen = BTreeSet::new();
    let (mut fb_value, mut fb_min, mut fb_max, mut fb_label) = (None, None, None, None);
    let mut feedback_name = None;
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref().trim());
        if !PARAMS.contains(&k) {
            return Err(bad(
                k,
                format!("unknown parameter (known: {})", PARAMS.join(", ")),
            ));
        }
        if k != "model" && !seen.insert(k.to_string()) {
            return Err(bad(k, "given more than once"));
        }
        match k {
            "shape" => {
                req.shape = match v {
                    "sft" => Shape::Sft,
                    "preference" => Shape::Preference,
                    "eval" => Shape::Eval,
                    _ => return Err(bad(k, "must be sft, preference or eval")),
                }
            }
            "format" => {
                req.format = match v {
                    "jsonl" => Format::Jsonl,
                    "parquet" => Format::Parquet,
                    _ => return Err(bad(k, "must be jsonl or parquet")),
                }
            }
            "from" => req.from = Some(time(k, v)?),
            "to" => req.to = Some(time(k, v)?),
            "model" => {
                for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    req.models.push(m.to_string());
                }
            }
            "feedback" => feedback_name = Some(non_empty(k, v)?),
            "feedback_value" => {
                fb_value = Some(match v {
                    "true" => 1.0,
                    "false" => 0.0,
                    _ => number(k, v)?,
                })
            }
            "feedback_min" => fb_min = Some(number(k, v)?),
            "feedback_max" => fb_max = Some(number(k, v)?),
            "feedback_label" => fb_label = Some(non_empty(k, v)?),
            "signal" => {
                // The contract's own parser: the same names the API accepts.
                flywheel_feedback::signal_type(v).map_err(|m| bad(k, m))?;
                req.signal = Some(v.to_string());
            }
            "conversation" => req.conversation = Some(non_empty(k, v)?),
            "redact" => req.redact = boolean(k, v)?,
            "dedup" => req.dedup = boolean(k, v)?,
            "limit" => match v.parse::<u64>() {
                Ok(n) if n > 0 => req.limit = Some(n),
                _ => return Err(bad(k, "must be a positive integer")),
            },
            "pair_sources" => {
                let mut sources = BTreeSet::new();
                for s in v.split(',').map(str::trim) {
                    sources.insert(match s {
                        "regenerate" => PairSource::Regenerate,
                        "feedback" => PairSource::Feedback,
                        "edit" => PairSource::Edit,
                        _ => return Err(bad(k, "must list regenerate, feedback and/or edit")),
                    });
                }
                req.preference.sources = sources;
            }
            "pair_feedback" => req.preference.feedback_name = non_empty(k, v)?,
            "positive_min" => req.preference.positive_min = number(k, v)?,
            "negative_max" => req.preference.negative_max = number(k, v)?,
            _ => unreachable!("every name in PARAMS is handled"),
        }
    }
    if let (Some(from), Some(to)) = (req.from, req.to) {
        if from >= to {
            return Err(bad("to", "must be after `from`"));
        }
    }
    let value = match (fb_value, fb_min.is_some() || fb_max.is_some(), &fb_label) {
        (None, false, None) => FeedbackValue::Any,
        (Some(x), false, None) => FeedbackValue::Score(x),
        (None, true, None) => {
            if let (Some(lo), Some(hi)) = (fb_min, fb_max) {
                if lo > hi {
                    return Err(bad("feedback_max", "must be at least `feedback_min`"));
                }
            }
            FeedbackValue::Range {
                min: fb_min,
                max: fb_max,
            }
        }
        (None, false, Some(l)) => FeedbackValue::Label(l.clone()),
        _ => {
            return Err(bad(
                "feedback_value",
                "use one of feedback_value, feedback_min/feedback_max or feedback_label",
            ))
        }
    };
    match feedback_name {
        Some(name) => req.feedback = Some(FeedbackFilter { name, value }),
        None if value != FeedbackValue::Any => {
            return Err(bad(
                "feedback",
                "a feedback value filter needs the feedback name",
            ))
        }
        None => {}
    }
    let pref = req.preference.clone();
    if req.shape == Shape::Preference {
        for (p, set) in [
            ("feedback", req.feedback.is_some()),
            ("signal", req.signal.is_some()),
        ] {
            if set {
                return Err(bad(
                    p,
                    "does not apply to shape=preference (pairs are chosen by pair_sources)",
                ));
            }
        }
        if pref.sources.is_empty() {
            return Err(bad("pair_sources", "must not be empty"));
        }
        if pref.negative_max >= pref.positive_min {
            return Err(bad("negative_max", "must be below `positive_min`"));
        }
    } else {
        for p in [
            "pair_sources",
            "pair_feedback",
            "positive_min",
            "negative_max",
        ] {
            if seen.contains(p) {
                return Err(bad(p, "applies to shape=preference only"));
            }
        }
    }
    Ok(req)
}

fn non_empty(param: &str, v: &str) -> Result<String, ParamError> {
    if v.is_empty() {
        Err(bad(param, "must not be empty"))
    } else {
        Ok(v.to_string())
    }
}

fn number(param: &str, v: &str) -> Result<f64, ParamError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| bad(param, format!("{v:?} is not a number")))
}

fn boolean(param: &str, v: &str) -> Result<bool, ParamError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(param, "must be true or false")),
    }
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time, as Unix nanoseconds.
pub fn time(param: &str, v: &str) -> Result<i64, ParamError> {
    let t = if v.len() == 10 {
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    } else {
        chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .map(|t| t.to_utc())
    };
    t.and_then(|t| t.timestamp_nanos_opt()).ok_or_else(|| {
        bad(
            param,
            format!("{v:?} is not YYYY-MM-DD or an RFC 3339 time"),
        )
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
