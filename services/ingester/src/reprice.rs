//! `flywheel reprice`: rewrites `llm_calls.cost_usd` and `price_version` from the current price
//! table for calls since a given time, so that a price fix (or a model priced only later)
//! corrects history. One ClickHouse mutation; the SQL cost expression is the same formula as
//! [`crate::pricing::Price::cost`] (cache and reasoning counts clamped to their totals).

use crate::pricing::{Price, PriceTable};

/// A SQL expression for the cost of a row of `llm_calls` at `price`.
pub fn cost_expression(p: &Price) -> String {
    let input = "ifNull(input_tokens, 0)";
    let output = "ifNull(output_tokens, 0)";
    let cache_read = format!("least(cache_read_tokens, {input})");
    let cache_creation = format!("least(cache_creation_tokens, {input} - {cache_read})");
    let reasoning = format!("least(reasoning_tokens, {output})");
    format!(
        "(({input} - {cache_read} - {cache_creation}) * {} + {cache_read} * {} + {cache_creation} * {} \
         + ({output} - {reasoning}) * {} + {reasoning} * {}) / 1000000",
        p.input, p.cached_input, p.cache_write, p.output, p.reasoning
    )
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The mutation repricing every priced model's calls with `timestamp >= since_ns`. Calls of
/// models without a price keep their cost (NULL stays NULL), calls without token counts too.
pub fn mutation(table: &PriceTable, since_ns: i64) -> Option<String> {
    let prices = table.by_model();
    if prices.is_empty() {
        return None;
    }
    let mut cost = String::from("multiIf(");
    let mut version = String::from("multiIf(");
    for (model, price) in &prices {
        cost.push_str(&format!(
            "model = {}, {}, ",
            quote(model),
            cost_expression(price)
        ));
        version.push_str(&format!(
            "model = {}, {}, ",
            quote(model),
            quote(&price.version)
        ));
    }
    cost.push_str("cost_usd)");
    version.push_str("price_version)");
    let models: Vec<String> = prices.iter().map(|(m, _)| quote(m)).collect();
    Some(format!(
        "ALTER TABLE llm_calls UPDATE cost_usd = {cost}, price_version = {version} \
         WHERE timestamp >= fromUnixTimestamp64Nano({since_ns}) \
         AND model IN ({}) AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL) \
         SETTINGS mutations_sync = 2",
        models.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_covers_priced_models_and_keeps_the_rest() {
        let table = PriceTable::load(None).unwrap();
        let sql = mutation(&table, 1_700_000_000_000_000_000).unwrap();
        assert!(sql.starts_with("ALTER TABLE llm_calls UPDATE cost_usd = multiIf(model = "));
        assert!(sql.contains("'gpt-4o-mini'"));
        assert!(sql.contains("cost_usd), price_version = multiIf("));
        assert!(sql.contains("fromUnixTimestamp64Nano(1700000000000000000)"));
    }
}
