//! A minimal blocking JSON-RPC-over-HTTP client. Deliberately hand-rolled: the tests also
//! need to send bytes that are not JSON at all.

use std::{
	io::{Read, Write},
	net::TcpStream,
	time::Duration,
};

use serde_json::{json, Value};

/// What can go wrong with one call.
#[derive(Debug)]
pub enum RpcError {
	/// The connection failed or was cut.
	Transport(String),
	/// The server answered with a JSON-RPC error object.
	Server(Value),
	/// The answer was not an HTTP/JSON-RPC response.
	Malformed(String),
}

impl std::fmt::Display for RpcError {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		match self {
			RpcError::Transport(e) => write!(f, "transport: {e}"),
			RpcError::Server(e) => write!(f, "server error: {e}"),
			RpcError::Malformed(e) => write!(f, "malformed response: {e}"),
		}
	}
}

/// A node's JSON-RPC endpoint on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Rpc {
	pub port: u16,
}

impl Rpc {
	/// POSTs `body` as is and returns the HTTP status and the parsed JSON body.
	pub fn post_raw(&self, body: &[u8]) -> Result<(u16, Value), RpcError> {
		parse_response(&self.exchange(body)?)
	}

	/// POSTs `body` on a new connection and returns every byte of the answer.
	fn exchange(&self, body: &[u8]) -> Result<Vec<u8>, RpcError> {
		let mut stream =
			TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| RpcError::Transport(e.to_string()))?;
		stream.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| RpcError::Transport(e.to_string()))?;
		let head = format!(
			"POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
			 Content-Length: {}\r\nConnection: close\r\n\r\n",
			self.port,
			body.len()
		);
		stream
			.write_all(head.as_bytes())
			.and_then(|_| stream.write_all(body))
			.map_err(|e| RpcError::Transport(e.to_string()))?;
		let mut response = Vec::new();
		stream.read_to_end(&mut response).map_err(|e| RpcError::Transport(e.to_string()))?;
		Ok(response)
	}

	/// Calls `method` with `params` and also returns how long the node took to answer: from
	/// connecting until the answer's last byte arrived (the caller's parsing of the JSON, after
	/// that, is not counted: a benchmark of the node's latency).
	pub fn call_timed(&self, method: &str, params: Value) -> Result<(Duration, Value), RpcError> {
		let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
		let started = std::time::Instant::now();
		let response = self.exchange(request.as_bytes())?;
		let elapsed = started.elapsed();
		let (_, response) = parse_response(&response)?;
		Ok((elapsed, result_of(response)?))
	}

	/// Calls `method` with `params`; a JSON-RPC error becomes [`RpcError::Server`].
	pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
		let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
		let (_, response) = self.post_raw(request.to_string().as_bytes())?;
		result_of(response)
	}

	/// The best block's number, if the node answers.
	pub fn best_number(&self) -> Option<u64> {
		let header = self.call("chain_getHeader", json!([])).ok()?;
		parse_number(&header["number"])
	}

	/// The finalized block's number, if the node answers.
	pub fn finalized_number(&self) -> Option<u64> {
		let hash = self.call("chain_getFinalizedHead", json!([])).ok()?;
		let header = self.call("chain_getHeader", json!([hash])).ok()?;
		parse_number(&header["number"])
	}

	/// The hash of block `number` on the node's best chain.
	pub fn block_hash(&self, number: u64) -> Option<String> {
		self.call("chain_getBlockHash", json!([number])).ok()?.as_str().map(str::to_owned)
	}
}

/// The status and JSON body of an HTTP answer.
fn parse_response(response: &[u8]) -> Result<(u16, Value), RpcError> {
	let text = String::from_utf8_lossy(response);
	let (head, body) =
		text.split_once("\r\n\r\n").ok_or_else(|| RpcError::Malformed(format!("no HTTP header end in {text:?}")))?;
	let status = head
		.split_whitespace()
		.nth(1)
		.and_then(|s| s.parse().ok())
		.ok_or_else(|| RpcError::Malformed(format!("no status in {head:?}")))?;
	let body =
		if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
	let value = serde_json::from_str(&body).map_err(|e| RpcError::Malformed(format!("{e}: {body:?}")))?;
	Ok((status, value))
}

/// A JSON-RPC answer's result; its error as [`RpcError::Server`].
fn result_of(mut response: Value) -> Result<Value, RpcError> {
	if let Some(error) = response.get("error") {
		return Err(RpcError::Server(error.clone()));
	}
	response.get_mut("result").map(Value::take).ok_or_else(|| RpcError::Malformed(format!("no result in {response}")))
}

/// Parses a hex block number ("0x1a") as the RPC returns it.
pub fn parse_number(v: &Value) -> Option<u64> {
	u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

fn dechunk(body: &str) -> String {
	let mut out = String::new();
	let mut rest = body;
	while let Some((size, tail)) = rest.split_once("\r\n") {
		let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
		if n == 0 || tail.len() < n {
			break;
		}
		out.push_str(&tail[..n]);
		rest = tail[n..].trim_start_matches("\r\n");
	}
	out
}
