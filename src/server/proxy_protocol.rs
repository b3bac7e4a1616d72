//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front says who the
//! client really is in a header before the first request. With `--proxy-protocol` on, a
//! connection from a `--proxy-allow-from` peer (or a Unix socket) is read up to the end of that
//! header before the HTTP guard sees a byte; the addresses it names become the connection's
//! (`REMOTE_ADDR`, `SERVER_NAME`…). A connection that starts with something else is served as
//! is, as gunicorn does; a header that starts right but is malformed ends the connection. This
//! module knows bytes and addresses, not HTTP.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::config::ProxyProtocolMode;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v2's fixed part: signature, version/command, family, length.
const V2_FIXED: usize = 16;

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proxied {
    /// The client and the address it connected to.
    Addresses {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// `UNKNOWN` (v1) or `LOCAL` (v2): the proxy speaks for itself; keep the socket's addresses.
    Local,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProxyError {
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// Too few bytes to tell.
    Need,
    /// Not a PROXY header: the bytes belong to the HTTP stream.
    NotProxy,
    /// A header of this many bytes.
    Header(Proxied, usize),
}

/// Reads a PROXY header from the start of `stream` if there is one. Returns what it said and
/// the bytes read past it (to be replayed to the HTTP side).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyProtocolMode,
) -> Result<(Option<Proxied>, BytesMut), ProxyError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        match scan(&buf, mode)? {
            Scan::NotProxy => return Ok((None, buf)),
            Scan::Header(proxied, len) => {
                buf.advance(len);
                return Ok((Some(proxied), buf));
            }
            Scan::Need => {
                let n = stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|_| ProxyError::Malformed("connection failed"))?;
                if n == 0 {
                    return Ok((None, buf));
                }
            }
        }
    }
}

fn scan(buf: &[u8], mode: ProxyProtocolMode) -> Result<Scan, ProxyError> {
    let v1 = matches!(mode, ProxyProtocolMode::V1 | ProxyProtocolMode::Auto);
    let v2 = matches!(mode, ProxyProtocolMode::V2 | ProxyProtocolMode::Auto);
    let is_prefix = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if buf.is_empty() {
        return Ok(Scan::Need);
    }
    if v1 && is_prefix(V1_PREFIX) {
        return match buf.windows(2).position(|w| w == b"\r\n") {
            Some(end) if end + 2 <= V1_MAX => {
                Ok(Scan::Header(parse_v1(&buf[V1_PREFIX.len()..end])?, end + 2))
            }
            Some(_) => Err(ProxyError::Malformed("v1 header too long")),
            None if buf.len() >= V1_MAX => Err(ProxyError::Malformed("v1 header too long")),
            None => Ok(Scan::Need),
        };
    }
    if v2 && is_prefix(V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Ok(Scan::Need);
        }
        let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if buf.len() < len {
            return Ok(Scan::Need);
        }
        return Ok(Scan::Header(parse_v2(&buf[12..len])?, len));
    }
    Ok(Scan::NotProxy)
}

/// `TCP4 SRC DST SPORT DPORT`, `TCP6 …` or `UNKNOWN …`.
fn parse_v1(line: &[u8]) -> Result<Proxied, ProxyError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 not ASCII"))?;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Proxied::Local);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Malformed("v1 needs four fields"));
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| ProxyError::Malformed("v1 bad address"))?;
        match (family, ip) {
            ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
            _ => Err(ProxyError::Malformed(
                "v1 address does not match its family",
            )),
        }
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        if s.len() > 1 && s.starts_with('0') {
            return Err(ProxyError::Malformed("v1 port with a leading zero"));
        }
        s.parse().map_err(|_| ProxyError::Malformed("v1 bad port"))
    };
    Ok(Proxied::Addresses {
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
    })
}

/// Everything after the signature: version/command, family, length, addresses, TLVs.
fn parse_v2(rest: &[u8]) -> Result<Proxied, ProxyError> {
    let (ver_cmd, family, body) = (rest[0], rest[1], &rest[4..]);
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(Proxied::Local),
        1 => {}
        _ => return Err(ProxyError::Malformed("v2 unknown command")),
    }
    let addresses = match family >> 4 {
        1 if body.len() >= 12 => {
            let ip = |i: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[i],
                    body[i + 1],
                    body[i + 2],
                    body[i + 3],
                ))
            };
            (ip(0), ip(4), &body[8..12])
        }
        2 if body.len() >= 36 => {
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            (ip(0), ip(16), &body[32..36])
        }
        // UNSPEC and UNIX carry no IP address to report.
        0 | 3 => return Ok(Proxied::Local),
        _ => return Err(ProxyError::Malformed("v2 address block too short")),
    };
    let (src, dst, ports) = addresses;
    Ok(Proxied::Addresses {
        source: SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    })
}

