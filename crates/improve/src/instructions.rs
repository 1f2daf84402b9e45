//! The instructions skill: a writing request with verifiable constraints (case, length, bullets,
//! keywords, sections, …), stated in words in varied phrasings and each checked by program.
use crate::rng::Rng;
use crate::task::{degenerate, normalize, Check, Split, Task, Verdict};
use serde::{Deserialize, Serialize};

/// One checkable constraint on a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum Constraint {
    Lowercase,
    Uppercase,
    MinWords { n: usize },
    MaxWords { n: usize },
    Bullets { n: usize },
    Include { words: Vec<String> },
    Avoid { words: Vec<String> },
    NoCommas,
    EndWith { phrase: String },
    Title,
    Quoted,
    PostScript,
    Sections { n: usize },
    Paragraphs { n: usize },
    Letter { letter: char, n: usize },
    Placeholders { n: usize },
    RepeatRequest,
}

/// Which constraints cannot hold together (a lowercase reply has no "SECTION 1", …).
fn conflicts(a: &Constraint, b: &Constraint) -> bool {
    use Constraint::*;
    let k = |c: &Constraint| std::mem::discriminant(c);
    if k(a) == k(b) {
        return true;
    }
    let pair = |x: &Constraint, y: &Constraint| {
        matches!(
            (x, y),
            (
                Lowercase,
                Uppercase | Sections { .. } | PostScript | RepeatRequest
            ) | (
                Uppercase,
                Include { .. } | Avoid { .. } | EndWith { .. } | RepeatRequest
            ) | (MinWords { .. }, MaxWords { .. })
                | (Bullets { .. }, Sections { .. } | Paragraphs { .. })
                | (Sections { .. }, Paragraphs { .. })
                | (Quoted, EndWith { .. } | PostScript | Title | RepeatRequest)
                | (EndWith { .. }, PostScript)
        )
    };
    pair(a, b) || pair(b, a)
}

const KEYWORDS: &[&str] = &[
    "garden", "river", "coffee", "window", "music", "winter", "bicycle", "lantern", "market",
    "ocean", "library", "candle", "mountain", "kitchen", "letter", "train", "forest", "clock",
];
const ENDINGS: &[&str] = &[
    "Is there anything else I can help with?",
    "Thanks for reading.",
    "That is all for now.",
    "Let me know what you think.",
];

impl Constraint {
    fn sample(rng: &mut Rng) -> Constraint {
        let words = |rng: &mut Rng, n: usize| {
            let mut w: Vec<String> = Vec::new();
            while w.len() < n {
                let x = rng.pick(KEYWORDS).to_string();
                if !w.contains(&x) {
                    w.push(x);
                }
            }
            w
        };
        match rng.below(17) {
            0 => Constraint::Lowercase,
            1 => Constraint::Uppercase,
            2 => Constraint::MinWords {
                n: *rng.pick(&[50, 80, 120]),
            },
            3 => Constraint::MaxWords {
                n: *rng.pick(&[20, 40, 60]),
            },
            4 => Constraint::Bullets {
                n: rng.range(2, 5) as usize,
            },
            5 => {
                let n = rng.range(1, 2) as usize;
                Constraint::Include {
                    words: words(rng, n),
                }
            }
            6 => Constraint::Avoid {
                words: words(rng, 1),
            },
            7 => Constraint::NoCommas,
            8 => Constraint::EndWith {
                phrase: rng.pick(ENDINGS).to_string(),
            },
            9 => Constraint::Title,
            10 => Constraint::Quoted,
            11 => Constraint::PostScript,
            12 => Constraint::Sections {
                n: rng.range(2, 3) as usize,
            },
            13 => Constraint::Paragraphs {
                n: rng.range(2, 3) as usize,
            },
            14 => Constraint::Letter {
                letter: *rng.pick(&['e', 'a', 'o', 's', 't']),
                n: *rng.pick(&[5, 10, 15]),
            },
            15 => Constraint::Placeholders {
                n: rng.range(1, 3) as usize,
            },
            _ => Constraint::RepeatRequest,
        }
    }

