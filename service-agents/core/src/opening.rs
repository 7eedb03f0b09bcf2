//! Opening a session as a client, the same way for both services: a fresh ML-DSA-65 key on
//! disk first, the `open_session` extrinsic, the new session's id from its `SessionOpened`
//! event, then the key bound to that id.

use std::time::Duration;

use crate::{
	account::AccountKey,
	reveal::{await_revealed_endpoint, RevealKeyPair},
};
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
	/// The unlisted provider's endpoint could not be revealed.
	#[error(transparent)]
	Reveal(#[from] crate::reveal::RevealError),
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

/// Whether `endpoint` (as registered) belongs to `service`: a dCDN endpoint is a URL
/// (`http://…`, `https://…`), a dVPN endpoint is `host:port`.
pub fn endpoint_of(service: ServiceKind, endpoint: &[u8]) -> bool {
	let is_url = endpoint.windows(3).any(|w| w == b"://");
	match service {
		ServiceKind::Cdn => is_url,
		ServiceKind::Vpn => !is_url,
	}
}

/// Whether `provider` offers `service` unlisted: it registered no endpoint for it, and
/// reveals one, sealed, to each paying client (`open_unlisted_session`).
pub fn is_unlisted(provider: &Provider, service: ServiceKind) -> bool {
	provider.services.offers(service) && !provider.endpoints.iter().any(|e| endpoint_of(service, e))
}

/// How long a client waits for an unlisted provider to reveal its endpoint.
pub const REVEAL_TIMEOUT: Duration = Duration::from_secs(120);

/// The endpoint the provider of `session` (an unlisted one) revealed to it, opened with the
/// session's key from `keys`; waits for it up to [`REVEAL_TIMEOUT`]. `except`: an endpoint
/// the client found unreachable, to wait for another.
pub async fn revealed_endpoint(
	chain: &ChainClient,
	keys: &SessionKeys,
	session: &Session,
	except: Option<&str>,
) -> Result<String, OpenSessionError> {
	let key = keys.for_session(session.session_id, &session.client_key)?;
	let pair = RevealKeyPair::for_session(&key);
	Ok(await_revealed_endpoint(chain, &pair, session, except, REVEAL_TIMEOUT, Duration::from_secs(1)).await?)
}

/// Reports, as the client `account`, that the endpoint revealed to `session` cannot be
/// reached, then waits up to `wait` for the provider to reveal another (it does once enough
/// distinct paying clients reported the address). Returns the new endpoint, if any.
pub async fn report_unreachable(
	chain: &ChainClient,
	account: &AccountKey,
	keys: &SessionKeys,
	session: &Session,
	wait: Duration,
) -> Result<Option<String>, OpenSessionError> {
	let key = keys.for_session(session.session_id, &session.client_key)?;
	let pair = RevealKeyPair::for_session(&key);
	let current = await_revealed_endpoint(chain, &pair, session, None, Duration::ZERO, Duration::ZERO).await?;
	let call =
		RuntimeCall::SessionEscrow(pallet_session_escrow::Call::report_unreachable { session_id: session.session_id });
	chain.submit_and_watch(call, account).await?;
	match await_revealed_endpoint(chain, &pair, session, Some(&current), wait, Duration::from_secs(1)).await {
		Ok(endpoint) => Ok(Some(endpoint)),
		Err(crate::reveal::RevealError::Timeout { .. }) => Ok(None),
		Err(e) => Err(e.into()),
	}
}

/// What a client tells its user after [`report_unreachable`] for `session_id`.
pub fn describe_report(session_id: u64, moved_to: Option<&str>) -> String {
	match moved_to {
		Some(endpoint) => format!("session {session_id}: the provider revealed another endpoint: {endpoint}"),
		None => format!(
			"session {session_id}: reported; the provider has not moved the session yet (it waits for reports \
			 from several paying clients); try again later, or close the session"
		),
	}
}

/// Opens a session with `provider`, paid by `account`, signed by a fresh key kept in `keys`;
/// returns the session as the chain stores it and its key. With a provider that offers the
/// service unlisted ([`is_unlisted`]), the session is opened with the encapsulation key
/// derived from the session key: [`revealed_endpoint`] then gives the endpoint.
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
	let call = if is_unlisted(provider, request.service) {
		RuntimeCall::SessionEscrow(pallet_session_escrow::Call::open_unlisted_session {
			provider: provider.account.clone(),
			service: request.service,
			client_key: Box::new(pending.key.public().clone()),
			max_prices: request.max_prices,
			deposit: request.deposit,
			duration: request.duration_blocks,
			reveal_key: Box::new(RevealKeyPair::for_session(&pending.key).public().clone()),
		})
	} else {
		RuntimeCall::SessionEscrow(pallet_session_escrow::Call::open_session {
			provider: provider.account.clone(),
			service: request.service,
			client_key: Box::new(pending.key.public().clone()),
			max_prices: request.max_prices,
			deposit: request.deposit,
			duration: request.duration_blocks,
		})
	};
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
