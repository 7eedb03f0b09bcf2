//! `CheckReceipts`: settlement calls are checked before they enter the transaction pool, so
//! blocks are not filled with receipts that cannot settle, and without giving anyone free
//! work.
//!
//! For a transaction from the network or the local node (not when a block is applied), a
//! `settle_receipt` or `settle_receipts` call is checked with the **cheap** checks only,
//! cheapest first:
//!
//! 1. the transaction is signed (a bare or general transaction carrying a settlement call is
//!    refused: `BadSigner`);
//! 2. every receipt's session belongs to the signer (its provider or the provider's settler):
//!    the first receipt that does not makes the whole transaction invalid (`Custom(i)` with
//!    `i` = the index of `NotSettler`), so a stranger costs the node one storage read;
//! 3. each receipt's terms (chain, provider, session nonce, window, amount above what is
//!    settled, amount within usage and deposit), without its signature.
//!
//! The transaction is valid if at least one receipt passes: one receipt that went stale (the
//! client settled it, another batch got there first) does not evict a provider's whole batch;
//! dispatch rejects it on its own (`ReceiptRejected`). If none passes, the first receipt's
//! error decides: `Stale` for a replay, `Custom(i)` with `i` the index of the escrow error
//! otherwise. No ML-DSA signature is verified in the pool: signatures are verified at dispatch,
//! where the submitter pays for every receipt, valid or not. The runtime orders this extension
//! after `ChargeTransactionPayment`, so an account that cannot pay the fee is refused first.
//! Calls nested in `utility` batches are not looked into; they are checked, and paid for, at
//! dispatch.

use codec::{Decode, DecodeWithMemTracking, Encode};
use core::marker::PhantomData;
use frame_support::{pallet_prelude::TransactionSource, traits::IsSubType, DefaultNoBound};
use interlattice_pq_crypto::SignedUsageReceipt;
use scale_info::TypeInfo;
use sp_runtime::{
	impl_tx_ext_default,
	traits::{AsSystemOriginSigner, DispatchInfoOf, TransactionExtension},
	transaction_validity::{InvalidTransaction, TransactionValidityError},
	DispatchError,
};

use crate::{Call, Config, Error, Pallet, Sessions};

/// What the pool's check of a settlement call found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolCheck {
	/// At least this many receipts pass the cheap checks.
	Settles(u32),
	/// None does: the first receipt's error.
	Refused(DispatchError),
}

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

/// Why a receipt would not settle, as a transaction validity error: `Stale` for a replay,
/// `Custom(i)` with `i` the escrow error's index otherwise.
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
	/// Whether `receipt` would settle now if `who` submitted it, every check included (the
	/// signature too); the error it would fail with otherwise. For clients and agents
	/// (`SessionEscrowApi::check_receipt`), not the pool.
	pub fn would_settle(who: &T::AccountId, receipt: &SignedUsageReceipt) -> Result<(), DispatchError> {
		let session = Sessions::<T>::get(receipt.receipt.session_id).ok_or(Error::<T>::SessionNotFound)?;
		frame_support::ensure!(Self::may_settle(who, &session), Error::<T>::NotSettler);
		Self::check_receipt(&session, receipt, frame_system::Pallet::<T>::block_number())
	}

	/// The pool's check of the receipts `who` submits (see the module's documentation): at
	/// most one storage read per receipt, no signature verification; refused at the first
	/// receipt of a session that is not `who`'s to settle.
	pub fn pool_check(who: &T::AccountId, receipts: &[SignedUsageReceipt]) -> PoolCheck {
		let now = frame_system::Pallet::<T>::block_number();
		let mut settles = 0u32;
		let mut first_error = None;
		for receipt in receipts {
			let outcome = match Sessions::<T>::get(receipt.receipt.session_id) {
				None => Err(Error::<T>::SessionNotFound.into()),
				Some(session) if !Self::may_settle(who, &session) => {
					return PoolCheck::Refused(Error::<T>::NotSettler.into())
				},
				Some(session) => Self::check_receipt_terms(&session, receipt, now),
			};
			match outcome {
				Ok(()) => settles = settles.saturating_add(1),
				Err(e) => {
					first_error.get_or_insert(e);
				},
			}
		}
		match (settles, first_error) {
			(0, Some(e)) => PoolCheck::Refused(e),
			(n, _) => PoolCheck::Settles(n),
		}
	}
}

impl<T> TransactionExtension<<T as frame_system::Config>::RuntimeCall> for CheckReceipts<T>
where
	T: Config + Send + Sync,
	<T as frame_system::Config>::RuntimeCall: IsSubType<Call<T>>,
	<T as frame_system::Config>::RuntimeOrigin: AsSystemOriginSigner<T::AccountId> + Clone,
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
		if source == TransactionSource::InBlock {
			return Ok((Default::default(), (), origin));
		}
		let receipts: &[SignedUsageReceipt] = match call.is_sub_type() {
			Some(Call::settle_receipt { receipt }) => core::slice::from_ref(&**receipt),
			Some(Call::settle_receipts { receipts }) => receipts,
			_ => return Ok((Default::default(), (), origin)),
		};
		let Some(who) = origin.as_system_origin_signer() else {
			return Err(InvalidTransaction::BadSigner.into());
		};
		if let PoolCheck::Refused(error) = Pallet::<T>::pool_check(who, receipts) {
			return Err(invalid_receipt::<T>(error));
		}
		Ok((Default::default(), (), origin))
	}

	impl_tx_ext_default!(<T as frame_system::Config>::RuntimeCall; prepare);
}