    /// The constraint in words; `variant` picks one of several phrasings.
    fn describe(&self, variant: u64) -> String {
        let v = variant as usize;
        let pick = |xs: &[String]| xs[v % xs.len()].clone();
        match self {
            Constraint::Lowercase => pick(&[
                "Use only lowercase letters.".into(),
                "Write everything in lowercase, no capital letters at all.".into(),
                "Your entire reply should be in lowercase.".into(),
            ]),
            Constraint::Uppercase => pick(&[
                "Write your entire reply in capital letters.".into(),
                "Use ALL CAPS for the whole answer.".into(),
                "Every letter of your answer must be uppercase.".into(),
            ]),
            Constraint::MinWords { n } => pick(&[
                format!("Use at least {n} words."),
                format!("Make it no shorter than {n} words."),
                format!("The answer should have {n} words or more."),
            ]),
            Constraint::MaxWords { n } => pick(&[
                format!("Use at most {n} words."),
                format!("Keep it under {} words.", n + 1),
                format!("No more than {n} words, please."),
            ]),
            Constraint::Bullets { n } => pick(&[
                format!("Give exactly {n} bullet points, each starting with \"* \"."),
                format!("Format it as exactly {n} markdown bullet points (\"* \")."),
                format!("Answer with {n} bullet points using \"* \", no more and no less."),
            ]),
            Constraint::Include { words } => {
                let w = words.join("\" and \"");
                pick(&[
                    format!("Include the word \"{w}\"."),
                    format!("Make sure to mention \"{w}\"."),
                    format!("Use the keyword \"{w}\" somewhere."),
                ])
            }
            Constraint::Avoid { words } => pick(&[
                format!("Do not use the word \"{}\".", words[0]),
                format!("Avoid the word \"{}\" entirely.", words[0]),
                format!("Never say \"{}\".", words[0]),
            ]),
            Constraint::NoCommas => pick(&[
                "Do not use any commas.".into(),
                "Write it without a single comma.".into(),
                "Commas are not allowed in your reply.".into(),
            ]),
            Constraint::EndWith { phrase } => pick(&[
                format!("End your reply with the exact phrase \"{phrase}\"."),
                format!("Finish with exactly these words: \"{phrase}\""),
                format!("The last words must be \"{phrase}\"."),
            ]),
            Constraint::Title => pick(&[
                "Give it a title wrapped in double angular brackets, like <<my title>>.".into(),
                "Start with a title in the form <<title>>.".into(),
                "Include a title inside << and >>.".into(),
            ]),
            Constraint::Quoted => pick(&[
                "Wrap your entire reply in double quotation marks.".into(),
                "Put the whole answer inside double quotes.".into(),
                "Your reply must start and end with a double quote (\").".into(),
            ]),
            Constraint::PostScript => pick(&[
                "At the end, add a postscript starting with P.S.".into(),
                "Add a P.S. at the end.".into(),
                "Finish with a note that starts with \"P.S.\"".into(),
            ]),
            Constraint::Sections { n } => pick(&[
                format!("Divide it into {n} sections, each starting with \"SECTION X\" (X = 1, 2, …)."),
                format!("Use {n} parts, marked SECTION 1, SECTION 2 and so on."),
                format!("Organize the answer in exactly {n} sections labelled \"SECTION 1\", \"SECTION 2\", …"),
            ]),
            Constraint::Paragraphs { n } => pick(&[
                format!("Write exactly {n} paragraphs separated by the markdown divider ***."),
                format!("Use {n} paragraphs, with *** between them."),
                format!("Split it into {n} paragraphs; put *** on its own between paragraphs."),
            ]),
            Constraint::Letter { letter, n } => pick(&[
                format!("The letter \"{letter}\" should appear at least {n} times."),
                format!("Use the letter {letter} at least {n} times."),
                format!("Make sure \"{letter}\" occurs {n} or more times."),
            ]),
            Constraint::Placeholders { n } => pick(&[
                format!("Include at least {n} placeholders in square brackets, such as [name]."),
                format!("Leave {n} or more placeholders like [address] for me to fill in."),
                format!("Use at least {n} bracketed placeholders, e.g. [date]."),
            ]),
            Constraint::RepeatRequest => pick(&[
                "First repeat the request word for word without change, then give your answer."
                    .into(),
                "Begin by repeating my request exactly, then answer it.".into(),
                "Start your reply by restating the request verbatim, then respond.".into(),
            ]),
        }
    }

