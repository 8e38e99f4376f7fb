//! Mixmaster Type II support: `secring.mix`, the per-packet RSA operation and
//! the symmetric packet processing.
#![forbid(unsafe_code)]
