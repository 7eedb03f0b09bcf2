//! The records the escrow stores, and the price arithmetic.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use frame_support::{
	pallet_prelude::*, traits::fungible::Inspect, CloneNoBound, DebugNoBound, EqNoBound, PartialEqNoBound,
};
use frame_system::pallet_prelude::BlockNumberFor;
use interlattice_pq_crypto::MlDsaPublicKey;
use pallet_provider_registry::{Prices, ServiceKind};
use scale_info::TypeInfo;
use sp_runtime::{helpers_128bit::multiply_by_rational_with_rounding, Rounding, Saturating};

use crate::Config;

/// Balance of the escrow's currency.
pub type BalanceOf<T> = <<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;
/// A session of runtime `T`.
pub type SessionOf<T> = Session<T>;

/// Identifies a session; assigned in order, never reused.
pub type SessionId = u64;

/// Bytes in a GiB: the unit of the per-GiB price.
pub const GIB: u128 = 1 << 30;
/// Seconds in an hour: the unit of the per-hour price.
pub const SECONDS_PER_HOUR: u128 = 3_600;

/// Where a session is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
pub enum SessionStatus<BlockNumber> {
	/// Service may be used; receipts settle; the client may top up.
	Open,
	/// The client closed the session: no more service, no top-ups; the provider can settle
	/// its last receipts up to and including block `settle_until`.
	Closing {
		/// Last block in which receipts settle.
		settle_until: BlockNumber,
	},
}

/// One session: a client's escrowed deposit for one provider's service.
#[derive(CloneNoBound, PartialEqNoBound, EqNoBound, DebugNoBound, Encode, Decode, MaxEncodedLen, TypeInfo)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct Session<T: Config> {
	/// Who pays (its deposit is held with `HoldReason::SessionDeposit`).
	pub client: T::AccountId,
	/// Who serves and is paid.
	pub provider: T::AccountId,
	/// The service used.
	pub service: ServiceKind,
	/// The client's ML-DSA-65 key for this session: every receipt must be signed by it.
	pub client_key: MlDsaPublicKey,
	/// Fixed by the chain at opening ([`session_nonce`]); every receipt names it, so a
	/// receipt pays only this opening of this session id.
	pub nonce: [u8; 32],
	/// The provider's prices when the session opened; they bind for the whole session.
	pub prices: Prices<BalanceOf<T>>,
	/// Everything the client deposited (opening deposit plus top-ups).
	pub deposit: BalanceOf<T>,
	/// Cumulative amount settled so far (paid to the provider, protocol fee included).
	pub settled: BalanceOf<T>,
	/// Sequence number of the last settled receipt (0: none yet). Informational: the amount
	/// decides what settles.
	pub sequence: u64,
	/// Cumulative bytes of the last settled receipt (they justify `settled`).
	pub bytes: u64,
	/// Cumulative seconds of the last settled receipt (they justify `settled`).
	pub seconds: u64,
	/// Block the session opened in.
	pub opened_at: BlockNumberFor<T>,
	/// Last block of service; receipts settle until `expires_at + SettlementWindow`.
	pub expires_at: BlockNumberFor<T>,
	/// Open or closing.
	pub status: SessionStatus<BlockNumberFor<T>>,
}

impl<T: Config> Session<T> {
	/// What is still escrowed: the deposit minus what was settled. Equals this session's
	/// share of the client's hold.
	pub fn remaining(&self) -> BalanceOf<T> {
		self.deposit.saturating_sub(self.settled)
	}

	/// The last block in which receipts for this session settle.
	pub fn settle_until(&self, window: BlockNumberFor<T>) -> BlockNumberFor<T> {
		let by_expiry = self.expires_at.saturating_add(window);
		match self.status {
			SessionStatus::Open => by_expiry,
			SessionStatus::Closing { settle_until } => settle_until.min(by_expiry),
		}
	}
}

/// The most a client can owe for `bytes` and `seconds` of service at `prices`:
/// `floor(bytes × per_gib / 2^30) + floor(seconds × per_hour / 3600)`, exact in 256-bit
/// intermediate arithmetic. `None` if it exceeds `u128`.
pub fn max_amount_owed(prices: &Prices<u128>, bytes: u64, seconds: u64) -> Option<u128> {
	let for_bytes = multiply_by_rational_with_rounding(bytes.into(), prices.per_gib, GIB, Rounding::Down)?;
	let for_time =
		multiply_by_rational_with_rounding(seconds.into(), prices.per_hour, SECONDS_PER_HOUR, Rounding::Down)?;
	for_bytes.checked_add(for_time)
}

/// An account id as the 32 bytes a receipt names it by: its SCALE encoding (an `AccountId32`
/// is its 32 bytes), zero-padded or cut to 32 bytes for other account types.
pub fn account_bytes<A: Encode>(account: &A) -> [u8; 32] {
	let mut out = [0u8; 32];
	account.using_encoded(|bytes| {
		let n = bytes.len().min(32);
		out[..n].copy_from_slice(&bytes[..n]);
	});
	out
}

/// Domain tag of a session's nonce.
pub const SESSION_NONCE_TAG: &[u8] = b"interlattice/session-nonce/v1";

/// The nonce of a session opened with id `session_id` by `client` with `provider`, in the
/// block whose parent is `parent_hash`, by the extrinsic at `extrinsic_index`:
/// `blake2_256(tag ++ parent_hash ++ extrinsic_index (u32 LE) ++ session_id (u64 LE) ++ client
/// ++ provider)`. Different on every fork and on every chain, even one relaunched from the
/// same genesis: its parent block differs.
pub fn session_nonce(
	parent_hash: &[u8],
	extrinsic_index: u32,
	session_id: SessionId,
	client: &[u8],
	provider: &[u8],
) -> [u8; 32] {
	let mut input = alloc::vec::Vec::with_capacity(
		SESSION_NONCE_TAG.len() + parent_hash.len() + 12 + client.len() + provider.len(),
	);
	input.extend_from_slice(SESSION_NONCE_TAG);
	input.extend_from_slice(parent_hash);
	input.extend_from_slice(&extrinsic_index.to_le_bytes());
	input.extend_from_slice(&session_id.to_le_bytes());
	input.extend_from_slice(client);
	input.extend_from_slice(provider);
	<sp_runtime::traits::BlakeTwo256 as sp_runtime::traits::Hash>::hash(&input).0
}

/// The protocol fee included in a cumulative settled `amount`: `fee × amount`, rounded
/// down. A receipt pays the difference between this for its amount and for the amount
/// settled before, so the fee is taken on the cumulative amount and small receipts cannot
/// slip under it.
pub fn cumulative_fee(fee: sp_runtime::Perbill, amount: u128) -> u128 {
	fee.mul_floor(amount)
}
