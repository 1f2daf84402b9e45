//! The engine as an actor: one thread owns the model's batch and steps it; any number of callers
//! reach it through a cloneable [`EngineHandle`]. Requests wait in a bounded queue (full → an
//! error the caller can turn into "retry later") and stream their tokens back through an
//! [`EventSink`]; a sink that reports itself closed (a client that went away) cancels its
//! sequence before the next step, which frees its KV cache.
use crate::batch::{Batch, Completion, GenConfig, Request};
use crate::sampling::Sampled;
use crate::EngineError;
use autodidact_model::Model;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

/// What a request hears back, in order: tokens, then exactly one `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    Token { text: String, sampled: Sampled },
    Done(Completion),
    Failed(String),
}

/// Where a request's events go.
pub trait EventSink: Send {
    /// Delivers one event; `false` when the receiver is gone.
    fn send(&mut self, event: Event) -> bool;
    /// Whether the receiver is gone (checked before every step).
    fn is_closed(&self) -> bool;
}

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub gen: GenConfig,
    /// Sequences decoded together.
    pub max_active: usize,
    /// Requests waiting beyond those.
    pub max_queued: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            gen: GenConfig::default(),
            max_active: 8,
            max_queued: 64,
        }
    }
}

/// Live counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub queued: AtomicUsize,
    pub active: AtomicUsize,
    pub kv_bytes: AtomicUsize,
    pub prompt_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub steps: AtomicU64,
}

struct Job {
    req: Request,
    sink: Box<dyn EventSink>,
}

/// A cloneable way to submit requests to the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: SyncSender<Job>,
    pub model: Arc<Model>,
    pub config: EngineConfig,
    pub stats: Arc<EngineStats>,
}

impl EngineHandle {
    /// Starts the engine thread for `model`.
    pub fn spawn(model: Arc<Model>, config: EngineConfig) -> Result<EngineHandle, EngineError> {
        // Room for a full batch of newcomers plus the queue: requests bound for free slots must not
        // be refused while the engine thread has yet to pick them up.
        let (tx, rx) = sync_channel(config.max_active.max(1) + config.max_queued);
        let stats = Arc::new(EngineStats::default());
        let (m, s) = (model.clone(), stats.clone());
        // The loop waits for requests on a thread of its own, but computes on the process's one
        // pool (see the crate's thread-pool policy), so a trainer or another engine in the same
        // process shares those workers instead of adding a second full-size pool.
        std::thread::Builder::new()
            .name("autodidact-engine".into())
            .spawn(move || run(&m, config, rx, &s))
            .map_err(|e| EngineError::Spawn(e.to_string()))?;
        Ok(EngineHandle {
            tx,
            model,
            config,
            stats,
        })
    }

    /// Checks `req` against the limits (so callers can answer 400 before streaming) and queues it.
    pub fn submit(&self, req: Request, sink: Box<dyn EventSink>) -> Result<(), EngineError> {
        self.config.gen.check(&req)?;
        let waiting = self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let free = self
            .config
            .max_active
            .saturating_sub(self.stats.active.load(Ordering::Relaxed));
        if waiting >= self.config.max_queued + free {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::Busy);
        }
        match self.tx.try_send(Job { req, sink }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => EngineError::Busy,
                    TrySendError::Disconnected(_) => EngineError::Stopped,
                })
            }
        }
    }
}

fn run(model: &Model, cfg: EngineConfig, rx: Receiver<Job>, stats: &EngineStats) {
    let mut batch = Batch::new(cfg.gen);
    let mut sinks: Vec<(u64, Box<dyn EventSink>)> = Vec::new();
    let mut next_id = 0u64;
    loop {
        // Admit queued requests while there is room; block only when there is nothing to step.
        while batch.len() < cfg.max_active.max(1) {
            let job = if batch.is_empty() {
                match rx.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                }
            } else {
                match rx.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            };
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            let Job { req, mut sink } = job;
            if sink.is_closed() {
                continue;
            }
            let id = next_id;
            next_id += 1;
            match batch.add(model, id, req) {
                Ok(()) => sinks.push((id, sink)),
                Err(e) => {
                    sink.send(Event::Failed(e.to_string()));
                }
            }
        }
        for (id, sink) in &sinks {
            if sink.is_closed() {
                batch.cancel(*id);
            }
        }
        stats.active.store(batch.len(), Ordering::Relaxed);
        // The whole step runs on one pool worker: its parallel sections (the forward pass,
        // sampling) then start from the worker's own queue, one hand-off per step instead of one
        // per section.
        let step = rayon::scope(|_| {
            batch.step(model, |d| {
                stats.completion_tokens.fetch_add(1, Ordering::Relaxed);
                match sinks.iter_mut().find(|(id, _)| *id == d.seq) {
                    Some((_, sink)) => sink.send(Event::Token {
                        text: d.text.to_string(),
                        sampled: d.sampled.clone(),
                    }),
                    None => false,
                }
            })
        });
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats.kv_bytes.store(batch.kv_bytes(), Ordering::Relaxed);
        if let Err(e) = &step {
            log_failure(e);
        }
        match step {
            Ok(done) => {
                for (id, c) in done {
                    if let Some(k) = sinks.iter().position(|(i, _)| *i == id) {
                        let (_, mut sink) = sinks.swap_remove(k);
                        stats
                            .prompt_tokens
                            .fetch_add(c.prompt_tokens as u64, Ordering::Relaxed);
                        stats
                            .cached_prompt_tokens
                            .fetch_add(c.cached_tokens as u64, Ordering::Relaxed);
                        sink.send(Event::Done(c));
                    }
                }
            }
            Err(e) => {
                // A failed forward pass leaves every cache in doubt: fail all and start clean.
                for (_, mut sink) in sinks.drain(..) {
                    sink.send(Event::Failed(e.to_string()));
                }
                batch = Batch::new(cfg.gen);
            }
        }
        stats.active.store(batch.len(), Ordering::Relaxed);
    }
}

/// Failures of the engine thread reach standard error whatever the caller does with its
/// `Event::Failed` (a server's client may be gone): a dropped error is a bug nobody sees.
fn log_failure(e: &EngineError) {
    eprintln!("autodidact-engine: a batch step failed, every sequence in it was failed: {e}");
}
