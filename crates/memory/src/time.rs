//! Milliseconds since the Unix epoch, and the ISO 8601 dates ingest files and the CLI use.
use crate::error::{MemoryError, Result};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DD`, optionally followed by `THH:MM[:SS]` and `Z` (UTC; offsets are refused rather
/// than guessed).
pub fn parse_date(s: &str) -> Result<i64> {
    let bad = || MemoryError::BadInput {
        what: "date",
        message: format!("{s:?} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z]"),
    };
    let s = s.trim();
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').unwrap_or(t))),
        None => (s, None),
    };
    let num = |p: &str, lo: i64, hi: i64| -> Result<i64> {
        let v: i64 = p.parse().map_err(|_| bad())?;
        if p.len() < 2 || v < lo || v > hi {
            return Err(bad());
        }
        Ok(v)
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    if y.len() != 4 {
        return Err(bad());
    }
    let (y, m, d) = (num(y, 1, 9999)?, num(m, 1, 12)?, num(d, 1, 31)?);
    let mut secs = days_from_civil(y, m, d) * 86400;
    if let Some(t) = time {
        let tp: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&tp.len()) {
            return Err(bad());
        }
        secs += num(tp[0], 0, 23)? * 3600 + num(tp[1], 0, 59)? * 60;
        if let Some(sec) = tp.get(2) {
            let whole = sec.split('.').next().unwrap_or(sec);
            secs += num(whole, 0, 60)?;
        }
    }
    Ok(secs * 1000)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let t = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        let t = parse_date("2024-02-29T13:45:10Z").unwrap();
        assert_eq!(format_ms(t), "2024-02-29T13:45:10Z");
        assert_eq!(
            format_ms(parse_date("2023-05-07").unwrap()),
            "2023-05-07T00:00:00Z"
        );
        assert!(parse_date("2023-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }
}
