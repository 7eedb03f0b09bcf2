//! Well-known ML-DSA-65 service keys for development networks, like the `//Alice` sr25519
//! keys: their secrets are public, so they are for development and tests only.
//!
//! The seed of the key named `name` (lower case, e.g. `charlie`) is
//! `blake2_256("interlattice/dev-service-key/" ++ name)`. The public keys are checked in as
//! files (`dev-keys/<name>.pk`, 1952 raw bytes) so that the runtime's genesis presets can
//! embed them without key generation code in the Wasm; a test checks they match the seeds.

use crate::{MlDsaPublicKey, ML_DSA_65_PUBLIC_KEY_LEN, ML_DSA_65_SEED_LEN};

/// Prefix of the preimage of a development key's seed.
pub const DEV_SEED_DOMAIN: &[u8] = b"interlattice/dev-service-key/";

/// Prefix of the preimage of a development ML-DSA *account* key's seed: the seed of account
/// key `name` is `blake2_256("interlattice/dev-account-key/" ++ name)`.
pub const DEV_ACCOUNT_SEED_DOMAIN: &[u8] = b"interlattice/dev-account-key/";

/// Names of the development keys shipped as public key files.
pub const DEV_KEY_NAMES: [&str; 2] = ["charlie", "dave"];

/// The seed of development key `name`.
pub fn dev_seed(name: &str) -> [u8; ML_DSA_65_SEED_LEN] {
	let mut preimage = alloc::vec::Vec::with_capacity(DEV_SEED_DOMAIN.len() + name.len());
	preimage.extend_from_slice(DEV_SEED_DOMAIN);
	preimage.extend_from_slice(name.as_bytes());
	sp_crypto_hashing::blake2_256(&preimage)
}

/// The seed of development ML-DSA account key `name`.
pub fn dev_account_seed(name: &str) -> [u8; ML_DSA_65_SEED_LEN] {
	let mut preimage = alloc::vec::Vec::with_capacity(DEV_ACCOUNT_SEED_DOMAIN.len() + name.len());
	preimage.extend_from_slice(DEV_ACCOUNT_SEED_DOMAIN);
	preimage.extend_from_slice(name.as_bytes());
	sp_crypto_hashing::blake2_256(&preimage)
}

/// Public key of the development ML-DSA account `alice` (`pq-key generate --dev-account
/// alice`), endowed and with its key on chain in every preset, like `//Alice`.
pub const ALICE_ACCOUNT: &[u8; ML_DSA_65_PUBLIC_KEY_LEN] = include_bytes!("../dev-keys/account-alice.pk");

/// Public key of the development key `charlie` (the dev networks' bootstrap dVPN provider).
pub const CHARLIE: &[u8; ML_DSA_65_PUBLIC_KEY_LEN] = include_bytes!("../dev-keys/charlie.pk");
/// Public key of the development key `dave` (the dev networks' bootstrap dCDN provider).
pub const DAVE: &[u8; ML_DSA_65_PUBLIC_KEY_LEN] = include_bytes!("../dev-keys/dave.pk");

/// The public key of a shipped development key (`charlie`, `dave`), `None` for other names.
pub fn dev_public_key(name: &str) -> Option<MlDsaPublicKey> {
	match name {
		"charlie" => Some(MlDsaPublicKey(*CHARLIE)),
		"dave" => Some(MlDsaPublicKey(*DAVE)),
		_ => None,
	}
}