    /// Whether `reply` meets the constraint; `request` is the writing request.
    pub fn holds(&self, reply: &str, request: &str) -> bool {
        let words: Vec<&str> = reply.split_whitespace().collect();
        let lower = reply.to_lowercase();
        let has_word = |w: &str| {
            lower
                .split(|c: char| !c.is_alphanumeric())
                .any(|x| x == w.to_lowercase())
        };
        match self {
            Constraint::Lowercase => reply.chars().any(char::is_alphabetic) && lower == reply,
            Constraint::Uppercase => {
                reply.chars().any(char::is_alphabetic) && reply.to_uppercase() == reply
            }
            Constraint::MinWords { n } => words.len() >= *n,
            Constraint::MaxWords { n } => words.len() <= *n,
            Constraint::Bullets { n } => {
                reply
                    .lines()
                    .filter(|l| {
                        let t = l.trim_start();
                        t.starts_with("* ") || t.starts_with("- ")
                    })
                    .count()
                    == *n
            }
            Constraint::Include { words } => words.iter().all(|w| has_word(w)),
            Constraint::Avoid { words } => !words.iter().any(|w| has_word(w)),
            Constraint::NoCommas => !reply.contains(','),
            Constraint::EndWith { phrase } => reply.trim_end().ends_with(phrase.as_str()),
            Constraint::Title => reply
                .find("<<")
                .is_some_and(|i| reply[i + 2..].find(">>").is_some_and(|j| j > 0)),
            Constraint::Quoted => {
                let t = reply.trim();
                t.len() >= 2 && t.starts_with('"') && t.ends_with('"')
            }
            Constraint::PostScript => reply.contains("P.S.") || reply.contains("P.P.S"),
            Constraint::Sections { n } => {
                let found = reply
                    .lines()
                    .filter(|l| {
                        l.trim_start()
                            .trim_start_matches('#')
                            .trim()
                            .starts_with("SECTION ")
                    })
                    .count();
                found == *n
            }
            Constraint::Paragraphs { n } => {
                let parts: Vec<&str> = reply.split("***").map(str::trim).collect();
                parts.len() == *n && parts.iter().all(|p| !p.is_empty())
            }
            Constraint::Letter { letter, n } => lower.chars().filter(|c| c == letter).count() >= *n,
            Constraint::Placeholders { n } => {
                let mut count = 0;
                let mut rest = reply;
                while let Some(i) = rest.find('[') {
                    match rest[i..].find(']') {
                        Some(j) if j > 1 => {
                            count += 1;
                            rest = &rest[i + j..];
                        }
                        _ => break,
                    }
                }
                count >= *n
            }
            Constraint::RepeatRequest => normalize(reply).starts_with(&normalize(request)),
        }
    }
}

/// What to write about. The issue asks for requests the model proposes itself; these are the
/// program's seed list until that exists. Every fourth is held out.
const REQUESTS: &[&str] = &[
    "Write a short note to a neighbor about a lost cat.",
    "Describe a reusable water bottle for an online shop.",
    "Write a haiku about autumn leaves.",
    "Explain why the sky is blue to a ten-year-old.",
    "Write a thank-you message to a teacher.",
    "Give tips for a first job interview.",
    "Describe your ideal weekend.",
    "Write a short story about a robot learning to paint.",
    "Explain how to make a cup of tea.",
    "Write an invitation to a birthday picnic.",
    "Summarize the benefits of regular exercise.",
    "Write a review of a small neighborhood bakery.",
    "Describe a city at night.",
    "Write a motivational message for someone starting university.",
    "Explain what a budget is and why it helps.",
    "Write a poem about the sea.",
    "Give advice on keeping houseplants alive.",
    "Write an email asking a landlord to fix a leaking tap.",
    "Describe the taste of a fresh strawberry.",
    "Explain how bees make honey.",
    "Write a short speech for a friend's wedding.",
    "Describe a walk through a snowy forest.",
    "Write a product announcement for a new phone app.",
    "Explain the rules of tic-tac-toe.",
    "Write a letter to your future self.",
    "Give three reasons to learn a second language.",
    "Write a short biography of a fictional inventor.",
    "Describe how to plan a road trip.",
    "Write a limerick about a sleepy dog.",
    "Explain why sleep matters for health.",
    "Write an apology note for missing a meeting.",
    "Describe a busy train station in the morning.",
];

/// Levels: how many constraints a task carries.
pub const LEVELS: [usize; 3] = [1, 2, 3];

pub fn requests(split: Split) -> Vec<&'static str> {
    REQUESTS
        .iter()
        .enumerate()
        .filter(|(i, _)| (i % 4 == 3) == (split == Split::Eval))
        .map(|(_, r)| *r)
        .collect()
}

