//! The `pq-key` command: ML-DSA-65 key files and signatures for providers and clients.
//!
//! A key file holds only the 32-byte seed, hex, mode 0600; `generate` never overwrites one.
//! The "account" shown for a key is the key's ML-DSA account id
//! (`interlattice_pq_crypto::account::account_id`, docs/pq-accounts.md) in SS58 with the
//! chain's prefix (4242), the same derivation everywhere in Interlattice.
//!
//! The transaction commands (`transfer`, `register-key`, `bind-key`, `lock`, `submit`) sign
//! with an account given as `ml-dsa:<key file>` (an ML-DSA account, or
//! `ml-dsa:<key file>@<account>` for a key bound to a classical account) or as an sr25519
//! secret URI, submit to the node at `--rpc`, and wait for the block that includes them.

use std::{fs, io::Write, path::PathBuf};

use anyhow::{bail, Context, Result};
use interlattice_agent_core::{account::AccountKey, chain::ChainClient};
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
		#[arg(long, value_name = "NAME", conflicts_with = "dev_account")]
		dev: Option<String>,
		/// Write the well-known development ML-DSA account key of this name (`alice`: endowed,
		/// with its key on chain, in every dev preset). Its secret is public.
		#[arg(long, value_name = "NAME")]
		dev_account: Option<String>,
	},
	/// Transfer LAT (`Balances::transfer_keep_alive`).
	Transfer {
		#[command(flatten)]
		tx: TxArgs,
		/// The recipient (SS58).
		#[arg(long)]
		to: String,
		/// Amount in LAT (up to 12 decimals).
		#[arg(long)]
		amount: String,
	},
	/// Put an ML-DSA account's key on chain (`PqAccounts::register_key`); the signer pays the
	/// deposit. An ML-DSA account's own first transaction does this by itself.
	RegisterKey {
		#[command(flatten)]
		tx: TxArgs,
		/// The key file whose public key is registered, or `--public`.
		#[arg(long, conflicts_with = "public")]
		key: Option<PathBuf>,
		/// The public key as hex, or `@file`.
		#[arg(long)]
		public: Option<String>,
	},
	/// Bind an ML-DSA key to the signing (classical) account (`PqAccounts::bind_key`), signed
	/// by both keys; `--lock` locks the account in the same transaction.
	BindKey {
		#[command(flatten)]
		tx: TxArgs,
		/// The ML-DSA key file to bind.
		#[arg(long)]
		key: PathBuf,
		/// Lock the account: from then on only the ML-DSA key acts for it. Cannot be undone.
		#[arg(long)]
		lock: bool,
	},
	/// Lock the signing account (`PqAccounts::lock`): only its ML-DSA key acts for it from
	/// then on. Cannot be undone.
	Lock {
		#[command(flatten)]
		tx: TxArgs,
	},
	/// Sign and submit any call, given SCALE-encoded as hex (e.g. from polkadot.js's
	/// extrinsics tab, "encoded call data").
	Submit {
		#[command(flatten)]
		tx: TxArgs,
		/// The encoded call (`0x…`), or `@file` holding it.
		#[arg(long)]
		call: String,
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

/// Who signs a transaction, and where it goes.
#[derive(Debug, clap::Args)]
pub struct TxArgs {
	/// The node's JSON-RPC endpoint.
	#[arg(long, default_value = "http://127.0.0.1:9944")]
	pub rpc: String,
	/// The signing account: `ml-dsa:<key file>`, `ml-dsa:<key file>@<SS58 account>` (a key
	/// bound to a classical account), or an sr25519 secret URI (`//Alice`). Also read from
	/// INTERLATTICE_ACCOUNT.
	#[arg(long, env = "INTERLATTICE_ACCOUNT", hide_env_values = true)]
	pub from: String,
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
		Command::Generate { out: path, dev, dev_account } => {
			let pair = match (&dev, &dev_account) {
				(Some(name), _) => MlDsaKeyPair::dev(&name.to_lowercase()),
				(None, Some(name)) => MlDsaKeyPair::dev_account(&name.to_lowercase()),
				(None, None) => MlDsaKeyPair::generate()?,
			};
			let dev = dev.or(dev_account);
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
		Command::Transfer { tx, to, amount } => {
			let dest = AccountId32::from_ss58check_with_version(&to)
				.map(|(a, _)| a)
				.map_err(|e| anyhow::anyhow!("--to is not an SS58 account: {e:?}"))?;
			let value = interlattice_agent_core::lat::parse_lat(&amount).map_err(anyhow::Error::msg)?;
			let call =
				interlattice_runtime::RuntimeCall::Balances(interlattice_runtime::BalancesCall::transfer_keep_alive {
					dest: dest.into(),
					value,
				});
			submit(&tx, call, out)?;
		},
		Command::RegisterKey { tx, key, public } => {
			let public_key = match (key, public) {
				(Some(path), _) => MlDsaKeyPair::read_seed_file(&path)?.public().clone(),
				(None, Some(hex)) => public_arg(&hex)?,
				(None, None) => bail!("give --key or --public"),
			};
			writeln!(out, "ML-DSA account: {}", account_of(&public_key))?;
			submit(&tx, pq_call(pallet_pq_accounts::Call::register_key { public_key: Box::new(public_key) }), out)?;
		},
		Command::BindKey { tx, key, lock } => {
			let pair = MlDsaKeyPair::read_seed_file(&key)?;
			let signer = AccountKey::from_secret(&tx.from)?;
			let genesis = block_on(async { Ok(ChainClient::connect(&tx.rpc).await?.genesis_hash()) })?;
			let account = signer.account_id();
			let proof = pair.sign(&interlattice_pq_crypto::account::binding_message(&genesis.0, account.as_ref()))?;
			let call = pq_call(pallet_pq_accounts::Call::bind_key {
				public_key: Box::new(pair.public().clone()),
				proof: Box::new(proof),
				lock,
			});
			submit(&tx, call, out)?;
			writeln!(
				out,
				"bound: ML-DSA signatures by this key act for {account} (sign with ml-dsa:{}@{account})",
				key.display()
			)?;
			if lock {
				writeln!(out, "locked: classical signatures for {account} are refused from now on")?;
			}
		},
		Command::Lock { tx } => {
			submit(&tx, pq_call(pallet_pq_accounts::Call::lock {}), out)?;
			writeln!(out, "locked: classical signatures for this account are refused from now on")?;
		},
		Command::Submit { tx, call } => {
			let bytes = hex_arg(&call)?;
			let call = <interlattice_runtime::RuntimeCall as codec::Decode>::decode(&mut &bytes[..])
				.context("not a call of this runtime")?;
			submit(&tx, call, out)?;
		},
	}
	Ok(0)
}

fn pq_call(call: pallet_pq_accounts::Call<interlattice_runtime::Runtime>) -> interlattice_runtime::RuntimeCall {
	interlattice_runtime::RuntimeCall::PqAccounts(call)
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
	tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

/// Signs `call` as `tx.from`, submits it and waits for its block; prints where it landed.
fn submit(tx: &TxArgs, call: interlattice_runtime::RuntimeCall, out: &mut impl Write) -> Result<()> {
	let signer = AccountKey::from_secret(&tx.from)?;
	let inclusion = block_on(async {
		let chain = ChainClient::connect(&tx.rpc).await?;
		Ok(chain.submit_and_watch(call, &signer).await?)
	})?;
	writeln!(
		out,
		"signed by:  {} ({})",
		signer.account_id().to_ss58check_with_version(Ss58AddressFormat::custom(SS58_PREFIX)),
		signer.scheme()
	)?;
	writeln!(out, "included:   block #{} 0x{}", inclusion.number, hex::encode(inclusion.block))?;
	Ok(())
}
