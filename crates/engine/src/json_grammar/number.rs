//! JSON numbers byte by byte, with `minimum`/`maximum` (inclusive or exclusive) enforced on every
//! prefix: a digit is accepted only if some completion of the number still lies in range, so the
//! matcher never walks into a number it cannot finish.
use serde_json::Number;

/// Decimals a bounded `number` may have; bounds are kept in units of 10^-FRAC.
const FRAC: u32 = 6;
/// Integer digits a bounded number may have (keeps every value inside an `i128`).
const MAX_INT_DIGITS: u32 = 18;

/// Inclusive range of values, in units of 10^-`frac`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bounds {
    lo: Option<i128>,
    hi: Option<i128>,
    /// 0 for integers, [`FRAC`] for numbers.
    frac: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NumSpec {
    pub integer: bool,
    /// `None`: any JSON number (exponents too); `Some`: plain decimals within range.
    pub bounds: Option<Bounds>,
}

/// A bound as a decimal string split at the point: the exact value the schema wrote (an `f64`
/// prints as its shortest round-trip decimal, never in exponent form).
fn decimal(n: &Number) -> (bool, String, String) {
    let s = match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) => format!("{f}"),
        _ => "0".into(),
    };
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, s),
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (s, String::new()),
    };
    (neg, int, frac)
}

/// `n` × 10^`frac`, rounded down (`up == false`) or up; `None` beyond what the matcher represents.
fn scaled(n: &Number, frac: u32, up: bool) -> Option<i128> {
    let (neg, int, digits) = decimal(n);
    let int = int.trim_start_matches('0');
    if int.len() > (MAX_INT_DIGITS + 2) as usize {
        return None;
    }
    let mut v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut rest_nonzero = false;
    for (i, c) in digits.bytes().enumerate() {
        let d = (c - b'0') as i128;
        if (i as u32) < frac {
            continue;
        }
        rest_nonzero |= d != 0;
    }
    for i in 0..frac as usize {
        let d = digits.as_bytes().get(i).map_or(0, |c| (c - b'0') as i128);
        v = v * 10 + d;
    }
    // Truncation moved the magnitude towards zero; round in the direction asked.
    Some(match (neg, up) {
        (false, false) => v,
        (false, true) => v + rest_nonzero as i128,
        (true, false) => -v - rest_nonzero as i128,
        (true, true) => -v,
    })
}

/// Largest magnitude a bounded number can have, in units of 10^-`frac`.
fn max_mag(frac: u32) -> i128 {
    10i128.pow(MAX_INT_DIGITS + frac) - 1
}

impl Bounds {
    /// Bounds from a schema's keywords; `Err` names what makes the range empty or unusable.
    pub fn new(
        integer: bool,
        min: Option<(&Number, bool)>,
        max: Option<(&Number, bool)>,
    ) -> Result<Bounds, String> {
        let frac = if integer { 0 } else { FRAC };
        let limit = max_mag(frac);
        let lo = match min {
            None => None,
            // Exclusive: the next representable value above.
            Some((n, excl)) => match scaled(n, frac, !excl) {
                Some(v) => Some(if excl { v + 1 } else { v }),
                None if decimal(n).0 => None,
                None => return Err("`minimum` is too large".into()),
            },
        };
        let hi = match max {
            None => None,
            Some((n, excl)) => match scaled(n, frac, excl) {
                Some(v) => Some(if excl { v - 1 } else { v }),
                None if !decimal(n).0 => None,
                None => return Err("`maximum` is too small".into()),
            },
        };
        if lo.is_some_and(|l| l > limit) || hi.is_some_and(|h| h < -limit) {
            return Err("the range lies beyond 18 integer digits".into());
        }
        if let (Some(l), Some(h)) = (lo, hi) {
            if l > h {
                return Err(format!(
                    "no {} satisfies `minimum` and `maximum`",
                    if integer {
                        "integer"
                    } else {
                        "number with 6 decimals"
                    }
                ));
            }
        }
        Ok(Bounds { lo, hi, frac })
    }

    fn meets(&self, a: i128, b: i128) -> bool {
        self.lo.is_none_or(|l| b >= l) && self.hi.is_none_or(|h| a <= h) && a <= b
    }
}

/// Where in the grammar of a number the bytes so far leave it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

/// Matching state of one number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NumState {
    spec: NumSpec,
    stage: Stage,
    neg: bool,
    /// The digits so far, for range checks (bounded numbers only).
    int: i128,
    int_digits: u32,
    frac: i128,
    frac_digits: u32,
}

impl NumState {
    pub fn new(spec: NumSpec) -> Self {
        NumState {
            spec,
            stage: Stage::Start,
            neg: false,
            int: 0,
            int_digits: 0,
            frac: 0,
            frac_digits: 0,
        }
    }

    /// The bytes so far form a whole number that satisfies the bounds.
    pub fn complete(&self) -> bool {
        let whole = matches!(
            self.stage,
            Stage::Zero | Stage::Int | Stage::Frac | Stage::ExpDigits
        );
        whole
            && self.spec.bounds.is_none_or(|b| {
                let v = self.magnitude(&b);
                let v = if self.neg { -v } else { v };
                b.meets(v, v)
            })
    }

    fn magnitude(&self, b: &Bounds) -> i128 {
        self.int * 10i128.pow(b.frac) + self.frac * 10i128.pow(b.frac - self.frac_digits)
    }

