//! The agents' and clients' view of the chain: JSON-RPC over HTTP to one node, with the
//! runtime's own types for calls, extrinsics, events and runtime-API answers.
//!
//! A client built for one runtime refuses (at [`ChainClient::connect`]) a chain whose
//! `transaction_version` differs: its extrinsics would not decode there.

use std::time::Duration;

use codec::{Decode, Encode};
use interlattice_runtime::{
	AccountId, BlockNumber, Nonce, RuntimeCall, RuntimeEvent, SignedPayload, TxExtension, UncheckedExtrinsic, VERSION,
};
use jsonrpsee::{
	core::{client::ClientT, params::ArrayParams},
	http_client::{HttpClient, HttpClientBuilder},
	rpc_params,
};
use pallet_provider_registry::ProviderInfo;
use pallet_session_escrow::SessionInfo;
use serde_json::Value;
use sp_core::H256;
use sp_runtime::{generic::Era, DispatchError, MultiAddress};

use crate::account::AccountKey;

/// A session as the runtime API returns it.
pub type Session = SessionInfo<AccountId, u128, BlockNumber>;
/// A provider as the runtime API returns it.
pub type Provider = ProviderInfo<AccountId, u128, BlockNumber>;
/// One event record as `frame_system` stores it.
pub type EventRecord = frame_system::EventRecord<RuntimeEvent, H256>;

/// What can go wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
	/// The node could not be reached or did not answer in time.
	#[error("node {url}: {message}")]
	Unreachable {
		/// The endpoint.
		url: String,
		/// What failed.
		message: String,
	},
	/// The node answered with a JSON-RPC error (e.g. the pool refused a transaction:
	/// code 1010 with the reason in `data`).
	#[error("node refused {method}: {code} {message}{}", .data.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
	Refused {
		/// The method.
		method: String,
		/// JSON-RPC error code.
		code: i32,
		/// Error message.
		message: String,
		/// Error data, if any.
		data: Option<String>,
	},
	/// The node's answer could not be understood.
	#[error("unexpected answer to {method}: {detail}")]
	Malformed {
		/// The method.
		method: String,
		/// What was wrong.
		detail: String,
	},
	/// The chain runs a runtime whose transactions this build cannot produce.
	#[error(
		"the chain runs transaction_version {chain} (spec {spec_name} {spec_version}); this build makes \
		 transaction_version {ours}: upgrade the agent/client"
	)]
	IncompatibleRuntime {
		/// The chain's spec name.
		spec_name: String,
		/// The chain's spec version.
		spec_version: u32,
		/// The chain's transaction version.
		chain: u32,
		/// Ours.
		ours: u32,
	},
	/// The account key could not sign (no randomness for an ML-DSA signature).
	#[error("signing the transaction: {0}")]
	Signing(String),
	/// The extrinsic was not seen in a block in time.
	#[error("transaction 0x{hash} was not included within {timeout:?}", hash = hex::encode(.1), timeout = .0)]
	NotIncluded(Duration, H256),
	/// The extrinsic was included but failed.
	#[error("transaction failed in block {block}: {error}")]
	DispatchFailed {
		/// The block's hash.
		block: H256,
		/// The error, named by the runtime's metadata.
		error: String,
	},
}

impl ChainError {
	/// Whether trying again later may succeed (the node was unreachable, or a transaction
	/// was not included in time) rather than the request being wrong.
	pub fn is_transient(&self) -> bool {
		matches!(self, ChainError::Unreachable { .. } | ChainError::NotIncluded(..))
	}
}

/// An included extrinsic: where, and the events it emitted (ending with
/// `ExtrinsicSuccess`).
#[derive(Debug)]
pub struct Inclusion {
	/// The block's hash.
	pub block: H256,
	/// The block's number.
	pub number: u64,
	/// The extrinsic's events, in order.
	pub events: Vec<RuntimeEvent>,
}

