//! Storage migrations of the session escrow.

/// Version 0 → 1: sessions carry a nonce (receipt format v2). Sessions opened before the
/// upgrade get `blake2_256(tag ++ session id ++ client ++ provider)` (their opening block's
/// parent is no longer known to the runtime); their clients read it from the session like any
/// other nonce. Receipts signed in format v1 stop settling: agents settle what they hold
/// before the upgrade.
pub mod v1 {
	use codec::{Decode, Encode};
	use frame_support::{
		pallet_prelude::*,
		traits::{GetStorageVersion, StorageVersion},
	};
	use frame_system::pallet_prelude::BlockNumberFor;
	use interlattice_pq_crypto::MlDsaPublicKey;
	use pallet_provider_registry::{Prices, ServiceKind};

	use crate::{pallet::*, session_nonce, BalanceOf, Session, SessionStatus};

	/// A session as version 0 stored it.
	#[derive(Encode, Decode)]
	struct SessionV0<AccountId, Balance, BlockNumber> {
		client: AccountId,
		provider: AccountId,
		service: ServiceKind,
		client_key: MlDsaPublicKey,
		prices: Prices<Balance>,
		deposit: Balance,
		settled: Balance,
		sequence: u64,
		bytes: u64,
		seconds: u64,
		opened_at: BlockNumber,
		expires_at: BlockNumber,
		status: SessionStatus<BlockNumber>,
	}

	/// Runs the migration if the stored version is 0; returns the weight used.
	pub fn migrate<T: Config>() -> Weight {
		let on_chain = Pallet::<T>::on_chain_storage_version();
		if on_chain != 0 {
			return T::DbWeight::get().reads(1);
		}
		let mut translated = 0u64;
		Sessions::<T>::translate::<SessionV0<T::AccountId, BalanceOf<T>, BlockNumberFor<T>>, _>(|id, old| {
			translated += 1;
			let nonce = session_nonce(&[], 0, id, old.client.encode().as_ref(), old.provider.encode().as_ref());
			Some(Session::<T> {
				client: old.client,
				provider: old.provider,
				service: old.service,
				client_key: old.client_key,
				nonce,
				prices: old.prices,
				deposit: old.deposit,
				settled: old.settled,
				sequence: old.sequence,
				bytes: old.bytes,
				seconds: old.seconds,
				opened_at: old.opened_at,
				expires_at: old.expires_at,
				status: old.status,
			})
		});
		StorageVersion::new(1).put::<Pallet<T>>();
		T::DbWeight::get().reads_writes(translated + 1, translated + 1)
	}
}
