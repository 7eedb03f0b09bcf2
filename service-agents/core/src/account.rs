//! The key that signs an account's transactions: sr25519 (a secret URI such as `//Alice` or
//! a mnemonic) or ML-DSA-65 (a key file written by `pq-key account generate`, named as
//! `ml-dsa:<path>`). Agents, clients and `pq-key` take either wherever they take an account.

use std::{path::Path, sync::Arc};

use interlattice_pq_crypto::keys::{KeyError, MlDsaKeyPair};
use interlattice_runtime::{AccountId, Signature};
use sp_core::{sr25519, Pair};

/// Prefix of an account given as an ML-DSA-65 key file: `ml-dsa:/path/to/key`.
pub const ML_DSA_PREFIX: &str = "ml-dsa:";

/// Why an account key could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum AccountKeyError {
	/// Not a valid sr25519 secret URI.
	#[error("not a valid sr25519 secret URI (or `ml-dsa:<key file>`): {0}")]
	SecretUri(String),
	/// The ML-DSA key file could not be read.
	#[error("ML-DSA account key: {0}")]
	Key(#[from] KeyError),
}

/// An account's signing key.
#[derive(Clone)]
pub enum AccountKey {
	/// A classical sr25519 key (boxed: the pair holds its expanded secret).
	Sr25519(Box<sr25519::Pair>),
	/// An ML-DSA-65 key: of an ML-DSA account, or bound to a classical one (then
	/// `bound_to` is that account).
	MlDsa65 {
		/// The key pair.
		pair: Arc<MlDsaKeyPair>,
		/// The classical account the key acts for, if it was bound to one; else the key's
		/// own ML-DSA account.
		bound_to: Option<AccountId>,
	},
}

impl std::fmt::Debug for AccountKey {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		write!(f, "AccountKey({}, {})", self.scheme(), self.account_id())
	}
}

impl From<sr25519::Pair> for AccountKey {
	fn from(pair: sr25519::Pair) -> Self {
		Self::Sr25519(Box::new(pair))
	}
}

impl AccountKey {
	/// An account given as `ml-dsa:<key file>` (optionally `ml-dsa:<key file>@<SS58 account>`
	/// for a key bound to a classical account) or as an sr25519 secret URI.
	pub fn from_secret(secret: &str) -> Result<Self, AccountKeyError> {
		match secret.strip_prefix(ML_DSA_PREFIX) {
			Some(rest) => {
				let (path, bound_to) = match rest.rsplit_once('@') {
					Some((path, account)) => {
						use sp_core::crypto::Ss58Codec;
						let account = AccountId::from_ss58check_with_version(account).map(|(a, _)| a).map_err(|e| {
							AccountKeyError::SecretUri(format!("`{account}` is not an SS58 account: {e:?}"))
						})?;
						(path, Some(account))
					},
					None => (rest, None),
				};
				Ok(Self::MlDsa65 { pair: Arc::new(MlDsaKeyPair::read_seed_file(Path::new(path))?), bound_to })
			},
			None => sr25519::Pair::from_string(secret, None)
				.map(|pair| Self::Sr25519(Box::new(pair)))
				.map_err(|e| AccountKeyError::SecretUri(format!("{e:?}"))),
		}
	}

	/// An ML-DSA account's key.
	pub fn ml_dsa(pair: MlDsaKeyPair) -> Self {
		Self::MlDsa65 { pair: Arc::new(pair), bound_to: None }
	}

	/// The account this key signs for.
	pub fn account_id(&self) -> AccountId {
		match self {
			Self::Sr25519(pair) => pair.public().into(),
			Self::MlDsa65 { bound_to: Some(account), .. } => account.clone(),
			Self::MlDsa65 { pair, bound_to: None } => AccountId::new(pair.public().account_id()),
		}
	}

	/// "sr25519" or "ML-DSA-65".
	pub fn scheme(&self) -> &'static str {
		match self {
			Self::Sr25519(_) => "sr25519",
			Self::MlDsa65 { .. } => "ML-DSA-65",
		}
	}

	/// Signs a transaction's signing payload. An ML-DSA key not yet on chain sends itself
	/// along (`MlDsa65WithKey`, 1,952 bytes more), which only an ML-DSA account (not a bound
	/// key) may do.
	pub fn sign_payload(&self, payload: &[u8], key_on_chain: bool) -> Result<Signature, AccountKeyError> {
		Ok(match self {
			Self::Sr25519(pair) => Signature::Sr25519(pair.sign(payload)),
			Self::MlDsa65 { pair, .. } => {
				let signature = pair.sign_transaction(payload)?;
				if key_on_chain {
					Signature::MlDsa65(Box::new(signature))
				} else {
					Signature::MlDsa65WithKey(Box::new(pair.public().clone()), Box::new(signature))
				}
			},
		})
	}
}
