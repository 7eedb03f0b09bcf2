//! What the agent's HTTPS endpoint answers to everyone without a tunnel capability: an
//! ordinary static website (`[https] site`, or a one-page default), with the status codes,
//! headers and bodies a plain web server gives — so a censor's probe learns nothing more
//! than it would from any small site.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Response, StatusCode};

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
