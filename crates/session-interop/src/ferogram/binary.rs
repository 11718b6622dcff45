//! ferogram's binary session, written in its v8 layout (what ferogram-session 0.6 reads and
//! writes). Reading every version is [`crate::binary`].

use session_core::{PeerKind, SessionData, SessionError};

use crate::binary::{write_count, write_head};

/// Encodes a session in ferogram's v8 layout (what ferogram-session 0.6 reads and writes).
///
/// Fails with [`SessionError::Invalid`] when the session holds what v8 cannot: more than 255 DC
/// options, more than 65,535 peers, channels or min-peer contexts, a DC flags value above 255, or
/// a future auth token longer than 65,535 bytes.
pub fn encode_ferogram_v8(data: &SessionData) -> Result<Vec<u8>, SessionError> {
    const FORMAT: &str = "ferogram v8 session";
    let mut out = Vec::with_capacity(512 + data.peers.len() * 19);
    out.push(8);
    write_head(&mut out, data, FORMAT)?;
    write_count(&mut out, data.peers.len(), "peers", FORMAT)?;
    for peer in data.peers.iter() {
        let (kind, channel_kind, community) = match peer.kind {
            PeerKind::User | PeerKind::Bot => (0u8, 0xFFu8, 0u8),
            PeerKind::Community => (0, 0xFF, 1),
            PeerKind::BasicGroup => (2, 0xFF, 0),
            PeerKind::Channel => (1, 0xFF, 0),
            PeerKind::Broadcast => (1, 0, 0),
            PeerKind::Megagroup => (1, 1, 0),
            PeerKind::Gigagroup => (1, 2, 0),
            other => {
                return Err(SessionError::invalid(
                    FORMAT,
                    format!("peer {} is a {}, which ferogram v8 cannot hold", peer.id, other.as_str()),
                ))
            }
        };
        // ferogram's own form of a min channel: hash 0 and no channel kind.
        let min_channel = peer.min && kind == 1;
        let (hash, channel_kind) = if min_channel { (0, 0xFF) } else { (peer.access_hash, channel_kind) };
        out.extend_from_slice(&peer.id.to_le_bytes());
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&[kind, channel_kind, community]);
    }
    write_count(&mut out, data.min_contexts.len(), "min-peer contexts", FORMAT)?;
    for c in &data.min_contexts {
        out.extend_from_slice(&c.user_id.to_le_bytes());
        out.extend_from_slice(&c.peer_id.to_le_bytes());
        out.extend_from_slice(&c.msg_id.to_le_bytes());
    }
    match &data.future_auth_token {
        None => out.push(0),
        Some(token) => {
            out.push(1);
            write_count(&mut out, token.len(), "bytes of future auth token", FORMAT)?;
            out.extend_from_slice(token);
        }
    }
    Ok(out)
}
