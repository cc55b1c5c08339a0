//! GenAI spans -> `llm_calls` rows, from every convention real SDKs send.
//!
//! Precedence when several conventions appear on one span: the newest OpenTelemetry GenAI name
//! first, then its deprecated names, then OpenLLMetry's, then OpenInference's. The first one
//! present wins; values are never summed across conventions. Token counts: cache reads and
//! writes are subsets of input, reasoning a subset of output.

use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use serde_json::{json, Map, Value as Json};

use super::value::{as_string, Attrs};
use crate::pricing::{normalize_model, PriceTable, Usage};
use flywheel_pricing::attrs::{
    CACHE_READ, CACHE_WRITE, CONVERSATION, FIRST_CHUNK_EVENTS, INPUT_TOKENS, MODEL_CALL_OPERATIONS,
    OPERATION, OUTPUT_TOKENS, PROVIDER, REASONING, REQUEST_MODEL, RESPONSE_MODEL, USER,
};
use flywheel_schema::rows::LlmCallRow;

const STREAMING: &[&str] = &[
    "gen_ai.request.stream",
    "gen_ai.is_streaming",
    "llm.is_streaming",
];
const FINISH: &[&str] = &[
    "gen_ai.response.finish_reasons",
    "llm.finish_reason",
    "llm.response.finish_reason",
    "llm.response.stop_reason",
];
/// Request parameters copied into `request_params`, by their name there.
const PARAMS: &[(&str, &[&str])] = &[
    (
        "temperature",
        &["gen_ai.request.temperature", "llm.temperature"],
    ),
    ("top_p", &["gen_ai.request.top_p", "llm.top_p"]),
    ("top_k", &["gen_ai.request.top_k", "llm.top_k"]),
    (
        "max_tokens",
        &[
            "gen_ai.request.max_tokens",
            "gen_ai.request.max_completion_tokens",
            "llm.request.max_tokens",
        ],
    ),
    (
        "frequency_penalty",
        &["gen_ai.request.frequency_penalty", "llm.frequency_penalty"],
    ),
    (
        "presence_penalty",
        &["gen_ai.request.presence_penalty", "llm.presence_penalty"],
    ),
    (
        "seed",
        &["gen_ai.request.seed", "gen_ai.openai.request.seed"],
    ),
    (
        "stop_sequences",
        &["gen_ai.request.stop_sequences", "llm.chat.stop_sequences"],
    ),
    (
        "choice_count",
        &["gen_ai.request.choice.count", "gen_ai.request.n"],
    ),
    (
        "reasoning_effort",
        &[
            "gen_ai.request.reasoning_effort",
            "llm.request.reasoning_effort",
        ],
    ),
];

/// What the mapper needs besides the span.
pub struct CallContext<'a> {
    pub project: &'a str,
    pub service: &'a str,
    pub resource: Attrs<'a>,
    pub received_at_ns: i64,
    pub prices: &'a PriceTable,
    pub capture_content: bool,
}

/// Whether a span is a model call, and which operation.
fn operation(span: Attrs<'_>) -> Option<String> {
    if let Some(op) = span.str(OPERATION) {
        let op = op.to_ascii_lowercase();
        return MODEL_CALL_OPERATIONS.contains(&op.as_str()).then_some(op);
    }
    match span.str(&["openinference.span.kind"]).as_deref() {
        Some("LLM") => Some("chat".to_string()),
        Some("EMBEDDING") => Some("embeddings".to_string()),
        Some(_) => None,
        None => span
            .str(REQUEST_MODEL)
            .is_some()
            .then(|| "chat".to_string()),
    }
}

/// Indexed attributes (`prefix.N.suffix`) as a JSON array of `{field: value}` objects.
fn indexed(span: Attrs<'_>, prefix: &str, fields: &[(&str, &str)]) -> Option<Json> {
    let mut items: Vec<Map<String, Json>> = Vec::new();
    for kv in span.0 {
        let Some(rest) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, suffix)) = rest.split_once('.') else {
            continue;
        };
        let Ok(i) = index.parse::<usize>() else {
            continue;
        };
        let Some((name, _)) = fields.iter().find(|(_, s)| *s == suffix) else {
            continue;
        };
        if i >= 1000 {
            continue;
        }
        if items.len() <= i {
            items.resize_with(i + 1, Map::new);
        }
        items[i].insert(
            (*name).to_string(),
            Json::String(as_string(kv.value.as_ref())),
        );
    }
    let items: Vec<Json> = items
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(Json::Object)
        .collect();
    (!items.is_empty()).then_some(Json::Array(items))
}

