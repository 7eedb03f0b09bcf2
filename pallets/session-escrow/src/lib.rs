#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;

pub mod extension;
mod impls;
pub mod migrations;
pub mod query;
pub mod types;
pub mod weights;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

pub use extension::CheckReceipts;
pub use query::*;
pub use types::*;
pub use weights::WeightInfo;

#[frame_support::pallet]
pub mod pallet {
	use super::*;
	use alloc::boxed::Box;
	use frame_support::{
		pallet_prelude::*,
		traits::fungible::{Inspect, InspectHold, Mutate, MutateHold},
	};
	use frame_system::pallet_prelude::*;
	use interlattice_pq_crypto::{
		reveal::{MlKemEncapsulationKey, SealedEndpoint},
		MlDsaPublicKey, SignedUsageReceipt,
	};
	use pallet_provider_registry::{Prices, ProviderRegistry, ServiceKind};
	use sp_runtime::{traits::Zero, Perbill};

	/// Storage layout version. 1: sessions carry a nonce (receipt format v2).
	pub const STORAGE_VERSION: StorageVersion = StorageVersion::new(1);

	#[pallet::pallet]
	#[pallet::storage_version(STORAGE_VERSION)]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config: frame_system::Config {
		/// The currency deposits are held in. Its balance is `u128`, the width of a receipt's
		/// amount.
		type Currency: Inspect<Self::AccountId, Balance = u128>
			+ InspectHold<Self::AccountId, Reason = Self::RuntimeHoldReason>
			+ Mutate<Self::AccountId>
			+ MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>;

		/// The runtime's hold reason, which includes this pallet's.
		type RuntimeHoldReason: From<HoldReason>;

		/// The provider registry: who is an active provider, its prices and services.
		type Registry: ProviderRegistry<Self::AccountId, BalanceOf<Self>>;

		/// Smallest deposit a session opens with.
		#[pallet::constant]
		type MinDeposit: Get<BalanceOf<Self>>;

		/// Longest session, in blocks from opening to expiry.
		#[pallet::constant]
		type MaxSessionDuration: Get<BlockNumberFor<Self>>;

		/// Blocks after a session ends (client's close or expiry) in which the provider can
		/// still settle receipts. Must be shorter than the registry's unbonding period minus
		/// `MaxSessionDuration` (checked by the runtime's integrity test).
		#[pallet::constant]
		type SettlementWindow: Get<BlockNumberFor<Self>>;

		/// Most open sessions one client can have at a time.
		#[pallet::constant]
		type MaxSessionsPerClient: Get<u32>;

		/// Most receipts in one `settle_receipts` call.
		#[pallet::constant]
		type MaxReceiptsPerBatch: Get<u32>;

		/// Share of every settled amount that goes to the protocol instead of the provider.
		#[pallet::constant]
		type ProtocolFee: Get<Perbill>;

		/// Where the protocol fee goes: `Some(account)` (a treasury) or `None` (burned). The
		/// pallet's genesis gives the account a provider reference, so it exists for good and
		/// a fee below the existential deposit can always be paid into it; `try_state` checks
		/// that it exists (a runtime upgrade that sets a new one must create it).
		type FeeDestination: Get<Option<Self::AccountId>>;

