//! The kinds of status target the master runs, and the one type it holds them as: the
//! master keeps every running target in one list and reconfigures them with one call,
//! whatever their kind. A new kind is one line in [`running_kinds!`].

use futures_util::future::BoxFuture;

use super::gerrit::GerritStatusPush;
use super::irc::Irc;
use super::mail::MailNotifier;
use super::pb_listener::PbListener;
use super::push::{GitHubStatus, HttpStatusPush, StashStatusPush, StatusPush};
use crate::config::status::StatusTarget;
use crate::config::MasterConfig;
use crate::runtime::{Context, Reconfigured, Service};

/// Starts the service of each kind the master runs, from its config inside a
/// [`StatusTarget`].
macro_rules! running_kinds {
    ($ctx:expr, $target:expr, { $($variant:ident => $service:ty),* $(,)? }) => {
        match $target {
            $(StatusTarget::$variant(config) => {
                RunningTarget::start_as::<$service>($ctx, config, |target| match target {
                    StatusTarget::$variant(config) => Some(config),
                    _ => None,
                })
                .await
            })*
            other => anyhow::bail!("the master does not run {} targets", other.kind()),
        }
    };
}

/// Any running status target.
pub struct RunningTarget(Box<dyn AnyTarget>);

/// The targets of `config` that run on the status pipeline: all but the web server, which
/// `www` serves.
pub fn reported(config: &MasterConfig) -> Vec<StatusTarget> {
    config
        .status
        .iter()
        .filter(|target| !matches!(target, StatusTarget::WebStatus(_)))
        .cloned()
        .collect()
}

impl Service for RunningTarget {
    type Config = StatusTarget;

    fn name_of(config: &StatusTarget) -> &str {
        config.name()
    }

    async fn start(ctx: &Context, target: &StatusTarget) -> anyhow::Result<RunningTarget> {
        running_kinds!(ctx, target, {
            MailNotifier => MailNotifier,
            Irc => Irc,
            GerritStatusPush => GerritStatusPush,
            PbListener => PbListener,
            GitHubStatus => GitHubStatus,
            StashStatusPush => StashStatusPush,
            HttpStatusPush => HttpStatusPush,
            StatusPush => StatusPush,
        })
    }

    /// A target given a config of another kind under its name is restarted.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        target: &StatusTarget,
    ) -> anyhow::Result<Reconfigured> {
        self.0.reconfigure(ctx, target).await
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

impl RunningTarget {
    async fn start_as<S: Service + 'static>(
        ctx: &Context,
        config: &S::Config,
        config_of: fn(&StatusTarget) -> Option<&S::Config>,
    ) -> anyhow::Result<RunningTarget> {
        let service = S::start(ctx, config).await?;
        Ok(RunningTarget(Box::new(Typed { service, config_of })))
    }
}

/// A running service of one kind, with the way to find its config in a [`StatusTarget`].
struct Typed<S: Service> {
    service: S,
    config_of: fn(&StatusTarget) -> Option<&S::Config>,
}

/// [`Service`] without its kind, so that targets of every kind share one list.
trait AnyTarget: Send {
    fn reconfigure<'a>(
        &'a mut self,
        ctx: &'a Context,
        target: &'a StatusTarget,
    ) -> BoxFuture<'a, anyhow::Result<Reconfigured>>;

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

impl<S: Service + 'static> AnyTarget for Typed<S> {
    fn reconfigure<'a>(
        &'a mut self,
        ctx: &'a Context,
        target: &'a StatusTarget,
    ) -> BoxFuture<'a, anyhow::Result<Reconfigured>> {
        Box::pin(async move {
            match (self.config_of)(target) {
                Some(config) => self.service.reconfigure(ctx, config).await,
                None => Ok(Reconfigured::NeedsRestart),
            }
        })
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.service.stop())
    }
}