/// A task of `level`; training tasks draw their request from the seed list's training side
/// and `proposed` (the model's own requests), held-out tasks from the held-out side alone.
pub fn generate(level: usize, rng: &mut Rng, split: Split, proposed: &[String]) -> Task {
    let n = LEVELS[level.min(LEVELS.len() - 1)];
    let mut reqs = requests(split);
    if split == Split::Train {
        reqs.extend(proposed.iter().map(String::as_str));
    }
    let request = rng.pick(&reqs).to_string();
    let mut list: Vec<Constraint> = Vec::new();
    while list.len() < n {
        let c = Constraint::sample(rng);
        if !list.iter().any(|x| conflicts(x, &c)) {
            list.push(c);
        }
    }
    // Held-out tasks use the third phrasing of each constraint, training tasks the other two.
    let variant = |rng: &mut Rng| match split {
        Split::Eval => 2,
        Split::Train => rng.below(2),
    };
    let mut prompt = request.clone();
    for c in &list {
        prompt.push(' ');
        prompt.push_str(&c.describe(variant(rng)));
    }
    let key = format!(
        "{}|{}",
        normalize(&request),
        serde_json::to_string(&list).expect("constraints serialize")
    );
    Task {
        skill: "instructions".into(),
        level,
        sub: format!("constraints-{n}"),
        key,
        prompt,
        check: Check::Constraints { list, request },
    }
}

/// Prompt level: passes when every constraint holds on a non-degenerate reply; the score is
/// the fraction that hold.
pub fn verify(task: &Task, list: &[Constraint], request: &str, reply: &str, cut: bool) -> Verdict {
    let echo_ok = list.contains(&Constraint::RepeatRequest);
    if let Some(d) = degenerate(&task.prompt, reply, cut, echo_ok) {
        return Verdict::degenerate(d);
    }
    // Repeating the request is asked for; repeating the whole prompt (constraints and all), or
    // the request alone with nothing after it, is still no answer.
    if echo_ok && normalize(reply).contains(&normalize(&task.prompt)) {
        return Verdict::degenerate(crate::task::Degenerate::Echo);
    }
    let stripped = if echo_ok {
        normalize(reply).replacen(&normalize(request), "", 1)
    } else {
        normalize(reply)
    };
    if stripped.trim().is_empty() || (!echo_ok && stripped == normalize(request)) {
        return Verdict::degenerate(crate::task::Degenerate::Echo);
    }
    let held = list.iter().filter(|c| c.holds(reply, request)).count();
    Verdict {
        pass: held == list.len(),
        score: held as f32 / list.len().max(1) as f32,
        format_ok: true,
        degenerate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_check_what_they_say() {
        let r = "Write a poem about the sea.";
        assert!(Constraint::Lowercase.holds("the sea is wide", r));
        assert!(!Constraint::Lowercase.holds("The sea", r));
        assert!(Constraint::Uppercase.holds("THE SEA!", r));
        assert!(Constraint::Bullets { n: 2 }.holds("* one\n* two", r));
        assert!(!Constraint::Bullets { n: 3 }.holds("* one\n* two", r));
        assert!(Constraint::Include {
            words: vec!["river".into()]
        }
        .holds("A River runs.", r));
        assert!(Constraint::Avoid {
            words: vec!["river".into()]
        }
        .holds("riverside", r));
        assert!(Constraint::NoCommas.holds("no commas here", r));
        assert!(Constraint::Title.holds("<<Sea>>\nwaves", r));
        assert!(Constraint::Quoted.holds("\"waves\"", r));
        assert!(Constraint::Sections { n: 2 }.holds("SECTION 1\na\nSECTION 2\nb", r));
        assert!(Constraint::Paragraphs { n: 2 }.holds("a\n***\nb", r));
        assert!(Constraint::Letter { letter: 'e', n: 3 }.holds("eee", r));
        assert!(Constraint::Placeholders { n: 2 }.holds("[name] at [place]", r));
        assert!(Constraint::RepeatRequest.holds("Write a poem about the sea. Waves.", r));
        assert!(Constraint::MaxWords { n: 3 }.holds("one two three", r));
        assert!(Constraint::EndWith {
            phrase: "Thanks for reading.".into()
        }
        .holds("Hi. Thanks for reading.", r));
    }

    #[test]
    fn generated_tasks_have_compatible_constraints_and_echoes_fail() {
        let mut rng = Rng::new(7);
        for level in 0..3 {
            for _ in 0..100 {
                let t = generate(level, &mut rng, Split::Train, &[]);
                let Check::Constraints { list, request } = &t.check else {
                    panic!("instructions check constraints")
                };
                assert_eq!(list.len(), level + 1);
                for (i, a) in list.iter().enumerate() {
                    for b in &list[i + 1..] {
                        assert!(!conflicts(a, b));
                    }
                }
                let v = verify(&t, list, request, &t.prompt.to_lowercase(), false);
                assert!(!v.pass, "an echo passed {t:?}");
            }
        }
    }
}
