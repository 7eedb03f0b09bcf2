//! A minimal HTTP origin for the dCDN tests: serves `/objects/<key>` from memory (a test may
//! store bytes under a hash they do not have, to play a lying origin) and counts requests.

use std::{
	collections::HashMap,
	io::{BufRead, BufReader, Write},
	net::TcpListener,
	sync::{
		atomic::{AtomicUsize, Ordering},
		Arc, Mutex,
	},
};

/// Objects by key, shared with the test.
pub type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A running origin.
pub struct Origin {
	/// Its port on 127.0.0.1.
	pub port: u16,
	/// What it serves.
	pub objects: Objects,
	requests: Arc<AtomicUsize>,
}

impl Origin {
	/// Starts an origin serving `objects`.
	pub fn start(objects: Objects) -> Origin {
		let listener = TcpListener::bind("127.0.0.1:0").unwrap();
		let port = listener.local_addr().unwrap().port();
		let requests = Arc::new(AtomicUsize::new(0));
		let (served, counter) = (objects.clone(), requests.clone());
		std::thread::spawn(move || {
			for stream in listener.incoming().flatten() {
				let (objects, counter) = (served.clone(), counter.clone());
				std::thread::spawn(move || {
					let mut reader = BufReader::new(stream.try_clone().unwrap());
					let mut line = String::new();
					let _ = reader.read_line(&mut line);
					loop {
						let mut header = String::new();
						if reader.read_line(&mut header).unwrap_or(0) <= 2 {
							break;
						}
					}
					counter.fetch_add(1, Ordering::SeqCst);
					let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
					let key = path.trim_start_matches("/objects/").to_string();
					let mut stream = stream;
					let body = objects.lock().unwrap().get(&key).cloned();
					match body {
						Some(body) => {
							let _ = write!(
								stream,
								"HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
								body.len()
							);
							let _ = stream.write_all(&body);
						},
						None => {
							let _ = stream
								.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
						},
					}
				});
			}
		});
		Origin { port, objects, requests }
	}

	/// Requests answered so far.
	pub fn requests(&self) -> usize {
		self.requests.load(Ordering::SeqCst)
	}
}
