//! Building signed extrinsics and reading storage with the runtime's own types.

use codec::{Decode, Encode};
use interlattice_runtime::{AccountId, Balance, Nonce, RuntimeCall, UncheckedExtrinsic};
use serde_json::json;
use sp_core::H256;
use sp_crypto_hashing::twox_128;
use sp_keyring::Sr25519Keyring;

use crate::{Rpc, RpcError};

/// Account information as `frame_system` stores it.
pub type AccountInfo = frame_system::AccountInfo<Nonce, pallet_balances::AccountData<Balance>>;
/// One event record as `frame_system` stores it.
pub type EventRecord = frame_system::EventRecord<interlattice_runtime::RuntimeEvent, H256>;

/// Decodes a 0x-prefixed hex string.
pub fn from_hex(s: &str) -> Vec<u8> {
	hex::decode(s.trim_start_matches("0x")).expect("the node returns valid hex")
}

/// The genesis hash.
pub fn genesis_hash(rpc: &Rpc) -> Result<H256, RpcError> {
	let v = rpc.call("chain_getBlockHash", json!([0]))?;
	Ok(H256::from_slice(&from_hex(v.as_str().unwrap_or_default())))
}

/// Signs `call` as `signer` with the given nonce: an immortal transaction with no tip.
pub fn signed_extrinsic(call: RuntimeCall, signer: Sr25519Keyring, nonce: Nonce, genesis: H256) -> UncheckedExtrinsic {
	signed_extrinsic_by(call, &signer.pair(), nonce, genesis)
}

/// Signs `call` with any sr25519 key pair (see [`signed_extrinsic`]): the agents' own
/// extrinsic builder, so tests and agents cannot disagree on the transaction format.
pub fn signed_extrinsic_by(
	call: RuntimeCall,
	signer: &sp_core::sr25519::Pair,
	nonce: Nonce,
	genesis: H256,
) -> UncheckedExtrinsic {
	signed_extrinsic_with(call, &signer.clone().into(), nonce, genesis, false)
}

/// Signs `call` with any account key, sr25519 or ML-DSA-65 (`key_on_chain`: whether an ML-DSA
/// key is on chain, else it travels with the signature).
pub fn signed_extrinsic_with(
	call: RuntimeCall,
	signer: &interlattice_agent_core::account::AccountKey,
	nonce: Nonce,
	genesis: H256,
	key_on_chain: bool,
) -> UncheckedExtrinsic {
	interlattice_agent_core::chain::sign_extrinsic(call, signer, nonce, genesis, key_on_chain)
		.expect("signing needs only randomness")
}

pub use interlattice_agent_core::chain::tx_extension;

/// The next nonce of `who`, as the node's transaction pool sees it.
pub fn next_nonce(rpc: &Rpc, who: &AccountId) -> Result<Nonce, RpcError> {
	let v = rpc.call("system_accountNextIndex", json!([who.to_string()]))?;
	v.as_u64().map(|n| n as Nonce).ok_or_else(|| RpcError::Malformed(format!("nonce {v}")))
}

/// Submits an extrinsic; returns its hash.
pub fn submit(rpc: &Rpc, xt: &UncheckedExtrinsic) -> Result<String, RpcError> {
	let v = rpc.call("author_submitExtrinsic", json!([format!("0x{}", hex::encode(xt.encode()))]))?;
	Ok(v.as_str().unwrap_or_default().to_string())
}

/// Reads and decodes a storage value at `at` (best block when `None`).
pub fn storage<T: Decode>(rpc: &Rpc, key: &[u8], at: Option<&str>) -> Result<Option<T>, RpcError> {
	let key = format!("0x{}", hex::encode(key));
	let params = match at {
		Some(h) => json!([key, h]),
		None => json!([key]),
	};
	let v = rpc.call("state_getStorage", params)?;
	match v.as_str() {
		None => Ok(None),
		Some(s) => T::decode(&mut &from_hex(s)[..])
			.map(Some)
			.map_err(|e| RpcError::Malformed(format!("cannot decode storage: {e}"))),
	}
}

/// The account record of `who` at `at`.
pub fn account(rpc: &Rpc, who: &AccountId, at: Option<&str>) -> Result<AccountInfo, RpcError> {
	let key = frame_system::Account::<interlattice_runtime::Runtime>::hashed_key_for(who);
	Ok(storage::<AccountInfo>(rpc, &key, at)?.unwrap_or_default())
}

