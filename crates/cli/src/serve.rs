//! `autodidact serve`: the OpenAI-compatible API and web UI on loopback (by default).
use anyhow::{Context, Result};
use autodidact_engine::{AdapterCache, EngineConfig, EngineHandle, GenConfig};
use autodidact_model::Model;
use autodidact_server::AppState;
use clap::Args;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(short, long, default_value = autodidact_store::DEFAULT_MODEL)]
    pub model: String,
    /// Address to bind; anything but loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 routes.
    #[arg(long, env = "AUTODIDACT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Context per sequence, in tokens.
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Sequences generated together (continuous batching).
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Requests that may wait for a free sequence before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// A stored LoRA adapter applied to requests that name the base model (others can still
    /// ask for `MODEL+NAME`).
    #[arg(long)]
    pub adapter: Option<String>,
}

pub fn run(model: Arc<Model>, name: String, adapters: AdapterCache, args: ServeArgs) -> Result<()> {
    if args.ctx < 16 || args.parallel == 0 {
        anyhow::bail!("--ctx must be at least 16 and --parallel at least 1");
    }
    if let Some(a) = &args.adapter {
        // Fail at start, not on the first request.
        adapters
            .get(a, &model.config)
            .with_context(|| format!("loading adapter {a}"))?;
    }
    let engine = EngineHandle::spawn(
        model,
        EngineConfig {
            gen: GenConfig {
                n_ctx: args.ctx,
                max_parked: args.parallel,
                ..GenConfig::default()
            },
            max_active: args.parallel,
            max_queued: args.queue,
        },
    )?;
    let loopback = matches!(args.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !loopback && args.api_key.is_none() {
        eprintln!(
            "warning: serving on {} without an API key: anyone who can reach this port can use the model (set --api-key)",
            args.host
        );
    }
    let mut state = AppState::new(engine, name.clone(), args.api_key);
    state.adapters = Some(Arc::new(adapters));
    state.default_adapter = args.adapter;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!("serving {name} on http://{local} (OpenAI API under /v1, UI at /); Ctrl-C stops");
        autodidact_server::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
    })
}
