//! Time stamps of other systems: text in a handful of common layouts (or
//! one given with `--time-format`), Unix seconds or milliseconds, Parquet
//! timestamps with or without a zone. A time stamp without a UTC offset is
//! local time in the zone stated with `--timezone`; none is guessed.

use chrono::offset::LocalResult;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};

/// The zone of local time stamps: an IANA name (`Asia/Shanghai`, with its
/// history of offsets and daylight saving) or a fixed offset (`+08:00`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// From the time zone database.
    Named(chrono_tz::Tz),
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
}

impl Zone {
    /// Parses `--timezone`: an IANA name, `UTC`, or an offset `+08:00`,
    /// `+0800` or `+08`.
    pub fn parse(s: &str) -> Result<Zone, String> {
        if let Ok(tz) = s.parse::<chrono_tz::Tz>() {
            return Ok(Zone::Named(tz));
        }
        fixed_offset(s).map(Zone::Fixed).ok_or_else(|| {
            format!(
                "--timezone {s}: not a time zone (give an IANA name such as Asia/Shanghai or Europe/Berlin, or an offset such as +08:00)"
            )
        })
    }

    /// Unix ms of local time `t` in this zone.
    fn to_utc(self, t: &NaiveDateTime) -> Result<i64, Bad> {
        let local = match self {
            Zone::Named(tz) => tz.from_local_datetime(t).map(|d| d.timestamp_millis()),
            Zone::Fixed(off) => off.from_local_datetime(t).map(|d| d.timestamp_millis()),
        };
        match local {
            LocalResult::Single(ms) => Ok(ms),
            LocalResult::Ambiguous(..) => Err(Bad::Ambiguous),
            LocalResult::None => Err(Bad::Nonexistent),
        }
    }
}

/// `+08:00`, `+0800`, `-05`, `UTC+8`.
fn fixed_offset(s: &str) -> Option<FixedOffset> {
    let s = s.strip_prefix("UTC").unwrap_or(s);
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Why one time stamp was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Not a time stamp of any known layout (or of `--time-format`).
    Unparseable,
    /// A local time that occurs twice (the hour repeated when daylight
    /// saving ends): which instant is meant cannot be known.
    Ambiguous,
    /// A local time that never occurs (the hour skipped when daylight
    /// saving starts).
    Nonexistent,
}

/// Why an import cannot go on at all: a local time stamp and no zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoZone;

/// A time stamp as a file holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stamp<'a> {
    /// Text.
    Text(&'a str),
    /// A number: Unix seconds or milliseconds, as `--time-format` says.
    Number(f64),
    /// A Parquet timestamp, in ms: UTC when the column has a zone, local
    /// time otherwise.
    Instant {
        /// Milliseconds since 1970-01-01 00:00 (UTC or local).
        ms: i64,
        /// The column says the instant is UTC.
        utc: bool,
    },
}

impl std::fmt::Display for Stamp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stamp::Text(s) => write!(f, "`{s}`"),
            Stamp::Number(x) => write!(f, "{x}"),
            Stamp::Instant { ms, utc } => {
                let t = DateTime::from_timestamp_millis(*ms)
                    .map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    .unwrap_or_else(|| format!("{ms} ms"));
                write!(f, "{t}{}", if *utc { " UTC" } else { " (no zone)" })
            }
        }
    }
}

/// How numbers and text are read as times (`--time-format`).
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// Text in one of [`LAYOUTS`] or RFC 3339.
    Auto,
    /// Unix seconds (`epoch-s`).
    EpochS,
    /// Unix milliseconds (`epoch-ms`).
    EpochMs,
    /// A chrono strftime layout; with `%z` or `%:z` it carries its offset.
    Layout(String),
}

impl Format {
    /// Parses `--time-format`.
    pub fn parse(s: &str) -> Result<Format, String> {
        Ok(match s {
            "auto" => Format::Auto,
            "epoch-s" => Format::EpochS,
            "epoch-ms" => Format::EpochMs,
            layout if layout.contains('%') => Format::Layout(layout.to_owned()),
            other => {
                return Err(format!(
                    "--time-format {other}: give auto, epoch-s, epoch-ms or a strftime layout such as '%d.%m.%Y %H:%M:%S'"
                ));
            }
        })
    }
}