/// The events emitted in block `at`.
pub fn events(rpc: &Rpc, at: &str) -> Result<Vec<EventRecord>, RpcError> {
	let key = [twox_128(b"System"), twox_128(b"Events")].concat();
	Ok(storage::<Vec<EventRecord>>(rpc, &key, Some(at))?.unwrap_or_default())
}

/// Finds the block (hash, index in block) on the best chain from `from` up to the head that
/// contains `xt`.
pub fn find_extrinsic(rpc: &Rpc, xt_hex: &str, from: u64) -> Option<(String, usize)> {
	let best = rpc.best_number()?;
	for n in from..=best {
		let hash = rpc.block_hash(n)?;
		let block = rpc.call("chain_getBlock", json!([hash])).ok()?;
		let xts = block["block"]["extrinsics"].as_array()?;
		if let Some(i) = xts.iter().position(|x| x.as_str() == Some(xt_hex)) {
			return Some((hash, i));
		}
	}
	None
}

/// Submits `call` signed by `who` and waits (up to a minute) for its inclusion; returns the
/// block hash and the events of that extrinsic.
pub fn submit_and_wait(
	node: &mut crate::Node,
	who: Sr25519Keyring,
	call: RuntimeCall,
) -> (String, Vec<interlattice_runtime::RuntimeEvent>) {
	let genesis = genesis_hash(&node.rpc).expect("genesis hash");
	let nonce = next_nonce(&node.rpc, &who.to_account_id()).expect("nonce");
	let xt = signed_extrinsic(call, who, nonce, genesis);
	submit_extrinsic_and_wait(node, &xt)
}

/// Submits a signed extrinsic and waits for its block; returns the block's hash and the
/// extrinsic's events.
pub fn submit_extrinsic_and_wait(
	node: &mut crate::Node,
	xt: &UncheckedExtrinsic,
) -> (String, Vec<interlattice_runtime::RuntimeEvent>) {
	let xt_hex = format!("0x{}", hex::encode(xt.encode()));
	let start = node.rpc.best_number().expect("best block");
	submit(&node.rpc, xt).expect("the pool accepts the extrinsic");
	let (block, index) = node
		.wait(std::time::Duration::from_secs(60), "inclusion", |n| find_extrinsic(&n.rpc, &xt_hex, start))
		.expect("the extrinsic is included");
	let events = events(&node.rpc, &block)
		.expect("events")
		.into_iter()
		.filter(|e| e.phase == frame_system::Phase::ApplyExtrinsic(index as u32))
		.map(|e| e.event)
		.collect();
	(block, events)
}

/// Whether `events` end with `ExtrinsicSuccess`.
pub fn succeeded(events: &[interlattice_runtime::RuntimeEvent]) -> bool {
	matches!(
		events.last(),
		Some(interlattice_runtime::RuntimeEvent::System(frame_system::Event::ExtrinsicSuccess { .. }))
	)
}

/// The best block's hash.
pub fn rpc_best_hash(rpc: &Rpc) -> String {
	rpc.call("chain_getBlockHash", serde_json::json!([])).expect("best hash").as_str().unwrap_or_default().to_string()
}

/// Session `id` as the escrow stores it, at the best block.
pub fn session(rpc: &Rpc, id: u64) -> Option<pallet_session_escrow::Session<interlattice_runtime::Runtime>> {
	let key = pallet_session_escrow::Sessions::<interlattice_runtime::Runtime>::hashed_key_for(id);
	storage(rpc, &key, None).expect("the node answers")
}

/// A receipt for session `id` as its client signs it: this chain's genesis, the session's
/// provider and nonce (read from the chain), and the given usage.
pub fn usage_receipt(
	rpc: &Rpc,
	id: u64,
	sequence: u64,
	bytes: u64,
	seconds: u64,
	amount: u128,
) -> interlattice_pq_crypto::UsageReceipt {
	let s = session(rpc, id).expect("the session is on-chain");
	interlattice_pq_crypto::UsageReceipt {
		genesis_hash: genesis_hash(rpc).expect("genesis").0,
		provider: pallet_session_escrow::account_bytes(&s.provider),
		session_id: id,
		session_nonce: s.nonce,
		sequence,
		bytes,
		seconds,
		amount,
	}
}
