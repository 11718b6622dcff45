//! The read path: the fields of one `HGETALL` become a session. Plain sessions are decoded as
//! they are; a sealed one is opened value by value first ([`crate::seal`]).

use session_core::{codec, SessionData, SessionError, SortedPeers};

use crate::keys::{map_bucket, read_bucket, SEALED_FORMAT};
use crate::seal::{Marker, Sealer};

/// A hash as `HGETALL` returns it.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// What the `format` and `seal` fields say: `None` for a plain session (or none at all), the
/// marker for a sealed one. Damage and a newer layout are errors.
pub(crate) fn seal_of(fields: &Fields, resource: &str) -> Result<Option<Marker>, SessionError> {
    let value = |name: &[u8]| fields.iter().find(|(f, v)| f == name && !v.is_empty()).map(|(_, v)| v.as_slice());
    seal_of_values(value(b"format"), value(b"seal"), resource)
}

/// [`seal_of`] on the two values alone (as `HMGET format seal` returns them).
pub(crate) fn seal_of_values(
    format: Option<&[u8]>,
    seal: Option<&[u8]>,
    resource: &str,
) -> Result<Option<Marker>, SessionError> {
    let corrupt = |reason: String| SessionError::corrupt(resource.to_owned(), reason);
    let format = match format {
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| corrupt("the layout version is not a number".to_owned()))?,
        ),
        None => None,
    };
    if let Some(found) = format.filter(|f| *f > SEALED_FORMAT) {
        return Err(SessionError::UnsupportedVersion { what: "Redis session layout", found, supported: SEALED_FORMAT });
    }
    match (format, seal) {
        (Some(SEALED_FORMAT), Some(m)) => Marker::decode(m).map(Some).map_err(|e| e.unwrap_or_else(corrupt)),
        (Some(SEALED_FORMAT), None) => Err(corrupt("a sealed session (layout 2) has no `seal` field".to_owned())),
        (_, Some(_)) => Err(corrupt("a `seal` field in a session that is not sealed (layout 1)".to_owned())),
        (Some(0), None) => Err(corrupt("layout version 0 does not exist".to_owned())),
        (_, None) => Ok(None),
    }
}

/// The session the fields hold (`None`: nothing stored). `sealer` opens the values of a sealed
/// session; `None` reads a plain one.
pub(crate) fn decode(
    fields: &Fields,
    sealer: Option<&Sealer>,
    resource: &str,
) -> Result<Option<SessionData>, SessionError> {
    let corrupt = |reason: String| SessionError::corrupt(resource.to_owned(), reason);
    if fields.is_empty() {
        return Ok(None);
    }
    let codec_value = |field: &[u8], value: &[u8]| -> Result<SessionData, SessionError> {
        match sealer {
            Some(s) => codec::decode(&s.open(field, None, value)?),
            None => codec::decode(value),
        }
    };
    let (mut meta, mut dcs, mut chan, mut peers) = (None, Vec::new(), Vec::new(), Vec::new());
    for (field, value) in fields {
        if value.is_empty() {
            continue; // a tombstone
        }
        match field.as_slice() {
            b"format" | b"seal" => {} // read by `seal_of`
            b"meta" => meta = Some(codec_value(field, value)?),
            f if f.starts_with(b"dc:") => dcs.push(codec_value(field, value)?),
            f if f.starts_with(b"c:") => {
                let pts = match sealer {
                    Some(s) => s.open(field, None, value)?.to_vec(),
                    None => value.clone(),
                };
                chan.push((&f[2..], pts));
            }
            [b'p', b':', a, b] => {
                let blob = match sealer {
                    Some(s) => map_bucket(value, |key, v| s.open(field, Some(key), v).map(|p| p.to_vec()))?
                        .ok_or_else(|| corrupt(format!("peer bucket {:?} is damaged", [*a, *b])))?,
                    None => value.clone(),
                };
                peers.push(([*a, *b], blob));
            }
            other => return Err(corrupt(format!("unknown field {:?}", String::from_utf8_lossy(other)))),
        }
    }
    let Some(mut session): Option<SessionData> = meta else {
        if dcs.is_empty() && chan.is_empty() && peers.is_empty() {
            return Ok(None);
        }
        return Err(corrupt("the session has data but no `meta` field".to_owned()));
    };
    for one in dcs {
        session.dcs.extend(one.dcs);
    }
    for (id, pts) in chan {
        let num = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|s| s.parse::<i64>().ok());
        let (Some(id), Some(pts)) = (num(id), num(&pts).and_then(|p| i32::try_from(p).ok())) else {
            return Err(corrupt("a channel pts field is not a number".to_owned()));
        };
        session.updates.channels.insert(id, pts);
    }
    let mut all = Vec::new();
    for (bucket, blob) in peers {
        read_bucket(&bucket, &blob, &mut all).ok_or_else(|| corrupt(format!("peer bucket {bucket:?} is damaged")))?;
    }
    all.sort_unstable_by_key(|p| p.key());
    let mut builder = SortedPeers::with_capacity(all.len());
    for peer in all {
        let key = peer.key();
        if builder.push(peer).is_err() {
            return Err(corrupt(format!("peer {key:?} is stored twice")));
        }
    }
    session.peers = builder.finish();
    Ok(Some(session))
}
