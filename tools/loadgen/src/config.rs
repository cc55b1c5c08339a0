//! The scenario: what traffic to make and which incidents to inject, read from a TOML file
//! (`--scenario`) whose every field has a default. `scenarios/*.toml` are samples.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::incident::IncidentConfig;
use crate::LoadgenError;

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Seed of every random choice: the same seed, scenario and start time give the same
    /// traffic, ids included.
    pub seed: u64,
    /// Mean model calls per second (all models), before incidents that change the rate.
    pub rate: f64,
    /// Length of the simulated period (`90s`, `30m`, `6h`, `7d`).
    #[serde(deserialize_with = "de_duration")]
    pub duration: Duration,
    /// `service.name` of the simulated application.
    pub service: String,
    /// Share of calls that stream (only streamed calls report TTFT and TPOT).
    pub streaming_share: f64,
    /// Also send the application's HTTP server span around each model call (two spans per
    /// call instead of one).
    pub app_spans: bool,
    /// Record input and output messages (`gen_ai.input.messages`); the ingester's regenerate
    /// rule needs them.
    pub capture_content: bool,
    /// Error ratio of calls per provider (`openai = 0.01`); providers not listed never fail
    /// outside incidents.
    pub provider_error_rate: BTreeMap<String, f64>,
    pub conversation: ConversationConfig,
    pub feedback: FeedbackConfig,
    pub signals: SignalsConfig,
    /// The models, picked per conversation by `weight`.
    #[serde(rename = "model")]
    pub models: Vec<ModelConfig>,
    pub sink: SinkConfig,
    /// Scheduled incidents.
    #[serde(rename = "incident")]
    pub incidents: Vec<IncidentConfig>,
}

/// A log-normal distribution given by its mean and the standard deviation of its logarithm
/// (`sigma`: 0.3 is tight, 1.0 heavy-tailed).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormalSpec {
    pub mean: f64,
    pub sigma: f64,
}

impl LogNormalSpec {
    pub const fn new(mean: f64, sigma: f64) -> Self {
        Self { mean, sigma }
    }
}

/// One model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Request model (`gen_ai.request.model`), priced by the ingester's price table.
    pub name: String,
    /// Response model (`gen_ai.response.model`), e.g. a dated snapshot; default: `name`.
    #[serde(default)]
    pub response_model: Option<String>,
    /// `gen_ai.provider.name`: `openai`, `anthropic`, `gcp.gemini`, ...
    pub provider: String,
    /// Relative share of conversations.
    pub weight: f64,
    /// Time to first token, milliseconds.
    pub ttft_ms: LogNormalSpec,
    /// Time per output token after the first, milliseconds.
    pub tpot_ms: LogNormalSpec,
    pub input_tokens: LogNormalSpec,
    pub output_tokens: LogNormalSpec,
    /// `gen_ai.request.max_tokens`: longer answers are cut there (`finish_reason = length`).
    #[serde(default = "default_max_tokens")]
    pub max_output_tokens: u64,
}

fn default_max_tokens() -> u64 {
    4096
}

/// How users converse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationConfig {
    /// Mean user turns per conversation (geometric, at least 1).
    pub mean_turns: f64,
    /// Seconds between an answer and the user's next message.
    pub think_time_s: LogNormalSpec,
    /// Seconds between an answer and the user's reaction to it (feedback, regenerate, copy).
    pub reaction_time_s: LogNormalSpec,
    /// Distinct users.
    pub users: u32,
}

/// Base rates of explicit feedback.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Share of answers that get a thumbs (`name = "thumbs"`, boolean, `source = human`).
    pub thumbs_rate: f64,
    /// Share of thumbs that are down.
    pub thumbs_down_ratio: f64,
    /// Share of answers scored by an evaluator (`name = "score"`, number in 0..1,
    /// `source = model`).
    pub score_rate: f64,
    /// Mean of the score (Beta distributed).
    pub score_mean: f64,
}

