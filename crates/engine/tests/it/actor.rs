//! The engine actor: a client that goes away cancels its sequence, every request hears exactly one
//! `Done` or `Failed`, a full queue answers `Busy`, and one failing request leaves the rest alone.
use crate::common::{engine, greedy, load, model, prompt, run, sink, Heard, Stream};
use autodidact_engine::{EngineError, Event, EventSink, FinishReason};
use autodidact_kernels::GgmlType;
use autodidact_model::testing::TinySpec;
use autodidact_model::{Arch, LoraAdapter, Target};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits (bounded) until the engine's counters settle: nothing queued, nothing active.
fn wait_idle(e: &autodidact_engine::EngineHandle) {
    let t = Instant::now();
    while e.stats.queued.load(Ordering::SeqCst) + e.stats.active.load(Ordering::SeqCst) > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the engine never went idle"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_closed_sink_cancels_its_sequence_and_hears_done_once() {
    let e = engine(2, 4);
    // Closes after its third token, as a client that disconnects mid-stream.
    let (s, stream) = sink(Some(3));
    e.submit(greedy(prompt(8, 1), 200), s).unwrap();
    let (c, texts) = stream.done();
    assert_eq!(c.finish, FinishReason::Cancelled);
    assert_eq!(c.tokens.len(), 3, "cancelled before the next step");
    assert_eq!(texts.len(), 3);
    // The engine carries on.
    wait_idle(&e);
    assert_eq!(
        run(&e, greedy(prompt(8, 2), 5)).finish,
        FinishReason::Length
    );
}

/// Records every event; `send` reports the receiver gone after `accept` tokens.
struct Refusing {
    events: Arc<Mutex<Vec<Event>>>,
    accept: usize,
    tokens: usize,
}

impl EventSink for Refusing {
    fn send(&mut self, event: Event) -> bool {
        if matches!(event, Event::Token { .. }) {
            self.tokens += 1;
        }
        self.events.lock().unwrap().push(event);
        self.tokens < self.accept
    }
    fn is_closed(&self) -> bool {
        false
    }
}

#[test]
fn a_failed_send_cancels_at_once() {
    let e = engine(2, 4);
    let events = Arc::new(Mutex::new(Vec::new()));
    let s = Refusing {
        events: events.clone(),
        accept: 2,
        tokens: 0,
    };
    e.submit(greedy(prompt(8, 3), 200), Box::new(s)).unwrap();
    wait_idle(&e);
    let ev = events.lock().unwrap();
    let ends: Vec<_> = ev
        .iter()
        .filter(|x| matches!(x, Event::Done(_) | Event::Failed(_)))
        .collect();
    assert_eq!(ends.len(), 1, "{ev:?}");
    let Some(Event::Done(c)) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!((c.finish, c.tokens.len()), (FinishReason::Cancelled, 2));
}

/// Holds the engine thread inside its first token's `send` until released, so the test knows
/// exactly what is active and queued.
struct Gate {
    started: Sender<()>,
    release: Receiver<()>,
    out: Sender<Event>,
    first: bool,
}

impl EventSink for Gate {
    fn send(&mut self, event: Event) -> bool {
        if self.first {
            self.first = false;
            self.started.send(()).unwrap();
            self.release
                .recv_timeout(Duration::from_secs(60))
                .expect("released");
        }
        self.out.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        false
    }
}

fn gate() -> (Box<Gate>, Receiver<()>, Sender<()>, Receiver<Event>) {
    let (started_tx, started) = channel();
    let (release, release_rx) = channel();
    let (out, events) = channel();
    let g = Gate {
        started: started_tx,
        release: release_rx,
        out,
        first: true,
    };
    (Box::new(g), started, release, events)
}

/// Reads a gated request's events to its end.
fn drain(events: Receiver<Event>) -> Heard {
    Stream::from_events(events).finish()
}

#[test]
fn a_full_queue_answers_busy_and_the_accepted_all_finish() {
    let e = engine(1, 1);
    let (g, started, release, events) = gate();
    e.submit(greedy(prompt(6, 1), 4), g).unwrap();
    started.recv_timeout(Duration::from_secs(60)).unwrap();
    // One active (held in its first token), no room left but the one queue place.
    let (s, queued) = sink(None);
    e.submit(greedy(prompt(6, 2), 4), s).unwrap();
    let (s, _refused) = sink(None);
    let err = e.submit(greedy(prompt(6, 3), 4), s).unwrap_err();
    assert!(matches!(err, EngineError::Busy), "{err:?}");
    assert!(err.to_string().contains("queue is full"), "{err}");
    release.send(()).unwrap();
    let first = drain(events).end.expect("the gated request finishes");
    assert_eq!(first.tokens.len(), 4);
    assert_eq!(queued.done().0.tokens.len(), 4);
    // Room again once they are through.
    wait_idle(&e);
    assert_eq!(run(&e, greedy(prompt(6, 3), 2)).tokens.len(), 2);
}

#[test]
fn a_request_whose_client_left_while_queued_never_starts() {
    let e = engine(1, 2);
    let (g, started, release, events) = gate();
    e.submit(greedy(prompt(6, 1), 3), g).unwrap();
    started.recv_timeout(Duration::from_secs(60)).unwrap();
    let (s, gone) = sink(None);
    e.submit(greedy(prompt(6, 2), 50), s).unwrap();
    gone.closed.store(true, Ordering::SeqCst);
    let before = e.stats.completion_tokens.load(Ordering::SeqCst);
    release.send(()).unwrap();
    drain(events).end.unwrap();
    // Dropped at admission: no token, no event (nobody is listening), no work.
    assert!(gone.rx.recv_timeout(Duration::from_secs(30)).is_err());
    wait_idle(&e);
    let after = e.stats.completion_tokens.load(Ordering::SeqCst);
    assert!(
        after - before <= 3,
        "{} tokens generated after the gate",
        after - before
    );
}

#[test]
fn a_request_that_cannot_start_fails_alone() {
    let e = engine(2, 4);
    // An adapter shaped for another model passes the queue's checks but not the batch's.
    let other = TinySpec::small(Arch::Gemma3, GgmlType::Q8_0, 1);
    let other_model = load(&other);
    let wrong = LoraAdapter::zeros(&other_model.config, 4, 8.0, &[Target::Q]);
    assert!(wrong.check(&model().config).is_err());
    let mut bad = greedy(prompt(6, 1), 4);
    bad.adapter = Some(Arc::new(wrong));
    let (s, failing) = sink(None);
    e.submit(bad, s).unwrap();
    let (s, fine) = sink(None);
    e.submit(greedy(prompt(6, 2), 4), s).unwrap();
    let h = failing.finish();
    assert!(h.tokens.is_empty());
    let err = h.end.expect_err("fails");
    assert!(!err.is_empty());
    assert_eq!(fine.done().0.tokens.len(), 4);
}
