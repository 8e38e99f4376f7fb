//! Keyward's `SSH_AGENTC_EXTENSION` requests, specified in
//! `docs/PROTOCOL.md`.
//!
//! A successful reply is SSH_AGENT_EXTENSION_RESPONSE, the extension's
//! name, then its body. A refusal is SSH_AGENT_EXTENSION_FAILURE followed
//! by a `uint32` [`FailureCode`], which tells a client whether to ask the
//! operator to unseal; it never says whether a key exists.

use super::{SSH_AGENT_EXTENSION_FAILURE, SSH_AGENT_EXTENSION_RESPONSE};
use crate::wire::{Reader, WireError, Writer};

pub const QUERY: &str = "query";
pub const SESSION_BIND: &str = "session-bind@openssh.com";
pub const STATUS: &str = "status@keyward";
pub const LIST: &str = "list@keyward";
pub const BATCH: &str = "batch@keyward";

/// The most items one `batch@keyward` request may hold.
pub const MAX_BATCH_ITEMS: usize = 4096;

/// The reason an extension request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FailureCode {
    /// The daemon is sealed; an operator must unseal it.
    Sealed = 1,
    /// No such key, or the caller may not use it for this.
    Refused = 2,
    /// The request body is malformed.
    InvalidRequest = 3,
}

impl FailureCode {
    pub fn from_u32(code: u32) -> Option<FailureCode> {
        match code {
            1 => Some(FailureCode::Sealed),
            2 => Some(FailureCode::Refused),
            3 => Some(FailureCode::InvalidRequest),
            _ => None,
        }
    }
}

/// Encodes SSH_AGENT_EXTENSION_RESPONSE.
pub fn response(name: &str, body: &[u8]) -> Vec<u8> {
    let mut reply = Vec::with_capacity(body.len() + name.len() + 5);
    reply.put_u8(SSH_AGENT_EXTENSION_RESPONSE);
    reply.put_string(name.as_bytes());
    reply.extend_from_slice(body);
    reply
}

/// Encodes SSH_AGENT_EXTENSION_FAILURE with Keyward's failure code.
pub fn failure(code: FailureCode) -> Vec<u8> {
    let mut reply = vec![SSH_AGENT_EXTENSION_FAILURE];
    reply.put_u32(code as u32);
    reply
}

/// The `query` reply body: each supported extension name as a `string`.
pub fn query_body(names: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for name in names {
        body.put_string(name.as_bytes());
    }
    body
}

/// The daemon's state as `status@keyward` reports it to any client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Sealed = 0,
    Unsealed = 1,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Sealed => "sealed",
            State::Unsealed => "unsealed",
        }
    }
}

/// The `status@keyward` reply body: `byte state`.
pub fn status_body(state: State) -> Vec<u8> {
    vec![state as u8]
}

pub fn parse_status_body(body: &[u8]) -> Result<State, WireError> {
    let mut reader = Reader::new(body);
    let state = match reader.u8()? {
        0 => State::Sealed,
        1 => State::Unsealed,
        _ => return Err(WireError("unknown state")),
    };
    reader.finish()?;
    Ok(state)
}

/// One key in a `list@keyward` reply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListedKey {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub purpose: String,
    pub fingerprint: String,
    pub comment: String,
    /// The public-key blob, base64.
    pub public_key: String,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
    /// The policy operations this caller may use the key for.
    pub operations: Vec<String>,
}

/// The `list@keyward` reply body: one `string` holding a JSON array of
/// [`ListedKey`].
pub fn list_body(keys: &[ListedKey]) -> Vec<u8> {
    let json = serde_json::to_vec(keys).expect("serialising plain data cannot fail");
    let mut body = Vec::with_capacity(json.len() + 4);
    body.put_string(&json);
    body
}

pub fn parse_list_body(body: &[u8]) -> Result<Vec<ListedKey>, WireError> {
    let mut reader = Reader::new(body);
    let json = reader.string()?;
    reader.finish()?;
    serde_json::from_slice(json).map_err(|_| WireError("list is not valid JSON"))
}

/// Encodes a `batch@keyward` request body: `uint32 count`, then each
/// item, a whole request body, as a `string`.
pub fn batch_body<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u32(items.len() as u32);
    for item in items {
        body.put_string(item);
    }
    body
}

