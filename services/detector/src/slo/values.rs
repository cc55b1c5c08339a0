//! Scalar value types of the SLO file that validate themselves while they are parsed, so a bad
//! value is reported at its own line: [`Dur`] (`"1.5s"`, `"30d"`), [`Objective`] (`0.99` or
//! `"99%"`), and [`At`], a value with the line and column it was written at (for the checks
//! that involve several fields).

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A value and where it was written (1-based; 0 for values that were not in the file, such as
/// defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub line: u64,
    pub column: u64,
}

impl<T> At<T> {
    /// A value that was not read from a file.
    pub fn new(value: T) -> Self {
        Self {
            value,
            line: 0,
            column: 0,
        }
    }
}

impl<T> Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Self {
            value: s.value,
            line: s.referenced.line(),
            column: s.referenced.column(),
        })
    }
}

/// A duration written with a unit: `ms`, `s`, `m`, `h`, `d` or `w`, e.g. `500ms`, `1.5s`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub const fn mins(m: u64) -> Self {
        Self(Duration::from_secs(m * 60))
    }
    pub const fn hours(h: u64) -> Self {
        Self(Duration::from_secs(h * 3600))
    }
    pub const fn days(d: u64) -> Self {
        Self(Duration::from_secs(d * 86_400))
    }
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Parses `<number><unit>`; the number may have a fraction, the result is whole milliseconds.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{s}` has no unit (use ms, s, m, h, d or w, e.g. `5m`)"))?;
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (e.g. `1.5s`, `5m`, `30d`)"))?;
        let ms_per = match unit {
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            "d" => 86_400e3,
            "w" => 604_800e3,
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}` (use ms, s, m, h, d or w)"
                ))
            }
        };
        let ms = (n * ms_per).round();
        if !ms.is_finite() || ms > 1e15 {
            return Err(format!("`{s}` is out of range"));
        }
        Ok(Self(Duration::from_millis(ms as u64)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        for (unit, per) in [
            ("w", 604_800_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
        ] {
            if ms != 0 && ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else if ms >= 1000 {
            write!(f, "{}s", ms as f64 / 1000.0)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. `1.5s`, `5m`, `30d`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                Dur::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "`{n}` has no unit (use ms, s, m, h, d or w, e.g. `5m`)"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_u64(n.unsigned_abs())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "`{n}` has no unit (use ms, s, m, h, d or w, e.g. `1.5s`)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// The target share of good events, strictly between 0 and 1: `0.99` or `"99%"`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Objective(f64);

impl Objective {
    pub fn new(v: f64) -> Result<Self, String> {
        if v > 0.0 && v < 1.0 {
            Ok(Self(v))
        } else {
            Err(format!(
                "objective {v} must be strictly between 0 and 1 (e.g. 0.99 or \"99%\")"
            ))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
    /// The error budget as a ratio: `1 - objective`.
    pub fn budget(self) -> f64 {
        1.0 - self.0
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", (self.0 * 100_000.0).round() / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Objective {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Objective;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a ratio such as 0.99 or a percentage such as \"99%\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Objective, E> {
                Objective::new(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Objective, E> {
                Objective::new(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Objective, E> {
                Objective::new(v as f64).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Objective, E> {
                let pct = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .ok_or_else(|| {
                        E::custom(format!(
                            "`{s}` is not a ratio (0.99) or a percentage (\"99%\")"
                        ))
                    })?;
                Objective::new(pct / 100.0).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (s, ms, shown) in [
            ("500ms", 500, "500ms"),
            ("1.5s", 1500, "1.5s"),
            ("10s", 10_000, "10s"),
            ("5m", 300_000, "5m"),
            ("1h", 3_600_000, "1h"),
            ("3d", 259_200_000, "3d"),
            ("30d", 2_592_000_000, "30d"),
            ("1w", 604_800_000, "1w"),
            ("90m", 5_400_000, "90m"),
        ] {
            let d = Dur::parse(s).unwrap();
            assert_eq!(d.as_millis(), ms, "{s}");
            assert_eq!(d.to_string(), shown, "{s}");
        }
        for bad in ["5", "5x", "m", "", "1.2.3s", "-5m"] {
            assert!(Dur::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objectives() {
        assert_eq!(Objective::new(0.99).unwrap().get(), 0.99);
        assert!((Objective::new(0.999).unwrap().budget() - 0.001).abs() < 1e-12);
        assert!(Objective::new(1.0).is_err());
        assert!(Objective::new(0.0).is_err());
        assert_eq!(Objective::new(0.999).unwrap().to_string(), "99.9%");
    }
}
