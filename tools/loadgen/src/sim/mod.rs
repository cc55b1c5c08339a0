//! The traffic model: a discrete-event simulation on the simulated clock.
//!
//! Conversations arrive as a Poisson process (rate `rate / expected calls per conversation`,
//! thinned for `overload` incidents that raise it). Each conversation sticks to one model
//! (picked by weight), one user and one client (streaming or not) and lasts a geometric number
//! of user turns, separated by log-normal think times. After each answer the user may react
//! (log-normal reaction time): regenerate (the same input again, in the same conversation),
//! copy, edit, give a thumbs, or abandon the conversation; an evaluator scores some answers. A
//! stream may be stopped early (no finish reason); a failed call may be sent again.
//!
//! [`Generator`] is an iterator of [`Event`]s in the order of their time: a call is yielded
//! when it ends (when an SDK exports its span). Nothing at or after the end of the period is
//! yielded. The simulation starts [`warm_up_ns`] before the period so that conversations are
//! already in progress at its start (the call rate is the configured one from the first
//! second); nothing before the start is yielded, nor feedback or signals about calls that ended
//! before it. Every choice comes from the seeded RNG; ids come from a second RNG seeded by the
//! seed and the start time, so that two runs at different times never share an id.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Scenario;
use crate::dist::{exp_gap_ns, ms_to_ns, secs_to_ns, AtLeastOne, LogNormalMean, UnitWithMean};
use crate::event::{rfc3339, Call, Event, FeedbackItem, Outcome, SignalItem};
use crate::incident::Schedule;
use crate::LoadgenError;
use queue::{Action, Pending};

mod queue;

/// Error types of failed calls and their shares.
const ERRORS: &[(&str, f64)] = &[("429", 0.4), ("500", 0.3), ("503", 0.2), ("timeout", 0.1)];

struct ModelDists {
    name: String,
    provider: String,
    base_error: f64,
    weight: f64,
    ttft: LogNormalMean,
    tpot: LogNormalMean,
    input: LogNormalMean,
    output: LogNormalMean,
    max_tokens: u64,
}

/// A conversation in progress.
#[derive(Debug, Clone)]
struct Conversation {
    id: String,
    user: String,
    model: usize,
    streaming: bool,
    turn: u32,
    turns_left: u64,
    /// Input tokens of the current turn (a regenerate or retry sends the same input).
    input_tokens: u64,
}

/// The traffic of one run.
pub struct Generator {
    scenario: Scenario,
    schedule: Schedule,
    models: Vec<ModelDists>,
    total_weight: f64,
    turns: AtLeastOne,
    think: LogNormalMean,
    reaction: LogNormalMean,
    score: UnitWithMean,
    /// Conversation arrivals per second before incidents, and the thinning bound.
    conversation_rate: f64,
    max_rate: f64,
    rng: StdRng,
    ids: StdRng,
    run_id: String,
    start_ns: i64,
    end_ns: i64,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    conversations: u64,
    items: u64,
}

impl Generator {
    /// Traffic of `scenario` from `start_ns` (simulated Unix ns) for its duration.
    pub fn new(scenario: Scenario, start_ns: i64) -> Result<Self, LoadgenError> {
        scenario.validate()?;
        let schedule = Schedule::new(&scenario.incidents, start_ns);
        let models = scenario
            .models
            .iter()
            .map(|m| {
                Ok(ModelDists {
                    name: m.name.clone(),
                    provider: m.provider.clone(),
                    base_error: scenario
                        .provider_error_rate
                        .get(&m.provider)
                        .copied()
                        .unwrap_or(0.0),
                    weight: m.weight,
                    ttft: LogNormalMean::new(m.ttft_ms)?,
                    tpot: LogNormalMean::new(m.tpot_ms)?,
                    input: LogNormalMean::new(m.input_tokens)?,
                    output: LogNormalMean::new(m.output_tokens)?,
                    max_tokens: m.max_output_tokens,
                })
            })
            .collect::<Result<Vec<_>, LoadgenError>>()?;
        let conversation_rate = scenario.rate / expected_calls_per_conversation(&scenario);
        let max_rate = conversation_rate * schedule.max_rate_multiplier();
        let mut ids = StdRng::seed_from_u64(scenario.seed ^ (start_ns as u64).rotate_left(17));
        let run_id = hex::encode(ids.random::<[u8; 4]>());
        let duration_ns = i64::try_from(scenario.duration.as_nanos()).unwrap_or(i64::MAX / 4);
        let mut me = Self {
            total_weight: models.iter().map(|m| m.weight).sum(),
            turns: AtLeastOne::with_mean(scenario.conversation.mean_turns)?,
            think: LogNormalMean::new(scenario.conversation.think_time_s)?,
            reaction: LogNormalMean::new(scenario.conversation.reaction_time_s)?,
            score: UnitWithMean::new(scenario.feedback.score_mean)?,
            rng: StdRng::seed_from_u64(scenario.seed),
            start_ns,
            end_ns: start_ns.saturating_add(duration_ns),
            scenario,
            schedule,
            models,
            conversation_rate,
            max_rate,
            ids,
            run_id,
            queue: BinaryHeap::new(),
            seq: 0,
            conversations: 0,
            items: 0,
        };
        let first = start_ns - warm_up_ns(&me.scenario) + exp_gap_ns(&mut me.rng, me.max_rate);
        me.push(first, Action::Arrival);
        Ok(me)
    }

