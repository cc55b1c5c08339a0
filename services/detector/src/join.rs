//! Attributing feedback and signals to SLI keys.
//!
//! Feedback and signals carry only trace / span / conversation ids, while quality SLIs are per
//! model. [`Joins`] remembers the key of recent calls by (trace, span), by trace and by
//! conversation, each map bounded (oldest insert evicted first). Items it cannot attribute go
//! to a store lookup of `llm_calls` (`history::lookup_keys`); what is still unknown after
//! that is counted (`flywheel_detector_unattributed_total`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::SliKey;

/// A map holding at most `cap` entries, evicting the oldest insert.
#[derive(Debug)]
struct Bounded<K> {
    cap: usize,
    seq: u64,
    map: HashMap<K, (u64, SliKey)>,
    order: VecDeque<(u64, K)>,
}

impl<K: Hash + Eq + Clone> Bounded<K> {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            seq: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, k: K, v: SliKey) {
        self.seq += 1;
        self.map.insert(k.clone(), (self.seq, v));
        self.order.push_back((self.seq, k));
        // Re-inserted keys leave stale order entries: trim those too.
        while self.map.len() > self.cap || self.order.len() > 2 * self.cap {
            let Some((seq, k)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(s, _)| *s == seq) {
                self.map.remove(&k);
            }
        }
    }

    fn get(&self, k: &K) -> Option<&SliKey> {
        self.map.get(k).map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The ids an item names (empty strings for absent ones), lowercase hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Subject {
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
}

impl Subject {
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_empty() && self.conversation_id.is_empty()
    }
}

/// Recent calls' keys by span, trace and conversation.
#[derive(Debug)]
pub struct Joins {
    spans: Bounded<(String, String)>,
    traces: Bounded<String>,
    conversations: Bounded<String>,
}

impl Joins {
    pub fn new(capacity: usize) -> Self {
        Self {
            spans: Bounded::new(capacity),
            traces: Bounded::new(capacity),
            conversations: Bounded::new(capacity / 4),
        }
    }

    /// Remembers a call.
    pub fn remember(&mut self, key: &SliKey, trace_id: &str, span_id: &str, conversation: &str) {
        if !trace_id.is_empty() {
            self.spans
                .insert((trace_id.to_string(), span_id.to_string()), key.clone());
            self.traces.insert(trace_id.to_string(), key.clone());
        }
        if !conversation.is_empty() {
            self.conversations
                .insert(conversation.to_string(), key.clone());
        }
    }

    /// The key of the call `s` names: by span, else the last call of its trace, else the last
    /// call of its conversation.
    pub fn resolve(&self, s: &Subject) -> Option<&SliKey> {
        (!s.span_id.is_empty())
            .then(|| self.spans.get(&(s.trace_id.clone(), s.span_id.clone())))
            .flatten()
            .or_else(|| {
                (!s.trace_id.is_empty())
                    .then(|| self.traces.get(&s.trace_id))
                    .flatten()
            })
            .or_else(|| {
                (!s.conversation_id.is_empty())
                    .then(|| self.conversations.get(&s.conversation_id))
                    .flatten()
            })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(m: &str) -> SliKey {
        SliKey {
            project: "p".into(),
            model: m.into(),
            ..SliKey::default()
        }
    }

    fn subject(t: &str, s: &str, c: &str) -> Subject {
        Subject {
            trace_id: t.into(),
            span_id: s.into(),
            conversation_id: c.into(),
        }
    }

    #[test]
    fn resolves_by_span_then_trace_then_conversation_and_stays_bounded() {
        let mut j = Joins::new(8);
        j.remember(&key("a"), "t1", "s1", "c1");
        j.remember(&key("b"), "t1", "s2", "");
        assert_eq!(j.resolve(&subject("t1", "s1", "")), Some(&key("a")));
        // Unknown span of a known trace: the trace's last call.
        assert_eq!(j.resolve(&subject("t1", "s9", "")), Some(&key("b")));
        assert_eq!(j.resolve(&subject("", "", "c1")), Some(&key("a")));
        assert_eq!(j.resolve(&subject("t2", "", "")), None);
        for i in 0..100 {
            j.remember(&key("c"), &format!("x{i}"), "s", "");
        }
        assert_eq!(j.len(), 8);
        assert_eq!(j.resolve(&subject("t1", "s1", "")), None);
        assert_eq!(j.resolve(&subject("x99", "s", "")), Some(&key("c")));
    }
}
