//! LAT amounts as people write and read them: `"0.5"` is half a LAT, `UNIT` smallest units.

/// The smallest unit per LAT.
pub const UNIT: u128 = 1_000_000_000_000;

/// Parses a LAT amount with up to 12 decimals ("0.5", "10000").
pub fn parse_lat(s: &str) -> Result<u128, String> {
	let s = s.trim();
	let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
	if whole.is_empty() && fraction.is_empty() || fraction.len() > 12 {
		return Err(format!("{s:?} is not a LAT amount (at most 12 decimals)"));
	}
	let digits = |d: &str| d.is_empty() || d.bytes().all(|b| b.is_ascii_digit());
	if !digits(whole) || !digits(fraction) {
		return Err(format!("{s:?} is not a LAT amount"));
	}
	let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("{s:?} is too large"))? };
	let fraction: u128 = format!("{fraction:0<12}").parse().map_err(|_| format!("{s:?} is not a LAT amount"))?;
	whole.checked_mul(UNIT).and_then(|w| w.checked_add(fraction)).ok_or_else(|| format!("{s:?} is too large"))
}

/// An amount for people: LAT with six decimals (`"0.500000 LAT"`).
pub fn format_lat(amount: u128) -> String {
	format!("{}.{:06} LAT", amount / UNIT, (amount % UNIT) / 1_000_000)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn lat_amounts() {
		assert_eq!(parse_lat("0.5"), Ok(UNIT / 2));
		assert_eq!(parse_lat("10000"), Ok(10_000 * UNIT));
		assert_eq!(parse_lat("0.000000000001"), Ok(1));
		assert!(parse_lat("0.0000000000001").is_err());
		assert!(parse_lat("1e3").is_err());
		assert!(parse_lat("").is_err());
		assert!(parse_lat("-1").is_err());
	}

	#[test]
	fn amounts_print_with_six_decimals() {
		assert_eq!(format_lat(UNIT / 2), "0.500000 LAT");
		assert_eq!(format_lat(10_000 * UNIT + 1), "10000.000000 LAT");
	}
}