    /// The incidents placed on this run's timeline.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// A short random id of this run, part of every feedback and signal id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The end of the simulated period (exclusive), Unix ns.
    pub fn end_ns(&self) -> i64 {
        self.end_ns
    }

    fn push(&mut self, t: i64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Pending {
            t,
            seq: self.seq,
            action,
        }));
    }

    fn arrival(&mut self, t: i64) {
        // Thinning: candidates at the highest rate, kept with probability rate(t) / max.
        let rate = self.conversation_rate * self.schedule.rate_multiplier(t);
        if self.rng.random::<f64>() < rate / self.max_rate {
            let conversation = self.new_conversation();
            self.push(
                t,
                Action::Call {
                    conversation: Box::new(conversation),
                    repeat: false,
                },
            );
        }
        let next = t + exp_gap_ns(&mut self.rng, self.max_rate);
        self.push(next, Action::Arrival);
    }

    fn new_conversation(&mut self) -> Conversation {
        self.conversations += 1;
        let mut pick = self.rng.random::<f64>() * self.total_weight;
        let model = self
            .models
            .iter()
            .position(|m| {
                pick -= m.weight;
                pick < 0.0
            })
            .unwrap_or(self.models.len() - 1);
        let user = self.rng.random_range(0..self.scenario.conversation.users);
        Conversation {
            id: format!("lg-{}-c{}", self.run_id, self.conversations),
            user: format!("user-{user}"),
            model,
            streaming: self.rng.random::<f64>() < self.scenario.streaming_share,
            turn: 0,
            turns_left: self.turns.sample(&mut self.rng),
            input_tokens: 0,
        }
    }

    /// Makes one call at `t` and schedules what follows it.
    fn call(&mut self, t: i64, mut conv: Conversation, repeat: bool) {
        let m = &self.models[conv.model];
        if !repeat {
            let factor = self.schedule.input_multiplier(t, &m.name);
            conv.input_tokens = (m.input.sample(&mut self.rng) * factor).round().max(1.0) as u64;
        }
        let error_ratio = self.schedule.error_ratio(t, &m.provider, m.base_error);
        let ttft_ms = m.ttft.sample(&mut self.rng) * self.schedule.ttft_multiplier(t, &m.name);
        let tpot_ms = m.tpot.sample(&mut self.rng) * self.schedule.tpot_multiplier(t);
        let (outcome, output_tokens, duration_ms) = if self.rng.random::<f64>() < error_ratio {
            let error_type = pick_error(&mut self.rng);
            let ms = if error_type == "timeout" {
                60_000.0
            } else {
                ttft_ms * self.rng.random_range(0.2..1.0)
            };
            (Outcome::Failed { error_type }, None, ms)
        } else {
            let wanted = m.output.sample(&mut self.rng).round().max(1.0) as u64;
            let out = wanted.min(m.max_tokens);
            let reason = if wanted >= m.max_tokens {
                "length"
            } else {
                "stop"
            };
            if conv.streaming && self.rng.random::<f64>() < self.scenario.signals.stop {
                let received = ((out as f64 * self.rng.random_range(0.05..0.9)) as u64).max(1);
                let ms = ttft_ms + (received - 1) as f64 * tpot_ms;
                (Outcome::Stopped, Some(received), ms)
            } else {
                let ms = ttft_ms + (out - 1) as f64 * tpot_ms;
                (Outcome::Finished { reason }, Some(out), ms)
            }
        };
        let failed = matches!(outcome, Outcome::Failed { .. });
        let call = Call {
            trace_id: nonzero(&mut self.ids),
            span_id: nonzero(&mut self.ids),
            app_span_id: nonzero(&mut self.ids),
            conversation_id: conv.id.clone(),
            user_id: conv.user.clone(),
            model: conv.model,
            turn: conv.turn,
            start_ns: t,
            end_ns: t + ms_to_ns(duration_ms).max(1),
            streaming: conv.streaming,
            ttft_ms: (conv.streaming && !failed).then_some(ttft_ms),
            input_tokens: conv.input_tokens,
            output_tokens,
            max_tokens: m.max_tokens,
            outcome,
        };
        let end = call.end_ns;
        let stopped = call.outcome == Outcome::Stopped;
        self.follow_up(&call, conv, failed, stopped);
        self.emit(end, Event::Call(Box::new(call)));
    }

    /// The user's and evaluator's reactions to a call, and the conversation's next call.
    fn follow_up(&mut self, call: &Call, mut conv: Conversation, failed: bool, stopped: bool) {
        let end = call.end_ns;
        // Feedback and signals only about calls that are sent (warm-up calls are not).
        let sent = end >= self.start_ns;
        let s = self.scenario.signals.clone();
        let f = self.scenario.feedback.clone();
        let model = self.models[call.model].name.clone();
        if failed {
            if self.rng.random::<f64>() < s.retry_after_error {
                let t = end + self.reaction_ns();
                self.push_call(t, conv, true);
            }
            return;
        }
        if sent && stopped && s.explicit_regenerate_stop {
            let ms = (end - call.start_ns) as f64 / 1e6;
            let mut signal = self.signal(call, end, "stop");
            signal.tokens_received = call.output_tokens;
            signal.ms_since_start = Some(ms);
            self.emit(end, Event::Signal(signal));
        }
        if self.rng.random::<f64>() < f.score_rate {
            let t = end + secs_to_ns(self.rng.random_range(1.0..5.0));
            let value = (self.score.sample(&mut self.rng) * 1000.0).round() / 1000.0;
            let item = self.feedback(call, t, "score", value.into(), "model");
            if sent {
                self.emit(t, Event::Feedback(item));
            }
        }
        if self.rng.random::<f64>() < f.thumbs_rate {
            let t = end + self.reaction_ns();
            let down = self
                .schedule
                .thumbs_down_ratio(t, &model, f.thumbs_down_ratio);
            let up = self.rng.random::<f64>() >= down;
            let item = self.feedback(call, t, "thumbs", up.into(), "human");
            if sent {
                self.emit(t, Event::Feedback(item));
            }
        }
        let t = end + self.reaction_ns();
        let regenerate = self.schedule.regenerate_ratio(t, &model, s.regenerate);
        if self.rng.random::<f64>() < regenerate {
            if sent && s.explicit_regenerate_stop {
                let signal = self.signal(call, t, "regenerate");
                self.emit(t, Event::Signal(signal));
            }
            self.push_call(t, conv, true);
            return;
        }
        if self.rng.random::<f64>() < s.copy && sent {
            let signal = self.signal(call, t, "copy");
            self.emit(t, Event::Signal(signal));
        }
        if self.rng.random::<f64>() < s.edit && sent {
            let mut signal = self.signal(call, t, "edit");
            signal.edit_ratio =
                Some((self.rng.random_range(0.02..0.6) * 1000.0_f64).round() / 1000.0);
            self.emit(t, Event::Signal(signal));
        }
        if self.rng.random::<f64>() < s.abandon {
            if sent {
                let signal = self.signal(call, t, "abandon");
                self.emit(t, Event::Signal(signal));
            }
            return;
        }
        conv.turns_left = conv.turns_left.saturating_sub(1);
        if conv.turns_left > 0 {
            conv.turn += 1;
            let think = secs_to_ns(self.think.sample(&mut self.rng));
            self.push_call(end + think, conv, false);
        }
    }

    fn emit(&mut self, t: i64, event: Event) {
        self.push(t, Action::Emit(Box::new(event)));
    }

    fn push_call(&mut self, t: i64, conversation: Conversation, repeat: bool) {
        self.push(
            t,
            Action::Call {
                conversation: Box::new(conversation),
                repeat,
            },
        );
    }

    fn reaction_ns(&mut self) -> i64 {
        secs_to_ns(self.reaction.sample(&mut self.rng))
    }

    fn next_item_id(&mut self, kind: &str) -> String {
        self.items += 1;
        format!("lg-{}-{kind}{}", self.run_id, self.items)
    }

    fn feedback(
        &mut self,
        call: &Call,
        t: i64,
        name: &'static str,
        value: serde_json::Value,
        source: &'static str,
    ) -> FeedbackItem {
        FeedbackItem {
            id: self.next_item_id("f"),
            trace_id: hex::encode(call.trace_id),
            span_id: hex::encode(call.span_id),
            conversation_id: call.conversation_id.clone(),
            user_id: call.user_id.clone(),
            name,
            value,
            source,
            timestamp: rfc3339(t),
            time_ns: t,
            model: call.model,
        }
    }

    fn signal(&mut self, call: &Call, t: i64, signal_type: &'static str) -> SignalItem {
        SignalItem {
            id: self.next_item_id("s"),
            trace_id: hex::encode(call.trace_id),
            span_id: hex::encode(call.span_id),
            conversation_id: call.conversation_id.clone(),
            user_id: call.user_id.clone(),
            signal_type,
            timestamp: rfc3339(t),
            tokens_received: None,
            ms_since_start: None,
            edit_ratio: None,
            time_ns: t,
            model: call.model,
        }
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        while let Some(Reverse(p)) = self.queue.pop() {
            if p.t >= self.end_ns {
                self.queue.clear();
                return None;
            }
            match p.action {
                Action::Emit(_) if p.t < self.start_ns => {}
                Action::Arrival => self.arrival(p.t),
                Action::Call {
                    conversation,
                    repeat,
                } => self.call(p.t, *conversation, repeat),
                Action::Emit(event) => return Some(*event),
            }
        }
        None
    }
}

