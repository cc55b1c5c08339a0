//! Versioned model prices and the cost of a call, shared by the ingester (the `cost_usd` column)
//! and the detector (cost SLIs and policies), so both price a call the same way.
//!
//! The built-in table (`services/ingester/prices.toml`, the single source, embedded at build
//! time) gives USD per
//! million tokens per provider and model: input, cached-input read, cache write, output and
//! reasoning. A prices file (`ingester.prices_file`, `detector.prices_file`) adds or overrides entries without a rebuild. Model names are
//! normalised so dated snapshots price as their family (`gpt-4o-mini-2024-07-18` ->
//! `gpt-4o-mini`, `claude-3-5-sonnet-20241022` -> `claude-3-5-sonnet`). An unknown model costs
//! NULL, never 0.
//!
//! Token accounting never bills twice: cache reads and cache writes are subsets of input tokens,
//! reasoning tokens a subset of output tokens.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

const BUILT_IN: &str = include_str!("../../../services/ingester/prices.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    version: String,
    #[serde(default)]
    model: Vec<PriceEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    provider: String,
    model: String,
    input: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    output: f64,
    reasoning: Option<f64>,
}

/// USD per million tokens for one model, and the table version it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub cache_write: f64,
    pub output: f64,
    pub reasoning: f64,
    pub version: String,
}

/// Token counts of one call (cache and reasoning counts are subsets of input and output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
    pub reasoning: u64,
}

impl Price {
    /// Cost in USD.
    pub fn cost(&self, u: &Usage) -> f64 {
        let cache_read = u.cache_read.min(u.input);
        let cache_creation = u.cache_creation.min(u.input - cache_read);
        let plain_input = u.input - cache_read - cache_creation;
        let reasoning = u.reasoning.min(u.output);
        let plain_output = u.output - reasoning;
        (plain_input as f64 * self.input
            + cache_read as f64 * self.cached_input
            + cache_creation as f64 * self.cache_write
            + plain_output as f64 * self.output
            + reasoning as f64 * self.reasoning)
            / 1_000_000.0
    }
}

/// The model key shared with the detector (`flywheel_core::genai`).
pub use flywheel_core::genai::normalize_model;

/// GenAI span attribute names by precedence (the newest OpenTelemetry GenAI name first, then
/// deprecated names, OpenLLMetry's, OpenInference's; the first one present wins): what the
/// ingester maps into `llm_calls` and the detector reads live, from one list so they agree.
pub mod attrs {
    pub const PROVIDER: &[&str] = &[
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
    ];
    pub const INPUT_TOKENS: &[&str] = &[
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
    ];
    pub const OUTPUT_TOKENS: &[&str] = &[
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
    ];
    pub const CACHE_READ: &[&str] = &[
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
    ];
    pub const CACHE_WRITE: &[&str] = &[
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
    ];
    pub const REASONING: &[&str] = &[
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "llm.usage.reasoning_tokens",
        "llm.token_count.completion_details.reasoning",
    ];
    pub const OPERATION: &[&str] = &["gen_ai.operation.name", "llm.request.type"];
    pub const REQUEST_MODEL: &[&str] = &[
        "gen_ai.request.model",
        "llm.request.model_name",
        "llm.model_name",
    ];
    pub const RESPONSE_MODEL: &[&str] = &[
        "gen_ai.response.model",
        "llm.response.model_name",
        "llm.model_name",
    ];
    pub const CONVERSATION: &[&str] = &[
        "gen_ai.conversation.id",
        "session.id",
        "traceloop.association.properties.session_id",
        "traceloop.association.properties.conversation_id",
        "traceloop.association.properties.chat_id",
    ];
    /// The end user of a call (`llm_calls.user_id`): the first present with a non-empty value,
    /// on the span, else on its resource.
    pub const USER: &[&str] = &[
        "user.id",
        "enduser.id",
        "gen_ai.user",
        "llm.user",
        "traceloop.association.properties.user_id",
    ];
    /// Span events whose first occurrence marks the first streamed token.
    pub const FIRST_CHUNK_EVENTS: &[&str] = &[
        "gen_ai.content.completion.chunk",
        "llm.content.completion.chunk",
        "First Token Stream Event",
    ];
    /// Operations that are model calls (agent, tool and workflow spans are not).
    pub const MODEL_CALL_OPERATIONS: &[&str] = &[
        "chat",
        "text_completion",
        "generate_content",
        "embeddings",
        "completion",
        "embedding",
        "rerank",
    ];
}

fn normalize_provider(provider: &str) -> String {
    let p = provider.trim().to_ascii_lowercase();
    match p.as_str() {
        "azure.ai.openai" | "azure_openai" | "azure" => "openai".to_string(),
        "gcp.gemini" | "gcp.vertex_ai" | "google" | "vertex_ai" | "gemini" | "gcp.gen_ai" => {
            "google".to_string()
        }
        "aws.bedrock" => "anthropic".to_string(),
        _ => p,
    }
}

/// The price table: built-in entries, overridden by the optional file.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// (provider, normalised model) -> price; also (``, model) for provider-less lookups.
    prices: HashMap<(String, String), Price>,
}

