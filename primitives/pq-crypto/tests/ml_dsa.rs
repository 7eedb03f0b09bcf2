//! ML-DSA-65 through the crate's public API and the host function's native side: round
//! trips, rejection of every kind of bad input, NIST ACVP key-generation and
//! signature-verification vectors, and interoperability with a second, independent
//! implementation (`fips204`).

use fips204::traits::{KeyGen, SerDes, Signer, Verifier};
use interlattice_pq_crypto::{
	keys::{KeyError, MlDsaKeyPair},
	pq_crypto, verify, MlDsaPublicKey, MlDsaSignature, SignedUsageReceipt, UsageReceipt, CONTEXT,
	ML_DSA_65_PUBLIC_KEY_LEN, ML_DSA_65_SIGNATURE_LEN,
};

const MESSAGE: &[u8] = b"interlattice test message";

fn pair(seed: u8) -> MlDsaKeyPair {
	MlDsaKeyPair::from_seed([seed; 32])
}

#[test]
fn sign_then_verify_round_trips() {
	let pair = pair(1);
	let sig = pair.sign(MESSAGE).unwrap();
	assert!(verify(pair.public(), MESSAGE, &sig));
	// Hedged signing: two signatures of one message differ, both verify.
	let sig2 = pair.sign(MESSAGE).unwrap();
	assert_ne!(sig, sig2);
	assert!(verify(pair.public(), MESSAGE, &sig2));
}

#[test]
fn tampered_message_signature_or_key_is_rejected() {
	let pair = pair(2);
	let sig = pair.sign(MESSAGE).unwrap();

	let mut message = MESSAGE.to_vec();
	message[0] ^= 1;
	assert!(!verify(pair.public(), &message, &sig), "tampered message");
	assert!(!verify(pair.public(), &MESSAGE[..MESSAGE.len() - 1], &sig), "shortened message");

	for i in [0, 1000, ML_DSA_65_SIGNATURE_LEN - 1] {
		let mut bad = sig.clone();
		bad.0[i] ^= 0x40;
		assert!(!verify(pair.public(), MESSAGE, &bad), "signature tampered at {i}");
	}

	let other = self::pair(3);
	assert!(!verify(other.public(), MESSAGE, &sig), "wrong key");
	let mut bad_key = pair.public().clone();
	bad_key.0[100] ^= 1;
	assert!(!verify(&bad_key, MESSAGE, &sig), "tampered key");

	// The context string is part of what is signed.
	assert!(!pq_crypto::ml_dsa_65_verify(pair.public().as_ref(), b"other", MESSAGE, sig.as_ref()));
	assert!(pq_crypto::ml_dsa_65_verify(pair.public().as_ref(), CONTEXT, MESSAGE, sig.as_ref()));
}

#[test]
fn truncated_oversized_and_empty_inputs_are_rejected_without_panic() {
	let pair = pair(4);
	let sig = pair.sign(MESSAGE).unwrap();
	let pk = pair.public().as_ref();
	let s = sig.as_ref();
	let long_pk = [pk, &[0u8][..]].concat();
	let long_sig = [s, &[0u8][..]].concat();
	let cases: [(&[u8], &[u8], &[u8]); 7] = [
		(&pk[..ML_DSA_65_PUBLIC_KEY_LEN - 1], CONTEXT, s),
		(&long_pk, CONTEXT, s),
		(pk, CONTEXT, &s[..ML_DSA_65_SIGNATURE_LEN - 1]),
		(pk, CONTEXT, &long_sig),
		(&[], CONTEXT, s),
		(pk, CONTEXT, &[]),
		(pk, &[7u8; 256], s), // FIPS 204 allows at most 255 bytes of context
	];
	for (i, (pk, ctx, sig)) in cases.into_iter().enumerate() {
		assert!(!pq_crypto::ml_dsa_65_verify(pk, ctx, MESSAGE, sig), "case {i}");
	}
	// The typed API refuses wrong lengths before anything is verified.
	assert!(MlDsaPublicKey::from_slice(&long_pk).is_err());
	assert!(MlDsaSignature::from_slice(&s[1..]).is_err());
	// An all-zero key and signature are malformed, not a panic.
	assert!(!verify(
		&MlDsaPublicKey([0; ML_DSA_65_PUBLIC_KEY_LEN]),
		MESSAGE,
		&MlDsaSignature([0; ML_DSA_65_SIGNATURE_LEN])
	));
	assert!(!verify(
		&MlDsaPublicKey([0xff; ML_DSA_65_PUBLIC_KEY_LEN]),
		MESSAGE,
		&MlDsaSignature([0xff; ML_DSA_65_SIGNATURE_LEN])
	));
}

#[derive(serde::Deserialize)]
struct AcvpFile {
	#[serde(rename = "parameterSet")]
	parameter_set: String,
	tests: Vec<AcvpKeyGen>,
}

