//! The TLS and HTTP/2 settings, resolved, and the `--ciphers` parser. OpenSSL cipher names are
//! mapped here to the IANA code points of the suites rustls offers, so a bad name is refused
//! while the flags are parsed (exit 2) and `config` stays free of rustls; `crate::tls` turns
//! these settings into a rustls `ServerConfig` and reads the files they name.

use std::path::PathBuf;

/// `--certfile`, `--keyfile` and the rest of the SSL section, when TLS is on.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// The certificate chain (PEM), leaf first.
    pub certfile: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub keyfile: PathBuf,
    /// CA certificates client certificates must chain to (`--ca-certs`).
    pub ca_certs: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// `--ciphers`; `None` keeps every suite rustls offers.
    pub ciphers: Option<CipherList>,
    /// `--tls-min-version`. Default is TLS 1.2.
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order (`--http-protocols`).
    pub alpn: Vec<Protocol>,
}

/// `--cert-reqs`, with gunicorn's (Python `ssl.CERT_*`) numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// 0: no client certificate is asked for.
    None,
    /// 1: asked for; one that is sent must verify.
    Optional,
    /// 2: the handshake fails without a valid one.
    Required,
}

impl ClientAuth {
    pub fn from_cert_reqs(n: u8) -> ClientAuth {
        match n {
            0 => ClientAuth::None,
            1 => ClientAuth::Optional,
            _ => ClientAuth::Required,
        }
    }
}

/// The lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// An HTTP version named in `--http-protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H1,
    H2,
}

impl Protocol {
    /// Its ALPN identifier.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::H1 => b"http/1.1",
            Protocol::H2 => b"h2",
        }
    }
}

/// HTTP/2, when `h2` is in `--http-protocols`. Defaults are gunicorn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// `--http2-cleartext prior-knowledge`: trusted peers (`--forwarded-allow-ips`) may open a
    /// plain connection with the HTTP/2 preface.
    pub cleartext: bool,
    /// Default is 100.
    pub max_concurrent_streams: u32,
    /// Default is 65535.
    pub initial_window_size: u32,
    /// Default is 16384.
    pub max_frame_size: u32,
    /// Default is 65536; 0 on the command line means no limit.
    pub max_header_list_size: u32,
}

/// The suites `--ciphers` allows, as IANA code points in the order given, and the names in the
/// list that OpenSSL knows but rustls does not implement (left out, as OpenSSL leaves out what
/// it cannot use; said at startup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherList(pub Vec<u16>, pub Vec<String>);

/// A suite rustls offers: its OpenSSL and IANA names, code point, and the OpenSSL aliases that
/// select it.
struct Suite {
    openssl: &'static str,
    iana: &'static str,
    id: u16,
    aliases: &'static [&'static str],
}

const TLS13: &[&str] = &["ALL", "DEFAULT", "HIGH", "TLSv1.3"];

/// Every suite rustls (ring provider) implements, in rustls's preference order.
const SUITES: &[Suite] = &[
    Suite {
        openssl: "TLS_AES_256_GCM_SHA384",
        iana: "TLS_AES_256_GCM_SHA384",
        id: 0x1302,
        aliases: TLS13,
    },
    Suite {
        openssl: "TLS_AES_128_GCM_SHA256",
        iana: "TLS_AES_128_GCM_SHA256",
        id: 0x1301,
        aliases: TLS13,
    },
    Suite {
        openssl: "TLS_CHACHA20_POLY1305_SHA256",
        iana: "TLS_CHACHA20_POLY1305_SHA256",
        id: 0x1303,
        aliases: TLS13,
    },
    Suite {
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        id: 0xC02C,
        aliases: &[
            "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA",
            "aECDSA", "AESGCM", "AES", "AES256", "SHA384",
        ],
    },
    Suite {
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        id: 0xC02B,
        aliases: &[
            "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA",
            "aECDSA", "AESGCM", "AES", "AES128", "SHA256",
        ],
    },
    Suite {
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        id: 0xCCA9,
        aliases: &[
            "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "ECDSA",
            "aECDSA", "CHACHA20", "SHA256",
        ],
    },
    Suite {
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        id: 0xC030,
        aliases: &[
            "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "aRSA",
            "AESGCM", "AES", "AES256", "SHA384",
        ],
    },
    Suite {
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        id: 0xC02F,
        aliases: &[
            "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "aRSA",
            "AESGCM", "AES", "AES128", "SHA256",
        ],
    },
    Suite {
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        id: 0xCCA8,
        aliases: &[
            "ALL", "DEFAULT", "HIGH", "TLSv1.2", "ECDHE", "EECDH", "kECDHE", "kEECDH", "aRSA",
            "CHACHA20", "SHA256",
        ],
    },
];