/// A connection to one node.
#[derive(Clone, Debug)]
pub struct ChainClient {
	url: String,
	http: HttpClient,
	genesis_hash: H256,
	inclusion_timeout: Duration,
}

impl ChainClient {
	/// Connects to the node at `url` (`http://host:port`), reads the genesis hash and checks
	/// the runtime's transaction version.
	pub async fn connect(url: &str) -> Result<Self, ChainError> {
		let http = HttpClientBuilder::default()
			.request_timeout(Duration::from_secs(30))
			.max_request_size(16 * 1024 * 1024)
			.max_response_size(64 * 1024 * 1024)
			.build(url)
			.map_err(|e| ChainError::Unreachable { url: url.to_string(), message: e.to_string() })?;
		let mut client = ChainClient {
			url: url.to_string(),
			http,
			genesis_hash: H256::zero(),
			inclusion_timeout: Duration::from_secs(120),
		};
		let genesis: String = client.request("chain_getBlockHash", rpc_params![0]).await?;
		client.genesis_hash = H256::from_slice(&client.hex("chain_getBlockHash", &genesis, 32)?);
		let version: Value = client.request("state_getRuntimeVersion", rpc_params![]).await?;
		let field = |name: &str| version[name].as_u64().unwrap_or_default() as u32;
		if field("transactionVersion") != VERSION.transaction_version {
			return Err(ChainError::IncompatibleRuntime {
				spec_name: version["specName"].as_str().unwrap_or_default().to_string(),
				spec_version: field("specVersion"),
				chain: field("transactionVersion"),
				ours: VERSION.transaction_version,
			});
		}
		Ok(client)
	}

	/// How long [`ChainClient::submit_and_watch`] waits for inclusion (default 2 minutes).
	pub fn with_inclusion_timeout(mut self, timeout: Duration) -> Self {
		self.inclusion_timeout = timeout;
		self
	}

	/// The node's URL.
	pub fn url(&self) -> &str {
		&self.url
	}

	/// The chain's genesis hash.
	pub fn genesis_hash(&self) -> H256 {
		self.genesis_hash
	}

	async fn request<T: serde::de::DeserializeOwned>(
		&self,
		method: &str,
		params: ArrayParams,
	) -> Result<T, ChainError> {
		self.http.request(method, params).await.map_err(|e| match e {
			jsonrpsee::core::ClientError::Call(e) => ChainError::Refused {
				method: method.to_string(),
				code: e.code(),
				message: e.message().to_string(),
				data: e.data().map(|d| explain_refusal(d.get().trim_matches('"'))),
			},
			jsonrpsee::core::ClientError::ParseError(e) => {
				ChainError::Malformed { method: method.to_string(), detail: e.to_string() }
			},
			other => ChainError::Unreachable { url: self.url.clone(), message: format!("{method}: {other}") },
		})
	}

	fn hex(&self, method: &str, s: &str, len: usize) -> Result<Vec<u8>, ChainError> {
		let bytes = hex::decode(s.trim_start_matches("0x"))
			.map_err(|e| ChainError::Malformed { method: method.to_string(), detail: e.to_string() })?;
		if len != 0 && bytes.len() != len {
			return Err(ChainError::Malformed {
				method: method.to_string(),
				detail: format!("{} bytes where {len} were expected", bytes.len()),
			});
		}
		Ok(bytes)
	}

	/// Calls runtime API function `name` (e.g. `SessionEscrowApi_session`) with SCALE
	/// `args` at the best block and decodes the answer.
	pub async fn runtime_call<T: Decode>(&self, name: &str, args: impl Encode) -> Result<T, ChainError> {
		let data = format!("0x{}", hex::encode(args.encode()));
		let answer: String = self.request("state_call", rpc_params![name, data]).await?;
		let bytes = self.hex("state_call", &answer, 0)?;
		T::decode(&mut &bytes[..])
			.map_err(|e| ChainError::Malformed { method: format!("state_call {name}"), detail: e.to_string() })
	}