const MESSAGE_FIELDS: &[(&str, &str)] = &[
    ("role", "role"),
    ("content", "content"),
    ("finish_reason", "finish_reason"),
];
const OI_MESSAGE_FIELDS: &[(&str, &str)] =
    &[("role", "message.role"), ("content", "message.content")];

fn input_messages(span: Attrs<'_>) -> String {
    if let Some(messages) = span.str(&["gen_ai.input.messages"]) {
        return match span.str(&["gen_ai.system_instructions"]) {
            Some(system) => json!({"system_instructions": parse_or_string(&system), "messages": parse_or_string(&messages)}).to_string(),
            None => messages,
        };
    }
    indexed(span, "gen_ai.prompt.", MESSAGE_FIELDS)
        .or_else(|| indexed(span, "llm.input_messages.", OI_MESSAGE_FIELDS))
        .map(|j| j.to_string())
        .or_else(|| span.str(&["input.value"]))
        .unwrap_or_default()
}

fn output_messages(span: Attrs<'_>) -> String {
    span.str(&["gen_ai.output.messages"])
        .or_else(|| indexed(span, "gen_ai.completion.", MESSAGE_FIELDS).map(|j| j.to_string()))
        .or_else(|| indexed(span, "llm.output_messages.", OI_MESSAGE_FIELDS).map(|j| j.to_string()))
        .or_else(|| span.str(&["output.value"]))
        .unwrap_or_default()
}

fn parse_or_string(s: &str) -> Json {
    serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.to_string()))
}

