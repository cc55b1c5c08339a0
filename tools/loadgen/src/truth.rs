//! The ground truth of a run, as JSON lines, for the MTTD benchmark:
//!
//! - `{"type":"run", ...}`: run id, seed, simulated period, speedup, configured rate;
//! - `{"type":"incident", ...}`: one per incident, with its exact window in event time
//!   (`start` inclusive, `end` exclusive; RFC 3339 and Unix ns), kind and parameters;
//! - `{"type":"summary", ...}`: written at the end: what was generated and delivered, and
//!   `generated_until` (earlier than the period's end when the run was interrupted: incidents
//!   after it did not happen).
//!
//! The run and incident lines are written and flushed before the first record is sent.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::event::rfc3339;
use crate::incident::Incident;
use crate::summary::Summary;
use crate::LoadgenError;

/// An open ground-truth file.
#[derive(Debug)]
pub struct GroundTruth {
    file: std::io::BufWriter<std::fs::File>,
    path: String,
}

/// What the run line says.
#[derive(Debug, Clone)]
pub struct RunInfo<'a> {
    pub run_id: &'a str,
    pub seed: u64,
    pub start_ns: i64,
    pub end_ns: i64,
    pub rate: f64,
    pub speedup: Option<f64>,
    pub service: &'a str,
}

impl GroundTruth {
    pub fn create(path: &Path) -> Result<Self, LoadgenError> {
        let file = std::fs::File::create(path)
            .map_err(|e| LoadgenError::Io(format!("{}: {e}", path.display())))?;
        Ok(Self {
            file: std::io::BufWriter::new(file),
            path: path.display().to_string(),
        })
    }

    pub fn start(&mut self, run: &RunInfo<'_>, incidents: &[Incident]) -> Result<(), LoadgenError> {
        self.line(&run_line(run))?;
        for incident in incidents {
            self.line(&incident_line(incident))?;
        }
        self.flush()
    }

    pub fn finish(&mut self, summary: &Summary) -> Result<(), LoadgenError> {
        let mut line = serde_json::to_value(summary).unwrap_or_default();
        line["type"] = json!("summary");
        line["generated_until"] = json!(rfc3339(summary.generated_until_ns));
        self.line(&line)?;
        self.flush()
    }

    fn line(&mut self, value: &serde_json::Value) -> Result<(), LoadgenError> {
        writeln!(self.file, "{value}").map_err(|e| LoadgenError::Io(format!("{}: {e}", self.path)))
    }

    fn flush(&mut self) -> Result<(), LoadgenError> {
        self.file
            .flush()
            .map_err(|e| LoadgenError::Io(format!("{}: {e}", self.path)))
    }
}

pub fn run_line(run: &RunInfo<'_>) -> serde_json::Value {
    json!({
        "type": "run",
        "run_id": run.run_id,
        "seed": run.seed,
        "service": run.service,
        "start": rfc3339(run.start_ns),
        "end": rfc3339(run.end_ns),
        "start_unix_ns": run.start_ns,
        "end_unix_ns": run.end_ns,
        "rate": run.rate,
        "speedup": run.speedup,
    })
}

pub fn incident_line(incident: &Incident) -> serde_json::Value {
    let mut line = serde_json::to_value(incident).unwrap_or_default();
    line["type"] = json!("incident");
    line["start"] = json!(rfc3339(incident.start_ns));
    line["end"] = json!(rfc3339(incident.end_ns));
    if let Some(map) = line.as_object_mut() {
        for (from, to) in [("start_ns", "start_unix_ns"), ("end_ns", "end_unix_ns")] {
            if let Some(v) = map.remove(from) {
                map.insert(to.into(), v);
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentKind;

    #[test]
    fn incident_line_has_the_exact_window() {
        let incident = Incident {
            name: "gpt-4o slow".into(),
            kind: IncidentKind::TtftRegression,
            start_ns: 1_764_000_000_123_456_789,
            end_ns: 1_764_000_600_123_456_789,
            model: Some("gpt-4o".into()),
            provider: None,
            multiplier: Some(3.0),
            error_ratio: None,
            ratio: None,
            rate_multiplier: None,
        };
        assert_eq!(
            incident_line(&incident),
            json!({
                "type": "incident", "name": "gpt-4o slow", "kind": "ttft_regression",
                "start": "2025-11-24T16:00:00.123456789Z", "end": "2025-11-24T16:10:00.123456789Z",
                "start_unix_ns": 1_764_000_000_123_456_789_i64,
                "end_unix_ns": 1_764_000_600_123_456_789_i64,
                "model": "gpt-4o", "multiplier": 3.0,
            })
        );
    }
}
