//! The dCDN's HTTP protocol: paths, headers, the JSON bodies and `Range` parsing. Specified
//! in `docs/cdn-protocol.md`; this module is the agent's and the client's shared reference.

use codec::{Decode, Encode};
use interlattice_pq_crypto::{MlDsaPublicKey, MlDsaSignature};
use serde::{Deserialize, Serialize};

/// Path where a client exchanges a capability signed by its session key for a bearer token.
pub const TOKEN_PATH: &str = "/token";
/// Domain tag of a capability's signing payload.
pub const CAPABILITY_TAG: &[u8] = b"interlattice/cdn-capability/v1";
/// The longest a capability (and the token it buys) may live.
pub const MAX_CAPABILITY_SECS: u64 = 3_600;
/// Header on slice responses: the object's full length.
pub const CONTENT_SIZE_HEADER: &str = "x-content-size";
/// Path prefix of objects: `/content/<hash>`.
pub const CONTENT_PATH: &str = "/content/";
/// Path prefix of verified slices: `/slice/<hash>?start=S&len=L`.
pub const SLICE_PATH: &str = "/slice/";
/// Receipts are posted here.
pub const RECEIPTS_PATH: &str = "/receipts";
/// Publishing endpoint.
pub const PUBLISH_PATH: &str = "/publish";

/// What a client signs with its session key to prove to an agent that a request is paid
/// from its session: bound to the provider, the session, a fresh nonce (each is accepted
/// once) and an expiry. Exchanged at [`TOKEN_PATH`] for a bearer token; a session id alone
/// (public on-chain) buys nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capability {
	/// The provider's account id (32 bytes, hex in JSON).
	#[serde(with = "interlattice_pq_crypto::serde_helpers::bytes32_as_hex")]
	pub provider: [u8; 32],
	/// The session paying.
	pub session_id: u64,
	/// Fresh random bytes (hex in JSON).
	#[serde(with = "interlattice_pq_crypto::serde_helpers::bytes32_as_hex")]
	pub nonce: [u8; 32],
	/// Unix time (seconds) after which it is refused; at most [`MAX_CAPABILITY_SECS`] ahead.
	pub expires_at: u64,
}

impl Capability {
	/// The bytes signed: [`CAPABILITY_TAG`] followed by the SCALE encoding.
	pub fn signing_payload(&self) -> Vec<u8> {
		let mut out = CAPABILITY_TAG.to_vec();
		self.encode_to(&mut out);
		out
	}

	/// Whether `signature` is `key`'s over this capability.
	pub fn verify(&self, key: &MlDsaPublicKey, signature: &MlDsaSignature) -> bool {
		interlattice_pq_crypto::verify(key, &self.signing_payload(), signature)
	}
}

/// A capability with the session key's signature: the body of `POST /token`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedCapability {
	/// What is claimed.
	pub capability: Capability,
	/// ML-DSA-65 signature by the session's client key (context `"interlattice"`).
	pub signature: MlDsaSignature,
}

/// The answer to `POST /token`: send `Authorization: Bearer <token>` with the session's
/// requests until `expiresAt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenGrant {
	/// 32 random bytes, hex.
	pub token: String,
	/// Unix time (seconds) the token expires.
	pub expires_at: u64,
}

/// The token in an `Authorization: Bearer <64 hex digits>` header value, if it is one.
pub fn parse_bearer(value: &[u8]) -> Option<[u8; 32]> {
	let value = std::str::from_utf8(value).ok()?;
	let token = value.strip_prefix("Bearer ")?.trim();
	if token.len() != 64 {
		return None;
	}
	let bytes = hex::decode(token).ok()?;
	<[u8; 32]>::try_from(bytes).ok()
}

/// The answer to a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
	/// The object's BLAKE3 hash (hex).
	pub hash: String,
	/// Its length.
	pub size: u64,
}

/// The body of `402 Payment Required` and of a receipt's acknowledgement: where the session
/// stands with this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
	/// The session.
	pub session_id: u64,
	/// Bytes served so far (bodies of content and slice responses).
	pub served_bytes: u64,
	/// Bytes the latest acknowledged receipt covers.
	pub paid_bytes: u64,
	/// Sequence of the latest acknowledged receipt.
	pub sequence: u64,
	/// What a receipt covering everything served must carry (decimal string).
	pub amount_due: String,
	/// How many more bytes are served before the next receipt is needed.
	pub allowance: u64,
	/// The deposit cannot pay for more: top up, then send a receipt.
	pub deposit_exhausted: bool,
}

/// An error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
	/// What went wrong, for people.
	pub error: String,
	/// Where the session stands, for 402 answers.
	#[serde(skip_serializing_if = "Option::is_none", default)]
	pub session: Option<SessionStatus>,
}

/// A parsed `Range` header, against an object of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
	/// No usable range: serve the whole object (`200`). Also the answer to a syntactically
	/// invalid header and, by decision, to multi-range requests (RFC 9110 §14.2 lets a
	/// server ignore `Range`).
	Full,
	/// One satisfiable range, inclusive `first..=last` (`206`).
	Partial {
		/// First byte.
		first: u64,
		/// Last byte.
		last: u64,
	},
	/// Valid syntax, but no byte of it is in the object (`416`).
	Unsatisfiable,
}

