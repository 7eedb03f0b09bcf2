//! The transaction signature: the four classical variants of Substrate's `MultiSignature`,
//! with their encoding unchanged (variants 0–3: ed25519, sr25519, ecdsa, Ethereum-style ecdsa;
//! so polkadot.js, subxt and every wallet keep signing for classical accounts), and two
//! ML-DSA-65 variants (4 and 5). Byte-level description in
//! `docs/pq-accounts.md`.
//!
//! - `MlDsa65(signature)`: the account's key is read from state (`pallet_pq_accounts`).
//! - `MlDsa65WithKey(key, signature)`: the key travels with the signature, for an ML-DSA
//!   account whose key is not yet on chain (its id must derive from the key); once a key is
//!   on chain, only that key is accepted.
//!
//! A classical signature for a locked account never verifies (in blocks), and the pool
//! refuses it first with a clear code ([`check_before_pool`]). The ML-DSA parts are boxed, so
//! that every transaction in memory (in the pool, in blocks) is not 5 KB large.

use alloc::boxed::Box;
use codec::{Decode, DecodeWithMemTracking, Encode};
use interlattice_pq_crypto::{account, verify_transaction, MlDsaPublicKey, MlDsaSignature};
use pallet_pq_accounts::{VALIDITY_ACCOUNT_LOCKED, VALIDITY_UNKNOWN_KEY};
use scale_info::TypeInfo;
use sp_core::{ecdsa, ed25519, sr25519};
use sp_runtime::{
	generic::Preamble,
	traits::{IdentifyAccount, Lazy, Verify},
	transaction_validity::{InvalidTransaction, TransactionValidityError},
	AccountId32, MultiAddress, MultiSignature, MultiSigner,
};

use crate::{PqAccounts, UncheckedExtrinsic};

/// A transaction signature.
#[derive(Eq, PartialEq, Clone, Encode, Decode, DecodeWithMemTracking, Debug, TypeInfo)]
pub enum Signature {
	/// An ed25519 signature (as `MultiSignature::Ed25519`).
	#[codec(index = 0)]
	Ed25519(ed25519::Signature),
	/// An sr25519 signature (as `MultiSignature::Sr25519`).
	#[codec(index = 1)]
	Sr25519(sr25519::Signature),
	/// An ecdsa signature (as `MultiSignature::Ecdsa`).
	#[codec(index = 2)]
	Ecdsa(ecdsa::Signature),
	/// An ecdsa signature of an Ethereum-style account (as `MultiSignature::Eth`).
	#[codec(index = 3)]
	Eth(ecdsa::KeccakSignature),
	/// An ML-DSA-65 signature by the key the account has on chain.
	#[codec(index = 4)]
	MlDsa65(Box<MlDsaSignature>),
	/// An ML-DSA-65 signature with its key, for an ML-DSA account whose key is not on chain.
	#[codec(index = 5)]
	MlDsa65WithKey(Box<MlDsaPublicKey>, Box<MlDsaSignature>),
}

impl Signature {
	/// The classical signature, as Substrate's `MultiSignature`; `None` for ML-DSA.
	pub fn classical(&self) -> Option<MultiSignature> {
		match self {
			Self::Ed25519(s) => Some(MultiSignature::Ed25519(*s)),
			Self::Sr25519(s) => Some(MultiSignature::Sr25519(*s)),
			Self::Ecdsa(s) => Some(MultiSignature::Ecdsa(*s)),
			Self::Eth(s) => Some(MultiSignature::Eth(*s)),
			Self::MlDsa65(_) | Self::MlDsa65WithKey(..) => None,
		}
	}
}

impl From<MultiSignature> for Signature {
	fn from(s: MultiSignature) -> Self {
		match s {
			MultiSignature::Ed25519(s) => Self::Ed25519(s),
			MultiSignature::Sr25519(s) => Self::Sr25519(s),
			MultiSignature::Ecdsa(s) => Self::Ecdsa(s),
			MultiSignature::Eth(s) => Self::Eth(s),
		}
	}
}

/// Who signs: a classical public key or an ML-DSA-65 one.
#[derive(Eq, PartialEq, Clone, Encode, Decode, Debug, TypeInfo)]
pub enum Signer {
	/// An ed25519 key.
	Ed25519(ed25519::Public),
	/// An sr25519 key.
	Sr25519(sr25519::Public),
	/// An ecdsa key.
	Ecdsa(ecdsa::Public),
	/// An ecdsa key of an Ethereum-style account.
	Eth(ecdsa::KeccakPublic),
	/// An ML-DSA-65 key.
	MlDsa65(Box<MlDsaPublicKey>),
}

impl IdentifyAccount for Signer {
	type AccountId = AccountId32;
	/// A classical key's account as Substrate derives it; an ML-DSA key's is
	/// `interlattice_pq_crypto::account::account_id`.
	fn into_account(self) -> AccountId32 {
		match self {
			Self::Ed25519(k) => MultiSigner::Ed25519(k).into_account(),
			Self::Sr25519(k) => MultiSigner::Sr25519(k).into_account(),
			Self::Ecdsa(k) => MultiSigner::Ecdsa(k).into_account(),
			Self::Eth(k) => MultiSigner::Eth(k).into_account(),
			Self::MlDsa65(k) => AccountId32::new(account::account_id(&k)),
		}
	}
}

impl Verify for Signature {
	type Signer = Signer;

	/// Runs inside the runtime only: it reads `pallet_pq_accounts`' storage.
	fn verify<L: Lazy<[u8]>>(&self, mut msg: L, signer: &AccountId32) -> bool {
		match self {
			Self::MlDsa65(signature) => match PqAccounts::transaction_key(signer) {
				Some(key) => verify_transaction(&key, msg.get(), signature),
				None => false,
			},
			Self::MlDsa65WithKey(key, signature) => {
				let accepted = match PqAccounts::transaction_key(signer) {
					Some(on_chain) => on_chain == **key,
					None => AccountId32::new(account::account_id(key)) == *signer,
				};
				accepted && verify_transaction(key, msg.get(), signature)
			},
			classical => match classical.classical() {
				Some(signature) => !PqAccounts::is_locked(signer) && signature.verify(msg, signer),
				None => false,
			},
		}
	}
}

/// Refuses, before the pool and before any signature is verified, a transaction whose
/// signature cannot be valid for its account: a classical signature for a locked account
/// ([`VALIDITY_ACCOUNT_LOCKED`]) and an ML-DSA signature without a key for an account with
/// no key on chain ([`VALIDITY_UNKNOWN_KEY`]), both `InvalidTransaction::Custom`. Costs
/// one storage read. The signature check in blocks refuses both too (`BadProof`).
pub fn check_before_pool(tx: &UncheckedExtrinsic) -> Result<(), TransactionValidityError> {
	let Preamble::Signed(MultiAddress::Id(who), signature, _) = &tx.preamble else {
		return Ok(());
	};
	let refuse = |code| Err(InvalidTransaction::Custom(code).into());
	match signature {
		Signature::MlDsa65(_) if PqAccounts::transaction_key(who).is_none() => refuse(VALIDITY_UNKNOWN_KEY),
		Signature::Ed25519(_) | Signature::Sr25519(_) | Signature::Ecdsa(_) | Signature::Eth(_)
			if PqAccounts::is_locked(who) =>
		{
			refuse(VALIDITY_ACCOUNT_LOCKED)
		},
		_ => Ok(()),
	}
}
