//! Option codes used by this crate (RFC 2132, RFC 3004, RFC 4578, RFC 5071).

/// 1: subnet mask.
pub const SUBNET_MASK: u8 = 1;
/// 3: routers.
pub const ROUTER: u8 = 3;
/// 6: DNS servers.
pub const DNS: u8 = 6;
/// 12: host name.
pub const HOST_NAME: u8 = 12;
/// 15: domain name.
pub const DOMAIN_NAME: u8 = 15;
/// 28: broadcast address.
pub const BROADCAST_ADDRESS: u8 = 28;
/// 43: vendor-specific information (PXE sub-options).
pub const VENDOR_SPECIFIC: u8 = 43;
/// 50: requested IP address.
pub const REQUESTED_IP: u8 = 50;
/// 51: lease time.
pub const LEASE_TIME: u8 = 51;
/// 52: option overload.
pub const OVERLOAD: u8 = 52;
/// 53: DHCP message type.
pub const MESSAGE_TYPE: u8 = 53;
/// 54: server identifier.
pub const SERVER_ID: u8 = 54;
/// 55: parameter request list.
pub const PARAMETER_REQUEST_LIST: u8 = 55;
/// 56: message.
pub const MESSAGE: u8 = 56;
/// 57: maximum DHCP message size.
pub const MAX_MESSAGE_SIZE: u8 = 57;
/// 58: renewal time T1.
pub const RENEWAL_TIME: u8 = 58;
/// 59: rebinding time T2.
pub const REBINDING_TIME: u8 = 59;
/// 60: vendor class identifier.
pub const VENDOR_CLASS: u8 = 60;
/// 61: client identifier.
pub const CLIENT_ID: u8 = 61;
/// 66: TFTP server name.
pub const TFTP_SERVER_NAME: u8 = 66;
/// 67: boot file name.
pub const BOOTFILE_NAME: u8 = 67;
/// 77: user class (iPXE sends the raw bytes `iPXE`).
pub const USER_CLASS: u8 = 77;
/// 93: client system architecture (RFC 4578).
pub const CLIENT_ARCH: u8 = 93;
/// 94: client network interface identifier (RFC 4578).
pub const CLIENT_NDI: u8 = 94;
/// 97: client machine identifier, UUID (RFC 4578).
pub const CLIENT_UUID: u8 = 97;
/// 175: iPXE / Etherboot encapsulated options.
pub const IPXE_ENCAP: u8 = 175;
