//! The client side, without I/O: the handshake (fixed newstyle, structured replies,
//! `base:allocation`, GO) and transmission (requests out, replies matched by cookie).

pub mod handshake;
pub mod transmission;