/// OpenSSL names that select no suite rustls offers: excluding them (`!aNULL`, `!MD5`) is a
/// no-op, asking for them is refused.
const ABSENT: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "MD5",
    "RC4",
    "DES",
    "3DES",
    "EXPORT",
    "EXP",
    "LOW",
    "MEDIUM",
    "PSK",
    "aPSK",
    "kPSK",
    "SRP",
    "kSRP",
    "DSS",
    "aDSS",
    "CAMELLIA",
    "SEED",
    "IDEA",
    "ARIA",
    "SHA1",
    "SHA",
    "kRSA",
    "RSA",
    "DH",
    "kDH",
    "DHE",
    "EDH",
    "kDHE",
    "kEDH",
    "ADH",
    "AECDH",
    "aECDH",
    "CCM",
    "CCM8",
    "AESCCM",
    "AESCCM8",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "kGOST",
    "aGOST",
    "GOST",
];

/// The words OpenSSL's own suite names are made of (`DHE-RSA-AES128-GCM-SHA256`,
/// `EDH-RSA-DES-CBC3-SHA`): a name made only of them is a suite OpenSSL knows, even when rustls
/// does not implement it.
#[rustfmt::skip]
const SUITE_WORDS: &[&str] = &[
    "ECDHE", "ECDH", "DHE", "EDH", "DH", "ADH", "AECDH", "RSA", "ECDSA", "DSS", "PSK", "SRP",
    "KRB5", "EXP", "EXP1024", "AES128", "AES256", "AES", "GCM", "CCM", "CCM8", "CBC", "CBC3",
    "CHACHA20", "POLY1305", "CAMELLIA128", "CAMELLIA256", "ARIA128", "ARIA256", "DES", "DES40",
    "3DES", "RC4", "RC2", "IDEA", "SEED", "NULL", "MD5", "SHA", "SHA256", "SHA384", "GOST",
    "GOST89", "GOST94", "GOST2001", "GOST2012", "MAGMA", "KUZNYECHIK", "OMAC", "CNT", "IMIT", "40",
    "56",
];

/// Whether `word` is shaped like one of OpenSSL's suite names.
fn openssl_suite_name(word: &str) -> bool {
    word.contains('-') && word.split('-').all(|w| SUITE_WORDS.contains(&w))
}

