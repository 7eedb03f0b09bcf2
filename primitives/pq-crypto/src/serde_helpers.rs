//! Serde helpers for the JSON forms every Interlattice tool shares (receipts, capabilities,
//! client state): `#[serde(with = "interlattice_pq_crypto::serde_helpers::amount_as_string")]`.

/// 32-byte values (hashes, account ids, nonces) as 0x-prefixed hex.
pub mod bytes32_as_hex {
	use alloc::string::String;
	/// Writes `0x` and 64 lower-case hex digits.
	pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
		s.serialize_str(&crate::types::to_hex(v))
	}
	/// Reads 64 hex digits, with or without `0x`.
	pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
		let s = <String as serde::Deserialize>::deserialize(d)?;
		let bytes = crate::types::from_hex(&s).map_err(serde::de::Error::custom)?;
		<[u8; 32]>::try_from(&bytes[..]).map_err(|_| serde::de::Error::custom("expected 32 bytes"))
	}
}

/// u128 amounts as decimal strings: JavaScript numbers lose precision above 2^53.
pub mod amount_as_string {
	use alloc::string::{String, ToString};
	/// Writes the decimal digits as a string.
	pub fn serialize<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
		s.serialize_str(&v.to_string())
	}
	/// Reads a string of decimal digits.
	pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
		let s = <String as serde::Deserialize>::deserialize(d)?;
		s.parse().map_err(serde::de::Error::custom)
	}
}

#[cfg(test)]
mod tests {
	#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
	struct Both {
		#[serde(with = "super::amount_as_string")]
		amount: u128,
		#[serde(with = "super::bytes32_as_hex")]
		hash: [u8; 32],
	}

	#[test]
	fn amounts_and_hashes_round_trip_and_bad_input_is_refused() {
		let value = Both { amount: u128::MAX, hash: [0xab; 32] };
		let json = serde_json::to_string(&value).unwrap();
		assert_eq!(json, format!(r#"{{"amount":"{}","hash":"0x{}"}}"#, u128::MAX, "ab".repeat(32)));
		assert_eq!(serde_json::from_str::<Both>(&json).unwrap(), value);
		for bad in [
			format!(r#"{{"amount":5,"hash":"0x{}"}}"#, "ab".repeat(32)),
			format!(r#"{{"amount":"-1","hash":"0x{}"}}"#, "ab".repeat(32)),
			format!(r#"{{"amount":"1","hash":"0x{}"}}"#, "ab".repeat(31)),
			format!(r#"{{"amount":"1","hash":"0x{}zz"}}"#, "ab".repeat(31)),
		] {
			assert!(serde_json::from_str::<Both>(&bad).is_err(), "{bad}");
		}
	}
}
