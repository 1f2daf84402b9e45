//! Skills as task families: the built-in ones and those loaded from the user's skills
//! directory, behind one interface (levels, a seeded generator, a verifier).
use crate::rng::Rng;
use crate::task::{Check, Split, Task, Verdict};
use crate::user::UserSkill;
use crate::{arithmetic, extract, instructions, recall, ImproveError};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Skill {
    /// With the phrasings the model has proposed so far in a run.
    Arithmetic(arithmetic::Proposed),
    /// With the writing requests the model has proposed so far in a run (see
    /// [`crate::propose`]), practised beside the program's seed list; never held out.
    Instructions(Vec<String>),
    Extract,
    Recall,
    User(Box<UserSkill>),
}

/// The built-in skills plus every `*.toml` / `*.json` in `skills_dir` (sorted by file name).
/// A missing directory is no error; a bad file is.
pub fn load_all(skills_dir: &Path) -> Result<Vec<Skill>, ImproveError> {
    let mut v = vec![
        Skill::Arithmetic(Default::default()),
        Skill::Instructions(Vec::new()),
        Skill::Extract,
        Skill::Recall,
    ];
    let mut files: Vec<_> = match std::fs::read_dir(skills_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ImproveError::io(skills_dir, e)),
    };
    files.sort();
    for f in files {
        let s = UserSkill::load(&f)?;
        if v.iter().any(|x| x.name() == s.name) {
            return Err(ImproveError::BadSkill {
                path: f,
                field: "name".into(),
                reason: format!("another skill is already named {:?}", s.name),
            });
        }
        v.push(Skill::User(Box::new(s)));
    }
    Ok(v)
}

/// The skills named in `names` (all built-ins when empty), in the order given.
pub fn select(all: &[Skill], names: &[String]) -> Result<Vec<Skill>, ImproveError> {
    if names.is_empty() {
        return Ok(all
            .iter()
            .filter(|s| !matches!(s, Skill::User(_)))
            .cloned()
            .collect());
    }
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|s| s.name() == n)
                .cloned()
                .ok_or_else(|| ImproveError::UnknownSkill(n.clone()))
        })
        .collect()
}

impl Skill {
    pub fn name(&self) -> &str {
        match self {
            Skill::Arithmetic(_) => "arithmetic",
            Skill::Instructions(_) => "instructions",
            Skill::Extract => "extract",
            Skill::Recall => "recall",
            Skill::User(u) => &u.name,
        }
    }

    pub fn description(&self) -> String {
        match self {
            Skill::Arithmetic(_) => "+, - and x of n-digit integers, asked in plain chat; exact answer".into(),
            Skill::Instructions(_) => {
                "a writing request with verifiable constraints (case, length, bullets, keywords, sections, ...)".into()
            }
            Skill::Extract => "text to a JSON object with given keys (name, age, city, date)".into(),
            Skill::Recall => {
                "facts the user states about themselves, then a question about one of them".into()
            }
            Skill::User(u) => {
                if u.description.is_empty() {
                    format!("user skill from {}", u.path.display())
                } else {
                    u.description.clone()
                }
            }
        }
    }

    /// Names of the difficulty levels, easiest first.
    pub fn levels(&self) -> Vec<String> {
        match self {
            Skill::Arithmetic(_) => arithmetic::LEVELS.iter().map(|l| l.name()).collect(),
            Skill::Instructions(_) => instructions::LEVELS
                .iter()
                .map(|n| format!("constraints-{n}"))
                .collect(),
            Skill::Extract => extract::LEVELS
                .iter()
                .map(|k| format!("keys-{}", k.len()))
                .collect(),
            Skill::Recall => recall::LEVELS
                .iter()
                .map(|n| format!("facts-{n}"))
                .collect(),
            Skill::User(_) => vec!["default".into()],
        }
    }

    /// Longest reply worth waiting for.
    pub fn max_tokens(&self) -> usize {
        match self {
            // Room for an answer worked column by column (3-digit addition: about 60 tokens).
            Skill::Arithmetic(_) => 96,
            Skill::Instructions(_) => 320,
            Skill::Extract => 96,
            Skill::Recall => 48,
            Skill::User(u) => u.max_tokens,
        }
    }

    /// Held-out tasks per level: `n`, but at most 30 % of a small problem space so that the
    /// training side keeps most problems.
    pub fn eval_size(&self, level: usize, n: usize) -> usize {
        match self {
            Skill::Arithmetic(_) => n.min((arithmetic::LEVELS[level].space() * 3 / 10) as usize),
            Skill::User(u) => (0..u.examples.len())
                .filter(|i| u.is_eval_example(*i))
                .count(),
            _ => n,
        }
    }

    /// A task of `level`. User skills draw one of their examples of the split.
    pub fn generate(
        &self,
        level: usize,
        rng: &mut Rng,
        split: Split,
    ) -> Result<Task, ImproveError> {
        Ok(match self {
            Skill::Arithmetic(proposed) => arithmetic::generate(level, rng, split, proposed),
            Skill::Instructions(proposed) => instructions::generate(level, rng, split, proposed),
            Skill::Extract => extract::generate(level, rng, split),
            Skill::Recall => recall::generate(level, rng, split),
            Skill::User(u) => {
                let idx: Vec<usize> = (0..u.examples.len())
                    .filter(|i| u.is_eval_example(*i) == (split == Split::Eval))
                    .collect();
                if idx.is_empty() {
                    return Err(ImproveError::Skill {
                        skill: u.name.clone(),
                        reason: format!(
                            "no {split:?} examples: a user skill needs at least 4 examples \
                             (every fourth is held out for evaluation)"
                        ),
                    });
                }
                u.task(*rng.pick(&idx))
            }
        })
    }

    pub fn verify(&self, task: &Task, reply: &str, cut_off: bool) -> Verdict {
        match (&task.check, self) {
            (Check::Integer { value }, _) => arithmetic::verify(task, *value, reply, cut_off),
            (Check::Constraints { list, request }, _) => {
                instructions::verify(task, list, request, reply, cut_off)
            }
            (Check::Fields { expected }, _) => extract::verify(task, expected, reply, cut_off),
            (Check::Recall { fact, answer }, _) => {
                recall::verify(task, fact, answer, reply, cut_off)
            }
            (Check::User { fields }, Skill::User(u)) => u.verify(task, fields, reply, cut_off),
            (Check::User { .. }, _) => Verdict {
                pass: false,
                score: 0.0,
                format_ok: false,
                degenerate: None,
            },
        }
    }

    /// A demonstration's answer for `task`: the reference answer, worked step by step where
    /// the skill knows how (multi-digit arithmetic, see [`arithmetic::worked`]).
    pub fn demonstration(&self, task: &Task) -> Option<String> {
        if let (Check::Integer { .. }, Some((a, op, b))) =
            (&task.check, arithmetic::operands(&task.key))
        {
            return Some(arithmetic::worked(a, op, b));
        }
        self.reference_answer(task)
    }

    /// The answer a program knows (arithmetic, extract) or the skill file gives, for few-shot
    /// demonstrations only — never a training target.
    pub fn reference_answer(&self, task: &Task) -> Option<String> {
        match (&task.check, self) {
            (Check::Integer { value }, _) => Some(value.to_string()),
            (Check::Fields { expected }, _) => {
                Some(serde_json::Value::Object(expected.clone()).to_string())
            }
            (Check::User { fields }, Skill::User(u)) => u.reference_answer(fields),
            (Check::Recall { answer, .. }, _) => Some(answer.clone()),
            _ => None,
        }
    }
}
