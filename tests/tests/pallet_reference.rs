//! `docs/pallets.md`, the reference a client author works from (calls, events, errors with
//! their indices, constants with their values, storage, types), is exactly what the runtime's
//! metadata says: rendered from it here and compared. `INTERLATTICE_BLESS=1` rewrites it.

use interlattice_tests::reference::{render, runtime_metadata};

/// Fails when the committed file `path` (relative to the repository) is not `generated`;
/// with `INTERLATTICE_BLESS` set, writes it instead.
fn check_or_bless(path: &str, generated: &[u8]) {
	let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
	if std::env::var_os("INTERLATTICE_BLESS").is_some() {
		std::fs::write(&file, generated).unwrap();
		return;
	}
	let committed = std::fs::read(&file).unwrap_or_default();
	assert!(
		committed == generated,
		"{path} differs from the runtime's metadata: regenerate it with \
		 `INTERLATTICE_BLESS=1 cargo test -p interlattice-tests --test pallet_reference` and commit it"
	);
}

#[test]
fn the_pallet_reference_matches_the_runtime_metadata() {
	let rendered = render(&runtime_metadata(), &["ProviderRegistry", "SessionEscrow"]);
	check_or_bless("docs/pallets.md", rendered.as_bytes());
}

#[test]
fn the_reference_names_every_call_event_and_error_with_its_index() {
	let rendered = render(&runtime_metadata(), &["SessionEscrow"]);
	for needle in [
		"#### `open_session` (call index 0; bytes `0x0a00`)",
		"| `SessionOpened` | `session_id: u64`",
		"| `ReceiptReplayed` |",
		"`Stale`",
		"| `MinDeposit` | `u128` | 1_000_000_000_000 (1 LAT) |",
		"| `MaxSessionsPerClient` | `u32` | 32 |",
		"### `Prices`",
		"### `ServiceKind`",
	] {
		assert!(rendered.contains(needle), "missing {needle:?} in:\n{rendered}");
	}
}

/// `chain-spec/metadata.scale` is the runtime's metadata (V15, SCALE), the file subxt
/// generates its client from (`tests/tests/subxt_client.rs`, README "Connecting polkadot.js
/// or subxt").
#[test]
fn the_saved_metadata_is_the_runtimes() {
	let metadata = interlattice_runtime::Runtime::metadata_at_version(15).expect("V15").to_vec();
	check_or_bless("chain-spec/metadata.scale", &metadata);
}
