//! The dataflow-shaped part of the stream jobs, on timely dataflow: keyed sums per step.
//!
//! While a job applies a step, its processor emits [`Fact`]s — `(table, partition key,
//! clustering key) += delta` — for aggregates that no decision inside the step depends on:
//! per-item engagement counters and hourly engagement windows. The [`Aggregator`] feeds a
//! step's facts into a timely dataflow as one epoch; the facts are exchanged by key across the
//! workers, summed per key, and emitted when the epoch's frontier passes. The job adds the sums
//! to the stored values in the step's atomic batch, so a hot item costs one write per step, not
//! one per action, and effectively-once holds as for every other write (ADR 005).
//!
//! Aggregates that a decision needs at once (a campaign total that crosses its goal, a donation
//! that would overflow) stay in the processor, computed inline.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Input, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

/// `(table, pk, ck) += delta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub table: &'static str,
    pub pk: Bytes,
    pub ck: Bytes,
    pub delta: i64,
}

type Key = (&'static str, Bytes, Bytes);

/// A fact inside the dataflow: table index (see `Aggregator::tables`), pk, ck, delta. Exchange
/// needs serialisable data, so the table travels as an index.
type Record = (u16, Vec<u8>, Vec<u8>, i64);
type RecordKey = (u16, Vec<u8>, Vec<u8>);

fn key_hash(r: &Record) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (r.0, &r.1, &r.2).hash(&mut h);
    h.finish()
}

enum Command {
    /// Aggregate these facts as epoch `epoch` (only worker 0 receives facts; every worker
    /// receives the command so that all advance together).
    Epoch { epoch: u64, facts: Vec<Record> },
}

/// The sums of one epoch from one worker.
type Sums = Vec<(RecordKey, i64)>;

