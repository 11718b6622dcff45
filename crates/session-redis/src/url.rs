//! URLs without their secrets: what every message, span and `Debug` shows of a server address.
//!
//! A Redis URL may carry a password in two places: the user info (`redis://user:pw@host`) and,
//! for unix sockets, the query (`redis+unix:///run/redis.sock?pass=pw`). Both are replaced by
//! `***`; the password itself is also kept aside so that an error text from the driver can be
//! scrubbed of it before it reaches a caller.

/// A URL split into what may be shown and what may not.
#[derive(Clone)]
pub(crate) struct Redacted {
    /// The URL with every password replaced by `***`.
    pub shown: String,
    /// The passwords found (raw and percent-decoded), to scrub from foreign error texts.
    secrets: Vec<String>,
}

impl Redacted {
    pub(crate) fn new(url: &str) -> Redacted {
        let mut secrets = Vec::new();
        let mut shown = String::with_capacity(url.len());
        let (before_query, query) = match url.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (url, None),
        };
        match before_query.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                let (authority, path) = rest.split_at(authority_end);
                shown.push_str(scheme);
                shown.push_str("://");
                match authority.rsplit_once('@') {
                    Some((userinfo, host)) => {
                        match userinfo.split_once(':') {
                            Some((user, password)) => {
                                keep(&mut secrets, password);
                                shown.push_str(user);
                                shown.push_str(":***");
                            }
                            // `redis://secret@host`: some clients read a lone user info as the
                            // password, so it is hidden too.
                            None => {
                                keep(&mut secrets, userinfo);
                                shown.push_str("***");
                            }
                        }
                        shown.push('@');
                        shown.push_str(host);
                    }
                    None => shown.push_str(authority),
                }
                shown.push_str(path);
            }
            None => shown.push_str(before_query),
        }
        if let Some(query) = query {
            shown.push('?');
            let parts: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if is_secret_param(k) => {
                        keep(&mut secrets, v);
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            shown.push_str(&parts.join("&"));
        }
        Redacted { shown, secrets }
    }

    /// `text` with every known password replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

fn is_secret_param(key: &str) -> bool {
    matches!(key.to_ascii_lowercase().as_str(), "pass" | "password" | "token" | "auth")
}

fn keep(secrets: &mut Vec<String>, raw: &str) {
    if raw.is_empty() {
        return;
    }
    secrets.push(raw.to_owned());
    let decoded = percent_decode(raw);
    if decoded != raw && !decoded.is_empty() {
        secrets.push(decoded);
    }
    // Longest first, so that a password containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_wherever_they_are() {
        let r = Redacted::new("redis://app:s3cr%40t@db.example:6380/2");
        assert_eq!(r.shown, "redis://app:***@db.example:6380/2");
        assert_eq!(r.scrub("auth s3cr@t failed for s3cr%40t"), "auth *** failed for ***");
        let r = Redacted::new("redis://:hunter2@127.0.0.1:6379");
        assert_eq!(r.shown, "redis://:***@127.0.0.1:6379");
        let r = Redacted::new("redis://hunter2@127.0.0.1");
        assert_eq!(r.shown, "redis://***@127.0.0.1");
        let r = Redacted::new("redis+unix:///run/redis.sock?db=1&pass=p%26w&user=u");
        assert_eq!(r.shown, "redis+unix:///run/redis.sock?db=1&pass=***&user=u");
        assert_eq!(r.scrub("p&w"), "***");
        let r = Redacted::new("redis://127.0.0.1:6379/0");
        assert_eq!(r.shown, "redis://127.0.0.1:6379/0");
        assert_eq!(r.scrub("nothing to hide"), "nothing to hide");
        assert_eq!(Redacted::new("not a url").shown, "not a url");
    }
}
