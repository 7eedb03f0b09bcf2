//! The escrow's logic: every check before any write.

use frame_support::{
	ensure,
	pallet_prelude::*,
	storage::with_storage_layer,
	traits::{
		fungible::{InspectHold, MutateHold},
		tokens::{Fortitude, Precision, Restriction},
	},
};
use frame_system::pallet_prelude::BlockNumberFor;
use interlattice_pq_crypto::{
	reveal::{encapsulation_key_is_valid, MlKemEncapsulationKey, SealedEndpoint},
	MlDsaPublicKey, SignedUsageReceipt,
};
use pallet_provider_registry::{Prices, ProviderRegistry, ServiceKind};
use sp_runtime::{
	traits::{Saturating, Zero},
	DispatchError, DispatchResult,
};

use crate::{
	account_bytes, cumulative_fee, max_amount_owed, pallet::*, session_nonce, BalanceOf, Session, SessionId,
	SessionStatus,
};

impl<T: Config> Pallet<T> {
	fn hold_reason() -> T::RuntimeHoldReason {
		HoldReason::SessionDeposit.into()
	}

	fn ensure_can_hold(who: &T::AccountId, amount: BalanceOf<T>) -> DispatchResult {
		ensure!(
			CurrencyOf::<T>::ensure_can_hold(&Self::hold_reason(), who, amount).is_ok(),
			Error::<T>::InsufficientBalance
		);
		Ok(())
	}

	/// This chain's genesis hash, as bytes (what every receipt must name).
	pub fn genesis_hash() -> [u8; 32] {
		let hash = frame_system::Pallet::<T>::block_hash(BlockNumberFor::<T>::zero());
		let mut out = [0u8; 32];
		let bytes = hash.as_ref();
		let n = bytes.len().min(32);
		out[..n].copy_from_slice(&bytes[..n]);
		out
	}

	pub(crate) fn do_open_session(
		client: T::AccountId,
		provider: T::AccountId,
		service: ServiceKind,
		client_key: MlDsaPublicKey,
		max_prices: Prices<BalanceOf<T>>,
		deposit: BalanceOf<T>,
		duration: BlockNumberFor<T>,
	) -> Result<SessionId, DispatchError> {
		let summary = T::Registry::provider(&provider).ok_or(Error::<T>::ProviderNotFound)?;
		ensure!(summary.active, Error::<T>::ProviderNotActive);
		ensure!(summary.services.offers(service), Error::<T>::ServiceNotOffered);
		ensure!(
			summary.prices.per_gib <= max_prices.per_gib && summary.prices.per_hour <= max_prices.per_hour,
			Error::<T>::PriceAboveMaximum
		);
		ensure!(deposit >= T::MinDeposit::get(), Error::<T>::DepositTooLow);
		ensure!(!duration.is_zero() && duration <= T::MaxSessionDuration::get(), Error::<T>::InvalidDuration);
		Self::ensure_can_hold(&client, deposit)?;
		let session_id = NextSessionId::<T>::get();
		let next_id = session_id.checked_add(1).ok_or(Error::<T>::Overflow)?;
		let mut client_sessions = ClientSessions::<T>::get(&client);
		client_sessions.try_push(session_id).map_err(|_| Error::<T>::TooManySessions)?;

		CurrencyOf::<T>::hold(&Self::hold_reason(), &client, deposit)?;
		let now = frame_system::Pallet::<T>::block_number();
		let expires_at = now.saturating_add(duration);
		let nonce = session_nonce(
			frame_system::Pallet::<T>::parent_hash().as_ref(),
			frame_system::Pallet::<T>::extrinsic_index().unwrap_or_default(),
			session_id,
			client.encode().as_ref(),
			provider.encode().as_ref(),
		);
		let session = Session::<T> {
			client: client.clone(),
			provider: provider.clone(),
			service,
			client_key,
			nonce,
			prices: summary.prices,
			deposit,
			settled: Zero::zero(),
			sequence: 0,
			bytes: 0,
			seconds: 0,
			opened_at: now,
			expires_at,
			status: SessionStatus::Open,
		};
		Sessions::<T>::insert(session_id, session);
		NextSessionId::<T>::put(next_id);
		ClientSessions::<T>::insert(&client, client_sessions);
		ProviderSessions::<T>::insert(&provider, session_id, ());
		Self::deposit_event(Event::SessionOpened {
			session_id,
			client,
			provider,
			service,
			prices: summary.prices,
			deposit,
			expires_at,
			nonce,
		});
		Ok(session_id)
	}

