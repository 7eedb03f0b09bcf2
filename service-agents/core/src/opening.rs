//! Opening a session as a client, the same way for both services: a fresh ML-DSA-65 key on
//! disk first, the `open_session` extrinsic, the new session's id from its `SessionOpened`
//! event, then the key bound to that id.

use crate::account::AccountKey;
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::{RuntimeCall, RuntimeEvent};
use pallet_provider_registry::{Prices, ServiceKind};

use crate::{
	chain::{ChainClient, ChainError, Provider, Session},
	keys::{SessionKeyError, SessionKeys},
};

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenSessionError {
	/// The chain refused or could not be reached.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The session key could not be made or kept.
	#[error(transparent)]
	Key(#[from] SessionKeyError),
	/// The provider's prices are above the client's maximum.
	#[error("provider {provider} charges more than the maximum price you set")]
	TooExpensive {
		/// The provider.
		provider: String,
	},
	/// The extrinsic succeeded without a `SessionOpened` event, or the session is gone.
	#[error("the session was opened but {0}")]
	NotFound(String),
}

/// What a client asks for when it opens a session.
#[derive(Clone, Debug)]
pub struct SessionRequest {
	/// The service.
	pub service: ServiceKind,
	/// The most the client pays (the provider's current prices bind if not above).
	pub max_prices: Prices<u128>,
	/// The deposit escrowed.
	pub deposit: u128,
	/// Blocks until expiry.
	pub duration_blocks: u32,
}

/// Opens a session with `provider`, paid by `account`, signed by a fresh key kept in `keys`;
/// returns the session as the chain stores it and its key.
pub async fn open_session(
	chain: &ChainClient,
	account: &AccountKey,
	keys: &SessionKeys,
	provider: &Provider,
	request: &SessionRequest,
) -> Result<(Session, MlDsaKeyPair), OpenSessionError> {
	if provider.prices.per_gib > request.max_prices.per_gib || provider.prices.per_hour > request.max_prices.per_hour {
		return Err(OpenSessionError::TooExpensive { provider: provider.account.to_string() });
	}
	let pending = keys.fresh()?;
	let call = RuntimeCall::SessionEscrow(pallet_session_escrow::Call::open_session {
		provider: provider.account.clone(),
		service: request.service,
		client_key: Box::new(pending.key.public().clone()),
		max_prices: request.max_prices,
		deposit: request.deposit,
		duration: request.duration_blocks,
	});
	let inclusion = chain.submit_and_watch(call, account).await?;
	let session_id = inclusion
		.events
		.iter()
		.find_map(|e| match e {
			RuntimeEvent::SessionEscrow(pallet_session_escrow::Event::SessionOpened { session_id, .. }) => {
				Some(*session_id)
			},
			_ => None,
		})
		.ok_or_else(|| OpenSessionError::NotFound("no SessionOpened event came with it".into()))?;
	let key = keys.bind(pending, session_id)?;
	let session = chain
		.session(session_id)
		.await?
		.ok_or_else(|| OpenSessionError::NotFound(format!("session {session_id} is not on-chain any more")))?;
	Ok((session, key))
}
