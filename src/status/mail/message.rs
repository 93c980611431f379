//! The mail itself: the built-in message, the subject, the recipients, and the MIME text.

use std::collections::BTreeSet;

use crate::config::status::MailMode;
use crate::model::{BuildInfo, BuildResult, MasterInfo};

/// A message's text: what a `messageFormatter` returns, or the built-in message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText {
    pub body: String,
    /// `type='html'`; otherwise plain text.
    pub html: bool,
    /// The formatter's `subject`, which replaces the notifier's.
    pub subject: Option<String>,
}

/// A file attached to a mail: a log (`step.log`) or a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// `text/plain` for logs, `text/x-diff` for patches.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// A mail ready to be turned into RFC 5322 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: MessageText,
    /// `extraHeaders`, rendered.
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
}

/// Buildbot's built-in message (0.8's `defaultMessage`), followed by each step with its
/// result and log URLs. `previous` is the result of the build compared with for `change`
/// and `problem`, if there is one.
pub fn default_message(
    modes: &BTreeSet<MailMode>,
    name: &str,
    build: &BuildInfo,
    previous: Option<BuildResult>,
    master: &MasterInfo,
) -> MessageText {
    todo!("{modes:?} {name} {build:?} {previous:?} {master:?}")
}

/// The notifier's `subject` with `%(builder)s`, `%(result)s`, `%(title)s` and
/// `%(projectName)s` filled in, as Python's `%` does (`%%` is a literal `%`).
pub fn render_subject(template: &str, builder: &str, results: BuildResult, title: &str) -> String {
    todo!("{template} {builder} {results:?} {title}")
}

/// To and Cc as Buildbot 0.8 addresses them: with interested users (and
/// `sendToInterestedUsers`) they go in To and the extra recipients in Cc; otherwise the
/// extras go in To. Each list is sorted, without duplicates; an invalid address is dropped
/// with a warning naming `notifier`.
pub fn recipients(
    notifier: &str,
    interested: &[String],
    extra: &[String],
    send_to_interested: bool,
) -> (Vec<String>, Vec<String>) {
    todo!("{notifier} {interested:?} {extra:?} {send_to_interested}")
}

/// The mail as RFC 5322 bytes (MIME multipart when there are attachments), or why it
/// cannot be (an address or header that does not parse).
pub fn compose(mail: &Mail) -> Result<Vec<u8>, String> {
    todo!("{mail:?}")
}
