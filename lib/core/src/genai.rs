//! GenAI conventions two services must agree on: the `model` key of `llm_calls` (written by
//! the ingester) is the one the detector groups live traffic by, so both normalise model names
//! with [`normalize_model`].

/// Normalises a model name: lowercase, provider prefix and date or `-latest` suffix removed.
pub fn normalize_model(model: &str) -> String {
    let mut m = model.trim().to_ascii_lowercase();
    if let Some((_, rest)) = m.rsplit_once('/') {
        m = rest.to_string();
    }
    if let Some(rest) = m.strip_suffix("-latest") {
        m = rest.to_string();
    }
    // -YYYY-MM-DD (OpenAI snapshots)
    let b = m.as_bytes();
    let n = b.len();
    let is_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if n > 11
        && b[n - 11] == b'-'
        && is_digits(&b[n - 10..n - 6])
        && b[n - 6] == b'-'
        && is_digits(&b[n - 5..n - 3])
        && b[n - 3] == b'-'
        && is_digits(&b[n - 2..])
    {
        m.truncate(n - 11);
    } else if n > 9 && (b[n - 9] == b'-' || b[n - 9] == b'@') && is_digits(&b[n - 8..]) {
        // -YYYYMMDD (Anthropic) or @YYYYMMDD (Vertex)
        m.truncate(n - 9);
    }
    m
}