	/// The session `id`, if it exists (open or closing).
	pub async fn session(&self, id: u64) -> Result<Option<Session>, ChainError> {
		self.runtime_call("SessionEscrowApi_session", id).await
	}

	/// The sessions of `client`.
	pub async fn client_sessions(&self, client: &AccountId) -> Result<Vec<Session>, ChainError> {
		self.runtime_call("SessionEscrowApi_client_sessions", client).await
	}

	/// The registered provider `account`, if any.
	pub async fn provider(&self, account: &AccountId) -> Result<Option<Provider>, ChainError> {
		self.runtime_call("ProviderRegistryApi_provider", account).await
	}

	/// The best block's number.
	pub async fn best_number(&self) -> Result<u64, ChainError> {
		let header: Value = self.request("chain_getHeader", rpc_params![]).await?;
		parse_number(&header["number"])
			.ok_or_else(|| ChainError::Malformed { method: "chain_getHeader".into(), detail: header.to_string() })
	}

	/// The hash of block `number` of the best chain.
	pub async fn block_hash(&self, number: u64) -> Result<H256, ChainError> {
		let hash: Option<String> = self.request("chain_getBlockHash", rpc_params![number]).await?;
		let hash = hash.ok_or_else(|| ChainError::Malformed {
			method: "chain_getBlockHash".into(),
			detail: format!("no block {number}"),
		})?;
		Ok(H256::from_slice(&self.hex("chain_getBlockHash", &hash, 32)?))
	}

	/// The free balance of `who` at the best block.
	pub async fn free_balance(&self, who: &AccountId) -> Result<u128, ChainError> {
		let key = frame_system::Account::<interlattice_runtime::Runtime>::hashed_key_for(who);
		type AccountInfo = frame_system::AccountInfo<Nonce, pallet_balances::AccountData<u128>>;
		let info: Option<AccountInfo> = self.storage(&key, None).await?;
		Ok(info.map(|i| i.data.free).unwrap_or_default())
	}

	/// Reads and decodes a storage value at `at` (best block when `None`).
	pub async fn storage<T: Decode>(&self, key: &[u8], at: Option<H256>) -> Result<Option<T>, ChainError> {
		let key = format!("0x{}", hex::encode(key));
		let answer: Option<String> = match at {
			Some(h) => self.request("state_getStorage", rpc_params![key, h]).await?,
			None => self.request("state_getStorage", rpc_params![key]).await?,
		};
		match answer {
			None => Ok(None),
			Some(s) => {
				let bytes = self.hex("state_getStorage", &s, 0)?;
				T::decode(&mut &bytes[..])
					.map(Some)
					.map_err(|e| ChainError::Malformed { method: "state_getStorage".into(), detail: e.to_string() })
			},
		}
	}

	/// The next nonce of `who`, counting its transactions in the pool.
	pub async fn next_nonce(&self, who: &AccountId) -> Result<Nonce, ChainError> {
		let n: u64 = self.request("system_accountNextIndex", rpc_params![who.to_string()]).await?;
		Ok(n as Nonce)
	}

	/// Signs `call` with `signer` (immortal, no tip) at `nonce`. `key_on_chain`: whether an
	/// ML-DSA signer's key is on chain ([`Self::ml_dsa_key_on_chain`]); ignored for sr25519.
	pub fn sign(
		&self,
		call: RuntimeCall,
		signer: &AccountKey,
		nonce: Nonce,
		key_on_chain: bool,
	) -> Result<UncheckedExtrinsic, ChainError> {
		sign_extrinsic(call, signer, nonce, self.genesis_hash, key_on_chain)
	}

