//! The arithmetic skill: +, − and × of n-digit integers, asked the way people ask in chat,
//! checked against the exact answer.
use crate::rng::Rng;
use crate::task::{degenerate, Check, Split, Task, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
}

/// One difficulty level: an operation and the digits of each operand.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub op: Op,
    pub digits: (u32, u32),
}

/// Easiest first: the curriculum walks up this list.
pub const LEVELS: [Level; 11] = [
    Level {
        op: Op::Add,
        digits: (1, 1),
    },
    Level {
        op: Op::Sub,
        digits: (1, 1),
    },
    Level {
        op: Op::Mul,
        digits: (1, 1),
    },
    Level {
        op: Op::Add,
        digits: (2, 2),
    },
    Level {
        op: Op::Sub,
        digits: (2, 2),
    },
    Level {
        op: Op::Mul,
        digits: (2, 1),
    },
    Level {
        op: Op::Add,
        digits: (3, 3),
    },
    Level {
        op: Op::Sub,
        digits: (3, 3),
    },
    Level {
        op: Op::Mul,
        digits: (2, 2),
    },
    Level {
        op: Op::Add,
        digits: (4, 4),
    },
    Level {
        op: Op::Sub,
        digits: (4, 4),
    },
];

impl Level {
    pub fn name(&self) -> String {
        match (self.op, self.digits) {
            (Op::Add, (d, _)) => format!("add-{d}"),
            (Op::Sub, (d, _)) => format!("sub-{d}"),
            (Op::Mul, (a, b)) => format!("mul-{a}x{b}"),
        }
    }

    fn bounds(d: u32) -> (i64, i64) {
        if d == 1 {
            (0, 9)
        } else {
            (10i64.pow(d - 1), 10i64.pow(d) - 1)
        }
    }

    /// How many distinct problems the level has (subtraction keeps the result ≥ 0).
    pub fn space(&self) -> u64 {
        let (a0, a1) = Self::bounds(self.digits.0);
        let (b0, b1) = Self::bounds(self.digits.1);
        let (na, nb) = ((a1 - a0 + 1) as u64, (b1 - b0 + 1) as u64);
        match self.op {
            Op::Sub => na * (na + 1) / 2,
            _ => na * nb,
        }
    }

    fn draw(&self, rng: &mut Rng) -> (i64, i64) {
        let (a0, a1) = Self::bounds(self.digits.0);
        let (b0, b1) = Self::bounds(self.digits.1);
        let (a, b) = (rng.range(a0, a1), rng.range(b0, b1));
        match self.op {
            Op::Sub if a < b => (b, a),
            _ => (a, b),
        }
    }
}

const ADD: &[&str] = &[
    "What is {a} plus {b}?",
    "What's {a} + {b}?",
    "Can you add {a} and {b} for me?",
    "{a} + {b} = ?",
    "Please compute {a} + {b}.",
    "How much is {a} plus {b}?",
    "Add {a} to {b}.",
    "What do you get when you add {a} and {b}?",
    "Quick question: what's {a} plus {b}?",
    "Tell me the sum of {a} and {b}.",
    "I need the sum of {a} and {b}, please.",
    "Calculate {a}+{b}",
];
const SUB: &[&str] = &[
    "What is {a} minus {b}?",
    "What's {a} - {b}?",
    "Can you subtract {b} from {a}?",
    "{a} - {b} = ?",
    "Please compute {a} - {b}.",
    "How much is {a} minus {b}?",
    "Take {b} away from {a}.",
    "What do you get when you subtract {b} from {a}?",
    "Quick question: what's {a} minus {b}?",
    "Tell me the difference between {a} and {b}.",
    "I need {a} minus {b}, please.",
    "Calculate {a}-{b}",
];
const MUL: &[&str] = &[
    "What is {a} times {b}?",
    "What's {a} * {b}?",
    "Can you multiply {a} by {b}?",
    "{a} x {b} = ?",
    "Please compute {a} * {b}.",
    "How much is {a} times {b}?",
    "Multiply {a} and {b}.",
    "What do you get when you multiply {a} by {b}?",
    "Quick question: what's {a} times {b}?",
    "Tell me the product of {a} and {b}.",
    "I need {a} multiplied by {b}, please.",
    "Calculate {a}*{b}",
];

