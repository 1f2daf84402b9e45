//! The recall skill: the user states a few facts about themselves in a chat turn and asks about
//! one of them; the reply must name that fact's value and no other value of its kind. It measures
//! what arithmetic practice can erode unseen, answering from what the conversation holds (the
//! use chat makes of recalled memories), so it serves as a guard skill.
use crate::extract;
use crate::rng::Rng;
use crate::task::{degenerate, Check, Split, Task, Verdict};

/// One kind of fact: how the user states it, how they ask about it, and its possible values.
struct Kind {
    name: &'static str,
    state: &'static [&'static str],
    ask: &'static [&'static str],
    values: &'static [&'static str],
}

const KINDS: &[Kind] = &[
    Kind {
        name: "name",
        state: &["My name is {}.", "I'm {}, by the way.", "Call me {}."],
        ask: &[
            "What is my name?",
            "Do you remember my name?",
            "What am I called?",
            "What name did I give you?",
        ],
        values: extract::FIRST,
    },
    Kind {
        name: "city",
        state: &[
            "I live in {}.",
            "My home is in {}.",
            "I moved to {} last year.",
        ],
        ask: &[
            "Which city do I live in?",
            "Where do I live?",
            "What city is my home in?",
            "In which city is my home?",
        ],
        values: extract::CITIES,
    },
    Kind {
        name: "job",
        state: &["I work as a {}.", "I'm a {} by trade.", "My job: {}."],
        ask: &[
            "What do I do for a living?",
            "What is my job?",
            "What is my profession?",
            "What work do I do?",
        ],
        values: &[
            "nurse",
            "plumber",
            "teacher",
            "pilot",
            "baker",
            "lawyer",
            "chemist",
            "carpenter",
            "dentist",
            "translator",
            "farmer",
            "librarian",
            "architect",
            "journalist",
            "tailor",
            "electrician",
        ],
    },
    Kind {
        name: "color",
        state: &[
            "My favourite color is {}.",
            "I like {} best of all colors.",
            "{} is my color.",
        ],
        ask: &[
            "Which color do I like best?",
            "What is my favourite color?",
            "What color do I love?",
            "Which color is mine?",
        ],
        values: &[
            "red",
            "blue",
            "green",
            "yellow",
            "purple",
            "orange",
            "lilac",
            "silver",
            "maroon",
            "lavender",
            "pink",
            "beige",
            "turquoise",
            "indigo",
            "crimson",
            "amber",
        ],
    },
    Kind {
        name: "pet",
        state: &["I have a pet {}.", "I live with my {}.", "My pet is a {}."],
        ask: &[
            "What pet do I have?",
            "What animal do I live with?",
            "What kind of pet is mine?",
            "Which animal is my pet?",
        ],
        values: &[
            "cat",
            "dog",
            "parrot",
            "rabbit",
            "hamster",
            "turtle",
            "goldfish",
            "ferret",
            "iguana",
            "canary",
            "hedgehog",
            "gecko",
            "pony",
            "goat",
            "snake",
            "chinchilla",
        ],
    },
];

/// Levels: how many facts the turn states (the asked one among them).
pub const LEVELS: [usize; 3] = [1, 3, 5];

// Every fourth value and question is held out (`extract::split_of`): evaluation asks about
// values the training side never states, in words it never asks with (each list has a multiple
// of 4 entries).
use extract::split_of;

pub fn generate(level: usize, rng: &mut Rng, split: Split) -> Task {
    let n = LEVELS[level.min(LEVELS.len() - 1)];
    // `n` distinct kinds, in random order; one of them is asked about.
    let mut kinds: Vec<usize> = (0..KINDS.len()).collect();
    rng.shuffle(&mut kinds);
    kinds.truncate(n);
    let asked = kinds[rng.range(0, n as i64 - 1) as usize];
    let mut facts = Vec::new();
    let mut answer = String::new();
    for &k in &kinds {
        let kind = &KINDS[k];
        let value = *rng.pick(&split_of(kind.values, split));
        let state = *rng.pick(kind.state);
        let mut fact = state.replacen("{}", value, 1);
        if let Some(c) = fact.get(..1) {
            fact = c.to_uppercase() + &fact[1..];
        }
        facts.push(fact);
        if k == asked {
            answer = value.to_string();
        }
    }
    let kind = &KINDS[asked];
    let question = *rng.pick(&split_of(kind.ask, split));
    let prompt = format!("{} {question}", facts.join(" "));
    Task {
        skill: "recall".into(),
        level,
        sub: format!("facts-{n}"),
        key: prompt.clone(),
        prompt,
        check: Check::Recall {
            fact: kind.name.to_string(),
            answer,
        },
    }
}

