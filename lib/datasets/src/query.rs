//! What an export reads, through the [`Store`] (ClickHouse or embedded DuckDB; the SQL lives in
//! `flywheel_store::sql`): calls page by page in sorting-key order, and the feedback and
//! signals of a page's calls by side queries that stay under the store's query size.

use flywheel_store::Store;

pub use flywheel_store::{CallRow, FeedbackItem, Ids, PageKey, SignalItem};

use crate::request::ExportRequest;
use crate::DatasetError;

/// Most ids bound into one `IN ?` list where their length is not known in advance (preference
/// mining: trace ids of signals and feedback).
pub const MAX_IDS_PER_QUERY: usize = 1000;

/// Bytes of bound ids per side query: ClickHouse parses at most `max_query_size` (256 KiB by
/// default) of SQL, and the signals query binds the trace ids twice plus the conversation ids.
const ID_BYTES_PER_QUERY: usize = 240 * 1024;

/// Length of a string as a quoted, escaped list element with its separator.
fn quoted_len(s: &str) -> usize {
    s.len() + s.bytes().filter(|b| matches!(b, b'\'' | b'\\')).count() + 3
}

/// Splits a page of calls into parts whose ids fit one side query (usually one part).
pub fn id_parts(calls: &[CallRow]) -> Vec<&[CallRow]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in calls.iter().enumerate() {
        let size = 2 * quoted_len(&c.trace_id) + quoted_len(&c.conversation_id);
        if i > start && bytes + size > ID_BYTES_PER_QUERY {
            parts.push(&calls[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < calls.len() {
        parts.push(&calls[start..]);
    }
    parts
}

/// How many calls match (for a progress bar).
pub async fn count_calls(store: &dyn Store, req: &ExportRequest) -> Result<u64, DatasetError> {
    Ok(store.count_calls(&req.call_filter()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_parts_stay_under_the_query_size() {
        let call = |conv: usize| CallRow {
            trace_id: "0".repeat(32),
            conversation_id: "c".repeat(conv),
            ..CallRow::default()
        };
        let short: Vec<CallRow> = (0..2000).map(|_| call(10)).collect();
        assert_eq!(id_parts(&short).len(), 1);
        let long: Vec<CallRow> = (0..2000).map(|_| call(200)).collect();
        let parts = id_parts(&long);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 2000);
        assert!(id_parts(&[]).is_empty());
    }
}
