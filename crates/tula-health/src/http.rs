//! The HTTP/1.1 side of http and https probes: the GET request, and a reader
//! that takes the response as it arrives (Content-Length, chunked, or ended
//! by the connection's close) and keeps at most [`MAX_BODY`] bytes of body.

use std::fmt::Write;

/// Body bytes kept for the `expect_body` check; a longer body is cut there.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Longest status line and headers accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A GET for `path` with the Host header `host`, on a connection closed afterwards.
pub(crate) fn request(path: &str, host: &str) -> Vec<u8> {
    let mut text = String::with_capacity(96 + path.len() + host.len());
    let _ = write!(
        text,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tula-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    text.into_bytes()
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    /// The body, de-chunked, cut at [`MAX_BODY`].
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Read more (or call again with `closed` once the peer closed).
    NeedMore,
    Complete(Response),
    Invalid(String),
}

/// Reads the response in `buf` (everything received so far); `closed` = the peer closed the connection.
pub(crate) fn parse(buf: &[u8], closed: bool) -> Progress {
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return if buf.len() > MAX_HEAD {
            Progress::Invalid(format!("no end of headers in the first {MAX_HEAD} bytes"))
        } else if closed {
            Progress::Invalid(if buf.is_empty() {
                "the connection closed with no response".to_string()
            } else {
                "the connection closed inside the response headers".to_string()
            })
        } else {
            Progress::NeedMore
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => {
            code.parse::<u16>().ok().filter(|c| (100..600).contains(c))
        }
        _ => None,
    };
    let Some(status) = status else {
        return Progress::Invalid(format!(
            "not an HTTP/1 status line: {:?}",
            truncate(status_line, 80)
        ));
    };
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => content_length = Some(n),
                Err(_) => return Progress::Invalid(format!("bad Content-Length {value:?}")),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .to_ascii_lowercase()
                .split(',')
                .any(|c| c.trim() == "chunked");
        }
    }
    let rest = &buf[head_len..];
    // A status without a body, whatever the headers say (RFC 9112, 6.3).
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Progress::Complete(Response {
            status,
            body: Vec::new(),
        });
    }
    if chunked {
        return dechunk(status, rest, closed);
    }
    match content_length {
        Some(len) if rest.len() >= len || rest.len() >= MAX_BODY => {
            complete(status, &rest[..len.min(rest.len())])
        }
        Some(len) if closed => Progress::Invalid(format!(
            "the connection closed after {} of {len} body bytes",
            rest.len()
        )),
        Some(_) => Progress::NeedMore,
        None if closed || rest.len() >= MAX_BODY => complete(status, rest),
        None => Progress::NeedMore,
    }
}

fn complete(status: u16, body: &[u8]) -> Progress {
    Progress::Complete(Response {
        status,
        body: body[..body.len().min(MAX_BODY)].to_vec(),
    })
}

/// Decodes a chunked body: complete at the last chunk (trailers ignored) or once MAX_BODY bytes are in.
fn dechunk(status: u16, mut rest: &[u8], closed: bool) -> Progress {
    let mut body = Vec::new();
    loop {
        if body.len() >= MAX_BODY {
            return complete(status, &body);
        }
        let Some(line_end) = find(rest, b"\r\n") else {
            return incomplete(closed, "inside a chunk size");
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Progress::Invalid(format!("bad chunk size {:?}", truncate(size_text, 20)));
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return complete(status, &body);
        }
        if rest.len() < size + 2 {
            if body.len() + rest.len() >= MAX_BODY {
                body.extend_from_slice(rest);
                return complete(status, &body);
            }
            return incomplete(closed, "inside a chunk");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn incomplete(closed: bool, place: &str) -> Progress {
    if closed {
        Progress::Invalid(format!("the connection closed {place}"))
    } else {
        Progress::NeedMore
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(status: u16, body: &str) -> Progress {
        Progress::Complete(Response {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn the_request_names_the_path_and_host() {
        assert_eq!(
            String::from_utf8(request("/health?full=1", "www.example.com")).unwrap(),
            "GET /health?full=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: tula-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn content_length_bodies_complete_at_their_length() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse(&full[..20], false), Progress::NeedMore);
        assert_eq!(parse(&full[..full.len() - 1], false), Progress::NeedMore);
        assert_eq!(parse(full, false), done(200, "hello"));
        assert!(
            matches!(parse(&full[..full.len() - 1], true), Progress::Invalid(m) if m == "the connection closed after 4 of 5 body bytes")
        );
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let full = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nnot \r\n5\r\nready\r\n0\r\n\r\n";
        assert_eq!(parse(&full[..70], false), Progress::NeedMore);
        assert_eq!(parse(full, false), done(503, "not ready"));
        assert!(
            matches!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false), Progress::Invalid(m) if m.starts_with("bad chunk size"))
        );
    }

    #[test]
    fn close_delimited_and_bodiless_responses() {
        let head = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\npartial body";
        assert_eq!(parse(head, false), Progress::NeedMore);
        assert_eq!(parse(head, true), done(200, "partial body"));
        assert_eq!(
            parse(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
                false
            ),
            done(204, "")
        );
    }

    #[test]
    fn long_bodies_are_cut_and_bad_responses_named() {
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_BODY + 10));
        match parse(&big, false) {
            Progress::Complete(r) => assert_eq!(r.body.len(), MAX_BODY),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(b"", true),
            Progress::Invalid("the connection closed with no response".into())
        );
        assert!(
            matches!(parse(b"SSH-2.0-OpenSSH\r\n\r\n", false), Progress::Invalid(m) if m.starts_with("not an HTTP/1 status line"))
        );
        assert!(
            matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false), Progress::Invalid(m) if m == "bad Content-Length \"x\"")
        );
    }
}
