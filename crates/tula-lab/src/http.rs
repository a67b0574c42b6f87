//! A small real HTTP/1.1 server and client for the lab: each backend answers
//! with its own name, so the client can see where every request landed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Serves until the process is killed: every response body is `NAME\n`
/// (for a POST, `NAME received N bytes\n`).
pub fn serve(name: &str, listen: &[SocketAddr]) -> std::io::Result<()> {
    let mut listeners = Vec::new();
    for addr in listen {
        listeners.push(TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("binding the lab HTTP server to {addr}: {e}"))
        })?);
    }
    std::thread::scope(|s| {
        for listener in &listeners {
            s.spawn(move || {
                for stream in listener.incoming().flatten() {
                    let name = name.to_string();
                    std::thread::spawn(move || {
                        let _ = handle_connection(&name, stream);
                    });
                }
            });
        }
    });
    Ok(())
}

fn handle_connection(name: &str, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(request) = read_head(&mut reader)? else { return Ok(()) };
        let mut received = 0u64;
        if let Some(len) = request.content_length {
            received = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink())?;
        }
        let body = if request.method == "POST" {
            format!("{name} received {received} bytes\n")
        } else {
            format!("{name}\n")
        };
        let connection = if request.keep_alive { "keep-alive" } else { "close" };
        // One write, so the response leaves as one segment.
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        );
        writer.write_all(response.as_bytes())?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

struct RequestHead {
    method: String,
    content_length: Option<u64>,
    keep_alive: bool,
}

/// Reads a request line and headers; `None` at a clean end of stream.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<RequestHead>> {
    let mut line = String::new();
    let mut total = 0;
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let version = parts.nth(1).unwrap_or_default().to_string();
    let mut head = RequestHead { method, content_length: None, keep_alive: version == "HTTP/1.1" };
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        total += n;
        if n == 0 || line == "\r\n" || line == "\n" || total > MAX_HEADER_BYTES {
            return Ok(Some(head));
        }
        if let Some((key, value)) = line.split_once(':') {
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            if key == "content-length" {
                head.content_length = value.parse().ok();
            } else if key == "connection" {
                head.keep_alive = value.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
}

/// One HTTP connection that can carry several requests (keep-alive).
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client { reader: BufReader::new(stream.try_clone()?), writer: stream, host: addr })
    }

    /// Sends a GET (or a POST when `body` is given) and returns the response body.
    pub fn request(&mut self, path: &str, body: Option<&[u8]>, keep_alive: bool) -> std::io::Result<String> {
        let method = if body.is_some() { "POST" } else { "GET" };
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let length = body.map(|b| format!("Content-Length: {}\r\n", b.len())).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: {connection}\r\n{length}\r\n",
            self.host
        )
        .into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        self.writer.write_all(&request)?;
        let mut status = String::new();
        self.reader.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!("{} answered {:?}", self.host, status.trim())));
        }
        let mut length = 0u64;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut text = String::new();
        (&mut self.reader).take(length).read_to_string(&mut text)?;
        Ok(text)
    }
}

/// One request on a fresh connection; returns the body.
pub fn get(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    Client::connect(addr, timeout)?.request("/", None, false)
}
