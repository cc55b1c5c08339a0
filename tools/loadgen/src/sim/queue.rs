//! The simulation's pending work, ordered by time (then by insertion, so that equal times keep
//! their order and runs are reproducible).

use super::Conversation;
use crate::event::Event;

#[derive(Debug)]
pub(super) enum Action {
    Arrival,
    /// A call of the conversation's current turn; `repeat`: the same input as the last call.
    Call {
        conversation: Box<Conversation>,
        repeat: bool,
    },
    Emit(Box<Event>),
}

#[derive(Debug)]
pub(super) struct Pending {
    pub t: i64,
    pub seq: u64,
    pub action: Action,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(other.t, other.seq))
    }
}
