//! Tiny models, requests and a sink that hands events to the test through a channel.
use autodidact_engine::{
    Completion, EngineConfig, EngineHandle, Event, EventSink, GenConfig, Request, SamplingParams,
};
use autodidact_kernels::GgmlType;
use autodidact_model::gguf::GgufFile;
use autodidact_model::testing::{tiny_model_with, TinySpec};
use autodidact_model::{Arch, Model};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The tiny model's context length (its GGUF says 256).
pub const N_CTX: usize = 256;

/// Long enough for any test here on a loaded 2-core machine; a hang fails instead of blocking.
const PATIENCE: Duration = Duration::from_secs(60);

/// A Gemma 3 tiny model with int8 (Q8_0) matrices, the real model's main kernel path, built once.
pub fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| load(&TinySpec::new(Arch::Gemma3, GgmlType::Q8_0, 11)))
        .clone()
}

/// A tiny model whose greedy text varies (most random models fall into a one-token loop at once),
/// built once; with [`varied`] requests its sequences use most of the vocabulary they can reach.
pub fn varied_model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| load(&TinySpec::new(Arch::Gemma3, GgmlType::Q8_0, 2)))
        .clone()
}

/// [`greedy`] with a repeat penalty, which keeps a random model from looping: every step is then
/// an argmax over logits that shift with the history, the case where batching differences show.
pub fn varied(prompt: Vec<u32>, max_tokens: usize) -> Request {
    let mut r = greedy(prompt, max_tokens);
    r.params.repeat_penalty = 1.5;
    r
}

pub fn engine_for(model: Arc<Model>, max_active: usize, max_queued: usize) -> EngineHandle {
    EngineHandle::spawn(
        model,
        EngineConfig {
            gen: gen_config(),
            max_active,
            max_queued,
        },
    )
    .expect("engine starts")
}

pub fn load(spec: &TinySpec) -> Arc<Model> {
    let bytes = tiny_model_with(spec);
    let gguf = GgufFile::from_bytes("tiny", &bytes).expect("tiny GGUF parses");
    Arc::new(Model::from_gguf(gguf).expect("tiny model loads"))
}

pub fn gen_config() -> GenConfig {
    GenConfig {
        n_ctx: N_CTX,
        n_batch: 64,
        max_parked: 4,
        share_prompts: false,
    }
}

pub fn engine(max_active: usize, max_queued: usize) -> EngineHandle {
    engine_for(model(), max_active, max_queued)
}

/// A prompt of `n` ids from the tiny vocabulary (BOS first), different for every `seed`.
pub fn prompt(n: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_add(1);
    let mut out = vec![2];
    while out.len() < n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Byte tokens and named tokens alike (ids 3..300), never a special.
        out.push(3 + ((s >> 33) % 297) as u32);
    }
    out
}

/// Greedy, exactly `max_tokens` tokens (a random model would otherwise stop at a random EOS).
pub fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt,
        params: SamplingParams {
            max_tokens,
            ignore_eos: true,
            ..SamplingParams::greedy()
        },
        ..Default::default()
    }
}

/// Sends every event to the test; `closed` tells the engine the receiver went away.
pub struct ChannelSink {
    pub tx: Sender<Event>,
    pub closed: Arc<AtomicBool>,
    /// Closes itself after this many tokens (a client that disconnects mid-stream).
    pub close_after: Option<usize>,
    pub tokens: usize,
}

impl EventSink for ChannelSink {
    fn send(&mut self, event: Event) -> bool {
        if matches!(event, Event::Token { .. }) {
            self.tokens += 1;
            if self.close_after.is_some_and(|n| self.tokens >= n) {
                self.closed.store(true, Ordering::SeqCst);
            }
        }
        self.tx.send(event).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A request's side of the stream.
pub struct Stream {
    pub rx: Receiver<Event>,
    pub closed: Arc<AtomicBool>,
}

pub fn sink(close_after: Option<usize>) -> (Box<dyn EventSink>, Stream) {
    let (tx, rx) = channel();
    let closed = Arc::new(AtomicBool::new(false));
    let s = ChannelSink {
        tx,
        closed: closed.clone(),
        close_after,
        tokens: 0,
    };
    (Box::new(s), Stream { rx, closed })
}

/// What one request heard: the streamed texts, then its single terminal event.
pub struct Heard {
    pub texts: Vec<String>,
    pub tokens: Vec<u32>,
    pub end: Result<Completion, String>,
}

impl Stream {
    /// A stream over events a custom sink forwards.
    pub fn from_events(rx: Receiver<Event>) -> Stream {
        Stream {
            rx,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Reads until `Done` or `Failed`, then checks that nothing follows: the engine drops the sink
    /// after the terminal event, so the channel must report the sender gone, not another event.
    pub fn finish(self) -> Heard {
        let mut h = Heard {
            texts: Vec::new(),
            tokens: Vec::new(),
            end: Err(String::new()),
        };
        loop {
            match self.rx.recv_timeout(PATIENCE) {
                Ok(Event::Token { text, sampled }) => {
                    h.texts.push(text);
                    h.tokens.push(sampled.token);
                }
                Ok(Event::Done(c)) => {
                    h.end = Ok(c);
                    break;
                }
                Ok(Event::Failed(e)) => {
                    h.end = Err(e);
                    break;
                }
                Err(e) => panic!("no terminal event: {e:?}"),
            }
        }
        match self.rx.recv_timeout(PATIENCE) {
            Err(RecvTimeoutError::Disconnected) => {}
            Ok(e) => panic!("an event after the terminal one: {e:?}"),
            Err(RecvTimeoutError::Timeout) => panic!("the engine kept the sink after the end"),
        }
        h
    }

    pub fn done(self) -> (Completion, Vec<String>) {
        let h = self.finish();
        match h.end {
            Ok(c) => (c, h.texts),
            Err(e) => panic!("request failed: {e}"),
        }
    }
}

/// Submits `req` and waits for its completion.
pub fn run(engine: &EngineHandle, req: Request) -> Completion {
    let (s, stream) = sink(None);
    engine.submit(req, s).expect("accepted");
    stream.done().0
}
