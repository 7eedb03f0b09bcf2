//! The `pq-key` commands end to end, on files in a temporary directory.

use clap::Parser;
use interlattice_pq_key::{run, Cli};

fn pq_key(args: &[&str]) -> (anyhow::Result<i32>, String) {
	let cli = Cli::try_parse_from(std::iter::once("pq-key").chain(args.iter().copied())).unwrap();
	let mut out = Vec::new();
	let result = run(cli, &mut out);
	(result, String::from_utf8(out).unwrap())
}

#[test]
fn generate_inspect_sign_and_verify_a_receipt() {
	let dir = tempfile::tempdir().unwrap();
	let key = dir.path().join("client.key");
	let key = key.to_str().unwrap();

	let (r, out) = pq_key(&["generate", "--out", key]);
	assert_eq!(r.unwrap(), 0);
	let account = out.lines().find_map(|l| l.strip_prefix("account:")).unwrap().trim().to_string();
	// Generating again into the same file is refused; the key is kept.
	let (r, _) = pq_key(&["generate", "--out", key]);
	assert!(r.unwrap_err().to_string().contains("refusing to overwrite"));

	let (r, out) = pq_key(&["inspect", "--key", key]);
	assert_eq!(r.unwrap(), 0);
	assert!(out.contains(&account), "inspect shows the same account");
	let (_, public) = pq_key(&["inspect", "--key", key, "--full"]);
	let public = public.trim().to_string();
	assert_eq!(public.len(), 2 + 2 * 1952);

	let receipt = dir.path().join("receipt.json");
	std::fs::write(
		&receipt,
		r#"{"genesisHash":"0x0101010101010101010101010101010101010101010101010101010101010101",
		   "provider":"0x0202020202020202020202020202020202020202020202020202020202020202",
		   "sessionId":7,
		   "sessionNonce":"0x0303030303030303030303030303030303030303030303030303030303030303",
		   "sequence":1,"bytes":1048576,"seconds":0,"amount":"1000000000"}"#,
	)
	.unwrap();
	let (r, signed) = pq_key(&["sign-receipt", "--key", key, "--receipt", receipt.to_str().unwrap()]);
	assert_eq!(r.unwrap(), 0);
	let signed_file = dir.path().join("signed.json");
	std::fs::write(&signed_file, &signed).unwrap();
	let signed_path = signed_file.to_str().unwrap();

	let (r, out) = pq_key(&["verify-receipt", "--public", &public, "--signed-receipt", signed_path]);
	assert_eq!((r.unwrap(), out.trim()), (0, "valid"));

	// A receipt whose amount was raised after signing does not verify.
	let tampered = signed.replace("\"1000000000\"", "\"9000000000\"");
	assert_ne!(tampered, signed);
	std::fs::write(&signed_file, tampered).unwrap();
	let (r, out) = pq_key(&["verify-receipt", "--public", &public, "--signed-receipt", signed_path]);
	assert_eq!((r.unwrap(), out.trim()), (1, "INVALID"));
}

#[test]
fn sign_and_verify_a_file_and_reject_bad_input() {
	let dir = tempfile::tempdir().unwrap();
	let key = dir.path().join("k");
	let key = key.to_str().unwrap();
	pq_key(&["generate", "--out", key]).0.unwrap();
	let (_, public) = pq_key(&["inspect", "--key", key, "--full"]);
	let public_file = dir.path().join("pub");
	std::fs::write(&public_file, public.trim()).unwrap();
	let public_arg = format!("@{}", public_file.display());

	let msg = dir.path().join("msg");
	std::fs::write(&msg, b"hello").unwrap();
	let msg = msg.to_str().unwrap();
	let (r, sig) = pq_key(&["sign", "--key", key, "--message", msg]);
	assert_eq!(r.unwrap(), 0);
	let sig = sig.trim();

	let (r, _) = pq_key(&["verify", "--public", &public_arg, "--message", msg, "--signature", sig]);
	assert_eq!(r.unwrap(), 0);

	let other = dir.path().join("other");
	std::fs::write(&other, b"hellO").unwrap();
	let (r, out) =
		pq_key(&["verify", "--public", &public_arg, "--message", other.to_str().unwrap(), "--signature", sig]);
	assert_eq!((r.unwrap(), out.trim()), (1, "INVALID"));

	// Truncated signature and garbage key are errors, not "invalid".
	let (r, _) = pq_key(&["verify", "--public", &public_arg, "--message", msg, "--signature", &sig[..100]]);
	assert!(r.is_err());
	let (r, _) = pq_key(&["verify", "--public", "0x1234", "--message", msg, "--signature", sig]);
	assert!(r.is_err());
	// A key file others can read is refused.
	use std::os::unix::fs::PermissionsExt;
	std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
	let (r, _) = pq_key(&["inspect", "--key", key]);
	assert!(r.unwrap_err().to_string().contains("chmod 600"));
}

/// Issue 16 item 6: a user asked to sign "a message" with `pq-key sign` must never sign a
/// spendable receipt, even when the message is exactly a receipt's signing payload. Before,
/// `sign` used the receipt context and that signature settled.
#[test]
fn a_signed_message_is_never_a_valid_receipt() {
	use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaSignature, SignedUsageReceipt, UsageReceipt};
	let dir = tempfile::tempdir().unwrap();
	let key = dir.path().join("k");
	let key = key.to_str().unwrap();
	pq_key(&["generate", "--out", key]).0.unwrap();
	let pair = MlDsaKeyPair::read_seed_file(std::path::Path::new(key)).unwrap();
	let receipt = UsageReceipt {
		genesis_hash: [1; 32],
		provider: [2; 32],
		session_id: 7,
		session_nonce: [3; 32],
		sequence: 1,
		bytes: 1 << 30,
		seconds: 0,
		amount: 1_000_000_000_000,
	};
	let message = dir.path().join("payload.bin");
	std::fs::write(&message, receipt.signing_payload()).unwrap();
	let (r, sig) = pq_key(&["sign", "--key", key, "--message", message.to_str().unwrap()]);
	assert_eq!(r.unwrap(), 0);
	let signature = MlDsaSignature::from_slice(&hex::decode(sig.trim().trim_start_matches("0x")).unwrap()).unwrap();
	let signed = SignedUsageReceipt { receipt, signature };
	assert!(!signed.verify(pair.public()), "a message signature must not verify as a receipt");
	// It is a valid message signature.
	let public_file = dir.path().join("pub");
	std::fs::write(&public_file, pq_key(&["inspect", "--key", key, "--full"]).1.trim()).unwrap();
	let (r, _) = pq_key(&[
		"verify",
		"--public",
		&format!("@{}", public_file.display()),
		"--message",
		message.to_str().unwrap(),
		"--signature",
		sig.trim(),
	]);
	assert_eq!(r.unwrap(), 0);
}