/// The suites `word` names: one suite by its OpenSSL or IANA name, an alias, or an
/// intersection (`ECDHE+AESGCM`). `Ok(None)` for a name that selects nothing rustls offers.
fn select(word: &str) -> Result<Option<Vec<u16>>, String> {
    if let Some(s) = SUITES
        .iter()
        .find(|s| s.openssl.eq_ignore_ascii_case(word) || s.iana.eq_ignore_ascii_case(word))
    {
        return Ok(Some(vec![s.id]));
    }
    if openssl_suite_name(word) {
        return Ok(None);
    }
    let parts: Vec<&str> = word.split('+').collect();
    let mut absent = false;
    for p in &parts {
        let known = SUITES.iter().any(|s| s.aliases.contains(p));
        if !known {
            if ABSENT.contains(p) {
                absent = true;
            } else {
                return Err(format!(
                    "unknown cipher '{word}': rustls offers {}",
                    SUITES
                        .iter()
                        .map(|s| s.openssl)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if absent {
        return Ok(None);
    }
    Ok(Some(
        SUITES
            .iter()
            .filter(|s| parts.iter().all(|p| s.aliases.contains(p)))
            .map(|s| s.id)
            .collect(),
    ))
}

/// Parses an OpenSSL cipher list (`:`, `,` or space separated; `!X`/`-X` remove, `+X` and
/// `@STRENGTH`/`@SECLEVEL=n` are accepted for compatibility and change nothing). As OpenSSL
/// (and so gunicorn) does, a name it knows that selects nothing usable is left out, so the
/// lists people paste (Mozilla's "intermediate") work; a name OpenSSL would not know either,
/// or a list that leaves nothing, is refused. As with OpenSSL's cipher list, which never
/// touches TLS 1.3, every TLS 1.3 suite stays allowed unless the list names one.
pub fn parse_ciphers(list: &str) -> Result<CipherList, String> {
    let mut chosen: Vec<u16> = Vec::new();
    let mut removed: Vec<u16> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    for item in list
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        if item.starts_with('@') {
            continue;
        }
        if let Some(name) = item.strip_prefix('!').or_else(|| item.strip_prefix('-')) {
            if let Some(ids) = select(name)? {
                removed.extend(ids);
            }
            continue;
        }
        let name = item.strip_prefix('+').unwrap_or(item);
        match select(name)? {
            Some(ids) => {
                for id in ids {
                    if !chosen.contains(&id) {
                        chosen.push(id);
                    }
                }
            }
            None => ignored.push(name.to_string()),
        }
    }
    chosen.retain(|id| !removed.contains(id));
    if chosen.is_empty() {
        let offered = SUITES.iter().map(|s| s.openssl).collect::<Vec<_>>();
        return Err(match ignored.is_empty() {
            true => "the list leaves no cipher suite".into(),
            false => format!(
                "the list leaves no cipher suite: rustls does not implement {} (it offers {})",
                ignored.join(", "),
                offered.join(", ")
            ),
        });
    }
    let is13 = |id: &u16| (0x1301..=0x1303).contains(id);
    if !chosen.iter().any(is13) {
        chosen.extend(
            SUITES
                .iter()
                .map(|s| s.id)
                .filter(is13)
                .filter(|id| !removed.contains(id)),
        );
    }
    Ok(CipherList(chosen, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_and_iana_names_map_to_suites() {
        let l = parse_ciphers("ECDHE-RSA-AES256-GCM-SHA384").unwrap();
        assert_eq!(l.0, vec![0xC030, 0x1302, 0x1301, 0x1303]);
        let l = parse_ciphers("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:TLS_AES_128_GCM_SHA256");
        assert_eq!(l.unwrap().0, vec![0xC02F, 0x1301]);
    }

    #[test]
    fn aliases_intersections_and_exclusions() {
        // As in OpenSSL, aliases like CHACHA20 leave TLS 1.3 suites alone.
        let l = parse_ciphers("HIGH:!aNULL:!MD5:!CHACHA20").unwrap();
        assert_eq!(
            l.0,
            vec![0x1302, 0x1301, 0x1303, 0xC02C, 0xC02B, 0xC030, 0xC02F]
        );
        let l = parse_ciphers("HIGH:!TLS_CHACHA20_POLY1305_SHA256").unwrap();
        assert!(!l.0.contains(&0x1303));
        let l = parse_ciphers("ECDHE+AESGCM+aRSA").unwrap();
        assert_eq!(l.0, vec![0xC030, 0xC02F, 0x1302, 0x1301, 0x1303]);
    }

    #[test]
    fn unknown_names_are_refused_by_name() {
        let err = parse_ciphers("ECDHE-RSA-AES128-GCM-SHA256:BOGUS-CIPHER").unwrap_err();
        assert!(err.contains("'BOGUS-CIPHER'"), "{err}");
        assert!(parse_ciphers("!HIGH").is_err());
    }

    #[test]
    fn names_openssl_knows_but_rustls_lacks_are_left_out_as_openssl_does() {
        // Mozilla's "intermediate" list.
        let l = parse_ciphers(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
             ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
             DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305",
        )
        .unwrap();
        assert_eq!(&l.0[..3], &[0xC02B, 0xC02F, 0xC02C]);
        assert_eq!(
            l.1,
            [
                "DHE-RSA-AES128-GCM-SHA256",
                "DHE-RSA-AES256-GCM-SHA384",
                "DHE-RSA-CHACHA20-POLY1305"
            ]
        );
        let l = parse_ciphers("DHE+AESGCM:AES256-SHA:ECDHE+AESGCM").unwrap();
        assert_eq!(l.1, ["DHE+AESGCM", "AES256-SHA"]);
        // Nothing left: refused, naming what rustls lacks.
        let err = parse_ciphers("RC4:EDH-RSA-DES-CBC3-SHA").unwrap_err();
        assert!(err.contains("RC4, EDH-RSA-DES-CBC3-SHA"), "{err}");
    }
}
