//! Bind addresses as gunicorn spells them: `HOST`, `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH`,
//! `fd://N`. Parsing is pure; resolving names and opening sockets is `server::listener`'s job.

use std::fmt;
use std::path::PathBuf;

/// The port used when an address names only a host, as in gunicorn.
pub const DEFAULT_PORT: u16 = 8000;

/// One `--bind` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// A TCP host (name, IPv4 or IPv6 literal without brackets) and port.
    Tcp { host: String, port: u16 },
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// An already-bound listening socket inherited from the parent (systemd, a test harness).
    Fd(i32),
}

impl BindAddr {
    /// Parses one `--bind` value; the error names what is wrong with it.
    pub fn parse(s: &str) -> Result<BindAddr, String> {
        let s = s.trim();
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err("empty unix socket path".into());
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if let Some(fd) = s.strip_prefix("fd://") {
            return fd
                .parse::<i32>()
                .ok()
                .filter(|fd| *fd >= 0)
                .map(BindAddr::Fd)
                .ok_or_else(|| format!("'{fd}' is not a file descriptor number"));
        }
        let s = s.strip_prefix("tcp://").unwrap_or(s);
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("unexpected '{after}' after ']'")),
                },
            }
        } else if s.matches(':').count() > 1 {
            // A bare IPv6 literal such as `::1`: no port can be told apart from it.
            (s, None)
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("'{p}' is not a valid port number"))?,
        };
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(BindAddr::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BindAddr::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindAddr {
        BindAddr::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn gunicorn_spellings() {
        assert_eq!(
            BindAddr::parse("127.0.0.1:9000"),
            Ok(tcp("127.0.0.1", 9000))
        );
        assert_eq!(BindAddr::parse("0.0.0.0"), Ok(tcp("0.0.0.0", 8000)));
        assert_eq!(BindAddr::parse("localhost:0"), Ok(tcp("localhost", 0)));
        assert_eq!(BindAddr::parse(":8080"), Ok(tcp("0.0.0.0", 8080)));
        assert_eq!(BindAddr::parse("[::1]:8001"), Ok(tcp("::1", 8001)));
        assert_eq!(BindAddr::parse("[::]"), Ok(tcp("::", 8000)));
        assert_eq!(BindAddr::parse("::1"), Ok(tcp("::1", 8000)));
        assert_eq!(BindAddr::parse("tcp://1.2.3.4:5"), Ok(tcp("1.2.3.4", 5)));
        assert_eq!(
            BindAddr::parse("unix:/tmp/s.sock"),
            Ok(BindAddr::Unix("/tmp/s.sock".into()))
        );
        assert_eq!(
            BindAddr::parse("unix:///tmp/s"),
            Ok(BindAddr::Unix("/tmp/s".into()))
        );
        assert_eq!(BindAddr::parse("fd://3"), Ok(BindAddr::Fd(3)));
    }

    #[test]
    fn bad_addresses_say_why() {
        assert!(BindAddr::parse("host:http").unwrap_err().contains("'http'"));
        assert!(BindAddr::parse("host:70000").is_err());
        assert!(BindAddr::parse("[::1").is_err());
        assert!(BindAddr::parse("[::1]x").is_err());
        assert!(BindAddr::parse("fd://x").is_err());
        assert!(BindAddr::parse("unix:").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["127.0.0.1:80", "[::1]:8001", "unix:/tmp/a", "fd://4"] {
            assert_eq!(BindAddr::parse(s).unwrap().to_string(), s);
        }
    }
}