/// Finish reasons: the attribute, else those inside the output messages or indexed completions.
fn finish_reasons(span: Attrs<'_>) -> Vec<String> {
    if let Some(reasons) = span.strings(FINISH) {
        if !reasons.is_empty() {
            return reasons;
        }
    }
    if let Some(Json::Array(messages)) = span
        .str(&["gen_ai.output.messages"])
        .map(|s| parse_or_string(&s))
    {
        let reasons: Vec<String> = messages
            .iter()
            .filter_map(|m| m.get("finish_reason")?.as_str().map(str::to_string))
            .collect();
        if !reasons.is_empty() {
            return reasons;
        }
    }
    if let Some(Json::Array(items)) = indexed(
        span,
        "gen_ai.completion.",
        &[("finish_reason", "finish_reason")],
    ) {
        return items
            .iter()
            .filter_map(|m| m.get("finish_reason")?.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .collect();
    }
    Vec::new()
}

fn request_params(span: Attrs<'_>) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = PARAMS
        .iter()
        .filter_map(|(name, keys)| {
            keys.iter()
                .find_map(|k| span.get(k))
                .map(|v| ((*name).to_string(), as_string(Some(v))))
        })
        .collect();
    // OpenInference puts the request's parameters in one JSON object.
    if let Some(Json::Object(map)) = span
        .str(&["llm.invocation_parameters"])
        .map(|s| parse_or_string(&s))
    {
        for (k, v) in map {
            if params.iter().any(|(name, _)| *name == k)
                || matches!(v, Json::Array(_) | Json::Object(_) | Json::Null)
            {
                continue;
            }
            let text = match v {
                Json::String(s) => s,
                other => other.to_string(),
            };
            params.push((k, text));
        }
    }
    params.sort();
    params
}

/// The conversation id of a span (any span, not only model calls), else of its resource.
pub fn conversation_id(span: Attrs<'_>, resource: Attrs<'_>) -> String {
    span.str(CONVERSATION)
        .or_else(|| resource.str(CONVERSATION))
        .unwrap_or_default()
}

/// The end user of a span, else of its resource.
pub fn user_id(span: Attrs<'_>, resource: Attrs<'_>) -> String {
    span.str(USER)
        .or_else(|| resource.str(USER))
        .unwrap_or_default()
}

/// Maps a span to an `llm_calls` row, or `None` if it is not a model call.
pub fn llm_call(span: &Span, ctx: &CallContext<'_>) -> Option<LlmCallRow> {
    let a = Attrs(&span.attributes);
    let operation = operation(a)?;
    let request_model = a.str(REQUEST_MODEL).unwrap_or_default();
    let response_model = a.str(RESPONSE_MODEL).unwrap_or_default();
    let provider = a.str(PROVIDER).unwrap_or_default().to_ascii_lowercase();
    let model = normalize_model(if response_model.is_empty() {
        &request_model
    } else {
        &response_model
    });

    let input = a.uint(INPUT_TOKENS);
    let output = a.uint(OUTPUT_TOKENS);
    let usage = Usage {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        cache_read: a.uint(CACHE_READ).unwrap_or(0),
        cache_creation: a.uint(CACHE_WRITE).unwrap_or(0),
        reasoning: a.uint(REASONING).unwrap_or(0),
    };

    let duration_ns = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    let first_chunk = span
        .events
        .iter()
        .filter(|e| FIRST_CHUNK_EVENTS.contains(&e.name.as_str()))
        .map(|e| e.time_unix_nano)
        .min();
    let ttft_ms = a
        .float(&["gen_ai.response.time_to_first_chunk"])
        .map(|s| s * 1000.0)
        .or_else(|| first_chunk.map(|t| t.saturating_sub(span.start_time_unix_nano) as f64 / 1e6));
    let tpot_ms = match (ttft_ms, output) {
        (Some(ttft), Some(out)) if out > 1 => {
            let generation = duration_ns as f64 / 1e6 - ttft;
            (generation >= 0.0).then(|| generation / (out - 1) as f64)
        }
        _ => None,
    };
    let streaming = a.bool(STREAMING).unwrap_or(false) || first_chunk.is_some();

    let status = span.status.as_ref();
    let status_code = match status.map(|s| s.code()) {
        Some(StatusCode::Ok) => "Ok",
        Some(StatusCode::Error) => "Error",
        _ => "Unset",
    };
    let error_type = a
        .str(&["error.type"])
        .or_else(|| {
            span.events
                .iter()
                .find(|e| e.name == "exception")
                .and_then(|e| Attrs(&e.attributes).str(&["exception.type"]))
        })
        .unwrap_or_default();
    let mut finish_reasons = finish_reasons(a);
    // A stream that ended without a finish reason and without an error was stopped early
    // (the user pressed stop, or the client went away); so was a cancelled call.
    let cancelled = error_type.to_ascii_lowercase().contains("cancel");
    let aborted = cancelled || (streaming && finish_reasons.is_empty() && status_code != "Error");
    if aborted && finish_reasons.is_empty() {
        finish_reasons.push("aborted".to_string());
    }

    let price = ctx.prices.lookup(
        &provider,
        if response_model.is_empty() {
            &request_model
        } else {
            &response_model
        },
    );
    let priced = price.filter(|_| input.is_some() || output.is_some());
    let (input_messages, output_messages) = if ctx.capture_content {
        (input_messages(a), output_messages(a))
    } else {
        (String::new(), String::new())
    };

    Some(LlmCallRow {
        timestamp: i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX),
        project: ctx.project.to_string(),
        trace_id: hex::encode(&span.trace_id),
        span_id: hex::encode(&span.span_id),
        parent_span_id: hex::encode(&span.parent_span_id),
        service: ctx.service.to_string(),
        span_name: span.name.clone(),
        operation,
        provider,
        model,
        request_model,
        response_model,
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: usage.cache_read,
        cache_creation_tokens: usage.cache_creation,
        reasoning_tokens: usage.reasoning,
        cost_usd: priced.map(|p| p.cost(&usage)),
        price_version: priced.map(|p| p.version.clone()).unwrap_or_default(),
        duration_ns,
        ttft_ms,
        tpot_ms,
        streaming,
        aborted,
        finish_reasons,
        status_code: status_code.to_string(),
        error_type,
        conversation_id: conversation_id(a, ctx.resource),
        user_id: user_id(a, ctx.resource),
        request_params: request_params(a),
        input_messages,
        output_messages,
        received_at: ctx.received_at_ns,
    })
}

#[cfg(test)]
#[path = "genai_tests.rs"]
mod tests;
