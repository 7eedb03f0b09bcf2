//! `CheckReceipts`: receipts are verified before they enter the transaction pool, so blocks
//! are not filled with receipts that cannot settle.
//!
//! For a transaction from the network or the local node (not when a block is applied), a
//! `settle_receipt` or `settle_receipts` call is checked receipt by receipt with exactly the
//! checks settlement makes (session, chain, window, sequence, amounts, ML-DSA-65 signature);
//! any invalid receipt makes the whole transaction invalid: `Stale` for a replayed receipt,
//! `BadProof` for a wrong signature, `Custom(i)` with `i` the index of the escrow error
//! otherwise. Inside a block nothing is re-checked here (dispatch checks again, and charges
//! the submitter for every receipt, so a receipt that went stale between the pool and the
//! block still costs its submitter). Calls nested in `utility` batches are not looked into;
//! they are checked, and paid for, at dispatch.

use codec::{Decode, DecodeWithMemTracking, Encode};
use core::marker::PhantomData;
use frame_support::{pallet_prelude::TransactionSource, traits::IsSubType, DefaultNoBound};
use interlattice_pq_crypto::SignedUsageReceipt;
use scale_info::TypeInfo;
use sp_runtime::{
	impl_tx_ext_default,
	traits::{DispatchInfoOf, TransactionExtension},
	transaction_validity::{InvalidTransaction, TransactionValidityError},
	DispatchError,
};

use crate::{Call, Config, Error, Pallet, Sessions};

/// Verifies the receipts of settlement calls before they enter the pool.
#[derive(Encode, Decode, DecodeWithMemTracking, DefaultNoBound, Clone, Eq, PartialEq, TypeInfo)]
#[scale_info(skip_type_params(T))]
pub struct CheckReceipts<T>(PhantomData<T>);

impl<T> core::fmt::Debug for CheckReceipts<T> {
	fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
		write!(f, "CheckReceipts")
	}
}

impl<T> CheckReceipts<T> {
	/// The extension (it carries no data).
	pub fn new() -> Self {
		Self(PhantomData)
	}
}

/// Why a receipt would not settle, as a transaction validity error.
pub fn invalid_receipt<T: Config>(error: DispatchError) -> TransactionValidityError {
	if error == Error::<T>::ReceiptReplayed.into() {
		InvalidTransaction::Stale.into()
	} else if error == Error::<T>::BadSignature.into() {
		InvalidTransaction::BadProof.into()
	} else {
		let code = match error {
			DispatchError::Module(m) => m.error[0],
			_ => u8::MAX,
		};
		InvalidTransaction::Custom(code).into()
	}
}

impl<T: Config> Pallet<T> {
	/// Whether `receipt` would settle now; the error it would fail with otherwise.
	pub fn would_settle(receipt: &SignedUsageReceipt) -> Result<(), DispatchError> {
		let session = Sessions::<T>::get(receipt.receipt.session_id).ok_or(Error::<T>::SessionNotFound)?;
		Self::check_receipt(&session, receipt, frame_system::Pallet::<T>::block_number())
	}
}

impl<T> TransactionExtension<<T as frame_system::Config>::RuntimeCall> for CheckReceipts<T>
where
	T: Config + Send + Sync,
	<T as frame_system::Config>::RuntimeCall: IsSubType<Call<T>>,
{
	const IDENTIFIER: &'static str = "CheckReceipts";
	type Implicit = ();
	type Val = ();
	type Pre = ();

	fn weight(&self, _: &<T as frame_system::Config>::RuntimeCall) -> sp_runtime::Weight {
		// Nothing runs when a block is applied; pool checks are not block weight.
		sp_runtime::Weight::zero()
	}

	fn validate(
		&self,
		origin: <T as frame_system::Config>::RuntimeOrigin,
		call: &<T as frame_system::Config>::RuntimeCall,
		_info: &DispatchInfoOf<<T as frame_system::Config>::RuntimeCall>,
		_len: usize,
		_self_implicit: Self::Implicit,
		_inherited_implication: &impl Encode,
		source: TransactionSource,
	) -> sp_runtime::traits::ValidateResult<Self::Val, <T as frame_system::Config>::RuntimeCall> {
		if source != TransactionSource::InBlock {
			let check = |r: &SignedUsageReceipt| Pallet::<T>::would_settle(r).map_err(invalid_receipt::<T>);
			match call.is_sub_type() {
				Some(Call::settle_receipt { receipt }) => check(receipt)?,
				Some(Call::settle_receipts { receipts }) => {
					for r in receipts.iter() {
						check(r)?;
					}
				},
				_ => {},
			}
		}
		Ok((Default::default(), (), origin))
	}

	impl_tx_ext_default!(<T as frame_system::Config>::RuntimeCall; prepare);
}
