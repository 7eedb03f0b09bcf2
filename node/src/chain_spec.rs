//! Built-in chain specs. Each is generated from a genesis preset of the runtime; the JSON
//! files under `chain-spec/` are exports of these (see `chain-spec/README.md`).

use interlattice_runtime::{
	genesis_config_presets::TESTNET_RUNTIME_PRESET, SS58_PREFIX, TOKEN_DECIMALS, TOKEN_SYMBOL, WASM_BINARY,
};
use sc_service::ChainType;

/// The chain spec type of this node: no chain-spec extensions; genesis is built by executing
/// the runtime, which needs the node's extra host functions (post-quantum verification).
pub type ChainSpec = sc_service::GenericChainSpec<sc_service::NoExtension, crate::service::PqHostFunctions>;

/// Token symbol, decimals and SS58 format, so that wallets (polkadot.js) show balances and
/// addresses right.
fn properties() -> sc_chain_spec::Properties {
	let mut properties = sc_chain_spec::Properties::new();
	properties.insert("tokenSymbol".into(), TOKEN_SYMBOL.into());
	properties.insert("tokenDecimals".into(), TOKEN_DECIMALS.into());
	properties.insert("ss58Format".into(), SS58_PREFIX.into());
	properties
}

fn from_preset(name: &str, id: &str, chain_type: ChainType, preset: &str) -> Result<ChainSpec, String> {
	let wasm = WASM_BINARY.ok_or_else(|| {
		"the runtime's Wasm binary is not available: the node was built with \
		 SKIP_WASM_BUILD set; rebuild without it"
			.to_string()
	})?;
	Ok(ChainSpec::builder(wasm, None)
		.with_name(name)
		.with_id(id)
		.with_protocol_id("interlattice")
		.with_chain_type(chain_type)
		.with_genesis_config_preset_name(preset)
		.with_properties(properties())
		.build())
}

/// One validator (Alice): `--dev` or `--chain dev`.
pub fn development_chain_spec() -> Result<ChainSpec, String> {
	from_preset(
		"Interlattice Development",
		"interlattice_dev",
		ChainType::Development,
		sp_genesis_builder::DEV_RUNTIME_PRESET,
	)
}

/// Two validators (Alice, Bob): `--chain local`.
pub fn local_testnet_chain_spec() -> Result<ChainSpec, String> {
	from_preset(
		"Interlattice Local Testnet",
		"interlattice_local_testnet",
		ChainType::Local,
		sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET,
	)
}

/// Four validators (Alice, Bob, Charlie, Dave): `--chain testnet`.
pub fn testnet_chain_spec() -> Result<ChainSpec, String> {
	from_preset("Interlattice Testnet", "interlattice_testnet", ChainType::Local, TESTNET_RUNTIME_PRESET)
}
