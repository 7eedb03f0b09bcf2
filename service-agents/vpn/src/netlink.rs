//! Link, address and route configuration over rtnetlink (the kernel's own interface, as
//! iproute2 uses it), here or in a named network namespace. Each call runs on a short-lived
//! thread of its own: it enters the namespace (`setns`, which affects only that thread), opens
//! a netlink socket there (the socket stays bound to that namespace) and drives the request on
//! a current-thread runtime, so callers stay synchronous and their own threads never change
//! namespace.

use std::{
	fs::File,
	future::Future,
	net::{IpAddr, Ipv4Addr},
	os::fd::AsRawFd,
};

use futures::TryStreamExt;
use rtnetlink::{
	packet_route::route::{RouteAddress, RouteAttribute, RouteMessage},
	Handle, LinkUnspec, RouteMessageBuilder,
};

use crate::tun::NetError;

/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Runs `op` with a netlink handle in the namespace `netns` (or this process's); `what` names
/// the change in errors.
fn with_handle<T, F, Fut>(netns: Option<&str>, what: String, op: F) -> Result<T, NetError>
where
	T: Send + 'static,
	F: FnOnce(Handle) -> Fut + Send + 'static,
	Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
	let fail = {
		let what = what.clone();
		move |message: String| NetError::Command { command: what.clone(), message }
	};
	let namespace = netns
		.map(|ns| File::open(format!("{NETNS_DIR}/{ns}")).map_err(|e| fail(format!("network namespace {ns}: {e}"))))
		.transpose()?;
	let thread = std::thread::Builder::new().name("netlink".into()).spawn(move || -> Result<T, String> {
		if let Some(namespace) = namespace {
			// SAFETY: a valid descriptor of a network namespace; `setns` changes only the
			// namespace of this thread, which ends with this call.
			if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
				return Err(format!("entering the namespace: {}", std::io::Error::last_os_error()));
			}
		}
		let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
		runtime.block_on(async move {
			let (connection, handle, _) =
				rtnetlink::new_connection().map_err(|e| format!("opening a netlink socket: {e}"))?;
			let connection = tokio::spawn(connection);
			let result = op(handle).await.map_err(|e| e.to_string());
			connection.abort();
			result
		})
	});
	thread
		.map_err(|e| fail(e.to_string()))?
		.join()
		.map_err(|_| fail("the netlink thread panicked".into()))?
		.map_err(fail)
}

async fn link_index(handle: &Handle, name: &str) -> Result<u32, rtnetlink::Error> {
	let link = handle.link().get().match_name(name.to_string()).execute().try_next().await?;
	link.map(|l| l.header.index).ok_or(rtnetlink::Error::RequestFailed)
}

/// `ip address add ADDRESS/PREFIX dev NAME` and `ip link set dev NAME mtu MTU up`.
pub fn configure_link(
	netns: Option<&str>,
	name: &str,
	address: Ipv4Addr,
	prefix: u8,
	mtu: u16,
) -> Result<(), NetError> {
	let interface = name.to_string();
	with_handle(netns, format!("configure {name} as {address}/{prefix}, mtu {mtu}"), move |handle| async move {
		let index = link_index(&handle, &interface).await?;
		handle.address().add(index, IpAddr::V4(address), prefix).execute().await?;
		handle.link().set(LinkUnspec::new_with_index(index).mtu(u32::from(mtu)).up().build()).execute().await
	})
}

/// `ip link set dev NAME netns NETNS`.
pub fn move_link(name: &str, netns: &str) -> Result<(), NetError> {
	let target = File::open(format!("{NETNS_DIR}/{netns}")).map_err(|e| NetError::Command {
		command: format!("move {name} to {netns}"),
		message: format!("network namespace {netns}: {e}"),
	})?;
	let interface = name.to_string();
	with_handle(None, format!("move {name} to {netns}"), move |handle| async move {
		let index = link_index(&handle, &interface).await?;
		let result = handle
			.link()
			.set(LinkUnspec::new_with_index(index).setns_by_fd(target.as_raw_fd()).build())
			.execute()
			.await;
		drop(target);
		result
	})
}

fn route(destination: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>, interface: u32) -> RouteMessage {
	let builder =
		RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(destination, prefix).output_interface(interface);
	match gateway {
		Some(gateway) => builder.gateway(gateway).build(),
		None => builder.build(),
	}
}

