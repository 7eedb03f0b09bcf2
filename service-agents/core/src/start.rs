//! What every agent does before it serves, and what can stop it there: its socket bound, the
//! chain reached, its registration checked (or made, by `register`).

use std::{
	io,
	net::SocketAddr,
	sync::{Arc, Mutex},
};

use interlattice_runtime::AccountId;
use pallet_provider_registry::ServiceKind;
use crate::account::AccountKey;
use tokio::net::TcpListener;

use crate::{
	chain::{ChainClient, Provider},
	config::AgentFile,
	identity::Identity,
	lifecycle::Lifecycle,
	metrics::Metrics,
	receipts::ReceiptDesk,
	sessions::SessionBook,
	ChainError, ReceiptStore, Settler, StoreError,
};

/// Why an agent cannot start (or register).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
	/// Configuration is incomplete or wrong, or disagrees with the chain.
	#[error("configuration: {0}")]
	Config(String),
	/// The chain could not be reached or refused something.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The receipt store cannot be opened.
	#[error(transparent)]
	Store(#[from] StoreError),
	/// A socket cannot be bound.
	#[error("cannot bind {addr}: {source}")]
	Bind {
		/// The address.
		addr: SocketAddr,
		/// Why.
		source: io::Error,
	},
	/// The service's own resources (the cache, the tunnel interface, …) cannot be set up.
	#[error(transparent)]
	Service(Box<dyn std::error::Error + Send + Sync>),
}

impl StartError {
	/// The service's own resources cannot be set up: `error` says why.
	pub fn service(error: impl std::error::Error + Send + Sync + 'static) -> Self {
		StartError::Service(Box::new(error))
	}
}

/// The agent binary of `service`, as messages name it.
pub fn agent_name(service: ServiceKind) -> &'static str {
	match service {
		ServiceKind::Vpn => "vpn-agent",
		ServiceKind::Cdn => "cdn-agent",
	}
}

/// Binds the listening socket.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
	TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

/// `<agent> register`: makes the registry say what the file configures for `service`.
pub async fn register<S>(service: ServiceKind, file: &AgentFile<S>) -> Result<String, StartError> {
	let identity = Identity::load(&file.provider, true).map_err(StartError::Config)?;
	let chain = ChainClient::connect(&file.chain.rpc).await?;
	crate::registration::register(&chain, service, &file.provider, &identity, file.unlisted.is_some()).await.map_err(StartError::Config)
}

/// Connects to the chain and checks that the provider is registered for `service`, with the
/// configured service key if there is one; warns when the configured endpoint is not listed
/// or the provider is not active.
pub async fn connect_registered<S>(
	service: ServiceKind,
	file: &AgentFile<S>,
	identity: &Identity,
) -> Result<(ChainClient, Provider), StartError> {
	let (provider, agent) = (&identity.provider, agent_name(service));
	tracing::info!(rpc = %file.chain.rpc, "connecting to the chain");
	let chain = ChainClient::connect(&file.chain.rpc).await?;
	let registered = chain.provider(provider).await?.ok_or_else(|| {
		StartError::Config(format!(
			"account {provider} is not a registered provider on this chain: run `{agent} register` first"
		))
	})?;
	if !registered.services.offers(service) {
		return Err(StartError::Config(format!(
			"provider {provider} is registered without the {service:?} service: run `{agent} register` to update it"
		)));
	}
	if identity.service_key.as_ref().is_some_and(|key| &registered.service_key != key.public()) {
		return Err(StartError::Config(format!(
			"the chain holds another service key for provider {provider}: clients would refuse this agent; run `{agent} register` to update it, or configure the registered key"
		)));
	}
	if let Some(endpoint) = &file.provider.endpoint {
		if !registered.endpoints.iter().any(|e| e == endpoint.as_bytes()) {
			tracing::warn!(%endpoint, "the registry does not list this endpoint; clients will not find it (run `{agent} register`)");
		}
	}
	if !registered.active {
		tracing::warn!(
			"the provider is registered but not active (stake below the minimum?): clients cannot open sessions"
		);
	}
	Ok((chain, registered))
}

/// What an agent takes payment and settles with, over one receipt store.
pub struct Payments {
	/// The sessions the agent serves, checked on-chain, each with its ledger.
	pub sessions: Arc<SessionBook>,
	/// Verifies receipts and makes them durable before they are acknowledged.
	pub receipts: Arc<ReceiptDesk>,
	/// Settles the stored receipts on-chain, signing as `account`.
	pub settler: Settler,
}

/// Opens the receipt store (`[payment] receipts_dir`) and sets up `provider`'s sessions of
/// `service`, the receipt desk and the settler (which signs with `account`); for an unlisted
/// service (`[unlisted]`), starts the revealer, which submits with the settler's account.
pub fn payments<S>(
	service: ServiceKind,
	file: &AgentFile<S>,
	chain: &ChainClient,
	provider: AccountId,
	account: AccountKey,
	metrics: &Metrics,
	life: &Lifecycle,
) -> Result<Payments, StartError> {
	let store = ReceiptStore::open(&file.payment.receipts_dir)?;
	tracing::info!(dir = %file.payment.receipts_dir.display(), unsettled = store.unsettled().len(), "receipt store opened");
	let store = Arc::new(Mutex::new(store));
	let sessions =
		Arc::new(SessionBook::new(chain.clone(), provider.clone(), service, file.payment.policy(), store.clone()));
	let receipts = ReceiptDesk::new(store.clone(), file.payment.max_receipts_per_second, metrics.clone(), life);
	let settler = Settler::new(chain.clone(), account, store);
	if let Some(section) = &file.unlisted {
		let revealer =
			crate::unlisted::Revealer::new(chain.clone(), settler.clone(), provider, service, section)
				.map_err(StartError::Config)?;
		life.spawn(revealer.run(life.token.child_token()));
	}
	Ok(Payments { sessions, receipts, settler })
}