    /// Whether some completion of the bytes so far lies within `b`.
    fn feasible(&self, b: &Bounds) -> bool {
        let scale = 10i128.pow(b.frac);
        let fits = |lo: i128, hi: i128| {
            if self.neg {
                b.meets(-hi, -lo)
            } else {
                b.meets(lo, hi)
            }
        };
        match self.stage {
            Stage::Start | Stage::Minus => fits(0, max_mag(b.frac)),
            Stage::Zero => fits(0, scale - 1),
            Stage::Int => (0..=MAX_INT_DIGITS - self.int_digits).any(|k| {
                let p = 10i128.pow(k);
                fits(self.int * p * scale, (self.int + 1) * p * scale - 1)
            }),
            Stage::Dot | Stage::Frac => {
                let q = self.magnitude(b);
                fits(q, q + 10i128.pow(b.frac - self.frac_digits) - 1)
            }
            Stage::Exp | Stage::ExpSign | Stage::ExpDigits => false,
        }
    }

    /// Takes byte `c`; `false` (state unchanged) when it cannot continue a number in range.
    pub fn next(&mut self, c: u8) -> bool {
        let integer = self.spec.integer;
        let bounded = self.spec.bounds.is_some();
        let mut n = *self;
        let digit = c.wrapping_sub(b'0') as i128;
        n.stage = match (self.stage, c) {
            (Stage::Start, b'-') => {
                n.neg = true;
                Stage::Minus
            }
            (Stage::Start | Stage::Minus, b'0') => {
                n.int_digits = 1;
                Stage::Zero
            }
            (Stage::Start | Stage::Minus | Stage::Int, b'0'..=b'9') => {
                if bounded && self.int_digits >= MAX_INT_DIGITS {
                    return false;
                }
                n.int = self.int * 10 + digit;
                n.int_digits += 1;
                Stage::Int
            }
            (Stage::Zero | Stage::Int, b'.') if !integer => Stage::Dot,
            (Stage::Dot | Stage::Frac, b'0'..=b'9') => {
                if bounded && self.frac_digits >= FRAC {
                    return false;
                }
                if bounded {
                    n.frac = self.frac * 10 + digit;
                    n.frac_digits += 1;
                }
                Stage::Frac
            }
            (Stage::Zero | Stage::Int | Stage::Frac, b'e' | b'E') if !integer && !bounded => {
                Stage::Exp
            }
            (Stage::Exp, b'+' | b'-') => Stage::ExpSign,
            (Stage::Exp | Stage::ExpSign | Stage::ExpDigits, b'0'..=b'9') => Stage::ExpDigits,
            _ => return false,
        };
        if !bounded {
            // Unbounded integers keep no value: only the grammar matters.
            n.int = 0;
        }
        if let Some(b) = self.spec.bounds {
            if !n.feasible(&b) {
                return false;
            }
        }
        *self = n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(integer: bool, min: Option<f64>, max: Option<f64>, excl: bool) -> NumSpec {
        let n = |x: f64| json!(x).as_number().unwrap().clone();
        let (a, b) = (min.map(n), max.map(n));
        NumSpec {
            integer,
            bounds: Some(
                Bounds::new(
                    integer,
                    a.as_ref().map(|x| (x, excl)),
                    b.as_ref().map(|x| (x, excl)),
                )
                .unwrap(),
            ),
        }
    }

    fn accepts(s: NumSpec, text: &str) -> bool {
        let mut st = NumState::new(s);
        text.bytes().all(|c| st.next(c)) && st.complete()
    }

    /// Whether some continuation exists after `text` (the matcher's no-dead-end promise).
    fn alive(s: NumSpec, text: &str) -> bool {
        let mut st = NumState::new(s);
        text.bytes().all(|c| st.next(c))
    }

    #[test]
    fn integer_ranges_hold_on_every_prefix() {
        let s = spec(true, Some(5.0), Some(6.0), false);
        assert!(accepts(s, "5") && accepts(s, "6"));
        for bad in ["-1", "4", "7", "50", "0", "5.0"] {
            assert!(!accepts(s, bad), "{bad}");
        }
        assert!(!alive(s, "-") && !alive(s, "1") && !alive(s, "0"));
        let s = spec(true, Some(-20.0), Some(-3.0), false);
        assert!(accepts(s, "-3") && accepts(s, "-20") && accepts(s, "-15"));
        assert!(!alive(s, "3") && !alive(s, "-21") && !alive(s, "-0"));
        assert!(alive(s, "-2") && !accepts(s, "-2"));
        let s = spec(true, Some(0.0), Some(100.0), true);
        assert!(accepts(s, "1") && accepts(s, "99"));
        assert!(!accepts(s, "0") && !accepts(s, "100"));
        let s = spec(true, Some(2.5), None, false);
        assert!(accepts(s, "3") && !accepts(s, "2") && accepts(s, "123456"));
    }

    #[test]
    fn number_ranges_hold_with_decimals() {
        let s = spec(false, Some(0.1), Some(0.25), false);
        assert!(accepts(s, "0.1") && accepts(s, "0.25") && accepts(s, "0.2"));
        assert!(!accepts(s, "0.09") && !accepts(s, "0.251") && !accepts(s, "0"));
        assert!(!alive(s, "1") && !alive(s, "0.3") && !alive(s, "0.2e"));
        let s = spec(false, Some(-1.0), Some(1.0), true);
        assert!(
            accepts(s, "-0.999999") && accepts(s, "0") && !accepts(s, "1") && !accepts(s, "-1")
        );
        assert!(!alive(s, "1") && !alive(s, "-1") && alive(s, "-0."));
        assert!(Bounds::new(
            true,
            Some((&json!(5.5).as_number().unwrap().clone(), false)),
            Some((&json!(5.9).as_number().unwrap().clone(), false))
        )
        .is_err());
    }
}
