//! Fault injection, for the supervision tests only (tests/it/supervise.rs): how a test
//! makes a task the daemon depends on die, to see the daemon stop safely and exit
//! non-zero.
//!
//! Armed only by the environment variable `GRIDMINER_FAULT`, read once at start: no site
//! config key reaches it, nor anything that arrives over the network. Unset, as in any
//! deployment, every hook here does nothing. Values:
//! - `mqtt`: SIGUSR1 kills (aborts) the MQTT connection task. The test sends the signal
//!   once it has seen the loads on, so the setpoints it checks were really out.
//! - `driver`: the driver of the first load panics right after it has applied its first
//!   non-zero target: the load is on, and what would turn it off is gone.

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuator::{ActuatorError, Commanded, SetPower};
use crate::decision::LoadTarget;

/// The variable that arms a fault.
pub const ENV: &str = "GRIDMINER_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    None,
    Mqtt,
    Driver,
}

impl Fault {
    pub(super) fn from_env() -> Fault {
        let Some(v) = std::env::var_os(ENV) else {
            return Fault::None;
        };
        let fault = match v.to_str() {
            Some("mqtt") => Fault::Mqtt,
            Some("driver") => Fault::Driver,
            _ => {
                tracing::warn!(value = ?v, "{ENV} is for tests (mqtt or driver); ignored");
                return Fault::None;
            }
        };
        tracing::warn!(?fault, "{ENV} set: a fault will be injected (tests only)");
        fault
    }

    /// With `mqtt`: kills the MQTT connection task (through `mqtt`) on SIGUSR1.
    pub(super) fn arm_mqtt(
        self,
        mqtt: AbortHandle,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        if self != Fault::Mqtt {
            return;
        }
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr1 = match signal(SignalKind::user_defined1()) {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(%error, "Fault injection: no SIGUSR1 handler");
                return;
            }
        };
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(()) = usr1.recv() => {
                    tracing::warn!("Fault injection: killing the MQTT connection task");
                    mqtt.abort();
                }
            }
        });
    }

    /// Load `i`'s driver, which with `driver` panics after applying the first non-zero
    /// target of load 0.
    pub(super) fn driver<D: SetPower + Send>(self, i: usize, inner: D) -> Faulty<D> {
        Faulty {
            inner,
            armed: self == Fault::Driver && i == 0,
        }
    }
}

/// A driver that can be made to die with its load on (see [`Fault::driver`]).
pub(super) struct Faulty<D> {
    inner: D,
    armed: bool,
}

impl<D: SetPower + Send> SetPower for Faulty<D> {
    async fn set(&mut self, target: LoadTarget) -> Result<Commanded, ActuatorError> {
        let done = self.inner.set(target).await;
        if self.armed && target.power.0 > 0.0 && done.is_ok() {
            panic!("fault injection ({ENV}=driver): the driver died with its load on");
        }
        done
    }
}