	#[allow(clippy::too_many_arguments)]
	pub(crate) fn do_open_unlisted_session(
		client: T::AccountId,
		provider: T::AccountId,
		service: ServiceKind,
		client_key: MlDsaPublicKey,
		max_prices: Prices<BalanceOf<T>>,
		deposit: BalanceOf<T>,
		duration: BlockNumberFor<T>,
		reveal_key: MlKemEncapsulationKey,
	) -> DispatchResult {
		ensure!(encapsulation_key_is_valid(&reveal_key), Error::<T>::InvalidRevealKey);
		let session_id =
			Self::do_open_session(client, provider.clone(), service, client_key, max_prices, deposit, duration)?;
		RevealKeys::<T>::insert(session_id, reveal_key);
		Self::deposit_event(Event::EndpointRequested { session_id, provider });
		Ok(())
	}

	pub(crate) fn do_reveal_endpoint(
		who: T::AccountId,
		session_id: SessionId,
		sealed: SealedEndpoint,
	) -> DispatchResult {
		let session = Sessions::<T>::get(session_id).ok_or(Error::<T>::SessionNotFound)?;
		ensure!(Self::may_settle(&who, &session), Error::<T>::NotSettler);
		ensure!(session.status == SessionStatus::Open, Error::<T>::SessionClosing);
		ensure!(RevealKeys::<T>::contains_key(session_id), Error::<T>::NoRevealRequested);
		SealedEndpoints::<T>::insert(session_id, sealed);
		Self::deposit_event(Event::EndpointRevealed { session_id, provider: session.provider });
		Ok(())
	}

	pub(crate) fn do_report_unreachable(who: T::AccountId, session_id: SessionId) -> DispatchResult {
		let session = Sessions::<T>::get(session_id).ok_or(Error::<T>::SessionNotFound)?;
		ensure!(session.client == who, Error::<T>::NotClient);
		ensure!(SealedEndpoints::<T>::contains_key(session_id), Error::<T>::NotRevealed);
		Self::deposit_event(Event::EndpointReported { session_id, client: who, provider: session.provider });
		Ok(())
	}

	pub(crate) fn do_top_up(who: T::AccountId, session_id: SessionId, amount: BalanceOf<T>) -> DispatchResult {
		let mut session = Sessions::<T>::get(session_id).ok_or(Error::<T>::SessionNotFound)?;
		ensure!(session.client == who, Error::<T>::NotClient);
		ensure!(session.status == SessionStatus::Open, Error::<T>::SessionClosing);
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
		session.deposit = session.deposit.checked_add(amount).ok_or(Error::<T>::Overflow)?;
		Self::ensure_can_hold(&who, amount)?;

		CurrencyOf::<T>::hold(&Self::hold_reason(), &who, amount)?;
		let deposit = session.deposit;
		Sessions::<T>::insert(session_id, session);
		Self::deposit_event(Event::DepositToppedUp { session_id, amount, deposit });
		Ok(())
	}

	/// Whether `who` may submit `session`'s receipts: its provider, or the settler account
	/// the provider designated.
	pub fn may_settle(who: &T::AccountId, session: &Session<T>) -> bool {
		*who == session.provider || Settlers::<T>::get(&session.provider).as_ref() == Some(who)
	}

	/// Every check of a receipt against its session except the signature, cheapest first, in
	/// the order the errors are reported. A receipt settles iff its amount is above what the
	/// session settled so far: nothing else (sequence, bytes, seconds) is a floor, so no
	/// receipt can block a later one with a higher amount.
	pub fn check_receipt_terms(
		session: &Session<T>,
		signed: &SignedUsageReceipt,
		now: BlockNumberFor<T>,
	) -> DispatchResult {
		let r = &signed.receipt;
		ensure!(r.genesis_hash == Self::genesis_hash(), Error::<T>::WrongChain);
		ensure!(r.provider == account_bytes(&session.provider), Error::<T>::WrongProvider);
		ensure!(r.session_nonce == session.nonce, Error::<T>::WrongSessionNonce);
		ensure!(now <= session.settle_until(T::SettlementWindow::get()), Error::<T>::SettlementWindowOver);
		ensure!(r.amount > session.settled, Error::<T>::ReceiptReplayed);
		let owed = max_amount_owed(&session.prices, r.bytes, r.seconds).ok_or(Error::<T>::Overflow)?;
		ensure!(r.amount <= owed, Error::<T>::AmountExceedsUsage);
		ensure!(r.amount <= session.deposit, Error::<T>::AmountExceedsDeposit);
		Ok(())
	}