#[derive(serde::Deserialize)]
struct AcvpKeyGen {
	#[serde(rename = "tcId")]
	tc_id: u32,
	seed: String,
	pk: String,
	sk: String,
}

#[test]
fn nist_acvp_key_generation_vectors_pass() {
	let file: AcvpFile = serde_json::from_str(include_str!("data/acvp-ml-dsa-65-keygen.json")).unwrap();
	assert_eq!(file.parameter_set, "ML-DSA-65");
	assert!(!file.tests.is_empty());
	for t in file.tests {
		let seed: [u8; 32] = hex(&t.seed).try_into().unwrap();
		let ours = libcrux_ml_dsa::ml_dsa_65::generate_key_pair(seed);
		assert_eq!(ours.verification_key.as_slice(), &hex(&t.pk)[..], "pk of tcId {}", t.tc_id);
		assert_eq!(ours.signing_key.as_slice(), &hex(&t.sk)[..], "sk of tcId {}", t.tc_id);
		// And through our own key type.
		assert_eq!(MlDsaKeyPair::from_seed(seed).public().as_ref(), &hex(&t.pk)[..]);
	}
}

#[derive(serde::Deserialize)]
struct AcvpSigVerFile {
	#[serde(rename = "parameterSet")]
	parameter_set: String,
	#[serde(rename = "signatureInterface")]
	signature_interface: String,
	#[serde(rename = "preHash")]
	pre_hash: String,
	tests: Vec<AcvpSigVer>,
}

#[derive(serde::Deserialize)]
struct AcvpSigVer {
	#[serde(rename = "tcId")]
	tc_id: u32,
	#[serde(rename = "testPassed")]
	test_passed: bool,
	reason: String,
	pk: String,
	message: String,
	context: String,
	signature: String,
}

/// NIST's sigVer vectors from the group with the external interface and no pre-hash: each
/// case gives a key, a message, a context string and a signature, and `testPassed` is the
/// result of ML-DSA.Verify(pk, M, σ, ctx) itself, so every case goes through our real entry
/// point unchanged. (The internal-interface groups verify M′ directly and would need
/// libcrux's `acvp` feature; the pre-hash groups are HashML-DSA, which we do not accept.)
#[test]
fn nist_acvp_signature_verification_vectors_pass() {
	let file: AcvpSigVerFile = serde_json::from_str(include_str!("data/acvp-ml-dsa-65-sigver.json")).unwrap();
	assert_eq!(file.parameter_set, "ML-DSA-65");
	assert_eq!(file.signature_interface, "external");
	assert_eq!(file.pre_hash, "pure");
	assert!(file.tests.iter().any(|t| t.test_passed), "no valid case");
	assert!(file.tests.iter().any(|t| !t.test_passed), "no invalid case");
	for t in file.tests {
		let (pk, message, context, sig) = (hex(&t.pk), hex(&t.message), hex(&t.context), hex(&t.signature));
		let case = format!("tcId {} ({})", t.tc_id, t.reason);
		assert_eq!(pq_crypto::ml_dsa_65_verify(&pk, &context, &message, &sig), t.test_passed, "{case}");
		// The same verdict from the second implementation.
		let their_pk = fips204::ml_dsa_65::PublicKey::try_from_bytes(pk.try_into().unwrap()).unwrap();
		let sig: [u8; ML_DSA_65_SIGNATURE_LEN] = sig.try_into().unwrap();
		assert_eq!(their_pk.verify(&message, &sig, &context), t.test_passed, "fips204: {case}");
	}
}

#[test]
fn fips204_verifies_our_signatures_and_we_verify_its() {
	for seed in 0..4u8 {
		// Same seed, same keys in both implementations.
		let ours = pair(seed);
		let (their_pk, their_sk) = fips204::ml_dsa_65::KG::keygen_from_seed(&[seed; 32]);
		assert_eq!(ours.public().as_ref(), &their_pk.clone().into_bytes()[..]);

		let our_sig = ours.sign(MESSAGE).unwrap();
		assert!(their_pk.verify(MESSAGE, &our_sig.0, CONTEXT), "fips204 rejects our signature");
		assert!(!their_pk.verify(MESSAGE, &our_sig.0, b""), "context must matter to fips204");

		let their_sig = their_sk.try_sign(MESSAGE, CONTEXT).unwrap();
		assert!(verify(ours.public(), MESSAGE, &MlDsaSignature(their_sig)), "we reject fips204's");
	}
}

