//! The CLI's face of `autodidact-store`: progress bars for pulls, and loading a model by name.
use anyhow::{Context, Result};
use autodidact_model::Model;
use autodidact_store::{PullEvent, ResolvedModel, Store};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

/// Draws a pull's byte counts as a progress bar and its messages on standard error.
pub fn pull_progress() -> impl FnMut(PullEvent) {
    let mut bar: Option<ProgressBar> = None;
    move |ev| match ev {
        PullEvent::Message(m) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            eprintln!("{m}");
        }
        PullEvent::Bytes { phase, done, total } => {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(total);
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                b.set_message(phase.to_string());
                b
            });
            b.set_position(done);
            if done >= total {
                b.finish_and_clear();
            }
        }
    }
}

/// `pull MODEL|PATH`: a known model, or a local GGUF file imported under its stem (`name`
/// overrides; a different file under a taken name needs `replace`).
pub fn pull(store: &Store, what: &str, name: Option<&str>, replace: bool) -> Result<()> {
    let path = std::path::Path::new(what);
    if autodidact_store::KNOWN.iter().any(|k| k.name == what) && name.is_none() {
        let p = store.pull_known(what, &mut pull_progress())?;
        println!("{}", p.display());
        return Ok(());
    }
    if !path.exists() {
        anyhow::bail!(
            "{what:?} is neither a known model ({}) nor an existing file",
            autodidact_store::KNOWN
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (name, what) = store
        .import_model(path, name, replace, &mut pull_progress())
        .map_err(|e| match e {
            autodidact_store::StoreError::ModelExists { .. } => anyhow::anyhow!(
                "{e} (pass --name NEW to register it under another name, or --replace)"
            ),
            e => e.into(),
        })?;
    match what {
        autodidact_store::Imported::Added => eprintln!("registered {name}"),
        autodidact_store::Imported::AlreadyThere => {
            eprintln!("{name} is already registered with these bytes")
        }
        autodidact_store::Imported::Replaced { old_sha256 } => {
            eprintln!("replaced {name} (the old file had sha256 {old_sha256})")
        }
    }
    println!("{}", store.resolve_model(&name)?.path.display());
    Ok(())
}

/// A model by registered name or path, pulling the default model on first use.
pub fn load(store: &Store, name: &str) -> Result<(Arc<Model>, ResolvedModel)> {
    let r = store.resolve_or_pull(name, &mut pull_progress())?;
    let m = Model::load(&r.path).with_context(|| format!("loading {}", r.path.display()))?;
    Ok((Arc::new(m), r))
}