/// Parses a `batch@keyward` request body into its items. Refuses a count
/// above [`MAX_BATCH_ITEMS`] before reading any item, a count that does
/// not match the items present, and trailing bytes.
pub fn parse_batch_body(body: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let mut reader = Reader::new(body);
    let count = reader.u32()? as usize;
    if count > MAX_BATCH_ITEMS {
        return Err(WireError("too many batch items"));
    }
    // Every item takes at least its 4-byte length, which bounds the
    // allocation by the body's size whatever the count says.
    if count > body.len() / 4 {
        return Err(WireError("truncated batch"));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(reader.string()?);
    }
    reader.finish()?;
    Ok(items)
}

/// Encodes the `batch@keyward` reply: SSH_AGENT_EXTENSION_RESPONSE, the
/// name, `uint32 count`, then each item's reply body as a `string`.
/// `None` when the whole reply would not fit in one frame.
pub fn batch_response(replies: &[Vec<u8>]) -> Option<Vec<u8>> {
    let size = 1 + 4 + BATCH.len() + 4 + replies.iter().map(|reply| 4 + reply.len()).sum::<usize>();
    if size > super::MAX_FRAME {
        return None;
    }
    let mut reply = Vec::with_capacity(size);
    reply.put_u8(SSH_AGENT_EXTENSION_RESPONSE);
    reply.put_string(BATCH.as_bytes());
    reply.put_u32(replies.len() as u32);
    for item in replies {
        reply.put_string(item);
    }
    Some(reply)
}

/// Parses a `batch@keyward` reply body (after the name) into the items'
/// reply bodies.
pub fn parse_batch_reply(body: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let mut reader = Reader::new(body);
    let count = reader.u32()? as usize;
    if count > MAX_BATCH_ITEMS || count > body.len() / 4 {
        return Err(WireError("bad batch item count"));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(reader.string()?);
    }
    reader.finish()?;
    Ok(items)
}

/// Parses a reply to an extension request: the body on success, the
/// failure code on refusal.
pub fn parse_reply<'a>(name: &str, reply: &'a [u8]) -> Result<Result<&'a [u8], Option<FailureCode>>, WireError> {
    let mut reader = Reader::new(reply);
    match reader.u8()? {
        SSH_AGENT_EXTENSION_RESPONSE => {
            if reader.string()? != name.as_bytes() {
                return Err(WireError("reply names another extension"));
            }
            Ok(Ok(reader.rest()))
        }
        SSH_AGENT_EXTENSION_FAILURE => {
            let code = reader.u32().ok().and_then(FailureCode::from_u32);
            Ok(Err(code))
        }
        super::SSH_AGENT_FAILURE => Ok(Err(None)),
        _ => Err(WireError("unexpected reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_round_trips() {
        let items: Vec<&[u8]> = vec![b"first", b"", b"third"];
        let body = batch_body(items.iter().copied());
        assert_eq!(parse_batch_body(&body).unwrap(), items);
    }

    #[test]
    fn rejects_batch_over_the_item_limit() {
        let item: &[u8] = &[11];
        let body = batch_body(std::iter::repeat_n(item, MAX_BATCH_ITEMS + 1));
        assert!(parse_batch_body(&body).is_err());
        let body = batch_body(std::iter::repeat_n(item, MAX_BATCH_ITEMS));
        assert_eq!(parse_batch_body(&body).unwrap().len(), MAX_BATCH_ITEMS);
    }

    #[test]
    fn rejects_batch_count_larger_than_its_items() {
        let mut body = batch_body([&b"one"[..]].into_iter());
        body[3] = 2;
        assert!(parse_batch_body(&body).is_err());
        // A huge count in a tiny body fails before allocating for it.
        assert!(parse_batch_body(&[0, 0, 0x10, 0]).is_err());
    }

    #[test]
    fn rejects_batch_with_trailing_bytes() {
        let mut body = batch_body([&b"one"[..]].into_iter());
        body.push(0);
        assert!(parse_batch_body(&body).is_err());
    }

    #[test]
    fn batch_reply_over_the_frame_limit_is_refused() {
        let big = vec![vec![0u8; 1024]; 256];
        assert!(batch_response(&big).is_none());
        let small = vec![vec![14u8; 10]; 3];
        let reply = batch_response(&small).unwrap();
        let mut reader = Reader::new(&reply);
        assert_eq!(reader.u8().unwrap(), SSH_AGENT_EXTENSION_RESPONSE);
        assert_eq!(reader.string().unwrap(), BATCH.as_bytes());
        assert_eq!(parse_batch_reply(reader.rest()).unwrap(), small.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
}
