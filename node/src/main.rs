//! The Interlattice node binary: everything lives in the library crate.

fn main() -> sc_cli::Result<()> {
	interlattice_pq_crypto::cpu::check().map_err(|e| sc_cli::Error::Input(e.to_string()))?;
	interlattice_node::command::run()
}
