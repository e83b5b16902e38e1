//! The write side's domain: aggregates, their commands and rules, and validated values.
//! Pure and synchronous at heart: no I/O happens in here.

use cqrs_es::DomainEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use event_store::load::StreamEnds;

/// An aggregate's pure heart: which events a command produces (`decide`) and how an event
/// changes the state (`evolve`). `impl_aggregate!` (below) turns it into a cqrs-es `Aggregate`.
pub trait Decide: Default + Serialize + DeserializeOwned + Send + Sync {
    /// The aggregate type its streams are stored under.
    const TYPE: &'static str;
    /// What can be asked of it.
    type Command;
    /// What it records.
    type Event: DomainEvent;
    /// A rule a command broke.
    type Error: std::error::Error;

    /// The pure decision: which events `command` produces in this state, or which rule it
    /// breaks. An empty list is a no-op.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// The pure evolution: the state after `event`.
    fn evolve(&mut self, event: Self::Event);

    /// The resource as the query API serves it, in this state at the stream's `ends`: a
    /// 412's `current`, so a client sees "theirs" without another request (FRONTEND.md).
    /// `None` for aggregates of which the query API serves no item.
    fn current(&self, _id: &str, _ends: &StreamEnds) -> Option<serde_json::Value> {
        None
    }
}

/// Implements cqrs-es's `Aggregate` for a [`Decide`] type: `handle` writes the decided events
/// to the sink (each one applied as it is written), `apply` is `evolve`.
///
/// A macro rather than a blanket impl: `Aggregate` is foreign, so the orphan rule forbids
/// `impl<T: Decide> Aggregate for T`.
macro_rules! impl_aggregate {
    ($state:ty) => {
        impl ::cqrs_es::Aggregate for $state {
            const TYPE: &'static str = <Self as $crate::domain::Decide>::TYPE;
            type Command = <Self as $crate::domain::Decide>::Command;
            type Event = <Self as $crate::domain::Decide>::Event;
            type Error = <Self as $crate::domain::Decide>::Error;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _services: &Self::Services,
                sink: &::cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in $crate::domain::Decide::decide(self, command)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                $crate::domain::Decide::evolve(self, event);
            }
        }

        impl $crate::execute::Current for $state {
            fn current(
                &self,
                id: &str,
                ends: &$crate::domain::StreamEnds,
            ) -> Option<::serde_json::Value> {
                $crate::domain::Decide::current(self, id, ends)
            }
        }
    };
}

pub mod account;
pub mod analytics;
pub mod post;
pub mod project;
pub mod service_status;
pub mod session;
pub mod text;
pub mod ticket;
