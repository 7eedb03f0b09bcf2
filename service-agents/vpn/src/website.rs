//! What the agent's HTTPS endpoint answers to everyone without a tunnel capability: an
//! ordinary static website (`[https] site`, or a one-page default), with the status codes,
//! headers and bodies a plain web server gives — so a censor's probe learns nothing more
//! than it would from any small site; or, with `[https] upstream`, whatever the provider's
//! real website answers (its dCDN agent: one HTTPS port for both services), relayed as a
//! reverse proxy relays.

use std::{
	net::IpAddr,
	path::{Component, Path, PathBuf},
	time::Duration,
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{
	header::{self, HeaderMap, HeaderName, HeaderValue},
	Method, Request, Response, StatusCode, Uri, Version,
};
use hyper_util::{
	client::legacy::{connect::HttpConnector, Client},
	rt::TokioExecutor,
};

/// Why a body stopped (an upstream's connection, a client's stream).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an answer: a page of the site, or an upstream's response as it streams (and
/// of a request relayed to the upstream, from HTTP/1.1, HTTP/2 or HTTP/3).
pub type Body = BoxBody<Bytes, BodyError>;

/// A page's answer as a [`Body`] answer.
pub fn boxed(response: Response<Full<Bytes>>) -> Response<Body> {
	response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// The origin `url` names: `http://host:port` and nothing more.
pub fn upstream_origin(url: &str) -> Result<Uri, String> {
	let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
	let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
	if uri.scheme_str() != Some("http") || uri.authority().is_none() || !bare {
		return Err(format!("{url:?}: expected http://host:port"));
	}
	Ok(uri)
}

/// The headers that concern one connection only (RFC 9110 7.6.1), and those `Connection`
/// names: never relayed.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
	let named: Vec<HeaderName> = headers
		.get_all(header::CONNECTION)
		.iter()
		.filter_map(|v| v.to_str().ok())
		.flat_map(|v| v.split(','))
		.filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
		.collect();
	for name in named {
		headers.remove(name);
	}
	for name in [
		header::CONNECTION,
		HeaderName::from_static("keep-alive"),
		HeaderName::from_static("proxy-connection"),
		header::PROXY_AUTHENTICATE,
		header::PROXY_AUTHORIZATION,
		header::TE,
		header::TRAILER,
		header::TRANSFER_ENCODING,
		header::UPGRADE,
	] {
		headers.remove(name);
	}
}

/// A reverse proxy to one origin over plain HTTP/1.1 (on the provider's host: its dCDN
/// agent), with pooled connections.
pub struct Upstream {
	origin: Uri,
	client: Client<HttpConnector, Body>,
}

impl Upstream {
	/// A relay to `url` (`http://host:port`).
	pub fn new(url: &str) -> Result<Self, String> {
		let origin = upstream_origin(url)?;
		let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build_http();
		Ok(Upstream { origin, client })
	}

	/// Relays `request` (from `from`) to the origin and its answer back, streaming both
	/// bodies; `502 Bad Gateway` when the origin cannot be reached.
	pub async fn relay<B>(&self, request: Request<B>, from: IpAddr) -> Response<Body>
	where
		B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
		B::Error: Into<BodyError>,
	{
		let mut request = request.map(|body| body.map_err(Into::into).boxed());
		let method = request.method().clone();
		let host = request
			.uri()
			.authority()
			.map(|a| a.to_string())
			.or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
		let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
		let Some(authority) = self.origin.authority().cloned() else {
			return boxed(error(&method, StatusCode::BAD_GATEWAY));
		};
		let Ok(uri) = Uri::builder().scheme("http").authority(authority).path_and_query(path).build() else {
			return boxed(error(&method, StatusCode::BAD_REQUEST));
		};
		*request.uri_mut() = uri;
		*request.version_mut() = Version::HTTP_11;
		let headers = request.headers_mut();
		strip_hop_by_hop(headers);
		if let Some(host) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
			headers.insert(header::HOST, host);
		}
		headers.append("x-forwarded-for", HeaderValue::from_str(&from.to_string()).expect("an address is ASCII"));
		headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
		match self.client.request(request).await {
			Ok(response) => {
				let mut response = response.map(|body| body.map_err(Into::into).boxed());
				strip_hop_by_hop(response.headers_mut());
				response
			},
			Err(e) => {
				tracing::debug!(error = %e, "the upstream did not answer");
				boxed(error(&method, StatusCode::BAD_GATEWAY))
			},
		}
	}
}

/// The page served at `/` when no site is configured.
pub const DEFAULT_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Welcome</title>\n</head>\n<body>\n<h1>Welcome</h1>\n<p>This site is under construction.</p>\n</body>\n</html>\n";

fn page(status: StatusCode) -> String {
	let reason = status.canonical_reason().unwrap_or("");
	format!(
		"<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n",
		code = status.as_u16()
	)
}