/// Phrasings of a split: every fourth is held out, so held-out tasks are asked in words the
/// training data never used.
pub fn phrasings(op: Op, split: Split) -> Vec<&'static str> {
    let all = match op {
        Op::Add => ADD,
        Op::Sub => SUB,
        Op::Mul => MUL,
    };
    all.iter()
        .enumerate()
        .filter(|(i, _)| (i % 4 == 3) == (split == Split::Eval))
        .map(|(_, p)| *p)
        .collect()
}

/// Phrasings the model proposed in a run (see [`crate::propose`]), by operation; practised
/// beside the program's training phrasings, never held out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proposed {
    pub add: Vec<String>,
    pub sub: Vec<String>,
    pub mul: Vec<String>,
}

impl Proposed {
    pub fn of(&self, op: Op) -> &[String] {
        match op {
            Op::Add => &self.add,
            Op::Sub => &self.sub,
            Op::Mul => &self.mul,
        }
    }

    pub fn of_mut(&mut self, op: Op) -> &mut Vec<String> {
        match op {
            Op::Add => &mut self.add,
            Op::Sub => &mut self.sub,
            Op::Mul => &mut self.mul,
        }
    }
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Add, Op::Sub, Op::Mul];

    pub fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
        }
    }

    /// What a list of this operation's phrasings is headed with.
    pub fn asking(self) -> &'static str {
        match self {
            Op::Add => "to add two numbers {a} and {b}",
            Op::Sub => "to subtract {b} from {a}",
            Op::Mul => "to multiply {a} by {b}",
        }
    }

    fn keywords(self) -> &'static [&'static str] {
        match self {
            Op::Add => &["plus", "+", "add", "sum", "total"],
            Op::Sub => &["minus", "-", "subtract", "difference", "take"],
            Op::Mul => &["times", "*", "multipl", "product", " x "],
        }
    }
}

/// Words that ask for something other than one operation on `{a}` and `{b}`.
/// (From the base's own proposals: "How many terms are in {a} + {b}?", "How many ways are there
/// to make {a} * {b}?", "How do you say {a} times {b}?", "Is {a} multiplied by {b}?".)
const OFF_TASK: &[&str] = &[
    "less", "more", "than", "divid", "/", "equal", "if ", "half", "double", "twice", "percent",
    "%", "square", "root", "then", "odd", "even", "bigger", "smaller", "greater", "how many",
    "ways", "term", " say", " see ", "a number", "how long", " use ",
];

/// A proposed phrasing the verifier can still check: `{a}` and `{b}` once each, no other
/// numbers or braces, the operation's words and no other operation's, and for subtraction `{a}`
/// first (the answer is `a − b`). `None` when it cannot be used.
pub fn clean_phrasing(line: &str, op: Op) -> Option<String> {
    let t = line.trim();
    let words = t.split_whitespace().count();
    let plain = t.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        && !t.chars().any(|c| c.is_ascii_digit());
    let once = |p: &str| t.matches(p).count() == 1;
    let braces = t.matches('{').count() == 2 && t.matches('}').count() == 2;
    if !(plain && (2..=20).contains(&words) && once("{a}") && once("{b}") && braces) {
        return None;
    }
    let lower = format!(
        " {} ",
        t.to_lowercase().replace("{a}", "A").replace("{b}", "B")
    );
    // A yes-or-no question has no number for an answer.
    if lower.starts_with(" is ") || lower.starts_with(" are ") {
        return None;
    }
    let has = |k: &&str| lower.contains(*k);
    let others = Op::ALL.into_iter().filter(|o| *o != op);
    let off = OFF_TASK.iter().any(has)
        || others
            .flat_map(|o| o.keywords().iter())
            .any(|k| op.keywords().iter().all(|m| !m.contains(k)) && has(k));
    if off || !op.keywords().iter().any(has) {
        return None;
    }
    if op == Op::Sub {
        let spaced = lower.replace(' ', "");
        let ordered = [
            "AminusB",
            "A-B",
            "BfromA",
            "BawayfromA",
            "differencebetweenAandB",
        ]
        .iter()
        .any(|p| spaced.contains(p));
        let reversed = ["BminusA", "B-A", "AfromB", "AawayfromB"]
            .iter()
            .any(|p| spaced.contains(p));
        if !ordered || reversed {
            return None;
        }
    }
    Some(t.to_string())
}

