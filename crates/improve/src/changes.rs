//! What a resumed run may change: the settings of the rounds still to come — how much to
//! practise and how to train — never what their results are compared on (the skills, the
//! held-out sizes, the guard, the seed). A curriculum or a learning rate can thus be adjusted
//! mid-run, as TRL users ask for, and each change is recorded in the registry's history. A round
//! interrupted during its rollouts takes changed sampling settings from its next chunk of tasks,
//! and changed training settings if it had not finished training.
use crate::improve::ImproveConfig;
use crate::trainer::targets_text;
use autodidact_model::Target;

/// Overrides for a resumed run; `None` keeps the stored setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Wall-clock seconds from now (a resumed run always gets a fresh budget).
    pub budget_s: Option<f64>,
    pub rounds: Option<usize>,
    pub tasks_per_round: Option<usize>,
    /// Levels of a skill practised at once.
    pub max_levels: Option<usize>,
    pub samples_per_task: Option<usize>,
    pub shots: Option<usize>,
    pub temperature: Option<f32>,
    /// Sequences in flight (batch-invariant decoding: it changes speed, not results).
    pub max_active: Option<usize>,
    pub epochs: Option<usize>,
    pub rank: Option<usize>,
    pub lr: Option<f32>,
    /// The layers the adapter changes.
    pub targets: Option<Vec<Target>>,
    /// Whether the chat template's marker tokens train their own embedding rows.
    pub template_tokens: Option<bool>,
    pub replay_share: Option<f32>,
    pub replay_top_k: Option<usize>,
    /// DPO's beta (0: off) and learning rate.
    pub dpo_beta: Option<f32>,
    pub dpo_lr: Option<f32>,
}

/// Sets `slot` to `new` when given and different, saying what changed.
fn set<T: PartialEq + std::fmt::Display + Copy>(
    said: &mut Vec<String>,
    name: &str,
    slot: &mut T,
    new: Option<T>,
) {
    if let Some(v) = new {
        if *slot != v {
            said.push(format!("{name} {} -> {v}", *slot));
            *slot = v;
        }
    }
}

impl Changes {
    /// Refuses changes that would leave started rounds unfinished or a round with nothing to
    /// do; `started` is the number of rounds the run has begun.
    pub fn check(&self, started: usize) -> Result<(), String> {
        if let Some(r) = self.rounds {
            if r < started {
                return Err(format!(
                    "has started {started} rounds; rounds cannot go below that (asked for {r})"
                ));
            }
        }
        let zero = [
            ("rounds", self.rounds),
            ("tasks", self.tasks_per_round),
            ("levels", self.max_levels),
            ("samples", self.samples_per_task),
            ("batch", self.max_active),
            ("epochs", self.epochs),
            ("rank", self.rank),
        ]
        .into_iter()
        .find(|(_, v)| *v == Some(0));
        if let Some((name, _)) = zero {
            return Err(format!("{name} must be at least 1"));
        }
        if self.targets.as_ref().is_some_and(|t| t.is_empty()) {
            return Err("targets must name at least one layer".into());
        }
        if self.lr.is_some_and(|lr| !(lr > 0.0 && lr.is_finite())) {
            return Err("lr must be a positive number".into());
        }
        if self
            .replay_share
            .is_some_and(|s| !(s >= 0.0 && s.is_finite()))
        {
            return Err("replay share must be zero or more".into());
        }
        if self
            .temperature
            .is_some_and(|t| !(t >= 0.0 && t.is_finite()))
        {
            return Err("temperature must be zero or more".into());
        }
        if self.dpo_beta.is_some_and(|b| !(b >= 0.0 && b.is_finite())) {
            return Err("DPO beta must be zero or more".into());
        }
        if self.dpo_lr.is_some_and(|lr| !(lr > 0.0 && lr.is_finite())) {
            return Err("DPO lr must be a positive number".into());
        }
        Ok(())
    }

