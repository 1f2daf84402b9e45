//! The extract skill: a short text in, a JSON object with the asked-for keys out, every value
//! checked against what the generator put in the text.
use crate::rng::Rng;
use crate::task::{degenerate, Check, Split, Task, Verdict};
use serde_json::{Map, Value};

pub(crate) const FIRST: &[&str] = &[
    "Maria", "James", "Aiko", "Pedro", "Fatima", "Lukas", "Chloe", "Omar", "Ingrid", "Rahul",
    "Sofia", "Kwame", "Elena", "Tomas", "Mei", "Daniel",
];
const LAST: &[&str] = &[
    "Lopez", "Smith", "Tanaka", "Silva", "Khan", "Weber", "Martin", "Haddad", "Berg", "Patel",
    "Rossi", "Mensah", "Petrova", "Novak", "Chen", "Okafor",
];
pub(crate) const CITIES: &[&str] = &[
    "Lisbon",
    "Toronto",
    "Osaka",
    "Nairobi",
    "Berlin",
    "Lima",
    "Oslo",
    "Cairo",
    "Melbourne",
    "Seoul",
    "Dublin",
    "Quito",
    "Prague",
    "Accra",
    "Madrid",
    "Hanoi",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Levels: the keys asked for.
pub const LEVELS: [&[&str]; 3] = [
    &["name", "city"],
    &["name", "age", "city"],
    &["name", "age", "city", "date"],
];

const TEXTS: &[&str] = &[
    "{name}, who is {age} years old, moved to {city} on {date}.",
    "On {date}, {name} ({age}) arrived in {city} for a new job.",
    "Our records show that {name} lives in {city}. {name} turned {age} and signed up on {date}.",
    "Meet {name}: {age}, based in {city}, member since {date}.",
    "After years abroad, {name} settled in {city}. At {age}, the first day there was {date}.",
    "The conference badge read {name}, {city}. Age: {age}. Registered {date}.",
    "{name} is a {age}-year-old engineer from {city}; the contract started on {date}.",
    "Last week's newsletter featured {name} of {city}, aged {age}, who joined on {date}.",
];
const ASKS: &[&str] = &[
    "Extract the following fields from the text as a JSON object with the keys {keys}:\n\n{text}",
    "Read this and give me JSON with keys {keys}.\n\n{text}",
    "From the text below, pull out {keys} and reply with only a JSON object.\n\n{text}",
    "Turn this into JSON ({keys}):\n{text}",
    "Please return a JSON object with {keys} for this text: {text}",
    "I need {keys} from this as JSON:\n\n{text}",
    "Parse the text and answer with JSON containing {keys}.\nText: {text}",
    "Text: {text}\nGive the {keys} as a JSON object.",
];

/// The entries of `xs` on `split`'s side: every fourth is held out.
pub(crate) fn split_of<'a>(xs: &'a [&'a str], split: Split) -> Vec<&'a str> {
    xs.iter()
        .enumerate()
        .filter(|(i, _)| (i % 4 == 3) == (split == Split::Eval))
        .map(|(_, x)| *x)
        .collect()
}

pub fn generate(level: usize, rng: &mut Rng, split: Split) -> Task {
    let keys = LEVELS[level.min(LEVELS.len() - 1)];
    let name = format!("{} {}", rng.pick(FIRST), rng.pick(LAST));
    let age = rng.range(19, 79);
    let city = rng.pick(CITIES).to_string();
    let (m, d, y) = (rng.range(1, 12), rng.range(1, 28), rng.range(1990, 2024));
    let date_iso = format!("{y:04}-{m:02}-{d:02}");
    let date_text = format!("{} {d}, {y}", MONTHS[(m - 1) as usize]);
    let texts = split_of(TEXTS, split);
    let text = rng
        .pick(&texts)
        .replace("{name}", &name)
        .replace("{age}", &age.to_string())
        .replace("{city}", &city)
        .replace("{date}", &date_text);
    let key_list = keys
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let asks = split_of(ASKS, split);
    let prompt = rng
        .pick(&asks)
        .replace("{keys}", &key_list)
        .replace("{text}", &text);
    let mut expected = Map::new();
    for k in keys {
        let v = match *k {
            "name" => Value::String(name.clone()),
            "age" => Value::from(age),
            "city" => Value::String(city.clone()),
            _ => Value::String(date_iso.clone()),
        };
        expected.insert(k.to_string(), v);
    }
    Task {
        skill: "extract".into(),
        level,
        sub: format!("keys-{}", keys.len()),
        key: format!("{name}|{age}|{city}|{date_iso}|{}", keys.len()),
        prompt,
        check: Check::Fields { expected },
    }
}

/// The first JSON object in `reply` (code fences and surrounding words allowed).
pub fn find_object(reply: &str) -> Option<Map<String, Value>> {
    let start = reply.find('{')?;
    let mut de = serde_json::Deserializer::from_str(&reply[start..]).into_iter::<Value>();
    match de.next() {
        Some(Ok(Value::Object(m))) => Some(m),
        _ => None,
    }
}

/// Dates are accepted as ISO `YYYY-MM-DD` or as written in the text; names and places case-
/// insensitively; numbers as numbers or numeric strings.
fn value_matches(key: &str, want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) => b.trim().parse::<f64>().ok() == a.as_f64(),
        (Value::String(a), Value::String(b)) => {
            let b = b.trim();
            if a.eq_ignore_ascii_case(b) {
                return true;
            }
            key == "date" && iso_of(b).as_deref() == Some(a.as_str())
        }
        _ => false,
    }
}

/// `March 5, 2021` → `2021-03-05`.
fn iso_of(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([' ', ',']).filter(|p| !p.is_empty()).collect();
    let [mon, day, year] = parts.as_slice() else {
        return None;
    };
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? + 1;
    let d: u32 = day.parse().ok()?;
    let y: u32 = year.parse().ok()?;
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

pub fn verify(task: &Task, expected: &Map<String, Value>, reply: &str, cut: bool) -> Verdict {
    if let Some(d) = degenerate(&task.prompt, reply, cut, false) {
        return Verdict::degenerate(d);
    }
    let Some(obj) = find_object(reply) else {
        return Verdict {
            pass: false,
            score: 0.0,
            format_ok: false,
            degenerate: None,
        };
    };
    let format_ok = obj.len() == expected.len() && expected.keys().all(|k| obj.contains_key(k));
    let right = expected
        .iter()
        .filter(|(k, v)| obj.get(*k).is_some_and(|g| value_matches(k, v, g)))
        .count();
    Verdict {
        pass: format_ok && right == expected.len(),
        score: right as f32 / expected.len().max(1) as f32,
        format_ok,
        degenerate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_checks_keys_and_values() {
        let mut rng = Rng::new(1);
        let t = generate(2, &mut rng, Split::Train);
        let Check::Fields { expected } = &t.check else {
            panic!("extract checks fields")
        };
        let good = format!("```json\n{}\n```", Value::Object(expected.clone()));
        assert!(verify(&t, expected, &good, false).pass);
        let mut wrong = expected.clone();
        wrong.insert("age".into(), Value::from(1));
        let v = verify(&t, expected, &Value::Object(wrong).to_string(), false);
        assert!(!v.pass && v.format_ok && v.score > 0.7);
        let v = verify(&t, expected, "no json here", false);
        assert!(!v.format_ok);
        assert_eq!(iso_of("March 5, 2021").as_deref(), Some("2021-03-05"));
    }
}