/// A stream that first yields bytes already read from it.
pub(crate) struct Rewind<S> {
    pre: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(pre: BytesMut, inner: S) -> Rewind<S> {
        Rewind { pre, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_lines() {
        let h = b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\nGET / HTTP/1.1\r\n";
        let Scan::Header(p, len) = scan(h, ProxyProtocolMode::Auto).unwrap() else {
            panic!()
        };
        assert_eq!(&h[len..], b"GET / HTTP/1.1\r\n");
        assert_eq!(
            p,
            Proxied::Addresses {
                source: sock("192.168.0.1:56324"),
                destination: sock("10.0.0.2:443")
            }
        );
        let h = b"PROXY TCP6 ::1 2001:db8::1 1 2\r\n";
        assert!(matches!(
            scan(h, ProxyProtocolMode::V1),
            Ok(Scan::Header(_, 32))
        ));
        assert_eq!(
            scan(b"PROXY UNKNOWN\r\n", ProxyProtocolMode::V1),
            Ok(Scan::Header(Proxied::Local, 15))
        );
        assert_eq!(
            scan(b"PROXY TCP4 1.2.3.4", ProxyProtocolMode::V1),
            Ok(Scan::Need)
        );
        assert_eq!(scan(b"PRO", ProxyProtocolMode::V1), Ok(Scan::Need));
    }

    #[test]
    fn bad_v1_lines() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(scan(bad, ProxyProtocolMode::V1).is_err(), "{bad:?}");
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(scan(&long, ProxyProtocolMode::V1).is_err());
    }

    #[test]
    fn v2_headers() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x01, 0xbb,
        ]);
        h.extend_from_slice(b"GET");
        let Ok(Scan::Header(p, len)) = scan(&h, ProxyProtocolMode::V2) else {
            panic!()
        };
        assert_eq!(len, 28);
        assert_eq!(
            p,
            Proxied::Addresses {
                source: sock("10.0.0.1:8080"),
                destination: sock("10.0.0.2:443")
            }
        );
        assert_eq!(scan(&h[..20], ProxyProtocolMode::V2), Ok(Scan::Need));
        let local = [V2_SIGNATURE.as_slice(), &[0x20, 0x00, 0, 0]].concat();
        assert_eq!(
            scan(&local, ProxyProtocolMode::Auto),
            Ok(Scan::Header(Proxied::Local, 16))
        );
        let v3 = [V2_SIGNATURE.as_slice(), &[0x31, 0x11, 0, 0]].concat();
        assert!(scan(&v3, ProxyProtocolMode::V2).is_err());
    }

    #[test]
    fn other_bytes_and_modes() {
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\n", ProxyProtocolMode::Auto),
            Ok(Scan::NotProxy)
        );
        assert_eq!(scan(b"POST", ProxyProtocolMode::Auto), Ok(Scan::NotProxy));
        // A v1 header where only v2 is accepted is not a PROXY header.
        assert_eq!(
            scan(b"PROXY UNKNOWN\r\n", ProxyProtocolMode::V2),
            Ok(Scan::NotProxy)
        );
        assert_eq!(scan(b"", ProxyProtocolMode::Auto), Ok(Scan::Need));
    }

    #[tokio::test]
    async fn the_bytes_after_the_header_are_replayed() {
        let (mut client, mut server) = tokio::io::duplex(256);
        tokio::io::AsyncWriteExt::write_all(
            &mut client,
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\nGET / HTTP/1.1\r\n\r\n",
        )
        .await
        .unwrap();
        drop(client);
        let (proxied, rest) = read_header(&mut server, ProxyProtocolMode::Auto)
            .await
            .unwrap();
        assert!(matches!(proxied, Some(Proxied::Addresses { .. })));
        let mut replayed = Rewind::new(rest, server);
        let mut all = Vec::new();
        replayed.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
    }
}