    /// Applies the changes to `cfg`; returns one line per setting that changed. The budget is
    /// not a setting of the run and is not listed.
    pub fn apply(&self, cfg: &mut ImproveConfig) -> Vec<String> {
        let mut said = Vec::new();
        if self.budget_s.is_some() {
            cfg.budget_s = self.budget_s;
        }
        set(&mut said, "rounds", &mut cfg.rounds, self.rounds);
        set(
            &mut said,
            "tasks",
            &mut cfg.tasks_per_round,
            self.tasks_per_round,
        );
        set(&mut said, "levels", &mut cfg.max_levels, self.max_levels);
        set(
            &mut said,
            "samples",
            &mut cfg.samples_per_task,
            self.samples_per_task,
        );
        set(&mut said, "shots", &mut cfg.shots, self.shots);
        set(
            &mut said,
            "temperature",
            &mut cfg.temperature,
            self.temperature,
        );
        set(&mut said, "epochs", &mut cfg.train.epochs, self.epochs);
        set(&mut said, "batch", &mut cfg.max_active, self.max_active);
        let rank = cfg.train.rank;
        set(&mut said, "rank", &mut cfg.train.rank, self.rank);
        // alpha / rank, the adapter's scale, stays as it was.
        cfg.train.alpha *= cfg.train.rank as f32 / rank as f32;
        set(&mut said, "lr", &mut cfg.train.lr, self.lr);
        if let Some(t) = &self.targets {
            if *t != cfg.train.targets {
                said.push(format!(
                    "targets {} -> {}",
                    targets_text(&cfg.train.targets),
                    targets_text(t)
                ));
                cfg.train.targets = t.clone();
            }
        }
        set(
            &mut said,
            "template tokens",
            &mut cfg.train.template_tokens,
            self.template_tokens,
        );
        set(
            &mut said,
            "replay share",
            &mut cfg.replay.share,
            self.replay_share,
        );
        set(
            &mut said,
            "replay top-k",
            &mut cfg.replay.top_k,
            self.replay_top_k,
        );
        set(&mut said, "DPO beta", &mut cfg.dpo.beta, self.dpo_beta);
        set(&mut said, "DPO lr", &mut cfg.dpo.lr, self.dpo_lr);
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_and_different_settings_change() {
        let mut cfg = ImproveConfig::default();
        let c = Changes {
            budget_s: Some(60.0),
            lr: Some(1e-4),
            epochs: Some(cfg.train.epochs),
            replay_share: Some(2.0),
            targets: Some(vec![Target::Q, Target::V]),
            ..Changes::default()
        };
        let said = c.apply(&mut cfg);
        assert_eq!(
            said,
            vec![
                "lr 0.0002 -> 0.0001",
                "targets gate,up,down -> q,v",
                "replay share 4 -> 2"
            ]
        );
        assert_eq!(cfg.train.targets, [Target::Q, Target::V]);
        assert_eq!((cfg.train.lr, cfg.replay.share), (1e-4, 2.0));
        assert_eq!(cfg.budget_s, Some(60.0));
        assert!(Changes::default().apply(&mut cfg).is_empty());
    }

    #[test]
    fn changes_that_would_strand_a_round_or_do_nothing_are_refused() {
        let fewer = Changes {
            rounds: Some(2),
            ..Changes::default()
        };
        assert!(fewer.check(3).unwrap_err().contains("has started 3 rounds"));
        assert!(fewer.check(2).is_ok());
        let zero = Changes {
            rank: Some(0),
            ..Changes::default()
        };
        assert_eq!(zero.check(0).unwrap_err(), "rank must be at least 1");
        let nan = Changes {
            lr: Some(f32::NAN),
            ..Changes::default()
        };
        assert!(nan.check(0).is_err());
        let none = Changes {
            targets: Some(Vec::new()),
            ..Changes::default()
        };
        assert!(none.check(0).is_err());
    }
}
