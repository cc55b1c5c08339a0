//! Reading and validating the SLO file. Type and syntax errors come from the YAML parser with
//! their location and the dotted path of the field (serde_path_to_error); the checks that
//! involve several fields run afterwards and use the locations kept in [`At`] values.

use std::collections::HashSet;
use std::path::Path;

use super::{At, CostPolicy, Sli, Slo, SloFile};

/// Why an SLO file was refused. `Display` reads `origin:line:column: field: message`.
#[derive(Debug, thiserror::Error)]
pub enum SloFileError {
    #[error("cannot read SLO file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file path, or `<input>`.
        origin: String,
        line: u64,
        column: u64,
        /// Dotted path such as `slos[1].alerting.windows[0]`; `(file)` for the whole document.
        field: String,
        message: String,
    },
}

impl SloFileError {
    /// `(line, field)` of an [`SloFileError::Invalid`].
    pub fn line_and_field(&self) -> Option<(u64, &str)> {
        match self {
            Self::Invalid { line, field, .. } => Some((*line, field)),
            Self::Read { .. } => None,
        }
    }
}

/// Reads and validates the SLO file at `path`.
pub fn load(path: &Path) -> Result<SloFile, SloFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SloFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_from(&text, &path.display().to_string())
}

/// Parses and validates an SLO file held in memory.
pub fn parse(text: &str) -> Result<SloFile, SloFileError> {
    parse_from(text, "<input>")
}

fn parse_from(text: &str, origin: &str) -> Result<SloFile, SloFileError> {
    let mut field = String::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let file: SloFile =
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                field = clean_path(&e.path().to_string());
                e.into_inner()
            })
        })
        .map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            SloFileError::Invalid {
                origin: origin.to_string(),
                line,
                column,
                field: if field.is_empty() {
                    "(file)".into()
                } else {
                    field.clone()
                },
                message: plain_message(&e),
            }
        })?;
    validate(&file).map_err(|v| SloFileError::Invalid {
        origin: origin.to_string(),
        line: v.line,
        column: v.column,
        field: v.field,
        message: v.message,
    })?;
    Ok(file)
}

/// `At<T>` deserializes through a span wrapper that adds a `value` segment to the path.
fn clean_path(p: &str) -> String {
    let p = p.replace(".value", "");
    if p == "." || p == "value" {
        String::new()
    } else {
        p
    }
}

/// The parser's message without the location it appends (we report that separately).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let m = e.without_snippet().to_string();
    let m = match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    };
    m.trim().to_string()
}

struct Violation {
    line: u64,
    column: u64,
    field: String,
    message: String,
}