impl PriceTable {
    /// The built-in table plus `extra` (whose entries win).
    pub fn load(extra: Option<&Path>) -> Result<Self, String> {
        let mut table = Self {
            prices: HashMap::new(),
        };
        table.add(BUILT_IN, "built-in prices.toml")?;
        if let Some(path) = extra {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            table.add(&text, &path.display().to_string())?;
        }
        Ok(table)
    }

    fn add(&mut self, text: &str, origin: &str) -> Result<(), String> {
        let file: PriceFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        for e in file.model {
            for (field, v) in [
                ("input", Some(e.input)),
                ("output", Some(e.output)),
                ("cached_input", e.cached_input),
                ("cache_write", e.cache_write),
                ("reasoning", e.reasoning),
            ] {
                if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                    return Err(format!(
                        "{origin}: {}/{}: {field} must be a non-negative number",
                        e.provider, e.model
                    ));
                }
            }
            let price = Price {
                input: e.input,
                cached_input: e.cached_input.unwrap_or(e.input),
                cache_write: e.cache_write.unwrap_or(e.input),
                output: e.output,
                reasoning: e.reasoning.unwrap_or(e.output),
                version: file.version.clone(),
            };
            let model = normalize_model(&e.model);
            self.prices
                .insert((String::new(), model.clone()), price.clone());
            self.prices
                .insert((normalize_provider(&e.provider), model), price);
        }
        Ok(())
    }

    /// One price per normalised model name (the provider-less entries), sorted by model.
    pub fn by_model(&self) -> Vec<(String, Price)> {
        let mut out: Vec<(String, Price)> = self
            .prices
            .iter()
            .filter(|((provider, _), _)| provider.is_empty())
            .map(|((_, model), price)| (model.clone(), price.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The price of `model` (normalised) from `provider`, falling back to the model alone.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&Price> {
        let model = normalize_model(model);
        self.prices
            .get(&(normalize_provider(provider), model.clone()))
            .or_else(|| self.prices.get(&(String::new(), model)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_snapshots_and_prefixes() {
        assert_eq!(normalize_model("gpt-4o-mini-2024-07-18"), "gpt-4o-mini");
        assert_eq!(
            normalize_model("claude-3-5-sonnet-20241022"),
            "claude-3-5-sonnet"
        );
        assert_eq!(
            normalize_model("claude-3-5-sonnet@20241022"),
            "claude-3-5-sonnet"
        );
        assert_eq!(normalize_model("openai/GPT-4o"), "gpt-4o");
        assert_eq!(
            normalize_model("claude-3-7-sonnet-latest"),
            "claude-3-7-sonnet"
        );
        assert_eq!(normalize_model("gpt-4.1"), "gpt-4.1");
        assert_eq!(normalize_model("o3"), "o3");
    }

    #[test]
    fn never_bills_cached_or_reasoning_twice() {
        let p = Price {
            input: 2.0,
            cached_input: 0.5,
            cache_write: 2.5,
            output: 8.0,
            reasoning: 8.0,
            version: "t".into(),
        };
        let u = Usage {
            input: 1_000_000,
            output: 1_000_000,
            cache_read: 400_000,
            cache_creation: 100_000,
            reasoning: 250_000,
        };
        // 500k plain input * 2 + 400k * 0.5 + 100k * 2.5 + 1M output * 8
        assert!(
            (p.cost(&u) - (1.0 + 0.2 + 0.25 + 8.0)).abs() < 1e-9,
            "{}",
            p.cost(&u)
        );
        // Inconsistent counts (cache larger than input) are clamped, never negative.
        let odd = Usage {
            input: 10,
            cache_read: 50,
            ..Usage::default()
        };
        assert!((p.cost(&odd) - 10.0 * 0.5 / 1e6).abs() < 1e-12);
    }

    #[test]
    fn built_in_table_loads_and_prices_snapshots() {
        let t = PriceTable::load(None).unwrap();
        let p = t
            .lookup("openai", "gpt-4o-mini-2024-07-18")
            .expect("gpt-4o-mini priced");
        assert!(p.input > 0.0 && p.output > p.input);
        assert!(t.lookup("", "gpt-4o-mini").is_some());
        assert!(t.lookup("openai", "my-finetune-xyz").is_none());
    }

    #[test]
    fn override_file_wins() {
        let dir = std::env::temp_dir().join(format!("fw-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        std::fs::write(
            &path,
            "version = \"custom-1\"\n[[model]]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\ninput = 1.0\noutput = 2.0\n",
        )
        .unwrap();
        let t = PriceTable::load(Some(&path)).unwrap();
        let p = t.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(
            (p.input, p.output, p.cached_input, p.version.as_str()),
            (1.0, 2.0, 1.0, "custom-1")
        );
        std::fs::write(
            &path,
            "version = \"x\"\n[[model]]\nprovider = \"a\"\nmodel = \"b\"\ninput = -1\noutput = 2\n",
        )
        .unwrap();
        assert!(PriceTable::load(Some(&path))
            .unwrap_err()
            .contains("non-negative"));
    }
}
