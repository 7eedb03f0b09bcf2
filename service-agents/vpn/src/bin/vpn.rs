//! `vpn`: the dVPN client. `vpn providers`, `vpn connect`, `vpn disconnect`, `vpn close`,
//! `vpn report`, `vpn export-config`.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use interlattice_agent_core::{
	account::AccountKey,
	chain::{ChainClient, Provider, Session},
	is_unlisted,
	lat::{format_lat as lat, parse_lat},
};
use interlattice_vpn::client::{
	control_endpoint, vpn_providers, ConnectOptions, Status, Summary, Transport, VpnClient,
};
use pallet_provider_registry::ServiceKind;
use sp_core::crypto::Ss58Codec;

/// Find dVPN providers, open a paid post-quantum WireGuard tunnel, close it.
#[derive(Parser)]
#[command(version)]
struct Cli {
	/// A node's JSON-RPC endpoint.
	#[arg(long, global = true, default_value = "http://127.0.0.1:9944")]
	rpc: String,
	/// Where the client keeps its session key, receipt state and the running tunnel's pid.
	#[arg(long, global = true, default_value = "data/vpn-client")]
	state_dir: PathBuf,
	#[command(subcommand)]
	command: Command,
}

#[derive(Args)]
struct Select {
	/// The provider's account (SS58); default: the cheapest matching the filters.
	#[arg(long)]
	provider: Option<String>,
	/// Only providers in this country (ISO 3166-1 alpha-2).
	#[arg(long)]
	country: Option<String>,
	/// Dial this control endpoint (host:port) instead of the registered one.
	#[arg(long)]
	endpoint: Option<String>,
	/// The paying account's secret URI (`//Alice` on a dev chain). Or INTERLATTICE_ACCOUNT.
	#[arg(long, env = "INTERLATTICE_ACCOUNT")]
	account: String,
	/// Reuse this open session instead of opening one.
	#[arg(long)]
	session: Option<u64>,
	/// Deposit of a new session, in LAT.
	#[arg(long, default_value = "1")]
	deposit: String,
	/// Duration of a new session, in blocks.
	#[arg(long, default_value_t = 14_400)]
	duration: u32,
	/// The most you pay per GiB, in LAT.
	#[arg(long, default_value = "1")]
	max_price_per_gib: String,
	/// The most you pay per hour, in LAT.
	#[arg(long, default_value = "1")]
	max_price_per_hour: String,
	/// Routes into the tunnel (repeatable); 0.0.0.0/0 sends everything except the provider.
	#[arg(long = "route", default_value = "0.0.0.0/0")]
	routes: Vec<String>,
	/// Keep the session open at the end (to reconnect later) instead of closing it.
	#[arg(long)]
	keep_session: bool,
}

