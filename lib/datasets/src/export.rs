//! The export driver: reads calls page by page, builds records of the requested shape, redacts,
//! deduplicates, encodes, and hands encoded bytes to an [`Output`] after every page.

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use flywheel_store::Store;
use serde::Serialize;

use crate::encode::Encoder;
use crate::messages::{self, Message};
use crate::query::{self, CallRow, FeedbackItem, Ids, PageKey, SignalItem};
use crate::records::{
    rfc3339, EvalFeedback, EvalRecord, EvalSignal, Metadata, Record, SftRecord, LEVEL_CONVERSATION,
    LEVEL_SPAN, LEVEL_TRACE,
};
use crate::redact::{redact, RedactionCounts};
use crate::request::{ExportRequest, Shape};
use crate::DatasetError;

/// Where encoded bytes go (a file, an HTTP body). `write` may wait (back-pressure).
pub trait Output: Send {
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), DatasetError>> + Send;
    /// Called after every page with the calls read so far.
    fn progress(&mut self, _calls_read: u64) {}
}

/// Tuning of an export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Calls per page (one query each).
    pub page_size: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { page_size: 2000 }
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportReport {
    /// Calls read from `llm_calls` (for `preference`: the calls pairs were looked for in).
    pub calls_read: u64,
    pub rows_written: u64,
    /// Records dropped as exact duplicates of one already written.
    pub duplicates_dropped: u64,
    /// Calls skipped because their prompt or completion is empty (content not captured).
    pub skipped_empty: u64,
    pub redactions: RedactionCounts,
    /// `preference`: pairs written per source (regenerate, feedback, edit).
    pub pairs: PairCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PairCounts {
    pub regenerate: u64,
    pub feedback: u64,
    pub edit: u64,
}

/// Record building state shared by every shape: redaction, deduplication, limit, encoding.
pub(crate) struct Sink<'o, O: Output> {
    pub(crate) req: &'o ExportRequest,
    pub(crate) report: ExportReport,
    seen: HashSet<u128>,
    encoder: Encoder,
    out: &'o mut O,
}

impl<'o, O: Output> Sink<'o, O> {
    /// Redacts `text` when the request asks for it.
    pub(crate) fn clean(&mut self, text: &str) -> String {
        if self.req.redact {
            redact(text, &mut self.report.redactions).into_owned()
        } else {
            text.to_string()
        }
    }

    pub(crate) fn clean_messages(&mut self, messages: Vec<Message>) -> Vec<Message> {
        messages
            .into_iter()
            .map(|m| Message {
                content: self.clean(&m.content),
                role: m.role,
            })
            .collect()
    }

    pub(crate) fn metadata(&mut self, c: &CallRow) -> Metadata {
        Metadata {
            project: self.req.project.clone(),
            trace_id: c.trace_id.clone(),
            span_id: c.span_id.clone(),
            model: c.model.clone(),
            timestamp: rfc3339(c.timestamp),
            conversation_id: self.clean(&c.conversation_id),
            user_id: self.clean(&c.user_id),
        }
    }

    /// Whether the limit is reached.
    pub(crate) fn full(&self) -> bool {
        self.req
            .limit
            .is_some_and(|l| self.report.rows_written >= l)
    }

    /// Writes `record` unless its `key` (a hash of its normalised content) was seen.
    pub(crate) fn emit(&mut self, key: u128, record: Record) -> Result<bool, DatasetError> {
        if self.full() {
            return Ok(false);
        }
        if self.req.dedup && !self.seen.insert(key) {
            self.report.duplicates_dropped += 1;
            return Ok(false);
        }
        self.encoder.push(record)?;
        self.report.rows_written += 1;
        Ok(true)
    }

    /// Sends what is encoded so far.
    pub(crate) async fn flush(&mut self) -> Result<(), DatasetError> {
        self.out.progress(self.report.calls_read);
        let chunk = self.encoder.take();
        if !chunk.is_empty() {
            self.out.write(chunk).await?;
        }
        Ok(())
    }
}

/// Runs `req` against `store`, writing the dataset to `out`. Memory: one page of calls, one
/// Arrow batch and Parquet row group, and 16 bytes per distinct record for deduplication.
pub async fn export<O: Output>(
    store: &dyn Store,
    req: &ExportRequest,
    options: ExportOptions,
    out: &mut O,
) -> Result<ExportReport, DatasetError> {
    let mut sink = Sink {
        req,
        report: ExportReport::default(),
        seen: HashSet::new(),
        encoder: Encoder::new(req.shape, req.format)?,
        out,
    };
    match req.shape {
        Shape::Sft | Shape::Eval => calls(store, options, &mut sink).await?,
        Shape::Preference => crate::preference::mine(store, options, &mut sink).await?,
    }
    let Sink {
        report,
        encoder,
        out,
        ..
    } = sink;
    let last = encoder.finish()?;
    out.progress(report.calls_read);
    if !last.is_empty() {
        out.write(last).await?;
    }
    Ok(report)
}

