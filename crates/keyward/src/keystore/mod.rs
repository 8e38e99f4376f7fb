//! The keystore file: specified in `docs/KEYSTORE.md`.