#[derive(Subcommand)]
enum Command {
	/// List the active VPN providers, cheapest first.
	Providers {
		/// Only providers in this country (ISO 3166-1 alpha-2).
		#[arg(long)]
		country: Option<String>,
		/// Only providers at or below this price per GiB, in LAT.
		#[arg(long)]
		max_price_per_gib: Option<String>,
	},
	/// Open (or reuse) a session, bring up the tunnel and pay as it is used, until Ctrl-C or
	/// `vpn disconnect`; then settle and close the session.
	Connect {
		#[command(flatten)]
		select: Select,
		/// The tunnel interface to create.
		#[arg(long, default_value = "ilvpnc0")]
		interface: String,
		/// Put the tunnel interface and its routes into this network namespace (`ip netns`
		/// name): its programs use the VPN while this host's routing stays as it is (a VPN
		/// client on the provider's own machine, a per-application VPN).
		#[arg(long)]
		netns: Option<String>,
		/// How to reach the provider: `udp` (plain WireGuard and control channel, the
		/// fastest), `h3` (both inside HTTP/3 over QUIC: for networks that block WireGuard but
		/// not QUIC), `https` (both inside HTTP/2 over TLS over TCP: for networks that block
		/// UDP too; both look like visiting a web site) or `auto` (UDP, then HTTP/3, then HTTPS
		/// when one carries nothing or stops mid-session).
		#[arg(long, default_value = "auto")]
		transport: Transport,
		/// Stop signing receipts after this many bytes (to test a provider's enforcement).
		#[arg(long, hide = true)]
		stop_paying_after_bytes: Option<u64>,
		/// Never answer the provider's rekeys (to test its enforcement of the key age).
		#[arg(long, hide = true)]
		ignore_rekeys: bool,
	},
	/// Stop the running `vpn connect` (its session is settled and closed).
	Disconnect,
	/// Close a session on-chain as its client (the provider can still settle its last
	/// receipts during the settlement window; the rest is refunded after it).
	Close {
		/// The session.
		#[arg(long)]
		session: u64,
		/// The paying account's secret URI. Or INTERLATTICE_ACCOUNT.
		#[arg(long, env = "INTERLATTICE_ACCOUNT")]
		account: String,
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
	/// Handshake and write a wg-quick configuration for any WireGuard implementation; keeps
	/// running to pay for the tunnel (at the provider's reported usage) until stopped.
	ExportConfig {
		#[command(flatten)]
		select: Select,
		/// Where to write the configuration (mode 0600).
		#[arg(long, short)]
		output: PathBuf,
		/// The most MiB paid for in this run.
		#[arg(long, default_value_t = 1024)]
		max_mib: u64,
		/// The WireGuard interface that carries the tunnel: every renewed pre-shared key (every
		/// two minutes) is set on it with `wg set`. Without it, the file is rewritten and the
		/// interface must be updated by other means (`wg syncconf`), or the tunnel stops.
		#[arg(long)]
		apply_to: Option<String>,
	},
}

fn ss58(account: &interlattice_runtime::AccountId) -> String {
	account.to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into())
}

fn country(code: &Option<String>) -> anyhow::Result<Option<[u8; 2]>> {
	match code {
		None => Ok(None),
		Some(c) if c.len() == 2 => {
			Ok(Some([c.as_bytes()[0].to_ascii_uppercase(), c.as_bytes()[1].to_ascii_uppercase()]))
		},
		Some(c) => bail!("--country {c:?} must be a two-letter code"),
	}
}

fn main() -> anyhow::Result<()> {
	interlattice_pq_crypto::cpu::check()?;
	interlattice_vpn::init_logging("warn");
	let cli = Cli::parse();
	tokio::runtime::Runtime::new()?.block_on(run(cli))
}

fn stop_signal() -> interlattice_agent_core::lifecycle::CancellationToken {
	let stop = interlattice_agent_core::lifecycle::Lifecycle::on_signals().token;
	let seen = stop.clone();
	tokio::spawn(async move {
		seen.cancelled().await;
		eprintln!("\nstopping: sending the last receipt and closing…");
	});
	stop
}

/// The provider, the endpoint to dial, the client and the session.
async fn prepare(cli: &Cli, select: &Select) -> anyhow::Result<(VpnClient, AccountKey, Session, String)> {
	let chain = ChainClient::connect(&cli.rpc).await?;
	let payer = AccountKey::from_secret(&select.account).context("--account")?;
	let client = VpnClient::new(chain.clone(), &cli.state_dir);
	let (session, provider): (Session, Option<Provider>) = match select.session {
		Some(id) => {
			let s = chain.session(id).await?.with_context(|| format!("session {id} does not exist"))?;
			let p = chain.provider(&s.provider).await?;
			(s, p)
		},
		None => {
			let max_prices = pallet_provider_registry::Prices {
				per_gib: parse_lat(&select.max_price_per_gib).map_err(anyhow::Error::msg)?,
				per_hour: parse_lat(&select.max_price_per_hour).map_err(anyhow::Error::msg)?,
			};
			let providers = vpn_providers(&chain, country(&select.country)?, Some(max_prices.per_gib)).await?;
			let chosen = match &select.provider {
				Some(p) => providers.into_iter().find(|x| ss58(&x.account) == *p || x.account.to_string() == *p),
				None => providers.into_iter().next(),
			};
			let Some(chosen) = chosen else { bail!("no active VPN provider matches (see `vpn providers`)") };
			let deposit = parse_lat(&select.deposit).map_err(anyhow::Error::msg)?;
			eprintln!(
				"opening a session with {} ({}), deposit {}…",
				ss58(&chosen.account),
				String::from_utf8_lossy(&chosen.country),
				lat(deposit)
			);
			let s = client.open_session(&payer, &chosen, max_prices, deposit, select.duration).await?;
			(s, Some(chosen))
		},
	};
	let endpoint = match (&select.endpoint, &provider) {
		(Some(e), _) => e.clone(),
		(None, Some(p)) if is_unlisted(p, ServiceKind::Vpn) => {
			eprintln!("the provider is unlisted: waiting for the endpoint it reveals to this session…");
			client.revealed_endpoint(&session).await?
		},
		(None, p) => p
			.as_ref()
			.and_then(control_endpoint)
			.context("the provider registered no host:port endpoint; pass --endpoint")?,
	};
	eprintln!("session {} with {endpoint}", session.session_id);
	Ok((client, payer, session, endpoint))
}