/// The layouts `auto` tries, after RFC 3339: ISO 8601 with a space or a
/// `T`, slashes (Excel and many DCS exports), to seconds or minutes, with
/// or without a fraction.
pub(super) const LAYOUTS: [&str; 6] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

/// Reads time stamps into Unix ms.
#[derive(Debug, Clone)]
pub struct Clock {
    zone: Option<Zone>,
    format: Format,
    /// The layout of [`LAYOUTS`] that read the last stamp: tried first.
    last: std::cell::Cell<usize>,
}

impl Clock {
    /// A clock for `format`, local times in `zone`.
    pub fn new(zone: Option<Zone>, format: Format) -> Clock {
        Clock {
            zone,
            format,
            last: std::cell::Cell::new(0),
        }
    }

    /// Unix ms of `stamp`. The outer error stops the import (a local time
    /// stamp and no `--timezone`); the inner one rejects this stamp.
    pub fn read(&self, stamp: Stamp<'_>) -> Result<Result<i64, Bad>, NoZone> {
        match stamp {
            Stamp::Instant { ms, utc: true } => Ok(Ok(ms)),
            Stamp::Instant { ms, utc: false } => {
                match DateTime::from_timestamp_millis(ms).map(|d| d.naive_utc()) {
                    Some(t) => self.local(&t),
                    None => Ok(Err(Bad::Unparseable)),
                }
            }
            Stamp::Number(x) => Ok(self.number(x)),
            Stamp::Text(s) => self.text(s.trim()),
        }
    }

    fn number(&self, x: f64) -> Result<i64, Bad> {
        let ms = match self.format {
            Format::EpochS => x * 1000.0,
            Format::EpochMs => x,
            Format::Auto | Format::Layout(_) => return Err(Bad::Unparseable),
        };
        // Within chrono's range of instants (about ±262,000 years).
        if ms.is_finite() && ms.abs() < 8.0e18 {
            Ok(ms.floor() as i64)
        } else {
            Err(Bad::Unparseable)
        }
    }

    fn text(&self, s: &str) -> Result<Result<i64, Bad>, NoZone> {
        match &self.format {
            Format::EpochS | Format::EpochMs => Ok(match s.parse::<f64>() {
                Ok(x) => self.number(x),
                Err(_) => Err(Bad::Unparseable),
            }),
            Format::Layout(layout) => {
                if let Ok(d) = DateTime::parse_from_str(s, layout) {
                    return Ok(Ok(d.timestamp_millis()));
                }
                match NaiveDateTime::parse_from_str(s, layout) {
                    Ok(t) => self.local(&t),
                    Err(_) => Ok(Err(Bad::Unparseable)),
                }
            }
            Format::Auto => {
                if let Ok(d) = DateTime::parse_from_rfc3339(s) {
                    return Ok(Ok(d.timestamp_millis()));
                }
                let first = self.last.get();
                let order =
                    std::iter::once(first).chain((0..LAYOUTS.len()).filter(|&i| i != first));
                for i in order {
                    if let Ok(t) = NaiveDateTime::parse_from_str(s, LAYOUTS[i]) {
                        self.last.set(i);
                        return self.local(&t);
                    }
                }
                Ok(Err(Bad::Unparseable))
            }
        }
    }