/// A task of `level`; training tasks are asked in the program's training phrasings and the
/// model's `proposed` ones, held-out tasks in the held-out phrasings alone.
pub fn generate(level: usize, rng: &mut Rng, split: Split, proposed: &Proposed) -> Task {
    let l = LEVELS[level];
    let (a, b) = l.draw(rng);
    let value = match l.op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
    };
    let sym = match l.op {
        Op::Add => '+',
        Op::Sub => '-',
        Op::Mul => '*',
    };
    let mut phr: Vec<&str> = phrasings(l.op, split);
    if split == Split::Train {
        phr.extend(proposed.of(l.op).iter().map(String::as_str));
    }
    let prompt = rng
        .pick(&phr)
        .replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string());
    Task {
        skill: "arithmetic".into(),
        level,
        sub: l.name(),
        key: format!("{a}{sym}{b}"),
        prompt,
        check: Check::Integer { value },
    }
}

/// The operands and operation of an arithmetic task, read back from its key (`47+38`).
pub fn operands(key: &str) -> Option<(i64, Op, i64)> {
    let at = key.find(['+', '-', '*'])?;
    let op = match &key[at..at + 1] {
        "+" => Op::Add,
        "-" => Op::Sub,
        _ => Op::Mul,
    };
    Some((key[..at].parse().ok()?, op, key[at + 1..].parse().ok()?))
}

/// The nonzero place values of `n`, largest first (`358` → 300, 50, 8).
fn places(n: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut p = 1;
    while p <= n {
        let d = n / p % 10;
        if d > 0 {
            out.push(d * p);
        }
        p *= 10;
    }
    out.reverse();
    out
}

/// A demonstration's answer, worked in steps when an operand has more than one digit: the
/// second operand is added or subtracted one place value at a time (47 + 38: 47 + 30 = 77,
/// 77 + 8 = 85), and a product is split into the first operand's place values times the
/// second (or, with two multi-digit operands, the first times each place of the second), then
/// summed; the whole answer comes last, as the verifier wants it. A one-digit problem gets the
/// bare number. Steps by place value measured better than bare answers and than column-wise
/// carrying on the base (see the README); they are only ever demonstrations of a scaffold: the
/// training targets are the model's own replies that imitate them and reach the right answer.
pub fn worked(a: i64, op: Op, b: i64) -> String {
    let value = match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
    };
    if a < 10 && b < 10 {
        return value.to_string();
    }
    let mut steps = Vec::new();
    let whole;
    match op {
        Op::Add | Op::Sub => {
            let (sym, sign) = if op == Op::Add { ('+', 1) } else { ('-', -1) };
            whole = format!("{a} {sym} {b} = {value}");
            let mut acc = a;
            for part in places(b) {
                let next = acc + sign * part;
                steps.push(format!("{acc} {sym} {part} = {next}"));
                acc = next;
            }
        }
        Op::Mul => {
            whole = format!("{a} × {b} = {value}");
            let products: Vec<(i64, i64, i64)> = if b < 10 {
                places(a).into_iter().map(|p| (p, b, p * b)).collect()
            } else {
                places(b).into_iter().map(|p| (a, p, a * p)).collect()
            };
            for (x, y, p) in &products {
                steps.push(format!("{x} × {y} = {p}"));
            }
            if products.len() > 1 {
                let sum: Vec<String> = products.iter().map(|(_, _, p)| p.to_string()).collect();
                steps.push(format!("{} = {value}", sum.join(" + ")));
            }
        }
    }
    if steps.len() <= 1 {
        return format!("{whole}.");
    }
    format!("{}. So {whole}.", steps.join(". "))
}

