//! What a run generated and what became of it.

use std::fmt;

use serde::Serialize;

use crate::sink::{Delivery, Kind};

/// Accepted and refused counts of one kind of request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub requests: u64,
    pub accepted: u64,
    pub refused: u64,
    /// 429 / 503 / connection failures retried.
    pub retries: u64,
}

impl Sent {
    pub fn add(&mut self, d: &Delivery) {
        self.requests += 1;
        self.accepted += d.accepted;
        self.refused += d.refused;
        self.retries += d.retries;
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub calls: u64,
    pub failed_calls: u64,
    pub feedback: u64,
    pub signals: u64,
    pub spans: Sent,
    pub feedback_sent: Sent,
    pub signals_sent: Sent,
    /// Simulated seconds covered.
    pub simulated_s: f64,
    /// Simulated Unix ns up to which traffic was generated.
    pub generated_until_ns: i64,
    pub wall_s: f64,
    /// The first reasons items were refused, one per kind.
    pub refusals: Vec<String>,
    pub interrupted: bool,
    /// Paced runs: the most a record was generated after its due wall time (the collector
    /// or this machine could not keep up), seconds.
    pub max_lag_s: f64,
}

impl Summary {
    pub fn sent_mut(&mut self, kind: Kind) -> &mut Sent {
        match kind {
            Kind::Spans => &mut self.spans,
            Kind::Feedback => &mut self.feedback_sent,
            Kind::Signals => &mut self.signals_sent,
        }
    }

    /// Items refused, all kinds.
    pub fn refused(&self) -> u64 {
        self.spans.refused + self.feedback_sent.refused + self.signals_sent.refused
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        writeln!(
            f,
            "loadgen run {}: {:.0} s simulated in {:.1} s wall ({:.1}x){}",
            self.run_id,
            self.simulated_s,
            self.wall_s,
            per(1, self.wall_s) * self.simulated_s,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  calls     {:>10}  ({:.2}/s simulated, {} failed)",
            self.calls,
            per(self.calls, self.simulated_s),
            self.failed_calls
        )?;
        for (name, generated, sent) in [
            ("spans", None, &self.spans),
            ("feedback", Some(self.feedback), &self.feedback_sent),
            ("signals", Some(self.signals), &self.signals_sent),
        ] {
            let generated = generated.map_or_else(String::new, |g| format!("{g} generated, "));
            writeln!(
                f,
                "  {name:<9} {generated}{} accepted, {} refused, {} requests, {} retries ({:.0} accepted/s wall)",
                sent.accepted,
                sent.refused,
                sent.requests,
                sent.retries,
                per(sent.accepted, self.wall_s)
            )?;
        }
        if self.max_lag_s > 1.0 {
            writeln!(
                f,
                "  behind schedule by up to {:.1} s (wall): lower the rate or the speedup",
                self.max_lag_s
            )?;
        }
        for why in &self.refusals {
            writeln!(f, "  refused: {why}")?;
        }
        Ok(())
    }
}