	/// Whether `account` has an ML-DSA transaction key on chain (`PqAccounts::AccountKeys`).
	pub async fn ml_dsa_key_on_chain(&self, account: &AccountId) -> Result<bool, ChainError> {
		let key = [
			sp_crypto_hashing::twox_128(b"PqAccounts").as_slice(),
			&sp_crypto_hashing::twox_128(b"AccountKeys"),
			&sp_crypto_hashing::blake2_128(account.as_ref()),
			account.as_ref(),
		]
		.concat();
		Ok(self.storage::<pallet_pq_accounts::AccountKey<AccountId, u128>>(&key, None).await?.is_some())
	}

	/// Submits a signed extrinsic to the pool; returns its hash.
	pub async fn submit(&self, xt: &UncheckedExtrinsic) -> Result<H256, ChainError> {
		let hex_xt = format!("0x{}", hex::encode(xt.encode()));
		let hash: String = self.request("author_submitExtrinsic", rpc_params![hex_xt]).await?;
		Ok(H256::from_slice(&self.hex("author_submitExtrinsic", &hash, 32)?))
	}

	/// Signs `call` as `signer` with its next nonce, submits it and waits until a block on
	/// the best chain includes it (an ML-DSA account whose key is not on chain yet sends
	/// `register_key` with it, in one `batch_all`); fails with [`ChainError::DispatchFailed`] if it did not
	/// succeed there.
	pub async fn submit_and_watch(&self, call: RuntimeCall, signer: &AccountKey) -> Result<Inclusion, ChainError> {
		let account = signer.account_id();
		let nonce = self.next_nonce(&account).await?;
		let key_on_chain = match signer {
			AccountKey::Sr25519(_) => false,
			AccountKey::MlDsa65 { .. } => self.ml_dsa_key_on_chain(&account).await?,
		};
		// An ML-DSA account's first transaction carries its key and puts it on chain, so that
		// the key travels once (the account pays the deposit).
		let call = match signer {
			AccountKey::MlDsa65 { pair, bound_to: None } if !key_on_chain => {
				let register = RuntimeCall::PqAccounts(pallet_pq_accounts::Call::register_key {
					public_key: Box::new(pair.public().clone()),
				});
				if call == register {
					call
				} else {
					RuntimeCall::Utility(pallet_utility::Call::batch_all { calls: vec![register, call] })
				}
			},
			_ => call,
		};
		let xt = self.sign(call, signer, nonce, key_on_chain)?;
		let from = self.best_number().await?;
		let hash = self.submit(&xt).await?;
		let inclusion = self.wait_for_inclusion(&xt, hash, from).await?;
		match inclusion.events.last() {
			Some(RuntimeEvent::System(frame_system::Event::ExtrinsicSuccess { .. })) => Ok(inclusion),
			Some(RuntimeEvent::System(frame_system::Event::ExtrinsicFailed { dispatch_error, .. })) => {
				Err(ChainError::DispatchFailed { block: inclusion.block, error: describe(dispatch_error) })
			},
			_ => Err(ChainError::Malformed {
				method: "System.Events".into(),
				detail: format!("no outcome event for 0x{}", hex::encode(hash)),
			}),
		}
	}

	/// Polls the best chain from block `from` for `xt`; returns its block and events.
	pub async fn wait_for_inclusion(
		&self,
		xt: &UncheckedExtrinsic,
		hash: H256,
		from: u64,
	) -> Result<Inclusion, ChainError> {
		let wanted = format!("0x{}", hex::encode(xt.encode()));
		let deadline = tokio::time::Instant::now() + self.inclusion_timeout;
		let mut next = from;
		loop {
			let best = self.best_number().await?;
			while next <= best {
				let block_hash: String = self.request("chain_getBlockHash", rpc_params![next]).await?;
				let block: Value = self.request("chain_getBlock", rpc_params![block_hash.clone()]).await?;
				let xts = block["block"]["extrinsics"].as_array().cloned().unwrap_or_default();
				if let Some(index) = xts.iter().position(|x| x.as_str() == Some(wanted.as_str())) {
					let block = H256::from_slice(&self.hex("chain_getBlockHash", &block_hash, 32)?);
					let events = self.events(block).await?;
					let events = events
						.into_iter()
						.filter(|e| e.phase == frame_system::Phase::ApplyExtrinsic(index as u32))
						.map(|e| e.event)
						.collect();
					return Ok(Inclusion { block, number: next, events });
				}
				next += 1;
			}
			if tokio::time::Instant::now() >= deadline {
				return Err(ChainError::NotIncluded(self.inclusion_timeout, hash));
			}
			tokio::time::sleep(Duration::from_millis(500)).await;
		}
	}