	/// Every check of a receipt against its session, the signature (the expensive one)
	/// last.
	pub fn check_receipt(session: &Session<T>, signed: &SignedUsageReceipt, now: BlockNumberFor<T>) -> DispatchResult {
		Self::check_receipt_terms(session, signed, now)?;
		ensure!(signed.verify(&session.client_key), Error::<T>::BadSignature);
		Ok(())
	}

	/// Settles one receipt submitted by `who`; returns (paid to the provider, fee). Changes
	/// nothing on error.
	pub(crate) fn do_settle(
		who: &T::AccountId,
		signed: &SignedUsageReceipt,
	) -> Result<(BalanceOf<T>, BalanceOf<T>), DispatchError> {
		let r = &signed.receipt;
		let mut session = Sessions::<T>::get(r.session_id).ok_or(Error::<T>::SessionNotFound)?;
		ensure!(Self::may_settle(who, &session), Error::<T>::NotSettler);
		Self::check_receipt(&session, signed, frame_system::Pallet::<T>::block_number())?;

		// The fee is taken on the cumulative amount: what this receipt adds to it.
		let delta = r.amount.saturating_sub(session.settled);
		let fee = cumulative_fee(T::ProtocolFee::get(), r.amount)
			.saturating_sub(cumulative_fee(T::ProtocolFee::get(), session.settled));
		let paid = delta.saturating_sub(fee);
		let reason = Self::hold_reason();
		with_storage_layer(|| -> DispatchResult {
			if !paid.is_zero() {
				CurrencyOf::<T>::transfer_on_hold(
					&reason,
					&session.client,
					&session.provider,
					paid,
					Precision::Exact,
					Restriction::Free,
					Fortitude::Force,
				)?;
			}
			if !fee.is_zero() {
				match T::FeeDestination::get() {
					Some(dest) => CurrencyOf::<T>::transfer_on_hold(
						&reason,
						&session.client,
						&dest,
						fee,
						Precision::Exact,
						Restriction::Free,
						Fortitude::Force,
					)
					.map(|_| ())?,
					None => {
						CurrencyOf::<T>::burn_held(&reason, &session.client, fee, Precision::Exact, Fortitude::Force)
							.map(|_| ())?
					},
				}
			}
			Ok(())
		})?;
		session.settled = r.amount;
		session.sequence = r.sequence;
		session.bytes = r.bytes;
		session.seconds = r.seconds;
		Sessions::<T>::insert(r.session_id, session);
		Self::deposit_event(Event::ReceiptSettled {
			session_id: r.session_id,
			sequence: r.sequence,
			bytes: r.bytes,
			seconds: r.seconds,
			paid,
			fee,
			settled: r.amount,
		});
		Ok((paid, fee))
	}

	pub(crate) fn do_settle_batch(who: &T::AccountId, receipts: &[SignedUsageReceipt]) -> DispatchResult {
		ensure!(!receipts.is_empty(), Error::<T>::EmptyBatch);
		let (mut accepted, mut rejected) = (0u32, 0u32);
		let (mut paid, mut fees) = (BalanceOf::<T>::zero(), BalanceOf::<T>::zero());
		for signed in receipts {
			// Each receipt in its own storage layer: a failure reverts only that receipt.
			match with_storage_layer(|| Self::do_settle(who, signed)) {
				Ok((p, f)) => {
					accepted.saturating_inc();
					paid.saturating_accrue(p);
					fees.saturating_accrue(f);
				},
				Err(error) => {
					rejected.saturating_inc();
					Self::deposit_event(Event::ReceiptRejected {
						session_id: signed.receipt.session_id,
						sequence: signed.receipt.sequence,
						error,
					});
				},
			}
		}
		Self::deposit_event(Event::ReceiptsSettled { accepted, rejected, paid, fees });
		Ok(())
	}

	pub(crate) fn do_set_settler(provider: T::AccountId, settler: Option<T::AccountId>) -> DispatchResult {
		ensure!(T::Registry::provider(&provider).is_some(), Error::<T>::ProviderNotFound);
		match &settler {
			Some(s) => Settlers::<T>::insert(&provider, s),
			None => Settlers::<T>::remove(&provider),
		}
		Self::deposit_event(Event::SettlerSet { provider, settler });
		Ok(())
	}