/// Base rates of implicit signals. Regenerate and stop also show in the spans (same input
/// resent; a stream ended without a finish reason), which the ingester derives signals from;
/// `explicit_regenerate_stop` decides whether the application also posts them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Share of answers the user regenerates (the same input, in the same conversation).
    pub regenerate: f64,
    /// Share of streamed answers the user stops early.
    pub stop: f64,
    /// Share of answers the user edits.
    pub edit: f64,
    /// Share of answers the user copies.
    pub copy: f64,
    /// Share of answers after which the user abandons the conversation.
    pub abandon: f64,
    /// Share of failed calls the user sends again.
    pub retry_after_error: f64,
    /// Post `regenerate` and `stop` signals too (as a chat UI with buttons would).
    pub explicit_regenerate_stop: bool,
}

/// Where the traffic goes and how it is batched.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// The collector's OTLP/HTTP base URL (`/v1/traces`, `/v1/feedback`, `/v1/signals`).
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Spans per OTLP request at most.
    pub max_spans_per_request: usize,
    /// Feedback items or signals per JSON request at most.
    pub max_items_per_request: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// In paced runs, a partial batch is sent after this long (wall time).
    pub flush_interval_ms: u64,
    /// Attempts per request on 429, 503 and connection errors before it counts as refused.
    pub max_attempts: u32,
    /// Per-request timeout, seconds.
    pub timeout_s: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 1,
            rate: 5.0,
            duration: Duration::from_secs(600),
            service: "loadgen-chat".into(),
            streaming_share: 0.7,
            app_spans: true,
            capture_content: true,
            provider_error_rate: [
                ("openai".to_string(), 0.01),
                ("anthropic".to_string(), 0.015),
                ("gcp.gemini".to_string(), 0.01),
            ]
            .into(),
            conversation: ConversationConfig::default(),
            feedback: FeedbackConfig::default(),
            signals: SignalsConfig::default(),
            models: default_models(),
            sink: SinkConfig::default(),
            incidents: Vec::new(),
        }
    }
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            mean_turns: 4.0,
            think_time_s: LogNormalSpec::new(25.0, 0.8),
            reaction_time_s: LogNormalSpec::new(6.0, 0.6),
            users: 500,
        }
    }
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            thumbs_rate: 0.15,
            thumbs_down_ratio: 0.1,
            score_rate: 0.2,
            score_mean: 0.8,
        }
    }
}

impl Default for SignalsConfig {
    fn default() -> Self {
        Self {
            regenerate: 0.04,
            stop: 0.03,
            edit: 0.02,
            copy: 0.1,
            abandon: 0.05,
            retry_after_error: 0.6,
            explicit_regenerate_stop: true,
        }
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318".into(),
            api_key: None,
            max_spans_per_request: 1000,
            max_items_per_request: 500,
            concurrency: 4,
            flush_interval_ms: 200,
            max_attempts: 20,
            timeout_s: 30,
        }
    }
}

/// Four models of three providers, with figures in the range public benchmarks report.
pub fn default_models() -> Vec<ModelConfig> {
    let model = |name: &str, response: &str, provider: &str, weight, ttft, tpot, input, output| {
        ModelConfig {
            name: name.into(),
            response_model: Some(response.into()),
            provider: provider.into(),
            weight,
            ttft_ms: LogNormalSpec::new(ttft, 0.35),
            tpot_ms: LogNormalSpec::new(tpot, 0.25),
            input_tokens: LogNormalSpec::new(input, 0.9),
            output_tokens: LogNormalSpec::new(output, 0.7),
            max_output_tokens: 4096,
        }
    };
    vec![
        model(
            "gpt-4o",
            "gpt-4o-2024-08-06",
            "openai",
            0.3,
            450.0,
            12.0,
            1800.0,
            350.0,
        ),
        model(
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            "openai",
            0.35,
            350.0,
            8.0,
            1200.0,
            300.0,
        ),
        model(
            "claude-sonnet-4",
            "claude-sonnet-4-20250514",
            "anthropic",
            0.2,
            900.0,
            15.0,
            2500.0,
            450.0,
        ),
        model(
            "gemini-2.5-flash",
            "gemini-2.5-flash",
            "gcp.gemini",
            0.15,
            550.0,
            5.0,
            1500.0,
            400.0,
        ),
    ]
}

