//! Preference pairs (`prompt`, `chosen`, `rejected`), mined from three kinds of evidence, in
//! this order:
//!
//! 1. **regenerate**: a `regenerate` signal names a discarded answer A (`discarded_trace_id` /
//!    `discarded_span_id`, else the signal's own trace / span). The chosen answer B is the first
//!    later call of A's conversation whose normalised prompt hashes the same as A's and that was
//!    not itself regenerated. Calls without a conversation id give no pair.
//! 2. **feedback**: feedback named `pair_feedback` (default `thumbs`) with a score of at least
//!    `positive_min` is positive, at most `negative_max` negative; it rates its span, or every
//!    call of its trace when it names no span (conversation-level feedback is ignored: it does
//!    not say which answer was good). Calls of the project with the same normalised prompt are
//!    grouped; within a group the i-th positive and i-th negative call (in time order) form a
//!    pair. A call rated both ways is ignored.
//! 3. **edit**: an `edit` signal with `edited_text`: chosen is the edited text, rejected the
//!    original completion of the signal's call.
//!
//! Memory: the signals / rating feedback of the project (ids only are kept for pairs), and one
//! page of calls at a time.

use std::collections::{BTreeMap, HashMap, HashSet};

use flywheel_store::{CallFilter, Store};

use crate::export::{ExportOptions, Output, Sink};
use crate::messages::{self, Message};
use crate::query::{self, CallRow, Ids};
use crate::records::{rfc3339, PreferenceMetadata, PreferenceRecord, Record};
use crate::request::PairSource;
use crate::DatasetError;

pub(crate) async fn mine<O: Output>(
    store: &dyn Store,
    options: ExportOptions,
    sink: &mut Sink<'_, O>,
) -> Result<(), DatasetError> {
    let req = sink.req;
    let filter = req.call_filter();
    let chunk = usize::try_from(options.page_size)
        .unwrap_or(query::MAX_IDS_PER_QUERY)
        .clamp(1, query::MAX_IDS_PER_QUERY);
    for source in req.preference.sources.clone() {
        if sink.full() {
            break;
        }
        match source {
            PairSource::Regenerate => regenerate(store, &filter, chunk, sink).await?,
            PairSource::Feedback => feedback(store, &filter, chunk, sink).await?,
            PairSource::Edit => edit(store, &filter, chunk, sink).await?,
        }
        sink.flush().await?;
    }
    Ok(())
}

/// The call a signal or feedback item names: its span, else the last call of its trace.
fn find<'a>(calls: &'a [CallRow], trace_id: &str, span_id: &str) -> Option<&'a CallRow> {
    calls
        .iter()
        .filter(|c| c.trace_id == trace_id && (span_id.is_empty() || c.span_id == span_id))
        .max_by_key(|c| c.timestamp)
}

fn prompt_hash(c: &CallRow) -> u128 {
    messages::hash(&messages::parse(&c.input_messages, "user"), &[])
}

/// Calls matching `filter` with these trace ids, counted as read.
async fn calls_of_traces(
    store: &dyn Store,
    sink: &mut Sink<'_, impl Output>,
    filter: &CallFilter,
    traces: Ids,
) -> Result<Vec<CallRow>, DatasetError> {
    let calls = store.calls_of_traces(filter, &traces).await?;
    sink.report.calls_read += calls.len() as u64;
    Ok(calls)
}

/// Calls matching `filter` in these conversations, counted as read.
async fn calls_of_conversations(
    store: &dyn Store,
    sink: &mut Sink<'_, impl Output>,
    filter: &CallFilter,
    conversations: Ids,
) -> Result<Vec<CallRow>, DatasetError> {
    let calls = store.calls_of_conversations(filter, &conversations).await?;
    sink.report.calls_read += calls.len() as u64;
    Ok(calls)
}

