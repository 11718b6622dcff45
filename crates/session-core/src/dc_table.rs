//! Telegram's published DC addresses: the one table every importer and the client use when a
//! session holds a DC id but no address (Pyrogram strings, a fresh session, a migrate reply).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The port Telegram's published addresses listen on.
pub const DEFAULT_PORT: u16 = 443;

const PRODUCTION_V4: [(i32, [u8; 4]); 5] = [
    (1, [149, 154, 175, 53]),
    (2, [149, 154, 167, 51]),
    (3, [149, 154, 175, 100]),
    (4, [149, 154, 167, 91]),
    (5, [91, 108, 56, 130]),
];

const TEST_V4: [(i32, [u8; 4]); 3] = [(1, [149, 154, 175, 10]), (2, [149, 154, 167, 40]), (3, [149, 154, 175, 117])];

const PRODUCTION_V6: [(i32, [u16; 8]); 5] = [
    (1, [0x2001, 0x0b28, 0xf23d, 0xf001, 0, 0, 0, 0x000a]),
    (2, [0x2001, 0x067c, 0x04e8, 0xf002, 0, 0, 0, 0x000a]),
    (3, [0x2001, 0x0b28, 0xf23d, 0xf003, 0, 0, 0, 0x000a]),
    (4, [0x2001, 0x067c, 0x04e8, 0xf004, 0, 0, 0, 0x000a]),
    (5, [0x2001, 0x0b28, 0xf23f, 0xf005, 0, 0, 0, 0x000a]),
];

const TEST_V6: [(i32, [u16; 8]); 3] = [
    (1, [0x2001, 0x0b28, 0xf23d, 0xf001, 0, 0, 0, 0x000e]),
    (2, [0x2001, 0x067c, 0x04e8, 0xf002, 0, 0, 0, 0x000e]),
    (3, [0x2001, 0x0b28, 0xf23d, 0xf003, 0, 0, 0, 0x000e]),
];

/// The published IPv4 address of a DC (production or test servers).
pub fn ipv4(dc_id: i32, test_mode: bool) -> Option<SocketAddrV4> {
    let table: &[(i32, [u8; 4])] = if test_mode { &TEST_V4 } else { &PRODUCTION_V4 };
    table.iter().find(|(id, _)| *id == dc_id).map(|(_, ip)| SocketAddrV4::new(Ipv4Addr::from(*ip), DEFAULT_PORT))
}

/// The published IPv6 address of a DC (production or test servers).
pub fn ipv6(dc_id: i32, test_mode: bool) -> Option<SocketAddrV6> {
    let table: &[(i32, [u16; 8])] = if test_mode { &TEST_V6 } else { &PRODUCTION_V6 };
    table.iter().find(|(id, _)| *id == dc_id).map(|(_, s)| {
        SocketAddrV6::new(Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]), DEFAULT_PORT, 0, 0)
    })
}

/// The published (IPv4) address of a DC.
pub fn address(dc_id: i32, test_mode: bool) -> Option<SocketAddr> {
    ipv4(dc_id, test_mode).map(SocketAddr::V4)
}

/// The DC ids with a published address.
pub fn known_ids(test_mode: bool) -> impl Iterator<Item = i32> {
    let n = if test_mode { TEST_V4.len() } else { PRODUCTION_V4.len() };
    PRODUCTION_V4.into_iter().take(n).map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_addresses() {
        assert_eq!(address(2, false).map(|a| a.to_string()).as_deref(), Some("149.154.167.51:443"));
        assert_eq!(address(3, true).map(|a| a.to_string()).as_deref(), Some("149.154.175.117:443"));
        assert_eq!(ipv6(2, false).map(|a| a.ip().to_string()).as_deref(), Some("2001:67c:4e8:f002::a"));
        assert!(address(6, false).is_none());
        assert_eq!(known_ids(true).count(), 3);
    }
}
