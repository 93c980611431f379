//! The `poller` dialect: polls change sources now. `?poller=NAME` (repeatable) names
//! them; without it every polling source polls. `allowed` limits which may be polled.

use super::{HookError, HookRequest};
use crate::runtime::Context;

pub(super) async fn poll(
    ctx: &Context,
    allowed: Option<&Vec<String>>,
    request: &HookRequest<'_>,
) -> Result<Vec<String>, HookError> {
    let names: Vec<String> = request
        .args("poller")
        .into_iter()
        .map(String::from)
        .collect();
    let names = (!names.is_empty()).then_some(names);
    ctx.polls
        .poll_now(names, allowed.cloned())
        .await
        .map_err(HookError::bad_request)
}
