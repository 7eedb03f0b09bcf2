//! The binaries' command lines (this integration test also makes `cargo test` build both
//! binaries, which the end-to-end tests in `tests/` run).

use std::process::Command;

fn help(binary: &str, args: &[&str]) -> String {
	let out = Command::new(binary).args(args).arg("--help").output().unwrap();
	assert!(out.status.success(), "{binary} --help: {out:?}");
	String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_client_offers_its_commands() {
	let text = help(env!("CARGO_BIN_EXE_vpn"), &[]);
	for command in ["providers", "connect", "disconnect", "export-config", "close"] {
		assert!(text.contains(command), "{command} missing from:\n{text}");
	}
	assert!(help(env!("CARGO_BIN_EXE_vpn"), &["connect"]).contains("--max-price-per-gib"));
}

#[test]
fn the_agent_offers_run_and_register_and_refuses_a_bad_config() {
	let text = help(env!("CARGO_BIN_EXE_vpn-agent"), &[]);
	assert!(text.contains("register") && text.contains("--config"), "{text}");
	let dir = std::env::temp_dir().join(format!("vpn-agent-cli-{}", std::process::id()));
	std::fs::create_dir_all(&dir).unwrap();
	let bad = dir.join("bad.toml");
	std::fs::write(&bad, "[chain]\nrpc = \"http://127.0.0.1:1\"\n").unwrap();
	let out = Command::new(env!("CARGO_BIN_EXE_vpn-agent")).args(["--config", bad.to_str().unwrap()]).output().unwrap();
	assert!(!out.status.success());
	assert!(String::from_utf8_lossy(&out.stderr).contains("missing field"), "{out:?}");
	std::fs::remove_dir_all(&dir).unwrap();
}