	pub(crate) fn do_close(who: T::AccountId, session_id: SessionId) -> DispatchResult {
		let mut session = Sessions::<T>::get(session_id).ok_or(Error::<T>::SessionNotFound)?;
		if who == session.provider {
			return Self::finalize(session_id, session);
		}
		ensure!(who == session.client, Error::<T>::NotParticipant);
		ensure!(session.status == SessionStatus::Open, Error::<T>::SessionClosing);
		let now = frame_system::Pallet::<T>::block_number();
		let settle_until = now.min(session.expires_at).saturating_add(T::SettlementWindow::get());
		session.status = SessionStatus::Closing { settle_until };
		Sessions::<T>::insert(session_id, session);
		Self::deposit_event(Event::SessionClosing { session_id, settle_until });
		Ok(())
	}

	pub(crate) fn do_finalize_expired(session_id: SessionId) -> DispatchResult {
		let session = Sessions::<T>::get(session_id).ok_or(Error::<T>::SessionNotFound)?;
		let now = frame_system::Pallet::<T>::block_number();
		ensure!(now > session.settle_until(T::SettlementWindow::get()), Error::<T>::SettlementWindowOpen);
		Self::finalize(session_id, session)
	}

	/// Releases the rest of the deposit to the client and removes the session.
	fn finalize(session_id: SessionId, session: Session<T>) -> DispatchResult {
		let refunded = session.remaining();
		if !refunded.is_zero() {
			CurrencyOf::<T>::release(&Self::hold_reason(), &session.client, refunded, Precision::Exact)?;
		}
		Sessions::<T>::remove(session_id);
		ClientSessions::<T>::mutate_exists(&session.client, |ids| {
			if let Some(list) = ids {
				list.retain(|id| *id != session_id);
				if list.is_empty() {
					*ids = None;
				}
			}
		});
		ProviderSessions::<T>::remove(&session.provider, session_id);
		RevealKeys::<T>::remove(session_id);
		SealedEndpoints::<T>::remove(session_id);
		Self::deposit_event(Event::SessionClosed { session_id, settled: session.settled, refunded });
		Ok(())
	}

	/// The pallet's invariants:
	/// - every client's deposit hold equals the sum of its sessions' remaining deposits;
	/// - no session settled more than its deposit, or more than its usage costs;
	/// - the client and provider indexes list exactly the stored sessions;
	/// - every session id is below `NextSessionId`;
	/// - encapsulation keys and sealed endpoints belong to stored sessions, and an endpoint
	///   is sealed only to a session that sent a key.
	#[cfg(any(feature = "try-runtime", test))]
	pub fn do_try_state() -> Result<(), sp_runtime::TryRuntimeError> {
		use alloc::collections::btree_map::BTreeMap;
		let mut remaining: BTreeMap<T::AccountId, BalanceOf<T>> = BTreeMap::new();
		let next = NextSessionId::<T>::get();
		let mut count = 0usize;
		for (id, s) in Sessions::<T>::iter() {
			count += 1;
			ensure!(id < next, "session id not below NextSessionId");
			ensure!(s.settled <= s.deposit, "settled more than the deposit");
			ensure!(
				max_amount_owed(&s.prices, s.bytes, s.seconds).is_some_and(|owed| s.settled <= owed),
				"settled more than the usage costs"
			);
			ensure!(ClientSessions::<T>::get(&s.client).contains(&id), "session missing from its client's index");
			ensure!(ProviderSessions::<T>::contains_key(&s.provider, id), "session missing from its provider's index");
			let r = remaining.entry(s.client.clone()).or_default();
			*r = r.saturating_add(s.remaining());
		}
		let mut indexed = 0usize;
		for (client, ids) in ClientSessions::<T>::iter() {
			indexed += ids.len();
			let held = CurrencyOf::<T>::balance_on_hold(&Self::hold_reason(), &client);
			ensure!(
				held == remaining.get(&client).copied().unwrap_or_default(),
				"client's deposit hold differs from its sessions' remaining deposits"
			);
		}
		ensure!(indexed == count, "client index lists sessions that do not exist");
		ensure!(ProviderSessions::<T>::iter().count() == count, "provider index lists sessions that do not exist");
		for id in RevealKeys::<T>::iter_keys() {
			ensure!(Sessions::<T>::contains_key(id), "an encapsulation key outlived its session");
		}
		for id in SealedEndpoints::<T>::iter_keys() {
			ensure!(RevealKeys::<T>::contains_key(id), "an endpoint was sealed without an encapsulation key");
		}
		if let Some(dest) = T::FeeDestination::get() {
			ensure!(frame_system::Pallet::<T>::account_exists(&dest), "the fee destination does not exist");
		}
		Ok(())
	}
}
