//! `cdn`: the dCDN client. `cdn providers`, `cdn get`, `cdn token`, `cdn report`, `cdn publish`.

use std::{io::Write, path::PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use interlattice_agent_core::{
	account::AccountKey,
	chain::ChainClient,
	is_unlisted,
	lat::{format_lat as lat, UNIT},
};
use interlattice_cdn::{
	client::{cdn_providers, http_endpoint, CdnClient},
	content::parse_hash,
};
use pallet_provider_registry::ServiceKind;
use sp_core::crypto::Ss58Codec;

/// Find dCDN providers, fetch verified content paying per byte, publish content.
#[derive(Parser)]
#[command(version)]
struct Cli {
	/// A node's JSON-RPC endpoint.
	#[arg(long, global = true, default_value = "http://127.0.0.1:9944")]
	rpc: String,
	/// Trust the certificates in this PEM file for https:// agents (a private CA, an agent
	/// behind a proxy) instead of checking that each agent presents its provider's
	/// registered ML-DSA-65 service key (the default). The TLS key exchange prefers
	/// X25519MLKEM768 either way.
	#[arg(long, global = true)]
	ca: Option<PathBuf>,
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
		/// The provider's account (SS58); default: the cheapest. Repeat it to fetch ranges
		/// from several providers in parallel, each through a session of its own.
		#[arg(long)]
		provider: Vec<String>,
		/// Dial this agent URL instead of the provider's registered endpoint (a mirror, a
		/// provider behind a proxy, a test); repeated, the i-th applies to the i-th provider.
		#[arg(long)]
		endpoint: Vec<String>,
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
	/// Print a bearer token for an open session (bought with a capability signed by the
	/// session's key), for other HTTP clients: `curl -H "Authorization: Bearer $(cdn token
	/// --session 3)" …`. Whatever they download is paid by the session: only this client
	/// signs receipts, so they get at most the agent's credit beyond the last receipt.
	Token {
		/// The session.
		#[arg(long)]
		session: u64,
		/// Dial this agent URL instead of the provider's registered endpoint.
		#[arg(long)]
		endpoint: Option<String>,
	},
	/// Report that the endpoint an unlisted provider revealed to a session cannot be reached
	/// (blocked where you are); waits a while for the provider to reveal another and prints
	/// it. The provider moves a session once enough distinct paying clients reported its
	/// address.
	Report {
		/// The session.
		#[arg(long)]
		session: u64,
		/// The paying account's secret URI. Or INTERLATTICE_ACCOUNT.
		#[arg(long, env = "INTERLATTICE_ACCOUNT")]
		account: String,
		/// Seconds to wait for a new endpoint.
		#[arg(long, default_value_t = 60)]
		wait: u64,
	},
	/// Publish a file to an agent (needs a publishing token); prints its hash.
	Publish {
		/// The file.
		file: PathBuf,
		/// The agent's base URL, e.g. https://127.0.0.1:7320.
		#[arg(long)]
		endpoint: String,
		/// The bearer token the agent accepts. Or INTERLATTICE_PUBLISH_TOKEN.
		#[arg(long, env = "INTERLATTICE_PUBLISH_TOKEN")]
		token: String,
		/// The provider (SS58) whose registered service key an https:// agent must present;
		/// default: the provider that registered --endpoint.
		#[arg(long)]
		provider: Option<String>,
	},
}

fn trusting(client: CdnClient, ca: &Option<PathBuf>) -> anyhow::Result<CdnClient> {
	Ok(match ca {
		Some(ca) => client.trust(ca)?,
		None => client,
	})
}

/// Whether `name` (SS58, with our prefix or the generic one) is `provider`'s account.
fn names(provider: &interlattice_agent_core::chain::Provider, name: &str) -> bool {
	provider.account.to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into()) == name
		|| provider.account.to_string() == name
}

