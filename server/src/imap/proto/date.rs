//! IMAP's date forms (RFC 9051 §9 `date`, `date-time`), on mail-parser's
//! calendar so IMAP dates and Date: headers agree on every day.

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Days since 1970-01-01 of a civil date, by mail-parser's calendar
/// (the one that reads Date: headers), so IMAP dates and header dates
/// agree on every day.
fn days_from_civil(y: u16, m: u8, d: u8) -> i64 {
    mail_parser::DateTime {
        year: y,
        month: m,
        day: d,
        hour: 0,
        minute: 0,
        second: 0,
        tz_before_gmt: false,
        tz_hour: 0,
        tz_minute: 0,
    }
    .to_timestamp()
    .div_euclid(86400)
}

/// `1-Feb-1994` -> days since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let d: u8 = it.next()?.trim().parse().ok()?;
    let mon = it.next()?.trim();
    let m = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(mon))
        .map(|i| i as u8 + 1)
        .unwrap_or(0);
    let y: u16 = it.next()?.trim().parse().ok()?;
    if it.next().is_some() || m == 0 || !(1..=31).contains(&d) || !(1..=9999).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `"17-Jul-1996 02:44:25 -0700"` (APPEND's date-time) -> Unix seconds.
pub fn parse_date_time(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let day = parse_date(parts.next()?)?;
    let hms: Vec<i64> = parts
        .next()?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let zone = parts.next()?;
    if hms.len() != 3 || zone.len() != 5 || parts.next().is_some() {
        return None;
    }
    let sign = match &zone[..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    Some(day * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - sign * (zh * 3600 + zm * 60))
}

/// `17-Jul-1996 02:44:25 +0000` for INTERNALDATE (RFC 9051 §9 date-time).
pub fn format_date_time(unix: i64) -> String {
    let t = mail_parser::DateTime::from_timestamp(unix);
    format!(
        "{:2}-{}-{:04} {:02}:{:02}:{:02} +0000",
        t.day,
        capitalize(MONTHS[usize::from(t.month.clamp(1, 12)) - 1]),
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}
