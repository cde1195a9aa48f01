//! Output: JSON, or plain tables and fields for a person. Data goes to stdout, messages to
//! stderr.

use std::fmt::Write as _;
use std::time::Duration;

use duraflow::{Event, Timestamp};
use serde_json::{json, Value};

use crate::error::CliError;

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::operational(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A journal as JSON: each event with its `index` (its journal position) and its `type`.
pub(crate) fn events_json(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
            if let Value::Object(fields) = &mut value {
                fields.insert("index".to_owned(), json!(index));
                fields.insert("type".to_owned(), json!(event.kind.type_name()));
            }
            value
        })
        .collect()
}

/// A message for a person, on stderr.
pub(crate) fn message(text: &str) {
    eprintln!("{text}");
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let _ = write!(out, "{cell:<width$}", width = widths[i]);
        }
        println!("{}", out.trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// Prints `name: value` lines, the values aligned.
pub(crate) fn fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (name, value) in fields {
        println!("{:<width$} {value}", format!("{name}:"), width = width);
    }
}

/// A timestamp as RFC 3339 UTC with milliseconds: `2026-12-04T20:44:14.123Z`.
pub(crate) fn time(at: Timestamp) -> String {
    let ms = at.as_millis();
    let since_epoch = Duration::from_millis(ms.unsigned_abs());
    let system = if ms >= 0 {
        std::time::UNIX_EPOCH.checked_add(since_epoch)
    } else {
        std::time::UNIX_EPOCH.checked_sub(since_epoch)
    };
    match system {
        Some(system) => humantime::format_rfc3339_millis(system).to_string(),
        None => format!("{ms} ms since 1970"),
    }
}

/// A duration for a timeline: `+0.004s`, `+12.500s`, `+3m07.000s`, `+2h05m00.000s`.
pub(crate) fn elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("+{h}h{m:02}m{s:02}.{milli:03}s")
    } else if m > 0 {
        format!("+{m}m{s:02}.{milli:03}s")
    } else {
        format!("+{s}.{milli:03}s")
    }
}

/// Shortens `text` to at most `max` characters, marking the cut with `…`.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            time(Timestamp(1_796_071_454_123)),
            "2026-11-30T20:44:14.123Z"
        );
        assert_eq!(time(Timestamp(951_782_400_000)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn elapsed_reads_at_every_scale() {
        assert_eq!(elapsed(Duration::from_millis(4)), "+0.004s");
        assert_eq!(elapsed(Duration::from_millis(187_000)), "+3m07.000s");
        assert_eq!(elapsed(Duration::from_millis(7_500_000)), "+2h05m00.000s");
    }

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