/// Every integer in `s`, with thousands separators (`1,234`) and signs read.
pub fn integers(s: &str) -> Vec<i64> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            let mut digits = String::new();
            while i < b.len() {
                if b[i].is_ascii_digit() {
                    digits.push(b[i] as char);
                    i += 1;
                } else if b[i] == b','
                    && i + 3 < b.len() + 1
                    && b.get(i + 1..i + 4)
                        .is_some_and(|g| g.iter().all(u8::is_ascii_digit))
                    && !b.get(i + 4).is_some_and(u8::is_ascii_digit)
                {
                    i += 1;
                } else {
                    break;
                }
            }
            let neg = start > 0
                && matches!(b[start - 1], b'-')
                && (start < 2 || !b[start - 2].is_ascii_alphanumeric());
            if let Ok(v) = digits.parse::<i64>() {
                out.push(if neg { -v } else { v });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `reply` ends with a number: nothing after its last digit but punctuation, closing
/// marks and spaces.
fn ends_with_number(reply: &str) -> bool {
    reply
        .trim_end_matches(|c: char| c.is_whitespace() || ".!?)]\"'*".contains(c))
        .ends_with(|c: char| c.is_ascii_digit())
}

/// Words of prose a right reply may hold besides its equations ("The answer is", "So",
/// "Sure, the sum of 4 and 5 is"): more is an explanation, which must then be equations.
const MAX_PROSE_WORDS: usize = 8;

/// Whether the reply's working holds: every equation in it (`a + b = c`, `a times b is c`, …)
/// is true, and what is not an equation is a few words at most. The answer can be guessed
/// where an operand is 0 or 1, and a reply that reaches it through nonsense ("9 does not
/// include 0 because 0 includes 9 … So 9.") would pass on its last number alone; trained on,
/// it teaches the nonsense.
fn working_holds(reply: &str) -> bool {
    static EQ: std::sync::OnceLock<fancy_regex::Regex> = std::sync::OnceLock::new();
    let eq = EQ.get_or_init(|| {
        fancy_regex::Regex::new(
            r"(\d[\d,]*)\s*(\+|-|−|×|\*|x|plus|minus|times)\s*(\d[\d,]*)\s*(?:=|is|equals)\s*(-?\d[\d,]*)",
        )
        .expect("a valid pattern")
    });
    let num = |m: Option<fancy_regex::Match>| -> Option<i128> {
        m?.as_str().replace(',', "").parse().ok()
    };
    let mut rest = String::new();
    let mut last = 0;
    for c in eq.captures_iter(reply) {
        let Ok(c) = c else { return false };
        let (Some(a), Some(b), Some(r)) = (num(c.get(1)), num(c.get(3)), num(c.get(4))) else {
            return false;
        };
        let v = match c.get(2).map_or("", |m| m.as_str()) {
            "+" | "plus" => a + b,
            "-" | "−" | "minus" => a - b,
            _ => a * b,
        };
        if v != r {
            return false;
        }
        let whole = c.get(0).expect("a match has its whole");
        rest.push_str(&reply[last..whole.start()]);
        rest.push(' ');
        last = whole.end();
    }
    rest.push_str(&reply[last..]);
    let prose = rest
        .split(|c: char| !c.is_alphabetic() && c != '\'')
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    prose <= MAX_PROSE_WORDS
}

/// Right when the reply ends with the answer as its last number ("9", "4 + 5 = 9.", "The sum
/// is 9.") and its working holds (see [`working_holds`]); text after it ("9 help me", "9
/// because …") is wrong, as training on it would teach the assistant to run on after
/// answering. Well-formed when it has a number at all.
pub fn verify(task: &Task, value: i64, reply: &str, cut_off: bool) -> Verdict {
    if let Some(d) = degenerate(&task.prompt, reply, cut_off, false) {
        return Verdict::degenerate(d);
    }
    let nums = integers(reply);
    let pass = nums.last() == Some(&value) && ends_with_number(reply) && working_holds(reply);
    Verdict {
        pass,
        score: pass as u8 as f32,
        format_ok: !nums.is_empty(),
        degenerate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_answer_needs_working_that_holds() {
        let t = Task {
            skill: "arithmetic".into(),
            level: 3,
            sub: "add-2".into(),
            key: "47+38".into(),
            prompt: "What is 47 plus 38?".into(),
            check: Check::Integer { value: 85 },
        };
        let pass = |r: &str| verify(&t, 85, r, false).pass;
        assert!(pass("85"));
        assert!(pass("The answer is 85."));
        assert!(pass("Sure! 47 plus 38 equals 85."));
        assert!(pass("47 + 30 = 77. 77 + 8 = 85. So 47 + 38 = 85."));
        assert!(pass("1,000 - 915 is 85"));
        // A false step, or an explanation that is not equations, is no working.
        assert!(!pass("47 + 30 = 78. 78 + 8 = 85."));
        assert!(!pass(
            "85 does not include 0 because 0 includes 85 and is a negative number. So 85"
        ));
        // Still well-formed: it answers with a number.
        assert!(verify(&t, 85, "47 + 30 = 78. 78 + 8 = 85.", false).format_ok);
    }

    #[test]
    fn integers_read_signs_and_separators() {
        assert_eq!(integers("4 + 5 = 9"), vec![4, 5, 9]);
        assert_eq!(integers("It is 1,234."), vec![1234]);
        assert_eq!(integers("The answer is -12"), vec![-12]);
        assert_eq!(integers("12-5 is 7"), vec![12, 5, 7]);
        assert_eq!(integers("none"), Vec::<i64>::new());
    }

    #[test]
    fn levels_generate_in_range_with_split_phrasings() {
        let mut rng = Rng::new(3);
        for (i, l) in LEVELS.iter().enumerate() {
            for _ in 0..50 {
                let t = generate(i, &mut rng, Split::Train, &Proposed::default());
                let Check::Integer { value } = t.check else {
                    panic!("arithmetic checks integers")
                };
                assert!(value >= 0, "{t:?}");
                assert!(t.prompt.chars().any(|c| c.is_ascii_digit()));
                assert_eq!(t.sub, l.name());
            }
        }
        let tr = phrasings(Op::Add, Split::Train);
        let ev = phrasings(Op::Add, Split::Eval);
        assert!(tr.iter().all(|p| !ev.contains(p)));
        assert_eq!(tr.len() + ev.len(), ADD.len());
        assert_eq!(LEVELS[0].space(), 100);
        assert_eq!(LEVELS[1].space(), 55);
    }

    #[test]
    fn proposed_phrasings_must_stay_checkable() {
        let ok = |l: &str, op| clean_phrasing(l, op).is_some();
        assert!(ok("What is the sum of {a} and {b}?", Op::Add));
        assert!(ok("Add {a} + {b} = ?", Op::Add));
        assert!(ok("How much is {a} minus {b}?", Op::Sub));
        assert!(ok("Please take {b} away from {a}.", Op::Sub));
        assert!(ok("Can you work out {a} x {b}?", Op::Mul));
        assert!(
            !ok("Tell me the sum of {a} and {b} minus 4.", Op::Add),
            "a number"
        );
        assert!(
            !ok("How can I know if {a} + b is small?", Op::Add),
            "one placeholder"
        );
        assert!(!ok("Tell me how many times is {a} less than {b}.", Op::Mul));
        assert!(!ok("What is {a} plus {b} times {a}?", Op::Add), "twice");
        assert!(!ok("What is {b} minus {a}?", Op::Sub), "reversed");
        assert!(!ok("Subtract {a} from {b}.", Op::Sub), "reversed");
        assert!(!ok("What is {a} plus {b}?", Op::Mul), "another operation");
        assert!(!ok("Say {a} and {b}.", Op::Add), "no operation");
        for other_question in [
            "How many terms are in {a} + {b}?",
            "How many ways are there to make {a} * {b}?",
            "How do you say {a} times {b}?",
            "Is {a} multiplied by {b}?",
            "I need a number to multiply by {a} times {b}.",
            "Add {a} to {b} and see how it changes.",
        ] {
            let op = if other_question.contains("Add") || other_question.contains('+') {
                Op::Add
            } else {
                Op::Mul
            };
            assert!(!ok(other_question, op), "{other_question}");
        }
        assert!(ok("I want to know the product of {a} and {b}.", Op::Mul));
        assert!(ok("How can I find {a} minus {b}?", Op::Sub));
    }

    #[test]
    fn worked_answers_are_right_and_end_with_the_answer() {
        assert_eq!(worked(4, Op::Add, 5), "9");
        assert_eq!(
            worked(47, Op::Add, 38),
            "47 + 30 = 77. 77 + 8 = 85. So 47 + 38 = 85."
        );
        assert_eq!(
            worked(72, Op::Sub, 38),
            "72 - 30 = 42. 42 - 8 = 34. So 72 - 38 = 34."
        );
        assert_eq!(worked(72, Op::Sub, 40), "72 - 40 = 32.");
        assert_eq!(
            worked(47, Op::Mul, 6),
            "40 × 6 = 240. 7 × 6 = 42. 240 + 42 = 282. So 47 × 6 = 282."
        );
        assert_eq!(
            worked(47, Op::Mul, 36),
            "47 × 30 = 1410. 47 × 6 = 282. 1410 + 282 = 1692. So 47 × 36 = 1692."
        );
        assert_eq!(operands("47-38"), Some((47, Op::Sub, 38)));
        let mut rng = Rng::new(5);
        for level in 0..LEVELS.len() {
            for _ in 0..200 {
                let t = generate(level, &mut rng, Split::Train, &Proposed::default());
                let Check::Integer { value } = t.check else {
                    panic!("arithmetic checks integers")
                };
                let (a, op, b) = operands(&t.key).expect("keys hold operands");
                let w = worked(a, op, b);
                assert!(verify(&t, value, &w, false).pass, "{} -> {w}", t.key);
            }
        }
    }

    #[test]
    fn verifier_reads_the_last_number() {
        let t = Task {
            skill: "arithmetic".into(),
            level: 0,
            sub: "add-1".into(),
            key: "4+5".into(),
            prompt: "What is 4 plus 5?".into(),
            check: Check::Integer { value: 9 },
        };
        assert!(verify(&t, 9, "9", false).pass);
        assert!(verify(&t, 9, "4 + 5 = 9.", false).pass);
        assert!(verify(&t, 9, "The sum of 4 and 5 is **9**.", false).pass);
        for runs_on in ["9 help me", "9 because 9 is odd.", "4 + 5 = 9 Thank you"] {
            let v = verify(&t, 9, runs_on, false);
            assert!(!v.pass && v.format_ok, "{runs_on}");
        }
        let v = verify(&t, 9, "It is 8.", false);
        assert!(!v.pass && v.format_ok);
        let v = verify(&t, 9, "I do not know.", false);
        assert!(!v.pass && !v.format_ok);
        assert!(verify(&t, 9, "What is 4 plus 5? 9", false)
            .degenerate
            .is_some());
    }
}
