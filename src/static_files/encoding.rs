//! Precompressed representations: which content codings a file may have beside it (`FILE.br`,
//! `FILE.gz`) and which of them a client's `Accept-Encoding` takes, in its order of preference.
//! Nothing is compressed here; the files are served as they are on disk.

use http::header::{HeaderMap, ACCEPT_ENCODING};

/// A content coding served from a sibling file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// Every coding looked for, in the order preferred when the client weighs them equally
    /// (brotli files are smaller).
    pub(super) const ALL: [Encoding; 2] = [Encoding::Brotli, Encoding::Gzip];

    /// The `Content-Encoding` token.
    pub(super) fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// What is appended to the file name to find the sibling.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// The codings of [`Encoding::ALL`] that `Accept-Encoding` allows, most preferred first: the
/// highest q-value first, brotli before gzip on a tie, none with `q=0`. A coding not named takes
/// the weight of `*` if there is one. Without the header nothing is sent compressed: RFC 9110
/// allows any coding then, but clients that send none are often ones that cannot decode.
pub(super) fn accepted(headers: &HeaderMap) -> Vec<Encoding> {
    // Weights in thousandths, as q-values have at most three decimals.
    let (mut br, mut gzip, mut any) = (None, None, None);
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let mut weight = Some(1000);
            for param in parts {
                if let Some((name, v)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        weight = qvalue(v.trim());
                    }
                }
            }
            // A weight that does not parse makes the item mean nothing.
            let Some(weight) = weight else { continue };
            let slot = if coding.eq_ignore_ascii_case("br") {
                &mut br
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if coding == "*" {
                &mut any
            } else {
                continue;
            };
            *slot = Some(weight);
        }
    }
    let mut out: Vec<(u16, Encoding)> = [(br, Encoding::Brotli), (gzip, Encoding::Gzip)]
        .into_iter()
        .filter_map(|(w, e)| Some((w.or(any)?, e)))
        .filter(|(w, _)| *w > 0)
        .collect();
    // Stable, so a tie keeps brotli first.
    out.sort_by_key(|(w, _)| std::cmp::Reverse(*w));
    out.into_iter().map(|(_, e)| e).collect()
}

/// A q-value (`0`, `0.5`, `1`, `1.000`) in thousandths; `None` if it is not one.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Brotli, Gzip};

    fn accepts(values: &[&str]) -> Vec<Encoding> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, v.parse().unwrap());
        }
        accepted(&h)
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("0.1250"), None);
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue("2"), None);
        assert_eq!(qvalue("x"), None);
    }

    #[test]
    fn brotli_wins_ties_and_weights_decide_otherwise() {
        assert_eq!(accepts(&["gzip, deflate, br"]), [Brotli, Gzip]);
        assert_eq!(accepts(&["gzip;q=1, br;q=0.5"]), [Gzip, Brotli]);
        assert_eq!(accepts(&["br;q=0.8", "gzip;q=0.9"]), [Gzip, Brotli]);
        assert_eq!(accepts(&["GZIP"]), [Gzip]);
        assert_eq!(accepts(&["x-gzip"]), [Gzip]);
    }

    #[test]
    fn zero_means_no() {
        assert_eq!(accepts(&["br;q=0, gzip"]), [Gzip]);
        assert_eq!(accepts(&["br;q=0, gzip ; Q=0.000"]), []);
        assert_eq!(accepts(&["*;q=0"]), []);
    }

    #[test]
    fn star_covers_codings_not_named() {
        assert_eq!(accepts(&["*"]), [Brotli, Gzip]);
        assert_eq!(accepts(&["br;q=0, *"]), [Gzip]);
        assert_eq!(accepts(&["gzip;q=0.2, *;q=0.5"]), [Brotli, Gzip]);
    }

    #[test]
    fn nothing_without_the_header_or_with_identity_only() {
        assert_eq!(accepts(&[]), []);
        assert_eq!(accepts(&["identity"]), []);
        assert_eq!(accepts(&[""]), []);
        assert_eq!(accepts(&["br;q=abc, gzip"]), [Gzip]);
    }
}
