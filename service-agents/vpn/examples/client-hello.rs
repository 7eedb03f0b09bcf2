//! Prints the dVPN client's TLS ClientHello for HOST (default 127.0.0.1), hex: the first
//! flight of `vpn connect --transport https`, for `scripts/tls-fingerprint.sh`.

fn main() {
	let host = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1".into());
	match interlattice_vpn::https::client_hello(&host) {
		Ok(bytes) => println!("{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
		Err(e) => {
			eprintln!("client-hello: {e}");
			std::process::exit(1);
		},
	}
}
