//! The X25519 extensions, `x25519-unwrap@keyward` and
//! `x25519-agree@keyward`: request and reply bodies, specified byte for byte
//! in `docs/PROTOCOL.md`.
//!
//! Both name the key by the raw SHA-256 fingerprint of its public-key blob.
//! Parsers reject wrong lengths and trailing bytes, so a body means exactly
//! one thing.

use zeroize::Zeroizing;

use crate::wire::{Reader, WireError, Writer};
use crate::x25519::{FILE_KEY_LEN, KEY_LEN, STANZA_BODY_LEN};

pub const UNWRAP: &str = "x25519-unwrap@keyward";
pub const AGREE: &str = "x25519-agree@keyward";

/// The maximum number of peer public keys in one agree request. 4096 peers
/// make a 147 KiB request and a 151 KiB reply, inside the 256 KiB frame.
pub const MAX_AGREE_PEERS: usize = 4096;

/// Status byte of one agree result: the shared secret follows.
pub const AGREE_OK: u8 = 0;
/// Status byte of one agree result: rejected, the result was all zeros.
pub const AGREE_REJECTED: u8 = 1;

/// An `x25519-unwrap@keyward` request: unwrap one age X25519 stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnwrapRequest {
    pub fingerprint: [u8; 32],
    pub ephemeral_share: [u8; KEY_LEN],
    pub stanza_body: [u8; STANZA_BODY_LEN],
}

impl UnwrapRequest {
    /// Parses `string fingerprint(32) ‖ string share(32) ‖ string body(32)`.
    pub fn parse(body: &[u8]) -> Result<UnwrapRequest, WireError> {
        let mut reader = Reader::new(body);
        let fingerprint = fixed_string(&mut reader, "key fingerprint is not 32 bytes")?;
        let ephemeral_share = fixed_string(&mut reader, "ephemeral share is not 32 bytes")?;
        let stanza_body = fixed_string(&mut reader, "stanza body is not 32 bytes")?;
        reader.finish()?;
        Ok(UnwrapRequest { fingerprint, ephemeral_share, stanza_body })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(3 * 36);
        body.put_string(&self.fingerprint);
        body.put_string(&self.ephemeral_share);
        body.put_string(&self.stanza_body);
        body
    }
}

/// Encodes the `x25519-unwrap@keyward` reply body: `string file-key`, 16
/// bytes, or empty when the stanza does not decrypt with the key.
pub fn unwrap_reply_body(file_key: Option<&[u8; FILE_KEY_LEN]>) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(4 + FILE_KEY_LEN));
    body.put_string(file_key.map_or(&[][..], |key| &key[..]));
    body
}

/// Parses the `x25519-unwrap@keyward` reply body; `None` means the stanza
/// does not decrypt with the key.
pub fn parse_unwrap_reply(body: &[u8]) -> Result<Option<Zeroizing<[u8; FILE_KEY_LEN]>>, WireError> {
    let mut reader = Reader::new(body);
    let file_key = reader.string()?;
    reader.finish()?;
    match file_key.len() {
        0 => Ok(None),
        FILE_KEY_LEN => {
            let mut key = Zeroizing::new([0u8; FILE_KEY_LEN]);
            key.copy_from_slice(file_key);
            Ok(Some(key))
        }
        _ => Err(WireError("file key is neither 16 bytes nor empty")),
    }
}

/// An `x25519-agree@keyward` request: X25519 with each peer public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreeRequest {
    pub fingerprint: [u8; 32],
    pub peers: Vec<[u8; KEY_LEN]>,
}

impl AgreeRequest {
    /// Parses `string fingerprint(32) ‖ uint32 n ‖ n × string peer(32)`,
    /// with 1 ≤ n ≤ [`MAX_AGREE_PEERS`].
    pub fn parse(body: &[u8]) -> Result<AgreeRequest, WireError> {
        let mut reader = Reader::new(body);
        let fingerprint = fixed_string(&mut reader, "key fingerprint is not 32 bytes")?;
        let count = reader.u32()? as usize;
        if count == 0 || count > MAX_AGREE_PEERS {
            return Err(WireError("peer count is outside 1 to 4096"));
        }
        // Each peer takes 36 bytes; checking first avoids allocating from
        // an untrusted count.
        if reader.remaining() != count * (4 + KEY_LEN) {
            return Err(WireError("peer list does not match the peer count"));
        }
        let mut peers = Vec::with_capacity(count);
        for _ in 0..count {
            peers.push(fixed_string(&mut reader, "peer public key is not 32 bytes")?);
        }
        reader.finish()?;
        Ok(AgreeRequest { fingerprint, peers })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(40 + self.peers.len() * (4 + KEY_LEN));
        body.put_string(&self.fingerprint);
        body.put_u32(u32::try_from(self.peers.len()).expect("peer count fits in uint32"));
        for peer in &self.peers {
            body.put_string(peer);
        }
        body
    }
}

/// Encodes the `x25519-agree@keyward` reply body: `uint32 n`, then per
/// peer `byte status ‖ string secret` (32 bytes when the status is
/// [`AGREE_OK`], empty when it is [`AGREE_REJECTED`]).
pub fn agree_reply_body(results: &[Option<Zeroizing<[u8; KEY_LEN]>>]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(4 + results.len() * (5 + KEY_LEN)));
    body.put_u32(u32::try_from(results.len()).expect("result count fits in uint32"));
    for result in results {
        match result {
            Some(secret) => {
                body.put_u8(AGREE_OK);
                body.put_string(&secret[..]);
            }
            None => {
                body.put_u8(AGREE_REJECTED);
                body.put_string(&[]);
            }
        }
    }
    body
}