/// How long the simulation runs before the period: five mean conversation lifetimes (turns
/// times think and reaction time, plus a minute for the calls themselves).
pub fn warm_up_ns(s: &Scenario) -> i64 {
    let c = &s.conversation;
    let turn_s = c.think_time_s.mean + c.reaction_time_s.mean + 60.0;
    secs_to_ns(5.0 * c.mean_turns * turn_s)
}

/// Calls per conversation in expectation, so that conversations arrive at the rate that gives
/// `rate` calls per second: turns (geometric, cut short by abandonment and by failures not
/// retried) times calls per turn (regenerations and retries).
pub fn expected_calls_per_conversation(s: &Scenario) -> f64 {
    let total: f64 = s.models.iter().map(|m| m.weight).sum();
    let error: f64 = s
        .models
        .iter()
        .map(|m| {
            m.weight / total
                * s.provider_error_rate
                    .get(&m.provider)
                    .copied()
                    .unwrap_or(0.0)
        })
        .sum();
    let retry = s.signals.retry_after_error;
    let regen = s.signals.regenerate.min(0.95);
    // A turn: tries until one succeeds or the user gives up after a failure.
    let tries = 1.0 / (1.0 - error * retry);
    let succeeds = (1.0 - error) / (1.0 - error * retry);
    let calls_per_turn = tries / (1.0 - regen * succeeds);
    let go_on = succeeds * (1.0 - s.signals.abandon) * (1.0 - 1.0 / s.conversation.mean_turns);
    calls_per_turn / (1.0 - go_on)
}

fn pick_error<R: Rng + ?Sized>(rng: &mut R) -> &'static str {
    let mut x = rng.random::<f64>();
    for (name, share) in ERRORS {
        x -= share;
        if x < 0.0 {
            return name;
        }
    }
    ERRORS[ERRORS.len() - 1].0
}

/// Random bytes, never all zero (the collector refuses all-zero ids).
fn nonzero<const N: usize, R: Rng + ?Sized>(rng: &mut R) -> [u8; N] {
    loop {
        let b: [u8; N] = rng.random();
        if b.iter().any(|&x| x != 0) {
            return b;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