/// `ip route add DESTINATION/PREFIX [via GATEWAY] dev NAME`.
pub fn add_route(
	netns: Option<&str>,
	destination: Ipv4Addr,
	prefix: u8,
	gateway: Option<Ipv4Addr>,
	name: &str,
) -> Result<(), NetError> {
	let interface = name.to_string();
	let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
	with_handle(netns, format!("route {destination}/{prefix}{via} dev {name}"), move |handle| async move {
		let index = link_index(&handle, &interface).await?;
		handle.route().add(route(destination, prefix, gateway, index)).execute().await
	})
}

/// `ip route del DESTINATION/PREFIX` (the first route to exactly that prefix, in the main
/// table).
pub fn delete_route(destination: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
	with_handle(None, format!("delete the route to {destination}/{prefix}"), move |handle| async move {
		let message = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(destination, prefix).build();
		handle.route().del(message).execute().await
	})
}

/// `ip route get DESTINATION`: how this host reaches it, as the gateway (if any) and the
/// device's name.
pub fn route_to(destination: Ipv4Addr) -> Result<(Option<Ipv4Addr>, String), NetError> {
	with_handle(None, format!("find the route to {destination}"), move |handle| async move {
		let query = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(destination, 32).build();
		let found = handle.route().get(query).execute().try_next().await?.ok_or(rtnetlink::Error::RequestFailed)?;
		let mut gateway = None;
		let mut interface = None;
		for attribute in &found.attributes {
			match attribute {
				RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
				RouteAttribute::Oif(i) => interface = Some(*i),
				_ => {},
			}
		}
		let interface = interface.ok_or(rtnetlink::Error::RequestFailed)?;
		let link = handle
			.link()
			.get()
			.match_index(interface)
			.execute()
			.try_next()
			.await?
			.ok_or(rtnetlink::Error::RequestFailed)?;
		let name = link
			.attributes
			.iter()
			.find_map(|a| match a {
				rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
				_ => None,
			})
			.ok_or(rtnetlink::Error::RequestFailed)?;
		Ok((gateway, name))
	})
}

#[cfg(test)]
mod tests {
	use super::*;

	/// In a namespace of its own (root, as the suite runs), on its loopback device: an address,
	/// the link up, a route via a gateway, as `ip` shows them; a duplicate route, a missing
	/// link and a missing namespace are errors that name the change.
	#[test]
	fn addresses_and_routes_are_configured_in_a_namespace_and_errors_name_the_change() {
		let ns = format!("ilnltest{}", std::process::id());
		let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status().unwrap().success();
		assert!(ip(&["netns", "add", &ns]), "needs root");
		let result = std::panic::catch_unwind(|| {
			configure_link(Some(&ns), "lo", Ipv4Addr::new(10, 250, 0, 1), 24, 1500).unwrap();
			add_route(Some(&ns), Ipv4Addr::new(198, 51, 100, 0), 24, Some(Ipv4Addr::new(10, 250, 0, 2)), "lo").unwrap();
			let shown = std::process::Command::new("ip").args(["-n", &ns, "-4", "route", "show"]).output().unwrap();
			let shown = String::from_utf8_lossy(&shown.stdout).to_string();
			assert!(shown.contains("198.51.100.0/24 via 10.250.0.2 dev lo"), "{shown}");
			let again = add_route(Some(&ns), Ipv4Addr::new(198, 51, 100, 0), 24, None, "lo").unwrap_err();
			assert!(again.to_string().contains("198.51.100.0/24"), "{again}");
			assert!(configure_link(Some(&ns), "nosuchlink0", Ipv4Addr::new(10, 250, 1, 1), 24, 1400).is_err());
			assert!(configure_link(Some("no-such-namespace"), "lo", Ipv4Addr::new(10, 250, 1, 1), 24, 1400).is_err());
		});
		assert!(ip(&["netns", "delete", &ns]));
		if let Err(panic) = result {
			std::panic::resume_unwind(panic);
		}
	}

	#[test]
	fn the_route_to_loopback_is_found() {
		let (gateway, device) = route_to(Ipv4Addr::LOCALHOST).unwrap();
		assert_eq!((gateway, device.as_str()), (None, "lo"));
	}
}
