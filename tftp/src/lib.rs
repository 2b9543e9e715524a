//! The Trivial File Transfer Protocol (RFC 1350, 2347, 2348, 2349, 7440).
//!
//! What it is: TFTP packets, sans-IO read and write transfers for both server and client
//! (time is an input, deadlines are outputs), and, behind the `server` feature, a UDP
//! driver that serves any file provider.
//!
//! What it is not: a general file server; uploads are off unless configured.
#![forbid(unsafe_code)]
