//! A minimal blocking HTTP/1.1 client over one keep-alive connection: just
//! enough for the benchmark's requests to `souk serve` on loopback, with no
//! pooling, redirects or TLS. A connection that failed is dropped and the
//! next request opens a new one.

use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// An answer: its status and body.
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body (after chunked decoding, if any).
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, lossily, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection to one server.
pub struct Client {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of `base`, `http://host:port` (a path after it is ignored).
    ///
    /// # Errors
    /// When `base` is not such a URL or its host does not resolve.
    pub fn new(base: &str) -> io::Result<Self> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad URL {base:?}"));
        let rest = base.strip_prefix("http://").ok_or_else(invalid)?;
        let host = rest.split('/').next().ok_or_else(invalid)?.to_owned();
        let addr = host.to_socket_addrs()?.next().ok_or_else(invalid)?;
        Ok(Client {
            addr,
            host,
            timeout: Duration::from_secs(60),
            conn: None,
        })
    }

    /// Sends one request and reads its answer. `body` is sent as JSON.
    ///
    /// # Errors
    /// Connection and protocol errors; the connection is dropped then.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        let result = self.exchange(method, path, token, body);
        match &result {
            Ok((_, keep)) if *keep => {}
            _ => self.conn = None,
        }
        result.map(|(response, _)| response)
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> io::Result<(Response, bool)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(BufReader::with_capacity(16 * 1024, stream));
        }
        let conn = self.conn.as_mut().expect("connected above");

        let mut head = String::with_capacity(256);
        let _ = write!(head, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(token) = token {
            let _ = write!(head, "Authorization: Bearer {token}\r\n");
        }
        if let Some(body) = body {
            let _ = write!(
                head,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if let Some(body) = body {
            bytes.extend_from_slice(body);
        }
        conn.get_mut().write_all(&bytes)?;

        let protocol = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol("bad status line"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut keep = true;
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                return Err(protocol("connection closed in the headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(protocol("bad header line"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse().map_err(|_| protocol("bad content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                keep = !value.eq_ignore_ascii_case("close");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let size_text = line.trim().split(';').next().unwrap_or("");
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| protocol("bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if conn.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                conn.read_exact(&mut body[start..])?;
                line.clear();
                conn.read_line(&mut line)?;
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            conn.read_exact(&mut body)?;
        } else if status != 204 && status != 304 && method != "HEAD" {
            conn.read_to_end(&mut body)?;
            keep = false;
        }
        Ok((Response { status, body }, keep))
    }
}
