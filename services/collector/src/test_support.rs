//! A scripted publisher for unit tests of the pipelines (no I/O).

use std::sync::{Arc, Mutex};

use flywheel_bus::{Headers, PublishError, Publisher, Record};
use tokio::sync::Notify;

/// One `publish` call: topic, headers, records.
pub type Call = (String, Vec<(&'static str, Vec<u8>)>, Vec<Record>);

/// A publisher whose outcome the test scripts; it can hold every call until released.
#[derive(Clone, Default)]
pub struct Scripted {
    pub outcome: Arc<Mutex<Option<PublishError>>>,
    pub gate: Option<Arc<Notify>>,
    pub published: Arc<Mutex<Vec<Call>>>,
}

impl Publisher for Scripted {
    async fn publish(
        &self,
        topic: &str,
        headers: &Headers,
        records: Vec<Record>,
    ) -> Result<(), PublishError> {
        if let Some(gate) = &self.gate {
            gate.notified().await;
        }
        if let Some(e) = self.outcome.lock().unwrap().clone() {
            return Err(e);
        }
        self.published
            .lock()
            .unwrap()
            .push((topic.to_string(), headers.to_vec(), records));
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn queue_depth(&self) -> usize {
        0
    }
}
