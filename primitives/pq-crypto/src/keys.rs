//! ML-DSA-65 key pairs for people and agents (native only): generation from the OS's
//! randomness, derivation from a 32-byte seed, signing, and seed files with mode 0600.
//!
//! The seed is the only secret stored; the signing key is re-derived from it (FIPS 204
//! `ML-DSA.KeyGen_internal`). Both are zeroized when dropped.

use std::{
	fs,
	io::Write,
	os::unix::fs::{OpenOptionsExt, PermissionsExt},
	path::Path,
};

use libcrux_ml_dsa::ml_dsa_65;
use zeroize::{Zeroize, Zeroizing};

use crate::{
	types, MlDsaPublicKey, MlDsaSignature, CONTEXT, MESSAGE_CONTEXT, ML_DSA_65_SEED_LEN, TLS_CONTEXT,
	TRANSACTION_CONTEXT,
};

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
	/// The OS random number generator failed.
	#[error("the operating system's random number generator failed: {0}")]
	Randomness(String),
	/// Reading or writing a key file failed.
	#[error("key file {path}: {source}")]
	Io {
		/// The file.
		path: String,
		/// What failed.
		source: std::io::Error,
	},
	/// A key file exists already; keys are never overwritten.
	#[error("key file {0} exists already; refusing to overwrite a key")]
	Exists(String),
	/// A key file is readable by others than its owner.
	#[error("key file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)")]
	Permissions {
		/// The file.
		path: String,
		/// Its permission bits.
		mode: u32,
	},
	/// A key file's content is not a 32-byte hex seed.
	#[error("key file {0} does not hold a 32-byte hex seed")]
	Malformed(String),
	/// Signing failed (the context string is too long; cannot happen with [`CONTEXT`]).
	#[error("ML-DSA signing failed")]
	Signing,
}

/// An ML-DSA-65 key pair.
pub struct MlDsaKeyPair {
	seed: Zeroizing<[u8; ML_DSA_65_SEED_LEN]>,
	signing_key: ml_dsa_65::MLDSA65SigningKey,
	public: MlDsaPublicKey,
}

impl Drop for MlDsaKeyPair {
	fn drop(&mut self) {
		self.signing_key.as_ref_mut().zeroize();
	}
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
	let mut bytes = [0u8; N];
	getrandom::fill(&mut bytes).map_err(|e| KeyError::Randomness(e.to_string()))?;
	Ok(bytes)
}

impl MlDsaKeyPair {
	/// A new key pair from the OS's randomness.
	pub fn generate() -> Result<Self, KeyError> {
		let mut seed = random::<ML_DSA_65_SEED_LEN>()?;
		let pair = Self::from_seed(seed);
		seed.zeroize();
		Ok(pair)
	}

	/// The key pair derived from `seed` (deterministic).
	pub fn from_seed(seed: [u8; ML_DSA_65_SEED_LEN]) -> Self {
		let pair = ml_dsa_65::generate_key_pair(seed);
		let public = MlDsaPublicKey(*pair.verification_key.as_ref());
		Self { seed: Zeroizing::new(seed), signing_key: pair.signing_key, public }
	}

	/// The well-known development key `name` (see [`crate::dev_keys`]): its secret is public.
	pub fn dev(name: &str) -> Self {
		Self::from_seed(crate::dev_keys::dev_seed(name))
	}

	/// The well-known development ML-DSA account key `name` (see
	/// [`crate::dev_keys::dev_account_seed`]): its secret is public.
	pub fn dev_account(name: &str) -> Self {
		Self::from_seed(crate::dev_keys::dev_account_seed(name))
	}

	/// The public key.
	pub fn public(&self) -> &MlDsaPublicKey {
		&self.public
	}

	/// The secret seed (handle with care).
	pub fn seed(&self) -> &[u8; ML_DSA_65_SEED_LEN] {
		&self.seed
	}

	/// Signs `message` with context [`CONTEXT`] (hedged: fresh randomness per signature, as
	/// FIPS 204 recommends). For protocol objects only (receipts, handshakes: each starts
	/// with its domain tag); an arbitrary message is signed with [`Self::sign_message`].
	pub fn sign(&self, message: &[u8]) -> Result<MlDsaSignature, KeyError> {
		self.sign_with_context(message, CONTEXT)
	}

	/// Signs an arbitrary message with context [`MESSAGE_CONTEXT`]: never a valid receipt or
	/// handshake signature, whatever the message's bytes.
	pub fn sign_message(&self, message: &[u8]) -> Result<MlDsaSignature, KeyError> {
		self.sign_with_context(message, MESSAGE_CONTEXT)
	}

	/// Signs a transaction's signing payload as an ML-DSA account (context
	/// [`TRANSACTION_CONTEXT`]; see [`crate::account`]).
	pub fn sign_transaction(&self, payload: &[u8]) -> Result<MlDsaSignature, KeyError> {
		self.sign_with_context(payload, TRANSACTION_CONTEXT)
	}

	/// Signs inside TLS 1.3 or X.509 (context [`TLS_CONTEXT`]): an agent's certificate and
	/// its handshake signatures, which the TLS stack frames itself.
	pub fn sign_tls(&self, message: &[u8]) -> Result<MlDsaSignature, KeyError> {
		self.sign_with_context(message, TLS_CONTEXT)
	}

	fn sign_with_context(&self, message: &[u8], context: &[u8]) -> Result<MlDsaSignature, KeyError> {
		let randomness = random::<32>()?;
		ml_dsa_65::sign(&self.signing_key, message, context, randomness)
			.map(|s| MlDsaSignature(*s.as_ref()))
			.map_err(|_| KeyError::Signing)
	}

	/// Writes the seed as hex to a new file with mode 0600. Never overwrites.
	pub fn write_seed_file(&self, path: &Path) -> Result<(), KeyError> {
		let io = |source| KeyError::Io { path: path.display().to_string(), source };
		let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
			if e.kind() == std::io::ErrorKind::AlreadyExists {
				KeyError::Exists(path.display().to_string())
			} else {
				io(e)
			}
		})?;
		let text = Zeroizing::new(types::to_hex(&self.seed[..]) + "\n");
		file.write_all(text.as_bytes()).and_then(|_| file.sync_all()).map_err(io)
	}

	/// Reads the key in `path`, or generates one there (creating the directory) if there is
	/// none: a client's session key.
	pub fn read_or_generate(path: &Path) -> Result<Self, KeyError> {
		if path.exists() {
			return Self::read_seed_file(path);
		}
		if let Some(dir) = path.parent() {
			fs::create_dir_all(dir).map_err(|source| KeyError::Io { path: dir.display().to_string(), source })?;
		}
		let key = Self::generate()?;
		key.write_seed_file(path)?;
		Ok(key)
	}

	/// Reads a seed file written by [`Self::write_seed_file`]. Refuses a file that group or
	/// others can read.
	pub fn read_seed_file(path: &Path) -> Result<Self, KeyError> {
		let io = |source| KeyError::Io { path: path.display().to_string(), source };
		let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
		if mode & 0o077 != 0 {
			return Err(KeyError::Permissions { path: path.display().to_string(), mode });
		}
		let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
		let bytes =
			Zeroizing::new(types::from_hex(text.trim()).map_err(|_| KeyError::Malformed(path.display().to_string()))?);
		let seed = <[u8; ML_DSA_65_SEED_LEN]>::try_from(&bytes[..])
			.map_err(|_| KeyError::Malformed(path.display().to_string()))?;
		Ok(Self::from_seed(seed))
	}
}
