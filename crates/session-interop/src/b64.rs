//! Lenient base64 decoding (both alphabets, padding optional) with errors that say where the
//! input went wrong, and the strict encoders the string formats use. Shared by every string
//! codec here and by `session-string`'s own forms.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, Engine};

use session_core::SessionError;

/// URL-safe alphabet; writes no padding, reads padded or unpadded input.
pub const URL_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// URL-safe alphabet with `=` padding (Telethon).
pub const URL_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard alphabet with `=` padding (GramJS, Node's `Buffer.toString("base64")`).
pub const STD_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which alphabet-specific characters a base64 text contains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Alphabet {
    /// Contains `-` or `_`.
    pub url: bool,
    /// Contains `+` or `/`.
    pub std: bool,
}

impl Alphabet {
    /// Which of the two alphabets' own characters `text` uses.
    pub fn of(text: &str) -> Alphabet {
        let mut a = Alphabet::default();
        for b in text.bytes() {
            match b {
                b'-' | b'_' => a.url = true,
                b'+' | b'/' => a.std = true,
                _ => {}
            }
        }
        a
    }
}

/// Decodes base64 in either alphabet (or a mix), with or without `=` padding.
///
/// `offset` is the position of `text` inside the string the user gave, so that the error names
/// the position in their string; `what` names the format for the error.
pub fn decode(text: &str, offset: usize, what: &str) -> Result<Vec<u8>, SessionError> {
    // SIMD first: it takes exactly the unpadded URL-safe texts `URL_NO_PAD` takes (canonical
    // last symbol included) and gives the same bytes; anything else (padding, the standard
    // alphabet, bad input) goes the scalar way, which also names what is wrong.
    if let Ok(bytes) = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text) {
        return Ok(bytes);
    }
    match URL_NO_PAD.decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(DecodeError::InvalidByte(_, b'+' | b'/')) => {
            // Standard alphabet (or a mix): map it onto the URL-safe one. Only short foreign
            // strings and hand-edited ones take this path.
            let mapped: Vec<u8> = text
                .bytes()
                .map(|b| match b {
                    b'+' => b'-',
                    b'/' => b'_',
                    other => other,
                })
                .collect();
            URL_NO_PAD.decode(&mapped).map_err(|e| describe(&e, text, offset, what))
        }
        Err(e) => Err(describe(&e, text, offset, what)),
    }
}

fn describe(e: &DecodeError, text: &str, offset: usize, what: &str) -> SessionError {
    let reason = match *e {
        DecodeError::InvalidByte(at, byte) => {
            let shown = text.get(at..).and_then(|rest| rest.chars().next()).unwrap_or(char::from(byte));
            if byte == b'=' {
                format!("bad base64: misplaced '=' padding at position {}", offset + at)
            } else if shown.is_whitespace() {
                format!(
                    "bad base64: whitespace at position {} (only leading and trailing whitespace is ignored)",
                    offset + at
                )
            } else {
                format!("bad base64: character {shown:?} at position {} is not in either base64 alphabet", offset + at)
            }
        }
        DecodeError::InvalidLength(len) => {
            format!("bad base64: {len} characters of data is not a possible base64 length (truncated or extended?)")
        }
        DecodeError::InvalidLastSymbol(at, _) => {
            format!(
                "bad base64: the last character at position {} does not end the data cleanly (truncated?)",
                offset + at
            )
        }
        DecodeError::InvalidPadding => "bad base64: wrong '=' padding".to_owned(),
    };
    SessionError::invalid(what, reason)
}

/// Appends unpadded URL-safe base64 of `bytes` to `out` (the same text as `URL_NO_PAD`, by SIMD).
pub fn encode_url_no_pad(bytes: &[u8], out: &mut String) {
    base64_simd::URL_SAFE_NO_PAD.encode_append(bytes, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_agrees_with_the_scalar_engine() {
        // Every length mod 3 and 4, every byte value, and mutated texts: the SIMD path must
        // accept exactly what the scalar engine accepts, with the same bytes.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            let mut text = String::new();
            encode_url_no_pad(&bytes, &mut text);
            assert_eq!(text, URL_NO_PAD.encode(&bytes));
            assert_eq!(decode(&text, 0, "t").ok(), Some(bytes.clone()));
            let alphabet = b"AZaz09-_+/=.*";
            for _ in 0..20 {
                let mut mutated = text.clone().into_bytes();
                if mutated.is_empty() {
                    break;
                }
                let at = usize::try_from(next() % mutated.len() as u64).unwrap_or(0);
                mutated[at] = alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap_or(0)];
                if next() % 4 == 0 {
                    mutated.truncate(at);
                }
                let mutated = String::from_utf8(mutated).unwrap_or_default();
                let simd = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(&mutated).ok();
                let scalar = URL_NO_PAD.decode(&mutated).ok();
                if simd.is_some() {
                    assert_eq!(simd, scalar, "{mutated:?}");
                }
            }
        }
    }

    #[test]
    fn both_alphabets_and_padding() {
        let bytes = [0xfbu8, 0xff, 0xfe, 0x01];
        let url = URL_PAD.encode(bytes);
        let std = STD_PAD.encode(bytes);
        assert_eq!(url, "-__-AQ==");
        assert_eq!(std, "+//+AQ==");
        for text in [url.as_str(), url.trim_end_matches('='), std.as_str(), std.trim_end_matches('='), "+/_-AQ"] {
            assert_eq!(decode(text, 0, "t").unwrap_or_default(), bytes, "{text}");
        }
    }

    #[test]
    fn errors_name_the_position() {
        let err = decode("AAAA*AAA", 3, "t").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("position 7") && err.contains("'*'"), "{err}");
        let err = decode("AAAAA", 0, "t").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("length"), "{err}");
        let err = decode("AA=A", 0, "t").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("'='"), "{err}");
    }
}