		/// Weights of the calls, from benchmarks.
		type WeightInfo: WeightInfo;
	}

	/// Why this pallet holds funds.
	#[pallet::composite_enum]
	pub enum HoldReason {
		/// A client's deposit for its open sessions.
		#[codec(index = 0)]
		SessionDeposit,
	}

	/// Every session not yet finalized, by id.
	#[pallet::storage]
	pub type Sessions<T: Config> = StorageMap<_, Twox64Concat, SessionId, SessionOf<T>, OptionQuery>;

	/// The id the next session gets. Ids are never reused, so a receipt can never apply to
	/// a later session.
	#[pallet::storage]
	pub type NextSessionId<T: Config> = StorageValue<_, SessionId, ValueQuery>;

	/// Each client's sessions not yet finalized.
	#[pallet::storage]
	pub type ClientSessions<T: Config> =
		StorageMap<_, Blake2_128Concat, T::AccountId, BoundedVec<SessionId, T::MaxSessionsPerClient>, ValueQuery>;

	/// Each provider's sessions not yet finalized (provider, session id).
	#[pallet::storage]
	pub type ProviderSessions<T: Config> =
		StorageDoubleMap<_, Blake2_128Concat, T::AccountId, Twox64Concat, SessionId, (), OptionQuery>;

	/// The account a provider lets submit its sessions' receipts besides itself (e.g. a hot
	/// key of its agent, so the provider's own key can stay offline).
	#[pallet::storage]
	pub type Settlers<T: Config> = StorageMap<_, Blake2_128Concat, T::AccountId, T::AccountId, OptionQuery>;

	/// The ML-KEM-768 encapsulation key of each session opened with `open_unlisted_session`:
	/// the provider seals its endpoint to it. Removed when the session is finalized.
	#[pallet::storage]
	pub type RevealKeys<T: Config> = StorageMap<_, Twox64Concat, SessionId, MlKemEncapsulationKey, OptionQuery>;

	/// The endpoint a provider sealed to a session's client (the latest, if it moved the
	/// client to another address). Removed when the session is finalized.
	#[pallet::storage]
	pub type SealedEndpoints<T: Config> = StorageMap<_, Twox64Concat, SessionId, SealedEndpoint, OptionQuery>;

	/// Creates the fee destination account, if one is configured, with a provider reference:
	/// it then exists for good, and fees below the existential deposit can be paid into it.
	#[pallet::genesis_config]
	#[derive(frame_support::DefaultNoBound)]
	pub struct GenesisConfig<T: Config> {
		#[serde(skip)]
		_config: core::marker::PhantomData<T>,
	}

	#[pallet::genesis_build]
	impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
		fn build(&self) {
			if let Some(dest) = T::FeeDestination::get() {
				if !frame_system::Pallet::<T>::account_exists(&dest) {
					frame_system::Pallet::<T>::inc_providers(&dest);
				}
			}
		}
	}

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// A client opened a session with a provider and escrowed a deposit.
		SessionOpened {
			/// The new session.
			session_id: SessionId,
			/// Who pays.
			client: T::AccountId,
			/// Who serves.
			provider: T::AccountId,
			/// The service.
			service: ServiceKind,
			/// The provider's prices, fixed for the session.
			prices: Prices<BalanceOf<T>>,
			/// Escrowed deposit.
			deposit: BalanceOf<T>,
			/// Last block of service.
			expires_at: BlockNumberFor<T>,
			/// The session's nonce: every receipt of the session names it.
			nonce: [u8; 32],
		},
		/// A client added to a session's deposit.
		DepositToppedUp {
			/// The session.
			session_id: SessionId,
			/// Amount added.
			amount: BalanceOf<T>,
			/// Total deposit afterwards.
			deposit: BalanceOf<T>,
		},
		/// A receipt was settled: the provider was paid the difference to the last one.
		ReceiptSettled {
			/// The session.
			session_id: SessionId,
			/// The receipt's sequence number.
			sequence: u64,
			/// Cumulative bytes acknowledged.
			bytes: u64,
			/// Cumulative seconds acknowledged.
			seconds: u64,
			/// Paid to the provider by this receipt.
			paid: BalanceOf<T>,
			/// Protocol fee taken from this receipt's amount.
			fee: BalanceOf<T>,
			/// Cumulative amount settled in the session.
			settled: BalanceOf<T>,
		},
		/// A receipt in a batch was rejected; the batch's other receipts still settled.
		ReceiptRejected {
			/// The session the receipt names.
			session_id: SessionId,
			/// The receipt's sequence number.
			sequence: u64,
			/// Why.
			error: DispatchError,
		},
		/// A batch of receipts was processed.
		ReceiptsSettled {
			/// Receipts settled.
			accepted: u32,
			/// Receipts rejected (each reported by `ReceiptRejected`).
			rejected: u32,
			/// Paid to providers in total.
			paid: BalanceOf<T>,
			/// Protocol fees in total.
			fees: BalanceOf<T>,
		},
		/// The client closed a session; the provider can settle until `settle_until`.
		SessionClosing {
			/// The session.
			session_id: SessionId,
			/// Last block in which receipts settle.
			settle_until: BlockNumberFor<T>,
		},
		/// A session ended: everything not settled went back to the client.
		SessionClosed {
			/// The session.
			session_id: SessionId,
			/// Cumulative amount settled (provider's pay plus fees).
			settled: BalanceOf<T>,
			/// Released back to the client.
			refunded: BalanceOf<T>,
		},
		/// A provider designated (or, with `None`, removed) the account that may submit its
		/// sessions' receipts besides itself.
		SettlerSet {
			/// The provider.
			provider: T::AccountId,
			/// The settler, if any.
			settler: Option<T::AccountId>,
		},
		/// A client opened a session with an encapsulation key: its provider is asked to
		/// seal its endpoint to it (`reveal_endpoint`).
		EndpointRequested {
			/// The session.
			session_id: SessionId,
			/// The provider asked.
			provider: T::AccountId,
		},
		/// A provider sealed an endpoint to a session's client (`SealedEndpoints`).
		EndpointRevealed {
			/// The session.
			session_id: SessionId,
			/// The provider.
			provider: T::AccountId,
		},
		/// A session's client reported that the endpoint revealed to it cannot be reached.
		EndpointReported {
			/// The session.
			session_id: SessionId,
			/// The reporting client.
			client: T::AccountId,
			/// The provider whose endpoint it is.
			provider: T::AccountId,
		},
	}

	#[pallet::error]
	pub enum Error<T> {
		/// The account is not a registered provider.
		ProviderNotFound,
		/// The provider is not active (deregistered or below the minimum stake).
		ProviderNotActive,
		/// The provider does not offer this service.
		ServiceNotOffered,
		/// The provider's price is above the client's maximum.
		PriceAboveMaximum,
		/// The deposit is below `MinDeposit`.
		DepositTooLow,
		/// The duration is zero or above `MaxSessionDuration`.
		InvalidDuration,
		/// The client cannot afford the deposit.
		InsufficientBalance,
		/// The client has `MaxSessionsPerClient` sessions already.
		TooManySessions,
		/// No such session (never opened, or finalized).
		SessionNotFound,
		/// Only the session's client may do this.
		NotClient,
		/// Only the session's client or provider may do this.
		NotParticipant,
		/// The session is closing: no top-ups, no second close.
		SessionClosing,
		/// The amount is zero.
		ZeroAmount,
		/// The receipt is for another chain (genesis hash differs).
		WrongChain,
		/// The receipt's amount is not above what the session settled so far (a replay, or an
		/// older receipt).
		ReceiptReplayed,
		/// No longer returned (receipt format v1 required bytes and seconds not to decrease);
		/// kept so that the indices of the errors after it do not change.
		UsageDecreased,
		/// The receipt's amount exceeds what its usage costs at the session's prices.
		AmountExceedsUsage,
		/// The receipt's amount exceeds the session's deposit.
		AmountExceedsDeposit,
		/// The receipt's signature is not the session's client's.
		BadSignature,
		/// The session's settlement window is over.
		SettlementWindowOver,
		/// The session cannot be finalized yet: it is open or in its settlement window.
		SettlementWindowOpen,
		/// The batch is empty.
		EmptyBatch,
		/// An arithmetic overflow (an id or amount out of range).
		Overflow,
		/// Only the session's provider, or the settler account it designated, may submit the
		/// session's receipts.
		NotSettler,
		/// The receipt names another provider than the session's.
		WrongProvider,
		/// The receipt names another session nonce: it was signed for another opening of
		/// this session id (another chain with the same genesis, or another fork).
		WrongSessionNonce,
		/// The ML-KEM-768 encapsulation key fails FIPS 203's modulus check.
		InvalidRevealKey,
		/// The session was not opened with an encapsulation key (`open_unlisted_session`):
		/// there is nothing to seal an endpoint to.
		NoRevealRequested,
		/// No endpoint was revealed to the session yet: there is nothing to report.
		NotRevealed,
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		fn on_runtime_upgrade() -> Weight {
			crate::migrations::v1::migrate::<T>()
		}

		fn integrity_test() {
			assert!(!T::MinDeposit::get().is_zero(), "MinDeposit must be > 0");
			assert!(!T::MaxSessionDuration::get().is_zero(), "MaxSessionDuration must be > 0");
			assert!(!T::SettlementWindow::get().is_zero(), "SettlementWindow must be > 0");
			assert!(T::MaxSessionsPerClient::get() > 0, "MaxSessionsPerClient must be > 0");
			assert!(T::MaxReceiptsPerBatch::get() > 0, "MaxReceiptsPerBatch must be > 0");
		}

		#[cfg(feature = "try-runtime")]
		fn try_state(_n: BlockNumberFor<T>) -> Result<(), sp_runtime::TryRuntimeError> {
			Self::do_try_state()
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Open a session with an active provider and escrow a deposit.
		///
		/// - `origin`: the client (signed); the deposit is held from its free balance.
		/// - `provider`: an active provider offering `service`.
		/// - `service`: VPN or CDN.
		/// - `client_key`: the ML-DSA-65 key that will sign this session's receipts (boxed:
		///   1952 bytes would bloat every `RuntimeCall`).
		/// - `max_prices`: the most the client accepts per GiB and per hour; the provider's
		///   current prices, which must not exceed them, bind for the session.
		/// - `deposit`: at least `MinDeposit`.
		/// - `duration`: blocks until expiry, 1 ..= `MaxSessionDuration`.
		///
		/// Errors: `ProviderNotFound`, `ProviderNotActive`, `ServiceNotOffered`,
		/// `PriceAboveMaximum`, `DepositTooLow`, `InvalidDuration`, `InsufficientBalance`,
		/// `TooManySessions`, `Overflow`.
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::open_session())]
		pub fn open_session(
			origin: OriginFor<T>,
			provider: T::AccountId,
			service: ServiceKind,
			client_key: Box<MlDsaPublicKey>,
			max_prices: Prices<BalanceOf<T>>,
			deposit: BalanceOf<T>,
			duration: BlockNumberFor<T>,
		) -> DispatchResult {
			let client = ensure_signed(origin)?;
			Self::do_open_session(client, provider, service, *client_key, max_prices, deposit, duration).map(|_| ())
		}

		/// Add to an open session's deposit.
		///
		/// - `origin`: the session's client (signed).
		/// - `session_id`: the session.
		/// - `amount`: held from the client's free balance.
		///
		/// Errors: `SessionNotFound`, `NotClient`, `SessionClosing`, `ZeroAmount`,
		/// `InsufficientBalance`, `Overflow`.
		#[pallet::call_index(1)]
		#[pallet::weight(T::WeightInfo::top_up_deposit())]
		pub fn top_up_deposit(origin: OriginFor<T>, session_id: SessionId, amount: BalanceOf<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_top_up(who, session_id, amount)
		}

		/// Settle one receipt: pay the provider the difference between the receipt's
		/// cumulative amount and what was settled before, from the client's deposit. A
		/// receipt settles only if its amount is above what the session settled so far.
		///
		/// - `origin`: the session's provider, or the settler it designated (signed); pays
		///   the fee.
		/// - `receipt`: the client-signed receipt (boxed: 3.3 KB).
		///
		/// Errors: `SessionNotFound`, `NotSettler`, `WrongChain`, `WrongProvider`,
		/// `WrongSessionNonce`, `SettlementWindowOver`, `ReceiptReplayed`,
		/// `AmountExceedsUsage`, `AmountExceedsDeposit`, `BadSignature`, `Overflow`.
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::settle_receipt())]
		pub fn settle_receipt(origin: OriginFor<T>, receipt: Box<SignedUsageReceipt>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_settle(&who, &receipt).map(|_| ())
		}

		/// Settle many receipts, across sessions, in one transaction. Each receipt is checked
		/// and settled on its own: an invalid one is reported by `ReceiptRejected` and does
		/// not undo the others; `ReceiptsSettled` sums the batch. The fee covers verifying
		/// every receipt, valid or not.
		///
		/// - `origin`: the provider of every receipt's session, or its designated settler
		///   (signed); pays the fee. A receipt of another provider's session is rejected
		///   (`NotSettler`) like any invalid receipt.
		/// - `receipts`: 1 ..= `MaxReceiptsPerBatch` client-signed receipts, applied in order.
		///
		/// Errors: `EmptyBatch` (the only error; per-receipt failures are events).
		#[pallet::call_index(3)]
		#[pallet::weight(T::WeightInfo::settle_receipts(receipts.len() as u32))]
		pub fn settle_receipts(
			origin: OriginFor<T>,
			receipts: BoundedVec<SignedUsageReceipt, T::MaxReceiptsPerBatch>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_settle_batch(&who, &receipts)
		}

		/// Close a session. By the client: service ends now, and the provider can settle
		/// its last receipts for `SettlementWindow` blocks, after which `finalize_session`
		/// refunds the rest. By the provider: the session is finalized at once (settle your
		/// last receipt first) and the rest refunded.
		///
		/// - `origin`: the session's client or provider (signed).
		/// - `session_id`: the session.
		///
		/// Errors: `SessionNotFound`, `NotParticipant`, `SessionClosing` (the client closed
		/// it already).
		#[pallet::call_index(4)]
		#[pallet::weight(T::WeightInfo::close_session())]
		pub fn close_session(origin: OriginFor<T>, session_id: SessionId) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_close(who, session_id)
		}

		/// Finalize a session whose settlement window is over (after the client's close or
		/// after expiry): release what is left of the deposit to the client and forget the
		/// session. Permissionless, so no session waits on anyone.
		///
		/// - `origin`: anyone (signed).
		/// - `session_id`: the session.
		///
		/// Errors: `SessionNotFound`, `SettlementWindowOpen`.
		#[pallet::call_index(5)]
		#[pallet::weight(T::WeightInfo::finalize_session())]
		pub fn finalize_session(origin: OriginFor<T>, session_id: SessionId) -> DispatchResult {
			ensure_signed(origin)?;
			Self::do_finalize_expired(session_id)
		}

		/// Designate the account that may submit this provider's sessions' receipts besides
		/// the provider itself (e.g. its agent's hot key), or remove it with `None`.
		///
		/// - `origin`: a registered provider (signed).
		/// - `settler`: the account, or `None`.
		///
		/// Errors: `ProviderNotFound`.
		#[pallet::call_index(6)]
		#[pallet::weight(T::WeightInfo::set_settler())]
		pub fn set_settler(origin: OriginFor<T>, settler: Option<T::AccountId>) -> DispatchResult {
			let provider = ensure_signed(origin)?;
			Self::do_set_settler(provider, settler)
		}

		/// Open a session, like `open_session`, with a provider whose endpoint is not public
		/// (unlisted): `reveal_key` is a fresh ML-KEM-768 encapsulation key to which the
		/// provider seals the endpoint it gives this client (`reveal_endpoint`). The key is
		/// kept until the session is finalized; the client pays for it in its transaction's
		/// length fee.
		///
		/// - `reveal_key`: 1184 bytes (boxed); must pass FIPS 203's modulus check.
		/// - the other arguments: as `open_session`.
		///
		/// Errors: `InvalidRevealKey`, and those of `open_session`.
		#[pallet::call_index(7)]
		#[pallet::weight(T::WeightInfo::open_unlisted_session())]
		#[allow(clippy::too_many_arguments)]
		pub fn open_unlisted_session(
			origin: OriginFor<T>,
			provider: T::AccountId,
			service: ServiceKind,
			client_key: Box<MlDsaPublicKey>,
			max_prices: Prices<BalanceOf<T>>,
			deposit: BalanceOf<T>,
			duration: BlockNumberFor<T>,
			reveal_key: Box<MlKemEncapsulationKey>,
		) -> DispatchResult {
			let client = ensure_signed(origin)?;
			Self::do_open_unlisted_session(
				client,
				provider,
				service,
				*client_key,
				max_prices,
				deposit,
				duration,
				*reveal_key,
			)
		}

		/// Seal an endpoint to a session's client: stored in `SealedEndpoints` (replacing an
		/// earlier one, e.g. when the provider moves the client off a burned address) until
		/// the session is finalized. The provider pays the fee. The runtime cannot read the
		/// endpoint; it checks who seals and that the session asked for it.
		///
		/// - `origin`: the session's provider or its settler (signed).
		/// - `session_id`: an open session opened with `open_unlisted_session`.
		/// - `sealed`: ML-KEM-768 ciphertext and the sealed, padded endpoint (boxed: 1.4 KB).
		///
		/// Errors: `SessionNotFound`, `NotSettler`, `SessionClosing`, `NoRevealRequested`.
		#[pallet::call_index(8)]
		#[pallet::weight(T::WeightInfo::reveal_endpoint())]
		pub fn reveal_endpoint(
			origin: OriginFor<T>,
			session_id: SessionId,
			sealed: Box<SealedEndpoint>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_reveal_endpoint(who, session_id, *sealed)
		}

		/// Report that the endpoint revealed to this session cannot be reached (blocked).
		/// Only an event: the provider knows which address it revealed to the session, and
		/// decides from the reports of distinct paying clients whether it is burned.
		///
		/// - `origin`: the session's client (signed).
		/// - `session_id`: a session with a revealed endpoint.
		///
		/// Errors: `SessionNotFound`, `NotClient`, `NotRevealed`.
		#[pallet::call_index(9)]
		#[pallet::weight(T::WeightInfo::report_unreachable())]
		pub fn report_unreachable(origin: OriginFor<T>, session_id: SessionId) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_report_unreachable(who, session_id)
		}
	}

	/// Gives `T::Currency` a short name in the implementation modules.
	pub(crate) type CurrencyOf<T> = <T as Config>::Currency;
}