impl Scenario {
    /// Parses a scenario file's text and validates it.
    pub fn from_toml(text: &str) -> Result<Self, LoadgenError> {
        let scenario: Self =
            toml::from_str(text).map_err(|e| LoadgenError::Scenario(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks what types cannot, naming the field at fault.
    pub fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |field: &str, message: &str| {
            Err(LoadgenError::Scenario(format!("`{field}` {message}")))
        };
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("rate", "must be a number > 0");
        }
        if self.duration.is_zero() {
            return bad("duration", "must be longer than 0");
        }
        for (field, share) in [
            ("streaming_share", self.streaming_share),
            ("feedback.thumbs_rate", self.feedback.thumbs_rate),
            (
                "feedback.thumbs_down_ratio",
                self.feedback.thumbs_down_ratio,
            ),
            ("feedback.score_rate", self.feedback.score_rate),
            ("signals.regenerate", self.signals.regenerate),
            ("signals.stop", self.signals.stop),
            ("signals.edit", self.signals.edit),
            ("signals.copy", self.signals.copy),
            ("signals.abandon", self.signals.abandon),
            ("signals.retry_after_error", self.signals.retry_after_error),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return bad(field, "must be between 0 and 1");
            }
        }
        if !(self.feedback.score_mean > 0.0 && self.feedback.score_mean < 1.0) {
            return bad("feedback.score_mean", "must be strictly between 0 and 1");
        }
        for (provider, rate) in &self.provider_error_rate {
            if !(0.0..=1.0).contains(rate) {
                return bad(
                    &format!("provider_error_rate.{provider}"),
                    "must be between 0 and 1",
                );
            }
        }
        if self.conversation.mean_turns < 1.0 {
            return bad("conversation.mean_turns", "must be at least 1");
        }
        if self.conversation.users == 0 {
            return bad("conversation.users", "must be at least 1");
        }
        for (field, spec) in [
            ("conversation.think_time_s", self.conversation.think_time_s),
            (
                "conversation.reaction_time_s",
                self.conversation.reaction_time_s,
            ),
        ] {
            check_spec(field, spec)?;
        }
        if self.models.is_empty() {
            return bad("model", "needs at least one [[model]]");
        }
        for (i, m) in self.models.iter().enumerate() {
            let field = |f: &str| format!("model[{i}].{f}");
            if m.name.is_empty() || m.provider.is_empty() {
                return bad(&field("name"), "and `provider` must not be empty");
            }
            if !(m.weight.is_finite() && m.weight > 0.0) {
                return bad(&field("weight"), "must be a number > 0");
            }
            check_spec(&field("ttft_ms"), m.ttft_ms)?;
            check_spec(&field("tpot_ms"), m.tpot_ms)?;
            check_spec(&field("input_tokens"), m.input_tokens)?;
            check_spec(&field("output_tokens"), m.output_tokens)?;
            if m.max_output_tokens == 0 {
                return bad(&field("max_output_tokens"), "must be at least 1");
            }
        }
        let sink = &self.sink;
        if !(sink.endpoint.starts_with("http://") || sink.endpoint.starts_with("https://")) {
            return bad("sink.endpoint", "must be an http:// or https:// URL");
        }
        for (field, n) in [
            ("sink.max_spans_per_request", sink.max_spans_per_request),
            ("sink.max_items_per_request", sink.max_items_per_request),
            ("sink.concurrency", sink.concurrency),
        ] {
            if n == 0 {
                return bad(field, "must be at least 1");
            }
        }
        if sink.max_attempts == 0 {
            return bad("sink.max_attempts", "must be at least 1");
        }
        for (i, incident) in self.incidents.iter().enumerate() {
            incident.check(i, self)?;
        }
        Ok(())
    }
}

fn check_spec(field: &str, spec: LogNormalSpec) -> Result<(), LoadgenError> {
    if !(spec.mean.is_finite() && spec.mean > 0.0) {
        return Err(LoadgenError::Scenario(format!(
            "`{field}.mean` must be a number > 0"
        )));
    }
    if !(spec.sigma.is_finite() && (0.0..=3.0).contains(&spec.sigma)) {
        return Err(LoadgenError::Scenario(format!(
            "`{field}.sigma` must be between 0 and 3"
        )));
    }
    Ok(())
}

/// Parses `250ms`, `90s`, `30m`, `6h`, `7d` (a number alone is seconds; decimals allowed).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (ms, s, m, h, d)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// Serde: a duration as a string (`"30m"`) or a number of seconds.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
