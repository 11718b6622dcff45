//! layer-client 0.5's binary session, written in its v3 layout (layer-client 0.4.7-0.5 read and
//! write it; ferogram 0.1-0.2 wrote the same layout). Reading every version is [`crate::binary`].

use session_core::{PeerKind, SessionData, SessionError};

use crate::binary::{write_count, write_head};

/// Encodes a session in layer-client's v3 layout (what layer-client 0.5 reads and writes).
///
/// Fails with [`SessionError::Invalid`] when the session holds what v3 cannot: more than 255 DC
/// options or 65,535 peers or channels, a DC flags value above 255, basic groups or communities
/// (layer knows users and channels only), min-peer contexts or a future auth token.
pub fn encode_layer_v3(data: &SessionData) -> Result<Vec<u8>, SessionError> {
    const FORMAT: &str = "layer v3 session";
    if !data.min_contexts.is_empty() {
        return Err(SessionError::invalid(
            FORMAT,
            format!("layer v3 cannot hold min-peer contexts ({} present); use ferogram v8", data.min_contexts.len()),
        ));
    }
    if data.future_auth_token.is_some() {
        return Err(SessionError::invalid(FORMAT, "layer v3 cannot hold a future auth token; use ferogram v8"));
    }
    let mut out = Vec::with_capacity(512 + data.peers.len() * 17);
    out.push(3);
    write_head(&mut out, data, FORMAT)?;
    write_count(&mut out, data.peers.len(), "peers", FORMAT)?;
    for peer in data.peers.iter() {
        let byte = match peer.kind {
            PeerKind::User | PeerKind::Bot => 0u8,
            PeerKind::Channel | PeerKind::Broadcast | PeerKind::Megagroup | PeerKind::Gigagroup => 1,
            other => {
                return Err(SessionError::invalid(
                    FORMAT,
                    format!(
                        "peer {} is a {}, which layer v3 cannot hold (users and channels only)",
                        peer.id,
                        other.as_str()
                    ),
                ))
            }
        };
        out.extend_from_slice(&peer.id.to_le_bytes());
        out.extend_from_slice(&peer.access_hash.to_le_bytes());
        out.push(byte);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use session_core::Peer;

    use super::*;
    use crate::binary::{decode, LegacyFormat};

    #[test]
    fn wrapped_counts_are_recovered() {
        let mut data = SessionData::default();
        data.home_dc = 2;
        data.peers = (0..70_000i64).map(|i| Peer::new(i + 1, PeerKind::User, i)).collect();
        // Write as the original writers do: the count wraps, every record is written.
        let mut bytes = Vec::new();
        bytes.push(3);
        write_head(&mut bytes, &data, "t").expect("head");
        bytes.extend_from_slice(&u16::try_from(70_000 % 65_536).expect("fits").to_le_bytes());
        for p in data.peers.iter() {
            bytes.extend_from_slice(&p.id.to_le_bytes());
            bytes.extend_from_slice(&p.access_hash.to_le_bytes());
            bytes.push(0);
        }
        let decoded = decode(&bytes).expect("decodes");
        assert_eq!(decoded.format, LegacyFormat::LayerV3);
        assert_eq!(decoded.data.peers.len(), 70_000);
        assert_eq!(decoded.data, data);
        assert!(encode_layer_v3(&data).is_err(), "70,000 peers must not be written into a u16 count");
    }
}
