//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`), compared
//! exactly.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use crate::error::{Refusal, Result};

/// A parsed quantity, held exactly in nano-units, with its original text.
/// Ordering and equality compare the amount (`1000m == 1`).
#[derive(Debug, Clone)]
pub struct Quantity {
    nanos: i128,
    text: String,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses a quantity: a decimal number (optionally signed, with a
    /// fraction) followed by a binary suffix (`Ki Mi Gi Ti Pi Ei`), a decimal
    /// suffix (`n u m k M G T P E`), a decimal exponent (`e3`, `E-2`) or
    /// nothing. Amounts below a nano-unit are rounded up.
    pub fn parse(text: &str) -> Result<Self> {
        let err = |why: &str| {
            Refusal::new(
                "bad-quantity",
                format!("{text:?} is not a Kubernetes quantity: {why}"),
            )
        };
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("it does not start with a number"));
        }
        if frac_part.contains('.') {
            return Err(err("two decimal points"));
        }
        // The amount is digits / 10^scale, times the suffix's multiplier
        // (numerator / denominator, in nano-units).
        let digits = format!("{int_part}{frac_part}");
        if digits.len() > 30 {
            return Err(err("too many digits"));
        }
        let mantissa: i128 = digits.parse().map_err(|_| err("bad number"))?;
        let mut scale = i32::try_from(frac_part.len()).map_err(|_| err("bad number"))?;
        let multiplier: i128 = match suffix {
            "" => NANO,
            "n" => 1,
            "u" => 1_000,
            "m" => 1_000_000,
            "k" => NANO * 1_000,
            "M" => NANO * 1_000_000,
            "G" => NANO * 1_000_000_000,
            "T" => NANO * 1_000_000_000_000,
            "P" => NANO * 1_000_000_000_000_000,
            "E" => NANO * 1_000_000_000_000_000_000,
            "Ki" => NANO << 10,
            "Mi" => NANO << 20,
            "Gi" => NANO << 30,
            "Ti" => NANO << 40,
            "Pi" => NANO << 50,
            "Ei" => NANO << 60,
            s if s.starts_with(['e', 'E']) => {
                let exp: i32 = s[1..].parse().map_err(|_| err("bad suffix"))?;
                if !(-30..=30).contains(&exp) {
                    return Err(err("exponent out of range"));
                }
                scale -= exp;
                NANO
            }
            _ => return Err(err("unknown suffix")),
        };
        let amount = mantissa
            .checked_mul(multiplier)
            .ok_or_else(|| err("too large"))?;
        let nanos = if scale >= 0 {
            let div = 10i128
                .checked_pow(scale.unsigned_abs())
                .ok_or_else(|| err("too precise"))?;
            // Round up, as Kubernetes does for sub-unit amounts.
            (amount + div - 1) / div
        } else {
            let mul = 10i128
                .checked_pow(scale.unsigned_abs())
                .ok_or_else(|| err("too large"))?;
            amount.checked_mul(mul).ok_or_else(|| err("too large"))?
        };
        Ok(Self {
            nanos: if negative { -nanos } else { nanos },
            text: text.to_owned(),
        })
    }

    /// Parses a JSON quantity: a string, or a number (`2`, `0.5`).
    pub fn from_json(v: &Value) -> Result<Self> {
        match v {
            Value::String(s) => Self::parse(s),
            Value::Number(n) => Self::parse(&n.to_string()),
            other => Err(Refusal::new(
                "bad-quantity",
                format!("{other} is not a Kubernetes quantity: expected a string or a number"),
            )),
        }
    }

    /// The amount in nano-units (`1` is 10^9, `1m` is 10^6).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn units() {
        assert_eq!(q("500m").nanos(), 500_000_000);
        assert_eq!(q("2").nanos(), 2 * NANO);
        assert_eq!(q("1k").nanos(), 1_000 * NANO);
        assert_eq!(q("1Ki").nanos(), 1_024 * NANO);
        assert_eq!(q("1.5Gi").nanos(), 1_610_612_736 * NANO);
        assert_eq!(q("1e3").nanos(), 1_000 * NANO);
        assert_eq!(q("1E-3"), q("1m"));
        assert_eq!(q("100n").nanos(), 100);
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("-1").nanos(), -NANO);
        assert_eq!(q("1Ei").nanos(), NANO << 60);
    }

    #[test]
    fn comparisons_are_numeric() {
        assert_eq!(q("1000m"), q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("4Gi") > q("512Mi"));
        assert!(q("2") > q("1999m"));
        assert!(q("128974848") == q("123Mi"));
        assert!(q("129e6") > q("123Mi"));
        assert_eq!(q("500m").as_str(), "500m");
    }

    #[test]
    fn sub_nano_rounds_up() {
        assert_eq!(q("0.1n").nanos(), 1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "m", "abc", "1x", "1.2.3", "1ee", "1Mi5", "--1", "1e99"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        let e = Quantity::parse("1x").expect_err("bad");
        assert_eq!(
            e.message,
            "\"1x\" is not a Kubernetes quantity: unknown suffix"
        );
    }

    #[test]
    fn json_numbers_and_strings() {
        assert_eq!(Quantity::from_json(&Value::from(2)).ok(), Some(q("2")));
        assert_eq!(Quantity::from_json(&Value::from(0.5)).ok(), Some(q("500m")));
        assert!(Quantity::from_json(&Value::Bool(true)).is_err());
    }
}