fn status_line(s: &Status) {
	eprint!(
		"\r{}  ↑ {} B  ↓ {} B  paid {} (receipt #{}{})  deposit left {}  keys renewed {}{}   ",
		s.address.map(|a| a.to_string()).unwrap_or_default(),
		s.sent,
		s.received,
		lat(s.signed.amount),
		s.signed.sequence,
		if s.acknowledged { "" } else { ", unacknowledged" },
		lat(s.deposit.saturating_sub(s.signed.amount)),
		s.rekeys,
		if s.agent.blocked { "  [held by the provider: pay to continue]" } else { "" },
	);
}

async fn finish(
	client: &VpnClient,
	payer: &AccountKey,
	session: &Session,
	select: &Select,
	result: Result<Summary, interlattice_vpn::client::ClientError>,
) -> anyhow::Result<()> {
	eprintln!();
	let mut out = std::io::stdout();
	match result {
		Ok(Summary { closed: Some(paid), status }) => {
			writeln!(out, "session {} closed by the provider: paid {}, refunded {}", status.session_id, lat(paid), lat(session.deposit.saturating_sub(paid)))?;
		},
		Ok(Summary { closed: None, status }) if select.keep_session => {
			writeln!(out, "session {} kept open ({} signed); reconnect with --session {}", status.session_id, lat(status.signed.amount), status.session_id)?;
		},
		Ok(Summary { closed: None, status }) => {
			eprintln!("the provider did not close session {}; closing it on-chain (the rest is refunded after the settlement window)…", status.session_id);
			client.close_on_chain(payer, session.session_id).await?;
			writeln!(out, "session {} closed by the client", session.session_id)?;
		},
		Err(e) => bail!(
			"{e}\nsession {id} stays open: reconnect with `vpn connect --session {id}`, or close it with `vpn close --session {id}`",
			id = session.session_id
		),
	}
	Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
	let mut out = std::io::stdout();
	match &cli.command {
		Command::Providers { country: c, max_price_per_gib } => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			let max = max_price_per_gib.as_deref().map(parse_lat).transpose().map_err(anyhow::Error::msg)?;
			writeln!(
				out,
				"{:<50} {:<7} {:>16} {:>16} {:>20}  ENDPOINT",
				"ACCOUNT", "COUNTRY", "PRICE/GiB", "PRICE/HOUR", "STAKE"
			)?;
			for p in vpn_providers(&chain, country(c)?, max).await? {
				writeln!(
					out,
					"{:<50} {:<7} {:>16} {:>16} {:>20}  {}",
					ss58(&p.account),
					String::from_utf8_lossy(&p.country),
					lat(p.prices.per_gib),
					lat(p.prices.per_hour),
					lat(p.stake),
					control_endpoint(&p).unwrap_or_else(|| "unlisted".into())
				)?;
			}
		},
		Command::Connect { select, interface, netns, transport, stop_paying_after_bytes, ignore_rekeys } => {
			let (client, payer, session, endpoint) = prepare(&cli, select).await?;
			std::fs::create_dir_all(&cli.state_dir)
				.with_context(|| format!("cannot create {}", cli.state_dir.display()))?;
			let pid_file = cli.state_dir.join("vpn-connect.pid");
			std::fs::write(&pid_file, std::process::id().to_string())
				.with_context(|| format!("cannot write {}", pid_file.display()))?;
			let options = ConnectOptions {
				interface: interface.clone(),
				routes: select.routes.clone(),
				close_at_end: !select.keep_session,
				stop_paying_after_bytes: *stop_paying_after_bytes,
				netns: netns.clone(),
				transport: *transport,
				ignore_rekeys: *ignore_rekeys,
				..Default::default()
			};
			let on_transport =
				|transport: Transport, failed: Option<&interlattice_vpn::client::ClientError>| match failed {
					None => eprintln!("connecting over {transport}…"),
					Some(e) => eprintln!("\nthe tunnel's path failed ({e}); moving the session to {transport}"),
				};
			let result = client.connect(&session, &endpoint, &options, status_line, on_transport, stop_signal()).await;
			// Only our own pid: a later `vpn connect` of this state folder (a reconnect that
			// replaced this tunnel) has written its own, which `vpn disconnect` must find.
			if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == std::process::id().to_string()) {
				let _ = std::fs::remove_file(&pid_file);
			}
			finish(&client, &payer, &session, select, result).await?;
		},
		Command::ExportConfig { select, output, max_mib, apply_to } => {
			let (client, payer, session, endpoint) = prepare(&cli, select).await?;
			let options = ConnectOptions {
				routes: select.routes.clone(),
				close_at_end: !select.keep_session,
				..Default::default()
			};
			eprintln!("writing {}; keep this running while the tunnel is in use", output.display());
			let result = client
				.export_config(
					&session,
					&endpoint,
					output,
					apply_to.as_deref(),
					&options,
					max_mib << 20,
					status_line,
					stop_signal(),
				)
				.await;
			finish(&client, &payer, &session, select, result).await?;
		},
		Command::Close { session, account } => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			let payer = AccountKey::from_secret(account).context("--account")?;
			VpnClient::new(chain, &cli.state_dir).close_on_chain(&payer, *session).await?;
			writeln!(out, "session {session} closed by the client: the provider can settle its last receipts during the settlement window; the rest of the deposit is refunded after it")?;
		},
		Command::Report { session, account, wait } => {
			let chain = ChainClient::connect(&cli.rpc).await?;
			let payer = AccountKey::from_secret(account).context("--account")?;
			let s = chain.session(*session).await?.with_context(|| format!("session {session} does not exist"))?;
			let client = VpnClient::new(chain, &cli.state_dir);
			let moved = client.report_unreachable(&payer, &s, Duration::from_secs(*wait)).await?;
			writeln!(out, "{}", interlattice_agent_core::opening::describe_report(*session, moved.as_deref()))?;
		},
		Command::Disconnect => {
			let pid_file = cli.state_dir.join("vpn-connect.pid");
			let text = std::fs::read_to_string(&pid_file)
				.with_context(|| format!("no running `vpn connect` ({} not found)", pid_file.display()))?;
			let pid = interlattice_vpn::client::connect_pid(&text, &std::env::current_exe()?).with_context(|| {
				format!("{} does not name a running `vpn connect`; remove it if no tunnel is up", pid_file.display())
			})?;
			// SAFETY: kill(2) with SIGTERM to a pid > 1 whose executable is this program's.
			if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
				let _ = std::fs::remove_file(&pid_file);
				bail!("`vpn connect` (pid {pid}) is not running");
			}
			eprintln!("asked `vpn connect` (pid {pid}) to stop; waiting for it to settle and close…");
			// Stopping settles and closes on-chain: up to 10 s for the agent's answer and 90 s
			// for the close to be final, then the client's own close if the agent did not.
			let deadline = std::time::Instant::now() + Duration::from_secs(180);
			// Running until /proc says it is gone or a zombie (exited, not yet reaped).
			let running = || {
				std::fs::read_to_string(format!("/proc/{pid}/stat"))
					.ok()
					.and_then(|s| {
						s.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).map(|state| state != "Z")
					})
					.unwrap_or(false)
			};
			while running() {
				if std::time::Instant::now() > deadline {
					bail!("`vpn connect` (pid {pid}) did not stop within 3 minutes");
				}
				tokio::time::sleep(Duration::from_millis(200)).await;
			}
			writeln!(out, "disconnected")?;
		},
	}
	Ok(())
}
