//! Running status targets, and what they share: the outbox.

pub mod mail;
pub mod outbox;