fn main() -> anyhow::Result<()> {
	interlattice_pq_crypto::cpu::check()?;
	interlattice_cdn::init_logging("warn");
	let cli = Cli::parse();
	tokio::runtime::Runtime::new()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
	let mut out = std::io::stdout();
	match cli.command {
		Command::Publish { file, endpoint, token, provider } => {
			let endpoint = endpoint.trim_end_matches('/');
			let client = trusting(CdnClient::offline(&cli.state_dir), &cli.ca)?;
			if cli.ca.is_none() && endpoint.starts_with("https://") {
				// The publishing token goes only to the provider's own agent.
				let chain = ChainClient::connect(&cli.rpc).await?;
				let providers = cdn_providers(&chain).await?;
				let chosen: Vec<_> = match &provider {
					Some(p) => providers.into_iter().filter(|x| names(x, p)).collect(),
					None => providers.into_iter().filter(|p| http_endpoint(p).as_deref() == Some(endpoint)).collect(),
				};
				if chosen.is_empty() {
					match provider {
						Some(p) => bail!("no active CDN provider {p}"),
						None => bail!(
							"no active CDN provider registered {endpoint}: name it with --provider, or pass --ca with the agent's certificate authority"
						),
					}
				}
				for p in chosen {
					client.pin(endpoint, p.service_key);
				}
			}
			let published = client.publish(endpoint, &token, &file).await?;
			writeln!(out, "{}", published.hash)?;
			eprintln!("published {} ({} bytes)", file.display(), published.size);
		},
		Command::Token { session, endpoint } => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			let s = chain.session(session).await?.with_context(|| format!("session {session} does not exist"))?;
			let endpoint = match endpoint {
				Some(e) => e.trim_end_matches('/').to_string(),
				None => {
					let p = chain.provider(&s.provider).await?.context("the session's provider is not registered")?;
					match http_endpoint(&p) {
						Some(e) => e,
						None if is_unlisted(&p, ServiceKind::Cdn) => {
							trusting(CdnClient::new(chain.clone(), &cli.state_dir), &cli.ca)?
								.revealed_endpoint(&s)
								.await?
						},
						None => bail!("the provider registered no http:// endpoint; pass --endpoint"),
					}
				},
			};
			let client = trusting(CdnClient::new(chain.clone(), &cli.state_dir), &cli.ca)?;
			let mut paid = client.resume_session(&s, &endpoint)?;
			writeln!(out, "{}", client.authorize(&mut paid).await?)?;
		},
		Command::Report { session, account, wait } => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			let payer = AccountKey::from_secret(&account).context("--account")?;
			let s = chain.session(session).await?.with_context(|| format!("session {session} does not exist"))?;
			let keys = interlattice_agent_core::SessionKeys::new(&cli.state_dir);
			let wait = std::time::Duration::from_secs(wait);
			let moved = interlattice_agent_core::report_unreachable(&chain, &payer, &keys, &s, wait).await?;
			writeln!(out, "{}", interlattice_agent_core::opening::describe_report(session, moved.as_deref()))?;
		},
		Command::Providers => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			writeln!(out, "{:<50} {:<7} {:>16} {:>18}  ENDPOINT", "ACCOUNT", "COUNTRY", "PRICE/GiB", "STAKE")?;
			for p in cdn_providers(&chain).await? {
				writeln!(
					out,
					"{:<50} {:<7} {:>16} {:>18}  {}",
					p.account.to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into()),
					String::from_utf8_lossy(&p.country),
					lat(p.prices.per_gib),
					lat(p.stake),
					http_endpoint(&p).unwrap_or_else(|| "unlisted".into())
				)?;
			}
		},
		Command::Get { hash, provider, endpoint: dial, output, account, session, deposit, duration } => {
			let root = parse_hash(&hash).context("the hash must be 64 hex digits")?;
			let chain = ChainClient::connect(&cli.rpc).await?;
			let payer = AccountKey::from_secret(&account).context("--account")?;
			let providers = cdn_providers(&chain).await?;
			let find = |p: &String| {
				providers.iter().find(|x| names(x, p)).cloned().with_context(|| format!("no active CDN provider {p}"))
			};
			// One (provider, endpoint) per source: parallel when there are several.
			let sources = provider.len().max(dial.len()).max(1);
			if sources > 1 && session.is_some() {
				bail!("--session reuses one session: it cannot be combined with several providers or endpoints");
			}
			let mut chosen = Vec::new();
			for i in 0..sources {
				let p = match provider.get(i).or(provider.first()) {
					Some(p) => find(p)?,
					None => providers.first().cloned().context("no active CDN provider")?,
				};
				// None: the provider is unlisted and reveals its endpoint to the session.
				let endpoint = match dial.get(i).or(if provider.len() > 1 { None } else { dial.first() }) {
					Some(url) => Some(url.trim_end_matches('/').to_string()),
					None if is_unlisted(&p, ServiceKind::Cdn) => None,
					None => Some(http_endpoint(&p).context("the provider registered no http:// endpoint")?),
				};
				chosen.push((p, endpoint));
			}
			let client = trusting(CdnClient::new(chain.clone(), &cli.state_dir), &cli.ca)?;
			let mut sessions = Vec::new();
			for (p, endpoint) in &chosen {
				let paid = match session {
					Some(id) => {
						let s = chain.session(id).await?.with_context(|| format!("session {id} does not exist"))?;
						let endpoint = match endpoint {
							Some(e) => e.clone(),
							None => client.revealed_endpoint(&s).await?,
						};
						client.resume_session(&s, &endpoint)?
					},
					None => {
						eprintln!(
							"opening a session with {} ({}), deposit {}…",
							p.account,
							endpoint.as_deref().unwrap_or("unlisted: its endpoint is revealed to the session"),
							lat(deposit * UNIT)
						);
						let mut s = client.open_session(&payer, p, deposit * UNIT, duration).await?;
						if let Some(endpoint) = endpoint {
							s.endpoint = endpoint.clone();
						}
						s
					},
				};
				eprintln!("session {} with {}", paid.session_id, paid.endpoint);
				sessions.push(paid);
			}
			let output = output.unwrap_or_else(|| PathBuf::from(&hash));
			let show = |p: interlattice_cdn::client::Progress| {
				eprint!(
					"\r{:>5.1} %  {} / {} bytes verified, {} received, {} signed   ",
					if p.size == 0 { 100.0 } else { p.verified as f64 * 100.0 / p.size as f64 },
					p.verified,
					p.size,
					p.received,
					lat(p.signed_amount)
				);
			};
			let size = if sessions.len() == 1 {
				client.get(&mut sessions[0], &root, &output, show).await?
			} else {
				client.get_from_many(&mut sessions, &root, &output, show).await?
			};
			eprintln!();
			let ids: Vec<String> = sessions.iter().map(|s| s.session_id.to_string()).collect();
			let noun = if ids.len() == 1 { "session" } else { "sessions" };
			writeln!(out, "{} {} bytes verified, {noun} {}", output.display(), size, ids.join(" "))?;
		},
	}
	Ok(())
}
