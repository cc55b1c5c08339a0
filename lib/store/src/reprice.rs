//! `flywheel reprice` in both dialects: one statement rewriting `llm_calls.cost_usd` and
//! `price_version` from a price table for the calls since a time, so that a price fix (or a
//! model priced only later) corrects history.
//!
//! The cost expression is the formula of [`flywheel_pricing::Price::cost`] in SQL (cache and
//! reasoning counts clamped to their totals, per million tokens). Calls of models without a
//! price keep their cost (NULL stays NULL), calls without token counts too. The statement is
//! the same text on both backends but for its head and tail: a synchronous mutation
//! (`ALTER TABLE … UPDATE … SETTINGS mutations_sync = 2`) on ClickHouse, an `UPDATE` in one
//! transaction on DuckDB. Prices, models and versions are bound, never spliced.

use flywheel_pricing::Price;

use crate::sql::{Bind, Dialect, Sql};

/// The SQL cost of a row of `llm_calls`, with the five prices bound in the order
/// input, cached input, cache write, output, reasoning.
const COST: &str =
    "((coalesce(input_tokens, 0) - least(cache_read_tokens, coalesce(input_tokens, 0)) \
     - least(cache_creation_tokens, coalesce(input_tokens, 0) \
       - least(cache_read_tokens, coalesce(input_tokens, 0)))) * ? \
     + least(cache_read_tokens, coalesce(input_tokens, 0)) * ? \
     + least(cache_creation_tokens, coalesce(input_tokens, 0) \
       - least(cache_read_tokens, coalesce(input_tokens, 0))) * ? \
     + (coalesce(output_tokens, 0) - least(reasoning_tokens, coalesce(output_tokens, 0))) * ? \
     + least(reasoning_tokens, coalesce(output_tokens, 0)) * ?) / 1000000";

/// The statement repricing the calls of every model of `prices` with `timestamp >= since_ns`
/// (Unix ns); `None` when there is no price at all.
pub fn statement(d: Dialect, prices: &[(String, Price)], since_ns: i64) -> Option<Sql> {
    if prices.is_empty() {
        return None;
    }
    let mut sql = Sql::default();
    sql.text.push_str(match d {
        Dialect::ClickHouse => "ALTER TABLE llm_calls UPDATE cost_usd = CASE",
        Dialect::DuckDb => "UPDATE llm_calls SET cost_usd = CASE",
    });
    for (model, p) in prices {
        sql.text.push_str(" WHEN model = ? THEN ");
        sql.text.push_str(COST);
        sql.binds.push(Bind::Str(model.clone()));
        sql.binds.extend(
            [
                p.input,
                p.cached_input,
                p.cache_write,
                p.output,
                p.reasoning,
            ]
            .map(Bind::F64),
        );
    }
    sql.text
        .push_str(" ELSE cost_usd END, price_version = CASE");
    for (model, p) in prices {
        sql.text.push_str(" WHEN model = ? THEN ?");
        sql.binds.push(Bind::Str(model.clone()));
        sql.binds.push(Bind::Str(p.version.clone()));
    }
    sql.text
        .push_str(" ELSE price_version END WHERE timestamp >= ");
    sql.text.push_str(d.ts_of_ns());
    sql.text
        .push_str(" AND model IN ? AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)");
    sql.binds.push(Bind::I64(since_ns));
    sql.binds
        .push(Bind::Strs(prices.iter().map(|(m, _)| m.clone()).collect()));
    if d == Dialect::ClickHouse {
        sql.text.push_str(" SETTINGS mutations_sync = 2");
    }
    Some(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(version: &str) -> Price {
        Price {
            input: 1.0,
            cached_input: 0.5,
            cache_write: 1.25,
            output: 2.0,
            reasoning: 2.0,
            version: version.into(),
        }
    }

    #[test]
    fn every_placeholder_has_its_bind() {
        let prices = vec![
            ("a".to_string(), price("v1")),
            ("b'".to_string(), price("v2")),
        ];
        for d in [Dialect::ClickHouse, Dialect::DuckDb] {
            let sql = statement(d, &prices, 7).unwrap();
            assert_eq!(sql.text.matches('?').count(), sql.binds.len(), "{d:?}");
            // Names are bound, never spliced into the text.
            assert!(!sql.text.contains("b'"));
        }
        assert!(statement(Dialect::DuckDb, &[], 0).is_none());
    }
}