/// Builds and emits one pair; `false` if either side is empty.
fn pair<O: Output>(
    sink: &mut Sink<'_, O>,
    source: PairSource,
    prompt_call: &CallRow,
    chosen: (&CallRow, String),
    rejected: (&CallRow, String),
    evidence: Vec<String>,
) -> Result<(), DatasetError> {
    let prompt = messages::parse(&prompt_call.input_messages, "user");
    if prompt.is_empty() || chosen.1.trim().is_empty() || rejected.1.trim().is_empty() {
        sink.report.skipped_empty += 1;
        return Ok(());
    }
    let prompt = sink.clean_messages(prompt);
    let chosen_text = sink.clean(&chosen.1);
    let rejected_text = sink.clean(&rejected.1);
    let key = messages::hash(&prompt, &[&chosen_text, &rejected_text]);
    let record = Record::Preference(PreferenceRecord {
        prompt,
        chosen: vec![Message::new("assistant", chosen_text)],
        rejected: vec![Message::new("assistant", rejected_text)],
        source: source.as_str().to_string(),
        metadata: PreferenceMetadata {
            project: sink.req.project.clone(),
            model: chosen.0.model.clone(),
            conversation_id: sink.clean(&prompt_call.conversation_id),
            timestamp: rfc3339(chosen.0.timestamp),
            chosen_trace_id: chosen.0.trace_id.clone(),
            chosen_span_id: chosen.0.span_id.clone(),
            rejected_trace_id: rejected.0.trace_id.clone(),
            rejected_span_id: rejected.0.span_id.clone(),
            evidence,
        },
    });
    if sink.emit(key, record)? {
        let counts = &mut sink.report.pairs;
        *match source {
            PairSource::Regenerate => &mut counts.regenerate,
            PairSource::Feedback => &mut counts.feedback,
            PairSource::Edit => &mut counts.edit,
        } += 1;
    }
    Ok(())
}

async fn regenerate<O: Output>(
    store: &dyn Store,
    filter: &CallFilter,
    chunk: usize,
    sink: &mut Sink<'_, O>,
) -> Result<(), DatasetError> {
    let req = sink.req;
    let signals = store.signals_of_type(&req.project, "regenerate").await?;
    let discarded_of = |s: &query::SignalItem| {
        if s.discarded_trace_id.is_empty() {
            (s.trace_id.clone(), s.span_id.clone())
        } else {
            (s.discarded_trace_id.clone(), s.discarded_span_id.clone())
        }
    };
    let discarded: HashSet<(String, String)> = signals.iter().map(discarded_of).collect();
    let regenerated = |c: &CallRow| {
        discarded.contains(&(c.trace_id.clone(), c.span_id.clone()))
            || discarded.contains(&(c.trace_id.clone(), String::new()))
    };
    for group in signals.chunks(chunk) {
        let targets: Vec<(String, String)> = group.iter().map(discarded_of).collect();
        let traces = Ids::of(targets.iter().map(|(t, _)| t.as_str()));
        let rejected = calls_of_traces(store, sink, filter, traces).await?;
        let conversations = Ids::of(rejected.iter().map(|c| c.conversation_id.as_str()));
        let later = calls_of_conversations(store, sink, filter, conversations).await?;
        let later: Vec<(u128, &CallRow)> = later.iter().map(|c| (prompt_hash(c), c)).collect();
        for (signal, (trace_id, span_id)) in group.iter().zip(&targets) {
            let Some(a) = find(&rejected, trace_id, span_id) else {
                continue;
            };
            if a.conversation_id.is_empty() {
                continue;
            }
            let h = prompt_hash(a);
            let kept = later.iter().find(|(hb, b)| {
                *hb == h
                    && b.conversation_id == a.conversation_id
                    && b.timestamp > a.timestamp
                    && !regenerated(b)
            });
            let Some((_, b)) = kept else { continue };
            let (chosen, rejected_text) = (
                messages::completion(&b.output_messages).unwrap_or_default(),
                messages::completion(&a.output_messages).unwrap_or_default(),
            );
            let evidence = vec![signal.id.clone()];
            pair(
                sink,
                PairSource::Regenerate,
                a,
                (b, chosen),
                (a, rejected_text),
                evidence,
            )?;
            if sink.full() {
                return Ok(());
            }
        }
        sink.flush().await?;
    }
    Ok(())
}

/// Whether a call (or trace) was rated positively, and by which feedback ids; `None` when it
/// was rated both ways.
type Polarity = Option<(bool, Vec<String>)>;

/// A rated call: its key and the feedback ids that rated it.
#[derive(Clone)]
struct Rated {
    trace_id: String,
    span_id: String,
    timestamp: i64,
    evidence: Vec<String>,
}

