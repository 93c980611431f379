//! `status.MailNotifier`: mail about finished builds and buildsets, through the outbox.

pub mod message;
pub mod smtp;