fn at<T>(a: &At<T>, field: String, message: impl Into<String>) -> Violation {
    Violation {
        line: a.line,
        column: a.column,
        field,
        message: message.into(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

fn validate(file: &SloFile) -> Result<(), Violation> {
    let mut names = HashSet::new();
    for (i, slo) in file.slos.iter().enumerate() {
        let p = format!("slos[{i}]");
        check_name(&slo.name, &format!("{p}.name"), &mut names)?;
        validate_slo(slo, &p)?;
    }
    for (i, c) in file.cost_policies.iter().enumerate() {
        let p = format!("cost_policies[{i}]");
        check_name(&c.name, &format!("{p}.name"), &mut names)?;
        validate_cost(c, &p)?;
    }
    Ok(())
}

fn check_name<'a>(
    name: &'a At<String>,
    field: &str,
    seen: &mut HashSet<&'a str>,
) -> Result<(), Violation> {
    if !valid_name(name) {
        return Err(at(
            name,
            field.into(),
            format!(
                "`{}`: names are 1 to 128 of a-z, 0-9, '_', '.', '-'",
                name.value
            ),
        ));
    }
    if !seen.insert(name.as_str()) {
        return Err(at(
            name,
            field.into(),
            format!("`{}` is used twice", name.value),
        ));
    }
    Ok(())
}

fn validate_slo(slo: &At<Slo>, p: &str) -> Result<(), Violation> {
    if slo.window.0.is_zero() {
        return Err(at(&slo.window, format!("{p}.window"), "must be positive"));
    }
    match &slo.sli {
        Sli::Latency(l) if l.threshold.0.is_zero() => {
            return Err(at(
                &l.threshold,
                format!("{p}.sli.latency.threshold"),
                "must be positive",
            ));
        }
        Sli::NegativeFeedback(f) if f.name.trim().is_empty() => {
            return Err(at(
                &f.name,
                format!("{p}.sli.negative_feedback.name"),
                "is empty",
            ));
        }
        Sli::NegativeFeedback(f) => {
            if let super::Negative::Labels(l) = &f.negative {
                if l.is_empty() {
                    return Err(at(
                        l,
                        format!("{p}.sli.negative_feedback.negative.labels"),
                        "lists no label",
                    ));
                }
            }
        }
        Sli::Goodput(g) => {
            if g.duration.is_none() && g.ttft.is_none() && g.tpot.is_none() {
                return Err(at(
                    g,
                    format!("{p}.sli.goodput"),
                    "needs at least one of duration, ttft, tpot",
                ));
            }
            if [g.duration, g.ttft, g.tpot]
                .iter()
                .flatten()
                .any(|d| d.0.is_zero())
            {
                return Err(at(
                    g,
                    format!("{p}.sli.goodput"),
                    "thresholds must be positive",
                ));
            }
        }
        _ => {}
    }
    let a = &slo.alerting;
    if a.windows.is_empty() {
        return Err(at(slo, format!("{p}.alerting.windows"), "is empty"));
    }
    for (j, w) in a.windows.iter().enumerate() {
        let f = format!("{p}.alerting.windows[{j}]");
        if w.short.0.is_zero() || w.short >= w.long {
            return Err(at(
                w,
                f,
                format!(
                    "short window {} must be positive and shorter than the long window {}",
                    w.short, w.long
                ),
            ));
        }
        if !(w.burn_rate.is_finite() && w.burn_rate > 0.0) {
            return Err(at(
                w,
                f,
                format!("burn_rate {} must be positive", w.burn_rate),
            ));
        }
        if w.long > slo.window.value {
            let msg = format!(
                "long window {} is longer than the SLO window {}",
                w.long, slo.window.value
            );
            return Err(if w.line == 0 {
                // A default window: the SLO's own window is what to change.
                at(
                    &slo.window,
                    format!("{p}.window"),
                    format!("{msg} (default alert policy)"),
                )
            } else {
                at(w, f, msg)
            });
        }
    }
    if !(a.resolve_below > 0.0 && a.resolve_below <= 1.0) {
        return Err(at(
            slo,
            format!("{p}.alerting.resolve_below"),
            format!("{} must be in (0, 1]", a.resolve_below),
        ));
    }
    Ok(())
}

fn validate_cost(c: &At<CostPolicy>, p: &str) -> Result<(), Violation> {
    match (&c.spend, &c.change) {
        (Some(s), None) => {
            if !(s.budget_usd.is_finite() && s.budget_usd > 0.0) {
                return Err(at(s, format!("{p}.spend.budget_usd"), "must be positive"));
            }
            if s.lookback.0.is_zero() {
                return Err(at(s, format!("{p}.spend.lookback"), "must be positive"));
            }
            if !(s.alert_at.is_finite() && s.alert_at > 0.0) {
                return Err(at(s, format!("{p}.spend.alert_at"), "must be positive"));
            }
            if s.max_users == 0 {
                return Err(at(s, format!("{p}.spend.max_users"), "must be positive"));
            }
        }
        (None, Some(ch)) => {
            let f = format!("{p}.change");
            if ch.interval.0.is_zero() || ch.baseline < ch.interval {
                return Err(at(
                    ch,
                    f,
                    "interval must be positive and baseline at least one interval",
                ));
            }
            if ch.baseline.as_millis() / ch.interval.as_millis() < 10 {
                return Err(at(ch, f, "baseline must span at least 10 intervals"));
            }
            if !(ch.allowance >= 0.0 && ch.decision > 0.0 && ch.min_relative_change >= 0.0) {
                return Err(at(
                    ch,
                    f,
                    "allowance and min_relative_change must be >= 0, decision positive",
                ));
            }
        }
        _ => {
            return Err(at(c, p.into(), "needs exactly one of `spend` or `change`"));
        }
    }
    Ok(())
}
