//! The usage receipt: what a client signs to acknowledge cumulative usage of a session.
//!
//! The exact byte layout of the signing payload is specified in `docs/receipt-format.md`;
//! this module is its reference implementation, shared by the runtime and the agents.

use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

use crate::{MlDsaPublicKey, MlDsaSignature};

/// Domain tag that starts every receipt's signing payload (29 bytes, ASCII). Version 2 binds
/// the provider and the session's nonce; a version-1 signature never verifies as version 2.
pub const RECEIPT_DOMAIN_TAG: &[u8; 29] = b"interlattice/usage-receipt/v2";

/// Length of a receipt's signing payload: tag (29) + genesis hash (32) + provider (32)
/// + session id (8) + session nonce (32) + sequence (8) + bytes (8) + seconds (8)
/// + amount (16).
pub const RECEIPT_PAYLOAD_LEN: usize = 29 + 32 + 32 + 8 + 32 + 8 + 8 + 8 + 16;

/// Cumulative usage of one session, as acknowledged by the client. A later receipt replaces
/// an earlier one; the chain settles a receipt only if its amount is above what the session
/// has settled so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase", deny_unknown_fields))]
pub struct UsageReceipt {
	/// Genesis hash of the chain the session lives on: a receipt never crosses chains.
	#[cfg_attr(feature = "serde", serde(with = "crate::serde_helpers::bytes32_as_hex"))]
	pub genesis_hash: [u8; 32],
	/// The provider's account id (32 bytes): who may be paid with this receipt.
	#[cfg_attr(feature = "serde", serde(with = "crate::serde_helpers::bytes32_as_hex"))]
	pub provider: [u8; 32],
	/// The on-chain session this receipt is for.
	pub session_id: u64,
	/// The session's nonce, fixed by the chain when the session opened: binds the receipt
	/// to this one opening (not to another session that got the same id on another chain
	/// with the same genesis, or on another fork).
	#[cfg_attr(feature = "serde", serde(with = "crate::serde_helpers::bytes32_as_hex"))]
	pub session_nonce: [u8; 32],
	/// Counts the client's receipts of the session (1, 2, …): orders them for the client and
	/// the agent. The chain does not use it: the amount decides.
	pub sequence: u64,
	/// Bytes used so far in this session (both directions).
	pub bytes: u64,
	/// Seconds of service so far, where the service is priced by time (else 0).
	pub seconds: u64,
	/// Amount owed so far for this session, in the native token's smallest unit.
	#[cfg_attr(feature = "serde", serde(with = "crate::serde_helpers::amount_as_string"))]
	pub amount: u128,
}

impl UsageReceipt {
	/// The exact bytes the client signs: [`RECEIPT_DOMAIN_TAG`] followed by the SCALE
	/// encoding of the receipt (fixed-width little-endian integers, no length prefixes).
	pub fn signing_payload(&self) -> Vec<u8> {
		let mut payload = Vec::with_capacity(RECEIPT_PAYLOAD_LEN);
		payload.extend_from_slice(RECEIPT_DOMAIN_TAG);
		self.encode_to(&mut payload);
		payload
	}

	/// Whether `signature` is a valid signature of this receipt by `signer`.
	pub fn verify(&self, signer: &MlDsaPublicKey, signature: &MlDsaSignature) -> bool {
		crate::verify(signer, &self.signing_payload(), signature)
	}
}

/// A receipt with the client's ML-DSA-65 signature. The signer's key is not carried: the
/// chain stores it once per session.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase", deny_unknown_fields))]
pub struct SignedUsageReceipt {
	/// The receipt.
	pub receipt: UsageReceipt,
	/// ML-DSA-65 signature of `receipt.signing_payload()` with context [`crate::CONTEXT`].
	pub signature: MlDsaSignature,
}

impl SignedUsageReceipt {
	/// Whether the signature is valid for `signer`.
	pub fn verify(&self, signer: &MlDsaPublicKey) -> bool {
		self.receipt.verify(signer, &self.signature)
	}
}