	/// The events of block `at`.
	pub async fn events(&self, at: H256) -> Result<Vec<EventRecord>, ChainError> {
		let key = [sp_crypto_hashing::twox_128(b"System"), sp_crypto_hashing::twox_128(b"Events")].concat();
		Ok(self.storage::<Vec<EventRecord>>(&key, Some(at)).await?.unwrap_or_default())
	}
}

/// The transaction extensions of an immortal transaction with `nonce` and no tip.
pub fn tx_extension(nonce: Nonce) -> TxExtension {
	(
		frame_system::CheckNonZeroSender::new(),
		frame_system::CheckSpecVersion::new(),
		frame_system::CheckTxVersion::new(),
		frame_system::CheckGenesis::new(),
		frame_system::CheckEra::from(Era::Immortal),
		frame_system::CheckNonce::from(nonce),
		frame_system::CheckWeight::new(),
		pallet_transaction_payment::ChargeTransactionPayment::from(0),
		pallet_session_escrow::CheckReceipts::new(),
		frame_metadata_hash_extension::CheckMetadataHash::new(false),
		frame_system::WeightReclaim::new(),
	)
}

/// Signs `call` (see [`ChainClient::sign`]).
pub fn sign_extrinsic(
	call: RuntimeCall,
	signer: &AccountKey,
	nonce: Nonce,
	genesis: H256,
	key_on_chain: bool,
) -> Result<UncheckedExtrinsic, ChainError> {
	let tx_ext = tx_extension(nonce);
	// What the extensions add to the signed payload without sending it.
	let implicit =
		((), VERSION.spec_version, VERSION.transaction_version, genesis, genesis, (), (), (), (), None::<[u8; 32]>, ());
	let payload = SignedPayload::from_raw(call.clone(), tx_ext.clone(), implicit);
	let signature = payload
		.using_encoded(|bytes| signer.sign_payload(bytes, key_on_chain))
		.map_err(|e| ChainError::Signing(e.to_string()))?;
	Ok(UncheckedExtrinsic::new_signed(call, MultiAddress::Id(signer.account_id()), signature, tx_ext))
}

/// The pool's reason for refusing a transaction, with what our own validity codes mean
/// (`pallet_pq_accounts::VALIDITY_*`).
pub fn explain_refusal(data: &str) -> String {
	let code = |c: u8| data.ends_with(&format!("Custom error: {c}"));
	if code(pallet_pq_accounts::VALIDITY_ACCOUNT_LOCKED) {
		format!("{data}: the account is locked to its ML-DSA key; sign with that key (ml-dsa:<key file>@<account>)")
	} else if code(pallet_pq_accounts::VALIDITY_UNKNOWN_KEY) {
		format!("{data}: the account's ML-DSA key is not on chain; send it with the transaction or bind it")
	} else {
		data.to_string()
	}
}

/// A dispatch error with the pallet error's name where the runtime's metadata gives one.
pub fn describe(error: &DispatchError) -> String {
	match error {
		DispatchError::Module(_) => match interlattice_runtime::RuntimeError::from_dispatch_error(*error) {
			Some(e) => format!("{e:?}"),
			None => format!("{error:?}"),
		},
		other => format!("{other:?}"),
	}
}

/// Parses a hex block number ("0x1a") as the RPC returns it.
pub fn parse_number(v: &Value) -> Option<u64> {
	u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}
