//! `pq-key`: ML-DSA-65 keys for people. See `pq-key --help`.

use clap::Parser;

fn main() {
	if let Err(e) = interlattice_pq_crypto::cpu::check() {
		eprintln!("error: {e}");
		std::process::exit(2);
	}
	let cli = interlattice_pq_key::Cli::parse();
	match interlattice_pq_key::run(cli, &mut std::io::stdout()) {
		Ok(code) => std::process::exit(code),
		Err(e) => {
			eprintln!("error: {e:#}");
			std::process::exit(2);
		},
	}
}
