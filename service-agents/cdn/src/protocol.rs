//! The dCDN's HTTP protocol: paths, headers, the JSON bodies and `Range` parsing. Specified
//! in `docs/cdn-protocol.md`; this module is the agent's and the client's shared reference.

use serde::{Deserialize, Serialize};

/// Header naming the on-chain session a request is paid from (decimal session id).
pub const SESSION_HEADER: &str = "x-interlattice-session";
/// Header on slice responses: the object's full length.
pub const CONTENT_SIZE_HEADER: &str = "x-content-size";
/// Path prefix of objects: `/content/<hash>`.
pub const CONTENT_PATH: &str = "/content/";
/// Path prefix of verified slices: `/slice/<hash>?start=S&len=L`.
pub const SLICE_PATH: &str = "/slice/";
/// Receipts are posted here.
pub const RECEIPTS_PATH: &str = "/receipts";
/// Publishing endpoint.
pub const PUBLISH_PATH: &str = "/publish";

/// The answer to a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
	/// The object's BLAKE3 hash (hex).
	pub hash: String,
	/// Its length.
	pub size: u64,
}

/// The body of `402 Payment Required` and of a receipt's acknowledgement: where the session
/// stands with this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
	/// The session.
	pub session_id: u64,
	/// Bytes served so far (bodies of content and slice responses).
	pub served_bytes: u64,
	/// Bytes the latest acknowledged receipt covers.
	pub paid_bytes: u64,
	/// Sequence of the latest acknowledged receipt.
	pub sequence: u64,
	/// What a receipt covering everything served must carry (decimal string).
	pub amount_due: String,
	/// How many more bytes are served before the next receipt is needed.
	pub allowance: u64,
	/// The deposit cannot pay for more: top up, then send a receipt.
	pub deposit_exhausted: bool,
}

/// An error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
	/// What went wrong, for people.
	pub error: String,
	/// Where the session stands, for 402 answers.
	#[serde(skip_serializing_if = "Option::is_none", default)]
	pub session: Option<SessionStatus>,
}

/// A parsed `Range` header, against an object of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
	/// No usable range: serve the whole object (`200`). Also the answer to a syntactically
	/// invalid header and, by decision, to multi-range requests (RFC 9110 §14.2 lets a
	/// server ignore `Range`).
	Full,
	/// One satisfiable range, inclusive `first..=last` (`206`).
	Partial {
		/// First byte.
		first: u64,
		/// Last byte.
		last: u64,
	},
	/// Valid syntax, but no byte of it is in the object (`416`).
	Unsatisfiable,
}

/// Parses `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (RFC 9110 §14.1.2).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
	let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
		return RangeRequest::Full;
	};
	if spec.contains(',') {
		return RangeRequest::Full;
	}
	let Some((a, b)) = spec.trim().split_once('-') else { return RangeRequest::Full };
	let (a, b) = (a.trim(), b.trim());
	let parse = |s: &str| s.parse::<u64>().ok().filter(|_| s.bytes().all(|c| c.is_ascii_digit()));
	match (a.is_empty(), b.is_empty()) {
		(true, true) => RangeRequest::Full,
		(true, false) => match parse(b) {
			None => RangeRequest::Full,
			Some(0) => RangeRequest::Unsatisfiable,
			Some(_) if size == 0 => RangeRequest::Unsatisfiable,
			Some(n) => RangeRequest::Partial { first: size.saturating_sub(n), last: size - 1 },
		},
		(false, _) => {
			let Some(first) = parse(a) else { return RangeRequest::Full };
			let last = if b.is_empty() {
				u64::MAX
			} else {
				match parse(b) {
					Some(l) if l >= first => l,
					_ => return RangeRequest::Full,
				}
			};
			if first >= size {
				RangeRequest::Unsatisfiable
			} else {
				RangeRequest::Partial { first, last: last.min(size - 1) }
			}
		},
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use RangeRequest::*;

	#[test]
	fn ranges() {
		assert_eq!(parse_range(None, 100), Full);
		assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial { first: 0, last: 9 });
		assert_eq!(parse_range(Some("bytes=90-"), 100), Partial { first: 90, last: 99 });
		assert_eq!(parse_range(Some("bytes=90-1000"), 100), Partial { first: 90, last: 99 });
		assert_eq!(parse_range(Some("bytes=-10"), 100), Partial { first: 90, last: 99 });
		assert_eq!(parse_range(Some("bytes=-1000"), 100), Partial { first: 0, last: 99 });
		assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
		assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
		assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
		assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
		assert_eq!(parse_range(Some("bytes=9-1"), 100), Full);
		assert_eq!(parse_range(Some("bytes=+1-2"), 100), Full);
		assert_eq!(parse_range(Some("items=0-1"), 100), Full);
		assert_eq!(parse_range(Some("bytes=x"), 100), Full);
	}
}