async fn feedback<O: Output>(
    store: &dyn Store,
    filter: &CallFilter,
    chunk: usize,
    sink: &mut Sink<'_, O>,
) -> Result<(), DatasetError> {
    let req = sink.req;
    let p = &req.preference;
    let ratings = store
        .rating_feedback(
            &req.project,
            &p.feedback_name,
            p.positive_min,
            p.negative_max,
        )
        .await?;
    // (trace, span or "") -> (positive?, feedback ids); both ways -> None.
    let mut polarity: HashMap<(String, String), Polarity> = HashMap::new();
    for f in &ratings {
        let positive = f.score.is_some_and(|s| s >= p.positive_min);
        let entry = polarity
            .entry((f.trace_id.clone(), f.span_id.clone()))
            .or_insert_with(|| Some((positive, Vec::new())));
        match entry {
            Some((pos, ids)) if *pos == positive => ids.push(f.id.clone()),
            _ => *entry = None,
        }
    }
    let mut traces: Vec<&str> = polarity.keys().map(|(t, _)| t.as_str()).collect();
    traces.sort_unstable();
    traces.dedup();
    // prompt hash -> (positives, negatives)
    let mut groups: HashMap<u128, (Vec<Rated>, Vec<Rated>)> = HashMap::new();
    for group in traces.chunks(chunk) {
        let traces = Ids::of(group.iter().copied());
        for c in calls_of_traces(store, sink, filter, traces).await? {
            let span = polarity.get(&(c.trace_id.clone(), c.span_id.clone()));
            let trace = polarity.get(&(c.trace_id.clone(), String::new()));
            let Some(Some((positive, ids))) = span.or(trace) else {
                continue;
            };
            let rated = Rated {
                trace_id: c.trace_id.clone(),
                span_id: c.span_id.clone(),
                timestamp: c.timestamp,
                evidence: ids.clone(),
            };
            let g = groups.entry(prompt_hash(&c)).or_default();
            if *positive {
                g.0.push(rated)
            } else {
                g.1.push(rated)
            }
        }
    }
    // Pairs, in the time order of each group's first rated call.
    let mut pairs: BTreeMap<(i64, u128), Vec<(Rated, Rated)>> = BTreeMap::new();
    for (h, (mut pos, mut neg)) in groups {
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        pos.sort_by_key(|r| (r.timestamp, r.span_id.clone()));
        neg.sort_by_key(|r| (r.timestamp, r.span_id.clone()));
        let first = pos[0].timestamp.min(neg[0].timestamp);
        pairs.insert((first, h), pos.into_iter().zip(neg).collect());
    }
    let pairs: Vec<(Rated, Rated)> = pairs.into_values().flatten().collect();
    for group in pairs.chunks(chunk) {
        let traces = group
            .iter()
            .flat_map(|(a, b)| [a.trace_id.as_str(), b.trace_id.as_str()]);
        let calls = calls_of_traces(store, sink, filter, Ids::of(traces)).await?;
        for (good, bad) in group {
            let (Some(g), Some(b)) = (
                find(&calls, &good.trace_id, &good.span_id),
                find(&calls, &bad.trace_id, &bad.span_id),
            ) else {
                continue;
            };
            let evidence = good.evidence.iter().chain(&bad.evidence).cloned().collect();
            let chosen = messages::completion(&g.output_messages).unwrap_or_default();
            let rejected = messages::completion(&b.output_messages).unwrap_or_default();
            pair(
                sink,
                PairSource::Feedback,
                g,
                (g, chosen),
                (b, rejected),
                evidence,
            )?;
            if sink.full() {
                return Ok(());
            }
        }
        sink.flush().await?;
    }
    Ok(())
}

async fn edit<O: Output>(
    store: &dyn Store,
    filter: &CallFilter,
    chunk: usize,
    sink: &mut Sink<'_, O>,
) -> Result<(), DatasetError> {
    let req = sink.req;
    let signals: Vec<query::SignalItem> = store
        .signals_of_type(&req.project, "edit")
        .await?
        .into_iter()
        .filter(|s| !s.edited_text.trim().is_empty() && !s.trace_id.is_empty())
        .collect();
    for group in signals.chunks(chunk) {
        let traces = Ids::of(group.iter().map(|s| s.trace_id.as_str()));
        let calls = calls_of_traces(store, sink, filter, traces).await?;
        for s in group {
            let Some(c) = find(&calls, &s.trace_id, &s.span_id) else {
                continue;
            };
            let original = messages::completion(&c.output_messages).unwrap_or_default();
            if messages::normalise(&original) == messages::normalise(&s.edited_text) {
                continue;
            }
            let evidence = vec![s.id.clone()];
            pair(
                sink,
                PairSource::Edit,
                c,
                (c, s.edited_text.clone()),
                (c, original),
                evidence,
            )?;
            if sink.full() {
                return Ok(());
            }
        }
        sink.flush().await?;
    }
    Ok(())
}
