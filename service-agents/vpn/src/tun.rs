//! A Linux TUN device (layer 3, no packet information header), its configuration (over
//! rtnetlink, [`crate::netlink`]) and the nftables rules of the agent and the client (`nft -f
//! -`). The device disappears when it is dropped, and
//! with it every address and route on it.

use crate::netlink;
use std::{
	fs::{File, OpenOptions},
	io::{self, Read, Write},
	net::Ipv4Addr,
	os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
	process::Command,
	time::Duration,
};

/// Why a network change failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
	/// `/dev/net/tun` is missing or not accessible.
	#[error("cannot open /dev/net/tun ({0}): the agent and the client need a TUN device and root (or CAP_NET_ADMIN)")]
	NoTun(io::Error),
	/// The kernel refused to create the interface.
	#[error("cannot create TUN interface {name}: {source} (is the name in use? do you have CAP_NET_ADMIN?)")]
	Create {
		/// The interface.
		name: String,
		/// Why.
		source: io::Error,
	},
	/// A configuration command failed.
	#[error("`{command}` failed: {message}")]
	Command {
		/// The command line.
		command: String,
		/// Its error output.
		message: String,
	},
}

/// An open TUN interface.
pub struct Tun {
	file: File,
	name: String,
}

const IFNAMSIZ: usize = 16;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
	name: [u8; IFNAMSIZ],
	flags: libc::c_short,
	_pad: [u8; 22],
}

impl Tun {
	/// Creates the interface `name` (at most 15 bytes).
	pub fn create(name: &str) -> Result<Self, NetError> {
		if name.is_empty()
			|| name.len() >= IFNAMSIZ
			|| !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
		{
			return Err(NetError::Create {
				name: name.into(),
				source: io::Error::new(
					io::ErrorKind::InvalidInput,
					"an interface name is 1–15 letters, digits, '-' or '_'",
				),
			});
		}
		let file = OpenOptions::new()
			.read(true)
			.write(true)
			.custom_flags(libc::O_CLOEXEC)
			.open("/dev/net/tun")
			.map_err(NetError::NoTun)?;
		let mut req = IfReq { name: [0; IFNAMSIZ], flags: IFF_TUN | IFF_NO_PI, _pad: [0; 22] };
		req.name[..name.len()].copy_from_slice(name.as_bytes());
		// SAFETY: `req` is a valid, initialised `struct ifreq` prefix of the size the kernel
		// reads for TUNSETIFF, and the descriptor is open.
		let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
		if rc < 0 {
			return Err(NetError::Create { name: name.into(), source: io::Error::last_os_error() });
		}
		Ok(Tun { file, name: name.into() })
	}

	/// The interface name.
	pub fn name(&self) -> &str {
		&self.name
	}

	/// Gives the interface `address/prefix` and `mtu` and brings it up, in the network
	/// namespace it is in (`netns`, after [`Tun::move_to`], or this process's).
	pub fn configure(&self, netns: Option<&str>, address: Ipv4Addr, prefix: u8, mtu: u16) -> Result<(), NetError> {
		netlink::configure_link(netns, &self.name, address, prefix, mtu)
	}

	/// Moves the interface into the network namespace `netns` (`ip netns` name). This process
	/// keeps reading and writing its packets.
	pub fn move_to(&self, netns: &str) -> Result<(), NetError> {
		netlink::move_link(&self.name, netns)
	}

	/// Waits up to `timeout` for a packet to read; `Ok(false)` on timeout.
	pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
		let mut fd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
		// SAFETY: one valid pollfd.
		let rc = unsafe { libc::poll(&mut fd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
		match rc {
			n if n > 0 => Ok(true),
			0 => Ok(false),
			_ => {
				let e = io::Error::last_os_error();
				if e.kind() == io::ErrorKind::Interrupted {
					Ok(false)
				} else {
					Err(e)
				}
			},
		}
	}

	/// Reads one IP packet.
	pub fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
		(&self.file).read(buf)
	}

	/// Writes one IP packet.
	pub fn write_packet(&self, packet: &[u8]) -> io::Result<()> {
		(&self.file).write(packet).map(|_| ())
	}
}

fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
	let command = format!("{program} {}", args.join(" "));
	let out = Command::new(program).args(args).output().map_err(|e| NetError::Command {
		command: command.clone(),
		message: format!("{e} (is iproute2/nftables installed? run scripts/setup.sh)"),
	})?;
	if !out.status.success() {
		return Err(NetError::Command { command, message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
	}
	Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Destinations a tunnel never reaches unless the provider allows them (`tunnel.egress_allow`):
/// private networks (the provider's LAN), carrier-grade NAT, link-local (cloud metadata at
/// 169.254.169.254), loopback, "this network", multicast and reserved space.
pub const BLOCKED_DESTINATIONS: &[&str] = &[
	"0.0.0.0/8",
	"10.0.0.0/8",
	"100.64.0.0/10",
	"127.0.0.0/8",
	"169.254.0.0/16",
	"172.16.0.0/12",
	"192.168.0.0/16",
	"224.0.0.0/4",
	"240.0.0.0/4",
];

/// What the agent's host lets tunnels do: an nftables table `interlattice_<interface>` that
/// masquerades the pool's traffic (NAT, optional), drops what the pool sends to
/// [`BLOCKED_DESTINATIONS`] (except the `allow`ed networks), and drops what the pool sends to
/// the host itself except to the tunnel gateway (ping). IPv4 forwarding is turned on while the
/// agent runs and set back to what it was when it stops. Installed with `nft -f -` (no script
/// file); removed when dropped.
pub struct EgressPolicy {
	table: String,
	forwarding_was: Option<Vec<u8>>,
}

/// The nftables script of an [`EgressPolicy`].
pub fn egress_script(
	table: &str,
	interface: &str,
	pool: &str,
	gateway: Ipv4Addr,
	masquerade: bool,
	allow: &[String],
) -> String {
	let blocked = BLOCKED_DESTINATIONS.join(", ");
	let mut forward = String::new();
	if !allow.is_empty() {
		forward.push_str(&format!("    iifname \"{interface}\" ip daddr {{ {} }} accept\n", allow.join(", ")));
	}
	forward.push_str(&format!("    iifname \"{interface}\" ip daddr {{ {blocked} }} drop\n"));
	let nat = if masquerade {
		format!(
			"  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {pool} oifname != \"{interface}\" masquerade\n  }}\n"
		)
	} else {
		String::new()
	};
	format!(
		"table ip {table} {{\n{nat}  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{forward}  }}\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"{interface}\" ip daddr {gateway} icmp type echo-request accept\n    iifname \"{interface}\" ct state established,related accept\n    iifname \"{interface}\" drop\n  }}\n}}\n"
	)
}

impl EgressPolicy {
	/// Installs the policy for `pool` (e.g. `10.77.0.0/24`) on `interface`.
	pub fn install(
		interface: &str,
		pool: &str,
		gateway: Ipv4Addr,
		masquerade: bool,
		allow: &[String],
	) -> Result<Self, NetError> {
		const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";
		let forwarding_was = std::fs::read(FORWARDING).ok();
		std::fs::write(FORWARDING, b"1")
			.map_err(|e| NetError::Command { command: format!("echo 1 > {FORWARDING}"), message: e.to_string() })?;
		let table = format!("interlattice_{}", interface.replace('-', "_"));
		// A table left by a crashed agent is replaced, not duplicated.
		let _ = run("nft", &["delete", "table", "ip", &table]);
		nft_script(None, &egress_script(&table, interface, pool, gateway, masquerade, allow))?;
		Ok(EgressPolicy { table, forwarding_was })
	}
}

impl Drop for EgressPolicy {
	fn drop(&mut self) {
		if let Err(e) = run("nft", &["delete", "table", "ip", &self.table]) {
			tracing::warn!(error = %e, "cannot remove the egress table");
		}
		if let Some(was) = &self.forwarding_was {
			let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", was);
		}
	}
}

/// Runs `nft -f -` with `script` on stdin, in the network namespace `netns` (or here).
fn nft_script(netns: Option<&str>, script: &str) -> Result<(), NetError> {
	let mut command = match netns {
		Some(ns) => {
			let mut c = Command::new("ip");
			c.args(["netns", "exec", ns, "nft", "-f", "-"]);
			c
		},
		None => {
			let mut c = Command::new("nft");
			c.args(["-f", "-"]);
			c
		},
	};
	let fail = |message: String| NetError::Command { command: "nft -f -".into(), message };
	let mut child = command
		.stdin(std::process::Stdio::piped())
		.stdout(std::process::Stdio::null())
		.stderr(std::process::Stdio::piped())
		.spawn()
		.map_err(|e| fail(format!("{e} (is nftables installed? run scripts/setup.sh)")))?;
	if let Some(mut stdin) = child.stdin.take() {
		use std::io::Write as _;
		stdin.write_all(script.as_bytes()).map_err(|e| fail(e.to_string()))?;
	}
	let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
	if !out.status.success() {
		return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
	}
	Ok(())
}

/// The nftables script of a [`LeakGuard`].
pub fn leak_guard_script(table: &str, interface: &str, agent: Ipv4Addr) -> String {
	format!(
		"table inet {table} {{\n  chain output {{\n    type filter hook output priority filter; policy accept;\n    oifname \"lo\" accept\n    meta nfproto ipv6 drop\n    ip daddr {agent} accept\n    oifname != \"{interface}\" udp dport 53 drop\n    oifname != \"{interface}\" tcp dport 53 drop\n  }}\n}}\n"
	)
}

/// While everything is routed into the tunnel, nothing may go around it: the client's side
/// of a full tunnel drops IPv6 (the tunnel carries IPv4: IPv6 would leave unprotected) and
/// DNS to anything but the tunnel (a resolver on the local network, which a censor may run,
/// would see every name looked up; use one reachable through the tunnel). The agent's own
/// address stays reachable (the tunnel's packets go there, whatever its port). An nftables
/// table `interlattice_client_<interface>`, in the tunnel's namespace, removed when dropped.
pub struct LeakGuard {
	table: String,
	netns: Option<String>,
}

impl LeakGuard {
	/// Installs the guard for the tunnel `interface` to `agent`, in `netns` (or here).
	pub fn install(netns: Option<&str>, interface: &str, agent: Ipv4Addr) -> Result<Self, NetError> {
		let table = format!("interlattice_client_{}", interface.replace('-', "_"));
		let guard = LeakGuard { table, netns: netns.map(str::to_owned) };
		guard.remove();
		nft_script(netns, &leak_guard_script(&guard.table, interface, agent))?;
		Ok(guard)
	}

	fn remove(&self) {
		let _ = match &self.netns {
			Some(ns) => run("ip", &["netns", "exec", ns, "nft", "delete", "table", "inet", &self.table]),
			None => run("nft", &["delete", "table", "inet", &self.table]),
		};
	}
}

impl Drop for LeakGuard {
	fn drop(&mut self) {
		self.remove();
	}
}

/// A host route that is removed when dropped.
pub struct HostRoute {
	destination: Ipv4Addr,
}

impl HostRoute {
	/// Pins `destination` to the path the host uses for it now (so that routing everything
	/// else into a tunnel does not capture the tunnel's own packets).
	pub fn pin(destination: Ipv4Addr) -> Result<Self, NetError> {
		let (via, device) = netlink::route_to(destination)?;
		let _ = netlink::delete_route(destination, 32);
		netlink::add_route(None, destination, 32, via, &device)?;
		Ok(HostRoute { destination })
	}
}

impl Drop for HostRoute {
	fn drop(&mut self) {
		let _ = netlink::delete_route(self.destination, 32);
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	/// The nftables scripts the agent and the client install are valid: `nft -c` parses and
	/// checks them against the kernel without applying them (root, as the suite runs).
	#[test]
	fn the_nftables_scripts_are_valid() {
		let scripts = [
			egress_script(
				"interlattice_t",
				"ilvpn9",
				"10.77.0.0/24",
				Ipv4Addr::new(10, 77, 0, 1),
				true,
				&["10.99.2.0/24".into()],
			),
			egress_script("interlattice_t", "ilvpn9", "10.77.0.0/24", Ipv4Addr::new(10, 77, 0, 1), false, &[]),
			leak_guard_script("interlattice_client_t", "ilvpnc9", Ipv4Addr::new(192, 0, 2, 1)),
		];
		for script in scripts {
			let mut child = Command::new("nft")
				.args(["-c", "-f", "-"])
				.stdin(std::process::Stdio::piped())
				.stderr(std::process::Stdio::piped())
				.spawn()
				.expect("nft is installed (scripts/setup.sh)");
			use std::io::Write as _;
			child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
			let out = child.wait_with_output().unwrap();
			assert!(out.status.success(), "{script}\n{} (needs root)", String::from_utf8_lossy(&out.stderr));
		}
	}
}