/// Parses `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (RFC 9110 §14.1.2).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
	let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
		return RangeRequest::Full;
	};
	if spec.contains(',') {
		return RangeRequest::Full;
	}
	let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Full };
	let (a, b) = (a.trim(), b.trim());
	let parse = |s: &str| s.parse::<u64>().ok().filter(|_| s.bytes().all(|c| c.is_ascii_digit()));
	match (a.is_empty(), b.is_empty()) {
		(true, true) => RangeRequest::Full,
		(true, false) => match parse(b) {
			None => RangeRequest::Full,
			Some(0) => RangeRequest::Unsatisfiable,
			Some(_) if size == 0 => RangeRequest::Unsatisfiable,
			Some(n) => RangeRequest::Partial { first: size.saturating_sub(n), last: size - 1 },
		},
		(false, _) => {
			let Some(first) = parse(a) else { return RangeRequest::Full };
			let last = if b.is_empty() {
				u64::MAX
			} else {
				match parse(b) {
					Some(l) if l >= first => l,
					_ => return RangeRequest::Full,
				}
			};
			if first >= size {
				RangeRequest::Unsatisfiable
			} else {
				RangeRequest::Partial { first, last: last.min(size - 1) }
			}
		},
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use RangeRequest::*;

	#[test]
	fn ranges() {
		assert_eq!(parse_range(None, 100), Full);
		assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial { first: 0, last: 9 });
		assert_eq!(parse_range(Some("bytes=90-"), 100), Partial { first: 90, last: 99 });
		assert_eq!(parse_range(Some("bytes=90-1000"), 100), Partial { first: 90, last: 99 });
		assert_eq!(parse_range(Some("bytes=-10"), 100), Partial { first: 90, last: 99 });
		assert_eq!(parse_range(Some("bytes=-1000"), 100), Partial { first: 0, last: 99 });
		assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
		assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
		assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
		assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
		assert_eq!(parse_range(Some("bytes=9-1"), 100), Full);
		assert_eq!(parse_range(Some("bytes=+1-2"), 100), Full);
		assert_eq!(parse_range(Some("items=0-1"), 100), Full);
		assert_eq!(parse_range(Some("bytes=x"), 100), Full);
	}
}

/// Fuzzing of what the agent reads from requests: `Range` headers, bearer tokens, capability
/// and receipt bodies. Any input gives an answer within bounds or a clear refusal, never a
/// panic.
#[cfg(test)]
mod fuzz {
	use super::*;
	use proptest::prelude::*;

	/// What RFC 9110 says `bytes=first-last` means for an object of `size` bytes.
	fn model(first: u64, last: Option<u64>, size: u64) -> RangeRequest {
		match last {
			Some(l) if l < first => RangeRequest::Full,
			_ if first >= size => RangeRequest::Unsatisfiable,
			l => RangeRequest::Partial { first, last: l.unwrap_or(u64::MAX).min(size - 1) },
		}
	}

	proptest! {
		#![proptest_config(ProptestConfig { cases: 4_000, failure_persistence: None, ..ProptestConfig::default() })]

		#[test]
		fn any_range_header_is_full_unsatisfiable_or_within_the_object(header in ".{0,64}", size in any::<u64>()) {
			if let RangeRequest::Partial { first, last } = parse_range(Some(&header), size) {
				prop_assert!(first <= last && last < size);
			}
		}

		#[test]
		fn byte_ranges_mean_what_rfc_9110_says(first in any::<u64>(), last in proptest::option::of(any::<u64>()), size in 0u64..1 << 40) {
			let header = format!("bytes={first}-{}", last.map(|l| l.to_string()).unwrap_or_default());
			prop_assert_eq!(parse_range(Some(&header), size), model(first, last, size));
		}

		#[test]
		fn any_authorization_value_is_a_token_or_nothing(value in proptest::collection::vec(any::<u8>(), 0..128)) {
			if let Some(token) = parse_bearer(&value) {
				let text = std::str::from_utf8(&value).unwrap();
				let rest = text.strip_prefix("Bearer ").unwrap().trim();
				prop_assert_eq!(rest.to_ascii_lowercase(), hex::encode(token));
			}
		}

		#[test]
		fn any_body_is_a_capability_a_receipt_or_an_error(body in proptest::collection::vec(any::<u8>(), 0..8_192)) {
			let _ = serde_json::from_slice::<SignedCapability>(&body);
			let _ = serde_json::from_slice::<interlattice_pq_crypto::SignedUsageReceipt>(&body);
		}

		#[test]
		fn capabilities_round_trip_and_only_their_own_signature_verifies(session_id in any::<u64>(), nonce in any::<[u8; 32]>(), expires_at in any::<u64>()) {
			let capability = Capability { provider: [5; 32], session_id, nonce, expires_at };
			let json = serde_json::to_string(&capability).unwrap();
			prop_assert_eq!(serde_json::from_str::<Capability>(&json).unwrap(), capability);
			let other = Capability { session_id: session_id.wrapping_add(1), ..capability };
			prop_assert_ne!(capability.signing_payload(), other.signing_payload());
		}
	}
}
