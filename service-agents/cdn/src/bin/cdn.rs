//! `cdn`: the dCDN client. `cdn providers`, `cdn get`, `cdn publish`.

use std::{io::Write, path::PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use interlattice_cdn::{
	client::{cdn_providers, http_endpoint, CdnClient},
	content::parse_hash,
};
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_settlement::chain::ChainClient;
use sp_core::{crypto::Ss58Codec, Pair};

const UNIT: u128 = 1_000_000_000_000;

/// Find dCDN providers, fetch verified content paying per byte, publish content.
#[derive(Parser)]
#[command(version)]
struct Cli {
	/// A node's JSON-RPC endpoint.
	#[arg(long, global = true, default_value = "http://127.0.0.1:9944")]
	rpc: String,
	/// Where the client keeps its session key and per-session receipt state.
	#[arg(long, global = true, default_value = "data/cdn-client")]
	state_dir: PathBuf,
	#[command(subcommand)]
	command: Command,
}

#[derive(Subcommand)]
enum Command {
	/// List the active CDN providers, cheapest first.
	Providers,
	/// Download an object by its BLAKE3 hash, verifying every chunk and paying as it arrives.
	Get {
		/// The object's BLAKE3 hash (64 hex digits).
		hash: String,
		/// The provider's account (SS58); default: the cheapest.
		#[arg(long)]
		provider: Option<String>,
		/// Dial this agent URL instead of the provider's registered endpoint (a mirror, a
		/// provider behind a proxy, a test).
		#[arg(long)]
		endpoint: Option<String>,
		/// Output file (default: the hash).
		#[arg(long, short)]
		output: Option<PathBuf>,
		/// The paying account's secret URI (`//Alice` on a dev chain). Or INTERLATTICE_ACCOUNT.
		#[arg(long, env = "INTERLATTICE_ACCOUNT")]
		account: String,
		/// Reuse this open session instead of opening one.
		#[arg(long)]
		session: Option<u64>,
		/// Deposit of a new session, in LAT.
		#[arg(long, default_value_t = 1)]
		deposit: u128,
		/// Duration of a new session, in blocks.
		#[arg(long, default_value_t = 14_400)]
		duration: u32,
	},
	/// Publish a file to an agent (needs a publishing token); prints its hash.
	Publish {
		/// The file.
		file: PathBuf,
		/// The agent's base URL, e.g. http://127.0.0.1:7320.
		#[arg(long)]
		endpoint: String,
		/// The bearer token the agent accepts. Or INTERLATTICE_PUBLISH_TOKEN.
		#[arg(long, env = "INTERLATTICE_PUBLISH_TOKEN")]
		token: String,
	},
}

fn lat(amount: u128) -> String {
	format!("{}.{:06} LAT", amount / UNIT, (amount % UNIT) / 1_000_000)
}

fn session_key(state_dir: &std::path::Path) -> anyhow::Result<MlDsaKeyPair> {
	let path = state_dir.join("session.key");
	MlDsaKeyPair::read_or_generate(&path).map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))
}

fn main() -> anyhow::Result<()> {
	interlattice_cdn::init_logging("warn");
	let cli = Cli::parse();
	tokio::runtime::Runtime::new()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
	let mut out = std::io::stdout();
	match cli.command {
		Command::Publish { file, endpoint, token } => {
			let published = CdnClient::offline(&cli.state_dir).publish(endpoint.trim_end_matches('/'), &token, &file).await?;
			writeln!(out, "{}", published.hash)?;
			eprintln!("published {} ({} bytes)", file.display(), published.size);
		},
		Command::Providers => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			writeln!(out, "{:<50} {:<7} {:>16} {:>18}  {}", "ACCOUNT", "COUNTRY", "PRICE/GiB", "STAKE", "ENDPOINT")?;
			for p in cdn_providers(&chain).await? {
				writeln!(
					out,
					"{:<50} {:<7} {:>16} {:>18}  {}",
					p.account.to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into()),
					String::from_utf8_lossy(&p.country),
					lat(p.prices.per_gib),
					lat(p.stake),
					http_endpoint(&p).unwrap_or_default()
				)?;
			}
		},
		Command::Get { hash, provider, endpoint: dial, output, account, session, deposit, duration } => {
			let root = parse_hash(&hash).context("the hash must be 64 hex digits")?;
			let chain = ChainClient::connect(&cli.rpc).await?;
			let payer = sp_core::sr25519::Pair::from_string(&account, None)
				.map_err(|e| anyhow::anyhow!("--account is not a valid secret URI: {e:?}"))?;
			let providers = cdn_providers(&chain).await?;
			let chosen = match &provider {
				Some(p) => providers
					.into_iter()
					.find(|x| x.account.to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into()) == *p || x.account.to_string() == *p),
				None => providers.into_iter().next(),
			};
			let Some(chosen) = chosen else { bail!("no active CDN provider {}", provider.unwrap_or_default()) };
			let endpoint = match dial {
				Some(url) => url.trim_end_matches('/').to_string(),
				None => http_endpoint(&chosen).context("the provider registered no http:// endpoint")?,
			};
			let client = CdnClient::new(chain.clone(), session_key(&cli.state_dir)?, &cli.state_dir);
			let mut paid = match session {
				Some(id) => {
					let s = chain.session(id).await?.with_context(|| format!("session {id} does not exist"))?;
					client.resume_session(&s, &endpoint)?
				},
				None => {
					eprintln!("opening a session with {} ({}), deposit {}…", chosen.account, endpoint, lat(deposit * UNIT));
					let mut s = client.open_session(&payer, &chosen, deposit * UNIT, duration).await?;
					s.endpoint = endpoint.clone();
					s
				},
			};
			eprintln!("session {} with {endpoint}", paid.session_id);
			let output = output.unwrap_or_else(|| PathBuf::from(&hash));
			let size = client
				.get(&mut paid, &root, &output, |p| {
					eprint!(
						"\r{:>5.1} %  {} / {} bytes verified, {} received, {} signed   ",
						if p.size == 0 { 100.0 } else { p.verified as f64 * 100.0 / p.size as f64 },
						p.verified,
						p.size,
						p.received,
						lat(p.signed_amount)
					);
				})
				.await?;
			eprintln!();
			writeln!(out, "{} {} bytes verified, session {}", output.display(), size, paid.session_id)?;
		},
	}
	Ok(())
}
