//! The escrow's read side for agents and wallets: one session, a client's sessions, a
//! provider's sessions. Served by the runtime API [`SessionEscrowApi`] and exposed by the node
//! as the `escrow_*` JSON-RPC methods.

use alloc::vec::Vec;
use codec::{Decode, Encode};
use frame_support::traits::Get;
use frame_system::pallet_prelude::BlockNumberFor;
use interlattice_pq_crypto::MlDsaPublicKey;
use pallet_provider_registry::{Prices, ServiceKind};
use scale_info::TypeInfo;

use crate::{pallet::*, BalanceOf, Session, SessionId, SessionStatus};

/// Most sessions one `provider_sessions` call returns; page with `offset`.
pub const MAX_SESSIONS_PAGE: u32 = 100;

/// A session as the query surface shows it.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo)]
pub struct SessionInfo<AccountId, Balance, BlockNumber> {
	/// The session's id.
	pub session_id: SessionId,
	/// Who pays.
	pub client: AccountId,
	/// Who serves.
	pub provider: AccountId,
	/// The service.
	pub service: ServiceKind,
	/// The key that signs the session's receipts.
	pub client_key: MlDsaPublicKey,
	/// The session's nonce: every receipt of the session names it.
	pub nonce: [u8; 32],
	/// Prices fixed for the session.
	pub prices: Prices<Balance>,
	/// Total deposited.
	pub deposit: Balance,
	/// Cumulative amount settled.
	pub settled: Balance,
	/// Sequence of the last settled receipt (0: none).
	pub sequence: u64,
	/// Bytes of the last settled receipt.
	pub bytes: u64,
	/// Seconds of the last settled receipt.
	pub seconds: u64,
	/// Block of opening.
	pub opened_at: BlockNumber,
	/// Last block of service.
	pub expires_at: BlockNumber,
	/// Whether the client closed it.
	pub closing: bool,
	/// Last block in which receipts settle.
	pub settle_until: BlockNumber,
}

/// A [`SessionInfo`] of runtime `T`.
pub type SessionInfoOf<T> = SessionInfo<<T as frame_system::Config>::AccountId, BalanceOf<T>, BlockNumberFor<T>>;

sp_api::decl_runtime_apis! {
	/// The session escrow's query surface. Version 2: sessions carry their nonce, provider
	/// sessions page by cursor, receipts can be checked as settlement would.
	#[api_version(2)]
	pub trait SessionEscrowApi<AccountId, Balance, BlockNumber>
	where
		AccountId: codec::Codec,
		Balance: codec::Codec,
		BlockNumber: codec::Codec,
	{
		/// One session not yet finalized; `None` if unknown or finalized.
		fn session(session_id: SessionId) -> Option<SessionInfo<AccountId, Balance, BlockNumber>>;
		/// A client's sessions not yet finalized, by id.
		fn client_sessions(client: AccountId) -> Vec<SessionInfo<AccountId, Balance, BlockNumber>>;
		/// A provider's sessions not yet finalized, in storage order, starting after session
		/// `after` (from the first with `None`), at most `limit` (clamped to
		/// [`MAX_SESSIONS_PAGE`]). Reads only the page: pass the page's last id for the next.
		fn provider_sessions(provider: AccountId, after: Option<SessionId>, limit: u32) -> Vec<SessionInfo<AccountId, Balance, BlockNumber>>;
		/// This chain's genesis hash, which every receipt must name.
		fn genesis_hash() -> [u8; 32];
		/// Whether `receipt` would settle now if `submitter` submitted it: every check
		/// settlement makes, the signature included; the error it would fail with otherwise.
		fn check_receipt(submitter: AccountId, receipt: interlattice_pq_crypto::SignedUsageReceipt) -> Result<(), sp_runtime::DispatchError>;
	}
}

impl<T: Config> Pallet<T> {
	fn info(session_id: SessionId, s: Session<T>) -> SessionInfoOf<T> {
		let settle_until = s.settle_until(T::SettlementWindow::get());
		SessionInfo {
			session_id,
			closing: matches!(s.status, SessionStatus::Closing { .. }),
			settle_until,
			client: s.client,
			provider: s.provider,
			service: s.service,
			client_key: s.client_key,
			nonce: s.nonce,
			prices: s.prices,
			deposit: s.deposit,
			settled: s.settled,
			sequence: s.sequence,
			bytes: s.bytes,
			seconds: s.seconds,
			opened_at: s.opened_at,
			expires_at: s.expires_at,
		}
	}

	/// [`SessionEscrowApi::session`].
	pub fn query_session(session_id: SessionId) -> Option<SessionInfoOf<T>> {
		Sessions::<T>::get(session_id).map(|s| Self::info(session_id, s))
	}

	/// [`SessionEscrowApi::client_sessions`].
	pub fn query_client_sessions(client: T::AccountId) -> Vec<SessionInfoOf<T>> {
		ClientSessions::<T>::get(&client).into_iter().filter_map(|id| Self::query_session(id)).collect()
	}

	/// [`SessionEscrowApi::provider_sessions`].
	pub fn query_provider_sessions(
		provider: T::AccountId,
		after: Option<SessionId>,
		limit: u32,
	) -> Vec<SessionInfoOf<T>> {
		let limit = limit.min(MAX_SESSIONS_PAGE) as usize;
		let ids: Vec<SessionId> = match after {
			None => ProviderSessions::<T>::iter_key_prefix(&provider).take(limit).collect(),
			Some(after) => ProviderSessions::<T>::iter_key_prefix_from(
				&provider,
				ProviderSessions::<T>::hashed_key_for(&provider, after),
			)
			.take(limit)
			.collect(),
		};
		ids.into_iter().filter_map(|id| Self::query_session(id)).collect()
	}
}
