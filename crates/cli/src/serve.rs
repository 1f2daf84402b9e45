//! `autodidact serve`: the OpenAI-compatible API and web UI on loopback (by default).
use anyhow::{Context, Result};
use autodidact_engine::{AdapterCache, EngineConfig, EngineHandle, GenConfig};
use autodidact_memory::chat::ChatMemory;
use autodidact_model::Model;
use autodidact_server::improve::SelfImprovement;
use autodidact_server::memory::MemoryService;
use autodidact_server::{AllowedHosts, AppState};
use clap::Args;
use std::net::IpAddr;
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
    /// Context per sequence, in tokens (at most the model's own context length).
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
    /// Serve the raw model by default, not the promoted self of `autodidact improve`.
    #[arg(long)]
    pub base: bool,
    /// Host names requests may use besides localhost, 127.0.0.1 and [::1] (comma-separated;
    /// `*` for any). Without it a loopback server refuses other names (DNS rebinding) and a
    /// server on another address accepts any.
    #[arg(long, value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Largest request body in bytes [default: 16 per context token + 64 KiB].
    #[arg(long)]
    pub max_body: Option<usize>,
    /// Drop the oldest turns of a chat that no longer fits the context instead of refusing it
    /// (a request can still say `"truncation": "disabled"`).
    #[arg(long)]
    pub truncate_history: bool,
    /// Answer without memory: nothing is recalled into prompts or learned from chats, and
    /// /v1/memories is off.
    #[arg(long)]
    pub no_memory: bool,
    /// Whose memory requests without a `user` field use (default: the OS user).
    #[arg(long, env = "AUTODIDACT_USER")]
    pub user: Option<String>,
}

/// `requested` context tokens, clamped to what `model` was trained for (positions beyond it are
/// garbage, and the KV cache is sized from this number).
pub fn clamp_ctx(requested: usize, model: &Model) -> usize {
    let most = model.config.ctx_train;
    if most > 0 && requested > most {
        eprintln!(
            "warning: --ctx {requested} is more than the model's context length; using {most}"
        );
        most
    } else {
        requested
    }
}

/// An empty key would lock every request out with 401: refuse it before serving.
fn check_api_key(key: Option<String>) -> Result<Option<String>> {
    match key {
        Some(k) if k.trim().is_empty() => anyhow::bail!(
            "the API key is empty (--api-key or AUTODIDACT_API_KEY): give a key, or leave both unset to serve without one"
        ),
        k => Ok(k),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The Host names to accept: an explicit list, else loopback names on loopback and any name on
/// a network address.
fn allowed_hosts(host: &str, list: Option<&[String]>) -> AllowedHosts {
    match list {
        Some(l) => AllowedHosts::loopback_and(l),
        None if is_loopback(host) => AllowedHosts::default(),
        None => AllowedHosts::Any,
    }
}

/// Serves `model`; `memory` is `None` with `--no-memory`.
pub fn run(
    model: Arc<Model>,
    name: String,
    adapters: AdapterCache,
    memory: Option<ChatMemory>,
    improve: SelfImprovement,
    args: ServeArgs,
) -> Result<()> {
    let api_key = check_api_key(args.api_key)?;
    if args.ctx < 16 || args.parallel == 0 {
        anyhow::bail!("--ctx must be at least 16 and --parallel at least 1");
    }
    if args.max_body == Some(0) {
        anyhow::bail!("--max-body must be at least 1");
    }
    let ctx = clamp_ctx(args.ctx, &model);
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
                n_ctx: ctx,
                max_parked: args.parallel,
                ..GenConfig::default()
            },
            max_active: args.parallel,
            max_queued: args.queue,
        },
    )?;
    let loopback = is_loopback(&args.host);
    if !loopback && api_key.is_none() {
        eprintln!(
            "warning: serving on {} without an API key: anyone who can reach this port can use the model (set --api-key)",
            args.host
        );
    }
    autodidact_server::log_to_stderr();
    let mut state = AppState::new(engine, name.clone(), api_key);
    state.adapters = Some(Arc::new(adapters));
    state.default_adapter = args.adapter;
    state.improve = Some(Arc::new(improve));
    state.allowed_hosts = allowed_hosts(&args.host, args.allowed_hosts.as_deref());
    state.truncate_history = args.truncate_history;
    if let Some(b) = args.max_body {
        state.body_limit = b;
    }
    if let Some(chat) = memory {
        let user = args.user.clone().unwrap_or_else(autodidact_memory::os_user);
        autodidact_memory::validate_user_id(&user)?;
        // Opened once now, so a missing or wrong passphrase stops the start, not a request.
        chat.open(&user).map_err(crate::memory::locked_hint)?;
        eprintln!(
            "memory on for user {user} ({}{}); --no-memory turns it off",
            chat.dir().display(),
            if chat.embedder().is_some() {
                ", with the sentence encoder"
            } else {
                ", words only: `autodidact memory pull-embedder` adds meaning"
            }
        );
        state.memory = Some(Arc::new(MemoryService::new(chat, user)));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = if args.host.contains(':') && !args.host.starts_with('[') {
            format!("[{}]:{}", args.host, args.port)
        } else {
            format!("{}:{}", args.host, args.port)
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use autodidact_kernels::GgmlType;
    use autodidact_model::testing::tiny_model;
    use autodidact_model::Arch;

    #[test]
    fn an_empty_api_key_is_refused_and_others_pass() {
        for empty in ["", "  "] {
            let e = check_api_key(Some(empty.into())).unwrap_err().to_string();
            assert!(e.contains("API key is empty"), "{e}");
        }
        assert_eq!(check_api_key(None).unwrap(), None);
        assert_eq!(
            check_api_key(Some("k".into())).unwrap().as_deref(),
            Some("k")
        );
    }

    #[test]
    fn ctx_is_clamped_to_the_models_context_length() {
        let path = std::env::temp_dir().join(format!("ad-serve-tiny-{}.gguf", std::process::id()));
        std::fs::write(&path, tiny_model(Arch::Gemma3, GgmlType::F32, 1)).unwrap();
        let m = Model::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let most = m.config.ctx_train;
        assert_eq!(clamp_ctx(1_000_000_000, &m), most);
        assert_eq!(clamp_ctx(most, &m), most);
        assert_eq!(clamp_ctx(16, &m), 16);
    }

    #[test]
    fn hosts_follow_the_bind_address_unless_listed() {
        assert_eq!(allowed_hosts("127.0.0.1", None), AllowedHosts::default());
        assert_eq!(allowed_hosts("::1", None), AllowedHosts::default());
        assert_eq!(allowed_hosts("localhost", None), AllowedHosts::default());
        assert_eq!(allowed_hosts("0.0.0.0", None), AllowedHosts::Any);
        assert_eq!(allowed_hosts("192.168.1.5", None), AllowedHosts::Any);
        let l = allowed_hosts("0.0.0.0", Some(&["box.lan".into()]));
        assert!(l.allows("box.lan:8080") && l.allows("localhost") && !l.allows("evil.test"));
    }
}