#[test]
fn receipts_verify_only_for_their_exact_content_and_signer() {
	let client = pair(9);
	let receipt = UsageReceipt {
		genesis_hash: [7; 32],
		provider: [5; 32],
		session_id: 42,
		session_nonce: [6; 32],
		sequence: 3,
		bytes: 10 << 20,
		seconds: 60,
		amount: 123_456_789_000,
	};
	let payload = receipt.signing_payload();
	assert_eq!(payload.len(), interlattice_pq_crypto::receipt::RECEIPT_PAYLOAD_LEN);
	assert!(payload.starts_with(b"interlattice/usage-receipt/v2"));
	let signed = SignedUsageReceipt { signature: client.sign(&payload).unwrap(), receipt };
	assert!(signed.verify(client.public()));
	assert!(!signed.verify(pair(10).public()));

	// Changing any field invalidates the signature.
	let variants = [
		UsageReceipt { genesis_hash: [8; 32], ..receipt },
		UsageReceipt { session_id: 43, ..receipt },
		UsageReceipt { provider: [9; 32], ..receipt },
		UsageReceipt { session_nonce: [9; 32], ..receipt },
		UsageReceipt { sequence: 4, ..receipt },
		UsageReceipt { bytes: receipt.bytes + 1, ..receipt },
		UsageReceipt { seconds: 61, ..receipt },
		UsageReceipt { amount: receipt.amount + 1, ..receipt },
	];
	for v in variants {
		assert!(!v.verify(client.public(), &signed.signature), "{v:?}");
	}
	// A signature over the bare SCALE encoding (no domain tag) is not a receipt signature.
	let untagged = client.sign(&codec::Encode::encode(&receipt)).unwrap();
	assert!(!receipt.verify(client.public(), &untagged));
}

#[test]
fn receipt_json_uses_hex_and_decimal_strings() {
	let receipt = UsageReceipt {
		genesis_hash: [1; 32],
		provider: [5; 32],
		session_id: 1,
		session_nonce: [6; 32],
		sequence: 1,
		bytes: 1,
		seconds: 0,
		amount: u128::MAX,
	};
	let json = serde_json::to_value(receipt).unwrap();
	assert_eq!(json["amount"], u128::MAX.to_string());
	assert_eq!(json["genesisHash"], format!("0x{}", "01".repeat(32)));
	assert_eq!(json["provider"], format!("0x{}", "05".repeat(32)));
	assert_eq!(json["sessionNonce"], format!("0x{}", "06".repeat(32)));
	let back: UsageReceipt = serde_json::from_value(json).unwrap();
	assert_eq!(back, receipt);
	let sig = MlDsaSignature([0xab; ML_DSA_65_SIGNATURE_LEN]);
	let s = serde_json::to_string(&sig).unwrap();
	assert!(s.starts_with("\"0xabab"));
	assert_eq!(serde_json::from_str::<MlDsaSignature>(&s).unwrap(), sig);
	assert!(serde_json::from_str::<MlDsaSignature>("\"0xabab\"").is_err());
}

#[test]
fn seed_files_are_private_never_overwritten_and_checked() {
	use std::os::unix::fs::PermissionsExt;
	let dir = tempfile::tempdir().unwrap();
	let path = dir.path().join("key");
	let pair = MlDsaKeyPair::generate().unwrap();
	pair.write_seed_file(&path).unwrap();
	assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
	let loaded = MlDsaKeyPair::read_seed_file(&path).unwrap();
	assert_eq!(loaded.public(), pair.public());
	assert!(matches!(pair.write_seed_file(&path), Err(KeyError::Exists(_))));

	std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
	assert!(matches!(MlDsaKeyPair::read_seed_file(&path), Err(KeyError::Permissions { .. })));

	let bad = dir.path().join("bad");
	std::fs::write(&bad, "0x1234").unwrap();
	std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
	assert!(matches!(MlDsaKeyPair::read_seed_file(&bad), Err(KeyError::Malformed(_))));
}

fn hex(s: &str) -> Vec<u8> {
	(0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn shipped_development_keys_match_their_public_seeds() {
	use interlattice_pq_crypto::dev_keys::{dev_public_key, DEV_KEY_NAMES};
	for name in DEV_KEY_NAMES {
		let pair = interlattice_pq_crypto::keys::MlDsaKeyPair::dev(name);
		assert_eq!(dev_public_key(name).as_ref(), Some(pair.public()), "dev-keys/{name}.pk is stale");
	}
	assert_ne!(dev_public_key("charlie"), dev_public_key("dave"));
	let alice = interlattice_pq_crypto::keys::MlDsaKeyPair::dev_account("alice");
	let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/dev-keys/account-alice.pk");
	if std::env::var_os("INTERLATTICE_BLESS").is_some() {
		std::fs::write(shipped, alice.public().as_ref()).unwrap();
	}
	assert_eq!(
		interlattice_pq_crypto::dev_keys::ALICE_ACCOUNT,
		&alice.public().0,
		"dev-keys/account-alice.pk is stale"
	);
	assert_eq!(dev_public_key("mallory"), None);
}