/// `sft` and `eval`: every matching call, page by page.
async fn calls<O: Output>(
    store: &dyn Store,
    options: ExportOptions,
    sink: &mut Sink<'_, O>,
) -> Result<(), DatasetError> {
    let req = sink.req;
    let filter = req.call_filter();
    let mut after: Option<PageKey> = None;
    loop {
        let page: Vec<CallRow> = store
            .calls_page(&filter, after.as_ref(), options.page_size)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(PageKey::of(last));
        sink.report.calls_read += page.len() as u64;
        let attached = if req.shape == Shape::Eval {
            Some(Attached::load(store, &req.project, &page).await?)
        } else {
            None
        };
        for call in &page {
            let input = messages::parse(&call.input_messages, "user");
            let output = messages::completion(&call.output_messages);
            let (false, Some(output)) = (input.is_empty(), output) else {
                sink.report.skipped_empty += 1;
                continue;
            };
            let input = sink.clean_messages(input);
            let output = sink.clean(&output);
            let key = messages::hash(&input, &[&output]);
            let metadata = sink.metadata(call);
            let record = match &attached {
                None => {
                    let mut messages = input;
                    messages.push(Message::new("assistant", output));
                    Record::Sft(SftRecord { messages, metadata })
                }
                Some(a) => Record::Eval(EvalRecord {
                    feedback: a.feedback_of(call, sink),
                    signals: a.signals_of(call, sink),
                    input,
                    output,
                    metadata,
                }),
            };
            sink.emit(key, record)?;
            if sink.full() {
                break;
            }
        }
        sink.flush().await?;
        if sink.full() || (page.len() as u64) < options.page_size {
            break;
        }
    }
    Ok(())
}

/// Feedback and signals of one page of calls.
struct Attached {
    feedback: Vec<FeedbackItem>,
    signals: Vec<SignalItem>,
}

/// The join rule: how an item with these ids attaches to `call`, if it does.
fn level(
    trace_id: &str,
    span_id: &str,
    conversation_id: &str,
    call: &CallRow,
) -> Option<&'static str> {
    if !trace_id.is_empty() {
        if trace_id != call.trace_id {
            None
        } else if span_id.is_empty() {
            Some(LEVEL_TRACE)
        } else {
            (span_id == call.span_id).then_some(LEVEL_SPAN)
        }
    } else {
        (!conversation_id.is_empty() && conversation_id == call.conversation_id)
            .then_some(LEVEL_CONVERSATION)
    }
}

impl Attached {
    async fn load(
        store: &dyn Store,
        project: &str,
        page: &[CallRow],
    ) -> Result<Self, DatasetError> {
        let mut me = Self {
            feedback: Vec::new(),
            signals: Vec::new(),
        };
        let parts = query::id_parts(page);
        for part in &parts {
            let traces = Ids::of(part.iter().map(|c| c.trace_id.as_str()));
            let conversations = Ids::of(part.iter().map(|c| c.conversation_id.as_str()));
            let feedback: Vec<FeedbackItem> =
                store.feedback_for(project, &traces, &conversations).await?;
            me.feedback.extend(feedback);
            let signals: Vec<SignalItem> =
                store.signals_for(project, &traces, &conversations).await?;
            me.signals.extend(signals);
        }
        if parts.len() > 1 {
            // A trace- or conversation-level item can be found by several parts.
            let mut seen = HashSet::new();
            me.feedback.retain(|f| seen.insert(f.id.clone()));
            seen.clear();
            me.signals.retain(|s| seen.insert(s.id.clone()));
        }
        Ok(me)
    }

    fn feedback_of<O: Output>(&self, call: &CallRow, sink: &mut Sink<'_, O>) -> Vec<EvalFeedback> {
        let mut out = Vec::new();
        for f in &self.feedback {
            let Some(level) = level(&f.trace_id, &f.span_id, &f.conversation_id, call) else {
                continue;
            };
            out.push(EvalFeedback {
                id: f.id.clone(),
                name: f.name.clone(),
                value_type: f.value_type.clone(),
                score: f.score,
                label: sink.clean(&f.label),
                text: sink.clean(&f.text),
                comment: sink.clean(&f.comment),
                source: f.source.clone(),
                level: level.to_string(),
                timestamp: rfc3339(f.timestamp),
            });
        }
        out
    }

    fn signals_of<O: Output>(&self, call: &CallRow, sink: &mut Sink<'_, O>) -> Vec<EvalSignal> {
        let mut out = Vec::new();
        for s in &self.signals {
            let discarded = !s.discarded_trace_id.is_empty()
                && s.discarded_trace_id == call.trace_id
                && (s.discarded_span_id.is_empty() || s.discarded_span_id == call.span_id);
            let level = match level(&s.trace_id, &s.span_id, &s.conversation_id, call) {
                Some(l) => l,
                None if discarded => {
                    if s.discarded_span_id.is_empty() {
                        LEVEL_TRACE
                    } else {
                        LEVEL_SPAN
                    }
                }
                None => continue,
            };
            out.push(EvalSignal {
                id: s.id.clone(),
                signal_type: s.signal_type.clone(),
                source: s.source.clone(),
                level: level.to_string(),
                timestamp: rfc3339(s.timestamp),
                discarded_trace_id: s.discarded_trace_id.clone(),
                discarded_span_id: s.discarded_span_id.clone(),
                tokens_received: s.tokens_received,
                ms_since_start: s.ms_since_start,
                edit_ratio: s.edit_ratio,
                edited_text: sink.clean(&s.edited_text),
                text: sink.clean(&s.text),
                turn_count: s.turn_count,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_rule_levels() {
        let call = CallRow {
            trace_id: "t1".into(),
            span_id: "s1".into(),
            conversation_id: "c1".into(),
            ..CallRow::default()
        };
        assert_eq!(level("t1", "s1", "", &call), Some(LEVEL_SPAN));
        assert_eq!(level("t1", "s2", "c1", &call), None);
        assert_eq!(level("t1", "", "", &call), Some(LEVEL_TRACE));
        assert_eq!(level("t2", "", "c1", &call), None);
        assert_eq!(level("", "", "c1", &call), Some(LEVEL_CONVERSATION));
        assert_eq!(level("", "", "c2", &call), None);
        assert_eq!(level("", "", "", &call), None);
    }
}