/// Parses the `x25519-agree@keyward` reply body, which must hold exactly
/// `expected` results. `None` marks a rejected (all-zero) result.
pub fn parse_agree_reply(
    body: &[u8],
    expected: usize,
) -> Result<Vec<Option<Zeroizing<[u8; KEY_LEN]>>>, WireError> {
    let mut reader = Reader::new(body);
    if reader.u32()? as usize != expected {
        return Err(WireError("reply holds a different number of results than requested"));
    }
    let mut results = Vec::with_capacity(expected);
    for _ in 0..expected {
        let status = reader.u8()?;
        let secret = reader.string()?;
        match (status, secret.len()) {
            (AGREE_OK, KEY_LEN) => {
                let mut shared = Zeroizing::new([0u8; KEY_LEN]);
                shared.copy_from_slice(secret);
                results.push(Some(shared));
            }
            (AGREE_REJECTED, 0) => results.push(None),
            _ => return Err(WireError("malformed agree result")),
        }
    }
    reader.finish()?;
    Ok(results)
}

fn fixed_string<const N: usize>(reader: &mut Reader<'_>, wrong_length: &'static str) -> Result<[u8; N], WireError> {
    reader.string()?.try_into().map_err(|_| WireError(wrong_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_request_round_trips() {
        let request = UnwrapRequest { fingerprint: [1; 32], ephemeral_share: [2; 32], stanza_body: [3; 32] };
        let encoded = request.encode();

        assert_eq!(encoded.len(), 108);
        assert_eq!(&encoded[..4], &[0, 0, 0, 32]);
        assert_eq!(UnwrapRequest::parse(&encoded).unwrap(), request);
    }

    #[test]
    fn unwrap_request_rejects_bad_lengths() {
        let good = UnwrapRequest { fingerprint: [1; 32], ephemeral_share: [2; 32], stanza_body: [3; 32] }.encode();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut short_share = Vec::new();
        short_share.put_string(&[1; 32]);
        short_share.put_string(&[2; 31]);
        short_share.put_string(&[3; 32]);
        let mut long_body = Vec::new();
        long_body.put_string(&[1; 32]);
        long_body.put_string(&[2; 32]);
        long_body.put_string(&[3; 33]);

        for bad in [&good[..good.len() - 1], &trailing[..], &short_share[..], &long_body[..], &[][..]] {
            assert!(UnwrapRequest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unwrap_reply_round_trips() {
        let key = [7u8; 16];

        assert_eq!(*parse_unwrap_reply(&unwrap_reply_body(Some(&key))).unwrap().unwrap(), key);
        assert!(parse_unwrap_reply(&unwrap_reply_body(None)).unwrap().is_none());
        let mut wrong = Vec::new();
        wrong.put_string(&[1; 15]);
        assert!(parse_unwrap_reply(&wrong).is_err());
    }

    #[test]
    fn agree_request_round_trips() {
        let request = AgreeRequest { fingerprint: [1; 32], peers: vec![[2; 32], [3; 32]] };

        assert_eq!(AgreeRequest::parse(&request.encode()).unwrap(), request);
    }

    #[test]
    fn agree_request_bounds_peer_count() {
        let empty = AgreeRequest { fingerprint: [1; 32], peers: Vec::new() }.encode();
        let most = AgreeRequest { fingerprint: [1; 32], peers: vec![[2; 32]; MAX_AGREE_PEERS] }.encode();
        let too_many = AgreeRequest { fingerprint: [1; 32], peers: vec![[2; 32]; MAX_AGREE_PEERS + 1] }.encode();
        let mut lying = AgreeRequest { fingerprint: [1; 32], peers: vec![[2; 32]; 2] }.encode();
        lying[36..40].copy_from_slice(&3u32.to_be_bytes());
        let mut huge = Vec::new();
        huge.put_string(&[1; 32]);
        huge.put_u32(u32::MAX);

        assert!(AgreeRequest::parse(&empty).is_err());
        assert_eq!(AgreeRequest::parse(&most).unwrap().peers.len(), MAX_AGREE_PEERS);
        assert!(most.len() < crate::agent::MAX_FRAME);
        assert!(AgreeRequest::parse(&too_many).is_err());
        assert!(AgreeRequest::parse(&lying).is_err());
        assert!(AgreeRequest::parse(&huge).is_err());
    }

    #[test]
    fn agree_reply_round_trips_in_order() {
        let results = vec![Some(Zeroizing::new([1; 32])), None, Some(Zeroizing::new([2; 32]))];
        let body = agree_reply_body(&results);

        let parsed = parse_agree_reply(&body, 3).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(**parsed[0].as_ref().unwrap(), [1; 32]);
        assert!(parsed[1].is_none());
        assert_eq!(**parsed[2].as_ref().unwrap(), [2; 32]);
        assert!(parse_agree_reply(&body, 2).is_err());

        let full = agree_reply_body(&vec![Some(Zeroizing::new([9; 32])); MAX_AGREE_PEERS]);
        assert!(full.len() < crate::agent::MAX_FRAME);
    }

    #[test]
    fn agree_reply_rejects_inconsistent_status() {
        let mut body = Vec::new();
        body.put_u32(1);
        body.put_u8(AGREE_REJECTED);
        body.put_string(&[1; 32]);

        assert!(parse_agree_reply(&body, 1).is_err());
    }
}
