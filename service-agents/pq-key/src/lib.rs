//! The `pq-key` command: ML-DSA-65 key files and signatures for providers and clients.
//!
//! A key file holds only the 32-byte seed, hex, mode 0600; `generate` never overwrites one.
//! The "account" shown for a key is the 32-byte account id `blake2_256(public key)` in SS58
//! with the chain's prefix (4242), the same derivation everywhere in Interlattice.

use std::{fs, io::Write, path::PathBuf};

use anyhow::{bail, Context, Result};
use interlattice_pq_crypto::{
	keys::MlDsaKeyPair, verify_message, MlDsaPublicKey, MlDsaSignature, SignedUsageReceipt, UsageReceipt,
};
use sp_core::crypto::{AccountId32, Ss58AddressFormat, Ss58Codec};

/// The chain's SS58 prefix (`interlattice_runtime::SS58_PREFIX`; not imported to keep this
/// tool free of the runtime).
pub const SS58_PREFIX: u16 = 4242;

/// ML-DSA-65 (FIPS 204) key tool.
#[derive(Debug, clap::Parser)]
#[command(name = "pq-key", version, about)]
pub struct Cli {
	#[command(subcommand)]
	pub command: Command,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
	/// Generate a new key pair; write its seed to a new file with mode 0600.
	Generate {
		/// The key file to create (refuses to overwrite).
		#[arg(long, short)]
		out: PathBuf,
		/// Write the well-known development key of this name (e.g. `charlie`, the dev chain's
		/// bootstrap dVPN provider) instead of a random one. Its secret is public: for
		/// development networks only.
		#[arg(long, value_name = "NAME")]
		dev: Option<String>,
	},
	/// Show a key's public key and account.
	Inspect {
		/// The key file.
		#[arg(long, short)]
		key: PathBuf,
		/// Print the whole public key (1952 bytes as hex) instead of a summary.
		#[arg(long)]
		full: bool,
	},
	/// Sign a usage receipt (JSON, as in docs/receipt-format.md); prints the signed receipt.
	SignReceipt {
		#[arg(long, short)]
		key: PathBuf,
		/// File with the receipt as JSON (`-` for standard input).
		#[arg(long)]
		receipt: PathBuf,
	},
	/// Sign the bytes of a file with the Interlattice context; prints the signature as hex.
	Sign {
		#[arg(long, short)]
		key: PathBuf,
		/// The file whose bytes are signed.
		#[arg(long)]
		message: PathBuf,
	},
	/// Verify a signature of a file's bytes. Exit code 0 when valid, 1 when not.
	Verify {
		/// Public key as hex, or `@file` holding it.
		#[arg(long)]
		public: String,
		#[arg(long)]
		message: PathBuf,
		/// Signature as hex, or `@file` holding it.
		#[arg(long)]
		signature: String,
	},
	/// Verify a signed receipt (JSON). Exit code 0 when valid, 1 when not.
	VerifyReceipt {
		/// Public key as hex, or `@file` holding it.
		#[arg(long)]
		public: String,
		/// File with the signed receipt as JSON (`-` for standard input).
		#[arg(long)]
		signed_receipt: PathBuf,
	},
}

/// The SS58 account of an ML-DSA public key.
pub fn account_of(public: &MlDsaPublicKey) -> String {
	AccountId32::from(public.account_id()).to_ss58check_with_version(Ss58AddressFormat::custom(SS58_PREFIX))
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>> {
	if path.as_os_str() == "-" {
		let mut buf = Vec::new();
		std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
		Ok(buf)
	} else {
		fs::read(path).with_context(|| format!("reading {}", path.display()))
	}
}

fn hex_arg(arg: &str) -> Result<Vec<u8>> {
	let text = match arg.strip_prefix('@') {
		Some(path) => fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
		None => arg.to_string(),
	};
	hex::decode(text.trim().trim_start_matches("0x")).context("not valid hex")
}

fn public_arg(arg: &str) -> Result<MlDsaPublicKey> {
	MlDsaPublicKey::from_slice(&hex_arg(arg)?).context("not an ML-DSA-65 public key")
}

/// Runs one command, writing its output to `out`. Returns the process exit code.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<i32> {
	match cli.command {
		Command::Generate { out: path, dev } => {
			let pair = match &dev {
				Some(name) => MlDsaKeyPair::dev(&name.to_lowercase()),
				None => MlDsaKeyPair::generate()?,
			};
			pair.write_seed_file(&path)?;
			writeln!(out, "key file:   {} (mode 0600; keep it secret)", path.display())?;
			writeln!(out, "public key: 0x{}", hex::encode(pair.public().as_ref()))?;
			writeln!(out, "account:    {}", account_of(pair.public()))?;
			if let Some(name) = dev {
				writeln!(out, "warning:    development key `{name}`: its secret is public")?;
			}
		},
		Command::Inspect { key, full } => {
			let pair = MlDsaKeyPair::read_seed_file(&key)?;
			let pk = hex::encode(pair.public().as_ref());
			if full {
				writeln!(out, "0x{pk}")?;
			} else {
				writeln!(out, "scheme:     ML-DSA-65 (FIPS 204)")?;
				writeln!(out, "public key: 0x{}…{} (1952 bytes; --full prints it)", &pk[..16], &pk[pk.len() - 16..])?;
				writeln!(out, "account:    {}", account_of(pair.public()))?;
			}
		},
		Command::SignReceipt { key, receipt } => {
			let pair = MlDsaKeyPair::read_seed_file(&key)?;
			let receipt: UsageReceipt =
				serde_json::from_slice(&read_input(&receipt)?).context("not a usage receipt")?;
			let signature = pair.sign(&receipt.signing_payload())?;
			serde_json::to_writer_pretty(&mut *out, &SignedUsageReceipt { receipt, signature })?;
			writeln!(out)?;
		},
		Command::Sign { key, message } => {
			let pair = MlDsaKeyPair::read_seed_file(&key)?;
			// Under the message context: never a valid receipt, whatever the bytes.
			let signature = pair.sign_message(&read_input(&message)?)?;
			writeln!(out, "0x{}", hex::encode(signature.as_ref()))?;
		},
		Command::Verify { public, message, signature } => {
			let public = public_arg(&public)?;
			let signature = match MlDsaSignature::from_slice(&hex_arg(&signature)?) {
				Ok(s) => s,
				Err(e) => bail!("not an ML-DSA-65 signature: {e}"),
			};
			let valid = verify_message(&public, &read_input(&message)?, &signature);
			writeln!(out, "{}", if valid { "valid" } else { "INVALID" })?;
			return Ok(if valid { 0 } else { 1 });
		},
		Command::VerifyReceipt { public, signed_receipt } => {
			let public = public_arg(&public)?;
			let signed: SignedUsageReceipt =
				serde_json::from_slice(&read_input(&signed_receipt)?).context("not a signed usage receipt")?;
			let valid = signed.verify(&public);
			writeln!(out, "{}", if valid { "valid" } else { "INVALID" })?;
			return Ok(if valid { 0 } else { 1 });
		},
	}
	Ok(0)
}
