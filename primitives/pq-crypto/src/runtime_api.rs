//! The `PqCryptoApi` runtime API: signature and receipt checks done by the runtime itself
//! (inside its Wasm, through the [`crate::pq_crypto`] host function). Wallets and agents can
//! call it with `state_call` to check a receipt exactly as settlement will.

use alloc::vec::Vec;

use crate::{MlDsaPublicKey, SignedUsageReceipt};

sp_api::decl_runtime_apis! {
	/// Post-quantum signature checks with the chain's own code.
	pub trait PqCryptoApi {
		/// Whether `signature` is a valid Interlattice ML-DSA-65 signature (context
		/// `"interlattice"`) of `message` by `public_key`. Malformed input yields `false`.
		fn verify_ml_dsa_65(public_key: Vec<u8>, message: Vec<u8>, signature: Vec<u8>) -> bool;

		/// Whether `receipt` carries a valid signature by `signer`.
		fn verify_receipt(signer: MlDsaPublicKey, receipt: SignedUsageReceipt) -> bool;
	}
}
