//! Held-out evaluation sets: generated once from a fixed seed, written to disk with a content
//! hash, read back unchanged ever after, and kept disjoint from training by key.
use crate::rng::{fnv, Rng};
use crate::skill::Skill;
use crate::task::{Split, Task};
use crate::ImproveError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Bumped when a generator changes what a seed produces; old files stay as they were.
pub const VERSION: u32 = 1;
const SEED: u64 = 0x00e7_a15e_7001;
/// Held-out tasks per level when a file is first written.
pub const PER_LEVEL: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    skill: String,
    version: u32,
    seed: u64,
    per_level: usize,
    tasks: usize,
    hash: String,
}

/// One skill's held-out tasks.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub skill: String,
    pub version: u32,
    pub path: PathBuf,
    pub tasks: Vec<Task>,
    /// Hex FNV-1a of the task lines, as recorded in the file's header.
    pub hash: String,
}

fn hash_lines(lines: &[String]) -> String {
    format!("{:016x}", fnv(lines.join("\n").as_bytes()))
}

pub fn path_for(dir: &Path, skill: &Skill) -> PathBuf {
    let tag = match skill {
        // A user skill's held-out examples change with its file: key the set by its content.
        Skill::User(u) => format!(
            "-{:08x}",
            fnv(serde_json::to_string(&u.examples)
                .unwrap_or_default()
                .as_bytes()) as u32
        ),
        _ => String::new(),
    };
    dir.join(format!("{}{tag}-v{VERSION}.jsonl", skill.name()))
}

fn generate(skill: &Skill, per_level: usize) -> Result<Vec<Task>, ImproveError> {
    let mut tasks = Vec::new();
    for level in 0..skill.levels().len() {
        let want = skill.eval_size(level, per_level);
        let mut keys = HashSet::new();
        let mut rng = Rng::derive(SEED, skill.name(), level as u64);
        let mut tries = 0;
        while keys.len() < want && tries < 200 * want.max(1) {
            tries += 1;
            let t = skill.generate(level, &mut rng, Split::Eval)?;
            if keys.insert(t.key.clone()) {
                tasks.push(t);
            }
        }
    }
    Ok(tasks)
}

impl EvalSet {
    /// The skill's held-out set in `dir`: read if it exists (and checked against its recorded
    /// hash), else generated and written atomically.
    pub fn open(dir: &Path, skill: &Skill) -> Result<EvalSet, ImproveError> {
        let path = path_for(dir, skill);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::read(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tasks = generate(skill, PER_LEVEL)?;
                let lines: Vec<String> = tasks
                    .iter()
                    .map(|t| serde_json::to_string(t).expect("tasks serialize"))
                    .collect();
                let hash = hash_lines(&lines);
                let header = Header {
                    skill: skill.name().into(),
                    version: VERSION,
                    seed: SEED,
                    per_level: PER_LEVEL,
                    tasks: tasks.len(),
                    hash: hash.clone(),
                };
                let mut text = serde_json::to_string(&header).expect("headers serialize");
                for l in &lines {
                    text.push('\n');
                    text.push_str(l);
                }
                text.push('\n');
                std::fs::create_dir_all(dir).map_err(|e| ImproveError::io(dir, e))?;
                crate::registry::write_atomic(&path, text.as_bytes())?;
                Ok(EvalSet {
                    skill: skill.name().into(),
                    version: VERSION,
                    path,
                    tasks,
                    hash,
                })
            }
            Err(e) => Err(ImproveError::io(&path, e)),
        }
    }

    fn read(path: &Path, text: &str) -> Result<EvalSet, ImproveError> {
        let bad = |reason: String| ImproveError::BadSkill {
            path: path.to_path_buf(),
            field: "(held-out set)".into(),
            reason,
        };
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next().unwrap_or(""))
            .map_err(|e| bad(format!("header: {e}")))?;
        let body: Vec<String> = lines
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect();
        let found = hash_lines(&body);
        if found != header.hash || body.len() != header.tasks {
            return Err(ImproveError::EvalSetChanged {
                path: path.to_path_buf(),
                expected: header.hash,
                found,
            });
        }
        let tasks = body
            .iter()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| bad(format!("line {}: {e}", i + 2))))
            .collect::<Result<Vec<Task>, _>>()?;
        Ok(EvalSet {
            skill: header.skill,
            version: header.version,
            path: path.to_path_buf(),
            tasks,
            hash: header.hash,
        })
    }
}

/// Keys of every held-out task: what the generator skips and the trainer refuses.
#[derive(Debug, Default, Clone)]
pub struct HeldOut {
    keys: HashSet<(String, String)>,
}

impl HeldOut {
    pub fn new(sets: &[EvalSet]) -> Self {
        let keys = sets
            .iter()
            .flat_map(|s| s.tasks.iter().map(|t| (t.skill.clone(), t.key.clone())))
            .collect();
        HeldOut { keys }
    }

    pub fn contains(&self, t: &Task) -> bool {
        self.keys.contains(&(t.skill.clone(), t.key.clone()))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Errors if `t` is held out: called on every training example before training.
    pub fn check(&self, t: &Task) -> Result<(), ImproveError> {
        if self.contains(t) {
            return Err(ImproveError::Leak {
                skill: t.skill.clone(),
                key: t.key.clone(),
            });
        }
        Ok(())
    }

    /// A training task of `level` whose key is not held out.
    pub fn train_task(
        &self,
        skill: &Skill,
        level: usize,
        rng: &mut Rng,
    ) -> Result<Task, ImproveError> {
        for _ in 0..1000 {
            let t = skill.generate(level, rng, Split::Train)?;
            if !self.contains(&t) {
                return Ok(t);
            }
        }
        Err(ImproveError::Exhausted {
            skill: skill.name().into(),
            level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_read_back_and_tamper_evident() {
        let dir = std::env::temp_dir().join(format!("ad-evalset-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = EvalSet::open(&dir, &Skill::Arithmetic(Default::default())).unwrap();
        let b = EvalSet::open(&dir, &Skill::Arithmetic(Default::default())).unwrap();
        assert_eq!(a.tasks, b.tasks);
        assert_eq!(a.tasks.iter().filter(|t| t.sub == "add-1").count(), 30);
        let held = HeldOut::new(std::slice::from_ref(&a));
        let mut rng = Rng::new(5);
        for _ in 0..500 {
            let t = held
                .train_task(&Skill::Arithmetic(Default::default()), 0, &mut rng)
                .unwrap();
            assert!(held.check(&t).is_ok());
        }
        assert!(held.check(&a.tasks[0]).is_err());
        let text = std::fs::read_to_string(&a.path).unwrap();
        let (head, body) = text.split_once('\n').unwrap();
        std::fs::write(&a.path, format!("{head}\n{}", body.replacen('+', "-", 1))).unwrap();
        assert!(matches!(
            EvalSet::open(&dir, &Skill::Arithmetic(Default::default())),
            Err(ImproveError::EvalSetChanged { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
