//! A tiny pcap reader for the captured fixtures: the classic pcap file format
//! (little- or big-endian, Ethernet link type), IPv4 without fragments, UDP.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

/// One UDP datagram from a capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Record number in the file, from 1 (as Wireshark counts).
    pub number: usize,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize, le: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    }
}

/// Reads every UDP/IPv4 datagram of an Ethernet pcap file.
pub fn udp_datagrams(file: &[u8]) -> Vec<Datagram> {
    assert!(file.len() >= 24, "pcap global header truncated");
    let le = match &file[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] => false,
        other => panic!("not a pcap file (magic {other:02x?})"),
    };
    assert_eq!(u32_at(file, 20, le), 1, "link type is not Ethernet");
    let mut out = Vec::new();
    let mut at = 24;
    let mut number = 0;
    while at + 16 <= file.len() {
        number += 1;
        let incl = u32_at(file, at + 8, le) as usize;
        let frame = &file[at + 16..at + 16 + incl];
        at += 16 + incl;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[ihl..total];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]])).min(udp.len());
        out.push(Datagram {
            number,
            src: SocketAddrV4::new(src, sport),
            dst: SocketAddrV4::new(dst, dport),
            payload: udp[8..ulen].to_vec(),
        });
    }
    out
}

/// The DHCP datagrams (either port 67, 68 or 4011) of a capture.
pub fn dhcp_datagrams(file: &[u8]) -> Vec<Datagram> {
    udp_datagrams(file)
        .into_iter()
        .filter(|d| {
            [67, 68, 4011].contains(&d.src.port()) && [67, 68, 4011].contains(&d.dst.port())
        })
        .collect()
}