/// Whether `word` is in `text` as a whole word, case aside.
fn has_word(text: &str, word: &str) -> bool {
    let lower = text.to_lowercase();
    let w = word.to_lowercase();
    lower.split(|c: char| !c.is_alphanumeric()).any(|t| t == w)
}

/// Right when the reply names the asked value, no other value of its kind (a reply listing
/// every city is no answer) and none of the other facts the user stated (a reply that repeats
/// them all is no answer either); in format when it is short (at most 20 words).
pub fn verify(task: &Task, kind: &str, answer: &str, reply: &str, cut: bool) -> Verdict {
    if let Some(d) = degenerate(&task.prompt, reply, cut, false) {
        return Verdict::degenerate(d);
    }
    let others = KINDS
        .iter()
        .flat_map(|k| k.values.iter().map(move |v| (k.name, v)))
        .filter(|(k, v)| {
            !v.eq_ignore_ascii_case(answer) && (*k == kind || has_word(&task.prompt, v))
        })
        .any(|(_, v)| has_word(reply, v));
    let pass = has_word(reply, answer) && !others;
    Verdict {
        pass,
        score: pass as u8 as f32,
        format_ok: reply.split_whitespace().count() <= 20,
        degenerate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_asks_about_a_stated_fact_and_checks_the_value() {
        let mut rng = Rng::new(3);
        for level in 0..LEVELS.len() {
            let t = generate(level, &mut rng, Split::Train);
            let Check::Recall { fact: kind, answer } = &t.check else {
                panic!("recall checks a value")
            };
            assert!(t.prompt.contains(answer.as_str()), "{}", t.prompt);
            assert!(t.prompt.ends_with('?'));
            let good = format!("You said {answer}.");
            assert!(verify(&t, kind, answer, &good, false).pass, "{good}");
            let v = verify(&t, kind, answer, "I don't know.", false);
            assert!(!v.pass && v.format_ok);
        }
        // Another value of the same kind beside the right one is no answer.
        let t = generate(0, &mut rng, Split::Train);
        let Check::Recall { fact: kind, answer } = &t.check else {
            panic!()
        };
        let other = KINDS
            .iter()
            .find(|k| k.name == kind)
            .unwrap()
            .values
            .iter()
            .find(|v| **v != answer)
            .unwrap();
        assert!(!verify(&t, kind, answer, &format!("{answer} or {other}"), false).pass);
        for level in 0..LEVELS.len() {
            generate(level, &mut rng, Split::Eval);
        }
        // Repeating every stated fact is no answer.
        let t = generate(2, &mut rng, Split::Train);
        let Check::Recall { fact: kind, answer } = &t.check else {
            panic!()
        };
        let facts = t.prompt.rsplit_once(". ").map_or("", |(f, _)| f);
        assert!(!verify(&t, kind, answer, facts, false).pass, "{facts}");
        // Every value is one word, which is what `has_word` can find.
        for k in KINDS {
            assert_eq!(k.values.len() % 4, 0);
            assert_eq!(k.ask.len() % 4, 0);
            for v in k.values {
                assert!(v.chars().all(char::is_alphanumeric), "{v}");
            }
        }
        // Held-out values never appear on the training side.
        let mut rng = Rng::new(9);
        for _ in 0..200 {
            let t = generate(2, &mut rng, Split::Train);
            let Check::Recall { answer, .. } = &t.check else {
                panic!()
            };
            for k in KINDS {
                for v in split_of(k.values, Split::Eval) {
                    assert_ne!(answer, v);
                }
            }
        }
    }
}