    fn local(&self, t: &NaiveDateTime) -> Result<Result<i64, Bad>, NoZone> {
        match self.zone {
            Some(zone) => Ok(zone.to_utc(t)),
            None => Err(NoZone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|d| d.timestamp_millis())
            .unwrap_or(i64::MIN)
    }

    #[test]
    fn zones_are_names_or_offsets() {
        assert_eq!(
            Zone::parse("Asia/Shanghai"),
            Ok(Zone::Named(chrono_tz::Tz::Asia__Shanghai))
        );
        let east8 = FixedOffset::east_opt(8 * 3600).map(Zone::Fixed);
        for s in ["+08:00", "+0800", "+08", "UTC+8"] {
            assert_eq!(Zone::parse(s).ok(), east8, "{s}");
        }
        assert_eq!(
            Zone::parse("-05:30").ok(),
            FixedOffset::west_opt(5 * 3600 + 1800).map(Zone::Fixed)
        );
        for bad in ["Mars/Olympus", "+25:00", "0800", "", "+08:61"] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_text_in_every_layout_is_read_in_the_stated_zone() {
        let clock = Clock::new(Zone::parse("Asia/Shanghai").ok(), Format::Auto);
        let want = ms("2026-03-01T08:30:00+08:00");
        for s in [
            "2026-03-01 08:30:00",
            "2026-03-01T08:30:00",
            "2026/03/01 08:30:00",
            "2026-03-01 08:30",
            "2026/03/01 08:30",
            " 2026-03-01 08:30:00.000 ",
            "2026-03-01T00:30:00Z",
            "2026-03-01T02:30:00+02:00",
        ] {
            assert_eq!(clock.read(Stamp::Text(s)), Ok(Ok(want)), "{s}");
        }
        assert_eq!(
            clock.read(Stamp::Text("2026-03-01 08:30:00.250")),
            Ok(Ok(want + 250))
        );
        assert_eq!(
            clock.read(Stamp::Text("yesterday")),
            Ok(Err(Bad::Unparseable))
        );
    }

    #[test]
    fn daylight_saving_gaps_and_repeats_are_refused_not_guessed() {
        let clock = Clock::new(Zone::parse("Europe/Berlin").ok(), Format::Auto);
        // 2026-03-29 02:30 does not exist in Berlin; 2026-10-25 02:30 happens twice.
        assert_eq!(
            clock.read(Stamp::Text("2026-03-29 02:30:00")),
            Ok(Err(Bad::Nonexistent))
        );
        assert_eq!(
            clock.read(Stamp::Text("2026-10-25 02:30:00")),
            Ok(Err(Bad::Ambiguous))
        );
        assert_eq!(
            clock.read(Stamp::Text("2026-07-01 12:00:00")),
            Ok(Ok(ms("2026-07-01T10:00:00Z")))
        );
    }

    #[test]
    fn a_local_stamp_without_a_zone_stops_the_import() {
        let clock = Clock::new(None, Format::Auto);
        assert_eq!(clock.read(Stamp::Text("2026-03-01 08:30:00")), Err(NoZone));
        assert_eq!(
            clock.read(Stamp::Instant { ms: 0, utc: false }),
            Err(NoZone)
        );
        // Stamps that carry their offset need no zone.
        assert_eq!(
            clock.read(Stamp::Text("2026-03-01T08:30:00+08:00")),
            Ok(Ok(ms("2026-03-01T00:30:00Z")))
        );
        assert_eq!(clock.read(Stamp::Instant { ms: 5, utc: true }), Ok(Ok(5)));
    }

    #[test]
    fn numbers_are_epochs_only_when_said() {
        let s = Clock::new(None, Format::EpochS);
        assert_eq!(s.read(Stamp::Number(1.5)), Ok(Ok(1500)));
        assert_eq!(s.read(Stamp::Text("1700000000")), Ok(Ok(1_700_000_000_000)));
        let m = Clock::new(None, Format::EpochMs);
        assert_eq!(m.read(Stamp::Number(1234.0)), Ok(Ok(1234)));
        assert_eq!(m.read(Stamp::Number(f64::NAN)), Ok(Err(Bad::Unparseable)));
        assert_eq!(m.read(Stamp::Number(1e300)), Ok(Err(Bad::Unparseable)));
        let auto = Clock::new(None, Format::Auto);
        assert_eq!(auto.read(Stamp::Number(1234.0)), Ok(Err(Bad::Unparseable)));
    }

    #[test]
    fn a_given_layout_reads_with_or_without_an_offset() {
        let zone = Zone::parse("+08:00").ok();
        let clock = Clock::new(
            zone,
            Format::parse("%d.%m.%Y %H:%M:%S").unwrap_or(Format::Auto),
        );
        assert_eq!(
            clock.read(Stamp::Text("01.03.2026 08:30:00")),
            Ok(Ok(ms("2026-03-01T00:30:00Z")))
        );
        let with_offset = Clock::new(None, Format::Layout("%d.%m.%Y %H:%M:%S %z".into()));
        assert_eq!(
            with_offset.read(Stamp::Text("01.03.2026 08:30:00 +0100")),
            Ok(Ok(ms("2026-03-01T07:30:00Z")))
        );
        assert!(Format::parse("iso").is_err());
    }
}
