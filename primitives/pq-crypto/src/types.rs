//! Fixed-size ML-DSA-65 key and signature types.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

use crate::{ML_DSA_65_PUBLIC_KEY_LEN, ML_DSA_65_SIGNATURE_LEN};

/// A byte string had the wrong length for the type it was meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongLength {
	/// The length the type needs.
	pub expected: usize,
	/// The length given.
	pub got: usize,
}

impl core::fmt::Display for WrongLength {
	fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
		write!(f, "expected {} bytes, got {}", self.expected, self.got)
	}
}

#[cfg(feature = "std")]
impl std::error::Error for WrongLength {}

/// A fixed-size byte string type. `$metadata` is the type it is described as in the chain's
/// metadata: an array of the same SCALE encoding (a `[u8; N]` and an `[[u8; M]; K]` with
/// `M × K = N` encode as the same N bytes, without a length prefix).
macro_rules! fixed_bytes {
	($(#[doc = $doc:literal])* $name:ident, $len:expr, $metadata:ty) => {
		$(#[doc = $doc])*
		#[derive(Clone, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen)]
		pub struct $name(pub [u8; $len]);

		const _: () = assert!(core::mem::size_of::<$metadata>() == $len, "metadata shape must have the same length");

		impl TypeInfo for $name {
			type Identity = Self;
			fn type_info() -> scale_info::Type {
				scale_info::Type::builder()
					.path(scale_info::Path::new(stringify!($name), module_path!()))
					.docs(&[$($doc),*])
					.composite(
						scale_info::build::Fields::unnamed()
							.field(|f| f.ty::<$metadata>().type_name(stringify!($metadata))),
					)
			}
		}

		impl $name {
			/// Length in bytes.
			pub const LEN: usize = $len;

			/// From a slice of exactly [`Self::LEN`] bytes.
			pub fn from_slice(bytes: &[u8]) -> Result<Self, WrongLength> {
				<[u8; $len]>::try_from(bytes)
					.map(Self)
					.map_err(|_| WrongLength { expected: $len, got: bytes.len() })
			}
		}

		impl AsRef<[u8]> for $name {
			fn as_ref(&self) -> &[u8] {
				&self.0
			}
		}

		impl TryFrom<&[u8]> for $name {
			type Error = WrongLength;
			fn try_from(bytes: &[u8]) -> Result<Self, WrongLength> {
				Self::from_slice(bytes)
			}
		}

		impl core::fmt::Debug for $name {
			/// The first and last four bytes; the whole value is kilobytes long.
			fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
				let b = &self.0;
				write!(
					f,
					"{}(0x{:02x}{:02x}{:02x}{:02x}…{:02x}{:02x}{:02x}{:02x})",
					stringify!($name), b[0], b[1], b[2], b[3],
					b[$len - 4], b[$len - 3], b[$len - 2], b[$len - 1]
				)
			}
		}

		#[cfg(feature = "serde")]
		impl serde::Serialize for $name {
			/// As a 0x-prefixed hex string.
			fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
				s.serialize_str(&crate::types::to_hex(&self.0))
			}
		}

		#[cfg(feature = "serde")]
		impl<'de> serde::Deserialize<'de> for $name {
			fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
				let s = <alloc::string::String as serde::Deserialize>::deserialize(d)?;
				let bytes = crate::types::from_hex(&s).map_err(serde::de::Error::custom)?;
				Self::from_slice(&bytes).map_err(serde::de::Error::custom)
			}
		}
	};
}

fixed_bytes!(
	/// An ML-DSA-65 public (verification) key: 1952 bytes, FIPS 204 encoding.
	MlDsaPublicKey,
	ML_DSA_65_PUBLIC_KEY_LEN,
	[u8; ML_DSA_65_PUBLIC_KEY_LEN]
);
impl MlDsaPublicKey {
	/// The 32-byte id of this key as a service key: `blake2_256(public key bytes)` (the
	/// registry maps it to the provider that holds the key). Not an account id: an ML-DSA
	/// account's id is [`crate::account::account_id`].
	pub fn key_id(&self) -> [u8; 32] {
		sp_crypto_hashing::blake2_256(&self.0)
	}

	/// The id of the ML-DSA account this key controls ([`crate::account::account_id`]).
	pub fn account_id(&self) -> [u8; 32] {
		crate::account::account_id(self)
	}
}

fixed_bytes!(
	/// An ML-DSA-65 signature: 3309 bytes, FIPS 204 encoding. Described to metadata as three
	/// arrays of 1103 bytes, which encode exactly like 3309 bytes: polkadot.js (and every
	/// wallet built on it) refuses fixed arrays of more than 2048 elements.
	MlDsaSignature,
	ML_DSA_65_SIGNATURE_LEN,
	[[u8; ML_DSA_65_SIGNATURE_LEN / 3]; 3]
);

/// Lower-case hex with a `0x` prefix.
pub fn to_hex(bytes: &[u8]) -> alloc::string::String {
	const DIGITS: &[u8; 16] = b"0123456789abcdef";
	let mut s = alloc::string::String::with_capacity(2 + bytes.len() * 2);
	s.push_str("0x");
	for b in bytes {
		s.push(DIGITS[(b >> 4) as usize] as char);
		s.push(DIGITS[(b & 0xf) as usize] as char);
	}
	s
}

/// Parses hex, with or without a `0x` prefix.
pub fn from_hex(s: &str) -> Result<alloc::vec::Vec<u8>, &'static str> {
	let s = s.strip_prefix("0x").unwrap_or(s);
	if !s.len().is_multiple_of(2) {
		return Err("odd number of hex digits");
	}
	let digit = |c: u8| match c {
		b'0'..=b'9' => Ok(c - b'0'),
		b'a'..=b'f' => Ok(c - b'a' + 10),
		b'A'..=b'F' => Ok(c - b'A' + 10),
		_ => Err("not a hex digit"),
	};
	s.as_bytes().chunks(2).map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

fixed_bytes!(
	/// An ML-KEM-768 encapsulation key: 1184 bytes, FIPS 203 encoding. A client sends a fresh
	/// one when it opens a session with an unlisted provider; the provider seals the endpoint
	/// to it ([`crate::reveal`]).
	MlKemEncapsulationKey,
	crate::reveal::ML_KEM_768_ENCAPSULATION_KEY_LEN,
	[u8; crate::reveal::ML_KEM_768_ENCAPSULATION_KEY_LEN]
);

fixed_bytes!(
	/// An ML-KEM-768 ciphertext: 1088 bytes, FIPS 203 encoding.
	MlKemCiphertext,
	crate::reveal::ML_KEM_768_CIPHERTEXT_LEN,
	[u8; crate::reveal::ML_KEM_768_CIPHERTEXT_LEN]
);

fixed_bytes!(
	/// A sealed endpoint's AEAD ciphertext: the padded endpoint encrypted with
	/// ChaCha20-Poly1305, tag included ([`crate::reveal`]).
	SealedEndpointCiphertext,
	crate::reveal::SEALED_ENDPOINT_CIPHERTEXT_LEN,
	[u8; crate::reveal::SEALED_ENDPOINT_CIPHERTEXT_LEN]
);
