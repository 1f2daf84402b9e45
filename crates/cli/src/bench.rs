//! `autodidact bench`: prompt processing (pp), generation (tg) and batched generation throughput,
//! load time and peak memory, as a table or one JSON object per test.
use anyhow::{bail, Result};
use autodidact_model::{ForwardOutput, Logits, Model, SeqInput};
use autodidact_store::{Store, DEFAULT_MODEL};
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(short, long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Prompt lengths to time (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "128,512")]
    pp: Vec<usize>,
    /// Tokens to generate for the single-sequence test.
    #[arg(long, default_value_t = 64)]
    tg: usize,
    /// Parallel sequences for the batched test (64 prompt + 64 generated tokens each).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    batch: Vec<usize>,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    test: String,
    tokens_per_s: f64,
    seconds: f64,
    threads: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Peak resident memory of this process in bytes (Linux), if known.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn prompt_tokens(m: &Model, n: usize) -> Vec<u32> {
    // Deterministic pseudo-random non-special tokens, as llama-bench uses random tokens.
    let mut s = 12345u64;
    let bos = m.tokenizer.bos.unwrap_or(0);
    (0..n)
        .map(|i| {
            if i == 0 {
                return bos;
            }
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1000 + (s >> 33) as u32 % 20000
        })
        .collect()
}

fn time_pp(m: &Model, n: usize) -> Result<f64> {
    let toks = prompt_tokens(m, n);
    let mut cache = m.new_cache(n, n);
    let t = Instant::now();
    m.forward(
        &mut [SeqInput {
            cache: &mut cache,
            tokens: &toks,
            logits: Logits::Last,
            adapter: None,
        }],
        false,
    )?;
    Ok(t.elapsed().as_secs_f64())
}

fn time_tg(m: &Model, n: usize) -> Result<f64> {
    let mut cache = m.new_cache(n + 1, 1);
    let mut tok = m.tokenizer.bos.unwrap_or(0);
    // One output reused across steps, as the engine's batch keeps one.
    let mut out = ForwardOutput::default();
    let t = Instant::now();
    for _ in 0..n {
        m.forward_into(
            &mut [SeqInput {
                cache: &mut cache,
                tokens: &[tok],
                logits: Logits::Last,
                adapter: None,
            }],
            false,
            &mut out,
        )?;
        tok = autodidact_engine::sampling::argmax(out.row(0));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// B sequences: prefill 64 tokens each, then 64 decode steps of all B together; time of the decode part.
fn time_batched(m: &Model, b: usize) -> Result<f64> {
    let (npp, ntg) = (64, 64);
    let mut caches: Vec<_> = (0..b).map(|_| m.new_cache(npp + ntg + 1, npp)).collect();
    let prompts: Vec<Vec<u32>> = (0..b)
        .map(|i| prompt_tokens(m, npp + i).split_off(i))
        .collect();
    let mut inputs: Vec<SeqInput> = caches
        .iter_mut()
        .zip(&prompts)
        .map(|(c, p)| SeqInput {
            cache: c,
            tokens: p,
            logits: Logits::Last,
            adapter: None,
        })
        .collect();
    let out = m.forward(&mut inputs, false)?;
    drop(inputs);
    let mut next: Vec<u32> = (0..b)
        .map(|i| autodidact_engine::sampling::argmax(out.row(i)))
        .collect();
    let mut out = ForwardOutput::default();
    let t = Instant::now();
    for _ in 0..ntg {
        let feeds: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut inputs: Vec<SeqInput> = caches
            .iter_mut()
            .zip(&feeds)
            .map(|(c, f)| SeqInput {
                cache: c,
                tokens: f,
                logits: Logits::Last,
                adapter: None,
            })
            .collect();
        m.forward_into(&mut inputs, false, &mut out)?;
        // Sequences are sampled in parallel, as the engine's batch does.
        next = (0..b)
            .into_par_iter()
            .map(|i| autodidact_engine::sampling::argmax(out.row(i)))
            .collect();
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn run(store: &Store, a: BenchArgs) -> Result<()> {
    if a.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let path = store
        .resolve_or_pull(&a.model, &mut crate::store::pull_progress())?
        .path;
    let t = Instant::now();
    let m = Model::load(&path)?;
    let load_s = t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut emit = |row: Row, json: bool| {
        if json {
            println!("{}", serde_json::to_string(&row).unwrap_or_default());
        } else {
            println!(
                "| {:<14} | {:>10.1} | {:>8.3} |",
                row.test, row.tokens_per_s, row.seconds
            );
        }
        rows.push(row.test);
    };
    if !a.json {
        println!(
            "model: {} ({:.0} MB), threads: {threads}, kernels: {}",
            path.display(),
            std::fs::metadata(&path)?.len() as f64 / 1e6,
            autodidact_kernels::Kernels::get().level.name()
        );
        println!("| {:<14} | {:>10} | {:>8} |", "test", "tokens/s", "seconds");
        println!("|{:-<16}|{:->12}|{:->10}|", "", "", "");
    }
    time_tg(&m, 4)?; // warm the mapping and the thread pool

    // A zero in a list skips that test, as `--tg 0` does.
    for &n in a.pp.iter().filter(|&&n| n > 0) {
        let s = median((0..a.reps).map(|_| time_pp(&m, n)).collect::<Result<_>>()?);
        emit(
            Row {
                test: format!("pp{n}"),
                tokens_per_s: n as f64 / s,
                seconds: s,
                threads,
            },
            a.json,
        );
    }
    if a.tg > 0 {
        let s = median(
            (0..a.reps)
                .map(|_| time_tg(&m, a.tg))
                .collect::<Result<_>>()?,
        );
        emit(
            Row {
                test: format!("tg{}", a.tg),
                tokens_per_s: a.tg as f64 / s,
                seconds: s,
                threads,
            },
            a.json,
        );
    }
    for &b in a.batch.iter().filter(|&&b| b > 0) {
        let s = median(
            (0..a.reps)
                .map(|_| time_batched(&m, b))
                .collect::<Result<_>>()?,
        );
        emit(
            Row {
                test: format!("batched B={b}"),
                tokens_per_s: (b * 64) as f64 / s,
                seconds: s,
                threads,
            },
            a.json,
        );
    }
    let rss = peak_rss().unwrap_or(0) as f64 / 1e6;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"test": "load", "seconds": load_s, "peak_rss_mb": rss})
        );
    } else {
        println!("load {load_s:.3} s, peak RSS {rss:.0} MB");
    }
    Ok(())
}