/// A timely dataflow that sums facts per key, one epoch per call.
pub struct Aggregator {
    commands: Vec<Sender<Command>>,
    results: Receiver<Result<Sums, String>>,
    epoch: u64,
    /// Table names by index, as facts name them.
    tables: Vec<&'static str>,
    // Joined on drop (after the command senders are dropped, the workers finish).
    guards: Option<timely::communication::WorkerGuards<()>>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("workers", &self.commands.len())
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Aggregator {
    /// Starts `workers` timely worker threads.
    pub fn start(workers: usize) -> Result<Self, String> {
        let workers = workers.max(1);
        let mut commands = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = channel::<Command>();
            commands.push(tx);
            receivers.push(Mutex::new(Some(rx)));
        }
        let receivers = Arc::new(receivers);
        let (results_tx, results) = channel::<Result<Sums, String>>();
        let results_tx = Mutex::new(results_tx);
        let config = if workers == 1 {
            timely::Config::thread()
        } else {
            timely::Config::process(workers)
        };
        let guards = timely::execute(config, move |worker| {
            let index = worker.index();
            let Some(commands) = receivers[index].lock().expect("receivers").take() else {
                return;
            };
            let results = results_tx.lock().expect("results").clone();
            let done: std::rc::Rc<std::cell::RefCell<Sums>> = Default::default();
            let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<Record>>> =
                InputHandle::new();
            let probe = ProbeHandle::new();
            let sink = done.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                        Exchange::new(key_hash),
                        "SumPerKey",
                        |_capability, _info| {
                            let mut pending: HashMap<u64, HashMap<RecordKey, i64>> = HashMap::new();
                            move |(input, frontier), _output| {
                                input.for_each_stamp(|cap, data| {
                                    // Epochs are single times; a message's least time is its epoch.
                                    let Some(&epoch) = cap.stamp().least() else {
                                        return;
                                    };
                                    let sums = pending.entry(epoch).or_default();
                                    for batch in data {
                                        for (t, pk, ck, d) in batch.drain(..) {
                                            *sums.entry((t, pk, ck)).or_insert(0) += d;
                                        }
                                    }
                                });
                                // Emit every epoch the frontier has passed: its sums are final.
                                let ready: Vec<u64> = pending
                                    .keys()
                                    .copied()
                                    .filter(|t| !frontier.less_equal(t))
                                    .collect();
                                for t in ready {
                                    if let Some(sums) = pending.remove(&t) {
                                        sink.borrow_mut()
                                            .extend(sums.into_iter().filter(|(_, d)| *d != 0));
                                    }
                                }
                            }
                        },
                    )
                    .probe_with(&probe);
            });
            while let Ok(Command::Epoch { epoch, facts }) = commands.recv() {
                for f in facts {
                    input.send(f);
                }
                input.advance_to(epoch + 1);
                while probe.less_than(input.time()) {
                    worker.step();
                }
                let out = std::mem::take(&mut *done.borrow_mut());
                if results.send(Ok(out)).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self {
            commands,
            results,
            epoch: 0,
            tables: Vec::new(),
            guards: Some(guards),
        })
    }

    /// Sums `facts` per key (one epoch). Keys whose deltas cancel out are left out.
    pub fn reduce(&mut self, facts: Vec<Fact>) -> Result<Vec<(Key, i64)>, String> {
        let epoch = self.epoch;
        self.epoch += 1;
        let records: Vec<Record> = facts
            .into_iter()
            .map(|f| {
                let t = match self.tables.iter().position(|t| *t == f.table) {
                    Some(i) => i,
                    None => {
                        self.tables.push(f.table);
                        self.tables.len() - 1
                    }
                };
                (t as u16, f.pk.to_vec(), f.ck.to_vec(), f.delta)
            })
            .collect();
        let mut facts = Some(records);
        for (i, tx) in self.commands.iter().enumerate() {
            let facts = if i == 0 {
                facts.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            tx.send(Command::Epoch { epoch, facts })
                .map_err(|_| "the aggregation workers stopped".to_owned())?;
        }
        let mut out = Vec::new();
        for _ in 0..self.commands.len() {
            let sums = self
                .results
                .recv()
                .map_err(|_| "the aggregation workers stopped".to_owned())??;
            out.extend(sums.into_iter().map(|((t, pk, ck), d)| {
                (
                    (self.tables[t as usize], Bytes::from(pk), Bytes::from(ck)),
                    d,
                )
            }));
        }
        Ok(out)
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.commands.clear();
        if let Some(g) = self.guards.take() {
            drop(g); // joins the worker threads
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(pk: &str, delta: i64) -> Fact {
        Fact {
            table: "t",
            pk: Bytes::copy_from_slice(pk.as_bytes()),
            ck: Bytes::from_static(b"n"),
            delta,
        }
    }

    fn sorted(mut v: Vec<(Key, i64)>) -> Vec<(String, i64)> {
        v.sort_by(|a, b| a.0.1.cmp(&b.0.1));
        v.into_iter()
            .map(|((_, pk, _), d)| (String::from_utf8_lossy(&pk).into_owned(), d))
            .collect()
    }

    #[test]
    fn sums_per_key_per_epoch_across_workers() {
        for workers in [1, 3] {
            let mut agg = Aggregator::start(workers).unwrap();
            let facts = (0..1000)
                .map(|i| fact(&format!("k{}", i % 7), if i % 10 == 0 { -1 } else { 1 }))
                .collect();
            let got = sorted(agg.reduce(facts).unwrap());
            let mut want: HashMap<String, i64> = HashMap::new();
            for i in 0..1000 {
                *want.entry(format!("k{}", i % 7)).or_default() += if i % 10 == 0 { -1 } else { 1 };
            }
            let mut want: Vec<(String, i64)> = want.into_iter().collect();
            want.sort();
            assert_eq!(got, want, "{workers} workers");
            // The next epoch starts from zero; cancelling deltas leave nothing.
            let got = agg
                .reduce(vec![fact("a", 2), fact("a", -2), fact("b", 5)])
                .unwrap();
            assert_eq!(sorted(got), vec![("b".to_owned(), 5)]);
            assert!(agg.reduce(Vec::new()).unwrap().is_empty());
        }
    }
}