fn content_type(path: &Path) -> &'static str {
	match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
		Some("html" | "htm") => "text/html",
		Some("css") => "text/css",
		Some("js") => "application/javascript",
		Some("json") => "application/json",
		Some("png") => "image/png",
		Some("jpg" | "jpeg") => "image/jpeg",
		Some("gif") => "image/gif",
		Some("svg") => "image/svg+xml",
		Some("ico") => "image/x-icon",
		Some("txt") => "text/plain",
		Some("woff2") => "font/woff2",
		_ => "application/octet-stream",
	}
}

fn respond(method: &Method, status: StatusCode, kind: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
	let len = body.len();
	let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from(body) };
	let mut response = Response::new(Full::new(body));
	*response.status_mut() = status;
	let headers = response.headers_mut();
	headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_str(kind).expect("ASCII"));
	headers.insert(header::CONTENT_LENGTH, len.into());
	if status == StatusCode::METHOD_NOT_ALLOWED {
		headers.insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
	}
	response
}

fn error(method: &Method, status: StatusCode) -> Response<Full<Bytes>> {
	respond(method, status, "text/html", page(status).into_bytes())
}

/// The file under `root` that `path` names (`/` and directories: their `index.html`), or
/// `None` when the path leaves the root or is not a plain relative path.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
	let mut file = root.to_path_buf();
	for component in Path::new(path.trim_start_matches('/')).components() {
		match component {
			Component::Normal(part) => file.push(part),
			Component::CurDir => {},
			_ => return None,
		}
	}
	if file.is_dir() {
		file.push("index.html");
	}
	Some(file)
}

/// The site's answer to `method path`.
pub async fn answer(method: &Method, path: &str, site: Option<&Path>) -> Response<Full<Bytes>> {
	if method != Method::GET && method != Method::HEAD {
		return error(method, StatusCode::METHOD_NOT_ALLOWED);
	}
	let Some(root) = site else {
		return match path {
			"/" | "/index.html" => respond(method, StatusCode::OK, "text/html", DEFAULT_PAGE.as_bytes().to_vec()),
			_ => error(method, StatusCode::NOT_FOUND),
		};
	};
	let Some(file) = resolve(root, path) else { return error(method, StatusCode::BAD_REQUEST) };
	match tokio::fs::read(&file).await {
		Ok(body) => respond(method, StatusCode::OK, content_type(&file), body),
		Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => error(method, StatusCode::FORBIDDEN),
		Err(_) => error(method, StatusCode::NOT_FOUND),
	}
}

#[cfg(test)]
mod tests {
	use http_body_util::BodyExt;

	use super::*;

	async fn body(r: Response<Full<Bytes>>) -> Vec<u8> {
		r.into_body().collect().await.unwrap().to_bytes().to_vec()
	}

	#[test]
	fn only_a_bare_http_origin_is_an_upstream() {
		assert!(upstream_origin("http://127.0.0.1:7321").is_ok());
		assert!(upstream_origin("http://127.0.0.1:7321/").is_ok());
		for bad in ["https://127.0.0.1:7321", "127.0.0.1:7321", "http://127.0.0.1:7321/site", "http://", "ftp://x"] {
			assert!(upstream_origin(bad).is_err(), "{bad}");
		}
	}

	#[test]
	fn hop_by_hop_headers_are_not_relayed() {
		let mut headers = HeaderMap::new();
		headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
		headers.insert("x-secret", HeaderValue::from_static("1"));
		headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
		headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
		strip_hop_by_hop(&mut headers);
		assert_eq!(headers.len(), 1, "{headers:?}");
		assert!(headers.contains_key(header::AUTHORIZATION));
	}

	#[tokio::test]
	async fn a_plain_static_site() {
		let temp = tempfile::tempdir().unwrap();
		let dir = temp.path();
		std::fs::write(dir.join("index.html"), b"<h1>home</h1>").unwrap();
		std::fs::create_dir_all(dir.join("css")).unwrap();
		std::fs::write(dir.join("css/site.css"), b"body{}").unwrap();
		let site = Some(dir);

		let home = answer(&Method::GET, "/", site).await;
		assert_eq!(home.status(), StatusCode::OK);
		assert_eq!(home.headers()[header::CONTENT_TYPE], "text/html");
		assert_eq!(body(home).await, b"<h1>home</h1>");
		let head = answer(&Method::HEAD, "/css/site.css", site).await;
		assert_eq!(head.headers()[header::CONTENT_LENGTH], "6");
		assert!(body(head).await.is_empty());
		assert_eq!(answer(&Method::GET, "/nothing/here", site).await.status(), StatusCode::NOT_FOUND);
		assert_eq!(answer(&Method::GET, "/../etc/passwd", site).await.status(), StatusCode::BAD_REQUEST);
		let post = answer(&Method::POST, "/", site).await;
		assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
		assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
		assert_eq!(answer(&Method::CONNECT, "/", site).await.status(), StatusCode::METHOD_NOT_ALLOWED);

		let default = answer(&Method::GET, "/", None).await;
		assert_eq!(body(default).await, DEFAULT_PAGE.as_bytes());
		assert_eq!(answer(&Method::GET, "/x", None).await.status(), StatusCode::NOT_FOUND);
	}
}
