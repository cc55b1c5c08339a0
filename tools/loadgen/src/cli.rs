//! `flywheel loadgen`: command-line flags over the scenario file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{parse_duration, Scenario};
use crate::incident::IncidentConfig;
use crate::run::{run, Pace, RunOptions};
use crate::sink::http::HttpExporter;
use crate::sink::MemoryExporter;
use crate::summary::Summary;
use crate::LoadgenError;

/// The collector refuses feedback timestamps further than this ahead of its clock.
const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// Flags of `flywheel loadgen` (each overrides the scenario file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoadgenArgs {
    /// Scenario file (TOML): traffic, models, feedback and signal rates, incidents.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Collector base URL (default http://127.0.0.1:4318).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// API key, sent as `Authorization: Bearer`.
    #[arg(long, env = "FLYWHEEL_LOADGEN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Mean model calls per second.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Simulated period (`90s`, `30m`, `6h`, `7d`).
    #[arg(long)]
    pub duration: Option<String>,
    /// Simulated seconds per wall second, or `max` (as fast as the collector accepts).
    /// Default: 1 (real time), or `max` with --simulate-days.
    #[arg(long)]
    pub speedup: Option<String>,
    /// Simulate this many days (same as `--duration <D>d --speedup max`).
    #[arg(long, conflicts_with = "duration")]
    pub simulate_days: Option<f64>,
    /// Simulated start: RFC 3339, or `now`. Default: now in real time, else now minus the
    /// duration (so that no timestamp is in the future).
    #[arg(long)]
    pub start: Option<String>,
    /// Extra incident: `kind=ttft_regression,start=10m,duration=5m,model=gpt-4o,multiplier=3`.
    #[arg(long = "incident")]
    pub incidents: Vec<String>,
    /// Write the ground truth (run, incidents with exact windows, summary) as JSON lines.
    #[arg(long)]
    pub ground_truth: Option<PathBuf>,
    /// Generate and encode without sending (measures the generator).
    #[arg(long)]
    pub dry_run: bool,
}

impl LoadgenArgs {
    /// The scenario after flags, validated.
    pub fn scenario(&self) -> Result<Scenario, LoadgenError> {
        let mut scenario = match &self.scenario {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| LoadgenError::Io(format!("{}: {e}", path.display())))?;
                Scenario::from_toml(&text).map_err(|e| match e {
                    LoadgenError::Scenario(m) => {
                        LoadgenError::Scenario(format!("{}: {m}", path.display()))
                    }
                    other => other,
                })?
            }
            None => Scenario::default(),
        };
        if let Some(e) = &self.endpoint {
            scenario.sink.endpoint.clone_from(e);
        }
        if self.api_key.is_some() {
            scenario.sink.api_key.clone_from(&self.api_key);
        }
        if let Some(r) = self.rate {
            scenario.rate = r;
        }
        if let Some(s) = self.seed {
            scenario.seed = s;
        }
        if let Some(d) = &self.duration {
            scenario.duration = parse_duration(d).map_err(|m| flag("--duration", &m))?;
        }
        if let Some(days) = self.simulate_days {
            scenario.duration = Duration::try_from_secs_f64(days * 86_400.0)
                .map_err(|e| flag("--simulate-days", &e.to_string()))?;
        }
        for text in &self.incidents {
            scenario.incidents.push(parse_incident(text)?);
        }
        scenario.validate()?;
        Ok(scenario)
    }

    /// The pace and start after flags, relative to the wall clock `now_ns`.
    pub fn options(&self, scenario: &Scenario, now_ns: i64) -> Result<RunOptions, LoadgenError> {
        let pace = match self.speedup.as_deref() {
            Some("max") => Pace::Unlimited,
            Some(s) => match s.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Pace::Speedup(x),
                _ => return Err(flag("--speedup", "must be a number > 0 or `max`")),
            },
            None if self.simulate_days.is_some() => Pace::Unlimited,
            None => Pace::Speedup(1.0),
        };
        let duration_ns = i64::try_from(scenario.duration.as_nanos()).unwrap_or(i64::MAX / 4);
        let start_ns = match self.start.as_deref() {
            Some("now") => now_ns,
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| flag("--start", &format!("{s:?}: {e}")))?
                .timestamp_nanos_opt()
                .ok_or_else(|| flag("--start", "out of range"))?,
            None if pace == Pace::Speedup(1.0) => now_ns,
            None => now_ns - duration_ns,
        };
        // The last simulated time against the wall clock when it is generated.
        let wall_end = match pace {
            Pace::Speedup(x) => now_ns + (duration_ns as f64 / x) as i64,
            Pace::Unlimited => now_ns,
        };
        let ahead = start_ns.saturating_add(duration_ns) - wall_end;
        if ahead > MAX_AHEAD.as_nanos() as i64 {
            return Err(flag(
                "--start",
                &format!(
                    "the simulated clock would run {} s ahead of the wall clock; the collector \
                     refuses feedback more than {} s in the future: start earlier or slow down",
                    ahead / 1_000_000_000,
                    MAX_AHEAD.as_secs()
                ),
            ));
        }
        Ok(RunOptions {
            start_ns,
            pace,
            ground_truth: self.ground_truth.clone(),
        })
    }
}

fn flag(name: &str, message: &str) -> LoadgenError {
    LoadgenError::Scenario(format!("{name}: {message}"))
}

/// `key=value,...` -> an incident (numbers stay numbers; durations as in the file).
pub fn parse_incident(text: &str) -> Result<IncidentConfig, LoadgenError> {
    let mut table = toml::Table::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| flag("--incident", &format!("{pair:?} is not key=value")))?;
        let v = v.trim();
        let value = match v.parse::<f64>() {
            Ok(n) => toml::Value::Float(n),
            Err(_) => toml::Value::String(v.to_string()),
        };
        table.insert(k.trim().to_string(), value);
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e| flag("--incident", &format!("{text:?}: {e}")))
}

/// Runs `flywheel loadgen` with `args` until done or `shutdown`; prints the summary.
pub async fn main(args: LoadgenArgs, shutdown: CancellationToken) -> Result<Summary, LoadgenError> {
    let scenario = args.scenario()?;
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let options = args.options(&scenario, now_ns)?;
    tracing::info!(
        rate = scenario.rate,
        duration_s = scenario.duration.as_secs(),
        pace = ?options.pace,
        incidents = scenario.incidents.len(),
        endpoint = %scenario.sink.endpoint,
        "loadgen starting"
    );
    let summary = if args.dry_run {
        run(
            scenario,
            options,
            Arc::new(MemoryExporter::default()),
            shutdown,
        )
        .await?
    } else {
        let exporter = Arc::new(HttpExporter::new(&scenario.sink)?);
        run(scenario, options, exporter, shutdown).await?
    };
    print!("{summary}");
    Ok(summary)
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
